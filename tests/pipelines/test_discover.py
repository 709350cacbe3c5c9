"""Checkpoint discovery: step names of every suite, sorting, de-duplication, weight hashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ldw.errors import LdwError
from ldw.ingest.discover import discover_paths, discover_run, hash_weights, parse_step


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("step0", (0, None)),
        ("step143000", (143000, None)),
        ("checkpoint-500", (500, None)),
        ("step1000-tokens4B", (1000, 4 * 10**9)),
        ("stage1-step5000-tokens21B", (5000, 21 * 10**9)),
        ("stage2-ingredient1-step11931-tokens50B", (11931, 50 * 10**9)),
        ("step20-tokens84M", (20, 84 * 10**6)),
        ("ckpt_042", (42, None)),
        ("global_step1200", (1200, None)),
        ("iter_0001000", (1000, None)),
        ("model_at_750", (750, None)),
        ("final", None),
    ],
)
def test_parse_step(name: str, expected: tuple[int, int | None] | None) -> None:
    assert parse_step(name) == expected


def _ckpt(folder: Path, payload: bytes = b"w") -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(payload)


def test_steps_sorted_and_duplicates_dropped(tmp_path: Path) -> None:
    for name in ("step8", "step16", "step2", "checkpoint-16", "notes"):
        if name == "notes":
            (tmp_path / name).mkdir()
        else:
            _ckpt(tmp_path / name, name.encode())
    run = discover_run(tmp_path)
    assert [c.step for c in run.checkpoints] == [2, 8, 16]
    assert any("step 16 also in" in w for w in run.warnings)
    assert run.kind == "step_folders"


def test_parent_folder_expands_to_runs(tmp_path: Path) -> None:
    _ckpt(tmp_path / "seed0" / "step1")
    _ckpt(tmp_path / "seed1" / "step1")
    assert [r.root.name for r in discover_paths([tmp_path])] == ["seed0", "seed1"]


def test_folder_without_checkpoints_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(LdwError, match="no checkpoint folders"):
        discover_paths([tmp_path / "empty"])


def test_hash_weights_detects_identical_weights(tmp_path: Path) -> None:
    _ckpt(tmp_path / "a", b"same")
    _ckpt(tmp_path / "b", b"same")
    _ckpt(tmp_path / "c", b"other")
    assert hash_weights(tmp_path / "a") == hash_weights(tmp_path / "b") != hash_weights(tmp_path / "c")
