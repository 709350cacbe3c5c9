"""Benchmark: n-gram counting throughput and peak memory on a synthetic corpus.

Tokens are drawn i.i.d. from a Zipf(1.1) distribution over the vocabulary and
cut into documents of geometric length, so nearly every 4- and 5-gram is new: a
worst case for the number of distinct n-grams (real text repeats more). Only
the counter's time is measured (generating the tokens is not), with start
padding and the released pruning (3- to 5-grams seen once), then the lookup of
every position but the first of a synthetic evaluation set (``raw_features``).

    python -m benchmarks.ngram_counts                      # 20M tokens, vocab 50k
    python -m benchmarks.ngram_counts --tokens 200000      # tiny, for CI
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ldw.ngrams.counts import DEFAULT_CHUNK_TOKENS, NgramCounter
from ldw.ngrams.features import raw_features

BLOCK_TOKENS = 1 << 20


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float, float]:
    """Result of ``fn(*args)`` with its wall-clock and process CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def zipf_documents(rng: np.random.Generator, cdf: np.ndarray, n_tokens: int, doc_len: int) -> list[np.ndarray]:
    """``n_tokens`` Zipf-distributed token ids cut into documents of mean length ``doc_len``."""
    tokens = np.searchsorted(cdf, rng.random(n_tokens)).astype(np.int64)
    cuts = np.cumsum(rng.geometric(1.0 / doc_len, size=n_tokens // doc_len * 2 + 2))
    return np.split(tokens, cuts[cuts < n_tokens])


def run(args: argparse.Namespace) -> dict:
    """Count a synthetic corpus and look up an evaluation set; return the measurements."""
    rng = np.random.default_rng(args.seed)
    weights = 1.0 / np.arange(1, args.vocab + 1) ** 1.1
    cdf = np.cumsum(weights) / weights.sum()
    cdf[-1] = 1.0
    baseline_mb = peak_rss_mb()
    counter = NgramCounter(args.vocab, args.max_n, args.chunk_tokens, start_pad=True)
    count_s = count_cpu_s = 0.0
    for start in range(0, args.tokens, BLOCK_TOKENS):
        docs = zipf_documents(rng, cdf, min(BLOCK_TOKENS, args.tokens - start), args.doc_len)
        _, wall, cpu = timed(counter.update, docs)
        count_s, count_cpu_s = count_s + wall, count_cpu_s + cpu
    full, wall, cpu = timed(counter.finish)
    count_s, count_cpu_s = count_s + wall, count_cpu_s + cpu
    counts, wall, cpu = timed(full.pruned, 2, 3)
    count_s, count_cpu_s = count_s + wall, count_cpu_s + cpu
    count_peak_mb = peak_rss_mb()
    n_eval_seqs = args.eval_tokens // args.eval_seq_len
    eval_seqs = [np.searchsorted(cdf, rng.random(args.eval_seq_len)) for _ in range(n_eval_seqs)]
    seq_id = np.repeat(np.arange(len(eval_seqs)), args.eval_seq_len - 1)
    position = np.tile(np.arange(1, args.eval_seq_len), len(eval_seqs))
    features, lookup_s, lookup_cpu_s = timed(raw_features, counts, eval_seqs, seq_id, position)
    return {
        "config": vars(args),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "count": {
            "tokens": counts.n_tokens,
            "documents": counts.n_sequences,
            "seconds": round(count_s, 3),
            "cpu_seconds": round(count_cpu_s, 3),
            "tokens_per_s": round(counts.n_tokens / count_s) if count_s else None,
        },
        "distinct_ngrams": [full.distinct(k) for k in range(1, args.max_n + 1)],
        "distinct_ngrams_after_pruning": [counts.distinct(k) for k in range(1, args.max_n + 1)],
        "lookup": {
            "tokens": features.height,
            "seconds": round(lookup_s, 3),
            "cpu_seconds": round(lookup_cpu_s, 3),
            "tokens_per_s": round(features.height / lookup_s) if lookup_s else None,
        },
        "memory_mb": {
            "baseline": round(baseline_mb, 1),
            "peak_after_count": round(count_peak_mb, 1),
            "peak_total": round(peak_rss_mb(), 1),
        },
    }


def main() -> None:
    """Parse arguments, run, print a table and write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=20_000_000, help="corpus tokens to count")
    parser.add_argument("--vocab", type=int, default=50_000, help="vocabulary size")
    parser.add_argument("--max-n", type=int, default=5, help="highest n-gram order")
    parser.add_argument("--doc-len", type=int, default=500, help="mean document length in tokens")
    parser.add_argument("--chunk-tokens", type=int, default=DEFAULT_CHUNK_TOKENS, help="tokens counted per chunk")
    parser.add_argument("--eval-tokens", type=int, default=1_000_000, help="evaluation tokens looked up")
    parser.add_argument("--eval-seq-len", type=int, default=128, help="evaluation sequence length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ngram_counts.json")
    args = parser.parse_args()
    result = run(args)
    print(f"{'phase':<8}{'tokens':>14}{'wall s':>10}{'cpu s':>10}{'tokens/s (wall)':>18}")
    for phase in ("count", "lookup"):
        r = result[phase]
        print(f"{phase:<8}{r['tokens']:>14,}{r['seconds']:>10.2f}{r['cpu_seconds']:>10.2f}{r['tokens_per_s']:>18,}")
    memory = result["memory_mb"]
    print(f"distinct n-grams (n=1..{args.max_n}): {', '.join(f'{d:,}' for d in result['distinct_ngrams'])}")
    print(
        f"peak RSS: {memory['peak_after_count']:,.0f} MiB after counting, {memory['peak_total']:,.0f} MiB total "
        f"(baseline {memory['baseline']:,.0f} MiB)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
