"""``ldw metrics`` measured at the Chang et al. scale: 1M tokens x 5 runs x 222 checkpoints, not extrapolated.

Builds (or reuses, with ``--dir``) a synthetic warehouse of that size through
the Warehouse API (``ldw.testing.build_synthetic_warehouse`` without derived
tables: one surprisal file of 1M float32 per run and checkpoint, about 3.8 GB),
then runs ``ldw metrics`` on it in a child process and records its wall time,
CPU time and peak resident memory, with the machine's load average before and
after (on a shared machine the wall time is inflated by the other work).
Writes ``benchmarks/results/metrics_full_scale.json``.

    python -m benchmarks.metrics_full_scale --dir /tmp/ldw-full      # the full size (long build)
    python -m benchmarks.metrics_full_scale --tokens 20000 --runs 2 --checkpoints 40 --dir /tmp/ldw-small
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from ldw.testing import SyntheticSpec, build_synthetic_warehouse
from ldw.warehouse import Warehouse

RESULTS = Path(__file__).resolve().parent / "results" / "metrics_full_scale.json"
SEQ_LEN = 128
MARKER = "metrics_benchmark_spec.json"


def ensure_warehouse(root: Path, spec: SyntheticSpec) -> float | None:
    """Build the warehouse unless ``root`` holds one of this spec; the build time in seconds, or None if reused."""
    wanted = json.dumps({k: getattr(spec, k) for k in spec.__dataclass_fields__}, sort_keys=True)
    marker = root / MARKER
    if marker.exists() and marker.read_text() == wanted:
        return None
    if (root / "catalog.duckdb").exists():
        raise SystemExit(f"{root}: holds a warehouse of another size; pass an empty --dir")
    started = time.perf_counter()
    build_synthetic_warehouse(root, spec, progress=True)
    marker.write_text(wanted)
    return time.perf_counter() - started


def run_metrics_command(root: Path) -> dict:
    """``ldw metrics -w ROOT -q`` in a child process: wall and CPU seconds, peak RSS, its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "ldw", "metrics", "-w", str(root), "-q"], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"ldw metrics failed ({done.returncode}): {done.stderr.strip()}")
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
        "peak_rss_mib": round(after.ru_maxrss / 1024, 1),  # Linux reports KiB: the largest child's peak
        "stdout": done.stdout.strip(),
        "stderr": done.stderr.strip(),
    }


def main() -> None:
    """Build or reuse the warehouse, time ``ldw metrics`` on it and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="warehouse folder (built when empty, else reused)")
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--checkpoints", type=int, default=222)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    spec = SyntheticSpec(
        n_sequences=math.ceil(args.tokens / (SEQ_LEN - 1)),
        seq_len=SEQ_LEN,
        n_runs=args.runs,
        n_checkpoints=args.checkpoints,
        vocab_size=50_000,
        max_step=1_000_000,
        trace_every=1_000,
        derived=False,
    )
    build_s = ensure_warehouse(args.dir, spec)
    wh = Warehouse.open(args.dir, read_only=True)
    size = sum(p.stat().st_size for p in (args.dir / "parquet").rglob("*.parquet"))
    load_before = os.getloadavg()
    measured = run_metrics_command(args.dir)
    results = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_before": load_before,
            "load_avg_after": os.getloadavg(),
        },
        "warehouse": {
            "tokens": wh.token_count(),
            "runs": len(wh.run_ids()),
            "checkpoints_per_run": args.checkpoints,
            "parquet_gb": round(size / 1e9, 2),
            "build_s": None if build_s is None else round(build_s, 1),
        },
        "ldw_metrics": measured,
        "goal_s": 300,
    }
    print(
        f"ldw metrics on {results['warehouse']['tokens']:,} tokens x {results['warehouse']['runs']} runs x "
        f"{args.checkpoints} checkpoints: {measured['wall_s']} s wall, {measured['cpu_s']} s CPU, "
        f"peak RSS {measured['peak_rss_mib']:,} MiB; load average before {load_before}, after "
        f"{results['machine']['load_avg_after']}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
