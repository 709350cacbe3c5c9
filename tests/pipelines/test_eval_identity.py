"""The evaluation set's identity: in each surprisal file, checked before cataloging and by doctor; switched atomically.

A sweep whose evaluation set is replaced under it catalogs nothing; a file
holding another checkpoint's or another set's surprisal is named by ``ldw
doctor`` and rescored after ``--repair``; ``ldw evalset --replace`` killed at
any point leaves the old set or the new one, whole, and rerunning either
command finishes the job; a tokenizer that differs from the runs' is refused
before anything changes.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ldw.cli.main import app
from ldw.corpus import builtin_documents
from ldw.sweep.config import EvalSetConfig, SweepConfig
from ldw.sweep.evalset import build_eval_set
from ldw.sweep.run import run_sweep
from ldw.train.bpe import train_bpe_tokenizer
from ldw.warehouse import Warehouse
from tests.pipelines.warehouse_compare import (
    SWEEP_ARGS,
    Background,
    Paused,
    assert_doctor_sound,
    assert_same_warehouse,
    copy_warehouse,
    kill_at,
    run_ldw,
    traced,
)

OLD_ARGS = ["--split", "heldout", "--seq-len", "32", "--sequences", "40"]  # tests.conftest.TINY_EVAL
OTHER = EvalSetConfig(corpus="builtin", split="heldout", seq_len=24, n_sequences=30)
OTHER_ARGS = ["--split", "heldout", "--seq-len", "24", "--sequences", "30"]


def _sweep(path: Path) -> None:
    run_sweep(path, SweepConfig(device="cpu", batch_size=4), progress=False)


@pytest.fixture(scope="module")
def replaced(swept: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The swept warehouse after an uninterrupted ``evalset --replace`` with other settings, and its trace."""
    root = tmp_path_factory.mktemp("replaced")
    path = copy_warehouse(swept, root / "warehouse")
    return path, traced(lambda: build_eval_set(path, OTHER, replace=True), root / "trace")


def test_a_sweep_never_catalogs_surprisal_of_a_replaced_evaluation_set(
    ingested_warehouse: Path, tmp_path: Path, started: list[Background]
) -> None:
    sweep = Paused(["sweep", "-w", str(ingested_warehouse), *SWEEP_ARGS, "--quiet"], "parquet-renamed:1", tmp_path)
    started.append(sweep)
    build_eval_set(ingested_warehouse, OTHER, replace=True)  # a writer that did not wait for the lock
    assert sweep.release() == 1
    message = sweep.stderr().strip()
    assert "\n" not in message and "scored on evaluation set" in message and "rerun `ldw sweep`" in message, message
    wh = Warehouse.open(ingested_warehouse, read_only=True)
    assert wh.checkpoints().filter(status="done").height == 0
    assert wh.query("SELECT count(*) AS n FROM surprisal")["n"][0] == 0
    assert_doctor_sound(ingested_warehouse)


@pytest.mark.parametrize("source", [pytest.param("another step", marks=pytest.mark.full), "another evaluation set"])
def test_doctor_names_a_file_of_another_checkpoint_or_set_and_repair_rescores_it(
    source: str, swept: Path, tmp_path: Path
) -> None:
    path = copy_warehouse(swept, tmp_path / "warehouse")
    wh = Warehouse.open(path)
    victim = wh.surprisal_path("seed0", 16)
    if source == "another step":
        shutil.copyfile(wh.surprisal_path("seed0", 8), victim)
        said = "holds run seed0 step 8"
    else:  # same rows and schema: only the recorded identity tells
        other = Warehouse.open(copy_warehouse(swept, tmp_path / "other"))
        build_eval_set(other.root, dataclasses.replace(OTHER, seq_len=32, n_sequences=40, seed=1), replace=True)
        assert other.token_count() == wh.token_count()
        values = pq.read_table(victim)["surprisal_bits"].to_numpy()
        shutil.copyfile(other.write_surprisal("seed0", 16, values, "elsewhere"), victim)
        said = "holds run seed0 step 16 of evaluation set"
    found = CliRunner().invoke(app, ["doctor", str(path)])
    assert found.exit_code == 1
    assert f"{victim}: {said}" in found.output and f"`ldw doctor {path} --repair`" in found.output, found.output
    repaired = CliRunner().invoke(app, ["doctor", str(path), "--repair"])
    assert repaired.exit_code == 0 and "seed0 step 16: back to pending" in repaired.output, repaired.output
    assert wh.checkpoints("seed0").filter(step=16)["status"][0] == "pending"
    _sweep(path)
    assert_same_warehouse(path, swept)


def _occurrence_after(trace: list[str], anchor: str, nth: int, name: str) -> int:
    """Which occurrence of ``name`` comes first after the ``nth`` ``anchor`` in ``trace``."""
    seen = 0
    for index, point in enumerate(trace):
        seen += point == anchor
        if seen == nth:
            return trace[: index + 1].count(name) + 1
    raise AssertionError(f"{anchor} reached fewer than {nth} times")


# (kill point, occurrence, which set the warehouse holds afterwards)
REPLACE_KILLS = [
    pytest.param("parquet-renamed", 1, "old", marks=pytest.mark.full),  # the new set's sequences written
    ("parquet-renamed", 2, "old"),  # both new files written, not switched
    pytest.param("catalog-open", "switch", "old", marks=pytest.mark.full),  # opening the catalog to switch
    pytest.param("evalset-switched", 1, "new", marks=pytest.mark.full),  # switched; old set's files not yet removed
]


@pytest.mark.slow
@pytest.mark.parametrize("point, where, holds", REPLACE_KILLS)
def test_killed_evalset_replace_leaves_one_whole_set_and_resumes(
    point: str, where: int | str, holds: str, swept: Path, replaced: tuple[Path, list[str]], tmp_path: Path
) -> None:
    after, trace = replaced
    path = copy_warehouse(swept, tmp_path / "warehouse")
    nth = _occurrence_after(trace, "parquet-renamed", 2, point) if where == "switch" else where
    kill_at(["evalset", "-w", str(path), *OTHER_ARGS, "--replace"], f"{point}:{nth}", quiet=False)
    wh, want = Warehouse.open(path, read_only=True), {"old": swept, "new": after}[holds]
    assert wh.eval_tokens().equals(Warehouse.open(want, read_only=True).eval_tokens())
    assert set(wh.checkpoints()["status"]) == ({"done"} if holds == "old" else {"pending"})
    old = run_ldw(["evalset", "-w", str(path), *OLD_ARGS], quiet=False)
    if holds == "old":  # rerunning the old settings finds the old set whole, and clears the new set's files
        assert old.returncode == 0 and "already present" in old.stdout, old.stdout + old.stderr
        assert_same_warehouse(path, swept)
    else:
        assert old.returncode == 1 and "different evaluation set" in old.stderr, old.stdout + old.stderr
    new = run_ldw(["evalset", "-w", str(path), *OTHER_ARGS, "--replace"], quiet=False)
    assert new.returncode == 0, new.stderr
    assert_same_warehouse(path, after)


def test_evalset_with_another_tokenizer_is_refused_naming_the_runs(swept: Path, tmp_path: Path) -> None:
    tokenizer = tmp_path / "other-tokenizer"
    train_bpe_tokenizer(builtin_documents()[:20], 300, tokenizer)
    path = copy_warehouse(swept, tmp_path / "warehouse")
    refused = run_ldw(["evalset", "-w", str(path), "--tokenizer", str(tokenizer), "--replace"], quiet=False)
    assert refused.returncode == 1
    message = refused.stderr.strip()
    assert "\n" not in message and "tokenizer differs from that of run(s) seed0" in message and "seed1" in message
    assert_same_warehouse(path, swept)  # nothing changed: every checkpoint still done
