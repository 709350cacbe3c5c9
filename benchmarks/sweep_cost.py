"""Cost of a sweep at scale: the Pythia suite and the Chang et al. scale on N GPUs.

Measured here, on this machine's CPU: writing one checkpoint's surprisal file
into a real warehouse (Parquet write + fsync + rename + catalog update),
loading a Pythia-160m-shaped safetensors checkpoint with ldw's loader, and a
tiny CPU scoring run. The GPU side comes from the H100 runs recorded in
``benchmarks/results/``: the scoring rate is FLOPs per token divided into 790
TFLOP/s, times the fraction of that floor ldw's scorer reached at the
Pythia-160m shape in each precision (``sweep_throughput.json``: 256 x 2048
windows), and loads run at the bandwidth ``sweep_busy.json`` measured (649 MB
safetensors checkpoints, page cache warm). Costs are given for every measured
precision: fp32 (the sweep's exact default) and bf16 (opt-in).
Prints a table and writes ``benchmarks/results/sweep_cost.json``.

    python -m benchmarks.sweep_cost                                   # ~2 minutes on 2 cores
    python -m benchmarks.sweep_cost --tokens 10000 --load-shape tiny  # seconds
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from transformers.utils import logging as hf_logging

from benchmarks.sweep_throughput import H100_BF16_FLOPS, SHAPES, build_model
from ldw.probe.loading import load_causal_lm
from ldw.probe.scoring import EvalBatchPlan, score_surprisal
from ldw.warehouse import CheckpointRecord, RunRecord, Warehouse
from ldw.warehouse.clock import utcnow

H100_FLOOR_160M = 2.77e6  # docs/performance.md: FLOP floor at 790 TFLOP/s
RESULTS = Path(__file__).parent / "results"
WINDOW = 2048  # ldw's Pythia evaluation windows


@dataclass(frozen=True)
class ModelShape:
    """What the FLOP count needs: parameters (total, non-embedding), width, depth, vocabulary."""

    name: str
    params: int
    non_embedding: int
    d_model: int
    layers: int
    vocab: int


# Released Pythia checkpoints pad the vocabulary to 50304, except 6.9b (50432) and 12b (50688): the totals need it.
PYTHIA = [
    ModelShape(*row)
    for row in [
        ("70m", 70_426_624, 18_915_328, 512, 6, 50304),
        ("160m", 162_322_944, 85_056_000, 768, 12, 50304),
        ("410m", 405_334_016, 302_311_424, 1024, 24, 50304),
        ("1b", 1_011_781_632, 805_736_448, 2048, 16, 50304),
        ("1.4b", 1_414_647_808, 1_208_602_624, 2048, 24, 50304),
        ("2.8b", 2_775_208_960, 2_517_652_480, 2560, 32, 50304),
        ("6.9b", 6_857_302_016, 6_444_163_072, 4096, 32, 50432),
        ("12b", 11_846_072_320, 11_327_027_200, 5120, 36, 50688),
    ]
]
GPT2_SMALL = ModelShape("gpt2-small", 124_439_808, 85_056_000, 768, 12, 50257)
PYTHIA_CHECKPOINTS = 154
CHANG = {"runs": 5, "checkpoints": 222, "scored_tokens": 1_000_000, "window": 128, "scored_per_window": 10}


def flops_per_scored_token(model: ModelShape, ctx: int, processed_per_scored: float = 1.0) -> float:
    """Forward FLOPs per scored token.

    Per processed token: 2 x non-embedding params (body matmuls) plus causal
    attention scores and values, 2 * 2 * layers * (ctx / 2) * d_model. Per
    scored token: the unembedding, 2 * d_model * vocab (ldw runs it only on
    scored positions).
    """
    body = 2 * model.non_embedding + 2 * 2 * model.layers * (ctx / 2) * model.d_model
    return processed_per_scored * body + 2 * model.d_model * model.vocab


def _wall(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def measure_write(tokens: int, writes: int, root: Path) -> dict:
    """Median seconds and bytes of ``write_surprisal`` for a warehouse with ``tokens`` evaluation tokens."""
    wh = Warehouse.create(root / "wh")
    wh.upsert_run(RunRecord("bench", "bench", 0, "/bench", "step_folders", "gpt_neox", {}, None, "fp", None, {}))
    wh.upsert_checkpoints("bench", [CheckpointRecord(s, None, f"/bench/{s}", f"h{s}", None) for s in range(writes)])
    rng = np.random.default_rng(0)
    n_seq = -(-tokens // (WINDOW - 1))
    ids = rng.integers(0, 50304, size=(n_seq, WINDOW), dtype=np.int32)
    seq = np.repeat(np.arange(n_seq), WINDOW - 1)[:tokens]
    pos = np.tile(np.arange(1, WINDOW, dtype=np.int32), n_seq)[:tokens]
    token_ids = ids[seq, pos]
    sequences = pa.table({"seq_id": np.arange(n_seq), "input_ids": list(ids)})
    eval_tokens = pa.table(
        {
            "token_idx": np.arange(tokens),
            "seq_id": seq,
            "position": pos,
            "token_id": token_ids,
            "token_text": token_ids.astype(str),
            "context_len": pos,
        }
    )
    wh.write_eval_set(sequences, eval_tokens, {"seq_len": WINDOW}, "fp", 50304)
    eval_id = wh.require_eval_id()
    seconds, sizes, catalog = [], [], []
    for step in range(writes):
        values = rng.gamma(2.0, 2.5, size=tokens).astype(np.float32)  # surprisal-like spread, mean 5 bits
        start = time.perf_counter()
        path = wh.write_surprisal("bench", step, values, "sweep")
        seconds.append(time.perf_counter() - start)
        sizes.append(os.path.getsize(path))
        cataloged = wh.query("SELECT surprisal_file FROM checkpoints WHERE run_id = 'bench' AND step = ?", [step])
        start = time.perf_counter()  # the catalog update alone: what a shard holds the catalog lock for
        # re-marks with what write_surprisal cataloged: the same UPDATE and evaluation-set check
        wh.mark_checkpoint_done("bench", step, cataloged["surprisal_file"][0], tokens, "sweep", eval_id, utcnow())
        catalog.append(time.perf_counter() - start)
    median_s, median_bytes = statistics.median(seconds), statistics.median(sizes)
    return {
        "tokens": tokens,
        "writes": writes,
        "seconds": seconds,
        "median_s": median_s,
        "s_per_token": median_s / tokens,
        "bytes_per_file": median_bytes,
        "bytes_per_token": median_bytes / tokens,
        "catalog_update_median_s": statistics.median(catalog),
    }


def measure_load(shape: str, repeats: int, root: Path) -> dict:
    """Save a random GPT-NeoX of ``shape`` (fp32 safetensors); time ldw's loader on it, page cache warm.

    fp32 on CPU maps the file lazily, so every weight page is touched inside
    the timing; bf16 (the dtype a GPU sweep loads) copies and converts.
    """
    folder = root / f"ckpt-{shape}"
    model = build_model(shape, WINDOW, torch.device("cpu"))
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(folder)
    del model
    size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    out = {"shape": shape, "params": params, "file_bytes": size, "file_dtype": "float32"}
    for dtype in (torch.float32, torch.bfloat16):
        load_causal_lm(folder, torch.device("cpu"), dtype)  # warm the page cache
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            model = load_causal_lm(folder, torch.device("cpu"), dtype)
            sum(float(p.detach().reshape(-1)[::1024].sum()) for p in model.parameters())  # touch every page
            seconds.append(time.perf_counter() - start)
            del model
        out[str(dtype).removeprefix("torch.")] = {
            "seconds": seconds,
            "median_s": statistics.median(seconds),
            "file_bytes_per_s": size / statistics.median(seconds),
        }
    return out


def measure_cpu_scoring(windows: int = 16, seq_len: int = 256, batch: int = 8) -> dict:
    """Tokens/s of ``score_surprisal`` on the tiny shape on this CPU (float32), as sweep_throughput.py does."""
    model = build_model("tiny", seq_len, torch.device("cpu"))
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, size=(windows, seq_len))
    plan = EvalBatchPlan(ids, np.repeat(np.arange(windows), seq_len - 1), np.tile(np.arange(1, seq_len), windows))
    score_surprisal(model, plan, batch)  # warm-up
    start = time.perf_counter()
    values = score_surprisal(model, plan, batch)
    return {
        "shape": "tiny",
        "dims": dict(zip(("hidden", "layers", "heads", "vocab"), SHAPES["tiny"], strict=True)),
        "windows": windows,
        "seq_len": seq_len,
        "batch": batch,
        "tokens_per_s": len(values) / (time.perf_counter() - start),
    }


def measured_gpu(results: Path = RESULTS) -> dict:
    """The H100 figures the estimate rests on: ldw's share of the FLOP floor per precision, load bandwidth."""
    throughput = json.loads((results / "sweep_throughput.json").read_text())
    busy = json.loads((results / "sweep_busy.json").read_text())
    for name, data in (("sweep_throughput.json", throughput), ("sweep_busy.json", busy)):
        if "H100" not in data["device"]:
            raise SystemExit(f"{results / name}: not an H100 run ({data['device']}); run benchmarks/gpu_session.sh")
    floor = throughput["flop_floor_tokens_per_s"]
    unprefetched = next(s for s in busy["sweeps"] if s["prefetch"] == 0)
    return {
        "device": throughput["device"],
        "efficiency": {p: r["tokens_per_s"]["ldw"] / floor for p, r in throughput["by_precision"].items()},
        "tokens_per_s_160m": {p: r["tokens_per_s"]["ldw"] for p, r in throughput["by_precision"].items()},
        "load_bytes_per_s": busy["checkpoint_bytes"] / unprefetched["load_s_median"],
    }


def checkpoint_cost(
    model: ModelShape,
    scored: int,
    ctx: int,
    processed_per_scored: float,
    gpu: tuple[float, float],
    write_s_per_token: float,
) -> dict:
    """Seconds to load, score and write one checkpoint on one H100, and what the estimate rests on.

    ``gpu`` is (share of the FLOP floor the scorer reaches, checkpoint load bandwidth in bytes/s)."""
    efficiency, load_bw = gpu
    flops = flops_per_scored_token(model, ctx, processed_per_scored)
    rate = efficiency * H100_BF16_FLOPS / flops
    load_s, score_s, write_s = 2 * model.params / load_bw, scored / rate, write_s_per_token * scored  # 2-byte files
    return {
        "gflop_per_scored_token": flops / 1e9,
        "gpu_tokens_per_s": rate,
        "load_s": load_s,
        "score_s": score_s,
        "write_s": write_s,
        "total_s": load_s + score_s + write_s,
    }


def walls(jobs: list[dict], gpus: list[int], catalog_s: float) -> dict:
    """Wall seconds on N GPUs: ``--shard i/N`` (round-robin in run, step order) and Ray (greedy, serial writes)."""
    total, writes = np.array([j["total_s"] for j in jobs]), sum(j["write_s"] for j in jobs)
    out = {}
    for n in gpus:
        shard = np.bincount(np.arange(len(jobs)) % n, weights=total, minlength=n).max()
        free = [0.0] * n
        for job in jobs:
            heapq.heappush(free, heapq.heappop(free) + job["load_s"] + job["score_s"])
        out[n] = {
            "shard_s": float(max(shard, len(jobs) * catalog_s)),
            "ray_s": float(max(max(free), writes)),
            "ray_write_floor_s": writes,
        }
    return out


def workloads(gpu: tuple[float, float], write: dict, gpus: list[int]) -> dict:
    """Both workloads, per model size and in total: GPU-hours, wall on N GPUs, storage (``gpu``: see
    :func:`checkpoint_cost`)."""
    per_token, file_bytes, catalog_s = write["s_per_token"], write["bytes_per_token"], write["catalog_update_median_s"]
    specs = {
        "pythia_suite": [(m, PYTHIA_CHECKPOINTS, write["tokens"], WINDOW, 1.0) for m in PYTHIA],
        "chang_scale": [
            (
                GPT2_SMALL,
                CHANG["runs"] * CHANG["checkpoints"],
                CHANG["scored_tokens"],
                CHANG["window"],
                CHANG["window"] / CHANG["scored_per_window"],
            )
        ],
    }
    result = {}
    for name, rows in specs.items():
        sizes, all_jobs = {}, []
        for model, count, scored, ctx, processed in rows:
            cost = checkpoint_cost(model, scored, ctx, processed, gpu, per_token)
            jobs = [cost] * count
            all_jobs += jobs
            sizes[model.name] = {
                **cost,
                "checkpoints": count,
                "scored_tokens": scored,
                "processed_tokens": scored * processed,
                "gpu_hours": count * cost["total_s"] / 3600,
                "storage_gb": count * scored * file_bytes / 1e9,
                "wall": walls(jobs, gpus, catalog_s),
            }
        result[name] = {
            "sizes": sizes,
            "total": {
                "checkpoints": len(all_jobs),
                "gpu_hours": sum(s["gpu_hours"] for s in sizes.values()),
                "storage_gb": sum(s["storage_gb"] for s in sizes.values()),
                "wall": walls(all_jobs, gpus, catalog_s),
            },
        }
    return result


def machine() -> dict:
    """This machine, in words (the CPU is shared with other jobs while the benchmark runs)."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), None)
    return {
        "cpu": model or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": None,
        "load_average_at_start": os.getloadavg(),
        "note": "no GPU here; CPU shared with other jobs during the run, so CPU timings are pessimistic",
    }


def print_table(result: dict, gpus: list[int]) -> None:
    """The measured numbers, the FLOP check, and one row per workload and size."""
    m = result["measured"]
    w, ld, c = m["write_surprisal"], m["load"], m["cpu_scoring"]
    print(f"measured here ({result['machine']['cpu']}, {result['machine']['cores']} cores, shared):")
    print(
        f"  write_surprisal, {w['tokens']:,} tokens: median {w['median_s']:.3f} s, {w['bytes_per_file'] / 1e6:.2f} MB"
        f" ({w['bytes_per_token']:.2f} B/token); catalog update alone {w['catalog_update_median_s'] * 1e3:.0f} ms"
    )
    print(
        f"  load_causal_lm {ld['shape']} ({ld['file_bytes'] / 1e6:.0f} MB fp32 safetensors, warm), median: "
        + ", ".join(
            f"{k} {ld[k]['median_s']:.2f} s = {ld[k]['file_bytes_per_s'] / 1e9:.2f} GB/s"
            for k in ("float32", "bfloat16")
        )
        + f"; measured on the H100 host (used below): {result['gpu']['load_bytes_per_s'] / 1e9:.2f} GB/s"
    )
    print(f"  score_surprisal tiny shape, float32 CPU: {c['tokens_per_s']:,.0f} tokens/s")
    chk = result["flop_check"]
    print(
        f"FLOP check, Pythia-160m ctx {WINDOW}, every position scored: {chk['gflop_per_token']:.4f} GFLOP/token -> "
        f"{chk['floor_tokens_per_s'] / 1e6:.3f}M tok/s at 790 TFLOP/s (reference {H100_FLOOR_160M / 1e6:.2f}M, "
        f"{chk['relative_diff']:+.2%}); ldw on the H100: "
        + ", ".join(
            f"{p} {rate / 1e3:,.0f}k tok/s = {result['gpu']['efficiency'][p]:.3f} of the floor"
            for p, rate in result["gpu"]["tokens_per_s_160m"].items()
        )
    )
    head = (
        f"{'size':<11}{'GFLOP/tok':>10}{'H100 tok/s':>11}{'load s':>8}{'score s':>9}{'write s':>8}{'ckpts':>7}"
        f"{'GPU-h':>8}"
        + "".join(f"{f'wall {n}':>10}" for n in gpus)
        + "".join(f"{f'ray {n}':>10}" for n in gpus[1:])
        + f"{'GB':>8}"
    )
    for precision, name, work in [(p, n, w) for p, by in result["workloads"].items() for n, w in by.items()]:
        print(f"\n{name}, {precision} (H100: measured share of the FLOP floor and load bandwidth; write measured here)")
        print(head)
        for size, s in [*work["sizes"].items(), ("total", work["total"])]:
            per = (
                f"{s['gflop_per_scored_token']:>10.3f}{s['gpu_tokens_per_s']:>11,.0f}{s['load_s']:>8.2f}"
                f"{s['score_s']:>9.1f}{s['write_s']:>8.2f}"
                if "score_s" in s
                else " " * 46
            )
            cells = "".join(f"{_wall(s['wall'][n]['shard_s']):>10}" for n in gpus)
            cells += "".join(f"{_wall(s['wall'][n]['ray_s']):>10}" for n in gpus[1:])
            print(f"{size:<11}{per}{s['checkpoints']:>7}{s['gpu_hours']:>8.2f}{cells}{s['storage_gb']:>8.1f}")


def main() -> None:
    """Measure what this machine can, estimate the rest, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1_000_000, help="evaluation tokens E per checkpoint")
    parser.add_argument("--writes", type=int, default=9, help="checkpoint files to write and time")
    parser.add_argument("--load-shape", choices=sorted(SHAPES), default="160m")
    parser.add_argument("--load-repeats", type=int, default=3)
    parser.add_argument("--gpus", default="1,8,64", help="comma-separated GPU counts")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sweep_cost.json")
    args = parser.parse_args()
    gpus = [int(n) for n in args.gpus.split(",")]

    started, info, gpu = time.perf_counter(), machine(), measured_gpu()
    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory(prefix="ldw-sweep-cost-") as tmp:
        write = measure_write(args.tokens, args.writes, Path(tmp))
        load = measure_load(args.load_shape, args.load_repeats, Path(tmp))
    scoring = measure_cpu_scoring()
    info["load_average_at_end"] = os.getloadavg()
    floor = H100_BF16_FLOPS / (flops_160m := flops_per_scored_token(PYTHIA[1], WINDOW))
    result = {
        "machine": info,
        "measured": {"write_surprisal": write, "load": load, "cpu_scoring": scoring},
        "flop_check": {
            "gflop_per_token": flops_160m / 1e9,
            "floor_tokens_per_s": floor,
            "reference_floor_tokens_per_s": H100_FLOOR_160M,
            "relative_diff": floor / H100_FLOOR_160M - 1,
        },
        "assumptions": {
            "gpu_rate": "efficiency x 790e12 / FLOPs per scored token, efficiency = ldw's measured H100 tokens/s at "
            "Pythia-160m (results/sweep_throughput.json) over its FLOP floor, per precision (conservative for wider "
            "models, whose matmuls are larger, and for 128-token windows, where the unembedding is 1/12.8 of "
            "positions)",
            "peak_flops": H100_BF16_FLOPS,
            "load_source": "measured on the H100 host (results/sweep_busy.json): a 649 MB safetensors checkpoint, "
            "page cache warm, no prefetch; checkpoint files hold 2 bytes/param (Pythia's fp16); "
            "the CPU measurement is fp32",
            "write": "measured here on CPU, scaled linearly to the scored tokens; surprisal drawn from gamma(2, 2.5)",
            "pythia": f"8 sizes x {PYTHIA_CHECKPOINTS} checkpoints x 1 run, E = {args.tokens:,} tokens, "
            f"windows of {WINDOW}, every position scored",
            "chang": "5 runs x 222 checkpoints x 1M scored tokens, GPT-2-small shape; ASSUMED 128-token windows "
            "with 10 scored positions each (12.8M processed tokens per checkpoint)",
            "wall": "shard: round-robin `ldw sweep --shard i/N`, at least checkpoints x catalog update (lock); "
            "ray: greedy over N GPUs, at least checkpoints x write time (the driver writes serially)",
            "models": {m.name: asdict(m) for m in [*PYTHIA, GPT2_SMALL]},
        },
        "gpu": gpu,
        "workloads": {
            precision: workloads((share, gpu["load_bytes_per_s"]), write, gpus)
            for precision, share in gpu["efficiency"].items()
        },
        "runtime_s": time.perf_counter() - started,
        "command": " ".join(["python -m benchmarks.sweep_cost", *sys.argv[1:]]),
    }
    print_table(result, gpus)
    print(f"\nruntime {result['runtime_s']:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
