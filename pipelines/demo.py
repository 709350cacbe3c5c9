"""``ldw demo``: the whole workflow offline on a CPU in a few minutes, so every page of the app has content.

Trains three seeds of a tiny GPT-NeoX on Python's bundled documentation
(``pydoc_data.topics``, held-out documents kept for evaluation) and one pair
of runs that shows a loss spike and its fix: the same seed trained without
gradient clipping at a peak learning rate of 1.0 (reached by a linear warmup,
then cut tenfold), once plain and once with Qi et al.'s step bound
(``step_bound_tau``), which keeps every update small next to its weights. On
this machine the plain run's loss shoots up during the warmup and recovers;
the bounded twin's does not (``DemoSize.pair_config``; measured over seeds in
``benchmarks/results/demo_spike_pair.json``). Every run saves at least 40
checkpoints after step 0, so the 25-spline GAM of ``ldw metrics`` is well
posed.

Then it runs every stage: ingest, the evaluation set, the sweep, the
learning-curve metrics, n-gram statistics of the training documents, spike
detection with the tokens that moved across each spike, the LR-annealing law
fitted on the seeds with other schedules predicted, and the weight probes;
it prints a first result and what to run next. A second run reuses what is
there.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ldw.corpus import corpus_documents
from ldw.errors import LdwWarning
from ldw.ngrams.correlations import summary_table
from ldw.ngrams.export import ngram_correlations
from ldw.probe.tokenizing import has_tokenizer
from ldw.sweep.config import EvalSetConfig
from ldw.train.bpe import train_bpe_tokenizer
from ldw.train.config import TrainConfig
from ldw.train.trainer import train_run
from ldw.workbench import Workbench

SEEDS = (0, 1, 2)
PAIR_SEED = 0
PLAIN_RUN, FIXED_RUN = "lr1-plain", "lr1-step-bound"
STEP_BOUND_TAU = 0.01  # Qi et al. 2025: sigma1(update) <= tau * sigma1(W)
PREDICTED_SCHEDULES = ("constant", "wsd", "multistep")
SWEEP_BATCH = 128  # windows per forward pass: the tiny model's ops are small, larger batches use the CPU better


@dataclass(frozen=True)
class DemoSize:
    """How big the demo is: training steps, checkpoint spacing, evaluation windows sampled (None: every one)."""

    steps: int = 600
    save_every: int = 15
    seq_len: int = 64
    eval_sequences: int | None = 320
    probe_sequences: int = 4

    def seed_config(self, seed: int, tokenizer: Path) -> TrainConfig:
        """One of the three seeds: the reference trainer's defaults at this size."""
        return TrainConfig(
            seed=seed, steps=self.steps, save_every=self.save_every, seq_len=self.seq_len, tokenizer=str(tokenizer)
        )

    def pair_config(self, fixed: bool, tokenizer: Path) -> TrainConfig:
        """The spiking pair: no clipping, warmup over half the run to lr 1.0, then lr 0.1; ``fixed`` adds the bound."""
        return dataclasses.replace(
            self.seed_config(PAIR_SEED, tokenizer),
            lr=1.0,
            warmup_steps=self.steps // 2,
            schedule="multistep",
            lr_milestones=(0.5,),
            lr_gamma=0.1,
            grad_clip=0.0,
            step_bound_tau=STEP_BOUND_TAU if fixed else 0.0,
        )


FULL = DemoSize()
DEMO_TRAIN = FULL.seed_config(0, Path("tokenizer"))
DEMO_EVAL = EvalSetConfig(corpus="builtin", split="heldout", heldout_fraction=DEMO_TRAIN.eval_fraction, seq_len=64)
STAGES = 9


def _stage(console: Console, number: int, title: str) -> None:
    console.rule(f"[bold]{number}/{STAGES} {title}")


def _train(runs_dir: Path, size: DemoSize, console: Console, progress: bool) -> list[Path]:
    tokenizer_dir = runs_dir / "tokenizer"
    if not has_tokenizer(tokenizer_dir):
        train_docs = corpus_documents("builtin", "train", DEMO_TRAIN.eval_fraction)
        train_bpe_tokenizer(train_docs, DEMO_TRAIN.vocab_size, tokenizer_dir)
    configs = {f"seed{seed}": size.seed_config(seed, tokenizer_dir) for seed in SEEDS}
    configs[PLAIN_RUN] = size.pair_config(False, tokenizer_dir)
    configs[FIXED_RUN] = size.pair_config(True, tokenizer_dir)
    console.print(
        f"{len(SEEDS)} seeds, and seed {PAIR_SEED} at a spiking learning rate: {PLAIN_RUN} (plain) and "
        f"{FIXED_RUN} (Qi et al.'s step bound, tau {STEP_BOUND_TAU})"
    )
    return [train_run(config, runs_dir / name, progress=progress) for name, config in configs.items()]


def run_demo(warehouse: Path, console: Console, progress: bool = True, size: DemoSize = FULL) -> None:
    """Run (or finish) the demo in ``warehouse``; every stage skips what is already done.

    ``size`` scales it down for tests; ``FULL`` is what ``ldw demo`` runs.
    """
    warehouse = Path(warehouse).resolve()
    runs_dir = warehouse / "runs"
    _stage(console, 1, "tokenizer and training")
    run_dirs = _train(runs_dir, size, console, progress)
    wb = Workbench.open(warehouse, create=True, progress=progress)
    _stage(console, 2, "ingest")
    for result in wb.ingest(run_dirs):
        console.print(f"{result.run_id}: {result.n_checkpoints} checkpoints, {result.n_trace_rows} trace rows")
    _stage(console, 3, "evaluation set")
    eval_config = dataclasses.replace(
        DEMO_EVAL, seq_len=size.seq_len, n_sequences=size.eval_sequences, tokenizer_path=str(runs_dir / "tokenizer")
    )
    evalset = wb.evalset(eval_config)
    console.print(f"{evalset.sequences} held-out sequences, {evalset.tokens:,} tokens in context")
    _stage(console, 4, "sweep")
    sweep = wb.sweep(batch_size=SWEEP_BATCH)
    console.print(f"scored {sweep.scored} checkpoints, {sweep.skipped} already done, {len(sweep.failed)} failed")
    changed = sweep.scored > 0
    _stage(console, 5, "learning-curve metrics")
    if _fresh(wb, "token_metrics", changed, console):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LdwWarning)  # printed below, one line each
            metrics = wb.metrics()
        console.print(f"metrics for {metrics.tokens:,} tokens x {len(metrics.runs)} runs")
        _print_notes(metrics.warnings, console)
    _stage(console, 6, "n-gram statistics of the training documents")
    if _fresh(wb, "ngram_stats", changed, console):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LdwWarning)
            ngrams = wb.ngrams(corpus="builtin", split="train", heldout_fraction=DEMO_TRAIN.eval_fraction)
        _print_notes(ngrams.warnings, console)
    _stage(console, 7, "loss and gradient-norm spikes, and the tokens that moved across them")
    if _fresh(wb, "spike_tokens", changed, console):
        spikes = wb.detect_spikes()
        console.print(f"{spikes.bracketed} spikes lie between two checkpoints: their top risers are in spike_tokens")
    _print_spikes(wb, console)
    _stage(console, 8, "LR-annealing law fitted on the seeds, other schedules predicted")
    if _fresh(wb, "lr_law_fit", changed, console):
        fit = wb.fit_schedule(runs=tuple(f"seed{s}" for s in SEEDS), predict=PREDICTED_SCHEDULES)
        predicted = ", ".join(PREDICTED_SCHEDULES)
        console.print(f"fit RMSE {fit.fit.rmse:.4f} nats on {fit.fit.n_points} points; predicted {predicted}")
    _stage(console, 9, "weight probes (attention spectra and entropy, norms)")
    if _fresh(wb, "weight_probes", changed, console):
        probes = wb.probe_weights(sequences=size.probe_sequences)
        console.print(f"{probes.rows:,} rows from {probes.checkpoints} checkpoints, {len(probes.failures)} failed")
    _print_summary(warehouse, console)
    _print_next_steps(warehouse, console)


def _fresh(wb: Workbench, table: str, changed: bool, console: Console) -> bool:
    """Whether a stage must run: the sweep scored something new, or its table is not there yet."""
    present = wb.sql("SELECT count(*) AS n FROM derived_tables WHERE table_name = ?", [table])["n"][0] > 0
    if present and not changed:
        console.print(f"already computed (table {table}); nothing new was swept")
        return False
    return True


def _print_spikes(wb: Workbench, console: Console) -> None:
    """Loss and gradient-norm spikes per run: the pair's story."""
    found = wb.sql(
        "SELECT r.run_id, count(s.spike_id) FILTER (WHERE s.trace = 'loss') AS loss_spikes, "
        "count(s.spike_id) FILTER (WHERE s.trace = 'grad_norm') AS grad_norm_spikes "
        "FROM runs r LEFT JOIN spikes s USING (run_id) GROUP BY ALL ORDER BY ALL"
    )
    for run_id, loss, grad in found.iter_rows():
        console.print(f"{run_id}: {loss} loss spike(s), {grad} gradient-norm spike(s)", highlight=False)


def agreement(rho: float, expected: str | None) -> str:
    """Whether a correlation's sign is the one Chang et al. (2023) report for frequency ('' when they give none)."""
    if expected is None:
        return ""
    observed = "-" if rho < 0 else "+"
    return f"yes ({expected})" if observed == expected else f"no (they report {expected})"


def _print_summary(warehouse: Path, console: Console) -> None:
    summary = summary_table(ngram_correlations(warehouse))
    table = Table(title="log2 unigram frequency vs each metric (mean over runs)")
    for column in ("metric", "spearman_rho", "pearson_r", "sign as in Chang et al.", "n"):
        table.add_column(column)
    for row in summary.iter_rows(named=True):
        table.add_row(
            row["metric"],
            f"{row['spearman_rho']:+.3f}",
            f"{row['pearson_r']:+.3f}",
            agreement(row["spearman_rho"], row["expected"]),
            str(row["n"]),
        )
    console.print(table)


def _print_notes(notes: list[str], console: Console) -> None:
    """The cautions a stage raised (too few checkpoints, a leaky corpus), one line each."""
    for note in notes:
        console.print(f"[yellow]note[/yellow] {note}", highlight=False)


def _print_next_steps(warehouse: Path, console: Console) -> None:
    console.rule("[bold]done")
    console.print(f"warehouse: [bold]{warehouse}[/bold]  (catalog.duckdb + parquet/)")
    console.print("next:")
    console.print(f"  ldw status -w {warehouse}")
    console.print(f"  ldw app {warehouse}")
    console.print(
        f'  ldw sql -w {warehouse} "SELECT run_id, step, avg(surprisal_bits) AS bits '
        'FROM surprisal GROUP BY ALL ORDER BY ALL"',
        highlight=False,
    )
    console.print(
        f"  ldw sql -w {warehouse} \"SELECT * FROM spikes WHERE trace = 'loss'\"",
        highlight=False,
    )
