"""Surprisal scoring throughput: per-sentence loop, padded batches, simple packed pass, and ldw's sweep.

All four score the same tokens with the same model in one run, and each is
compared against a float32 reference (float64 log-softmax over fp32 logits,
one window at a time). Prints a table and writes
``benchmarks/results/sweep_throughput.json``.

    python -m benchmarks.sweep_throughput --shape tiny --windows 8      # CPU, seconds
    python -m benchmarks.sweep_throughput --shape 160m --windows 256    # GPU
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from ldw.probe.scoring import EvalBatchPlan, score_surprisal

SHAPES = {  # hidden, layers, heads, vocab
    "tiny": (64, 2, 4, 512),
    "small": (256, 6, 8, 8192),
    "160m": (768, 12, 12, 50304),
    "1b": (2048, 16, 8, 50304),
}
H100_BF16_FLOPS = 790e12
SENTENCE = 32
LN2 = math.log(2)


def build_model(shape: str, seq_len: int, device: torch.device) -> GPTNeoXForCausalLM:
    """A randomly initialised GPT-NeoX of the given shape (weights seeded)."""
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


def per_sentence(model, ids: np.ndarray, device, dtype) -> np.ndarray:
    """One sentence (SENTENCE tokens) per forward, full logits, first token unscored."""
    out = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        for row in ids.reshape(-1, SENTENCE):
            x = torch.as_tensor(row[None], device=device)
            logp = torch.log_softmax(model(x).logits.float(), -1)[0, :-1].gather(1, x[0, 1:, None])
            out.append((-logp[:, 0] / LN2).cpu().numpy())
    return np.concatenate(out)


def padded(model, ids: np.ndarray, device, dtype, batch: int = 32) -> np.ndarray:
    """Batches of 32 sentences right-padded to the longest, attention mask, full logits."""
    rows = ids.reshape(-1, SENTENCE)
    out = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        for start in range(0, len(rows), batch):
            x = torch.as_tensor(rows[start : start + batch], device=device)
            mask = torch.ones_like(x)
            logp = torch.log_softmax(model(x, attention_mask=mask).logits.float(), -1)[:, :-1]
            out.append((-logp.gather(2, x[:, 1:, None])[..., 0] / LN2).reshape(-1).cpu().numpy())
    return np.concatenate(out)


def packed_simple(model, ids: np.ndarray, device, dtype, batch: int) -> np.ndarray:
    """Packed windows, full float32 log-softmax over every position."""
    out = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        for start in range(0, len(ids), batch):
            x = torch.as_tensor(ids[start : start + batch], device=device)
            logp = torch.log_softmax(model(x).logits.float(), -1)[:, :-1].gather(2, x[:, 1:, None])
            out.append((-logp[..., 0] / LN2).reshape(-1).cpu().numpy())
    return np.concatenate(out)


def reference(model, ids: np.ndarray, device) -> np.ndarray:
    """float32 forward, float64 log-softmax, one window at a time."""
    out = []
    with torch.inference_mode():
        for row in ids:
            x = torch.as_tensor(row[None], device=device)
            logp = torch.log_softmax(model(x).logits.double(), -1)[0, :-1].gather(1, x[0, 1:, None])
            out.append((-logp[:, 0] / LN2).cpu().numpy())
    return np.concatenate(out)


def _time(fn, device) -> tuple[np.ndarray, float]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    values = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return values, time.perf_counter() - start


def main() -> None:
    """Run every method on the same tokens and report tokens/s and error."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--windows", type=int, default=16, help="packed windows to score")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8, help="windows per forward for the packed methods")
    parser.add_argument("--skip-slow", action="store_true", help="skip the per-sentence loop")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sweep_throughput.json")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = build_model(args.shape, args.seq_len, device)
    vocab = model.config.vocab_size
    ids = np.random.default_rng(0).integers(0, vocab, size=(args.windows, args.seq_len))
    want = reference(model, ids, device)
    # the sentence-based methods see each 32-token sentence on its own: their own reference
    want_sentences = reference(model, ids.reshape(-1, SENTENCE), device)

    plan = EvalBatchPlan(
        ids, np.repeat(np.arange(args.windows), args.seq_len - 1), np.tile(np.arange(1, args.seq_len), args.windows)
    )
    fast = build_model(args.shape, args.seq_len, device).to(dtype)
    methods = {
        "per_sentence": (lambda: per_sentence(model, ids, device, dtype), want_sentences),
        "padded": (lambda: padded(model, ids, device, dtype), want_sentences),
        "packed_simple": (lambda: packed_simple(model, ids, device, dtype, args.batch), want),
        "ldw": (lambda: score_surprisal(fast, plan, args.batch), want),
    }
    if args.skip_slow:
        del methods["per_sentence"]
    rows, rates, errors = [], {}, {}
    floor = H100_BF16_FLOPS / flops_per_token(model, args.seq_len) if device.type == "cuda" else None
    for name, (fn, target) in methods.items():
        fn()  # warm-up
        values, seconds = _time(fn, device)
        err = np.abs(values - target)
        rates[name] = len(values) / seconds
        errors[name] = {"max": float(err.max()), "mean": float(err.mean()), "p99": float(np.quantile(err, 0.99))}
        rows.append((name, rates[name], rates[name] / floor if floor else float("nan"), *errors[name].values()))

    device_name = (
        torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()})"
    )
    print(f"device: {device_name}; shape {args.shape}; {args.windows} x {args.seq_len} tokens; dtype {dtype}")
    print(f"{'method':<14}{'tokens/s':>14}{'of floor':>10}{'max err':>12}{'mean err':>12}{'p99 err':>12}")
    for name, rate, frac, emax, emean, ep99 in rows:
        share = f"{frac:.1%}" if floor else "n/a"
        print(f"{name:<14}{rate:>14,.0f}{share:>10}{emax:>12.2e}{emean:>12.2e}{ep99:>12.2e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "device": device_name,
                "shape": args.shape,
                "windows": args.windows,
                "seq_len": args.seq_len,
                "dtype": str(dtype),
                "tokens_per_s": rates,
                "flop_floor_tokens_per_s": floor,
                "max_abs_err_bits": errors["ldw"]["max"],
                "errors_bits": errors,
                "command": "python -m benchmarks.sweep_throughput "
                + " ".join(
                    f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out", "skip_slow")
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
