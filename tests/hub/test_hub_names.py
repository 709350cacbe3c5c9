"""Naming schemes of published checkpoint branches, and how ``ldw ingest hf:...`` chooses among them."""

from __future__ import annotations

import pytest

from ldw.errors import LdwError
from ldw.ingest.config import IngestConfig
from ldw.ingest.discover import parse_step, series_prefix
from ldw.ingest.hub import HubCheckpoint, hub_repo, scoring_files, select_branches

PYTHIA = ["main", "step0", "step1", "step2", "step4", "step512", "step1000", "step143000"]
OLMO = [
    "main",
    "stage1-step0-tokens0B",
    "stage1-step1000-tokens5B",
    "stage1-step2000-tokens9B",
    "stage2-ingredient1-step1000-tokens5B",
    "stage2-ingredient2-step1000-tokens5B",
]


def _branches(names: list[str]) -> dict[str, str]:
    return {name: f"{i:040x}" for i, name in enumerate(names)}


@pytest.mark.parametrize(
    "name, parsed",
    [
        ("step143000", (143000, None)),
        ("step20000-tokens84B", (20000, 84 * 10**9)),
        ("stage1-step928646-tokens3896B", (928646, 3896 * 10**9)),
        ("stage2-ingredient3-step11931-tokens50B", (11931, 50 * 10**9)),
        ("ckpt_358", (358, None)),
        ("main", None),
        ("fp16", None),  # a number that is not a step: only the local folder parser falls back to it
    ],
)
def test_branch_names_parse_without_fallback(name: str, parsed: tuple | None) -> None:
    assert parse_step(name, fallback=False) == parsed


def test_folder_names_still_fall_back_to_their_last_number() -> None:
    assert parse_step("fp16") == (16, None)


def test_series_prefix() -> None:
    assert [series_prefix(n) for n in OLMO[1:]] == ["stage1"] * 3 + ["stage2-ingredient1", "stage2-ingredient2"]
    assert series_prefix("step1000") == series_prefix("ckpt_001") == ""


@pytest.mark.parametrize(
    "text, repo",
    [
        ("hf:EleutherAI/pythia-160m", "EleutherAI/pythia-160m"),
        ("hf://allenai/OLMo-2-0425-1B", "allenai/OLMo-2-0425-1B"),
    ],
)
def test_hub_specs(text: str, repo: str) -> None:
    assert hub_repo(text) == repo
    assert hub_repo("runs/seed0") is None


def test_a_malformed_spec_is_a_clear_error() -> None:
    with pytest.raises(LdwError, match="expected hf:ORG/NAME"):
        hub_repo("hf:pythia-160m")


def test_pythia_branches_in_step_order_without_main() -> None:
    rows, warnings = select_branches("org/p", _branches(PYTHIA), None, None)
    assert [r[2] for r in rows] == [0, 1, 2, 4, 512, 1000, 143000]
    assert [r[0] for r in rows][:2] == ["step0", "step1"] and "main" in warnings[0]


def test_patterns_lists_and_every() -> None:
    config = IngestConfig(revisions=("step1*,step0", "step4"))
    assert config.revisions == ("step1*", "step0", "step4")
    rows, _ = select_branches("org/p", _branches(PYTHIA), config.revisions, None)
    assert [r[0] for r in rows] == ["step0", "step1", "step4", "step1000", "step143000"]
    rows, _ = select_branches("org/p", _branches(PYTHIA), ("step*",), 3)
    assert [r[2] for r in rows] == [0, 4, 143000]  # every third, and the last
    rows, _ = select_branches("org/p", _branches(PYTHIA), ("step*",), 2)
    assert [r[2] for r in rows] == [0, 2, 512, 143000]  # the last is the 7th: taken anyway


def test_olmo_series_default_to_the_largest_and_explicit_mixes_are_refused() -> None:
    rows, warnings = select_branches("org/o", _branches(OLMO), None, None)
    assert [r[0] for r in rows] == OLMO[1:4] and [r[3] for r in rows] == [0, 5 * 10**9, 9 * 10**9]
    assert any("'stage2-ingredient1*' (1)" in w for w in warnings)
    rows, _ = select_branches("org/o", _branches(OLMO), ("stage2-ingredient2-*",), None)
    assert [r[0] for r in rows] == ["stage2-ingredient2-step1000-tokens5B"]
    with pytest.raises(LdwError, match="several series"):
        select_branches("org/o", _branches(OLMO), ("stage*",), None)


def test_no_checkpoint_branch_is_a_clear_error() -> None:
    with pytest.raises(LdwError, match="no branch matching step9.* names a step"):
        select_branches("org/p", _branches(PYTHIA), ("step9*",), None)
    with pytest.raises(LdwError, match="--every must be at least 1"):
        IngestConfig(every=0)


def test_scoring_files_prefer_safetensors_and_take_every_shard() -> None:
    assert scoring_files(["config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json"]) == [
        "config.json",
        "model.safetensors",
    ]
    sharded = ["config.json", "model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors"]
    assert scoring_files([*sharded, "model.safetensors.index.json"]) == [
        "config.json",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    assert scoring_files(["config.json", "pytorch_model.bin"]) == ["config.json", "pytorch_model.bin"]
    assert scoring_files(["config.json", "weights.pt"]) == ["config.json", "weights.pt"]
    assert scoring_files(["model.safetensors"]) is None
    assert scoring_files(["config.json", "tokenizer.json"]) is None


def test_content_hash_follows_the_weights_only() -> None:
    one = HubCheckpoint("o/r", "step1", "a" * 40, 1, None, {"config.json": None, "model.safetensors": "1" * 64})
    same = HubCheckpoint("o/r", "step2", "b" * 40, 2, None, {"config.json": None, "model.safetensors": "1" * 64})
    other = HubCheckpoint("o/r", "step3", "c" * 40, 3, None, {"config.json": None, "model.safetensors": "2" * 64})
    assert one.content_hash() == same.content_hash() != other.content_hash()
    assert HubCheckpoint("o/r", "s", "d" * 40, 4, None, {"config.json": None, "w.pt": None}).content_hash() is None
    assert one.path == "hf:o/r@step1"
