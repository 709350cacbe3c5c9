"""``ldw sweep`` on runs ingested from the Hub: streamed downloads, the cache, faults, and bitwise equality with
the same checkpoints read from disk."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import torch

from ldw.curves.store import compute_metrics
from ldw.sweep.config import SweepConfig
from ldw.sweep.run import run_sweep
from ldw.warehouse import Warehouse
from tests.hub.conftest import (
    PYTHIA,
    PYTHIA_BRANCHES,
    PYTHIA_SEED1,
    SWEEP,
    assert_bitwise_equal,
    cached_weights,
    hub_warehouse,
    partial_downloads,
    surprisal,
)
from tests.hub.fakehub import FakeHub
from tests.pipelines.warehouse_compare import assert_doctor_sound


class CacheWatch:
    """Counts the weight files in a Hugging Face cache every few milliseconds while a sweep runs."""

    def __init__(self, cache: Path) -> None:
        self.cache, self.peak, self._stop = cache, 0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> CacheWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, len(cached_weights(self.cache)))


def test_hub_sweep_equals_the_same_checkpoints_read_from_disk(
    hub_client: Path, hub: FakeHub, disk_warehouse: Path, tmp_path: Path
) -> None:
    wh = hub_warehouse(tmp_path / "wh", PYTHIA, PYTHIA_SEED1)
    with CacheWatch(hub_client) as watch:
        summary = run_sweep(wh, SWEEP, progress=False)
    assert summary.scored == 2 * len(PYTHIA_BRANCHES) and not summary.failed
    assert_bitwise_equal(surprisal(wh), surprisal(disk_warehouse))
    compute_metrics(wh, progress=False)
    for table in ("token_metrics", "crossrun_metrics"):
        got, want = (Warehouse.open(w).query(f"SELECT * FROM {table}") for w in (wh, disk_warehouse))
        keys = [c for c in ("run_id", "token_idx") if c in got.columns]
        assert got.sort(keys).equals(want.sort(keys)), table
    # downloads streamed: at most two checkpoints in the cache at once, none left, no partial file
    assert 1 <= watch.peak <= 2
    assert cached_weights(hub_client) == [] and partial_downloads(hub_client) == []
    weight_gets = [r for r in hub.log if r.method == "GET" and r.path.endswith("model.safetensors")]
    assert len(weight_gets) == summary.scored
    settings = json.loads(Warehouse.open(wh).query("SELECT settings FROM sweeps")["settings"][0])
    assert settings["hub"]["keep_weights"] is False and settings["prefetch"] == 1
    assert {"repo_id": PYTHIA, "revision": "step1000", "commit": hub.commit_sha(PYTHIA, "step1000")} in settings["hub"][
        "revisions"
    ]
    assert_doctor_sound(wh)


def test_keep_weights_then_cached_revisions_need_no_network(
    hub_client: Path, hub: FakeHub, disk_warehouse: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from huggingface_hub import constants

    unswept = hub_warehouse(tmp_path / "unswept", PYTHIA)
    for name in ("kept", "warm", "offline"):
        shutil.copytree(unswept, tmp_path / name)
    run_sweep(tmp_path / "kept", SweepConfig(device="cpu", batch_size=4, keep_weights=True), progress=False)
    kept = cached_weights(hub_client)
    assert len(kept) == len(PYTHIA_BRANCHES)

    hub.log.clear()  # online, but every revision is in the cache: no request, and the cache is left as it was
    assert run_sweep(tmp_path / "warm", SWEEP, progress=False).scored == len(PYTHIA_BRANCHES)
    assert hub.log == [] and cached_weights(hub_client) == kept

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert run_sweep(tmp_path / "offline", SWEEP, progress=False).scored == len(PYTHIA_BRANCHES)
    assert hub.log == []
    want = surprisal(disk_warehouse).filter(run_id="pythia-tiny")
    for name in ("kept", "warm", "offline"):
        assert_bitwise_equal(surprisal(tmp_path / name), want)


def test_offline_without_the_files_fails_each_checkpoint_clearly(
    hub_client: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from huggingface_hub import constants

    wh = hub_warehouse(tmp_path / "wh", PYTHIA, revisions=("step1", "step2"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    summary = run_sweep(wh, SWEEP, progress=False)
    assert summary.scored == 0 and len(summary.failed) == 2
    error = Warehouse.open(wh).checkpoints().filter(step=1)["error"][0]
    assert error.startswith(f"hf:{PYTHIA}@step1: not in the Hugging Face cache") and "HF_HUB_OFFLINE" in error


def test_a_cut_download_is_resumed(hub_client: Path, hub: FakeHub, disk_warehouse: Path, tmp_path: Path) -> None:
    wh = hub_warehouse(tmp_path / "wh", PYTHIA)
    hub.faults.cut[f"{PYTHIA}/model.safetensors"] = 2
    summary = run_sweep(wh, SWEEP, progress=False)
    assert summary.scored == len(PYTHIA_BRANCHES) and not summary.failed
    assert_bitwise_equal(surprisal(wh), surprisal(disk_warehouse).filter(run_id="pythia-tiny"))
    assert partial_downloads(hub_client) == []


@pytest.mark.slow
def test_a_download_that_keeps_failing_fails_its_checkpoint_alone(
    hub_client: Path, hub: FakeHub, tmp_path: Path
) -> None:
    """huggingface_hub resumes a cut body 5 times (1 s apart); ldw then tries the fetch again after a backoff."""
    wh = hub_warehouse(tmp_path / "wh", PYTHIA, revisions=("step0", "step1", "step2"))
    hub.faults.cut[f"{PYTHIA}/model.safetensors"] = 12  # the first checkpoint's two attempts of 6 GETs each
    summary = run_sweep(wh, SweepConfig(device="cpu", batch_size=4, fetch_attempts=2), progress=False)
    assert summary.scored == 2 and len(summary.failed) == 1
    checkpoints = Warehouse.open(wh).checkpoints()
    assert checkpoints["status"].to_list() == ["failed", "done", "done"]
    error = checkpoints["error"][0]
    assert error.startswith(f"hf:{PYTHIA}@step0: ") and error.endswith("(tried 2 times)") and "\n" not in error
    commit = hub.commit_sha(PYTHIA, "step0")
    gets = [r for r in hub.log if r.method == "GET" and r.path == f"/{PYTHIA}/resolve/{commit}/model.safetensors"]
    assert len(gets) == 12
    assert partial_downloads(hub_client) == [] and cached_weights(hub_client) == []


def test_a_vanished_revision_fails_with_a_clear_error(hub_client: Path, hub: FakeHub, tmp_path: Path) -> None:
    wh = hub_warehouse(tmp_path / "wh", PYTHIA, revisions=("step4", "step8"))
    hub.faults.vanished.add((PYTHIA, "step8"))
    summary = run_sweep(wh, SWEEP, progress=False)
    assert summary.scored == 1
    error = Warehouse.open(wh).checkpoints().filter(step=8)["error"][0]
    assert error.startswith(f"hf:{PYTHIA}@step8: revision no longer on the Hub")


def test_pickled_weights_load_only_through_weights_only(
    hub_client: Path, hub_root: Path, tiny_runs: list[Path], disk_warehouse: Path, tmp_path: Path
) -> None:
    """A revision with pytorch_model.bin scores like its safetensors twin; a malicious pickle is refused unrun."""
    from transformers import AutoModelForCausalLM

    repo = f"fake-org/pickled-{tmp_path.name}"
    source = tiny_runs[0] / "step1"
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for branch, state in (
        ("step1", AutoModelForCausalLM.from_pretrained(source).state_dict()),
        ("step2", {"gpt_neox.embed_in.weight": Payload()}),
    ):
        folder = hub_root / repo / branch
        shutil.copytree(source, folder, ignore=shutil.ignore_patterns("*.safetensors"))
        torch.save(state, folder / "pytorch_model.bin")
    wh = hub_warehouse(tmp_path / "wh", repo)
    summary = run_sweep(wh, SWEEP, progress=False)
    assert summary.scored == 1 and not marker.exists()
    error = Warehouse.open(wh).checkpoints().filter(step=2)["error"][0]
    assert error.startswith(f"hf:{repo}@step2: ") and "refused: the pickled weights reference io.open" in error
    got = surprisal(wh).filter(step=1).drop("run_id")
    assert_bitwise_equal(got, surprisal(disk_warehouse).filter(run_id="pythia-tiny", step=1).drop("run_id"))
