"""Find checkpoint series on disk and parse their step names.

Understands HF Trainer output (``checkpoint-N/`` + ``trainer_state.json``),
Pythia-style ``stepN`` folders (and OLMo's ``stepN-tokensXB``,
``stage1-stepN-tokensXB``), LLM360's ``ckpt_NNN``, ``global_stepN``,
``iter_N``, the reference trainer's own output, and any folder of
``save_pretrained`` directories with the step in the name.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ldw.errors import LdwError
from ldw.ingest.run_seed import plain_text_seed

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
TOKEN_UNITS = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}
STEP_PATTERNS = [
    re.compile(r"(?:^|[-_])step[-_]?(\d+)(?:-tokens(\d+)([KMBT]?))?", re.IGNORECASE),
    re.compile(r"^checkpoint-(\d+)$"),
    re.compile(r"^ckpt_(\d+)$"),
    re.compile(r"^iter_(\d+)$"),
]
FALLBACK_NUMBER = re.compile(r"(\d+)(?!.*\d)")
HASH_CHUNK = 8 << 20


@dataclass(frozen=True)
class FoundCheckpoint:
    """A checkpoint folder and what its name says."""

    step: int
    path: Path
    tokens_seen: int | None = None


@dataclass
class FoundRun:
    """A run folder with its checkpoints, tokenizer and training-log candidates."""

    root: Path
    kind: str
    checkpoints: list[FoundCheckpoint]
    metadata: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def parse_step(name: str, fallback: bool = True) -> tuple[int, int | None] | None:
    """Step (and tokens seen, when the name gives them) from a checkpoint folder or branch name.

    With ``fallback`` a name of no known scheme gives its last number (``model_500`` -> 500);
    without it such a name gives None (hub branches such as ``fp16`` are not checkpoints).
    """
    for pattern in STEP_PATTERNS:
        match = pattern.search(name)
        if match:
            groups = match.groups()
            tokens = None
            if len(groups) == 3 and groups[1] is not None:
                tokens = int(groups[1]) * TOKEN_UNITS[groups[2].upper()]
            return int(groups[0]), tokens
    match = FALLBACK_NUMBER.search(name) if fallback else None
    return (int(match.group(1)), None) if match else None


def series_prefix(name: str) -> str:
    """What a checkpoint name says before its step: ``stage2-ingredient1`` of
    ``stage2-ingredient1-step1000-tokens5B``, ``stage1`` of ``stage1-step1000-tokens4B``,
    empty for ``step1000`` or ``ckpt_042``. Checkpoints of one series share it."""
    match = STEP_PATTERNS[0].search(name)
    return name[: match.start()].strip("-_") if match else ""


def is_checkpoint_dir(path: Path) -> bool:
    """A folder with a config.json or a weights file."""
    if not path.is_dir():
        return False
    if (path / "config.json").is_file():
        return True
    return any(p.suffix in WEIGHT_SUFFIXES for p in path.iterdir() if p.is_file())


def weight_files(folder: Path) -> list[Path]:
    """Weight files of a checkpoint folder, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def hash_weights(folder: Path) -> str | None:
    """sha256 over a checkpoint's weight files (names and bytes); None if it has none."""
    files = weight_files(folder)
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            while chunk := handle.read(HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def discover_run(root: Path) -> FoundRun:
    """Find the checkpoint series directly under ``root``; sorted, de-duplicated steps."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise LdwError(f"{root}: not a folder")
    found: dict[int, FoundCheckpoint] = {}
    warnings: list[str] = []
    for child in sorted(root.iterdir()):
        if not is_checkpoint_dir(child):
            continue
        parsed = parse_step(child.name)
        if parsed is None:
            warnings.append(f"{child}: no step number in the folder name; skipped")
            continue
        step, tokens = parsed
        if step in found:
            warnings.append(f"{child}: step {step} also in {found[step].path.name}; keeping the first")
            continue
        found[step] = FoundCheckpoint(step, child, tokens)
    checkpoints = [found[s] for s in sorted(found)]
    kind, metadata = _run_kind(root, checkpoints)
    if kind != "ldw_trainer" and checkpoints:
        seed, source, seed_warnings = plain_text_seed(root)
        if seed is not None:
            metadata = {**metadata, "seed": seed, "seed_source": source}
        warnings.extend(seed_warnings)
    return FoundRun(root, kind, checkpoints, metadata, warnings)


def discover_paths(paths: list[Path]) -> list[FoundRun]:
    """Runs under each path: the path itself, or, when it holds no checkpoints, its sub-folders."""
    runs: list[FoundRun] = []
    for path in paths:
        run = discover_run(path)
        if run.checkpoints:
            runs.append(run)
            continue
        children = [discover_run(c) for c in sorted(Path(path).iterdir()) if c.is_dir()]
        children = [c for c in children if c.checkpoints]
        if not children:
            raise LdwError(
                f"{Path(path).resolve()}: no checkpoint folders found (expected e.g. step1000/ "
                "or checkpoint-500/ holding config.json and weights)"
            )
        runs.extend(children)
    return runs


def _run_kind(root: Path, checkpoints: list[FoundCheckpoint]) -> tuple[str, dict]:
    run_json = root / "run.json"
    if run_json.is_file():
        try:
            return "ldw_trainer", json.loads(run_json.read_text())
        except json.JSONDecodeError as exc:
            raise LdwError(f"{run_json}: invalid JSON ({exc.msg} at line {exc.lineno})") from exc
    if any((c.path / "trainer_state.json").is_file() for c in checkpoints):
        return "hf_trainer", {}
    return "step_folders", {}
