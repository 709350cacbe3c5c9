"""A real ``ldw spikes``, ``ldw fit-schedule`` and ``ldw probe-weights`` SIGKILLed while it replaces its tables.

Each case starts from a warehouse holding the tables computed with other
settings, kills the CLI at a failpoint (``LDW_FAILPOINT=NAME:N``, see
:mod:`ldw.warehouse.failpoints`) while it writes, just before or just after
the catalog switch, and checks that every table reads exactly as the old one
or the new one (complete, with its recorded parameters), never missing. The
rerun must then give the warehouse of an uninterrupted run, files included,
with ``ldw doctor`` clean (see :func:`assert_same_warehouse`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from ldw.dynamics.lr_law import LawParams, predict_loss
from ldw.dynamics.lr_law_store import fit_schedule_in_warehouse
from ldw.dynamics.spikes import SpikeParams
from ldw.dynamics.spikes_store import detect_spikes_in_warehouse, spike_tokens_in_warehouse
from ldw.dynamics.weight_probes import probe_weights_in_warehouse
from ldw.train.lr_schedules import cosine_schedule
from ldw.warehouse import CheckpointRecord, RunRecord, Warehouse
from tests.pipelines.warehouse_compare import (
    assert_same_warehouse,
    copy_warehouse,
    kill_at,
    nth,
    traced,
    warehouse_state,
)

VOCAB, N_SEQ, SEQ_LEN = 50, 4, 16
N_TOKENS = N_SEQ * (SEQ_LEN - 1)
CHECKPOINTS = (0, 100, 200, 300, 400)
RUNS = ("law", "spiky")


def _save_checkpoint(folder: Path, seed: int) -> None:
    torch.manual_seed(seed)
    config = GPTNeoXConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=SEQ_LEN,
    )
    GPTNeoXForCausalLM(config).save_pretrained(folder)


def _traces(run: str, rng: np.random.Generator) -> pl.DataFrame:
    """``law``: loss of a known LR law under a cosine schedule; ``spiky``: a decay with three planted spikes."""
    lrs = cosine_schedule(450, 3e-3, warmup=20)
    steps = np.arange(1, len(lrs))
    if run == "law":
        loss = predict_loss(LawParams(L0=2.0, A=1.2, alpha=0.45, C=0.6), lrs)[steps]
        loss = loss * np.exp(rng.normal(0.0, 0.002, len(steps)))
    else:
        loss = 2.0 + 3.0 * steps**-0.3 + rng.normal(0, 0.01, len(steps))
        loss[[119, 249, 250, 251, 409]] += 1.0  # spikes at 120 (checkpoints 100/200), 250-252 (200/300), 410
    return pl.concat(
        [
            pl.DataFrame({"step": steps, "name": "loss", "value": loss}),
            pl.DataFrame({"step": steps, "name": "lr", "value": lrs[steps]}),
        ]
    )


def _build(root: Path) -> Path:
    """Two runs with real tiny checkpoints, surprisal at every checkpoint and loss / lr traces."""
    wh = Warehouse.create(root / "warehouse")
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, size=(N_SEQ, SEQ_LEN)).astype(np.int32)
    seq_id = np.repeat(np.arange(N_SEQ), SEQ_LEN - 1)
    position = np.tile(np.arange(1, SEQ_LEN), N_SEQ).astype(np.int32)
    tokens = pa.table(
        {
            "token_idx": np.arange(N_TOKENS),
            "seq_id": seq_id,
            "position": position,
            "token_id": ids[seq_id, position],
            "token_text": [f"t{i}" for i in ids[seq_id, position]],
            "context_len": position,
        }
    )
    sequences = pa.table({"seq_id": np.arange(N_SEQ), "input_ids": [row.tolist() for row in ids]})
    wh.write_eval_set(sequences, tokens, {"n_sequences": N_SEQ}, "fp", VOCAB)
    for index, run in enumerate(RUNS):
        folder = root / "runs" / run
        wh.upsert_run(RunRecord(run, run, index, str(folder), "step_folders", "gpt_neox", {}, None, "fp", None, {}))
        records = []
        for step in CHECKPOINTS:
            _save_checkpoint(folder / f"step{step}", 10 * index + step)
            records.append(CheckpointRecord(step, None, str(folder / f"step{step}"), f"{run}{step}", None))
        wh.upsert_checkpoints(run, records)
        for step in CHECKPOINTS:
            values = (8.0 - step / 100 + rng.normal(0, 0.1, N_TOKENS)).astype(np.float32)
            wh.write_surprisal(run, step, values, "sweep-1")
        wh.write_traces(run, _traces(run, rng))
    return wh.root


@dataclass(frozen=True)
class Command:
    """One ``ldw`` command, the same work as a function, and the work done before it (other settings)."""

    args: list[str]
    work: Callable[[Path], object]
    before: Callable[[Path], object]
    tables: tuple[str, ...]
    quiet: bool = False


def _spikes(path: Path) -> None:
    """What ``ldw spikes --top-n 10`` does."""
    detect_spikes_in_warehouse(path)
    spike_tokens_in_warehouse(path, top_n=10)


def _old_spikes(path: Path) -> None:
    detect_spikes_in_warehouse(path, names=("loss",), params=SpikeParams(min_points=2))
    spike_tokens_in_warehouse(path, top_n=3)


COMMANDS = {
    "spikes": Command(["spikes", "--top-n", "10"], _spikes, _old_spikes, ("spikes", "spike_tokens")),
    "fit-schedule": Command(
        ["fit-schedule", "--run", "law", "--predict", "constant"],
        lambda path: fit_schedule_in_warehouse(path, ["law"], ["constant"]),
        lambda path: fit_schedule_in_warehouse(path, ["law"], ["wsd"], fit_from_fraction=0.2),
        ("lr_law_fit", "lr_law_curves"),
    ),
    "probe-weights": Command(
        ["probe-weights", "--run", "law", "--sequences", "3", "--device", "cpu"],
        lambda path: probe_weights_in_warehouse(path, ["law"], n_sequences=3, progress=False, device="cpu"),
        lambda path: probe_weights_in_warehouse(path, n_sequences=2, progress=False, device="cpu"),
        ("weight_probes",),
        quiet=True,
    ),
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, list[str]]]:
    """Per command: the warehouse with its old tables, the same after an uninterrupted run, and that run's trace."""
    root = tmp_path_factory.mktemp("derived-kill")
    base = _build(root / "base")
    out = {}
    for name, command in COMMANDS.items():
        before = copy_warehouse(base, root / name / "before")
        command.before(before)
        after = copy_warehouse(before, root / name / "after")
        out[name] = (before, after, traced(lambda c=command, p=after: c.work(p), root / name / "trace"))
    return out


def _assert_tables_read_as(path: Path, expected: dict[str, Path]) -> None:
    """Each table of ``path`` (rows and recorded parameters) is exactly the one in the warehouse named for it."""
    got = warehouse_state(path)
    params = dict(got["derived_tables"].select("table_name", "params").iter_rows())
    for table, source in expected.items():
        want = warehouse_state(source)
        assert table in got, f"table {table} is missing after the kill"
        assert got[table].equals(want[table]), f"table {table} is neither complete old nor complete new"
        assert params[table] == dict(want["derived_tables"].select("table_name", "params").iter_rows())[table]


# (command, failpoint, occurrence, which tables read as the new ones after the kill); the default run kills each
# command mid-switch, the cases marked ``full`` (before the switch, after it) run with --runslow
CASES = [
    pytest.param("spikes", "parquet-written", 1, (), marks=pytest.mark.full),  # spikes part written, not renamed
    ("spikes", "derived-switched", 1, ("spikes",)),  # spikes switched, spike_tokens not yet written
    ("spikes", "parquet-renamed", -1, ("spikes",)),  # spike_tokens part in place, not switched
    pytest.param(  # both switched, old versions not removed
        "spikes", "derived-switched", -1, ("spikes", "spike_tokens"), marks=pytest.mark.full
    ),
    pytest.param("fit-schedule", "parquet-renamed", 1, (), marks=pytest.mark.full),  # the fit written, not the curves
    ("fit-schedule", "catalog-open", -1, ()),  # both written, killed opening the catalog to switch
    ("fit-schedule", "derived-switched", 1, ("lr_law_fit", "lr_law_curves")),
    pytest.param("probe-weights", "parquet-written", 1, (), marks=pytest.mark.full),  # the last run's new part
    ("probe-weights", "catalog-open", -1, ()),  # other runs' parts copied, killed opening the catalog to switch
    pytest.param("probe-weights", "derived-switched", 1, ("weight_probes",), marks=pytest.mark.full),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, point, where, switched", CASES)
def test_killed_rewrite_keeps_complete_tables_and_resumes(
    name: str,
    point: str,
    where: int,
    switched: tuple[str, ...],
    prepared: dict[str, tuple[Path, Path, list[str]]],
    tmp_path: Path,
) -> None:
    command = COMMANDS[name]
    before, reference, trace = prepared[name]
    path = copy_warehouse(before, tmp_path / "warehouse")
    kill_at([*command.args, "-w", str(path)], f"{point}:{nth(trace, point, where)}", quiet=command.quiet)
    _assert_tables_read_as(path, {t: reference if t in switched else before for t in command.tables})
    command.work(path)
    assert_same_warehouse(path, reference)
