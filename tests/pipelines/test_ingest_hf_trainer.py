"""Ingest a real transformers.Trainer run: every checkpoint-N folder and its trainer_state log."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, Trainer, TrainingArguments

from ldw.ingest.config import IngestConfig
from ldw.ingest.register import ingest_paths
from ldw.warehouse import Warehouse


class _RandomTokens(torch.utils.data.Dataset):
    def __init__(self, vocab: int, n: int, length: int) -> None:
        self.data = torch.randint(0, vocab, (n, length), generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.data[i], "labels": self.data[i]}


def test_hf_trainer_run_is_found_with_its_log(tiny_runs: list[Path], tmp_path: Path) -> None:
    tokenizer_dir = tiny_runs[0] / "tokenizer"
    config = GPTNeoXConfig(
        vocab_size=320,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    out = tmp_path / "hf_run"
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=6,
        save_steps=2,
        logging_steps=1,
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    Trainer(model=GPTNeoXForCausalLM(config), args=args, train_dataset=_RandomTokens(320, 32, 16)).train()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]

    [result] = ingest_paths(tmp_path / "wh", [out], IngestConfig(tokenizer=tokenizer_dir), progress=False)
    assert result.kind == "hf_trainer"
    wh = Warehouse.open(tmp_path / "wh")
    checkpoints = wh.checkpoints("hf_run")
    assert checkpoints["step"].to_list() == [2, 4, 6]
    assert checkpoints["status"].unique().to_list() == ["pending"]
    assert checkpoints["content_hash"].n_unique() == 3
    traces = wh.traces("hf_run")
    loss_steps = traces.filter(name="loss")["step"].to_list()
    assert loss_steps == [1, 2, 3, 4, 5, 6]  # from the latest checkpoint's trainer_state.json
    assert {"loss", "grad_norm", "lr"} <= set(traces["name"].unique().to_list())
