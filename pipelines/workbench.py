"""The Python API: one warehouse and every verb of the workflow, as a notebook or a script uses them.

    import ldw
    wb = ldw.open("wh", create=True)
    wb.ingest(["runs/seed0", "runs/seed1"])
    wb.evalset(corpus="heldout.txt", seq_len=128)
    wb.sweep(device="cuda")
    wb.metrics()
    wb.token_metrics()                      # a Polars frame

Each verb takes its typed settings (``wb.sweep(ldw.SweepConfig(...))``) or
the same settings as keywords (``wb.sweep(device="cpu")``), and returns a
typed result. The ``ldw`` command line is a thin layer over these methods.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import polars as pl

from ldw.curves.config import MetricsConfig, MetricsResult
from ldw.dynamics.config import ScheduleConfig, SpikesConfig, SpikesResult, WeightProbeConfig
from ldw.errors import LdwError
from ldw.ingest.config import IngestConfig, IngestResult
from ldw.ngrams.config import NgramConfig, NgramResult
from ldw.sweep.config import EvalSetConfig, EvalSetResult, SweepConfig, SweepSummary
from ldw.warehouse import Warehouse, WarehouseError
from ldw.warehouse.catalog import CATALOG_FILE
from ldw.warehouse.curves import token_curves

if TYPE_CHECKING:
    from ldw.dynamics.lr_law_store import ScheduleFitResult
    from ldw.dynamics.weight_probes import ProbeSummary

Config = TypeVar("Config")


def configured(kind: type[Config], config: Config | None, options: dict[str, Any]) -> Config:
    """``config`` (or ``kind`` built from ``options``) with ``options`` replacing fields; clear errors otherwise."""
    fields = dataclasses.fields(kind)
    unknown = sorted(set(options) - {f.name for f in fields})
    if unknown:
        names = ", ".join(f.name for f in fields)
        raise LdwError(f"{kind.__name__} has no option {', '.join(unknown)}; its options: {names}")
    if config is not None:
        return dataclasses.replace(config, **options) if options else config
    required = [f.name for f in fields if f.default is f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in options]
    if missing:
        raise LdwError(f"{kind.__name__} needs {', '.join(missing)}")
    return kind(**options)


@contextmanager
def _removed_if_left_empty(root: Path) -> Iterator[None]:
    """Run a command that may create the warehouse ``root``; if it was not there before and the command
    fails leaving it empty (no runs, no evaluation set, no Parquet file), remove it again, so a mistyped
    ``-w`` leaves nothing behind."""
    existed = root.exists()
    try:
        yield
    except BaseException:
        if not existed and root.is_dir() and _is_empty_warehouse(root):
            shutil.rmtree(root, ignore_errors=True)
        raise


def _is_empty_warehouse(root: Path) -> bool:
    """Whether ``root`` holds nothing but a catalog without runs or an evaluation set."""
    if any(p.is_file() for p in root.rglob("*") if not p.name.startswith(CATALOG_FILE)):
        return False
    if not (root / CATALOG_FILE).is_file():
        return True
    try:
        wh = Warehouse.open(root, read_only=True)
        return wh.runs().height == 0 and wh.eval_config() is None
    except WarehouseError:
        return False


def open(root: str | Path, create: bool = False, storage: str | None = None, progress: bool = True) -> Workbench:
    """The workbench on warehouse folder ``root``; ``create=True`` makes it when missing (``storage``: see init).

    Named like ``gzip.open``: call it as ``ldw.open``.
    """
    return Workbench.open(root, create=create, storage=storage, progress=progress)


class Workbench:
    """A warehouse folder and the verbs that fill and read it.

    ``progress`` shows progress bars on long work (sweeps, metrics, n-gram
    counts); turn it off in scripts whose output is logged.
    """

    def __init__(self, root: Path, progress: bool = True) -> None:
        self.root = Path(root)
        self.progress = progress

    @classmethod
    def open(
        cls, root: str | Path, create: bool = False, storage: str | None = None, progress: bool = True
    ) -> Workbench:
        """Open the warehouse at ``root``; with ``create`` make it first (Parquet tables at ``storage`` if given)."""
        root = Path(root)
        if create:
            with _removed_if_left_empty(root):
                Warehouse.create(root, storage)
        elif storage is not None:
            raise LdwError("storage can only be chosen when the warehouse is created (create=True)")
        elif not (root / CATALOG_FILE).is_file():
            hint = f"ldw.open({str(root)!r}, create=True) makes one"
            raise LdwError(f"{root}: not a warehouse (no {CATALOG_FILE}); {hint}")
        return cls(root, progress)

    def __repr__(self) -> str:
        return f"Workbench({str(self.root)!r})"

    # --- verbs ---------------------------------------------------------------------------------------

    def ingest(
        self, paths: Sequence[str | Path], config: IngestConfig | None = None, **options: Any
    ) -> list[IngestResult]:
        """Register runs found under ``paths``: checkpoints, tokenizer fingerprint, weight hashes, training log.

        A path ``"hf:ORG/NAME"`` is a Hugging Face Hub repository whose branches are the checkpoints
        (``revisions=("step*",)``, ``every=N`` choose some); no weights are downloaded.
        """
        from ldw.ingest.register import ingest_paths

        settings = configured(IngestConfig, config, options)
        with _removed_if_left_empty(self.root):
            return ingest_paths(self.root, list(paths), settings, progress=self.progress)

    def evalset(self, config: EvalSetConfig | None = None, replace: bool = False, **options: Any) -> EvalSetResult:
        """Build the evaluation set (tokens in context every run is scored on); ``replace`` swaps a different one."""
        from ldw.sweep.evalset import build_eval_set

        settings = configured(EvalSetConfig, config, options)
        with _removed_if_left_empty(self.root):
            return build_eval_set(self.root, settings, replace=replace)

    def sweep(self, config: SweepConfig | None = None, **options: Any) -> SweepSummary:
        """Score every evaluation token under every pending checkpoint; resumes where a sweep stopped.

        Hub checkpoints are downloaded one by one while the previous one is scored, and removed from the
        Hugging Face cache once scored unless ``keep_weights=True``.
        """
        from ldw.sweep.run import run_sweep

        return run_sweep(self.root, configured(SweepConfig, config, options), progress=self.progress)

    def metrics(self, config: MetricsConfig | None = None, **options: Any) -> MetricsResult:
        """Learning-curve metrics per (run, token) and across runs (Chang, Tu & Bergen 2023)."""
        from ldw.curves.store import compute_metrics

        return compute_metrics(self.root, configured(MetricsConfig, config, options), progress=self.progress)

    def ngrams(self, config: NgramConfig | None = None, **options: Any) -> NgramResult:
        """Count n-grams of a reference corpus and store every evaluation token's n-gram predictors."""
        from ldw.ngrams.store import compute_ngram_stats

        return compute_ngram_stats(self.root, configured(NgramConfig, config, options), progress=self.progress)

    def detect_spikes(self, config: SpikesConfig | None = None, **options: Any) -> SpikesResult:
        """Find loss and gradient-norm spikes, and the tokens that got worse across each bracketed loss spike."""
        from ldw.dynamics.spikes_store import detect_spikes_in_warehouse, spike_tokens_in_warehouse

        settings = configured(SpikesConfig, config, options)
        found = detect_spikes_in_warehouse(self.root, settings.traces, settings.rule)
        bracketed = spike_tokens_in_warehouse(self.root, settings.top_n) if found else 0
        return SpikesResult(found, bracketed)

    def fit_schedule(self, config: ScheduleConfig | None = None, **options: Any) -> ScheduleFitResult:
        """Fit the LR-annealing loss law on runs and predict the loss of other schedules."""
        from ldw.dynamics.lr_law_store import fit_schedule_in_warehouse

        settings = configured(ScheduleConfig, config, options)
        return fit_schedule_in_warehouse(
            self.root, settings.runs, settings.predict, fit_from_fraction=settings.fit_from, decay=settings.decay
        )

    def probe_weights(self, config: WeightProbeConfig | None = None, **options: Any) -> ProbeSummary:
        """Per-checkpoint weight probes: attention spectra and entropy, norms, probe-batch gradient norms."""
        from ldw.dynamics.weight_probes import probe_weights_in_warehouse

        settings = configured(WeightProbeConfig, config, options)
        runs = list(settings.runs) if settings.runs else None
        return probe_weights_in_warehouse(
            self.root, runs, settings.sequences, progress=self.progress, device=settings.device
        )

    def export_correlations(self, out_dir: str | Path, include_unacquired: bool = False) -> list[Path]:
        """Write the correlations, the paper's regressions and the per-token feature table (CSV and Parquet)."""
        from ldw.ngrams.export import export_ngram_correlations

        return export_ngram_correlations(self.root, Path(out_dir), include_unacquired)

    def doctor(self) -> list[str]:
        """Every problem found in the warehouse (missing or damaged files, row counts, schemas); empty when sound."""
        from ldw.warehouse.doctor import check_warehouse

        return check_warehouse(self._read())

    # --- readers -------------------------------------------------------------------------------------

    def _read(self) -> Warehouse:
        return Warehouse.open(self.root, read_only=True)

    def runs(self) -> pl.DataFrame:
        """One row per run: id, name, seed, source, architecture, tokenizer, tokens per step."""
        return self._read().runs()

    def checkpoints(self, run: str | None = None) -> pl.DataFrame:
        """One row per checkpoint (of ``run``, or all): step, tokens seen, path, hash, sweep status."""
        return self._read().checkpoints(run)

    def curves(self, tokens: Sequence[int], runs: Sequence[str] | None = None) -> pl.DataFrame:
        """Raw surprisal and GAM curve G (bits) of ``tokens`` (token_idx) at every swept checkpoint."""
        return token_curves(self._read(), [int(t) for t in tokens], list(runs) if runs is not None else None)

    def token_metrics(self) -> pl.DataFrame:
        """Per (run, token): final surprisal, within-run variability, AoA, forgettability (``ldw metrics``)."""
        return self._derived("token_metrics", "metrics")

    def crossrun_metrics(self) -> pl.DataFrame:
        """Per token: cross-run variability and the run means of each metric (``ldw metrics``)."""
        return self._derived("crossrun_metrics", "metrics")

    def spikes(self) -> pl.DataFrame:
        """Detected loss and gradient-norm spikes per run (``detect_spikes``)."""
        return self._derived("spikes", "spikes")

    def ngram_stats(self) -> pl.DataFrame:
        """Per token: the n-gram and context predictors of Chang et al. (``ldw ngrams``)."""
        return self._derived("ngram_stats", "ngrams")

    def ngram_correlations(self, include_unacquired: bool = False) -> pl.DataFrame:
        """Correlations (Pearson, Spearman, one-predictor OLS) of every metric with every n-gram predictor."""
        from ldw.ngrams.export import ngram_correlations

        return ngram_correlations(self.root, include_unacquired)

    def ngram_regressions(self, include_unacquired: bool = False) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The paper's regressions of each run-averaged metric on all predictors: (coefficients, nested steps)."""
        from ldw.ngrams.export import ngram_regressions

        return ngram_regressions(self.root, include_unacquired)

    def traces(self, run: str | None = None, names: Sequence[str] | None = None) -> pl.DataFrame:
        """Training-log traces in long format (run_id, step, name, value), optionally one run and some names."""
        frame = self._read().traces(run)
        return frame.filter(pl.col("name").is_in(list(names))) if names is not None else frame

    def sql(self, query: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """Run a read-only SQL query (DuckDB) over the warehouse's tables and views."""
        return self._read().query(query, list(params) if params is not None else None)

    def _derived(self, table: str, command: str) -> pl.DataFrame:
        wh = self._read()
        if not wh.has_table(table):
            raise LdwError(f"{self.root}: no {table} table yet; run `ldw {command}` (or the matching method) first")
        return wh.query(f'SELECT * FROM "{table}"')
