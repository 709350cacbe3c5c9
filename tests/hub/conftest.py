"""Fixtures of the Hugging Face Hub tests: a local FakeHub serving the tiny test runs' real checkpoints as
branches, and the real ``huggingface_hub`` client pointed at it.

huggingface_hub reads ``HF_ENDPOINT``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` into
``huggingface_hub.constants`` when it is first imported, and derives the download URL template
from the endpoint then. In-process tests therefore patch those constants (``hub_client``);
tests that run the ``ldw`` command get the plain environment variables (``hub_env``), as a
user's shell would set them. The token is read from the environment on every request.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ldw.curves.store import compute_metrics
from ldw.ingest.config import IngestConfig
from ldw.ingest.register import ingest_paths
from ldw.sweep.config import SweepConfig
from ldw.sweep.evalset import build_eval_set
from ldw.sweep.run import run_sweep
from ldw.warehouse import Warehouse
from tests.conftest import TINY_EVAL
from tests.hub.fakehub import FakeHub, Faults

ORG = "fake-org"
PYTHIA = f"{ORG}/pythia-tiny"
PYTHIA_SEED1 = f"{ORG}/pythia-tiny-seed1"
OLMO = f"{ORG}/olmo-tiny"
TOKEN = "hf_ldwTestToken8c1e5a0f93"  # distinctive, so a plain search finds any leak
# Trained step of the tiny runs -> the Pythia-style branch name it is served under.
PYTHIA_BRANCHES = {0: "step0", 1: "step1", 2: "step2", 4: "step4", 8: "step8", 16: "step1000", 24: "step2000"}
OLMO_BRANCHES = {
    0: "stage1-step0-tokens0B",
    8: "stage1-step1000-tokens4B",
    16: "stage1-step2000-tokens8B",
    24: "stage2-ingredient1-step1000-tokens2B",
}
OLMO_DUPLICATE = ("stage1-step3000-tokens12B", 16)  # same weights as stage1-step2000-tokens8B
SHA256_NAME = re.compile(r"[0-9a-f]{64}")
SWEEP = SweepConfig(device="cpu", batch_size=4)
HF_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT")


def save_revision(run: Path, step: int, target: Path) -> None:
    """Serve the tiny run's checkpoint of ``step`` (save_pretrained output with its tokenizer) as a branch."""
    shutil.copytree(run / f"step{step}", target)


@pytest.fixture(scope="session")
def hub_root(tiny_runs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Repository folders: two Pythia-named seeds and an OLMo-named repository with two series and a duplicate."""
    root = tmp_path_factory.mktemp("hub")
    for repo, run in ((PYTHIA, tiny_runs[0]), (PYTHIA_SEED1, tiny_runs[1])):
        for step, branch in PYTHIA_BRANCHES.items():
            save_revision(run, step, root / repo / branch)
    for step, branch in OLMO_BRANCHES.items():
        save_revision(tiny_runs[1], step, root / OLMO / branch)
    save_revision(tiny_runs[1], OLMO_DUPLICATE[1], root / OLMO / OLMO_DUPLICATE[0])
    return root


@pytest.fixture(scope="session")
def _hub_server(hub_root: Path) -> Iterator[FakeHub]:
    with FakeHub(hub_root) as server:
        yield server


@pytest.fixture
def hub(_hub_server: FakeHub) -> FakeHub:
    """The running FakeHub with no faults and an empty request log."""
    _hub_server.faults = Faults()
    _hub_server.log.clear()
    return _hub_server


@pytest.fixture
def hub_client(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point this process's huggingface_hub at ``hub`` with an empty cache and no token; the cache folder."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-stored-tokens"))
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    for name in HF_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return cache


@pytest.fixture
def hub_env(hub: FakeHub, tmp_path: Path) -> dict[str, str]:
    """Environment for an ``ldw`` subprocess using ``hub``: its own HF_HOME and cache, no token, no proxy."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING")) and k != "TRANSFORMERS_OFFLINE"}
    env.update(
        HF_ENDPOINT=hub.endpoint,
        HF_HOME=str(tmp_path / "hf-home"),
        HF_HUB_CACHE=str(tmp_path / "hf-cache"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_XET="1",
        NO_PROXY="127.0.0.1,localhost",
    )
    return env


@pytest.fixture(scope="session")
def disk_warehouse(hub_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two Pythia-named repositories' folders ingested from disk and swept, with metrics."""
    wh = tmp_path_factory.mktemp("disk") / "wh"
    ingest_paths(wh, [hub_root / PYTHIA, hub_root / PYTHIA_SEED1], progress=False)
    build_eval_set(wh, TINY_EVAL)
    run_sweep(wh, SWEEP, progress=False)
    compute_metrics(wh, progress=False)
    return wh


def hub_warehouse(wh: Path, *repos: str, **options) -> Path:
    """A warehouse with ``repos`` ingested from the (fake) Hub and the tiny evaluation set."""
    ingest_paths(wh, [f"hf:{r}" for r in repos], IngestConfig(**options), progress=False)
    build_eval_set(wh, TINY_EVAL)
    return wh


def surprisal(wh: Path) -> pl.DataFrame:
    """Every surprisal row, in a fixed order."""
    return Warehouse.open(wh).query("SELECT * FROM surprisal ORDER BY run_id, step, token_idx")


def assert_bitwise_equal(got: pl.DataFrame, want: pl.DataFrame) -> None:
    """Same rows, and the same float32 bits."""
    assert got.drop("surprisal_bits").equals(want.drop("surprisal_bits"))
    bits = [f["surprisal_bits"].to_numpy().view(np.uint32) for f in (got, want)]
    assert np.array_equal(*bits)


def cached_weights(cache: Path) -> list[Path]:
    """Weight files in a Hugging Face cache folder: blobs named by a sha256 (LFS files; config and tokenizer
    files are plain git files, named by their 40-digit git oid)."""
    return sorted(p for p in cache.glob("models--*/blobs/*") if SHA256_NAME.fullmatch(p.name))


def partial_downloads(cache: Path) -> list[Path]:
    """Downloads left unfinished in a Hugging Face cache folder."""
    return sorted(cache.glob("models--*/blobs/*.incomplete"))
