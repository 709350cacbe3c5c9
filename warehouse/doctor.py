"""Verify a warehouse: every invariant between the catalog, its views, the Parquet files and their records.

Each :class:`Finding` names the file (or table), what is wrong, the command
that fixes it and, when ``ldw doctor --repair`` can mend it, how
(:mod:`ldw.warehouse.repair`). What is checked:

* the catalog: every catalog table present, every view present and reading
  inside the warehouse;
* the evaluation set's files: present, readable, registered schema, the
  cataloged row counts, and recording the set's identity;
* every surprisal file cataloged as done: present, readable, registered
  schema, one row per evaluation token, and recording the run, step and
  evaluation set of its catalog row; no uncataloged surprisal file;
* every run's training-log traces: the cataloged row count, its run; no
  traces file of an unknown run;
* every derived table: registered, complete, its marker; no version folder
  the catalog does not name;
* the JSON records beside the tables (runs, sweeps) equal to the catalog;
* no temporary file of an interrupted write.

While a command writes (it holds the writer lock), files it may be writing
(uncataloged files, version folders, temporary files) are not judged.
"""

from __future__ import annotations

import json
import posixpath
import shlex
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ldw.errors import first_line
from ldw.warehouse.catalog import Warehouse
from ldw.warehouse.errors import WarehouseError
from ldw.warehouse.lock import holders_of
from ldw.warehouse.parquet_io import file_identity, file_schema_version
from ldw.warehouse.records import RUN_RECORD, SWEEP_RECORD, VERSION_MARKER, dumps, run_record, sweep_record
from ldw.warehouse.tables import CATALOG_TABLES, DERIVED_ROOT, TABLES, TableSpec

WRITTEN_BY = {
    "token_metrics": "metrics",
    "crossrun_metrics": "metrics",
    "token_curves_smoothed": "metrics",
    "token_curves_raw": "metrics",
    "ngram_stats": "ngrams",
    "spikes": "spikes",
    "spike_tokens": "spikes",
    "lr_law_fit": "fit-schedule",
    "lr_law_curves": "fit-schedule",
    "weight_probes": "probe-weights",
}


@dataclass(frozen=True)
class Finding:
    """One broken invariant: where, what, the command that fixes it, and the repair (None: --repair cannot)."""

    where: str
    problem: str
    fix: str
    repair: tuple[Any, ...] | None = None

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}; fix: {self.fix}"


class _Doctor:
    """The checks of one warehouse, collecting findings."""

    def __init__(self, wh: Warehouse) -> None:
        self.wh = wh
        self.store = wh.store
        self.findings: list[Finding] = []
        self.in_flight = any(not holder.is_this_process() for holder in holders_of(wh.root))
        self.repair_cmd = f"`ldw doctor {wh.root} --repair`"

    def add(self, where: str, problem: str, fix: str | None = None, repair: tuple[Any, ...] | None = None) -> None:
        self.findings.append(Finding(where, problem, fix or self.repair_cmd, repair))

    def orphan(self, path: str, what: str) -> None:
        """An uncataloged file or folder: removed by --repair (not judged while a command writes)."""
        if not self.in_flight:
            self.add(path, f"{what} (left by an interrupted command)", repair=("remove", path))

    def file_problems(self, path: str, spec: TableSpec) -> tuple[list[str], pa.Schema | None, int | None]:
        """What is wrong with one Parquet file as a file of ``spec``; its schema and row count when readable."""
        if not self.store.exists(path):
            return ["file is missing"], None, None
        try:
            handle = self.store.parquet_file(path)
            schema, rows = handle.schema_arrow, handle.metadata.num_rows
        except (OSError, ValueError, pa.ArrowException, WarehouseError) as exc:
            cause = exc.__cause__ if isinstance(exc, WarehouseError) and exc.__cause__ is not None else exc
            return [f"unreadable Parquet ({first_line(cause)}; truncated or damaged)"], None, None
        problems = []
        if (version := file_schema_version(schema)) != spec.version:
            problems.append(f"schema version {version}, expected {spec.version}")
        problems += [f"{problem} (table '{spec.name}')" for problem in spec.problems(schema)]
        return problems, schema, rows


def diagnose(wh: Warehouse) -> list[Finding]:
    """Every broken invariant of the warehouse; empty when it is sound."""
    doctor = _Doctor(wh)
    with wh.connect() as con:
        present = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        missing = [name for name in CATALOG_TABLES if name not in present]
        if missing:
            doctor.add(
                str(wh.catalog_path),
                f"catalog table {', '.join(missing)} is missing (dropped?)",
                f"`ldw doctor {wh.root} --rebuild` (or --repair) rebuilds the catalog from the Parquet files",
                ("rebuild",),
            )
            return doctor.findings
        foreign = wh.foreign_views(con)
        absent = wh.missing_views(con)
        empty = wh.empty_views(con)
    for name, path in foreign:
        doctor.add(str(wh.catalog_path), f"view '{name}' reads {path}, outside this warehouse", repair=("views",))
    for name in absent:
        doctor.add(str(wh.catalog_path), f"view '{name}' is missing (dropped?)", repair=("views",))
    for name in empty if not doctor.in_flight else ():  # a file being written has no view yet
        doctor.add(str(wh.catalog_path), f"view '{name}' reads no file, though the table has files", repair=("views",))
    eval_id = wh.eval_id()
    _check_eval_set(doctor, eval_id)
    _check_surprisal(doctor, eval_id)
    _check_traces(doctor)
    _check_derived(doctor)
    _check_records(doctor)
    if not doctor.in_flight:
        for path in doctor.store.glob("**/.*.tmp"):
            doctor.orphan(path, "temporary file of an interrupted write")
    return doctor.findings


def check_warehouse(wh: Warehouse) -> list[str]:
    """Every problem found, one line each naming the file and the command that fixes it; empty when sound."""
    return [str(finding) for finding in diagnose(wh)]


def _check_eval_set(doctor: _Doctor, eval_id: str | None) -> None:
    store, wh = doctor.store, doctor.wh
    for name in store.children(TABLES["eval_tokens"].folder):
        if name != eval_id:
            doctor.orphan(store.path(TABLES["eval_tokens"].folder, name), "files of a replaced evaluation set")
    if eval_id is None:
        return
    record = wh.eval_set_record()
    fix = f"rerun the evaluation set's command: {evalset_command(wh.root, record['config'])}"
    counts = {"eval_sequences": record["n_sequences"], "eval_tokens": record["n_tokens"]}
    for name, expected in counts.items():
        spec = TABLES[name]
        path = store.path(spec.file(eval_id=eval_id))
        problems, schema, rows = doctor.file_problems(path, spec)
        if schema is not None and rows != expected:
            problems.append(f"{rows} rows, the catalog says {expected}")
        if schema is not None and (file_identity(schema) or {}).get("eval_set") != record:
            problems.append("it does not record the cataloged evaluation set")
        for problem in problems:
            doctor.add(path, problem, fix)


def evalset_command(root: object, config: dict[str, Any]) -> str:
    """The ``ldw evalset`` command line that builds the evaluation set of ``config`` again."""
    options = {
        "--corpus": config.get("corpus"),
        "--split": config.get("split"),
        "--seq-len": config.get("seq_len"),
        "--sequences": config.get("n_sequences"),
        "--positions": config.get("positions_per_sequence"),
        "--seed": config.get("seed"),
        "--prefix-token-id": config.get("prefix_token_id"),
        "--tokenizer": config.get("tokenizer_path"),
    }
    args = " ".join(f"{flag} {shlex.quote(str(value))}" for flag, value in options.items() if value not in (None, ""))
    return f"`ldw evalset -w {shlex.quote(str(root))} {args}`"


def _check_surprisal(doctor: _Doctor, eval_id: str | None) -> None:
    store, wh, spec = doctor.store, doctor.wh, TABLES["surprisal"]
    n_tokens = wh.token_count() if eval_id is not None else None
    fix = f"{doctor.repair_cmd} (back to pending), then `ldw sweep -w {wh.root}`"
    done = wh.query("SELECT run_id, step, surprisal_file, n_tokens FROM checkpoints WHERE status = 'done'")
    cataloged = set()
    for run_id, step, relative, rows in done.iter_rows():
        path = store.path(relative)
        cataloged.add(path)
        problems, schema, stored = doctor.file_problems(path, spec)
        if schema is not None:
            if rows != n_tokens:
                problems.append(f"cataloged with {rows} rows for {n_tokens} evaluation tokens")
            if stored != rows:
                problems.append(f"{stored} rows, the catalog says {rows} (truncated?)")
            identity = file_identity(schema) or {}
            said = {key: identity.get(key) for key in ("run_id", "step", "eval_id")}
            if said != {"run_id": run_id, "step": step, "eval_id": eval_id}:
                problems.append(
                    f"holds run {said['run_id']} step {said['step']} of evaluation set {said['eval_id']}, "
                    f"its catalog row run {run_id} step {step} of {eval_id}"
                )
        for problem in problems:
            doctor.add(path, problem, fix, ("rescore", run_id, step))
    for path in store.glob(spec.glob):
        if path not in cataloged:
            doctor.orphan(path, "surprisal file not cataloged as done")


def _check_traces(doctor: _Doctor) -> None:
    store, wh, spec = doctor.store, doctor.wh, TABLES["traces"]
    runs = wh.query("SELECT run_id, source, trace_rows FROM runs")
    expected = {run_id: (source, rows) for run_id, source, rows in runs.iter_rows() if rows is not None}
    for run_id, (source, rows) in expected.items():
        path = store.path(spec.file(run_id=run_id))
        problems, schema, stored = doctor.file_problems(path, spec)
        if schema is not None:
            if stored != rows:
                problems.append(f"{stored} rows, the catalog says {rows}")
            if (file_identity(schema) or {}).get("run_id") != run_id:
                problems.append(f"does not record run {run_id}")
        for problem in problems:
            doctor.add(
                path, problem, f"`ldw ingest {source} -w {wh.root}` (reads its training log again)", ("traces", run_id)
            )
    for path in store.glob(spec.glob):
        if posixpath.basename(path).removesuffix(".parquet") not in expected:
            doctor.orphan(path, "traces file of no cataloged run")


def _check_derived(doctor: _Doctor) -> None:
    store, wh = doctor.store, doctor.wh
    rows = wh.query("SELECT table_name, params, location FROM derived_tables")
    locations = {}
    for table, params, location in rows.iter_rows():
        locations[table] = location
        spec = TABLES.get(table)
        if spec is None or spec.kind != "derived":
            doctor.add(
                store.path(location), f"'{table}' is not a derived table this ldw knows", repair=("drop_derived", table)
            )
            continue
        fix = f"{doctor.repair_cmd} (drops it), then `ldw {WRITTEN_BY[table]} -w {wh.root}`"
        parts = store.glob(spec.part_file(location, "*"))
        if not parts:
            doctor.add(store.path(location), f"derived table '{table}' has no files", fix, ("drop_derived", table))
        for path in parts:
            for problem in doctor.file_problems(path, spec)[0]:
                doctor.add(path, problem, fix, ("drop_derived", table))
        marker = _read_json(store, store.path(location, VERSION_MARKER))
        if parts and (marker is None or marker.get("params") != json.loads(params) or marker.get("table") != table):
            doctor.add(
                store.path(location, VERSION_MARKER),
                "version marker missing or not the catalog's",
                repair=("marker", table),
            )
    for table in store.children(DERIVED_ROOT):
        for version in store.children(f"{DERIVED_ROOT}/{table}"):
            if f"{DERIVED_ROOT}/{table}/{version}" != locations.get(table):
                doctor.orphan(store.path(DERIVED_ROOT, table, version), "version folder not in the catalog")


def _check_records(doctor: _Doctor) -> None:
    """The JSON records of runs and sweeps say what the catalog says."""
    store, wh = doctor.store, doctor.wh
    run_ids = wh.run_ids()
    sweep_ids = wh.query("SELECT sweep_id FROM sweeps")["sweep_id"].to_list()
    with wh.connect() as con:
        wanted = {RUN_RECORD.format(run_id=r): (run_record(con, r), ("run_record", r)) for r in run_ids}
        wanted |= {SWEEP_RECORD.format(sweep_id=s): (sweep_record(con, s), ("sweep_record", s)) for s in sweep_ids}
    for relative, (record, repair) in wanted.items():
        path = store.path(relative)
        if store.read_text(path) != dumps(record):
            doctor.add(path, "record missing or not what the catalog says", repair=repair)
    for pattern in (RUN_RECORD.format(run_id="*"), SWEEP_RECORD.format(sweep_id="*")):
        for path in store.glob(pattern):
            if store.relative(path) not in wanted:
                doctor.orphan(path, "record of nothing in the catalog")


def _read_json(store: Any, path: str) -> dict | None:
    text = store.read_text(path)
    try:
        return json.loads(text) if text is not None else None
    except json.JSONDecodeError:
        return None
