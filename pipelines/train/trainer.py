"""Plain-PyTorch reference trainer: trains a small causal LM on a document corpus and
saves Pythia-like checkpoint folders (``stepN/``), a per-step training log and run.json."""

from __future__ import annotations

import json
import math
import os
import platform
import random
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tokenizers
import torch
import transformers
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from ldw.corpus import SPLIT_SEED, load_documents, split_documents
from ldw.probe.loading import cpu_threads, resolve_device
from ldw.probe.tokenizing import encode_documents
from ldw.train.bpe import train_bpe_tokenizer
from ldw.train.config import (
    TrainConfig,
    TrainConfigError,
    build_model_config,
    checkpoint_steps,
    config_defaults,
    lr_sequence,
)
from ldw.train.knobs import TrainingKnobs

RUN_FILE = "run.json"
LOG_FILE = "train_log.jsonl"
EVAL_FILE = "eval_documents.jsonl"
TOKENIZER_DIR = "tokenizer"
_OWNED_ENTRY = re.compile(r"^(step\d+(\.tmp)?|tokenizer|train_log\.jsonl|eval_documents\.jsonl|run\.json(\.tmp)?)$")


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def token_stream(docs: list[str], tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """Tokenize ``docs`` and join them into one int64 stream, each document followed by eos."""
    return torch.from_numpy(np.concatenate(list(encode_documents(tokenizer, docs))))


def sample_windows(stream: torch.Tensor, batch_size: int, seq_len: int, generator: torch.Generator) -> torch.Tensor:
    """``batch_size`` windows of ``seq_len`` tokens at uniformly random starts in ``stream``."""
    starts = torch.randint(0, len(stream) - seq_len + 1, (batch_size, 1), generator=generator)
    return stream[starts + torch.arange(seq_len)]


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (temporary file, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_run_file(out_dir: Path) -> dict[str, Any] | None:
    """The run.json of ``out_dir``, or None when there is none."""
    path = out_dir / RUN_FILE
    if not path.exists():
        return None
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TrainConfigError(f"{path}: not a readable run file ({err})") from None
    if not isinstance(run, dict) or not isinstance(run.get("train_config"), dict):
        raise TrainConfigError(f"{path}: has no train_config; not a run written by ldw train")
    return run


def _config_differences(config: TrainConfig, stored: dict[str, Any]) -> list[str]:
    """Names of the identity fields where ``stored`` differs from ``config``; a field missing from
    ``stored`` (a run.json written before the field existed) counts as its default."""
    wanted = config.identity()
    stored = {key: value for key, value in {**config_defaults(), **stored}.items() if key != "device"}
    return sorted(key for key in wanted.keys() | stored.keys() if wanted.get(key) != stored.get(key))


def _prepare_out_dir(config: TrainConfig, out_dir: Path) -> bool:
    """Check ``out_dir`` against ``config``; return True when a complete identical run is there.

    Otherwise clear the outputs of an unfinished identical run so training starts afresh.
    Raises TrainConfigError when the folder holds a different run or unrelated files.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise TrainConfigError(f"{out_dir}: exists and is not a folder")
    run = _read_run_file(out_dir)
    if run is not None:
        differences = _config_differences(config, run["train_config"])
        if differences:
            raise TrainConfigError(
                f"{out_dir}: holds a run with a different config (differs in: {', '.join(differences)}); "
                "choose another --out folder"
            )
        if run.get("complete") is True:
            return True
    if out_dir.exists():
        foreign = [entry.name for entry in out_dir.iterdir() if not _OWNED_ENTRY.match(entry.name)]
        if foreign and run is None:
            raise TrainConfigError(f"{out_dir}: folder is not empty and holds no {RUN_FILE}; choose an empty folder")
        for entry in out_dir.iterdir():
            if _OWNED_ENTRY.match(entry.name) and entry.is_dir():
                shutil.rmtree(entry)
            elif _OWNED_ENTRY.match(entry.name):
                entry.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    return False


def _prepare_tokenizer(config: TrainConfig, train_docs: list[str], out_dir: Path) -> PreTrainedTokenizerBase:
    """Train a BPE tokenizer on the train split, or load ``config.tokenizer``; save it under out_dir."""
    target = out_dir / TOKENIZER_DIR
    if config.tokenizer is None:
        return train_bpe_tokenizer(train_docs, config.vocab_size, target)
    source = Path(config.tokenizer).expanduser()
    if not source.is_dir():
        raise TrainConfigError(f"{source}: tokenizer folder not found")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as err:
        raise TrainConfigError(f"{source}: cannot load a tokenizer ({err})") from None
    if tokenizer.eos_token_id is None:
        raise TrainConfigError(f"{source}: tokenizer has no eos token; documents cannot be joined")
    tokenizer.save_pretrained(target)
    return tokenizer


@contextmanager
def _transformers_bars_off() -> Iterator[None]:
    """Silence transformers' tqdm bars (one per checkpoint save) and restore them afterwards."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _save_checkpoint(knobs: TrainingKnobs, tokenizer: PreTrainedTokenizerBase, out_dir: Path, step: int) -> None:
    """Save the model (safetensors, a plain transformers checkpoint) and tokenizer to ``out_dir/step{step}``;
    the folder appears complete."""
    final = out_dir / f"step{step}"
    tmp = out_dir / f"step{step}.tmp"
    with knobs.saving() as model:
        model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, final)


def _versions() -> dict[str, str]:
    """Versions of the libraries that shape a run's numbers."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "numpy": np.__version__,
    }


def _optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases or norm gains)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95), eps=1e-8)


def _progress_bar(enabled: bool) -> Progress:
    """A rich progress bar showing steps, loss and steps/s."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TextColumn("{task.fields[rate]:.1f} steps/s"),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def _train_loop(
    knobs: TrainingKnobs,
    tokenizer: PreTrainedTokenizerBase,
    stream: torch.Tensor,
    config: TrainConfig,
    device: torch.device,
    out_dir: Path,
    progress: bool,
) -> None:
    """Run ``config.steps`` optimizer steps, logging each and saving the scheduled checkpoints."""
    model = knobs.model
    saves = set(checkpoint_steps(config.steps, config.save_every))
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = _optimizer(model, config)
    knobs.attach_optimizer([p for group in optimizer.param_groups for p in group["params"]])
    lrs = lr_sequence(config)
    max_norm = config.grad_clip if config.grad_clip > 0 else math.inf
    tokens_per_step = config.batch_size * config.seq_len
    model.train()
    _save_checkpoint(knobs, tokenizer, out_dir, 0)
    started = time.perf_counter()
    with open(out_dir / LOG_FILE, "w", encoding="utf-8") as log, _progress_bar(progress) as bar:
        task = bar.add_task(out_dir.name, total=config.steps, loss=math.nan, rate=0.0)
        for step in range(1, config.steps + 1):
            lr = float(lrs[step])
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = sample_windows(stream, config.batch_size, config.seq_len, generator).to(device)
            extra = knobs.begin_step(step)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                objective, loss, loss_extra = knobs.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            knobs.after_backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            knobs.before_optimizer_step()
            optimizer.step()
            extra.update(loss_extra, **knobs.after_optimizer_step())
            record = {
                "step": step,
                "loss": loss.item(),
                "grad_norm": grad_norm.item(),
                "lr": lr,
                "tokens_seen": step * tokens_per_step,
                **extra,
            }
            log.write(json.dumps(record) + "\n")
            log.flush()
            if step in saves:
                _save_checkpoint(knobs, tokenizer, out_dir, step)
            rate = step / max(time.perf_counter() - started, 1e-9)
            bar.update(task, advance=1, loss=record["loss"], rate=rate)


def train_run(config: TrainConfig, out_dir: Path, progress: bool = True) -> Path:
    """Train a reference model as ``config`` says and write it to ``out_dir``; return ``out_dir``.

    Writes ``stepN/`` checkpoint folders (model + tokenizer) on ``checkpoint_steps``,
    ``train_log.jsonl`` (one line per optimizer step), ``eval_documents.jsonl`` (the held-out
    split), ``tokenizer/`` and ``run.json``. A folder holding a complete run with the same
    config is reused as is; a folder holding a different config raises TrainConfigError.
    Models of hidden size <= 128 train on one CPU thread (restored afterwards).
    The stability knobs of ``config`` (all off by default; see ``ldw.train.knobs``) add
    keys to the log rows and a ``stability`` entry to run.json when any is on.
    """
    out_dir = Path(out_dir)
    device = resolve_device(config.device)  # refused before the run folder is made
    if _prepare_out_dir(config, out_dir):
        return out_dir
    docs = load_documents(config.corpus)
    train_docs, eval_docs = split_documents(docs, config.eval_fraction, SPLIT_SEED)
    tokenizer = _prepare_tokenizer(config, train_docs, out_dir)
    stream = token_stream(train_docs, tokenizer)
    if len(stream) < config.seq_len:
        raise TrainConfigError(
            f"{config.corpus}: train split has {len(stream)} tokens, fewer than seq_len={config.seq_len}"
        )
    with open(out_dir / EVAL_FILE, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"text": doc}) + "\n" for doc in eval_docs)
    seed_everything(config.seed)
    model_config = build_model_config(config, len(tokenizer), tokenizer.eos_token_id)
    model = AutoModelForCausalLM.from_config(model_config).to(device)
    n_parameters = sum(p.numel() for p in model.parameters())  # as saved (embedding knobs fold away)
    knobs = TrainingKnobs(model, config)
    run = {
        "name": out_dir.name,
        "seed": config.seed,
        "arch": config.arch,
        "size": config.size,
        "model_config": model.config.to_dict(),
        "train_config": config.to_dict(),
        "tokens_per_step": config.batch_size * config.seq_len,
        "corpus": config.corpus,
        "split_seed": SPLIT_SEED,
        "n_train_documents": len(train_docs),
        "n_eval_documents": len(eval_docs),
        "n_train_tokens": len(stream),
        "n_parameters": n_parameters,
        "device": device.type,
        "cpu_threads": None,
        "versions": _versions(),
        "checkpoint_steps": checkpoint_steps(config.steps, config.save_every),
        "complete": False,
    }
    started = time.perf_counter()
    with _transformers_bars_off(), cpu_threads(device, model_config.hidden_size) as threads:
        run["cpu_threads"] = threads if device.type == "cpu" else None
        if config.stability_knobs:
            run["stability"] = knobs.info
        _write_json(out_dir / RUN_FILE, run)
        try:
            _train_loop(knobs, tokenizer, stream, config, device, out_dir, progress)
        finally:
            knobs.close()
    run["train_seconds"] = round(time.perf_counter() - started, 3)
    if config.stability_knobs:
        run["stability"] = knobs.summary()
    run.pop("complete")
    run["complete"] = True
    _write_json(out_dir / RUN_FILE, run)
    return out_dir
