"""Benchmark: the offline demo's reference training (tiny GPT-NeoX on the built-in corpus).

Trains ``--seeds`` runs of the demo ``TrainConfig`` (its defaults, with any overrides
given here) into a temporary folder, one after the other as ``ldw demo`` does, and
reports per run: wall and process CPU seconds, ms per step, checkpoints written, the
last-20-step training loss, the held-out loss of the final checkpoint and the unigram
entropy of the training tokens (the loss of a model that learned only token
frequencies). On shared cores the wall time depends on the other load; the CPU
seconds of the (single-threaded) tiny run are what it costs on a quiet core.
Writes ``benchmarks/results/train_tiny.json``.

    python -m benchmarks.train_tiny                 # the demo: 3 seeds of the defaults
    python -m benchmarks.train_tiny --seeds 1 --steps 200    # quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ldw.corpus import read_documents
from ldw.train.config import TrainConfig, checkpoint_steps
from ldw.train.trainer import token_stream, train_run

RESULTS = Path(__file__).resolve().parent / "results" / "train_tiny.json"


def held_out_loss(run_dir: Path, step: int, seq_len: int) -> float:
    """Mean next-token loss (nats) of checkpoint ``step`` on the run's held-out documents."""
    folder = run_dir / f"step{step}"
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    stream = token_stream(read_documents(run_dir / "eval_documents.jsonl"), tokenizer)
    n = len(stream) // seq_len
    windows = stream[: n * seq_len].view(n, seq_len)
    with torch.no_grad():
        return float(model(input_ids=windows, labels=windows).loss)


def unigram_entropy(run_dir: Path, config: TrainConfig) -> float:
    """Entropy (nats) of the token frequencies of the run's training split."""
    from ldw.corpus import SPLIT_SEED, load_documents, split_documents

    train_docs, _ = split_documents(load_documents(config.corpus), config.eval_fraction, SPLIT_SEED)
    counts = np.bincount(token_stream(train_docs, AutoTokenizer.from_pretrained(run_dir / "tokenizer")).numpy())
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def bench_seed(config: TrainConfig, root: Path) -> dict:
    """Train one run and measure it."""
    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    run_dir = train_run(config, root / f"seed{config.seed}", progress=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return {
        "seed": config.seed,
        "load_avg_before": round(load, 2),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_step": round(1000 * cpu / config.steps, 2),
        "checkpoints": len(checkpoint_steps(config.steps, config.save_every)),
        "train_loss_last20": round(float(np.mean([row["loss"] for row in log[-20:]])), 3),
        "held_out_loss_step0": round(held_out_loss(run_dir, 0, config.seq_len), 3),
        "held_out_loss_final": round(held_out_loss(run_dir, config.steps, config.seq_len), 3),
        "unigram_entropy": round(unigram_entropy(run_dir, config), 3),
        "cpu_threads": json.loads((run_dir / "run.json").read_text())["cpu_threads"],
    }


def main() -> None:
    """Parse options, run the seeds, print the table and write the JSON."""
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    for name in ("steps", "batch_size", "seq_len", "vocab_size", "save_every"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    parser.add_argument("--lr", type=float, default=defaults.lr)
    args = parser.parse_args()
    overrides = {
        name: getattr(args, name) for name in ("steps", "batch_size", "seq_len", "vocab_size", "save_every", "lr")
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            config = dataclasses.replace(defaults, seed=seed, device="cpu", **overrides)
            rows.append(bench_seed(config, Path(tmp)))
    header = list(rows[0])
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(str(row[key]) for key in header))
    total_wall, total_cpu = sum(r["wall_s"] for r in rows), sum(r["cpu_s"] for r in rows)
    print(f"total: wall {total_wall:.1f} s, CPU {total_cpu:.1f} s for {len(rows)} runs of {args.steps} steps")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "config": {**dataclasses.asdict(defaults), **overrides, "device": "cpu"},
                "runs": rows,
                "total_wall_s": round(total_wall, 2),
                "total_cpu_s": round(total_cpu, 2),
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
