"""Benchmark: does the LR-annealing law fitted on some schedules predict another one?

Trains three real reference-style runs that differ only in their LR schedule
(constant, WSD, cosine; same seed, same batches, tiny GPT-NeoX, the builtin
corpus with a byte-level BPE, AdamW as the reference trainer uses it), writes
each run's ``train_log.jsonl``, ingests it with ``read_training_log`` into a
temporary warehouse, then for each scenario fits the law on some runs
(``fit_schedule_in_warehouse``) and predicts the others from their LR sequence
alone, with the paper's S2 momentum factor 0.999 and with 0.99. Errors are against
the raw per-step training loss and against a
centred 51-step moving average of it (the law predicts the trend, not the
batch noise). A naive baseline predicts a run by another run's observed curve.

    python -m benchmarks.lr_law_transfer                 # 1200 steps per run, ~3-4 min on 2 cores
    python -m benchmarks.lr_law_transfer --steps 300     # quick
Writes ``benchmarks/results/lr_law_transfer.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from ldw.corpus import SPLIT_SEED, load_documents, split_documents
from ldw.dynamics.lr_law_store import fit_schedule_in_warehouse
from ldw.ingest.training_logs import read_training_log
from ldw.train.bpe import train_bpe_tokenizer
from ldw.train.config import TrainConfig, build_model_config
from ldw.train.lr_schedules import constant_schedule, cosine_schedule, wsd_schedule
from ldw.train.trainer import sample_windows, seed_everything, token_stream
from ldw.warehouse import Warehouse

RESULTS = Path(__file__).resolve().parent / "results" / "lr_law_transfer.json"
SCENARIOS = {
    "fit constant+wsd": (["constant", "wsd"], ["cosine"]),
    "fit cosine": (["cosine"], ["constant", "wsd"]),
    "fit wsd": (["wsd"], ["constant", "cosine"]),
    "fit constant": (["constant"], ["wsd", "cosine"]),
}


def train(lrs: np.ndarray, stream: torch.Tensor, config: TrainConfig, vocab: int, eos: int, log: Path) -> float:
    """Train for ``len(lrs) - 1`` steps with ``lrs[step]``; write the reference trainer's JSONL log; return seconds."""
    seed_everything(config.seed)
    model = AutoModelForCausalLM.from_config(build_model_config(config, vocab, eos))
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=float(lrs[1]),
        betas=(0.9, 0.95),
    )
    generator = torch.Generator().manual_seed(config.seed)
    model.train()
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        for step in range(1, len(lrs)):
            for group in optimizer.param_groups:
                group["lr"] = float(lrs[step])
            batch = sample_windows(stream, config.batch_size, config.seq_len, generator)
            loss = model(input_ids=batch, labels=batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            handle.write(
                json.dumps(
                    {
                        "step": step,
                        "loss": loss.item(),
                        "grad_norm": grad_norm.item(),
                        "lr": float(lrs[step]),
                        "tokens_seen": step * config.batch_size * config.seq_len,
                    }
                )
                + "\n"
            )
    return time.perf_counter() - started


def moving_average(values: np.ndarray, window: int = 51) -> np.ndarray:
    """Centred moving average (shrinking at the ends)."""
    kernel = np.ones(window)
    return np.convolve(values, kernel, "same") / np.convolve(np.ones_like(values), kernel, "same")


def errors(pred: np.ndarray, obs: np.ndarray, start: int, noisy_pred: bool) -> dict[str, float]:
    """RMSE / MAPE % against raw and smoothed loss, from ``start`` on (the law skips warmup).

    A prediction that is itself an observed curve (``noisy_pred``) is smoothed too for the smoothed errors.
    """
    smooth_pred = moving_average(pred)[start:] if noisy_pred else pred[start:]
    p, o, s = pred[start:], obs[start:], moving_average(obs)[start:]
    return {
        "rmse": float(np.sqrt(np.mean((p - o) ** 2))),
        "mape_pct": float(100 * np.mean(np.abs(p - o) / o)),
        "rmse_smoothed": float(np.sqrt(np.mean((smooth_pred - s) ** 2))),
        "mape_pct_smoothed": float(100 * np.mean(np.abs(smooth_pred - s) / s)),
    }


def main() -> None:
    """Train the runs, fit and predict every scenario, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument(
        "--decays",
        type=float,
        nargs="+",
        default=[0.999, 0.99],
        help="momentum factors of S2 to compare (the paper's is 0.999)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)  # a tiny model: threads only add synchronisation on shared cores
    config = TrainConfig(
        steps=args.steps,
        lr=args.lr,
        warmup_steps=args.warmup,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        device="cpu",
    )
    schedules = {
        "constant": constant_schedule(args.steps, args.lr, args.warmup),
        "wsd": wsd_schedule(args.steps, args.lr, args.warmup, decay_fraction=0.2),
        "cosine": cosine_schedule(args.steps, args.lr, args.warmup, min_ratio=0.1),
    }
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        train_docs, _ = split_documents(load_documents("builtin"), config.eval_fraction, SPLIT_SEED)
        tokenizer = train_bpe_tokenizer(train_docs, config.vocab_size, root / "tokenizer")
        stream = token_stream(train_docs, tokenizer)
        wh = Warehouse.create(root / "wh")
        train_seconds, observed = {}, {}
        for name, lrs in schedules.items():
            log = root / f"{name}.jsonl"
            train_seconds[name] = train(lrs, stream, config, len(tokenizer), tokenizer.eos_token_id, log)
            traces = read_training_log(log)
            wh.write_traces(name, traces)
            observed[name] = traces.filter(traces["name"] == "loss").sort("step")["value"].to_numpy()
            print(f"trained {name}: {train_seconds[name]:.1f} s, final loss {observed[name][-50:].mean():.3f}")
        rows, fits = [], {}
        start = max(args.warmup, int(np.ceil(0.05 * args.steps)))
        for scenario, (fit_runs, targets) in SCENARIOS.items():
            for decay in args.decays:
                began = time.perf_counter()
                result = fit_schedule_in_warehouse(
                    root / "wh", fit_runs, predict=[f"run:{t}" for t in targets], decay=decay
                )
                p = result.fit.params
                fits[f"{scenario}, decay {decay}"] = {
                    "L0": p.L0,
                    "A": p.A,
                    "alpha": p.alpha,
                    "C": p.C,
                    "fit_seconds": time.perf_counter() - began,
                }
                for target in fit_runs + targets:
                    curve = result.curves.filter(result.curves["schedule"] == target).sort("step")
                    kind = "fit" if target in fit_runs else "predict"
                    rows.append(
                        {
                            "scenario": scenario,
                            "schedule": target,
                            "kind": kind,
                            "method": f"law {decay}",
                            **errors(curve["predicted_loss"].to_numpy(), observed[target], start - 1, False),
                        }
                    )
            for target in targets:
                for source in fit_runs:
                    rows.append(
                        {
                            "scenario": scenario,
                            "schedule": target,
                            "kind": "predict",
                            "method": f"copy {source}",
                            **errors(observed[source], observed[target], start - 1, True),
                        }
                    )
    header = ["scenario", "schedule", "kind", "method", "rmse", "mape_pct", "rmse_smoothed", "mape_pct_smoothed"]
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(f"{row[k]:.4f}" if isinstance(row[k], float) else str(row[k]) for k in header))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "config": {
                    "steps": args.steps,
                    "lr": args.lr,
                    "warmup": args.warmup,
                    "batch_size": args.batch_size,
                    "seq_len": args.seq_len,
                    "model": "tiny gpt_neox",
                    "corpus": "builtin",
                    "optimizer": "AdamW(0.9, 0.95)",
                    "evaluated_from_step": start,
                    "decays": args.decays,
                },
                "train_seconds": train_seconds,
                "fits": fits,
                "errors": rows,
                "machine": {
                    "cpus": os.cpu_count(),
                    "load_avg_before": load,
                    "platform": platform.platform(),
                    "torch": torch.__version__,
                },
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
