"""Surprisal scoring throughput: per-sentence loop, padded batches, simple packed pass, and ldw's scorer.

All methods score the same tokens with the same model in one run, in each precision asked for
(weights in the precision's dtype, float32 matmuls in TF32 only for ``tf32``, the log-softmax in
float32), and each is compared against a float64 reference (float64 weights, forward and
log-softmax, one window at a time, on the first ``--ref-windows`` windows). The per-sentence loop
scores only the first ``--sentence-windows`` windows (it is 100-200x slower). ``--levers`` adds
ldw columns with ``torch.compile`` and the fused heads (CUDA; bf16/fp16). The FLOP floor is the
tokens/s at 790 TFLOP/s (an H100's reachable bf16 rate) of the matmul and attention FLOPs per token.
Prints a table and writes ``benchmarks/results/sweep_throughput.json``: its top-level figures are
those of the first precision listed, ``by_precision`` holds every precision's.

    python -m benchmarks.sweep_throughput --shape tiny --windows 8                 # CPU, seconds
    python -m benchmarks.sweep_throughput --shape 160m --windows 256 --seq-len 2048 \\
        --batch 16 --precisions bf16,fp32,tf32,fp16 --levers compile,liger,cce     # GPU
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from ldw.probe.precision import PRECISIONS, matmul_precision
from ldw.probe.scoring import EvalBatchPlan, ScoreOptions, score_plan

SHAPES = {  # hidden, layers, heads, vocab (160m and 1b: Pythia's)
    "tiny": (64, 2, 4, 512),
    "small": (256, 6, 8, 8192),
    "160m": (768, 12, 12, 50304),
    "1b": (2048, 16, 8, 50304),
}
H100_BF16_FLOPS = 790e12
SENTENCE = 32
PADDED_BATCH = 32
LN2 = math.log(2)
LEVERS = {
    "compile": ScoreOptions(compile=True),
    "liger": ScoreOptions(fused_head="liger"),
    "cce": ScoreOptions(fused_head="cce"),
}


def build_model(shape: str, seq_len: int, device: torch.device) -> GPTNeoXForCausalLM:
    """A randomly initialised GPT-NeoX of the given shape (weights seeded), float32."""
    hidden, layers, heads, vocab = SHAPES[shape]
    torch.manual_seed(0)
    config = GPTNeoXConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=seq_len,
    )
    return GPTNeoXForCausalLM(config).to(device).eval()


def flops_per_token(model: GPTNeoXForCausalLM, seq_len: int) -> float:
    """2 x matmul parameters + attention score/value products, per scored token."""
    config = model.config
    matmul = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "embed_in" not in n)
    attention = 2 * 2 * config.num_hidden_layers * config.hidden_size * seq_len / 2
    return 2 * matmul + attention


def per_sentence(model, ids: np.ndarray, device) -> np.ndarray:
    """One sentence (SENTENCE tokens) per forward, full logits, first token unscored (the minicons way)."""
    out = []
    with torch.inference_mode():
        for row in ids.reshape(-1, SENTENCE):
            x = torch.as_tensor(row[None], device=device)
            logp = torch.log_softmax(model(x).logits.float(), -1)[0, :-1].gather(1, x[0, 1:, None])
            out.append((-logp[:, 0] / LN2).cpu().numpy())
    return np.concatenate(out)


def padded(model, ids: np.ndarray, device, batch: int = PADDED_BATCH) -> np.ndarray:
    """Batches of 32 sentences with an attention mask, full logits (sentences here are all full length)."""
    rows = ids.reshape(-1, SENTENCE)
    out = []
    with torch.inference_mode():
        for start in range(0, len(rows), batch):
            x = torch.as_tensor(rows[start : start + batch], device=device)
            logp = torch.log_softmax(model(x, attention_mask=torch.ones_like(x)).logits.float(), -1)[:, :-1]
            out.append((-logp.gather(2, x[:, 1:, None])[..., 0] / LN2).reshape(-1).cpu().numpy())
    return np.concatenate(out)


def packed_simple(model, ids: np.ndarray, device, batch: int) -> np.ndarray:
    """Packed windows, full float32 log-softmax over every position, one copy back per batch."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(ids), batch):
            x = torch.as_tensor(ids[start : start + batch], device=device)
            logp = torch.log_softmax(model(x).logits.float(), -1)[:, :-1].gather(2, x[:, 1:, None])
            out.append((-logp[..., 0] / LN2).reshape(-1).cpu().numpy())
    return np.concatenate(out)


def reference(model, ids: np.ndarray, device) -> np.ndarray:
    """float64 weights, forward and log-softmax, one window at a time."""
    out = []
    with torch.inference_mode(), matmul_precision(False):
        for row in ids:
            x = torch.as_tensor(row[None], device=device)
            logp = torch.log_softmax(model(x).logits, -1)[0, :-1].gather(1, x[0, 1:, None])
            out.append((-logp[:, 0] / LN2).cpu().numpy())
    return np.concatenate(out)


def window_plan(ids: np.ndarray) -> EvalBatchPlan:
    """Every position but the first of every window."""
    windows, length = ids.shape
    return EvalBatchPlan(ids, np.repeat(np.arange(windows), length - 1), np.tile(np.arange(1, length), windows))


def _time(fn: Callable[[], np.ndarray], device: torch.device) -> tuple[np.ndarray, float]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    values = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return values, time.perf_counter() - start


def _errors(values: np.ndarray, want: np.ndarray) -> dict:
    n = min(len(values), len(want))  # the tokens both cover: the first windows
    err = np.abs(values[:n].astype(np.float64) - want[:n])
    return {"max": float(err.max()), "mean": float(err.mean()), "p99": float(np.quantile(err, 0.99))}


def methods(args: argparse.Namespace, model, ids: np.ndarray, device, precision: str) -> dict[str, Callable]:
    """The methods to time in one precision, by column name."""
    plan = window_plan(ids)
    chosen: dict[str, Callable] = {
        "per_sentence": lambda: per_sentence(model, ids[: args.sentence_windows], device),
        "padded": lambda: padded(model, ids, device),
        "packed_simple": lambda: packed_simple(model, ids, device, args.batch),
        "ldw": lambda: score_plan(model, plan, ScoreOptions(args.batch)).values,
    }
    if args.skip_slow:
        del chosen["per_sentence"]
    for lever in args.levers:
        if lever != "compile" and precision not in ("bf16", "fp16"):
            continue  # the fused heads run with half-precision weights only
        options = ScoreOptions(args.batch, LEVERS[lever].fused_head, LEVERS[lever].compile)
        chosen[f"ldw_{lever}"] = lambda options=options: score_plan(model, plan, options).values
    return chosen


def run_precision(args, base, ids, device, want, want_sentences, floor) -> dict:
    """Time every method in one precision: tokens/s, share of the FLOP floor, error against float64 (bits)."""
    spec = PRECISIONS[args.current]
    model = base.to(spec.weights)
    rates, errors, heads = {}, {}, {}
    with matmul_precision(spec.tf32):
        for name, fn in methods(args, model, ids, device, args.current).items():
            fn()  # warm-up (and compilation)
            values, seconds = _time(fn, device)
            rates[name] = len(values) / seconds
            target = want_sentences if name in ("per_sentence", "padded") else want
            errors[name] = _errors(values, target)
            if name.startswith("ldw_") and name != "ldw_compile":
                plan = window_plan(ids[:1])
                heads[name] = score_plan(model, plan, ScoreOptions(1, LEVERS[name[4:]].fused_head)).head
    share = {name: rate / floor for name, rate in rates.items()} if floor else None
    return {"tokens_per_s": rates, "flop_floor_share": share, "errors_bits": errors, "heads": heads}


def main() -> None:
    """Run every method in every precision on the same tokens and report tokens/s and error."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--windows", type=int, default=16, help="packed windows to score")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8, help="windows per forward for the packed methods")
    parser.add_argument("--precisions", default="", help="comma-separated (default: fp32 on CPU, bf16,fp32 on CUDA)")
    parser.add_argument("--levers", default="", help="extra ldw columns: compile, liger, cce (comma-separated)")
    parser.add_argument("--ref-windows", type=int, default=16, help="windows compared with the float64 reference")
    parser.add_argument("--sentence-windows", type=int, default=4, help="windows the per-sentence loop scores")
    parser.add_argument("--skip-slow", action="store_true", help="skip the per-sentence loop")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sweep_throughput.json")
    args = parser.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    precisions = [p for p in args.precisions.split(",") if p] or (
        ["bf16", "fp32"] if device.type == "cuda" else ["fp32"]
    )
    args.levers = [lever for lever in args.levers.split(",") if lever]
    unknown = sorted(set(precisions) - set(PRECISIONS)) + sorted(set(args.levers) - set(LEVERS))
    if unknown:
        parser.error(f"unknown precision or lever: {', '.join(unknown)}")
    args.sentence_windows = min(args.sentence_windows, args.windows)
    args.ref_windows = min(args.ref_windows, args.windows)

    base = build_model(args.shape, args.seq_len, device)
    ids = np.random.default_rng(0).integers(0, base.config.vocab_size, size=(args.windows, args.seq_len))
    exact = build_model(args.shape, args.seq_len, device).double()
    want = reference(exact, ids[: args.ref_windows], device)
    # the sentence-based methods see each 32-token sentence on its own: their own reference
    want_sentences = reference(exact, ids[: args.ref_windows].reshape(-1, SENTENCE), device)
    del exact
    floor = H100_BF16_FLOPS / flops_per_token(base, args.seq_len) if device.type == "cuda" else None
    by_precision = {}
    for precision in precisions:
        args.current = precision
        by_precision[precision] = run_precision(args, base, ids, device, want, want_sentences, floor)
        base = build_model(args.shape, args.seq_len, device)  # a fresh float32 model for the next precision

    device_name = (
        torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()})"
    )
    print(f"device: {device_name}; shape {args.shape}; {args.windows} x {args.seq_len} tokens; batch {args.batch}")
    print(f"{'precision':<10}{'method':<16}{'tokens/s':>14}{'of floor':>10}{'max err':>12}{'mean err':>12}")
    for precision, result in by_precision.items():
        for name, rate in result["tokens_per_s"].items():
            share = f"{result['flop_floor_share'][name]:.1%}" if floor else "n/a"
            err = result["errors_bits"][name]
            print(f"{precision:<10}{name:<16}{rate:>14,.0f}{share:>10}{err['max']:>12.2e}{err['mean']:>12.2e}")
    head = by_precision[precisions[0]]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "device": device_name,
                "shape": args.shape,
                "windows": args.windows,
                "seq_len": args.seq_len,
                "dtype": str(PRECISIONS[precisions[0]].weights),
                "precision": precisions[0],
                "tokens_per_s": head["tokens_per_s"],
                "flop_floor_tokens_per_s": floor,
                "max_abs_err_bits": head["errors_bits"]["ldw"]["max"],
                "errors_bits": head["errors_bits"],
                "error_reference": f"float64 forward and log-softmax on the first {args.ref_windows} windows",
                "sentence_windows": args.sentence_windows,
                "by_precision": by_precision,
                "versions": {"torch": torch.__version__, "python": platform.python_version()},
                "command": " ".join(["python -m benchmarks.sweep_throughput", *sys.argv[1:]]),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
