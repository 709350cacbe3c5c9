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

Every verb that writes holds the warehouse's writer lock while it runs
(:mod:`ldw.warehouse.lock`): another writer finds the warehouse taken and is
refused with the holder's name, or with ``wait=True`` waits for it. The
readers never take it.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
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
from ldw.warehouse import Warehouse, WarehouseError
from ldw.warehouse.catalog import CATALOG_FILE
from ldw.warehouse.curves import token_curves
from ldw.warehouse.errors import CatalogDamaged
from ldw.warehouse.lock import HOLDERS_DIR, LOCK_FILE, writer_lock

if TYPE_CHECKING:
    from ldw.dynamics.lr_law_store import ScheduleFitResult
    from ldw.dynamics.weight_probes import ProbeSummary
    from ldw.warehouse.rebuild import RebuildResult

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
    """Run a verb that may create the warehouse; if it fails before storing anything, remove what it created.

    A first command that fails (a typo in ``-w``, a corpus that does not exist)
    then leaves no folder and no ``catalog.duckdb`` behind (nor the folders made
    above it). An existing warehouse is never touched, nor what a failed command
    did store (runs, an evaluation set, Parquet files: finished work is kept).
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
        new = set(root.iterdir()) - before if root.is_dir() else set()
        if not _stores_anything(root, new):
            if not existed:
                shutil.rmtree(created, ignore_errors=True)
            else:
                for entry in new:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        raise


def _stores_anything(root: Path, new: set[Path]) -> bool:
    """Whether the ``new`` entries of ``root`` hold a file other than the catalog and the writer lock's, or the
    catalog holds runs or an evaluation set."""
    files = (p for entry in new for p in ([entry] if entry.is_file() else entry.rglob("*")) if p.is_file())
    if any(not _is_catalog_or_lock(root, p) for p in files):
        return True
    if not (root / CATALOG_FILE).is_file():
        return False
    try:
        wh = Warehouse.open(root, read_only=True)
        return wh.runs().height > 0 or wh.eval_config() is not None
    except WarehouseError:
        return True


def _is_catalog_or_lock(root: Path, path: Path) -> bool:
    """Whether ``path`` is the catalog (or its write-ahead log) or a file of the writer lock."""
    return path.name.startswith(CATALOG_FILE) or path.name == LOCK_FILE or path.parent == root / HOLDERS_DIR


def open(
    root: str | Path, create: bool = False, storage: str | None = None, progress: bool = True, wait: bool = False
) -> Workbench:
    """The workbench on warehouse folder ``root``; ``create=True`` makes it when missing (``storage``: see init).

    Named like ``gzip.open``: call it as ``ldw.open``. ``wait``: see :class:`Workbench`.
    """
    return Workbench.open(root, create=create, storage=storage, progress=progress, wait=wait)


@dataclasses.dataclass(frozen=True)
class RepairResult:
    """What ``repair`` did (one line per action) and the problems left (each naming the command that fixes it)."""

    actions: list[str]
    remaining: list[str]


class Workbench:
    """A warehouse folder and the verbs that fill and read it.

    ``progress`` shows progress bars on long work (sweeps, metrics, n-gram
    counts); turn it off in scripts whose output is logged. ``wait``: a verb
    that writes waits while another command writes the warehouse (saying on
    stderr whom it waits for) instead of failing with the holder's name.
    """

    def __init__(self, root: Path, progress: bool = True, wait: bool = False) -> None:
        self.root = Path(root)
        self.progress = progress
        self.wait = wait

    @classmethod
    def open(
        cls,
        root: str | Path,
        create: bool = False,
        storage: str | None = None,
        progress: bool = True,
        wait: bool = False,
    ) -> Workbench:
        """Open the warehouse at ``root``; with ``create`` make it first (Parquet tables at ``storage`` if given)."""
        root = Path(root)
        wb = cls(root, progress, wait)
        if create:
            with undo_new_warehouse(root), wb._writing("init", create=True):
                Warehouse.create(root, storage)
        elif storage is not None:
            raise LdwError("storage can only be chosen when the warehouse is created (create=True)")
        elif not (root / CATALOG_FILE).is_file():
            hint = f"ldw.open({str(root)!r}, create=True) makes one"
            raise LdwError(f"{root}: not a warehouse (no {CATALOG_FILE}); {hint}")
        return wb

    @contextmanager
    def _writing(self, command: str, create: bool = False, shard: tuple[int, int] | None = None) -> Iterator[None]:
        """Hold the writer lock for ``command`` (a warehouse that does not exist yet is made first if ``create``).

        The verbs import their (heavy) modules inside the block, so a refusal comes at once.
        """
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        exists = (self.root / CATALOG_FILE).is_file() or create
        # no lock in a folder that is no warehouse: the command itself says so
        with writer_lock(self.root, command, wait=self.wait, shard=shard) if exists else nullcontext():
            yield

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
        settings = configured(IngestConfig, config, options)
        with undo_new_warehouse(self.root), self._writing("ingest", create=True):
            from ldw.ingest.register import ingest_paths

            return ingest_paths(self.root, list(paths), settings, progress=self.progress)

    def evalset(self, config: EvalSetConfig | None = None, replace: bool = False, **options: Any) -> EvalSetResult:
        """Build the evaluation set (tokens in context every run is scored on); ``replace`` swaps a different one."""
        settings = configured(EvalSetConfig, config, options)
        with undo_new_warehouse(self.root), self._writing("evalset", create=True):
            from ldw.sweep.evalset import build_eval_set

            return build_eval_set(self.root, settings, replace=replace)

    def sweep(self, config: SweepConfig | None = None, **options: Any) -> SweepSummary:
        """Score every evaluation token under every pending checkpoint; resumes where a sweep stopped.

        Hub checkpoints are downloaded one by one while the previous one is scored, and removed from the
        Hugging Face cache once scored unless ``keep_weights=True``.
        """
        settings = configured(SweepConfig, config, options)
        if settings.executor == "local" and settings.device.startswith("cuda"):
            from ldw.probe.loading import resolve_device

            # a GPU this machine lacks is a setting error, refused before the lock (cpu and auto always resolve;
            # they import no torch here, so a busy warehouse is reported at once)
            resolve_device(settings.device)
        with self._writing("sweep", shard=settings.shard):  # shards of one split sweep side by side
            from ldw.sweep.run import run_sweep

            return run_sweep(self.root, settings, progress=self.progress)

    def metrics(self, config: MetricsConfig | None = None, **options: Any) -> MetricsResult:
        """Learning-curve metrics per (run, token) and across runs (Chang, Tu & Bergen 2023)."""
        settings = configured(MetricsConfig, config, options)
        with self._writing("metrics"):
            from ldw.curves.store import compute_metrics

            return compute_metrics(self.root, settings, progress=self.progress)

    def ngrams(self, config: NgramConfig | None = None, **options: Any) -> NgramResult:
        """Count n-grams of a reference corpus and store every evaluation token's n-gram predictors."""
        settings = configured(NgramConfig, config, options)
        with self._writing("ngrams"):
            from ldw.ngrams.store import compute_ngram_stats

            return compute_ngram_stats(self.root, settings, progress=self.progress)

    def detect_spikes(self, config: SpikesConfig | None = None, **options: Any) -> SpikesResult:
        """Find loss and gradient-norm spikes, and the tokens that got worse across each bracketed spike."""
        settings = configured(SpikesConfig, config, options)
        with self._writing("spikes"):
            from ldw.dynamics.spikes_store import detect_spikes_in_warehouse, spike_tokens_in_warehouse

            scan = detect_spikes_in_warehouse(self.root, settings.traces, settings.rule)
            bracketed = spike_tokens_in_warehouse(self.root, settings.top_n)
        return SpikesResult(scan.found, bracketed, tuple(scan.warnings))

    def fit_schedule(self, config: ScheduleConfig | None = None, **options: Any) -> ScheduleFitResult:
        """Fit the LR-annealing loss law on runs and predict the loss of other schedules."""
        settings = configured(ScheduleConfig, config, options)
        with self._writing("fit-schedule"):
            from ldw.dynamics.lr_law_store import fit_schedule_in_warehouse

            return fit_schedule_in_warehouse(
                self.root, settings.runs, settings.predict, fit_from_fraction=settings.fit_from, decay=settings.decay
            )

    def probe_weights(self, config: WeightProbeConfig | None = None, **options: Any) -> ProbeSummary:
        """Per-checkpoint weight probes: attention spectra and entropy, norms, probe-batch gradient norms."""
        settings = configured(WeightProbeConfig, config, options)
        runs = list(settings.runs) if settings.runs else None
        with self._writing("probe-weights"):
            from ldw.dynamics.weight_probes import probe_weights_in_warehouse

            return probe_weights_in_warehouse(
                self.root, runs, settings.sequences, progress=self.progress, device=settings.device
            )

    def export_correlations(self, out_dir: str | Path, include_unacquired: bool = False) -> list[Path]:
        """Write the correlations, the paper's regressions and the per-token feature table (CSV and Parquet)."""
        from ldw.ngrams.export import export_ngram_correlations

        return export_ngram_correlations(self.root, Path(out_dir), include_unacquired)

    def doctor(self) -> list[str]:
        """Every broken invariant of the warehouse, one line each naming the file and the command that fixes it.

        Empty when sound. Reads only: files a running command may be writing are not judged.
        """
        from ldw.warehouse.doctor import check_warehouse

        return check_warehouse(self._inspect())

    def repair(self) -> RepairResult:
        """Mend what :meth:`doctor` finds (see ``ldw.warehouse.repair``); a damaged catalog is rebuilt first."""
        from ldw.warehouse.doctor import check_warehouse, diagnose
        from ldw.warehouse.rebuild import rebuild_catalog
        from ldw.warehouse.repair import repair

        actions = []
        with self._writing("doctor --repair"):
            try:
                rebuild = any(f.repair == ("rebuild",) for f in diagnose(self._inspect()))
            except CatalogDamaged as exc:
                actions.append(str(exc))
                rebuild = True
            if rebuild:
                rebuilt = rebuild_catalog(self.root)
                kept = f" (the old one: {rebuilt.kept_as})" if rebuilt.kept_as else ""
                actions.append(f"{self.root / CATALOG_FILE}: rebuilt from the Parquet files{kept}")
            wh = Warehouse.open(self.root, check_views=False)
            actions += repair(wh, diagnose(wh), _read_traces_again)
            remaining = check_warehouse(wh)
        return RepairResult(actions, remaining)

    def rebuild_catalog(self, storage: str | None = None) -> RebuildResult:
        """Rebuild ``catalog.duckdb`` from the Parquet files and their records (the old one is kept beside it)."""
        from ldw.warehouse.rebuild import rebuild_catalog

        self.root.mkdir(parents=True, exist_ok=True)
        with writer_lock(self.root, "doctor --rebuild", wait=self.wait):
            return rebuild_catalog(self.root, storage)

    # --- readers -------------------------------------------------------------------------------------

    def _read(self) -> Warehouse:
        return Warehouse.open(self.root, read_only=True)

    def _inspect(self) -> Warehouse:
        """Read-only, views not checked (the doctor reports them)."""
        return Warehouse.open(self.root, read_only=True, check_views=False)

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


def _read_traces_again(wh: Warehouse, run_id: str) -> int | None:
    """Read a run's training log again into its traces file (None when the run's folder has none any more)."""
    from ldw.ingest.training_logs import find_training_log, read_training_log

    source = Path(wh.query("SELECT source FROM runs WHERE run_id = ?", [run_id])["source"][0])
    log = find_training_log(source) if source.is_dir() else None
    return wh.write_traces(run_id, read_training_log(log)) if log is not None else None
