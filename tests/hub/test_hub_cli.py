"""The ``ldw`` command on the (fake) Hub, as a user runs it: environment variables, tokens, kills."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ldw.sweep.run import run_sweep
from ldw.warehouse import Warehouse
from ldw.warehouse.failpoints import FAILPOINT_ENV
from tests.hub.conftest import (
    PYTHIA,
    PYTHIA_BRANCHES,
    PYTHIA_SEED1,
    SWEEP,
    TOKEN,
    assert_bitwise_equal,
    cached_weights,
    hub_warehouse,
    partial_downloads,
    surprisal,
)
from tests.hub.fakehub import FakeHub
from tests.pipelines.warehouse_compare import assert_doctor_sound, assert_same_warehouse

EVALSET_ARGS = ["--split", "heldout", "--seq-len", "32", "--sequences", "40"]  # = tests.conftest.TINY_EVAL
SWEEP_ARGS = ["--device", "cpu", "--batch-size", "4", "--quiet"]


def ldw(args: list[str], env: dict[str, str], **extra: str) -> subprocess.CompletedProcess:
    """Run ``ldw ARGS`` in a fresh interpreter with ``env`` (plus ``extra`` variables)."""
    return subprocess.run(
        [sys.executable, "-m", "ldw", *args],
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_ingest_and_sweep_options_on_the_command_line(hub: FakeHub, hub_env: dict, tmp_path: Path) -> None:
    wh = str(tmp_path / "wh")
    done = ldw(
        ["ingest", f"hf:{PYTHIA}", "-w", wh, "--revisions", "step1*", "--revisions", "step0", "--every", "2"], hub_env
    )
    assert done.returncode == 0, done.stderr
    assert "pythia-tiny (hf_hub) from hf:fake-org/pythia-tiny: 2 checkpoints" in done.stdout
    assert ldw(["evalset", "-w", wh, *EVALSET_ARGS], hub_env).returncode == 0
    done = ldw(["sweep", "-w", wh, *SWEEP_ARGS, "--keep-weights", "--prefetch", "0"], hub_env)
    assert done.returncode == 0, done.stderr
    assert "scored 2 checkpoints" in done.stdout
    assert Warehouse.open(wh).checkpoints()["step"].to_list() == [0, 1000]  # step0 step1 step1000 -> every 2nd + last
    assert len(cached_weights(Path(hub_env["HF_HUB_CACHE"]))) == 2


def test_the_users_token_is_used_and_never_stored_or_printed(hub: FakeHub, hub_env: dict, tmp_path: Path) -> None:
    hub.faults.gated[PYTHIA_SEED1] = TOKEN
    wh = str(tmp_path / "wh")
    ingest = ["ingest", f"hf:{PYTHIA_SEED1}", "-w", wh, "--revisions", "step0,step1,step2"]
    refused = ldw(ingest, hub_env)
    assert refused.returncode != 0 and "gated repository" in refused.stderr
    assert refused.stderr.strip().count("\n") == 0, refused.stderr
    outputs = [refused, ldw(ingest, hub_env, HF_TOKEN=TOKEN), ldw(["evalset", "-w", wh, *EVALSET_ARGS], hub_env)]
    token_file = Path(hub_env["HF_HOME"]) / "token"  # where `hf auth login` keeps it
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text(TOKEN)
    hub.faults.vanished.add((PYTHIA_SEED1, "step2"))  # one failed checkpoint, so an error message is written
    outputs.append(ldw(["sweep", "-w", wh, *SWEEP_ARGS], hub_env))
    assert [o.returncode for o in outputs[1:]] == [0, 0, 1], outputs[-1].stderr
    assert any(r.authorized and "/resolve/" in r.path and r.status == 200 for r in hub.log)

    checkpoints = Warehouse.open(wh).checkpoints()
    assert checkpoints["status"].to_list() == ["done", "done", "failed"]
    for output in outputs:
        assert TOKEN not in output.stdout + output.stderr
    warehouse = Warehouse.open(wh, read_only=True)
    tables = warehouse.query("SELECT table_name FROM information_schema.tables")["table_name"].to_list()
    assert {"runs", "checkpoints", "sweeps", "surprisal"} <= set(tables)
    for table in tables:
        assert TOKEN not in str(warehouse.query(f'SELECT * FROM "{table}"').rows()), table
    for path in Path(wh).rglob("*"):
        assert not path.is_file() or TOKEN.encode() not in path.read_bytes(), path


def test_a_sweep_killed_mid_download_resumes_with_no_loss_and_no_half_file(
    hub_client: Path, hub: FakeHub, hub_env: dict, disk_warehouse: Path, hub_root: Path, tmp_path: Path
) -> None:
    wh = hub_warehouse(tmp_path / "wh", PYTHIA)
    cache = Path(hub_env["HF_HUB_CACHE"])
    assert cache == hub_client
    size = (hub_root / PYTHIA / "step0" / "model.safetensors").stat().st_size
    hub.faults.bandwidth = size / 1.5  # 1.5 s per checkpoint download
    proc = subprocess.Popen([sys.executable, "-m", "ldw", "sweep", "-w", str(wh), *SWEEP_ARGS], env=hub_env)
    written = wh / "parquet" / "surprisal"  # surprisal/EVAL_ID/RUN/STEP.parquet
    deadline = time.monotonic() + 240
    # two files written: the first is cataloged (the writer catalogs each file before it writes the next)
    while time.monotonic() < deadline and not (len(list(written.rglob("*.parquet"))) > 1 and partial_downloads(cache)):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert partial_downloads(cache), "the kill should land mid-download"
    assert (wh / "hub-downloads.txt").is_file()  # lists what the killed sweep downloaded and had not removed yet
    done = Warehouse.open(wh).checkpoints().filter(status="done").height
    assert 0 < done < len(PYTHIA_BRANCHES)

    hub.faults.bandwidth = None
    resumed = ldw(["sweep", "-w", str(wh), *SWEEP_ARGS], hub_env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{done} already done" in resumed.stdout
    assert partial_downloads(cache) == [] and cached_weights(cache) == []
    assert_bitwise_equal(surprisal(wh), surprisal(disk_warehouse).filter(run_id="pythia-tiny"))
    assert_doctor_sound(wh)


@pytest.mark.parametrize(
    "point, done",
    [  # behind --runslow for CI time: test_a_sweep_killed_mid_download_... kills and resumes a hub sweep
        pytest.param("parquet-renamed:3", 2, marks=pytest.mark.full),
        pytest.param("parquet-written:5", 4, marks=pytest.mark.full),
    ],
)
def test_a_killed_hub_sweep_resumes_to_the_uninterrupted_warehouse(
    hub_client: Path, hub_env: dict, point: str, done: int, tmp_path: Path
) -> None:
    unswept = hub_warehouse(tmp_path / "unswept", PYTHIA)
    reference, path = (shutil.copytree(unswept, tmp_path / name) for name in ("reference", "killed"))
    run_sweep(reference, SWEEP, progress=False)
    killed = ldw(["sweep", "-w", str(path), *SWEEP_ARGS], hub_env, **{FAILPOINT_ENV: point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert Warehouse.open(path).checkpoints().filter(status="done").height == done
    assert ldw(["sweep", "-w", str(path), *SWEEP_ARGS], hub_env).returncode == 0
    assert_same_warehouse(path, reference)
    assert partial_downloads(hub_client) == [] and cached_weights(hub_client) == []
