"""A run's seed from what its folder states in plain text (a settings file, the folder name), never a pickle."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from ldw.ingest.discover import discover_run
from ldw.ingest.run_seed import plain_text_seed


def _run(root: Path) -> Path:
    """A run folder with one checkpoint folder (config + weights) and a Trainer-style pickled args file."""
    step = root / "checkpoint-10"
    step.mkdir(parents=True)
    (step / "config.json").write_text(json.dumps({"model_type": "gpt_neox"}))
    (step / "model.safetensors").write_bytes(b"weights")
    (step / "training_args.bin").write_bytes(pickle.dumps({"seed": 99}))
    (step / "trainer_state.json").write_text(json.dumps({"log_history": [], "seed": 98}))
    return root


@pytest.mark.parametrize(
    "name, text, seed",
    [
        ("training_args.json", json.dumps({"seed": 7, "learning_rate": 1e-4}), 7),
        ("config.yaml", "model: tiny\nseed: 3\n", 3),
        ("args.yml", "training:\n  seed: 5\n  lr: 0.1\n", 5),
        ("hparams.json", json.dumps({"data": {"seed": 2}, "model": {"seed": 2}}), 2),
    ],
)
def test_seed_from_a_settings_file_beside_the_checkpoints(tmp_path: Path, name: str, text: str, seed: int) -> None:
    root = _run(tmp_path / "run")
    (root / name).write_text(text)
    assert plain_text_seed(root) == (seed, name, [])


def test_seed_from_the_folder_name(tmp_path: Path) -> None:
    for name, seed in (("seed3", 3), ("pythia-160m-seed_4", 4), ("run-SEED-12", 12)):
        assert plain_text_seed(_run(tmp_path / name)) == (seed, "folder name", [])
    assert plain_text_seed(_run(tmp_path / "myseed3"))[0] is None  # "seed" inside a word is not a seed


def test_a_file_wins_over_the_name_and_disagreement_is_warned(tmp_path: Path) -> None:
    root = _run(tmp_path / "seed1")
    (root / "a.json").write_text(json.dumps({"seed": 8}))
    (root / "b.yaml").write_text("seed: 9\n")
    seed, source, warnings = plain_text_seed(root)
    assert (seed, source) == (8, "a.json")
    assert len(warnings) == 1 and "b.yaml says 9" in warnings[0]


def test_nothing_stated_means_no_seed_and_pickles_are_never_read(tmp_path: Path) -> None:
    root = _run(tmp_path / "run")
    (root / "training_args.bin").write_bytes(pickle.dumps({"seed": 99}))
    (root / "broken.json").write_text("{not json")
    (root / "flags.json").write_text(json.dumps({"seed": True, "shuffle_seed": 4}))
    (root / "trainer_state.json").write_text(json.dumps({"seed": 98}))  # the Trainer's log, not settings
    assert plain_text_seed(root) == (None, None, [])


def test_discovered_runs_carry_the_seed_and_where_it_came_from(tmp_path: Path) -> None:
    root = _run(tmp_path / "finetune-seed6")
    run = discover_run(root)
    assert run.kind == "hf_trainer"
    assert run.metadata["seed"] == 6 and run.metadata["seed_source"] == "folder name"
