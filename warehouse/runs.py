"""Runs and checkpoints in the catalog."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from ldw.warehouse.clock import utcnow
from ldw.warehouse.errors import WarehouseError
from ldw.warehouse.records import RUN_RECORD, SWEEP_RECORD, dumps, run_record, sweep_record

RUN_COLUMNS = (
    "run_id",
    "name",
    "seed",
    "source",
    "source_kind",
    "arch",
    "model_config",
    "tokenizer_path",
    "tokenizer_fingerprint",
    "tokens_per_step",
    "metadata",
    "ingested_at",
)


@dataclass(frozen=True)
class RunRecord:
    """One training run (seed) as registered by ingest."""

    run_id: str
    name: str
    seed: int | None
    source: str
    source_kind: str
    arch: str | None
    model_config: dict[str, Any]
    tokenizer_path: str | None
    tokenizer_fingerprint: str | None
    tokens_per_step: int | None
    metadata: dict[str, Any]


@dataclass(frozen=True)
class CheckpointRecord:
    """One saved model of a run."""

    step: int
    tokens_seen: int | None
    path: str
    content_hash: str | None
    duplicate_of: int | None


class RunsMixin:
    """Register runs and checkpoints; track each checkpoint's sweep status."""

    def upsert_run(self, run: RunRecord) -> None:
        """Insert or update a run; a run id already taken by another source is an error."""
        existing = self.query("SELECT source FROM runs WHERE run_id = ?", [run.run_id])
        if existing.height and existing["source"][0] != run.source:
            raise WarehouseError(
                f"{run.source}: run id '{run.run_id}' is already used by {existing['source'][0]}; "
                "pass --name to give this run another name"
            )
        with self.connect() as con:
            con.execute(
                f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))}) "
                f"ON CONFLICT (run_id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in RUN_COLUMNS[1:])}",
                [
                    run.run_id,
                    run.name,
                    run.seed,
                    run.source,
                    run.source_kind,
                    run.arch,
                    json.dumps(run.model_config, sort_keys=True, default=str),
                    run.tokenizer_path,
                    run.tokenizer_fingerprint,
                    run.tokens_per_step,
                    json.dumps(run.metadata, sort_keys=True, default=str),
                    utcnow(),
                ],
            )
        self.save_run_record(run.run_id)

    def save_run_record(self, run_id: str) -> None:
        """Write ``runs/RUN_ID.json`` from the catalog (see :mod:`ldw.warehouse.records`)."""
        with self.connect() as con:
            record = run_record(con, run_id)
        if record is not None:
            self.store.write_text(dumps(record), self.store.path(RUN_RECORD.format(run_id=run_id)))

    def upsert_checkpoints(self, run_id: str, checkpoints: list[CheckpointRecord]) -> int:
        """Register checkpoints; keep sweep results whose weights did not change.

        Returns how many checkpoints are new or changed (and so pending).
        """
        current = {
            row["step"]: row
            for row in self.query(
                "SELECT step, content_hash, status, surprisal_file FROM checkpoints WHERE run_id = ?",
                [run_id],
            ).iter_rows(named=True)
        }
        changed, stale = 0, []
        with self.connect() as con:
            con.execute("BEGIN")
            for ck in checkpoints:
                old = current.get(ck.step)
                keep = old is not None and old["content_hash"] == ck.content_hash and old["status"] == "done"
                if keep:
                    con.execute(
                        "UPDATE checkpoints SET tokens_seen = ?, path = ?, duplicate_of = ? "
                        "WHERE run_id = ? AND step = ?",
                        [ck.tokens_seen, ck.path, ck.duplicate_of, run_id, ck.step],
                    )
                    continue
                changed += 1
                if old is not None and old["surprisal_file"]:
                    stale.append(old["surprisal_file"])
                con.execute(
                    "INSERT OR REPLACE INTO checkpoints VALUES "
                    "(?, ?, ?, ?, ?, ?, 'pending', NULL, NULL, NULL, NULL, NULL)",
                    [run_id, ck.step, ck.tokens_seen, ck.path, ck.content_hash, ck.duplicate_of],
                )
            con.execute("COMMIT")
        self.save_run_record(run_id)
        for path in stale:  # only once the catalog no longer points at them
            self.store.remove(self.store.path(path))
        return changed

    def runs(self) -> pl.DataFrame:
        """All runs, ordered by run id."""
        return self.query("SELECT * FROM runs ORDER BY run_id")

    def run_summary(self) -> pl.DataFrame:
        """One row per run: checkpoint counts by status, duplicates, first and last step, tokens scored."""
        return self.query(
            """
            SELECT r.run_id, r.name, r.seed, r.arch, r.source_kind,
                   count(c.step) AS checkpoints,
                   count(c.step) FILTER (WHERE c.status = 'done') AS done,
                   count(c.step) FILTER (WHERE c.status = 'pending') AS pending,
                   count(c.step) FILTER (WHERE c.status = 'failed') AS failed,
                   count(c.duplicate_of) AS duplicates,
                   min(c.step) AS first_step, max(c.step) AS last_step,
                   coalesce(sum(c.n_tokens) FILTER (WHERE c.status = 'done'), 0) AS tokens_scored
            FROM runs r LEFT JOIN checkpoints c USING (run_id)
            GROUP BY ALL ORDER BY r.run_id
            """
        )

    def run_ids(self) -> list[str]:
        """Ids of all runs, sorted."""
        return self.query("SELECT run_id FROM runs ORDER BY run_id")["run_id"].to_list()

    def checkpoints(self, run_id: str | None = None) -> pl.DataFrame:
        """Checkpoints of one run (or all), ordered by run and step."""
        if run_id is None:
            return self.query("SELECT * FROM checkpoints ORDER BY run_id, step")
        return self.query("SELECT * FROM checkpoints WHERE run_id = ? ORDER BY step", [run_id])

    def mark_checkpoint_done(
        self,
        run_id: str,
        step: int,
        surprisal_file: str,
        n_tokens: int,
        sweep_id: str,
        eval_id: str,
        probed_at: datetime,
        views: bool = False,
    ) -> None:
        """Catalog a completed surprisal file scored on evaluation set ``eval_id`` (after the file is complete).

        Refused (a WarehouseError, nothing changed) when the warehouse no longer
        holds that evaluation set or the checkpoint: checked in the same
        transaction, which also re-creates the views when ``views`` is set.
        """
        with self.connect() as con:
            con.execute("BEGIN")
            done = con.execute(
                "UPDATE checkpoints SET status = 'done', error = NULL, probed_at = ?, surprisal_file = ?, "
                "n_tokens = ?, sweep_id = ? WHERE run_id = ? AND step = ? "
                "AND EXISTS (SELECT 1 FROM eval_sets WHERE eval_id = ?) RETURNING step",
                [probed_at, surprisal_file, n_tokens, sweep_id, run_id, step, eval_id],
            ).fetchall()
            current = con.execute("SELECT eval_id FROM eval_sets").fetchone()
            if done and views:
                self._create_views(con, in_transaction=True)
            con.execute("COMMIT" if done else "ROLLBACK")
        if done:
            return
        if current is None or current[0] != eval_id:
            raise self.eval_changed_error(run_id, step, eval_id, current[0] if current else None)
        raise WarehouseError(f"{self.root}: run '{run_id}' has no checkpoint at step {step} (re-ingested meanwhile?)")

    def eval_changed_error(self, run_id: str, step: int, scored: str, current: str | None) -> WarehouseError:
        """The error of surprisal scored on an evaluation set the warehouse no longer holds."""
        return WarehouseError(
            f"{run_id} step {step}: scored on evaluation set {scored}, but {self.root} now holds "
            f"{current or 'none'} (replaced while the sweep ran); nothing was cataloged: rerun `ldw sweep`"
        )

    def mark_checkpoint_failed(self, run_id: str, step: int, error: str) -> None:
        """Record a checkpoint whose sweep failed, with its one-line error."""
        self.execute(
            "UPDATE checkpoints SET status = 'failed', error = ? WHERE run_id = ? AND step = ?",
            [error, run_id, step],
        )

    def record_sweep(self, sweep_id: str, settings: dict[str, Any]) -> None:
        """Store the scoring settings of a sweep (units, precision, prefix, versions), in the catalog and its record.

        A known sweep keeps its start (its settings grow with what its checkpoints measured).
        """
        text = json.dumps(settings, sort_keys=True, default=str)
        with self.connect() as con:
            if con.execute("SELECT 1 FROM sweeps WHERE sweep_id = ?", [sweep_id]).fetchone():
                con.execute("UPDATE sweeps SET settings = ? WHERE sweep_id = ?", [text, sweep_id])
            else:
                con.execute("INSERT INTO sweeps VALUES (?, ?, ?)", [sweep_id, utcnow(), text])
            record = sweep_record(con, sweep_id)
        self.store.write_text(dumps(record), self.store.path(SWEEP_RECORD.format(sweep_id=sweep_id)))

    def sweeps(self) -> pl.DataFrame:
        """One row per sweep: start, device, precision, batch size and the precision's measured error (bits).

        The error is the worse of the sweep's first and last checkpoints (each on the same sample of
        tokens). Sweeps recorded before precisions were measured show their weights dtype and no error.
        """
        rows = []
        for sweep_id, started, text in self.query("SELECT * FROM sweeps ORDER BY started_at").iter_rows():
            settings = json.loads(text)
            checks = [settings[k] for k in ("precision_error", "precision_error_last") if settings.get(k)]
            measured = [c for c in checks if "max_abs_bits" in c]
            worst = max(measured, key=lambda c: c["max_abs_bits"], default={})
            rows.append(
                {
                    "sweep_id": sweep_id,
                    "started_at": started,
                    "device": settings.get("device"),
                    "precision": settings.get("precision") or settings.get("weights_dtype"),
                    "batch_size": settings.get("batch_size"),
                    "error_reference": worst.get("reference"),
                    "error_tokens": worst.get("tokens"),
                    "max_abs_error_bits": worst.get("max_abs_bits"),
                    "mean_abs_error_bits": max((c["mean_abs_bits"] for c in measured), default=None),
                    "error_steps": ", ".join(f"{c.get('run_id')} step {c.get('step')}" for c in measured) or None,
                    "within_bar": all(c.get("within_bar", True) for c in measured) if measured else None,
                    "error_note": next((c["error"] for c in checks if "error" in c), None),
                }
            )
        schema = {
            "sweep_id": pl.String,
            "started_at": pl.Datetime,
            "device": pl.String,
            "precision": pl.String,
            "batch_size": pl.Int64,
            "error_reference": pl.String,
            "error_tokens": pl.Int64,
            "max_abs_error_bits": pl.Float64,
            "mean_abs_error_bits": pl.Float64,
            "error_steps": pl.String,
            "within_bar": pl.Boolean,
            "error_note": pl.String,
        }
        return pl.DataFrame(rows, schema=schema)


def describe_sweep(row: dict) -> str:
    """A row of :meth:`RunsMixin.sweeps` in words: device, precision, batch size, measured error."""
    head = f"{row['precision']} on {row['device']}, batch {row['batch_size'] or 'auto'}"
    if row["error_note"]:
        return f"{head}; error not measured ({row['error_note']})"
    if row["max_abs_error_bits"] is None:
        return f"{head}; error not measured"
    words = (
        f"{head}; error vs {row['error_reference']} on {row['error_tokens']:,} tokens: "
        f"max {row['max_abs_error_bits']:.2g}, mean {row['mean_abs_error_bits']:.2g} bits ({row['error_steps']})"
    )
    return words + (" (above the 0.01-bit bar)" if row["within_bar"] is False else "")
