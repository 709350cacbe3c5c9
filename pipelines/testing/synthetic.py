"""A synthetic warehouse with constructed values, written through the Warehouse API.

Used by the app tests (small) and by ``python -m benchmarks.app_latency`` (up to
the Chang et al. scale: 1M tokens x 5 runs x 222 checkpoints). Every table the app
reads is filled: runs, checkpoints, the evaluation set, one surprisal file per
(run, checkpoint), traces (loss, grad_norm, lr) with injected spikes, and the
derived tables token_metrics, crossrun_metrics, token_curves_smoothed,
ngram_stats, spikes, spike_tokens (for loss and grad_norm spikes),
weight_probes, lr_law_fit and lr_law_curves.

Curves are sigmoids in log10(step) from chance down to a per-token final
surprisal (frequent tokens lower and earlier) plus Gaussian noise; the tokens
named in ``SyntheticInfo.spike_risers`` jump by ``SPIKE_BUMP_BITS`` at the
first checkpoint after each loss spike, so ``spike_tokens`` is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from ldw.testing.synthetic_derived import curves, log10_steps, write_derived_tables
from ldw.warehouse import CheckpointRecord, RunRecord, Warehouse

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "that",
    "on",
    "as",
    "with",
    "by",
    "it",
    "he",
    "at",
    "from",
    "his",
    "an",
    "were",
    "are",
    "which",
    "this",
    "be",
    "or",
    "has",
    "had",
    "not",
    "first",
    "one",
    "their",
    "its",
    "new",
    "after",
    "but",
    "who",
    "they",
    "have",
    "her",
    "she",
    "two",
    "been",
    "other",
    "when",
    "there",
    "all",
    "during",
    "into",
    "school",
    "time",
    "may",
    "years",
    "more",
    "most",
    "only",
    "over",
    "city",
    "some",
    "world",
    "would",
    "where",
    "later",
    "up",
    "such",
    "used",
    "many",
    "can",
    "state",
    "about",
    "national",
    "out",
    "known",
    "university",
    "united",
    "then",
    "made",
    "model",
    "token",
    "loss",
    "cat",
    "sat",
    "mat",
    "dog",
    "ran",
    "far",
    "near",
    "bits",
    "step",
    "curve",
    "learn",
    "seed",
    "run",
    "data",
    "set",
]
SPIKE_BUMP_BITS = 2.5
SWEEP_ID = "sweep-synthetic"


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes of a synthetic warehouse; tokens = sequences x (seq_len - 1) (every position but the first)."""

    n_sequences: int = 40
    seq_len: int = 16
    n_runs: int = 3
    n_checkpoints: int = 12
    vocab_size: int = 400
    max_step: int = 10_000
    trace_every: int = 10
    seed: int = 0
    derived: bool = True
    smoothed: bool = True
    spike_riser_fraction: float = 0.01
    top_n: int = 50

    @property
    def n_tokens(self) -> int:
        """Number of evaluation tokens."""
        return self.n_sequences * (self.seq_len - 1)


@dataclass
class SyntheticInfo:
    """What was written: ids, steps and the constructed facts tests check against."""

    root: Path
    run_ids: list[str]
    steps: np.ndarray
    n_tokens: int
    vocab: list[str]
    spikes: list[tuple[str, int, int, int]] = field(default_factory=list)
    spike_risers: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)


def checkpoint_steps(n: int, max_step: int) -> np.ndarray:
    """Step 0 plus ``n - 1`` distinct log-spaced steps ending at ``max_step``."""
    if n < 2 or max_step < n - 1:
        raise ValueError(f"need n >= 2 and max_step >= n - 1, got n={n}, max_step={max_step}")
    k = n - 1
    while True:
        steps = np.unique(np.round(np.geomspace(1, max_step, k)).astype(np.int64))
        if len(steps) >= n - 1:
            return np.concatenate([[0], steps[np.linspace(0, len(steps) - 1, n - 1).round().astype(int)]])
        k += 1


def vocabulary(size: int) -> list[str]:
    """Token texts: common words with a leading space, then numbered pieces."""
    texts = [f" {w}" for w in WORDS] + [".", ",", "\n"]
    texts += [f" w{i}" if i % 3 else f"ing{i}" for i in range(size - len(texts))]
    return texts[:size]


def _write_eval_set(wh: Warehouse, spec: SyntheticSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Zipf-distributed token ids; returns (token ids of the scored tokens, unigram probabilities)."""
    prob = 1.0 / (np.arange(spec.vocab_size) + 2.7) ** 1.1
    prob /= prob.sum()
    ids = rng.choice(spec.vocab_size, size=(spec.n_sequences, spec.seq_len), p=prob).astype(np.int32)
    texts = np.array(vocabulary(spec.vocab_size), dtype=object)
    seq = np.repeat(np.arange(spec.n_sequences), spec.seq_len - 1)
    pos = np.tile(np.arange(1, spec.seq_len, dtype=np.int32), spec.n_sequences)
    target = ids[seq, pos]
    wh.write_eval_set(
        pa.table({"seq_id": np.arange(spec.n_sequences, dtype=np.int64), "input_ids": list(ids)}),
        pa.table(
            {
                "token_idx": np.arange(len(seq), dtype=np.int64),
                "seq_id": seq.astype(np.int64),
                "position": pos,
                "token_id": target,
                "token_text": texts[target].tolist(),
                "context_len": pos,
            }
        ),
        {"synthetic": True, "seq_len": spec.seq_len, "seed": spec.seed},
        "synthetic-fp",
        spec.vocab_size,
    )
    return target, prob


def _traces(
    wh: Warehouse, run_id: str, spec: SyntheticSpec, spikes: list[tuple[int, int, int]], rng: np.random.Generator
) -> None:
    steps = np.arange(0, spec.max_step + 1, spec.trace_every, dtype=np.int64)
    loss = 2.0 + 8.0 * (steps + 10.0) ** -0.4 + rng.normal(0, 0.01, len(steps))
    grad = 0.6 + 0.2 * np.exp(-steps / (0.05 * spec.max_step)) + rng.normal(0, 0.01, len(steps))
    warm = max(1, spec.max_step // 100)
    lr = np.where(
        steps < warm,
        3e-4 * steps / warm,
        3e-4 * (0.1 + 0.45 * (1 + np.cos(np.pi * np.clip((steps - warm) / (spec.max_step - warm), 0, 1)))),
    )
    for start, peak, end in spikes:
        inside = (steps >= start) & (steps < end)
        bump = np.where(inside, 1.0 - np.abs(steps - peak) / max(end - start, 1), 0.0)
        loss += 1.5 * bump
        grad += 4.0 * bump
    frame = pl.DataFrame(
        {
            "step": np.tile(steps, 3),
            "name": np.repeat(["loss", "grad_norm", "lr"], len(steps)),
            "value": np.concatenate([loss, grad, lr]),
        }
    )
    wh.write_traces(run_id, frame)


def _spike_steps(spec: SyntheticSpec, steps: np.ndarray, run_index: int) -> list[tuple[int, int, int]]:
    """Two spikes per run, each between two checkpoints: (start, peak, end) on the trace grid."""
    out = []
    for frac in (0.45, 0.75):
        at = int(frac * spec.max_step) + run_index * spec.trace_every * 7
        start = at // spec.trace_every * spec.trace_every
        width = max(3 * spec.trace_every, spec.max_step // 200 // spec.trace_every * spec.trace_every)
        out.append((start, start + width // 2 // spec.trace_every * spec.trace_every, start + width))
    return out


def build_synthetic_warehouse(
    root: Path, spec: SyntheticSpec = SyntheticSpec(), progress: bool = False
) -> SyntheticInfo:
    """Write a complete synthetic warehouse at ``root`` (created) and return what it holds."""
    rng = np.random.default_rng(spec.seed)
    wh = Warehouse.create(root)
    target, prob = _write_eval_set(wh, spec, rng)
    n = spec.n_tokens
    chance = float(np.log2(spec.vocab_size))
    steps = checkpoint_steps(spec.n_checkpoints, spec.max_step)
    x = log10_steps(steps)
    window = steps >= 0.75 * steps.max()
    info = SyntheticInfo(
        Path(root).resolve(), [f"seed{r}" for r in range(spec.n_runs)], steps, n, vocabulary(spec.vocab_size)
    )
    surprisal_unigram = -np.log2(prob[target])
    base_final = np.clip(1.0 + 0.5 * surprisal_unigram + rng.normal(0, 0.8, n), 0.3, chance - 1.0)
    base_aoa = np.clip(0.6 + 0.15 * surprisal_unigram + rng.normal(0, 0.3, n), 0.2, x.max() - 0.3)
    per_run: dict[str, dict[str, np.ndarray]] = {}
    for r, run_id in enumerate(info.run_ids):
        wh.upsert_run(
            RunRecord(
                run_id,
                run_id,
                r,
                f"/synthetic/{run_id}",
                "step_folders",
                "gpt_neox",
                {"hidden_size": 64},
                None,
                "synthetic-fp",
                2048,
                {},
            )
        )
        wh.upsert_checkpoints(
            run_id,
            [
                CheckpointRecord(int(s), int(s) * 2048, f"/synthetic/{run_id}/step{s}", f"{run_id}-{s}", None)
                for s in steps
            ],
        )
        final = np.clip(base_final + rng.normal(0, 0.2, n), 0.1, chance - 0.5).astype(np.float32)
        aoa = (base_aoa + rng.normal(0, 0.12, n)).astype(np.float32)
        spikes = _spike_steps(spec, steps, r)
        _traces(wh, run_id, spec, spikes, rng)
        bumps: dict[int, np.ndarray] = {}
        for spike_id, (start, _, end) in enumerate(spikes):
            risers = np.sort(rng.choice(n, size=max(1, int(spec.spike_riser_fraction * n)), replace=False))
            after = int(steps[steps >= end][0])
            bumps.setdefault(after, np.zeros(n, dtype=np.float32))[risers] += SPIKE_BUMP_BITS
            info.spikes.append((run_id, spike_id, start, end))
            info.spike_risers[(run_id, spike_id)] = risers
        total = np.zeros(n, dtype=np.float64)
        total_sq = np.zeros(n, dtype=np.float64)
        kept: dict[int, np.ndarray] = {}
        wanted = {int(steps[steps <= start][-1]) for start, _, _ in spikes}
        wanted |= {int(steps[steps >= end][0]) for _, _, end in spikes}
        for col, step in enumerate(steps):
            values = curves(x[col : col + 1], final, aoa, chance)[:, 0]
            values += rng.standard_normal(n, dtype=np.float32) * 0.25
            values += bumps.get(int(step), 0.0)
            np.maximum(values, 0.0, out=values)
            wh.write_surprisal(run_id, int(step), values, SWEEP_ID)
            if window[col]:
                total += values
                total_sq += values.astype(np.float64) ** 2
            if int(step) in wanted:
                kept[int(step)] = values.copy()
            if progress:
                print(f"\r{run_id} checkpoint {col + 1}/{len(steps)}", end="", flush=True)
        k = int(window.sum())
        per_run[run_id] = {
            "final": final,
            "aoa": aoa,
            "mean": total / k,
            "std": np.sqrt(np.maximum(total_sq / k - (total / k) ** 2, 0.0)),
            "kept": kept,
        }
    if progress:
        print()
    if spec.derived:
        write_derived_tables(wh, spec, info, per_run, target, prob, chance)
    return info
