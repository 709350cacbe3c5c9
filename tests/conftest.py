"""Shared fixtures: a real tiny training run saved by transformers, and a warehouse built on it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ldw.ingest.register import ingest_paths
from ldw.sweep.config import EvalSetConfig
from ldw.sweep.evalset import build_eval_set
from ldw.train.config import TrainConfig
from ldw.train.trainer import train_run


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--runslow``: also run the full-size versions of long tests (marked ``full``); ``--chaos-rounds N``."""
    parser.addoption("--runslow", action="store_true", help="also run the full-size tests marked 'full' (minutes)")
    parser.addoption(
        "--chaos-rounds", type=int, default=1, help="rounds of the warehouse chaos test (random concurrent commands)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests marked ``full`` unless ``--runslow`` is given."""
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="full-size version: run with --runslow")
    for item in items:
        if "full" in item.keywords:
            item.add_marker(skip)


TINY_TRAIN = TrainConfig(steps=24, save_every=8, batch_size=8, seq_len=32, vocab_size=320, warmup_steps=4, device="cpu")
TINY_EVAL = EvalSetConfig(corpus="builtin", split="heldout", seq_len=32, n_sequences=40)


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two seeds of a tiny GPT-NeoX trained for a few steps (shared tokenizer)."""
    root = tmp_path_factory.mktemp("runs")
    first = train_run(TINY_TRAIN, root / "seed0", progress=False)
    second = TrainConfig(**{**TINY_TRAIN.to_dict(), "seed": 1, "tokenizer": str(first / "tokenizer")})
    return [first, train_run(second, root / "seed1", progress=False)]


@pytest.fixture(scope="session")
def _ingested(tiny_runs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    wh = tmp_path_factory.mktemp("wh") / "warehouse"
    ingest_paths(wh, tiny_runs, progress=False)
    build_eval_set(wh, TINY_EVAL)
    return wh


@pytest.fixture()
def ingested_warehouse(_ingested: Path, tmp_path: Path) -> Path:
    """A fresh copy of a warehouse with both tiny runs ingested and an evaluation set, not yet swept."""
    target = tmp_path / "warehouse"
    shutil.copytree(_ingested, target)
    return target
