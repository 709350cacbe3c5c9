"""Bad checkpoints and mismatched tokenizers: a clear one-line error, the rest of the sweep goes on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ldw.cli.main import app
from ldw.errors import LdwError
from ldw.ingest.register import ingest_paths
from ldw.sweep.config import SweepConfig
from ldw.sweep.evalset import build_eval_set
from ldw.sweep.run import run_sweep
from ldw.warehouse import Warehouse
from tests.conftest import TINY_EVAL


@pytest.fixture()
def damaged_run(tiny_runs: list[Path], tmp_path: Path) -> Path:
    """A copy of a tiny run with three broken checkpoints."""
    run = tmp_path / "damaged"
    shutil.copytree(tiny_runs[0], run)
    weights = run / "step2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated
    (run / "step4" / "config.json").unlink()  # missing config
    config = json.loads((run / "step8" / "config.json").read_text())
    (run / "step8" / "config.json").write_text(json.dumps({**config, "model_type": "no_such_arch"}))
    return run


def test_broken_checkpoints_fail_alone(damaged_run: Path, tmp_path: Path) -> None:
    wh_path = tmp_path / "wh"
    ingest_paths(wh_path, [damaged_run], progress=False)
    build_eval_set(wh_path, TINY_EVAL)
    summary = run_sweep(wh_path, SweepConfig(device="cpu"), progress=False)
    assert len(summary.failed) == 3
    wh = Warehouse.open(wh_path)
    checkpoints = wh.checkpoints("damaged")
    failed = {r["step"]: r["error"] for r in checkpoints.filter(status="failed").iter_rows(named=True)}
    assert set(failed) == {2, 4, 8}
    assert str(damaged_run / "step2") in failed[2] and "cannot load weights" in failed[2]
    assert "no config.json" in failed[4]
    assert "no_such_arch" in failed[8] or "config.json" in failed[8]
    assert all("\n" not in message for message in failed.values())
    assert checkpoints.filter(status="done").height == checkpoints.height - 3
    # nothing of the failed checkpoints reached the surprisal table
    assert set(wh.query("SELECT DISTINCT step FROM surprisal")["step"]) & {2, 4, 8} == set()

    result = CliRunner().invoke(app, ["status", "-w", str(wh_path)])
    assert result.exit_code == 0
    assert "failed damaged step 4" in result.output.replace("\n", " ")


def test_pickled_state_dict_loads_with_weights_only(tiny_runs: list[Path], tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from ldw.probe.loading import load_causal_lm

    folder = tmp_path / "plain"
    folder.mkdir()
    shutil.copy(tiny_runs[0] / "step24" / "config.json", folder)
    state = AutoModelForCausalLM.from_pretrained(tiny_runs[0] / "step24").state_dict()
    # as a DDP training script saves it: {"model": state_dict} with "module." prefixes
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, folder / "weights.pt")
    model = load_causal_lm(folder, torch.device("cpu"))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"model": Evil()}, folder / "weights.pt")
    from ldw.probe.errors import ProbeError

    with pytest.raises(ProbeError, match="weights.pt|cannot load weights"):
        load_causal_lm(folder, torch.device("cpu"))


def test_tokenizer_mismatch_is_refused_naming_both(ingested_warehouse: Path, tmp_path: Path) -> None:
    from ldw.train.config import TrainConfig
    from ldw.train.trainer import train_run
    from tests.conftest import TINY_TRAIN

    other = train_run(
        TrainConfig(**{**TINY_TRAIN.to_dict(), "steps": 1, "vocab_size": 400}), tmp_path / "other", progress=False
    )
    with pytest.raises(LdwError) as info:
        ingest_paths(ingested_warehouse, [other], progress=False)
    message = str(info.value)
    assert str(other / "tokenizer") in message and "seed0" in message
