"""Learning-curve metrics: vectorized GAM/AoA and sigmoid fits against the per-curve reference loops.

Prints curves/s for the vectorized code and for the reference (pyGAM
``LinearGAM(s(0, n_splines=25)).gridsearch`` per curve + the released code's
AoA loop) and their agreement on the same curves, the rate of the released
sigmoid AoA (``curve_fit`` per curve), the in-memory throughput of the whole per-run
metric computation, and a measured slice of ``compute_metrics`` on a real
warehouse, extrapolated linearly to the Chang et al. scale (1M tokens x 5 runs
x 222 checkpoints). Writes ``benchmarks/results/curve_metrics.json``.

    python -m benchmarks.curve_metrics                       # default sizes
    python -m benchmarks.curve_metrics --curves 500 --reference-curves 3 \
        --sigmoid-curves 100 --pipeline-tokens 500 --pipeline-checkpoints 20   # CI-sized
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

from ldw.curves.aoa import first_crossing, gam_aoa
from ldw.curves.gam import build_smoother, fit_curves
from ldw.curves.metrics import CrossRunAccumulator, SmootherCache, run_metrics
from ldw.curves.sigmoid import sigmoid_aoa
from ldw.curves.store import compute_metrics
from ldw.testing import CHANCE, build_curves_warehouse, chang_steps, pygam_reference, synthetic_curves

RESULTS = Path(__file__).resolve().parent / "results" / "curve_metrics.json"


def timed(fn):
    """(result, wall seconds) of one call."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def timed_cpu(fn):
    """(result, wall seconds, CPU seconds of this process) of one call."""
    cpu = time.process_time()
    result, seconds = timed(fn)
    return result, seconds, time.process_time() - cpu


def bench_gam(x: np.ndarray, curves: np.ndarray, n_reference: int) -> dict:
    """Vectorized smoothing + AoA vs pyGAM gridsearch + the released AoA loop, per curve."""

    def vectorized():
        smoother = build_smoother(x)
        fit = fit_curves(smoother, curves)
        return fit, gam_aoa(smoother, fit.coef, CHANCE)

    (fit, aoa), seconds = timed(vectorized)
    grid = np.linspace(x[0], x[-1], 1000)

    def reference():
        out = []
        for y in curves[:n_reference]:
            gam, _ = pygam_reference(x, y)
            out.append((gam, first_crossing(gam.predict(grid[:, None])[None], grid, CHANCE)[0][0]))
        return out

    refs, ref_seconds = timed(reference)
    max_dg = max(float(np.abs(fit.fitted[i] - g.predict(x[:, None])).max()) for i, (g, _) in enumerate(refs))
    lam_same = float(np.mean([fit.lam[i] == g.lam[0][0] for i, (g, _) in enumerate(refs)]))
    aoa_same = float(np.mean([aoa.log10_step[i] == a for i, (_, a) in enumerate(refs)]))
    ours, theirs = len(curves) / seconds, n_reference / ref_seconds
    return {
        "vectorized_curves_per_s": ours,
        "reference_curves_per_s": theirs,
        "speedup": ours / theirs,
        "n_vectorized": len(curves),
        "n_reference": n_reference,
        "max_abs_diff_G_bits": max_dg,
        "lambda_agreement": lam_same,
        "aoa_agreement": aoa_same,
    }


def bench_sigmoid(x: np.ndarray, curves: np.ndarray) -> dict:
    """The released sigmoid AoA: one scipy ``curve_fit`` per curve (no faster path: see ldw.curves.sigmoid)."""
    result, seconds = timed(lambda: sigmoid_aoa(x, curves, CHANCE))
    at_ends = np.isin(result.log10_step, [x[0], x[-1]])
    return {
        "curves_per_s": len(curves) / seconds,
        "n_curves": len(curves),
        "share_at_first_or_last_step": float(at_ends.mean()),
    }


def bench_run_metrics(steps: np.ndarray, curves: np.ndarray, n_runs: int, full_curves: int) -> dict:
    """All per-run metrics plus the cross-run accumulation, in memory, extrapolated to ``full_curves``."""
    cache = SmootherCache()
    run_metrics(steps, curves[:10], CHANCE, smoothers=cache)

    def work():
        acc = CrossRunAccumulator(steps[steps > 0])
        for _ in range(n_runs):
            m = run_metrics(steps, curves, CHANCE, smoothers=cache)
            acc.add(m.steps, m.smoothed)
        return acc.result()

    _, seconds, cpu = timed_cpu(work)
    n = n_runs * len(curves)
    return {
        "curves_per_s": n / seconds,
        "n_curves": n,
        "cpu_s": cpu,
        "wall_s": seconds,
        "extrapolated_full_s": seconds * full_curves / n,
        "extrapolated_full_cpu_s": cpu * full_curves / n,
    }


def bench_pipeline(root: Path, full_curves: int) -> dict:
    """``compute_metrics`` on a warehouse (reads, metrics, writes), extrapolated linearly in curves."""
    summary, seconds, cpu = timed_cpu(lambda: compute_metrics(root, progress=False))
    curves = summary.tokens * len(summary.runs)
    checkpoints = len(next(iter(summary.params["steps"].values())))
    return {
        "tokens": summary.tokens,
        "runs": len(summary.runs),
        "positive_checkpoints": checkpoints,
        "compute_metrics_s": seconds,
        "cpu_s": cpu,
        "curves_per_s": curves / seconds,
        "extrapolated_full_s": seconds * full_curves / curves,
        "extrapolated_full_cpu_s": cpu * full_curves / curves,
    }


def pipeline_slice(args: argparse.Namespace, full_curves: int) -> dict:
    """Build a temporary warehouse slice (or use --pipeline-warehouse) and time ``compute_metrics`` on it."""
    if args.pipeline_warehouse:
        return bench_pipeline(args.pipeline_warehouse, full_curves)
    steps = chang_steps(args.pipeline_checkpoints)
    runs = {f"seed{i}": steps for i in range(args.pipeline_runs)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "wh"
        _, build_s = timed(lambda: build_curves_warehouse(root, runs, args.pipeline_tokens))
        return bench_pipeline(root, full_curves) | {"warehouse_build_s": build_s}


def main() -> None:
    """Run the benchmarks, print a table and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", type=int, default=222)
    parser.add_argument("--curves", type=int, default=20_000)
    parser.add_argument("--reference-curves", type=int, default=40)
    parser.add_argument("--sigmoid-curves", type=int, default=500)
    parser.add_argument("--pipeline-tokens", type=int, default=65_536)
    parser.add_argument("--pipeline-runs", type=int, default=2)
    parser.add_argument("--pipeline-checkpoints", type=int, default=222, help="0 skips the warehouse slice")
    parser.add_argument(
        "--pipeline-warehouse",
        type=Path,
        default=None,
        help="time an existing warehouse instead of building a slice (its metric tables are rewritten)",
    )
    parser.add_argument("--full-tokens", type=int, default=1_000_000)
    parser.add_argument("--full-runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    steps = chang_steps(args.checkpoints)
    x = np.log10(steps[1:].astype(np.float64))
    curves = synthetic_curves(steps, args.curves, seed=0)
    positive = curves[:, 1:].astype(np.float64)
    full = args.full_tokens * args.full_runs
    results = {
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_at_start": os.getloadavg(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "sizes": vars(args) | {"out": str(args.out)},
        "gam_aoa": bench_gam(x, positive, min(args.reference_curves, args.curves)),
        "sigmoid_aoa": bench_sigmoid(x, positive[: args.sigmoid_curves]),
        "run_metrics": bench_run_metrics(steps, curves, 2, full),
    }
    if args.pipeline_checkpoints or args.pipeline_warehouse:
        results["pipeline"] = pipeline_slice(args, full)
    results["machine"]["load_avg_at_end"] = os.getloadavg()

    print(f"{'part':<34}{'ours curves/s':>15}{'reference/s':>13}{'speedup':>9}")
    r = results["gam_aoa"]
    print(
        f"{'gam_aoa':<34}{r['vectorized_curves_per_s']:>15,.0f}{r['reference_curves_per_s']:>13,.1f}"
        f"{r['speedup']:>8,.0f}x"
    )
    g = results["gam_aoa"]
    print(
        f"  GAM vs pyGAM: max |dG| {g['max_abs_diff_G_bits']:.1e} bits, lambda agree {g['lambda_agreement']:.0%}, "
        f"AoA agree {g['aoa_agreement']:.0%} (n={g['n_reference']})"
    )
    sig = results["sigmoid_aoa"]
    print(f"{'sigmoid_aoa (curve_fit per curve)':<34}{sig['curves_per_s']:>15,.0f}")
    scale = f"{args.full_tokens:,} tokens x {args.full_runs} runs"
    r = results["run_metrics"]
    print(
        f"{'run_metrics in memory':<34}{r['curves_per_s']:>15,.0f}   -> {scale}: "
        f"{r['extrapolated_full_s']:,.0f} s wall, {r['extrapolated_full_cpu_s']:,.0f} s CPU (extrapolated)"
    )
    if "pipeline" in results:
        p = results["pipeline"]
        print(
            f"{'compute_metrics on a warehouse':<34}{p['curves_per_s']:>15,.0f}   -> measured "
            f"{p['tokens']:,} tokens x {p['runs']} runs x {p['positive_checkpoints']} ckpts: "
            f"{p['compute_metrics_s']:.1f} s wall, {p['cpu_s']:.1f} s CPU"
        )
        print(
            f"{'':<34}{'':>15}   -> {scale}: {p['extrapolated_full_s']:,.0f} s wall, "
            f"{p['extrapolated_full_cpu_s']:,.0f} s CPU (extrapolated)"
        )
    machine = results["machine"]
    print(f"load average start/end: {machine['load_avg_at_start']} / {machine['load_avg_at_end']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
