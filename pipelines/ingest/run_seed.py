"""A run's seed from what its folder states in plain text, for runs not written by the reference trainer.

Looked for, in order: a ``seed`` key in a JSON or YAML file in the run folder
(top level, or one level down as in ``{"training": {"seed": 3}}``; files such
as ``training_args.json``, ``config.yaml``, ``args.json``), then a ``seedN``
in the run folder's name (``seed3``, ``run-seed_2``, ``pythia-160m-seed4``).
Binary files are never read: ``training_args.bin`` is a pickle, and
unpickling runs code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
MAX_CONFIG_BYTES = 1 << 20  # a run's settings file is small; larger JSON is a log or data
SKIPPED_FILES = {"trainer_state.json", "tokenizer.json", "vocab.json", "tokenizer_config.json"}
SEED_IN_NAME = re.compile(r"(?:^|[^a-z])seed[-_]?(\d+)(?!\d)", re.IGNORECASE)


def _seed_value(value: Any) -> int | None:
    """An integer seed (bools and negative numbers are not seeds)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _seed_in(settings: Any) -> int | None:
    """``seed`` at the top of a parsed settings mapping, else in one of its sub-mappings (when they agree)."""
    if not isinstance(settings, dict):
        return None
    top = _seed_value(settings.get("seed"))
    if top is not None:
        return top
    nested = {_seed_value(v.get("seed")) for v in settings.values() if isinstance(v, dict)} - {None}
    return nested.pop() if len(nested) == 1 else None


def _read_settings(path: Path) -> Any:
    """The parsed JSON / YAML of ``path``, or None when it is not readable as such."""
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
        return None


def plain_text_seed(root: Path) -> tuple[int | None, str | None, list[str]]:
    """(seed, where it was found, warnings) for the run folder ``root``; (None, None, []) when nothing states it."""
    found: dict[str, int] = {}
    for path in sorted(Path(root).iterdir()):
        if path.suffix.lower() not in CONFIG_SUFFIXES or path.name in SKIPPED_FILES or not path.is_file():
            continue
        if path.stat().st_size > MAX_CONFIG_BYTES:
            continue
        seed = _seed_in(_read_settings(path))
        if seed is not None:
            found[path.name] = seed
    if found:
        name, seed = next(iter(found.items()))
        others = {n: s for n, s in found.items() if s != seed}
        warnings = (
            [f"{root}: seed {seed} from {name}, but " + ", ".join(f"{n} says {s}" for n, s in others.items())]
            if others
            else []
        )
        return seed, name, warnings
    match = SEED_IN_NAME.search(Path(root).name)
    if match:
        return int(match.group(1)), "folder name", []
    return None, None, []
