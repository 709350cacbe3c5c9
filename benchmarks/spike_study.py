"""Loss spikes and their fixes, seen through the workbench as a user sees them (issue 16).

Trains one GPT-NeoX per variant at a learning rate meant to spike (same seed, same batches, no
warmup, a constant learning rate, no gradient clipping; all else equal), with the stability
signals logged every step (``log_signals``: the largest attention logit, the output
log-partition) and checkpoints log-spaced at the start and every ``save_every`` steps after, so
the checkpoints are dense where the spikes of warmup-free training come:

    plain           no fix
    scaled_embed    embeddings x sqrt(d)                     (Takase et al. 2023)
    small_init      std sqrt(2/(5d)), scaled out-projections  (Takase et al. 2023)
    step_bound      sigma1(update) <= 0.01 sigma1(W)          (Qi et al. 2025)

Then the workbench runs on the runs through the Python API (``ldw.open``): ingest, evalset,
sweep, metrics, spikes with spike tokens, probe-weights. Per variant it reports the loss spikes
(count, steps, magnitudes), the final loss (mean of the last 10% of steps), whether the largest
attention logit (trace, every step) and the largest sigma1(Wq^T Wk) (weight probes, per
checkpoint) rose before each spike, and the tokens that got worse across each spike. It writes
``benchmarks/results/spike_study_<size>.json``, replaces its section of ``benchmarks/RESULTS.md``,
and exports the warehouse (catalog and Parquet tables: traces, spikes, weight probes, surprisal of
the small evaluation sample; never the checkpoints) to ``--export``.

    python -m benchmarks.spike_study --size tiny              # CPU, about 2 minutes on 2 cores
    python -m benchmarks.spike_study --size small --device cuda --export OUT/spike_warehouse
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import torch

import ldw
from ldw.train.config import TrainConfig
from ldw.train.trainer import train_run
from ldw.warehouse import Warehouse

HERE = Path(__file__).resolve().parent
VARIANTS: dict[str, dict] = {
    "plain": {},
    "scaled_embed": {"scaled_embed": True},
    "small_init": {"small_init": True},
    "step_bound": {"step_bound_tau": 0.01},
}
# model size, steps, batch, window, peak lr, checkpoint spacing after the log-spaced start, evaluation sequences
PRESETS: dict[str, dict] = {
    "tiny": {"size": "tiny", "steps": 300, "batch_size": 16, "seq_len": 64, "lr": 0.3, "save_every": 10, "eval": 32},
    "small": {
        "size": "small",
        "steps": 2000,
        "batch_size": 32,
        "seq_len": 128,
        "lr": 0.02,
        "save_every": 40,
        "eval": 64,
    },
    "160m": {
        "size": "160m",
        "steps": 2000,
        "batch_size": 16,
        "seq_len": 256,
        "lr": 0.006,
        "save_every": 40,
        "eval": 64,
    },
}
LEAD_POINTS = 10  # logged steps compared before a spike: the last LEAD_POINTS against the LEAD_POINTS before them
TOP_TOKENS = 5


def train_variants(args: argparse.Namespace, preset: dict, root: Path) -> dict[str, Path]:
    """Train every variant (same seed, batches and tokenizer); their run folders by name."""
    base = TrainConfig(
        size=preset["size"],
        steps=args.steps or preset["steps"],
        batch_size=preset["batch_size"],
        seq_len=preset["seq_len"],
        lr=args.lr or preset["lr"],
        warmup_steps=args.warmup,
        schedule="constant",
        grad_clip=0.0,
        save_every=args.save_every or preset["save_every"],
        seed=args.seed,
        device=args.device,
        log_signals=True,
    )
    runs: dict[str, Path] = {}
    for name in args.variants:
        config = dataclasses.replace(base, **VARIANTS[name])
        if runs:  # one tokenizer for all, trained with the first run
            config = dataclasses.replace(config, tokenizer=str(next(iter(runs.values())) / "tokenizer"))
        started = time.perf_counter()
        runs[name] = train_run(config, root / name, progress=False)
        print(f"  trained {name} in {time.perf_counter() - started:.1f} s", flush=True)
    return runs


def run_workbench(runs: dict[str, Path], warehouse: Path, args: argparse.Namespace, preset: dict) -> dict:
    """The workbench verbs in a user's order; the seconds each took."""
    wb = ldw.open(warehouse, create=True, progress=False)
    seconds = {}
    steps = [
        ("ingest", lambda: wb.ingest([str(path) for path in runs.values()])),
        ("evalset", lambda: wb.evalset(split="heldout", seq_len=preset["seq_len"], n_sequences=args.eval_sequences)),
        ("sweep", lambda: wb.sweep(device=args.device)),
        ("metrics", lambda: wb.metrics()),
        ("spikes", lambda: wb.detect_spikes()),
        ("probe_weights", lambda: wb.probe_weights(device=args.device, sequences=args.probe_sequences)),
    ]
    for name, verb in steps:
        started = time.perf_counter()
        verb()
        seconds[name] = round(time.perf_counter() - started, 2)
        print(f"  {name}: {seconds[name]} s", flush=True)
    return seconds


def rose_before(values: pl.DataFrame, start: int, points: int = LEAD_POINTS) -> bool | None:
    """Whether a (step, value) series rose before ``start``: the mean of its last ``points`` points before
    ``start`` exceeds the mean of the ``points`` before those (None with too little history)."""
    before = values.filter(pl.col("step") < start).sort("step")["value"].to_list()
    if len(before) < 2 * points:
        return None
    recent, earlier = before[-points:], before[-2 * points : -points]
    return sum(recent) / points > sum(earlier) / points


def variant_report(wb: ldw.Workbench, run_id: str, has_tokens: bool) -> dict:
    """Spikes, final loss, signals before each spike and the tokens that got worse, for one run."""
    loss = wb.traces(run_id, ["loss"]).select("step", "value")
    tail = loss.sort("step").tail(max(1, loss.height // 10))
    spikes = wb.spikes().filter((pl.col("run_id") == run_id) & (pl.col("trace") == "loss")).sort("step_start")
    attn = wb.traces(run_id, ["max_attn_logit"]).select("step", "value")
    sigma = wb.sql(
        "SELECT step, max(value) AS value FROM weight_probes WHERE run_id = ? AND name = 'qk_sigma1' GROUP BY step",
        [run_id],
    )
    worse = pl.DataFrame(schema={"spike_id": pl.Int64, "step_before": pl.Int64, "step_after": pl.Int64})
    if has_tokens:  # written when a loss spike has checkpoints on both sides
        worse = wb.sql(
            "SELECT s.spike_id, s.step_before, s.step_after, t.token_text, s.delta_bits FROM spike_tokens s "
            "JOIN eval_tokens t USING (token_idx) WHERE s.run_id = ? AND s.rank <= ? ORDER BY s.spike_id, s.rank",
            [run_id, TOP_TOKENS],
        )
    rows = []
    for spike in spikes.iter_rows(named=True):
        tokens = worse.filter(pl.col("spike_id") == spike["spike_id"])
        rows.append(
            {
                "step_start": spike["step_start"],
                "step_peak": spike["step_peak"],
                "step_end": spike["step_end"],
                "magnitude_nats": round(spike["magnitude"], 4),
                "magnitude_mads": round(spike["magnitude_mads"], 1),
                "max_attn_logit_rose_before": rose_before(attn, spike["step_start"]),
                "qk_sigma1_rose_before": rose_before(sigma, spike["step_start"], points=1),
                "checkpoints_bracketing": tokens.select("step_before", "step_after").row(0) if tokens.height else None,
                "tokens_worse": [
                    {"token": text, "delta_bits": round(delta, 3)}
                    for text, delta in tokens.select("token_text", "delta_bits").iter_rows()
                ],
            }
        )
    return {
        "loss_spikes": len(rows),
        "final_loss": round(float(tail["value"].mean()), 4),
        "peak_loss": round(float(loss["value"].max()), 4),
        "peak_max_attn_logit": round(float(attn["value"].max()), 2) if attn.height else None,
        "grad_norm_spikes": wb.spikes().filter((pl.col("run_id") == run_id) & (pl.col("trace") == "grad_norm")).height,
        "spikes": rows,
    }


def export_warehouse(warehouse: Path, target: Path) -> int:
    """Copy the warehouse (catalog and Parquet tables; it holds no checkpoints) to ``target``; its size in bytes."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(warehouse, target, ignore=shutil.ignore_patterns("*.wal", "*.lock", "*.tmp"))
    return sum(path.stat().st_size for path in target.rglob("*") if path.is_file())


def results_section(result: dict) -> str:
    """The markdown section of RESULTS.md for this size."""
    cfg = result["config"]
    lines = [
        f"### Spike study, `{cfg['size']}` ({result['device']})",
        "",
        f"Command: `{result['command']}`. {cfg['steps']} steps, batch {cfg['batch_size']} x {cfg['seq_len']} tokens, "
        f"constant lr {cfg['lr']} after {cfg.get('warmup_steps', 0)} warmup steps, no clipping, seed {cfg['seed']}, "
        "checkpoints at "
        f"{len(result['checkpoint_steps'])} steps (log-spaced start, then every {cfg['save_every']}). "
        f"Training {result['train_s']} s, workbench {sum(result['workbench_s'].values()):.1f} s "
        f"({', '.join(f'{k} {v}' for k, v in result['workbench_s'].items())}).",
        "",
        "| variant | loss spikes | magnitudes (nats / MADs) | final loss | peak loss | peak attn logit | "
        "attn logit rose before | sigma1(WqWk) rose before |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, v in result["variants"].items():
        mags = ", ".join(f"{s['magnitude_nats']} / {s['magnitude_mads']}" for s in v["spikes"]) or "-"
        attn = sum(bool(s["max_attn_logit_rose_before"]) for s in v["spikes"])
        sigma = sum(bool(s["qk_sigma1_rose_before"]) for s in v["spikes"])
        n = v["loss_spikes"]
        lines.append(
            f"| {name} | {n} | {mags} | {v['final_loss']} | {v['peak_loss']} | {v['peak_max_attn_logit']} | "
            f"{attn}/{n} | {sigma}/{n} |"
        )
    worse = [
        f"- {name}, spike at step {s['step_start']} (checkpoints {s['checkpoints_bracketing']}): "
        + ", ".join(f"{t['token']!r} +{t['delta_bits']} bits" for t in s["tokens_worse"])
        for name, v in result["variants"].items()
        for s in v["spikes"]
        if s["tokens_worse"]
    ]
    if worse:
        lines += ["", "Tokens that got worse across each spike (top 5, bits):", "", *worse]
    lines += ["", f"Exported warehouse: {result['export_bytes'] / 1e6:.1f} MB." if result.get("export_bytes") else ""]
    return "\n".join(lines).rstrip() + "\n"


def write_section(path: Path, size: str, section: str) -> None:
    """Put ``section`` between this size's markers in ``path`` (appended the first time)."""
    begin, end = f"<!-- spike_study:{size}:begin -->", f"<!-- spike_study:{size}:end -->"
    text = path.read_text() if path.exists() else ""
    block = f"{begin}\n{section}{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text.lstrip("\n"))


def main() -> None:
    """Train the variants, run the workbench, report, export."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--steps", type=int, default=None, help="override the preset's steps")
    parser.add_argument("--lr", type=float, default=None, help="override the preset's learning rate")
    parser.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="linear warmup steps (0: the warmup-free setting; with warmup, the "
        "spikes the papers report come later in training, where the detector has history)",
    )
    parser.add_argument("--save-every", type=int, default=None, help="override the preset's checkpoint spacing")
    parser.add_argument("--eval-sequences", type=int, default=None, help="evaluation sample (sequences)")
    parser.add_argument("--probe-sequences", type=int, default=8, help="probe batch of probe-weights (sequences)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto (training, sweep and probes)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep runs and warehouse here (default: temporary)")
    parser.add_argument("--export", type=Path, default=None, help="copy the warehouse here (no checkpoints)")
    parser.add_argument("--out", type=Path, default=None, help="JSON (default: results/spike_study_<size>.json)")
    parser.add_argument("--results-md", type=Path, default=HERE / "RESULTS.md", help="markdown file to update")
    args = parser.parse_args()
    args.variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown or not args.variants:
        parser.error(f"variants: choose from {', '.join(VARIANTS)} (got {', '.join(unknown) or 'none'})")
    preset = PRESETS[args.size]
    args.eval_sequences = args.eval_sequences or preset["eval"]
    out = args.out or HERE / "results" / f"spike_study_{args.size}.json"
    with tempfile.TemporaryDirectory(prefix="ldw-spike-study-") as tmp:
        root = args.workdir or Path(tmp)
        started = time.perf_counter()
        runs = train_variants(args, preset, root / "runs")
        train_s = round(time.perf_counter() - started, 1)
        warehouse = root / "warehouse"
        workbench_s = run_workbench(runs, warehouse, args, preset)
        wb = ldw.open(warehouse, progress=False)
        has_tokens = Warehouse.open(warehouse, read_only=True).has_table("spike_tokens")
        variants = {name: variant_report(wb, name, has_tokens) for name in runs}  # a run's id is its folder's name
        run_file = json.loads((next(iter(runs.values())) / "run.json").read_text())
        export_bytes = export_warehouse(warehouse, args.export) if args.export else None
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "CPU"
    result = {
        "device": f"{device} ({platform.machine()}, torch {torch.__version__})",
        "config": {
            key: run_file["train_config"][key]
            for key in ("size", "steps", "batch_size", "seq_len", "lr", "warmup_steps", "seed", "save_every", "device")
        },
        "checkpoint_steps": run_file["checkpoint_steps"],
        "eval_sequences": args.eval_sequences,
        "variants": variants,
        "train_s": train_s,
        "workbench_s": workbench_s,
        "export_bytes": export_bytes,
        "command": " ".join(["python -m benchmarks.spike_study", *sys.argv[1:]]),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    write_section(args.results_md, args.size, results_section(result))
    for name, v in variants.items():
        print(f"{name}: {v['loss_spikes']} loss spikes, final loss {v['final_loss']}, peak {v['peak_loss']}")
    print(f"wrote {out} and the {args.size} section of {args.results_md}")


if __name__ == "__main__":
    main()
