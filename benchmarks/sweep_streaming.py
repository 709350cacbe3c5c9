"""Streaming sweep: with checkpoints fetched at a known bandwidth, the wall time per checkpoint
approaches max(fetch, score) instead of their sum.

Saves N random GPT-NeoX checkpoints (``save_pretrained``, safetensors) and a warehouse with a random
evaluation set, then sweeps them with ldw's local executor twice for each fetch/score ratio: *in turn*
(``prefetch=0``, each Parquet file written before the next checkpoint: fetch, load, score, write one
after another, as ldw did before streaming) and *streaming* (ldw's default: ``prefetch=1``, the next
checkpoint fetched and loaded on the prefetch thread while the current one is scored, files written
by the background writer). The source is the checkpoint folders on disk behind a fetch that first
waits bytes / bandwidth (a download at that bandwidth: the thread waits, the CPU is free), with the
bandwidth set so that the wait is ``ratio`` x the scoring time measured first.

Every run times its own stages (median per checkpoint: fetch + load on the prefetch thread, scoring,
writing), so ``sum`` and ``max`` describe the same run as its ``wall`` even on a machine whose load
changes; ``max`` is the slowest stage. In turn, the wall is about the sum; streaming, about the max
(plus one fetch, score and write of start-up spread over N checkpoints). Prints a table and writes
``benchmarks/results/sweep_streaming.json``.

    python -m benchmarks.sweep_streaming            # about 3 minutes on 2 cores
    python -m benchmarks.sweep_streaming --quick    # seconds (what the test runs)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
from transformers.utils import logging as hf_logging

from ldw.probe.loading import load_causal_lm
from ldw.probe.scoring import EvalBatchPlan, ScoreOptions, score_surprisal
from ldw.sweep.jobs import CheckpointJob, Prepared, Scored, Scoring, score_prepared
from ldw.sweep.streaming import BackgroundWriter, LocalExecutor
from ldw.warehouse import CheckpointRecord, RunRecord, Warehouse

SHAPES = {  # hidden, layers, heads, vocab, windows, window length, checkpoints
    "full": (256, 4, 4, 8192, 24, 128, 6),
    "quick": (64, 2, 4, 512, 8, 64, 3),
}
BATCH = 8


class ThrottledExecutor(LocalExecutor):
    """ldw's local executor over a source that delivers each checkpoint at ``bandwidth`` bytes per second.

    Records when each checkpoint's fetch (wait + load, on the prefetch thread) started and ended.
    """

    def __init__(self, bandwidth: float, sizes: dict[str, int], prefetch: int) -> None:
        super().__init__("cpu", Scoring(options=ScoreOptions(BATCH)), prefetch)
        self.bandwidth, self.sizes = bandwidth, sizes
        self.fetched: dict[int, tuple[float, float]] = {}

    def prepare(self, job: CheckpointJob) -> Prepared:
        """Wait as a download at the bandwidth would, then load as ldw does."""
        start = time.perf_counter()
        time.sleep(self.sizes[job.path] / self.bandwidth)
        prepared = super().prepare(job)
        self.fetched[job.step] = (start, time.perf_counter())
        return prepared


def build(root: Path, shape: tuple) -> tuple[Warehouse, list[CheckpointJob], dict[str, int], EvalBatchPlan]:
    """Checkpoints on disk, a warehouse that lists them, and the evaluation plan."""
    hidden, layers, heads, vocab, windows, length, count = shape
    config = GPTNeoXConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=length,
    )
    jobs, sizes = [], {}
    for step in range(count):
        torch.manual_seed(step)
        folder = root / "run" / f"step{step}"
        GPTNeoXForCausalLM(config).save_pretrained(folder)
        jobs.append(CheckpointJob("bench", step, str(folder)))
        sizes[str(folder)] = sum(p.stat().st_size for p in folder.iterdir())
    wh = Warehouse.create(root / "wh")
    wh.upsert_run(
        RunRecord("bench", "bench", 0, str(root / "run"), "step_folders", "gpt_neox", {}, None, "fp", None, {})
    )
    wh.upsert_checkpoints("bench", [CheckpointRecord(j.step, None, j.path, f"h{j.step}", None) for j in jobs])
    ids = np.random.default_rng(0).integers(0, vocab, size=(windows, length), dtype=np.int32)
    seq_ids = np.repeat(np.arange(windows), length - 1)
    positions = np.tile(np.arange(1, length, dtype=np.int32), windows)
    tokens = pa.table(
        {
            "token_idx": np.arange(len(seq_ids)),
            "seq_id": seq_ids,
            "position": positions,
            "token_id": ids[seq_ids, positions],
            "token_text": ids[seq_ids, positions].astype(str),
            "context_len": positions,
        }
    )
    sequences = pa.table({"seq_id": np.arange(windows), "input_ids": list(ids)})
    wh.write_eval_set(sequences, tokens, {"seq_len": length}, "fp", vocab)
    return wh, jobs, sizes, EvalBatchPlan(ids.astype(np.int64), seq_ids, positions)


def measure_score(job: CheckpointJob, plan: EvalBatchPlan) -> float:
    """Seconds to score one checkpoint (the second of two runs), to set the bandwidths."""
    model = load_causal_lm(Path(job.path), torch.device("cpu"))
    score_surprisal(model, plan, BATCH)
    start = time.perf_counter()
    score_surprisal(model, plan, BATCH)
    return time.perf_counter() - start


def _stages(fetched: list[float], scored: list[float], written: list[float], wall: float, n: int) -> dict:
    stages = {
        "fetch_s": statistics.median(fetched),
        "score_s": statistics.median(scored),
        "write_s": statistics.median(written),
    }
    return {**stages, "sum_s": sum(stages.values()), "max_s": max(stages.values()), "wall_per_checkpoint_s": wall / n}


def in_turn(wh: Warehouse, jobs: list[CheckpointJob], plan: EvalBatchPlan, executor: ThrottledExecutor) -> dict:
    """Fetch, load, score and write each checkpoint before the next (ldw's sweep before streaming), timed."""
    fetched, scored, written = [], [], []
    start = time.perf_counter()
    for job in jobs:
        began = time.perf_counter()
        prepared = executor.prepare(job)
        loaded = time.perf_counter()
        outcome = score_prepared(prepared, plan, executor.scoring)
        prepared.release()
        done = time.perf_counter()
        if isinstance(outcome, str):
            raise RuntimeError(outcome)
        wh.write_surprisal(job.run_id, job.step, outcome.values, "bench")
        fetched.append(loaded - began)
        scored.append(done - loaded)
        written.append(time.perf_counter() - done)
    return _stages(fetched, scored, written, time.perf_counter() - start, len(jobs))


def streaming(wh: Warehouse, jobs: list[CheckpointJob], plan: EvalBatchPlan, executor: ThrottledExecutor) -> dict:
    """ldw's streaming loop (executor with its prefetch thread, background writer), timed stage by stage.

    A checkpoint's scoring starts when both its fetch and the previous checkpoint's turn are done and
    ends when its outcome comes out of the executor; fetches and writes are timed where they run.
    """
    written: list[float] = []

    def write(job: CheckpointJob, outcome: Scored) -> None:
        began = time.perf_counter()
        wh.write_surprisal(job.run_id, job.step, outcome.values, "bench")
        written.append(time.perf_counter() - began)

    start = time.perf_counter()
    scored, previous = [], start
    with BackgroundWriter(write) as writer:
        for job, outcome in executor.score(jobs, plan):
            if isinstance(outcome, str):
                raise RuntimeError(outcome)
            scored.append(time.perf_counter() - max(previous, executor.fetched[job.step][1]))
            writer.submit(job, outcome)
            previous = time.perf_counter()
    fetched = [end - began for began, end in executor.fetched.values()]
    return _stages(fetched, scored, written, time.perf_counter() - start, len(jobs))


MODES = {"in turn": (in_turn, 0), "streaming": (streaming, 1)}  # name -> (loop, prefetch)


def run(shape_name: str, ratios: list[float]) -> dict:
    """For every fetch/score ratio, a sweep in turn and a streaming one, each timed stage by stage."""
    hf_logging.disable_progress_bar()
    shape = SHAPES[shape_name]
    rows = []
    with tempfile.TemporaryDirectory(prefix="ldw-sweep-streaming-") as tmp:
        wh, jobs, sizes, plan = build(Path(tmp), shape)
        score_s = measure_score(jobs[0], plan)
        size = statistics.median(sizes.values())
        for ratio in ratios:
            bandwidth = size / (ratio * score_s)
            for mode, (loop, prefetch) in MODES.items():
                timed = loop(wh, jobs, plan, ThrottledExecutor(bandwidth, sizes, prefetch))
                rows.append({"ratio": ratio, "bandwidth_mb_s": bandwidth / 1e6, "mode": mode, **timed})
    hidden, layers, heads, vocab, windows, length, count = shape
    return {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "load_average": os.getloadavg(),
            "note": "CPU only, shared with other jobs: a GPU scores faster, the overlap works the same way",
        },
        "shape": {"name": shape_name, "hidden": hidden, "layers": layers, "heads": heads, "vocab": vocab},
        "checkpoints": count,
        "checkpoint_bytes": size,
        "scored_tokens": windows * (length - 1),
        "score_s_before": score_s,
        "rows": rows,
    }


def print_table(result: dict) -> None:
    """Per ratio and prefetch: the median stage times of that very run, their sum and max, the measured wall."""
    print(
        f"{result['checkpoints']} checkpoints of {result['checkpoint_bytes'] / 1e6:.1f} MB, "
        f"{result['scored_tokens']:,} tokens each, {result['machine']['torch_threads']} torch threads; "
        "seconds per checkpoint (stage medians of each run)"
    )
    head = ["fetch/score", "MB/s", "mode", "fetch+load", "score", "write", "sum", "max", "wall"]
    print("".join(f"{h:>11}" for h in head))
    for r in result["rows"]:
        cells = [r["fetch_s"], r["score_s"], r["write_s"], r["sum_s"], r["max_s"], r["wall_per_checkpoint_s"]]
        print(f"{r['ratio']:>11.1f}{r['bandwidth_mb_s']:>11.1f}{r['mode']:>11}" + "".join(f"{c:>11.3f}" for c in cells))


def main() -> None:
    """Run the benchmark, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny shape and three checkpoints (seconds)")
    parser.add_argument("--ratios", default="0.5,1,2", help="fetch time / scoring time, comma-separated")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sweep_streaming.json")
    args = parser.parse_args()
    started = time.perf_counter()
    result = run("quick" if args.quick else "full", [float(r) for r in args.ratios.split(",")])
    result["runtime_s"] = time.perf_counter() - started
    result["command"] = " ".join(["python -m benchmarks.sweep_streaming", *sys.argv[1:]])
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
