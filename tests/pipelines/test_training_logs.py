"""Training-log readers on real files: an HF Trainer run, a torch SummaryWriter file, constructed CSV/JSONL."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from ldw.errors import LdwError
from ldw.ingest.training_logs import (
    TrainingLogWarning,
    canonical_name,
    find_training_log,
    load_training_log,
    read_training_log,
)


def _trace(frame: pl.DataFrame, name: str) -> dict[int, float]:
    rows = frame.filter(pl.col("name") == name)
    return dict(zip(rows["step"].to_list(), rows["value"].to_list(), strict=True))


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A real transformers.Trainer run: 6 steps, logging every step, checkpoints at 3 and 6, eval at 3 and 6."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, Trainer, TrainingArguments

    torch.manual_seed(0)
    config = GPTNeoXConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
    )
    model = GPTNeoXForCausalLM(config)
    rng = np.random.default_rng(0)
    data = [{"input_ids": ids, "labels": ids} for ids in rng.integers(0, 64, size=(24, 16)).tolist()]
    out = tmp_path_factory.mktemp("hf_run")
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=6,
        logging_steps=1,
        save_steps=3,
        eval_strategy="steps",
        eval_steps=3,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        report_to=[],
        use_cpu=True,
        learning_rate=1e-3,
        warmup_steps=2,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, eval_dataset=data[:8])
    trainer.train()
    return out, trainer


def test_hf_trainer_state_latest_checkpoint(hf_run: tuple[Path, object]) -> None:
    out, trainer = hf_run
    path = find_training_log(out)
    assert path == out / "checkpoint-6" / "trainer_state.json"
    assert (out / "checkpoint-3" / "trainer_state.json").is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = read_training_log(path)
    assert frame.schema == pl.Schema({"step": pl.Int64, "name": pl.String, "value": pl.Float64})
    history = json.loads(path.read_text())["log_history"]
    logged = {e["step"]: e for e in history if "loss" in e}
    assert sorted(logged) == [1, 2, 3, 4, 5, 6]
    loss = _trace(frame, "loss")
    assert loss == {step: e["loss"] for step, e in logged.items()}
    assert _trace(frame, "lr") == {step: e["learning_rate"] for step, e in logged.items()}
    assert _trace(frame, "grad_norm") == {step: e["grad_norm"] for step, e in logged.items()}
    assert set(_trace(frame, "eval_loss")) == {3, 6}
    assert _trace(frame, "epoch")[3] == logged[3]["epoch"]
    assert frame.group_by("step", "name").len()["len"].max() == 1


def test_hf_root_trainer_state_with_summary(hf_run: tuple[Path, object]) -> None:
    out, trainer = hf_run
    trainer.save_state()  # the root copy, written at the end of training, has the summary entry
    path = find_training_log(out)
    assert path == out / "trainer_state.json"
    frame = read_training_log(path)
    history = json.loads(path.read_text())["log_history"]
    summary = next(e for e in history if "train_runtime" in e)
    # the run-mean train_loss does not overwrite the step-6 loss
    assert _trace(frame, "train_loss_mean") == {6: summary["train_loss"]}
    assert _trace(frame, "loss")[6] == next(e["loss"] for e in history if e.get("step") == 6 and "loss" in e)


def test_tensorboard_summary_writer(tmp_path: Path) -> None:
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.util import tensor_util
    from torch.utils.tensorboard import SummaryWriter

    logdir = tmp_path / "runs" / "exp1"
    writer = SummaryWriter(log_dir=str(logdir))
    for step in range(1, 11):
        writer.add_scalar("train/loss", 5.0 / step, step)
        writer.add_scalar("train/learning_rate", 1e-3 * step / 10, step)
        writer.add_scalar("grad_norm", float("nan") if step == 4 else 1.0 + step, step)
    # a TF2-style scalar (tensor + 'scalars' plugin metadata), as tf.summary.scalar writes it
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars"))
    value = Summary.Value(tag="eval/loss", metadata=meta, tensor=tensor_util.make_tensor_proto(2.5))
    writer.file_writer.add_summary(Summary(value=[value]), 10)
    writer.close()

    assert find_training_log(tmp_path) == logdir
    with pytest.warns(TrainingLogWarning, match="1 NaN"):
        frame = read_training_log(logdir)
    assert _trace(frame, "loss") == pytest.approx({s: 5.0 / s for s in range(1, 11)})
    assert _trace(frame, "lr") == pytest.approx({s: 1e-3 * s / 10 for s in range(1, 11)})
    grad = _trace(frame, "grad_norm")
    assert 4 not in grad and len(grad) == 9
    assert _trace(frame, "eval_loss") == {10: 2.5}
    log = load_training_log(logdir)
    assert log.format == "tensorboard" and log.nonfinite == {"grad_norm": 1}


def test_lightning_metrics_csv_sparse_rows(tmp_path: Path) -> None:
    folder = tmp_path / "lightning_logs" / "version_0"
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text(
        "epoch,lr-AdamW,step,train_loss,val_loss\n"
        "0,0.001,0,4.0,\n"
        "0,,49,,3.9\n"
        "0,0.001,50,3.5,\n"
        "1,0.0005,99,3.1,\n"
        "1,,99,,3.0\n"
    )
    assert find_training_log(tmp_path) == folder / "metrics.csv"
    frame = read_training_log(folder / "metrics.csv")
    assert _trace(frame, "loss") == {0: 4.0, 50: 3.5, 99: 3.1}
    assert _trace(frame, "val_loss") == {49: 3.9, 99: 3.0}
    assert _trace(frame, "lr") == {0: 0.001, 50: 0.001, 99: 0.0005}
    assert _trace(frame, "epoch") == {0: 0.0, 49: 0.0, 50: 0.0, 99: 1.0}
    assert frame.height == 3 + 2 + 3 + 4


def test_wandb_panel_export(tmp_path: Path) -> None:
    path = tmp_path / "wandb_export.csv"
    path.write_text(
        '"Step","run-7 - train/loss","run-7 - train/loss__MIN","run-7 - train/loss__MAX","run-7 - my_metric"\n'
        '"10","3.5","3.4","3.6","7"\n'
        '"20","3.0","2.9","3.1",""\n'
        '"30","inf","","","9"\n'
    )
    log = load_training_log(path)
    assert set(log.frame["name"]) == {"loss", "my_metric"}
    assert _trace(log.frame, "loss") == {10: 3.5, 20: 3.0}
    assert _trace(log.frame, "my_metric") == {10: 7.0, 30: 9.0}
    assert log.nonfinite == {"loss": 1}


def test_wandb_export_with_two_runs_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "two.csv"
    path.write_text("Step,a - loss,b - loss\n1,2,3\n")
    with pytest.raises(LdwError, match="several runs"):
        read_training_log(path)


def test_reference_jsonl_with_restart_keeps_last(tmp_path: Path) -> None:
    lines = [
        {"step": s, "loss": 4.0 - 0.1 * s, "grad_norm": 1.0, "lr": 1e-3, "tokens_seen": 64 * s} for s in range(1, 6)
    ]
    lines += [{"step": s, "loss": 9.0, "grad_norm": 2.0, "lr": 1e-3, "tokens_seen": 64 * s} for s in (4, 5, 6)]
    (tmp_path / "train_log.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (tmp_path / "eval_documents.jsonl").write_text('{"text": "x"}\n')
    path = find_training_log(tmp_path)
    assert path == tmp_path / "train_log.jsonl"
    log = load_training_log(path)
    loss = _trace(log.frame, "loss")
    assert loss == pytest.approx({1: 3.9, 2: 3.8, 3: 3.7, 4: 9.0, 5: 9.0, 6: 9.0})
    assert log.duplicates == 2 * 2  # loss and grad_norm at steps 4 and 5 (lr, tokens_seen repeat the same value)
    assert set(log.frame["name"]) == {"loss", "grad_norm", "lr", "tokens_seen"}
    with pytest.warns(TrainingLogWarning, match="kept the last"):
        read_training_log(path)


def test_name_normalisation() -> None:
    assert canonical_name("learning_rate") == "lr"
    assert canonical_name("train/learning_rate") == "lr"
    assert canonical_name("lr-AdamW") == "lr"
    assert canonical_name("train_loss") == "loss"
    assert canonical_name("train/loss") == "loss"
    assert canonical_name("eval/loss") == "eval_loss"
    assert canonical_name("grad_norm") == "grad_norm"
    assert canonical_name("weird metric") == "weird metric"


def test_clash_keeps_canonical_spelling(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 1, "lr": 0.1, "learning_rate": 0.2, "loss": 1.0, "train_loss": 2.0}\n')
    frame = read_training_log(path)
    assert _trace(frame, "lr") == {1: 0.1} and _trace(frame, "learning_rate") == {1: 0.2}
    assert _trace(frame, "loss") == {1: 1.0} and _trace(frame, "train_loss") == {1: 2.0}


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "log.jsonl"
    bad.write_text('{"step": 1, "loss": 2}\n{oops\n')
    with pytest.raises(LdwError, match=r"log\.jsonl: line 2 is not valid JSON"):
        read_training_log(bad)
    nostep = tmp_path / "nostep.csv"
    nostep.write_text("loss\n1.0\n")
    with pytest.raises(LdwError, match="no step column"):
        read_training_log(nostep)
    text = tmp_path / "x.txt"
    text.write_text("1")
    with pytest.raises(LdwError, match="unknown training-log format"):
        read_training_log(text)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert find_training_log(empty) is None
    (empty / "a.csv").write_text("step,x\n1,2\n")
    (empty / "b.csv").write_text("step,x\n1,2\n")
    with pytest.raises(LdwError, match="several possible training logs"):
        find_training_log(empty)


def test_fractional_step_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 1.5, "loss": 2}\n')
    with pytest.raises(LdwError, match="not a whole number"):
        read_training_log(path)
    whole = tmp_path / "whole.jsonl"
    whole.write_text('{"step": 2.0, "loss": 2}\n')
    assert _trace(read_training_log(whole), "loss") == {2: 2.0}
