"""`ldw sweep --executor ray` on a real local Ray cluster (CPUs only): the same files as a local sweep."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from ldw.errors import LdwError
from ldw.ingest.register import ingest_paths
from ldw.sweep.config import SweepConfig
from ldw.sweep.evalset import build_eval_set
from ldw.sweep.run import run_sweep
from ldw.warehouse import Warehouse
from ldw.warehouse.doctor import check_warehouse
from ldw.warehouse.parquet_io import file_identity, file_schema_version
from tests.conftest import TINY_EVAL

ray = pytest.importorskip("ray")
RAY_ENV = {"RAY_DISABLE_USAGE_STATS": "1"}


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A local Ray cluster of 2 CPUs and a small object store; yields its address."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in RAY_ENV.items():
            patch.setenv(key, value)
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20, logging_level=logging.WARNING)
        try:
            yield ray.get_runtime_context().gcs_address
        finally:
            ray.shutdown()


def _catalog(path: Path) -> list[tuple]:
    return (
        Warehouse.open(path)
        .query("SELECT run_id, step, status, error, n_tokens FROM checkpoints ORDER BY run_id, step")
        .rows()
    )


def _settings(path: Path) -> dict:
    return json.loads(Warehouse.open(path).query("SELECT settings FROM sweeps")["settings"][0])


def test_ray_sweep_writes_the_files_a_local_sweep_writes(
    ray_cluster: str, ingested_warehouse: Path, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    shutil.copytree(ingested_warehouse, local)
    by_ray = run_sweep(ingested_warehouse, SweepConfig(device="cpu", executor="ray"), progress=False)
    by_local = run_sweep(local, SweepConfig(device="cpu"), progress=False)
    total = Warehouse.open(local).checkpoints().height
    assert by_ray.scored == by_local.scored == total and not by_ray.failed
    assert by_ray.tokens == by_local.tokens > 0
    assert _catalog(ingested_warehouse) == _catalog(local)
    ray_files = sorted((ingested_warehouse / "parquet" / "surprisal").glob("*/*/*.parquet"))
    local_files = sorted((local / "parquet" / "surprisal").glob("*/*/*.parquet"))
    assert [f.relative_to(ingested_warehouse) for f in ray_files] == [f.relative_to(local) for f in local_files]
    assert len(ray_files) == total
    for got_file, want_file in zip(ray_files, local_files, strict=True):
        got, want = pq.read_table(got_file), pq.read_table(want_file)
        assert got.schema.equals(want.schema) and file_schema_version(got.schema) == file_schema_version(want.schema)
        # each file records the same run, step and evaluation set; its sweep and write time are its own
        per_write = ("sweep_id", "written_at")
        got_identity, want_identity = file_identity(got.schema), file_identity(want.schema)
        assert {k: v for k, v in got_identity.items() if k not in per_write} == {
            k: v for k, v in want_identity.items() if k not in per_write
        }
        assert got.drop(["surprisal_bits"]).equals(want.drop(["surprisal_bits"]))
        np.testing.assert_allclose(
            got["surprisal_bits"].to_numpy(), want["surprisal_bits"].to_numpy(), rtol=1e-6, atol=1e-6
        )
    assert check_warehouse(Warehouse.open(ingested_warehouse)) == []
    settings = _settings(ingested_warehouse)
    assert settings["executor"] == "ray" and settings["ray_nodes"] == 1 and settings["device"] == "cpu"
    assert settings["units"] == "bits" and _settings(local)["executor"] == "local"


def test_damaged_checkpoints_fail_alone_under_ray(ray_cluster: str, tiny_runs: list[Path], tmp_path: Path) -> None:
    run = tmp_path / "damaged"
    shutil.copytree(tiny_runs[0], run)
    weights = run / "step2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (run / "step4" / "config.json").unlink()
    on_ray, on_local = tmp_path / "ray", tmp_path / "local"
    ingest_paths(on_ray, [run], progress=False)
    build_eval_set(on_ray, TINY_EVAL)
    shutil.copytree(on_ray, on_local)
    summary = run_sweep(on_ray, SweepConfig(device="cpu", executor="ray"), progress=False)
    run_sweep(on_local, SweepConfig(device="cpu"), progress=False)
    assert len(summary.failed) == 2
    catalog = _catalog(on_ray)
    assert catalog == _catalog(on_local)  # same statuses, same one-line errors
    failed = {step: error for _, step, status, error, _ in catalog if status == "failed"}
    assert set(failed) == {2, 4}
    assert str(run / "step2") in failed[2] and "cannot load weights" in failed[2] and "no config.json" in failed[4]
    assert all(status == "done" for _, step, status, _, _ in catalog if step not in failed)


def test_shards_compose_with_ray(ray_cluster: str, ingested_warehouse: Path) -> None:
    wh = Warehouse.open(ingested_warehouse)
    keys = wh.query("SELECT run_id, step FROM checkpoints ORDER BY run_id, step").rows()
    first = run_sweep(ingested_warehouse, SweepConfig(device="cpu", shard=(0, 2), executor="ray"), progress=False)
    done = set(wh.query("SELECT run_id, step FROM checkpoints WHERE status = 'done'").rows())
    assert first.scored == len(done) == (len(keys) + 1) // 2 and done == set(keys[0::2])
    second = run_sweep(ingested_warehouse, SweepConfig(device="cpu", shard=(1, 2), executor="ray"), progress=False)
    assert second.scored == len(keys) - first.scored and second.skipped == 0
    again = run_sweep(ingested_warehouse, SweepConfig(device="cpu", executor="ray"), progress=False)
    assert again.scored == 0 and again.skipped == len(keys)
    assert wh.query("SELECT count(*) AS n FROM surprisal")["n"][0] == len(keys) * wh.token_count()
    assert check_warehouse(wh) == []


@pytest.mark.full  # the executor itself is tested above; this adds the CLI's cluster address (22 s)
def test_cli_sweep_on_a_running_cluster(ray_cluster: str, ingested_warehouse: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "ldw",
        "sweep",
        "-w",
        str(ingested_warehouse),
        "--executor",
        "ray",
        "--ray-address",
        ray_cluster,
        "--device",
        "cpu",
        "--quiet",
    ]
    env = {**os.environ, **RAY_ENV}
    result = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    total = Warehouse.open(ingested_warehouse).checkpoints().height
    assert f"scored {total} checkpoints" in result.stdout and "0 failed" in result.stdout
    assert {status for _, _, status, _, _ in _catalog(ingested_warehouse)} == {"done"}
    assert _settings(ingested_warehouse)["executor"] == "ray"
    assert ray.is_initialized()  # the CLI's driver left the cluster it joined running


def test_bad_executor_options_are_clear_errors(
    ray_cluster: str, ingested_warehouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(LdwError, match="--executor must be one of local, ray"):
        run_sweep(ingested_warehouse, SweepConfig(device="cpu", executor="spark"), progress=False)
    with pytest.raises(LdwError, match="--ray-address needs --executor ray"):
        run_sweep(ingested_warehouse, SweepConfig(device="cpu", ray_address="auto"), progress=False)
    with pytest.raises(LdwError, match="has no GPUs"):
        run_sweep(ingested_warehouse, SweepConfig(device="cuda", executor="ray"), progress=False)
    with pytest.raises(LdwError, match="cuda:1 with --executor ray"):
        run_sweep(ingested_warehouse, SweepConfig(device="cuda:1", executor="ray"), progress=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    with pytest.raises(LdwError, match=r"needs ray: pip install 'learning-dynamics-workbench\[cluster\]'"):
        run_sweep(ingested_warehouse, SweepConfig(device="cpu", executor="ray"), progress=False)
    assert Warehouse.open(ingested_warehouse).query("SELECT count(*) AS n FROM sweeps")["n"][0] == 0
