"""Benchmark: does the demo's spiking pair spike, and its step-bounded twin not, for every seed?

Trains the pair of ``ldw demo`` (``ldw.demo.DemoSize.pair_config``: no gradient clipping, the learning rate
warmed up over half the run to 1.0 and then cut tenfold, once plain and once with Qi et al.'s step bound) for
several seeds on the builtin corpus, checkpoints off, and applies the default spike rule
(``ldw.dynamics.spikes.SpikeParams()``) to each loss trace. Per run: the loss spikes found (start, peak, end),
the largest one's rise above its baseline, whether the loss came back under the threshold (``step_end`` set),
the number of gradient-norm spikes, the final loss (mean of the last 50 steps) and wall time.

    python -m benchmarks.demo_spike_pair                       # seeds 0-4, the full demo size
    python -m benchmarks.demo_spike_pair --seeds 0,1 --steps 600

Writes ``benchmarks/results/demo_spike_pair.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ldw.demo import FULL, DemoSize
from ldw.dynamics.spikes import SpikeParams, detect_spikes
from ldw.train.config import TrainConfig
from ldw.train.trainer import train_run

RESULTS = Path(__file__).resolve().parent / "results" / "demo_spike_pair.json"


def pair_row(config: TrainConfig, out: Path, params: SpikeParams) -> dict:
    """Train one run of the pair and summarise its loss and gradient-norm traces."""
    started = time.perf_counter()
    run_dir = train_run(config, out, progress=False)
    wall = time.perf_counter() - started
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    steps = np.array([row["step"] for row in log])
    loss = np.array([row["loss"] for row in log])
    grad = np.array([row["grad_norm"] for row in log])
    spikes = detect_spikes(steps, loss, params)
    biggest = spikes.sort("magnitude", descending=True).head(1)
    return {
        "seed": config.seed,
        "step_bound_tau": config.step_bound_tau,
        "loss_spikes": spikes.select("step_start", "step_peak", "step_end").rows(),
        "largest_rise_nats": round(float(biggest["magnitude"][0]), 2) if spikes.height else 0.0,
        "largest_recovered": bool(biggest["step_end"][0] is not None) if spikes.height else None,
        "grad_norm_spikes": detect_spikes(steps, grad, params).height,
        "peak_loss": round(float(loss.max()), 2),
        "final_loss": round(float(loss[-50:].mean()), 3),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    """Train the pair for each seed, print a table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--steps", type=int, default=FULL.steps)
    args = parser.parse_args()
    size = dataclasses.replace(FULL, steps=args.steps, save_every=args.steps)  # checkpoints off (only 0 and last)
    params = SpikeParams()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_run = train_run(TrainConfig(steps=1, save_every=1), Path(tmp) / "tokenizer_run", progress=False)
        tokenizer = tokenizer_run / "tokenizer"
        for seed in [int(s) for s in args.seeds.split(",")]:
            for fixed in (False, True):
                config = dataclasses.replace(DemoSize.pair_config(size, fixed, tokenizer), seed=seed)
                rows.append(pair_row(config, Path(tmp) / f"seed{seed}-{'fixed' if fixed else 'plain'}", params))
                row = rows[-1]
                print(
                    f"seed {seed} {'step-bound' if fixed else 'plain':10s} loss spikes {row['loss_spikes']} "
                    f"largest rise {row['largest_rise_nats']} final {row['final_loss']} ({row['wall_s']} s)",
                    flush=True,
                )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in DemoSize.pair_config(size, False, Path("tokenizer")).to_dict().items() if k != "seed"}
    RESULTS.write_text(
        json.dumps(
            {
                "pair_config": {**config, "tokenizer": None},
                "step_bound_tau_fixed": DemoSize.pair_config(size, True, Path("t")).step_bound_tau,
                "spike_params": dataclasses.asdict(params),
                "runs": rows,
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "torch": torch.__version__,
                    "load_avg": round(os.getloadavg()[0], 2),
                },
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
