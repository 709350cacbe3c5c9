"""Training logs -> long-format traces ``(step, name, value)`` for ``Warehouse.write_traces``.

Formats: HF ``trainer_state.json`` (``log_history``), TensorBoard event files,
CSV (Lightning ``metrics.csv``, W&B panel exports) and JSONL (one object per
line, e.g. the reference trainer's ``train_log.jsonl``).

Cleaning rules, the same for every format:

- names are normalised: a leading ``train/`` is dropped, ``eval/x`` becomes
  ``eval_x``, ``learning_rate`` / ``lr-*`` (Lightning's LearningRateMonitor)
  become ``lr``, ``train_loss`` / ``train_loss_step`` become ``loss``; every
  other name is kept as its own trace. When two columns of one file map to the
  same name, the one already spelled canonically (else the first in sorted
  order) takes it and the others keep their own names;
- NaN and +-inf values are left out of the table and counted per name
  (``TrainingLog.nonfinite``); so are values that are not numbers (words,
  lists, true/false: ``TrainingLog.non_numeric``); numbers written as text
  (``"3.0"``) are read as numbers. ``read_training_log`` emits a
  ``TrainingLogWarning`` saying how many were left out;
- a step that is not a whole number in ``[0, 10**12]`` is an error naming the
  file and line (or the ``log_history`` entry, or the TensorBoard tag);
- a (step, name) pair seen more than once with different values (a resumed
  run re-logging steps, a log whose steps go backwards) keeps its LAST
  occurrence in file order; the number of dropped rows is
  ``TrainingLog.duplicates`` and is warned about (repeats of the same value
  are merged silently).
"""

from __future__ import annotations

import json
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from ldw.errors import LdwError
from ldw.ingest.log_formats import (
    Record,
    read_csv,
    read_jsonl,
    read_tensorboard,
    read_trainer_state,
    tensorboard_files,
)

REFERENCE_LOG = "train_log.jsonl"
TRAINER_STATE = "trainer_state.json"
LIGHTNING_CSV = "metrics.csv"
# Root-level JSONL/CSV files that are data, not logs (the reference trainer's held-out split).
NOT_LOGS = {"eval_documents.jsonl"}
_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
_LOG_HINT = re.compile(r"log|metric|train|loss|history", re.IGNORECASE)
_ALIASES = {"learning_rate": "lr", "train_loss": "loss", "train_loss_step": "loss"}


class TrainingLogWarning(UserWarning):
    """A training log had values left out (non-finite) or steps logged more than once."""


@dataclass
class TrainingLog:
    """A parsed training log: the clean traces plus what was left out and why."""

    path: Path
    format: str
    frame: pl.DataFrame
    nonfinite: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    renamed: dict[str, str] = field(default_factory=dict)
    non_numeric: dict[str, int] = field(default_factory=dict)

    def notes(self) -> list[str]:
        """One human-readable line per thing left out of the table."""
        notes = []
        for left_out, what in ((self.nonfinite, "NaN/inf values"), (self.non_numeric, "values that are not numbers")):
            if left_out:
                counts = ", ".join(f"{name}: {n}" for name, n in sorted(left_out.items()))
                notes.append(f"{self.path}: left out {sum(left_out.values())} {what} ({counts})")
        if self.duplicates:
            notes.append(
                f"{self.path}: {self.duplicates} values logged again for an earlier (step, name); kept the last"
            )
        return notes


def canonical_name(name: str) -> str:
    """The workbench name of a logged metric (``train/learning_rate`` -> ``lr``, ...)."""
    if name.startswith("train/"):
        name = name[len("train/") :]
    if name.startswith("eval/"):
        name = "eval_" + name[len("eval/") :]
    if name.startswith("lr-") or name.startswith("lr/"):
        return "lr"
    return _ALIASES.get(name, name)


def _rename_map(names: set[str]) -> dict[str, str]:
    """Source name -> trace name; on a clash the canonically spelled (else first sorted) name wins."""
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    ordered = sorted(names, key=lambda n: (canonical_name(n) != n, n))
    for name in ordered:
        target = canonical_name(name)
        mapping[name] = target if target not in taken else name
        taken.add(mapping[name])
    return mapping


def detect_format(path: Path) -> str:
    """``trainer_state`` | ``tensorboard`` | ``csv`` | ``jsonl`` for a log path, from its name."""
    name = path.name
    if path.is_dir():
        if tensorboard_files(path):
            return "tensorboard"
        raise LdwError(f"{path}: folder holds no events.out.tfevents.* files; pass the log file itself")
    if name == TRAINER_STATE:
        return "trainer_state"
    if name.startswith("events.out.tfevents."):
        return "tensorboard"
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "trainer_state"
    raise LdwError(
        f"{path}: unknown training-log format (expected trainer_state.json, events.out.tfevents.*, .csv or .jsonl)"
    )


_READERS = {"trainer_state": read_trainer_state, "tensorboard": read_tensorboard, "csv": read_csv, "jsonl": read_jsonl}


def _clean(records: list[Record]) -> tuple[pl.DataFrame, dict[str, int], int, dict[str, str], dict[str, int]]:
    """Normalise names, drop non-numeric and non-finite values (counted) and keep the last value per (step, name)."""
    non_numeric = dict(Counter(name for _, name, value in records if value is None))
    records = [record for record in records if record[2] is not None]
    mapping = _rename_map({name for _, name, _ in records})
    steps = np.fromiter((r[0] for r in records), dtype=np.int64, count=len(records))
    values = np.fromiter((r[2] for r in records), dtype=np.float64, count=len(records))
    names = [mapping[r[1]] for r in records]
    finite = np.isfinite(values)
    nonfinite = dict(Counter(name for name, ok in zip(names, finite, strict=True) if not ok))
    frame = pl.DataFrame(
        {"step": steps, "name": pl.Series(names, dtype=pl.String), "value": values, "order": np.arange(len(records))}
    ).filter(pl.Series(finite))
    # the same value logged twice (e.g. HF logs ``epoch`` with both the train and the eval entry) is no conflict
    frame = frame.unique(subset=["step", "name", "value"], keep="last", maintain_order=True)
    kept = frame.unique(subset=["step", "name"], keep="last", maintain_order=True)
    duplicates = frame.height - kept.height
    kept = kept.drop("order").sort("name", "step")
    renamed = {src: dst for src, dst in mapping.items() if src != dst}
    return kept, nonfinite, duplicates, renamed, non_numeric


def load_training_log(path: Path) -> TrainingLog:
    """Parse a training log into a ``TrainingLog`` (clean frame plus counts of what was left out)."""
    path = Path(path)
    if not path.exists():
        raise LdwError(f"{path}: training log not found")
    fmt = detect_format(path)
    try:
        records = _READERS[fmt](path)
    except UnicodeDecodeError as err:
        raise LdwError(f"{path}: not valid UTF-8 text ({err.reason} at byte {err.start})") from None
    frame, nonfinite, duplicates, renamed, non_numeric = _clean(records)
    if frame.height == 0:
        raise LdwError(f"{path}: no numeric values with a step found in this {fmt} log")
    return TrainingLog(path, fmt, frame, nonfinite, duplicates, renamed, non_numeric)


def read_training_log(path: Path) -> pl.DataFrame:
    """Read a training log as a long frame ``step`` (int64), ``name`` (str), ``value`` (float64).

    Sorted by name then step, one row per (step, name). Values left out
    (NaN/inf) and re-logged steps are reported with a ``TrainingLogWarning``;
    use ``load_training_log`` to get the counts themselves.
    """
    log = load_training_log(path)
    for note in log.notes():
        warnings.warn(note, TrainingLogWarning, stacklevel=2)
    return log.frame


def _trainer_state_step(path: Path) -> int:
    """``global_step`` recorded in a trainer_state.json (-1 when unreadable)."""
    try:
        return int(json.loads(path.read_text(encoding="utf-8")).get("global_step", -1))
    except (OSError, ValueError, AttributeError, TypeError):
        return -1


def _latest_trainer_state(run_dir: Path) -> Path | None:
    """The trainer_state.json with the most steps: the latest ``checkpoint-N`` copy or the root one."""
    checkpoints = [
        (int(m.group(1)), p) for p in run_dir.iterdir() if (m := _CHECKPOINT_DIR.match(p.name)) and p.is_dir()
    ]
    candidates = []
    if checkpoints:
        latest = max(checkpoints)[1] / TRAINER_STATE
        if latest.is_file():
            candidates.append(latest)
    if (run_dir / TRAINER_STATE).is_file():
        candidates.append(run_dir / TRAINER_STATE)
    if not candidates:
        return None
    return max(candidates, key=lambda p: (_trainer_state_step(p), p.parent == run_dir))


def _latest_tensorboard_dir(run_dir: Path) -> Path | None:
    """The folder (under ``run_dir``) holding the most recently written event file."""
    files = [p for p in run_dir.rglob("events.out.tfevents.*") if p.is_file()]
    if not files:
        return None
    return max(files, key=lambda p: (p.stat().st_mtime, str(p))).parent


def _latest_lightning_csv(run_dir: Path) -> Path | None:
    """The newest ``metrics.csv`` under ``run_dir`` (Lightning writes ``version_N/metrics.csv``)."""
    files = [p for p in run_dir.rglob(LIGHTNING_CSV) if p.is_file()]
    if not files:
        return None
    return max(files, key=lambda p: (p.stat().st_mtime, str(p)))


def _root_table_log(run_dir: Path) -> Path | None:
    """A lone ``*.jsonl`` / ``*.csv`` at the root; with several, the one whose name looks like a log."""
    files = sorted(
        p
        for p in run_dir.iterdir()
        if p.is_file() and p.suffix.lower() in (".jsonl", ".csv") and p.name not in NOT_LOGS
    )
    if len(files) <= 1:
        return files[0] if files else None
    hinted = [p for p in files if _LOG_HINT.search(p.stem)]
    if len(hinted) == 1:
        return hinted[0]
    names = ", ".join(p.name for p in (hinted or files))
    raise LdwError(f"{run_dir}: several possible training logs ({names}); choose one with `ldw ingest --log FILE`")


def find_training_log(run_dir: Path) -> Path | None:
    """The training log of a run folder, or None when it has none.

    Looked for in this order: ``train_log.jsonl`` (reference trainer); the
    latest ``trainer_state.json`` (the highest ``checkpoint-N`` copy, or the
    root copy when it has more steps — the file accumulates, so the latest copy
    holds the whole history); TensorBoard event files anywhere below (the
    folder of the newest one); Lightning ``metrics.csv`` anywhere below (the
    newest); a root-level ``*.jsonl`` / ``*.csv``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise LdwError(f"{run_dir}: not a folder")
    if (run_dir / REFERENCE_LOG).is_file():
        return run_dir / REFERENCE_LOG
    for finder in (_latest_trainer_state, _latest_tensorboard_dir, _latest_lightning_csv, _root_table_log):
        found = finder(run_dir)
        if found is not None:
            return found
    return None
