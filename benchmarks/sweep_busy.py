"""How busy the scorer keeps the device over a whole multi-checkpoint sweep, with and without prefetch.

Saves N random GPT-NeoX checkpoints of a shape (``save_pretrained``, safetensors, float32) and a
warehouse with a random evaluation set of windows (the builder of ``benchmarks.sweep_streaming``),
then sweeps them with ldw's local executor and background writer, as ``ldw sweep`` does, once
with ``--prefetch 0`` (load, then score, in turn) and once with prefetch 1 (the next checkpoint
loaded on the prefetch thread meanwhile). Per sweep it reports the wall time, tokens/s, the
*score share* (time the scoring thread spent scoring / wall: the fraction of the sweep the device
had work), the same over the checkpoints after the first (steady state, without the first
checkpoint's precision check and start-up), the median load time, and on CUDA the mean GPU
utilisation NVML reports (sampled every 0.1 s; needs nvidia-ml-py). Writes
``benchmarks/results/sweep_busy.json``.

    python -m benchmarks.sweep_busy --shape tiny --checkpoints 3 --windows 8 --seq-len 64   # CPU, seconds
    python -m benchmarks.sweep_busy --shape 160m --checkpoints 8 --windows 64 --seq-len 2048 --precision bf16
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from benchmarks.sweep_streaming import build
from benchmarks.sweep_throughput import SHAPES
from ldw.probe.scoring import EvalBatchPlan, ScoreOptions
from ldw.sweep.jobs import CheckpointJob, Outcome, Prepared, Scored, Scoring
from ldw.sweep.streaming import BackgroundWriter, LocalExecutor
from ldw.warehouse import Warehouse

SAMPLE_S = 0.1


class TimedExecutor(LocalExecutor):
    """ldw's local executor, timing each load (prefetch thread) and each scoring (scoring thread)."""

    def __init__(self, device: str, scoring: Scoring, prefetch: int) -> None:
        super().__init__(device, scoring, prefetch)
        self.loads: list[float] = []
        self.scores: list[tuple[float, float, bool]] = []

    def prepare(self, job: CheckpointJob) -> Prepared:
        """Fetch and load as ldw does, timed."""
        start = time.perf_counter()
        prepared = super().prepare(job)
        self.loads.append(time.perf_counter() - start)
        return prepared

    def score_one(self, prepared: Prepared, plan: EvalBatchPlan, check: bool) -> Outcome:
        """Score as ldw does, timed (a CUDA scoring ends with its copy back, so the device is done too)."""
        start = time.perf_counter()
        outcome = super().score_one(prepared, plan, check)
        self.scores.append((start, time.perf_counter(), check))
        return outcome


class Utilisation:
    """Samples the GPU's utilisation (percent of time a kernel ran, from NVML) on a thread while open."""

    def __init__(self, device: torch.device) -> None:
        self.samples: list[int] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._device = device
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Utilisation:
        if self._device.type == "cuda":
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            try:
                self.samples.append(torch.cuda.utilization(self._device))
            except Exception as exc:  # no NVML bindings: say so in the result instead of a figure
                self.error = f"{type(exc).__name__}: {exc}"
                return


def sweep_once(wh: Warehouse, jobs: list[CheckpointJob], plan: EvalBatchPlan, executor: TimedExecutor) -> dict:
    """One sweep of every checkpoint, written as ldw writes it; its timings."""
    tokens = 0

    def write(job: CheckpointJob, outcome: Outcome) -> None:
        if not isinstance(outcome, Scored):
            raise RuntimeError(outcome)
        wh.write_surprisal(job.run_id, job.step, outcome.values, f"busy-{executor.prefetch}")

    start = time.perf_counter()
    with Utilisation(executor.device) as gpu, BackgroundWriter(write) as writer:
        for job, outcome in executor.score(jobs, plan):
            tokens += len(outcome.values) if isinstance(outcome, Scored) else 0
            writer.submit(job, outcome)
    wall = time.perf_counter() - start
    scored = sum(end - begin for begin, end, _ in executor.scores)
    ends = [end for _, end, _ in executor.scores]
    steady = executor.scores[1:-1] or executor.scores[1:]  # neither the first nor the last (precision checks)
    steady_wall = (steady[-1][1] - ends[0]) if steady else None
    return {
        "prefetch": executor.prefetch,
        "wall_s": wall,
        "tokens_per_s": tokens / wall,
        "score_share": scored / wall,
        "steady_score_share": sum(e - b for b, e, _ in steady) / steady_wall if steady_wall else None,
        "score_s_median": statistics.median(e - b for b, e, _ in executor.scores),
        "load_s_median": statistics.median(executor.loads),
        "checked_checkpoints": sum(check for _, _, check in executor.scores),
        "gpu_utilisation_mean": statistics.mean(gpu.samples) / 100 if gpu.samples else None,
        "gpu_utilisation_note": gpu.error,
    }


def main() -> None:
    """Build the checkpoints, sweep them twice (prefetch 0 and 1), print and write the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--checkpoints", type=int, default=4)
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch", type=int, default=None, help="windows per forward (default: chosen by ldw)")
    parser.add_argument("--precision", default=None, help="default: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sweep_busy.json")
    args = parser.parse_args()
    hf_logging.disable_progress_bar()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    hidden, layers, heads, vocab = SHAPES[args.shape]
    shape = (hidden, layers, heads, vocab, args.windows, args.seq_len, args.checkpoints)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ldw-sweep-busy-") as tmp:
        started = time.perf_counter()
        wh, jobs, sizes, plan = build(Path(tmp), shape)
        build_s = time.perf_counter() - started
        for prefetch in (0, 1):
            scoring = Scoring(precision, ScoreOptions(args.batch))
            rows.append(sweep_once(wh, jobs, plan, TimedExecutor(str(device), scoring, prefetch)))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.machine()})"
    print(f"{name}: {args.checkpoints} checkpoints of {args.shape} ({statistics.median(sizes.values()) / 1e6:.0f} MB)")
    print(f"{'prefetch':>9}{'wall s':>9}{'tok/s':>12}{'score share':>13}{'steady':>9}{'load s':>9}{'GPU util':>10}")
    for r in rows:
        steady = f"{r['steady_score_share']:.0%}" if r["steady_score_share"] is not None else "n/a"
        util = f"{r['gpu_utilisation_mean']:.0%}" if r["gpu_utilisation_mean"] is not None else "n/a"
        print(
            f"{r['prefetch']:>9}{r['wall_s']:>9.2f}{r['tokens_per_s']:>12,.0f}{r['score_share']:>13.0%}"
            f"{steady:>9}{r['load_s_median']:>9.2f}{util:>10}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "device": name,
        "shape": args.shape,
        "checkpoints": args.checkpoints,
        "checkpoint_bytes": statistics.median(sizes.values()),
        "windows": args.windows,
        "seq_len": args.seq_len,
        "precision": precision,
        "build_s": build_s,
        "sweeps": rows,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "command": " ".join(["python -m benchmarks.sweep_busy", *sys.argv[1:]]),
    }
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
