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

import duckdb
import polars as pl

from ldw.curves.config import MetricsConfig, MetricsResult
from ldw.dynamics.config import ScheduleConfig, SpikesConfig, SpikesResult, WeightProbeConfig
from ldw.errors import LdwError, first_line
from ldw.ingest.config import IngestConfig, IngestResult
from ldw.ngrams.config import NgramConfig, NgramResult
from ldw.sweep.config import EvalSetConfig, EvalSetResult, SweepConfig, SweepSummary
from ldw.warehouse import Warehouse
from ldw.warehouse.catalog import CATALOG_FILE
from ldw.warehouse.curves import token_curves

if TYPE_CHECKING:
    from ldw.dynamics.lr_law_store import ScheduleFitResult
    from ldw.dynamics.weight_probes import ProbeSummary

Config = TypeVar("Config")
READ_STATEMENTS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


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
def undo_new_warehouse(root: Path) -> Iterator[None]:
    """Run a verb that may create the warehouse; if it fails, remove what it created.

    A first command that fails (a typo in ``-w``, a corpus that does not
    exist) then leaves no folder and no ``catalog.duckdb`` behind. An existing
    warehouse is never touched.
    """
    root = Path(root).absolute()
    if (root / CATALOG_FILE).exists():
        yield
        return
    created = root
    while not created.parent.exists():
        created = created.parent
    existed = root.exists()
    before = set(root.iterdir()) if existed else set()
    try:
        yield
    except BaseException:
        if not existed:
            shutil.rmtree(created, ignore_errors=True)
        else:
            for entry in set(root.iterdir()) - before:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        raise


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
        """Register runs found under ``paths``: checkpoints, tokenizer fingerprint, weight hashes, training log."""
        from ldw.ingest.register import ingest_paths

        settings = configured(IngestConfig, config, options)
        with undo_new_warehouse(self.root):
            return ingest_paths(self.root, [Path(p) for p in paths], settings, progress=self.progress)

    def evalset(self, config: EvalSetConfig | None = None, replace: bool = False, **options: Any) -> EvalSetResult:
        """Build the evaluation set (tokens in context every run is scored on); ``replace`` swaps a different one."""
        from ldw.sweep.evalset import build_eval_set

        settings = configured(EvalSetConfig, config, options)
        with undo_new_warehouse(self.root):
            return build_eval_set(self.root, settings, replace=replace)

    def sweep(self, config: SweepConfig | None = None, **options: Any) -> SweepSummary:
        """Score every evaluation token under every pending checkpoint; resumes where a sweep stopped."""
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
        """Find loss and gradient-norm spikes, and the tokens that got worse across each bracketed spike."""
        from ldw.dynamics.spikes_store import detect_spikes_in_warehouse, spike_tokens_in_warehouse

        settings = configured(SpikesConfig, config, options)
        scan = detect_spikes_in_warehouse(self.root, settings.traces, settings.rule)
        bracketed = spike_tokens_in_warehouse(self.root, settings.top_n)
        return SpikesResult(scan.found, bracketed, tuple(scan.warnings))

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

    def export_correlations(self, out_dir: str | Path) -> list[Path]:
        """Write the metric / n-gram predictor correlations and the per-token feature table (CSV and Parquet)."""
        from ldw.ngrams.export import export_ngram_correlations

        return export_ngram_correlations(self.root, Path(out_dir))

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

    def traces(self, run: str | None = None, names: Sequence[str] | None = None) -> pl.DataFrame:
        """Training-log traces in long format (run_id, step, name, value), optionally one run and some names."""
        frame = self._read().traces(run)
        return frame.filter(pl.col("name").is_in(list(names))) if names is not None else frame

    def sql(self, query: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """Run one read-only SQL query (DuckDB: SELECT, WITH, FROM, DESCRIBE, SHOW, EXPLAIN) over the warehouse.

        Anything else (COPY, CREATE, ATTACH, SET, ...) is refused before it runs,
        and a query DuckDB rejects is a one-line ``LdwError``.
        """
        try:
            statements = duckdb.connect().extract_statements(query)
        except duckdb.Error as exc:
            raise LdwError(f"SQL: {first_line(exc)}") from None
        if len(statements) != 1 or statements[0].type not in READ_STATEMENTS:
            kinds = ", ".join(s.type.name for s in statements) or "nothing"
            raise LdwError(f"SQL: give one read-only query (SELECT, WITH, FROM, DESCRIBE, SHOW, EXPLAIN), not {kinds}")
        try:
            return self._read().query(query, list(params) if params is not None else None)
        except duckdb.Error as exc:
            raise LdwError(f"SQL: {first_line(exc)}") from None

    def _derived(self, table: str, command: str) -> pl.DataFrame:
        wh = self._read()
        if not wh.has_table(table):
            raise LdwError(f"{self.root}: no {table} table yet; run `ldw {command}` (or the matching method) first")
        return wh.query(f'SELECT * FROM "{table}"')
