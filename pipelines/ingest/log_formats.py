"""Readers for the training-log formats the workbench ingests.

Each reader turns one file (or a folder of TensorBoard event files) into raw
long-format records ``(step, name, value)`` in the order they occur in the
file, with names as written there. A value is a float (numbers written as
text, like ``"3.0"``, are read as numbers), or None for a value that is not a
number (a word, a list, true/false), which is counted and warned about; an
absent value (JSON null, an empty CSV cell) makes no record. Steps must be
whole numbers in ``[0, MAX_STEP]``; any other step is an error naming the file
and line. Normalising names, dropping non-finite values and resolving
duplicate steps happen in ``ldw.ingest.training_logs``.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ldw.errors import LdwError

Record = tuple[int, str, float | None]

# No training run takes 10**12 optimizer steps; a larger step is a corrupt or misread log.
MAX_STEP = 10**12

# Keys that hold the optimizer step in JSONL / CSV logs, most specific first.
STEP_KEYS = ("step", "Step", "global_step", "trainer/global_step", "train/global_step", "_step", "iteration", "iter")
# Keys that are bookkeeping, not traces.
IGNORED_KEYS = {"_runtime", "_timestamp", "timestamp", "time", "wall_time", "Wall time"}
# The final summary entry of an HF Trainer log_history; its ``train_loss`` is the mean over the run.
HF_SUMMARY_KEY = "train_runtime"
HF_MEAN_LOSS = "train_loss_mean"
_WANDB_COLUMN = re.compile(r"^(?P<run>.+?) - (?P<metric>.+)$")


def _as_step(raw: Any, where: str) -> int:
    """An integer step in ``[0, MAX_STEP]`` from a JSON/CSV value; floats must be whole numbers."""
    if isinstance(raw, bool) or raw is None or raw == "":
        raise LdwError(f"{where}: no step value")
    shown = raw if isinstance(raw, str) else repr(raw)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise LdwError(f"{where}: step {shown} is not a number") from None
    except OverflowError:  # an integer too large for a float
        value = math.inf if raw > 0 else -math.inf
    if math.isfinite(value) and value != int(value):
        raise LdwError(f"{where}: step {shown} is not a whole number")
    if value < 0:
        raise LdwError(f"{where}: step {shown} is negative")
    if value > MAX_STEP:
        raise LdwError(f"{where}: step {shown} is beyond {MAX_STEP:,}, not an optimizer step")
    return int(value)


def _as_value(raw: Any) -> float | None:
    """A float for numbers and numeric text (NaN/inf kept); None for anything else."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        return None
    try:
        return float(raw)
    except ValueError:
        return None
    except OverflowError:  # an integer too large for a float
        return math.inf if raw > 0 else -math.inf


def _flatten(record: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested dicts as ``a/b`` keys (W&B and some trainers nest metrics)."""
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, name + "/")
        else:
            yield name, value


def _step_key(keys: Iterable[str]) -> str | None:
    """The first of ``STEP_KEYS`` present in ``keys``."""
    present = set(keys)
    return next((key for key in STEP_KEYS if key in present), None)


def _records_from_mapping(flat: dict[str, Any], where: str) -> Iterator[Record]:
    """Records of one flat ``{name: value}`` mapping that carries its step."""
    key = _step_key(flat)
    if key is None:
        raise LdwError(f"{where}: no step field (expected one of {', '.join(STEP_KEYS)})")
    step = _as_step(flat[key], where)
    for name, raw in flat.items():
        if name in STEP_KEYS or name in IGNORED_KEYS or raw is None:
            continue
        yield step, name, _as_value(raw)


def read_jsonl(path: Path) -> list[Record]:
    """One JSON object per line, each with a step field (e.g. the reference trainer's ``train_log.jsonl``)."""
    records: list[Record] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}: line {number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise LdwError(f"{where} is not valid JSON ({err.msg})") from None
            if not isinstance(obj, dict):
                raise LdwError(f"{where} is not a JSON object")
            records.extend(_records_from_mapping(dict(_flatten(obj)), where))
    return records


def read_trainer_state(path: Path) -> list[Record]:
    """The ``log_history`` of an HF Trainer ``trainer_state.json``.

    Every numeric key is kept under its own name (``loss``, ``grad_norm``,
    ``learning_rate``, ``epoch``, ``eval_loss``, ...). The final summary entry
    (the one with ``train_runtime``) reports the run-mean ``train_loss`` at the
    last step; it is renamed ``train_loss_mean`` so it cannot overwrite the
    last step's logged loss.
    """
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise LdwError(f"{path}: not valid JSON ({err.msg})") from None
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        raise LdwError(f"{path}: no log_history list; not an HF trainer_state.json")
    records: list[Record] = []
    for index, entry in enumerate(history):
        where = f"{path}: log_history[{index}]"
        if not isinstance(entry, dict):
            raise LdwError(f"{where} is not an object")
        flat = dict(_flatten(entry))
        if HF_SUMMARY_KEY in flat and "train_loss" in flat:
            flat[HF_MEAN_LOSS] = flat.pop("train_loss")
        records.extend(_records_from_mapping(flat, where))
    return records


def _wandb_columns(header: list[str], path: Path) -> dict[str, str] | None:
    """For a W&B panel export (``<run> - <metric>`` columns): column -> metric, else None.

    ``__MIN`` / ``__MAX`` band columns are left out. More than one run in a
    file is an error, since their metrics would share names.
    """
    matches = {col: _WANDB_COLUMN.match(col) for col in header}
    named = {col: m for col, m in matches.items() if m is not None}
    if not named or len(named) < len(header) - 1:
        return None
    runs = sorted({m["run"] for m in named.values()})
    if len(runs) > 1:
        raise LdwError(f"{path}: W&B export holds several runs ({', '.join(runs)}); export one run per file")
    return {
        col: m["metric"]
        for col, m in named.items()
        if not (m["metric"].endswith("__MIN") or m["metric"].endswith("__MAX"))
    }


def read_csv(path: Path) -> list[Record]:
    """A CSV log with a step column: Lightning ``metrics.csv`` (sparse rows, merged by
    step), a W&B panel export (``<run> - <metric>`` columns), or any numeric table.

    Empty cells are skipped; cells that are not numbers (e.g. a text column)
    become None records, counted and warned about.
    """
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise LdwError(f"{path}: empty CSV file")
        header = [col.strip() for col in header]
        key = _step_key(header)
        if key is None:
            raise LdwError(f"{path}: no step column (expected one of {', '.join(STEP_KEYS)})")
        step_at = header.index(key)
        metrics = _wandb_columns(header, path) or {
            col: col for col in header if col not in STEP_KEYS and col not in IGNORED_KEYS
        }
        wanted = [(i, metrics[col]) for i, col in enumerate(header) if col in metrics]
        records: list[Record] = []
        for number, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(header):
                raise LdwError(f"{path}: line {number} has {len(row)} cells for {len(header)} columns")
            step = _as_step(row[step_at].strip() if step_at < len(row) else "", f"{path}: line {number}")
            for index, name in wanted:
                cell = row[index].strip() if index < len(row) else ""
                if cell:
                    records.append((step, name, _as_value(cell)))
    return records


def tensorboard_files(path: Path) -> list[Path]:
    """The event files of ``path`` (a file, or a folder's direct children), in name (= time) order."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.glob("events.out.tfevents.*") if p.is_file())


def read_tensorboard(path: Path) -> list[Record]:
    """Scalar summaries of TensorBoard event files, via tensorboard's EventAccumulator.

    Reads both the classic ``simple_value`` scalars (torch SummaryWriter,
    tensorboardX, HF TensorBoardCallback) and TF2-style scalar tensors. A
    folder reads all its event files in name order (a resumed run appends a new
    file), so later files win on repeated steps.
    """
    try:
        from tensorboard.backend.event_processing import event_accumulator
        from tensorboard.util import tensor_util
    except ImportError:
        raise LdwError(
            f"{path}: reading TensorBoard logs needs the 'tensorboard' package (pip install tensorboard)"
        ) from None
    files = tensorboard_files(path)
    if not files:
        raise LdwError(f"{path}: no events.out.tfevents.* files")
    records: list[Record] = []
    for file in files:
        acc = event_accumulator.EventAccumulator(
            str(file), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 0}
        )
        try:
            acc.Reload()
        except Exception as err:  # the reader raises several error types for corrupt files
            raise LdwError(f"{file}: not a readable TensorBoard event file ({err})") from None
        tags = acc.Tags()
        events = []
        for tag in tags.get(event_accumulator.SCALARS, []):
            events.extend((e.wall_time, e.step, tag, float(e.value)) for e in acc.Scalars(tag))
        for tag in tags.get(event_accumulator.TENSORS, []):
            if acc.SummaryMetadata(tag).plugin_data.plugin_name != "scalars":
                continue
            for e in acc.Tensors(tag):
                array = tensor_util.make_ndarray(e.tensor_proto)
                if array.size == 1:
                    events.append((e.wall_time, e.step, tag, float(array.reshape(-1)[0])))
        events.sort(key=lambda event: event[0])
        records.extend((_as_step(step, f"{file}: tag {tag!r}"), tag, value) for _, step, tag, value in events)
    return records
