"""The evaluation set: sequences and the tokens in context that are scored."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from ldw.warehouse.clock import utcnow
from ldw.warehouse.errors import WarehouseError
from ldw.warehouse.failpoints import failpoint
from ldw.warehouse.tables import DERIVED_ROOT, TABLES


class EvalSetMixin:
    """One evaluation set per warehouse, shared by every run so curves compare."""

    def eval_id(self) -> str | None:
        """Identity of the evaluation set (a hash of its settings and tokenizer); None before one is built."""
        rows = self.query("SELECT eval_id FROM eval_sets")
        return rows["eval_id"][0] if rows.height else None

    def require_eval_id(self) -> str:
        """Identity of the evaluation set, or a clear error telling how to build one."""
        return str(self.require_eval_config()["eval_id"])

    def eval_config(self) -> dict[str, Any] | None:
        """Settings of the evaluation set, with its ``eval_id`` (None before one is built)."""
        rows = self.query("SELECT eval_id, config, tokenizer_fingerprint, vocab_size FROM eval_sets")
        if rows.height == 0:
            return None
        config = json.loads(rows["config"][0])
        config["tokenizer_fingerprint"] = rows["tokenizer_fingerprint"][0]
        config["vocab_size"] = int(rows["vocab_size"][0])
        config["eval_id"] = rows["eval_id"][0]
        return config

    def write_eval_set(
        self,
        sequences: pa.Table,
        tokens: pa.Table,
        config: dict[str, Any],
        tokenizer_fingerprint: str,
        vocab_size: int,
        replace: bool = False,
    ) -> bool:
        """Store the evaluation set; returns False when an identical one exists.

        A different existing set is kept unless ``replace`` is set. The new
        set's files go into a folder of their own (``eval/EVAL_ID/``); one
        catalog transaction then switches to it, sets every checkpoint back to
        pending and drops every derived table, and only afterwards are the old
        set's files, surprisal and derived tables removed. A crash before the
        switch leaves the old set whole, one after it the new one; rerunning
        the command that crashed finishes the removal. An identical set whose
        files were lost or damaged is written again.
        """
        eval_id = hashlib.sha256(json.dumps([config, tokenizer_fingerprint], sort_keys=True).encode()).hexdigest()[:16]
        existing = self.eval_id()
        if existing is not None and existing != eval_id and not replace:
            raise WarehouseError(
                f"{self.root}: warehouse already has a different evaluation set; "
                "use a new --warehouse, or --replace to drop it and every surprisal computed on it"
            )
        conformed = {
            name: TABLES[name].conform(data) for name, data in (("eval_sequences", sequences), ("eval_tokens", tokens))
        }
        if existing == eval_id:
            self._restore_eval_files(eval_id, conformed)
            self._remove_other_eval_data(eval_id)
            return False
        record = {
            "eval_id": eval_id,
            "config": config,
            "tokenizer_fingerprint": tokenizer_fingerprint,
            "vocab_size": vocab_size,
            "n_sequences": sequences.num_rows,
            "n_tokens": tokens.num_rows,
            "created_at": utcnow().isoformat(),
        }
        for name, data in conformed.items():
            self._write_eval_file(name, eval_id, data, record)
        with self.connect() as con:
            con.execute("BEGIN")
            con.execute(
                "UPDATE checkpoints SET status = 'pending', error = NULL, probed_at = NULL, "
                "surprisal_file = NULL, n_tokens = NULL, sweep_id = NULL"
            )
            for (name,) in con.execute("DELETE FROM derived_tables RETURNING table_name").fetchall():
                con.execute(f'DROP VIEW IF EXISTS "{name}"')
            con.execute("DELETE FROM eval_sets")
            con.execute(
                "INSERT INTO eval_sets VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    eval_id,
                    json.dumps(config, sort_keys=True),
                    tokenizer_fingerprint,
                    vocab_size,
                    sequences.num_rows,
                    tokens.num_rows,
                    datetime.fromisoformat(record["created_at"]),
                ],
            )
            self._create_views(con, in_transaction=True)
            con.execute("COMMIT")
        failpoint("evalset-switched")
        self._remove_other_eval_data(eval_id)
        return True

    def eval_set_record(self) -> dict[str, Any] | None:
        """The evaluation set's catalog row as its files record it (None before one is built)."""
        rows = self.query("SELECT * FROM eval_sets")
        if rows.height == 0:
            return None
        record = rows.row(0, named=True)
        record["config"] = json.loads(record["config"])
        record["created_at"] = record["created_at"].isoformat()
        return record

    def _write_eval_file(self, name: str, eval_id: str, data: pa.Table, record: dict[str, Any]) -> None:
        spec = TABLES[name]
        identity = {"table": name, "eval_set": record}
        self.store.write(data, self.store.path(spec.file(eval_id=eval_id)), spec.version, identity)

    def _restore_eval_files(self, eval_id: str, conformed: dict[str, pa.Table]) -> None:
        """Write the files of the current set again where they are missing or unreadable (same rows only)."""
        record = self.eval_set_record()
        counts = {"eval_sequences": record["n_sequences"], "eval_tokens": record["n_tokens"]}
        rewritten = False
        for name, data in conformed.items():
            path = self.store.path(TABLES[name].file(eval_id=eval_id))
            if self._readable_rows(path) == counts[name]:
                continue
            if data.num_rows != counts[name]:
                raise WarehouseError(
                    f"{path}: the evaluation set's file is missing or damaged, and its settings now give "
                    f"{data.num_rows} rows, not {counts[name]} (the corpus changed?); rebuild it with --replace"
                )
            self._write_eval_file(name, eval_id, data, record)
            rewritten = True
        if rewritten:
            self.refresh_views()

    def _readable_rows(self, path: str) -> int | None:
        try:
            return self.store.parquet_file(path).metadata.num_rows if self.store.exists(path) else None
        except (OSError, ValueError, pa.ArrowException, WarehouseError):  # unreadable: the file is written again
            return None

    def _remove_other_eval_data(self, eval_id: str) -> None:
        """Remove the files of other evaluation sets (their surprisal too) and derived versions not cataloged."""
        for table in ("eval_tokens", "surprisal"):
            folder = TABLES[table].folder
            for name in self.store.children(folder):
                if name != eval_id:
                    self.store.remove(self.store.path(folder, name))
        cataloged = set(self.query("SELECT location FROM derived_tables")["location"].to_list())
        for table in self.store.children(DERIVED_ROOT):
            for version in self.store.children(f"{DERIVED_ROOT}/{table}"):
                if f"{DERIVED_ROOT}/{table}/{version}" not in cataloged:
                    self.store.remove(self.store.path(DERIVED_ROOT, table, version))

    def require_eval_config(self) -> dict[str, Any]:
        """Evaluation-set settings, or a clear error telling how to build one."""
        config = self.eval_config()
        if config is None:
            raise WarehouseError(f"{self.root}: no evaluation set; run `ldw evalset` first")
        return config

    def vocab_size(self) -> int:
        """Vocabulary size of the evaluation tokenizer (chance = log2 of it)."""
        return int(self.require_eval_config()["vocab_size"])

    def token_count(self) -> int:
        """Number of evaluation tokens (token_idx runs 0..N-1)."""
        return int(self.query("SELECT n_tokens FROM eval_sets")["n_tokens"][0])

    def eval_tokens(self) -> pl.DataFrame:
        """The tokens in context, ordered by token_idx."""
        return self.query("SELECT * FROM eval_tokens ORDER BY token_idx")

    def eval_sequences(self) -> pl.DataFrame:
        """The evaluation sequences, ordered by seq_id."""
        return self.query("SELECT * FROM eval_sequences ORDER BY seq_id")

    def eval_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sequences as an int64 matrix [S, L] plus each token's (seq_id, position)."""
        seqs = self.eval_sequences()
        ids = np.array(seqs["input_ids"].to_list(), dtype=np.int64)
        tokens = self.query("SELECT seq_id, position FROM eval_tokens ORDER BY token_idx")
        return ids, tokens["seq_id"].to_numpy().copy(), tokens["position"].to_numpy().copy()
