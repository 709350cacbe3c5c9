"""A warehouse whose Parquet tables live on S3 (a local moto server speaking the S3 protocol over HTTP).

The same sweep and metrics run against it; DuckDB reads the objects directly
through the registered fsspec filesystem, and the numbers equal a local
warehouse's.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ldw.app import token_queries
from ldw.curves.store import compute_metrics
from ldw.ingest.register import ingest_paths
from ldw.sweep.config import SweepConfig
from ldw.sweep.evalset import build_eval_set
from ldw.sweep.run import run_sweep
from ldw.warehouse import Warehouse, WarehouseError
from ldw.warehouse.doctor import check_warehouse
from tests.conftest import TINY_EVAL

s3fs = pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

BUCKET = "ldw-test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible HTTP server on loopback with one empty bucket."""
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }.items():
            patch.setenv(key, value)
        s3fs.S3FileSystem(skip_instance_cache=True).mkdir(BUCKET)
        yield endpoint
    server.stop()


def _remote_warehouse(runs: list[Path], target: Path, url: str) -> Warehouse:
    """The tiny runs ingested into a new warehouse whose Parquet tables live under ``url``."""
    Warehouse.create(target, storage=url)
    ingest_paths(target, runs, progress=False)
    build_eval_set(target, TINY_EVAL)
    return Warehouse.open(target)


def test_sweep_and_metrics_on_s3_match_a_local_warehouse(
    s3_endpoint: str, ingested_warehouse: Path, tiny_runs: list[Path], tmp_path: Path
) -> None:
    url = f"s3://{BUCKET}/sweep-test"
    remote = _remote_warehouse(tiny_runs, tmp_path / "remote", url)
    assert remote.store.remote and remote.store.url == url
    run_sweep(remote.root, progress=False)
    run_sweep(ingested_warehouse, progress=False)
    local = Warehouse.open(ingested_warehouse)

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    objects = fs.glob(f"{BUCKET}/sweep-test/surprisal/*/*/*.parquet")  # EVAL_ID/RUN_ID/step-N
    assert len(objects) == local.query("SELECT count(*) AS n FROM checkpoints WHERE status = 'done'")["n"][0] > 0
    assert not list((tmp_path / "remote").rglob("*.parquet")), "Parquet must not land in the local folder"
    assert fs.glob(f"{BUCKET}/sweep-test/traces/*.parquet") and fs.glob(f"{BUCKET}/sweep-test/eval/*/*.parquet")
    files = remote.query("SELECT surprisal_file FROM checkpoints WHERE status = 'done'")["surprisal_file"]
    assert all(remote.store.path(f).startswith(f"{url}/surprisal/") for f in files)

    order = "ORDER BY run_id, step, token_idx"
    np.testing.assert_array_equal(
        remote.query(f"SELECT * FROM surprisal {order}")["surprisal_bits"].to_numpy(),
        local.query(f"SELECT * FROM surprisal {order}")["surprisal_bits"].to_numpy(),
    )

    compute_metrics(remote.root, progress=False)
    compute_metrics(ingested_warehouse, progress=False)
    key = "ORDER BY run_id, token_idx"
    assert remote.query(f"SELECT * FROM token_metrics {key}").equals(local.query(f"SELECT * FROM token_metrics {key}"))
    assert fs.glob(f"{BUCKET}/sweep-test/derived/token_metrics/*/*.parquet")
    assert check_warehouse(Warehouse.open(remote.root)) == []

    reader = Warehouse.open(remote.root, read_only=True)
    chunk = token_queries.raw_table_chunk(reader)
    assert chunk is not None
    curve = token_queries.raw_curves(reader, 5, ["seed0"], chunk)
    expected = local.query(
        "SELECT step, surprisal_bits FROM surprisal WHERE run_id = 'seed0' AND token_idx = 5 ORDER BY step"
    )
    np.testing.assert_allclose(curve["bits"].to_numpy(), expected["surprisal_bits"].to_numpy(), rtol=1e-6)


def test_doctor_on_s3_names_a_missing_object(s3_endpoint: str, tiny_runs: list[Path], tmp_path: Path) -> None:
    url = f"s3://{BUCKET}/doctor-test"
    remote = _remote_warehouse(tiny_runs, tmp_path / "remote", url)
    run_sweep(remote.root, SweepConfig(runs=("seed0",)), progress=False)
    victim = remote.store.path(
        remote.query("SELECT surprisal_file FROM checkpoints WHERE status = 'done' LIMIT 1")["surprisal_file"][0]
    )
    s3fs.S3FileSystem(skip_instance_cache=True).rm(victim)
    [problem] = check_warehouse(Warehouse.open(remote.root))
    assert problem.startswith(f"{victim}: file is missing; fix: `ldw doctor {remote.root} --repair`")


def test_cli_init_with_storage_and_refusals(s3_endpoint: str, tmp_path: Path) -> None:
    url = f"s3://{BUCKET}/cli-test"
    done = subprocess.run(
        [sys.executable, "-m", "ldw", "init", "-w", str(tmp_path / "wh"), "--storage", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert url in done.stdout
    assert Warehouse.open(tmp_path / "wh").store.url == url
    status = subprocess.run(
        [sys.executable, "-m", "ldw", "status", "-w", str(tmp_path / "wh")], capture_output=True, text=True, timeout=120
    )
    assert f"Parquet tables: {url}" in status.stdout, status.stdout + status.stderr
    with pytest.raises(WarehouseError, match="Parquet storage is s3://ldw-test/cli-test, not s3://ldw-test/other"):
        Warehouse.create(tmp_path / "wh", storage=f"s3://{BUCKET}/other")
    with pytest.raises(WarehouseError, match="cannot open Parquet storage"):
        Warehouse.create(tmp_path / "bad", storage="nosuchprotocol://x/y")
    shutil.rmtree(tmp_path / "bad", ignore_errors=True)
