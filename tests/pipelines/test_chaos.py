"""Chaos: random ``ldw`` commands at once on one warehouse, some SIGKILLed, then doctor, repair and a serial finish.

Each round starts from nothing and launches a random mix of ingest,
evalset (two settings, the second replacing the first), sweep (whole or one
shard of two), metrics, ngrams, spikes and readers querying as the app does,
all with ``--wait``, at random moments, and SIGKILLs some of them at random
moments. Every command must end killed, done, or refused with a one-line
error (never a traceback); every reader must only ever see complete data.
Then ``ldw doctor`` runs, ``ldw doctor --repair`` leaves the warehouse sound,
and finishing the work serially gives exactly the warehouse of a serial run.

One round by default; ``pytest --chaos-rounds N`` runs N (seeds 0..N-1, or
from ``LDW_CHAOS_SEED``).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ldw.cli.main import app
from ldw.workbench import Workbench
from tests.conftest import TINY_EVAL
from tests.pipelines.warehouse_compare import SWEEP_ARGS, Background, assert_same_warehouse

COMMANDS_PER_ROUND = 6
OTHER_ARGS = ["--split", "heldout", "--seq-len", "24", "--sequences", "30"]
OLD_ARGS = ["--split", "heldout", "--seq-len", "32", "--sequences", "40"]  # TINY_EVAL
READER = """
import sys, time
from pathlib import Path
from ldw.app import queries as q
from ldw.warehouse import Warehouse

root, stop, reads = Path(sys.argv[1]), Path(sys.argv[2]), 0
while not stop.exists():  # until every command of the round has ended
    if not (root / "catalog.duckdb").exists():
        time.sleep(0.2)  # not a warehouse yet
        continue
    with Warehouse.open(root, read_only=True).connect() as con:  # one connection: one state of the catalog
        files, cataloged, n_tokens = con.execute(
            "SELECT (SELECT count(*) FROM surprisal), "
            "(SELECT coalesce(sum(n_tokens), 0) FROM checkpoints WHERE status = 'done'), "
            "(SELECT max(n_tokens) FROM eval_sets)"
        ).fetchone()
        assert files >= cataloged, (files, cataloged)  # every cataloged file is there, whole
        assert not n_tokens or (files % n_tokens == 0 and cataloged % n_tokens == 0), (files, cataloged, n_tokens)
        for (table,) in con.execute("SELECT table_name FROM derived_tables").fetchall():
            con.execute(f'SELECT count(*) FROM "{table}"').fetchall()  # whole, never a missing file
    wh = Warehouse.open(root, read_only=True)  # and what the app's overview asks
    q.table_columns(wh), q.eval_summary(wh), q.trace_names(wh), q.checkpoint_table(wh, wh.run_ids())
    reads += 1
print("reads", reads)
"""


def _finish(wb: Workbench, run: Path) -> None:
    """The whole serial workflow (what a round is compared with, and how it is finished)."""
    wb.ingest([run])
    wb.evalset(TINY_EVAL, replace=True)
    wb.sweep(device="cpu", batch_size=4)
    wb.metrics(chunk_tokens=400)
    wb.ngrams(split="heldout", max_n=3)
    wb.detect_spikes()


@pytest.fixture(scope="module")
def serial(tiny_runs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The warehouse of a serial run of every command, from nothing."""
    path = tmp_path_factory.mktemp("serial") / "warehouse"
    _finish(Workbench(path, progress=False), tiny_runs[0])
    return path


def _commands(run: Path, path: Path) -> dict[str, list[str]]:
    w = ["-w", str(path)]
    return {
        "ingest": ["ingest", str(run), *w, "--quiet", "--wait"],
        "evalset": ["evalset", *w, *OLD_ARGS, "--replace", "--wait"],
        "evalset-other": ["evalset", *w, *OTHER_ARGS, "--replace", "--wait"],
        "sweep": ["sweep", *w, *SWEEP_ARGS, "--quiet", "--wait"],
        "shard-0": ["sweep", *w, *SWEEP_ARGS, "--quiet", "--wait", "--shard", "0/2"],
        "shard-1": ["sweep", *w, *SWEEP_ARGS, "--quiet", "--wait", "--shard", "1/2"],
        "metrics": ["metrics", *w, "--chunk-tokens", "400", "--quiet", "--wait"],
        "ngrams": ["ngrams", *w, "--split", "heldout", "--max-n", "3", "--quiet", "--wait"],
        "spikes": ["spikes", *w, "--wait"],
    }


class _Reader(Background):
    """A reader process querying the warehouse as the app does, until the file ``stop`` appears."""

    def __init__(self, path: Path, stop: Path, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.out, self.err = folder / "stdout", folder / "stderr"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", READER, str(path), str(stop)], stdout=out, stderr=err)


def _rounds(config: pytest.Config) -> list[int]:
    first = int(os.environ.get("LDW_CHAOS_SEED", "0"))
    return list(range(first, first + config.getoption("--chaos-rounds")))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per chaos round."""
    if "chaos_seed" in metafunc.fixturenames:
        metafunc.parametrize("chaos_seed", _rounds(metafunc.config))


def _wait_all(procs: list[Background], kills: dict[int, float], started: float) -> None:
    """Wait for every process, SIGKILLing those planned at their planned moment."""
    deadline = started + 900
    while any(p.proc.poll() is None for p in procs):
        now = time.monotonic()
        assert now < deadline, "the round did not end within 15 minutes"
        for index, at in list(kills.items()):
            if now - started >= at:
                if procs[index].proc.poll() is None:
                    procs[index].proc.send_signal(signal.SIGKILL)
                del kills[index]
        time.sleep(0.05)


@pytest.mark.slow
def test_random_concurrent_commands_and_kills_end_sound_and_equal_a_serial_run(
    chaos_seed: int, serial: Path, tiny_runs: list[Path], tmp_path: Path, started: list[Background]
) -> None:
    rng = random.Random(chaos_seed)
    path = tmp_path / "warehouse"
    commands = _commands(tiny_runs[0], path)
    plan = [rng.choice(sorted(commands)) for _ in range(COMMANDS_PER_ROUND)]
    kills = {i: rng.uniform(0.5, 8.0) for i in range(len(plan)) if rng.random() < 0.35}
    where = f"seed {chaos_seed}: plan {plan}, kills {kills}"
    began = time.monotonic()
    stop = tmp_path / "commands-ended"
    readers = [_Reader(path, stop, tmp_path / "reader")]
    started.extend(readers)  # killed at the end if the round fails before it stops them
    for index, name in enumerate(plan):
        time.sleep(rng.uniform(0.0, 1.5))
        started.append(Background(commands[name], tmp_path / f"{index}-{name}"))
    _wait_all(started[len(readers) :], dict(kills), began)
    stop.touch()
    for index, (name, proc) in enumerate(zip(plan, started[len(readers) :], strict=True)):
        code, err = proc.proc.returncode, proc.stderr()
        assert code in (0, 1, -signal.SIGKILL), f"{where}: {index} {name} exit {code}: {err[-2000:]}"
        assert "Traceback" not in err, f"{where}: {index} {name}: {err[-3000:]}"
        if code == 1:
            errors = [line for line in err.splitlines() if line.startswith("error:")]
            assert len(errors) == 1, f"{where}: {index} {name}: {err[-2000:]}"
    for reader in readers:
        assert reader.finish() == 0, f"{where}: reader: {reader.stderr()[-3000:]}"
    if path.joinpath("catalog.duckdb").exists():
        checked = CliRunner().invoke(app, ["doctor", str(path)])  # names what the kills left, never crashes
        assert checked.exit_code in (0, 1) and isinstance(checked.exception, SystemExit | None), checked.output
        repaired = CliRunner().invoke(app, ["doctor", str(path), "--repair"])
        assert repaired.exit_code == 0, f"{where}: {repaired.output}"
    _finish(Workbench(path, progress=False), tiny_runs[0])
    assert_same_warehouse(path, serial)
