"""Derived tables of the synthetic warehouse, in the layouts the pipelines write them.

token_metrics / crossrun_metrics / token_curves_smoothed are written one part
per 65,536-token chunk holding every run (as ``ldw metrics`` does); the other
tables are one part each. Values are constructed from the synthetic curves'
parameters (``final``, ``aoa``) and the raw values kept while writing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa

from ldw.warehouse import Warehouse
from ldw.warehouse.tables import chunk_part

if TYPE_CHECKING:
    from ldw.testing.synthetic import SyntheticInfo, SyntheticSpec

CHUNK = 65_536


def curves(x: np.ndarray, final: np.ndarray, aoa: np.ndarray, chance: float) -> np.ndarray:
    """Noise-free curves [T, len(x)]: chance before acquisition (x < aoa), ``final`` after."""
    gate = 1.0 / (1.0 + np.exp((x[None, :] - aoa[:, None]) / 0.15))
    return (final[:, None] + (chance - final[:, None]) * gate).astype(np.float32)


def log10_steps(steps: np.ndarray) -> np.ndarray:
    """log10 of the steps, step 0 placed at log10(0.1) = -1."""
    return np.log10(np.maximum(steps, 0.1).astype(np.float64))


def _chunk_tables(
    spec: SyntheticSpec, info: SyntheticInfo, per_run: dict[str, dict[str, Any]], lo: int, hi: int, chance: float
) -> tuple[pa.Table, pa.Table, pa.Table | None]:
    steps = info.steps[info.steps > 0]
    x = log10_steps(steps)
    token_idx = np.arange(lo, hi, dtype=np.int64)
    metric_parts, curve_parts, smoothed = [], [], []
    for run_id in info.run_ids:
        run = per_run[run_id]
        final, aoa = run["final"][lo:hi], run["aoa"][lo:hi]
        g = curves(x, final, aoa, chance)
        smoothed.append(g)
        aoa_log10 = np.clip(aoa, x.min(), x.max()).astype(np.float64)
        forget = np.zeros(hi - lo)
        for (rid, _), risers in info.spike_risers.items():
            if rid == run_id:
                inside = risers[(risers >= lo) & (risers < hi)] - lo
                forget[inside] += 2.5
        metric_parts.append(
            pa.table(
                {
                    "run_id": pa.array([run_id] * (hi - lo), pa.string()),
                    "token_idx": token_idx,
                    "final_surprisal": run["mean"][lo:hi],
                    "within_run_var": run["std"][lo:hi],
                    "aoa_log10_step": aoa_log10,
                    "aoa_step": 10.0**aoa_log10,
                    "aoa_threshold_bits": 0.5 * chance + 0.5 * final.astype(np.float64),
                    "acquired": (aoa <= x.max()) & (final < chance),
                    "forgettability": forget + 0.05 * final,
                    "gam_lambda": np.ones(hi - lo),
                }
            )
        )
        if spec.smoothed:
            offsets = pa.array(np.arange(hi - lo + 1, dtype=np.int32) * len(steps), pa.int32())
            curve_parts.append(
                pa.table(
                    {
                        "run_id": pa.array([run_id] * (hi - lo), pa.string()),
                        "token_idx": token_idx,
                        "g_bits": pa.ListArray.from_arrays(offsets, pa.array(g.ravel(), pa.float32())),
                    }
                )
            )
    stacked = np.stack(smoothed)
    pairs = [(a, b) for a in range(len(stacked)) for b in range(a + 1, len(stacked))]
    crossrun = (
        np.mean([np.mean((stacked[a] - stacked[b]) ** 2, axis=1) for a, b in pairs], axis=0)
        if pairs
        else np.zeros(hi - lo)
    )
    metrics = pa.concat_tables(metric_parts)
    means = {
        f"mean_{name}": np.mean([m.column(name).to_numpy() for m in metric_parts], axis=0)
        for name in ("final_surprisal", "within_run_var", "aoa_log10_step", "forgettability")
    }
    cross = pa.table(
        {
            "token_idx": token_idx,
            "crossrun_var": crossrun.astype(np.float64),
            "n_runs": np.full(hi - lo, len(info.run_ids), dtype=np.int32),
            "n_runs_acquired": np.sum([m.column("acquired").to_numpy() for m in metric_parts], axis=0, dtype=np.int32),
            **means,
        }
    )
    return metrics, cross, pa.concat_tables(curve_parts) if curve_parts else None


def _ngram_stats(
    target: np.ndarray, prob: np.ndarray, n_sequences: int, seq_len: int, rng: np.random.Generator
) -> pl.DataFrame:
    log2p = np.log2(prob[target])
    counts = np.maximum(1, np.round(prob[target] * 1e7)).astype(np.int64)
    ngram = np.clip(log2p + 2.0 + rng.normal(0, 1.5, len(target)), None, 0.0)
    coef = np.polyfit(log2p, ngram, 1)
    position = np.tile(np.arange(1, seq_len), n_sequences)
    diversity = rng.integers(0, 400, len(target))
    return pl.DataFrame(
        {
            "token_idx": np.arange(len(target), dtype=np.int64),
            "unigram_count": counts,
            "ngram_order": rng.integers(1, 6, len(target)).astype(np.int8),
            "ngram_log2prob": ngram,
            "contextual_div_raw": diversity.astype(np.int64),
            "log2_unigram_freq": log2p,
            "ngram_log2prob_resid": ngram - np.polyval(coef, log2p),
            "log2_context_length": np.log2(position.astype(np.float64)),
            "context_logprob": log2p.mean() + rng.normal(0, 0.5, len(target)),
            "contextual_diversity": diversity - diversity.mean(),
        }
    )


def _spike_tables(
    info: SyntheticInfo, per_run: dict[str, dict[str, Any]], top_n: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    spike_rows, token_parts = [], []
    for run_id, spike_id, start, end in info.spikes:
        peak = (start + end) // 2
        for trace, base, height in (("loss", 2.5, 1.5), ("grad_norm", 0.6, 4.0)):
            spike_rows.append(
                {
                    "run_id": run_id,
                    "trace": trace,
                    "spike_id": spike_id,
                    "step_start": start,
                    "step_peak": peak,
                    "step_end": end,
                    "baseline": base,
                    "peak_value": base + height,
                    "magnitude": height,
                    "magnitude_mads": height / 0.01,
                }
            )
        before = int(info.steps[info.steps <= start][-1])
        after = int(info.steps[info.steps >= end][0])
        kept = per_run[run_id]["kept"]
        delta = kept[after] - kept[before]
        order = np.lexsort((np.arange(len(delta)), -delta))[:top_n]
        for trace in ("loss", "grad_norm"):  # both traces' spikes span the same steps: the same risers
            token_parts.append(
                pl.DataFrame(
                    {
                        "run_id": run_id,
                        "trace": trace,
                        "spike_id": spike_id,
                        "step_before": before,
                        "step_after": after,
                        "token_idx": order.astype(np.int64),
                        "surprisal_before": kept[before][order],
                        "surprisal_after": kept[after][order],
                        "delta_bits": delta[order],
                        "rank": np.arange(1, len(order) + 1, dtype=np.int64),
                    }
                ).cast({"spike_id": pl.Int64, "step_before": pl.Int64, "step_after": pl.Int64})
            )
    return pl.DataFrame(spike_rows), pl.concat(token_parts)


def _weight_probes(info: SyntheticInfo) -> pl.DataFrame:
    """Weight probes at every checkpoint: 2 layers x 4 heads of ``qk_sigma1`` (growing with log step) and
    ``attn_entropy_bits`` (falling), and the model-level ``probe_loss``."""
    rows = []
    for r, run_id in enumerate(info.run_ids):
        for step in info.steps.tolist():
            x = float(np.log10(step + 1))
            for layer in range(2):
                for head in range(4):
                    rows.append((run_id, step, layer, head, "qk_sigma1", 1.0 + x * (layer + 1) + 0.1 * head + 0.01 * r))
                    rows.append((run_id, step, layer, head, "attn_entropy_bits", 4.0 - 0.5 * x + 0.05 * head))
            rows.append((run_id, step, -1, -1, "probe_loss", 6.0 - x))
    return pl.DataFrame(
        rows,
        schema={
            "run_id": pl.String,
            "step": pl.Int64,
            "layer": pl.Int64,
            "head": pl.Int64,
            "name": pl.String,
            "value": pl.Float64,
        },
        orient="row",
    )


def _lr_law_tables(wh: Warehouse, run_id: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The fit reproduces the loss trace's noise-free decay; a constant schedule is predicted 0.1 higher."""
    traces = wh.query(
        "SELECT step, name, value FROM traces WHERE run_id = ? AND name IN ('loss', 'lr') ORDER BY step", [run_id]
    ).pivot(on="name", index="step", values="value")
    steps = traces["step"].to_numpy()
    lr = traces["lr"].to_numpy()
    predicted = 2.0 + 8.0 * (steps + 10.0) ** -0.4
    observed = traces["loss"].to_numpy()
    fit = pl.DataFrame(
        [
            {
                "runs": run_id,
                "L0": 2.0,
                "A": 8.0,
                "alpha": 0.4,
                "C": 0.0,
                "decay": 0.999,
                "huber_delta": 1e-3,
                "fit_from_fraction": 0.05,
                "rmse": float(np.sqrt(np.mean((predicted - observed) ** 2))),
                "mape_pct": float(100 * np.mean(np.abs(predicted - observed) / observed)),
                "n_points": len(steps),
            }
        ]
    )
    curves = pl.concat(
        [
            pl.DataFrame(
                {
                    "schedule": run_id,
                    "kind": "fit",
                    "step": steps,
                    "lr": lr,
                    "predicted_loss": predicted,
                    "observed_loss": observed,
                }
            ),
            pl.DataFrame(
                {
                    "schedule": "constant",
                    "kind": "predict",
                    "step": steps,
                    "lr": np.full(len(lr), lr.max()),
                    "predicted_loss": predicted + 0.1,
                    "observed_loss": pl.Series([None] * len(steps), dtype=pl.Float64),
                }
            ),
        ]
    )
    return fit, curves


def write_derived_tables(
    wh: Warehouse,
    spec: SyntheticSpec,
    info: SyntheticInfo,
    per_run: dict[str, dict[str, Any]],
    target: np.ndarray,
    prob: np.ndarray,
    chance: float,
) -> None:
    """Write every derived table the app reads, each swapped in whole as the pipelines do."""
    rng = np.random.default_rng(spec.seed + 1)
    params = {
        "synthetic": True,
        "vocab_size": spec.vocab_size,
        "chance_bits": chance,
        "runs": info.run_ids,
        "steps": {r: info.steps[info.steps > 0].tolist() for r in info.run_ids},
    }
    tables = ["token_metrics", "crossrun_metrics"] + (["token_curves_smoothed"] if spec.smoothed else [])
    with wh.replace_derived_tables(dict.fromkeys(tables, params)) as write:
        for index, lo in enumerate(range(0, info.n_tokens, CHUNK)):
            metrics, cross, curves = _chunk_tables(spec, info, per_run, lo, min(info.n_tokens, lo + CHUNK), chance)
            part = chunk_part(index)
            write["token_metrics"](part, metrics)
            write["crossrun_metrics"](part, cross)
            if curves is not None:
                write["token_curves_smoothed"](part, curves)
    ngram = _ngram_stats(target, prob, spec.n_sequences, spec.seq_len, rng)
    wh.write_derived("ngram_stats", ngram, {"synthetic": True, "max_n": 5})
    spikes, spike_tokens = _spike_tables(info, per_run, spec.top_n)
    wh.write_derived("spikes", spikes, {"synthetic": True, "names": ["loss", "grad_norm"]})
    wh.write_derived(
        "spike_tokens", spike_tokens, {"synthetic": True, "traces": ["grad_norm", "loss"], "top_n": spec.top_n}
    )
    wh.write_derived("weight_probes", _weight_probes(info), {"synthetic": True})
    fit, curves = _lr_law_tables(wh, info.run_ids[0])
    wh.write_derived("lr_law_fit", fit, {"runs": [info.run_ids[0]], "predict": ["constant"]})
    wh.write_derived("lr_law_curves", curves, {"runs": [info.run_ids[0]], "predict": ["constant"]})
