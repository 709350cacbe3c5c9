"""Tests for the reference trainer: schedules, presets, and real tiny training runs.

The two seeds come from the shared ``tiny_runs`` fixture (tests/conftest.py): a few
dozen steps of a tiny GPT-NeoX on the built-in corpus, trained once per session.
"""

import itertools
import json
import math
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from ldw.corpus import SPLIT_SEED, CorpusError, builtin_documents, read_documents, split_documents
from ldw.probe.errors import ProbeError
from ldw.train.config import (
    TrainConfig,
    TrainConfigError,
    build_model_config,
    checkpoint_steps,
    learning_rate,
)
from ldw.train.trainer import train_run


def _config_of(run_dir: Path) -> TrainConfig:
    return TrainConfig(**json.loads((run_dir / "run.json").read_text())["train_config"])


def _weights(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(run_dir / f"step{step}" / "model.safetensors")


def _log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


def test_checkpoint_steps_matches_pythia_revisions():
    pythia = [0] + [2**i for i in range(10)] + list(range(1000, 143001, 1000))
    assert checkpoint_steps(143000, 1000) == pythia
    assert len(pythia) == 154
    assert checkpoint_steps(1000, 100) == [0, 1, 2, 4, 8, 16, 32, 64] + list(range(100, 1001, 100))
    assert checkpoint_steps(10, 4) == [0, 1, 2, 4, 8, 10]
    assert checkpoint_steps(5, 100) == [0, 1, 2, 4, 5]
    assert checkpoint_steps(0, 10) == [0]
    with pytest.raises(TrainConfigError):
        checkpoint_steps(10, 0)


def test_learning_rate_warmup_then_cosine_to_ten_percent():
    config = TrainConfig(steps=110, warmup_steps=10, lr=1e-3)
    assert learning_rate(5, config) == pytest.approx(5e-4)
    assert learning_rate(10, config) == pytest.approx(1e-3)
    assert learning_rate(60, config) == pytest.approx(0.55e-3)  # halfway: (1 + 0.1) / 2
    assert learning_rate(110, config) == pytest.approx(1e-4)
    decay = [learning_rate(step, config) for step in range(10, 111)]
    assert all(a > b for a, b in itertools.pairwise(decay))
    assert learning_rate(1, TrainConfig(steps=5, warmup_steps=0, lr=1e-3)) < 1e-3


@pytest.mark.parametrize(
    ("field", "value"),
    [("size", "huge"), ("arch", "gpt2"), ("device", "tpu"), ("steps", 0), ("eval_fraction", 1.0), ("vocab_size", 100)],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(TrainConfigError, match=field):
        TrainConfig(**{field: value})


def test_160m_preset_has_pythia_160m_parameter_count():
    config = TrainConfig(size="160m", seq_len=2048)
    model_config = build_model_config(config, vocab_size=50304, eos_token_id=0)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config)
    assert sum(p.numel() for p in model.parameters()) == 162_322_944  # Pythia-160m, as published
    assert model_config.max_position_embeddings == 2048
    llama = build_model_config(TrainConfig(size="small", arch="llama", seq_len=128), 1000, 0)
    assert (llama.model_type, llama.max_position_embeddings, llama.vocab_size) == ("llama", 128, 1000)


def test_checkpoint_folders_are_exactly_the_schedule(tiny_runs):
    for run_dir in tiny_runs:
        config = _config_of(run_dir)
        expected = checkpoint_steps(config.steps, config.save_every)
        found = sorted(int(p.name[4:]) for p in run_dir.iterdir() if re.fullmatch(r"step\d+", p.name))
        assert found == expected
        assert not list(run_dir.glob("*.tmp"))
        run = json.loads((run_dir / "run.json").read_text())
        assert run["complete"] is True and list(run)[-1] == "complete"
        assert run["checkpoint_steps"] == expected
        assert run["tokens_per_step"] == config.batch_size * config.seq_len
        assert set(run["versions"]) >= {"torch", "transformers", "tokenizers"}


def test_checkpoints_load_back_with_auto_classes(tiny_runs):
    run_dir = tiny_runs[0]
    config = _config_of(run_dir)
    for step in checkpoint_steps(config.steps, config.save_every):
        folder = run_dir / f"step{step}"
        model = AutoModelForCausalLM.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        assert json.loads((folder / "config.json").read_text())["dtype"] == "float32"
        assert model.config.vocab_size == len(tokenizer)
        assert model.config.max_position_embeddings >= config.seq_len
        ids = tokenizer("def f(x): return x", return_tensors="pt")["input_ids"]
        assert torch.isfinite(model(ids).logits).all()


def test_training_changes_weights_and_lowers_loss(tiny_runs):
    run_dir = tiny_runs[0]
    config = _config_of(run_dir)
    first, last = _weights(run_dir, 0), _weights(run_dir, config.steps)
    assert any(not torch.equal(first[name], last[name]) for name in first)
    log = _log(run_dir)
    assert [row["step"] for row in log] == list(range(1, config.steps + 1))
    assert [row["tokens_seen"] for row in log] == [
        s * config.batch_size * config.seq_len for s in range(1, config.steps + 1)
    ]
    assert [row["lr"] for row in log] == pytest.approx([learning_rate(s, config) for s in range(1, config.steps + 1)])
    assert all(row["grad_norm"] > 0 and math.isfinite(row["loss"]) for row in log)
    assert log[0]["loss"] == pytest.approx(math.log(len(AutoTokenizer.from_pretrained(run_dir / "tokenizer"))), abs=0.2)
    head = sum(row["loss"] for row in log[:3]) / 3
    tail = sum(row["loss"] for row in log[-3:]) / 3
    assert tail < head - 0.5


def test_held_out_documents_are_written_and_excluded(tiny_runs):
    run_dir = tiny_runs[0]
    run = json.loads((run_dir / "run.json").read_text())
    train_docs, eval_docs = split_documents(builtin_documents(), _config_of(run_dir).eval_fraction, SPLIT_SEED)
    assert read_documents(run_dir / "eval_documents.jsonl") == eval_docs
    assert (run["n_train_documents"], run["n_eval_documents"]) == (len(train_docs), len(eval_docs))


def test_seeds_differ_and_loaded_tokenizer_is_copied(tiny_runs):
    seed0, seed1 = tiny_runs
    steps = _config_of(seed0).steps
    for step in (0, steps):
        a, b = _weights(seed0, step), _weights(seed1, step)
        assert any(not torch.equal(a[name], b[name]) for name in a)
    assert (seed0 / "tokenizer" / "tokenizer.json").read_bytes() == (
        seed1 / "tokenizer" / "tokenizer.json"
    ).read_bytes()


def test_same_seed_reproduces_weights_after_an_interrupted_run(tiny_runs, tmp_path):
    reference = tiny_runs[0]
    config = _config_of(reference)
    out = tmp_path / "again"
    (out / "step99").mkdir(parents=True)
    (out / "step4.tmp").mkdir()
    (out / "run.json").write_text(json.dumps({"train_config": config.to_dict(), "complete": False}))
    train_run(config, out, progress=False)
    assert not (out / "step99").exists() and not (out / "step4.tmp").exists()
    for step in checkpoint_steps(config.steps, config.save_every):
        a, b = _weights(reference, step), _weights(out, step)
        assert all(torch.equal(a[name], b[name]) for name in a)
    assert [row["loss"] for row in _log(out)] == [row["loss"] for row in _log(reference)]


def test_complete_run_is_reused_and_other_configs_refused(tiny_runs, tmp_path):
    run_dir = tiny_runs[0]
    config = _config_of(run_dir)
    stamp = (run_dir / "train_log.jsonl").stat().st_mtime_ns
    assert train_run(TrainConfig(**{**config.to_dict(), "device": "auto"}), run_dir, progress=False) == run_dir
    assert (run_dir / "train_log.jsonl").stat().st_mtime_ns == stamp
    other = TrainConfig(**{**config.to_dict(), "lr": config.lr * 2})
    with pytest.raises(TrainConfigError, match=re.escape(str(run_dir)) + r".*different config \(differs in: lr\)"):
        train_run(other, run_dir, progress=False)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(TrainConfigError, match="not empty"):
        train_run(config, tmp_path, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_llama_on_a_jsonl_corpus(tiny_runs, tmp_path):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"text": doc}) + "\n" for doc in builtin_documents()[:20]))
    config = TrainConfig(
        corpus=str(corpus),
        arch="llama",
        steps=2,
        save_every=2,
        batch_size=2,
        seq_len=16,
        tokenizer=str(tiny_runs[0] / "tokenizer"),
        device="cpu",
    )
    out = train_run(config, tmp_path / "llama", progress=False)
    model = AutoModelForCausalLM.from_pretrained(out / "step2")
    assert model.config.model_type == "llama"
    run = json.loads((out / "run.json").read_text())
    assert (run["n_train_documents"], run["n_eval_documents"]) == (18, 2)
    assert len(_log(out)) == 2


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("latin1.txt", b"caf\xe9", "byte offset 3"),
        ("empty.txt", b"\n\n", "no non-empty documents"),
        ("rows.jsonl", b'{"body": "x"}\n', "line 1 has no 'text' field"),
    ],
)
def test_bad_corpus_names_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=re.escape(str(path)) + ".*" + re.escape(message)):
        train_run(TrainConfig(corpus=str(path), steps=1), tmp_path / "run", progress=False)


def test_corpus_shorter_than_a_window(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("tiny\n\ncorpus\n\nhere")
    with pytest.raises(TrainConfigError, match="fewer than seq_len=64"):
        train_run(TrainConfig(corpus=str(path), steps=1, vocab_size=300), tmp_path / "run", progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_requested_without_cuda(tmp_path):
    with pytest.raises(ProbeError, match="device 'cuda' requested but CUDA is not available"):
        train_run(TrainConfig(steps=1, device="cuda"), tmp_path / "run", progress=False)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_run_saves_float32_checkpoints(tiny_runs, tmp_path):
    config = TrainConfig(
        steps=4, save_every=2, batch_size=4, seq_len=32, tokenizer=str(tiny_runs[0] / "tokenizer"), device="cuda"
    )
    out = train_run(config, tmp_path / "gpu", progress=False)
    weights = _weights(out, 4)
    assert all(tensor.dtype == torch.float32 for tensor in weights.values())
    assert json.loads((out / "run.json").read_text())["device"] == "cuda"
    assert all(math.isfinite(row["loss"]) for row in _log(out))
