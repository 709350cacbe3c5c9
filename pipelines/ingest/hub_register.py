"""Register a Hugging Face Hub repository's checkpoint branches as one run, downloading no weights."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ldw.errors import LdwError
from ldw.ingest.config import IngestConfig, IngestResult
from ldw.ingest.hub import (
    CONFIG,
    HUB_PREFIX,
    HUB_SOURCE_KIND,
    HubCheckpoint,
    download_tokenizer,
    hub_error,
    list_checkpoints,
)
from ldw.ingest.register import check_tokenizer, slugify
from ldw.ingest.training_logs import load_training_log
from ldw.probe.tokenizing import load_tokenizer, tokenizer_fingerprint
from ldw.warehouse import CheckpointRecord, RunRecord, Warehouse

_SEED = re.compile(r"(?:^|[-_])seed[-_]?(\d+)$", re.IGNORECASE)


def ingest_hub_repo(wh: Warehouse, repo_id: str, config: IngestConfig) -> IngestResult:
    """List the chosen branches of ``repo_id``, fingerprint the tokenizer of the last one, register the run.

    Duplicate weights are found from the LFS sha256 the Hub lists for every weight file. Where each
    checkpoint lives (commit, files and their sha256) goes into the run's metadata under ``hub``,
    merged with what an earlier ingest of the same repository registered. A training log given with
    ``--log`` (a local file) is stored as the run's traces.
    """
    checkpoints, warnings = list_checkpoints(repo_id, config.revisions, config.every)
    run_name = config.name or repo_id.split("/", 1)[1]
    run_id = slugify(run_name)
    last = checkpoints[-1]
    folder = download_tokenizer(repo_id, last.commit) if config.tokenizer is None else _download_config(last)
    tok_path = Path(config.tokenizer).resolve() if config.tokenizer else folder
    fingerprint = tokenizer_fingerprint(load_tokenizer(tok_path))
    check_tokenizer(wh, run_id, tok_path, fingerprint)
    log = load_training_log(Path(config.log)) if config.log is not None else None

    records, first_with, duplicates = [], {}, 0
    for ck in checkpoints:
        digest = ck.content_hash()
        duplicate_of = first_with.get(digest) if digest else None
        if duplicate_of is not None:
            duplicates += 1
            warnings.append(f"{ck.path}: identical weights to step {duplicate_of} (same LFS sha256)")
        elif digest:
            first_with[digest] = ck.step
        tokens = ck.tokens_seen
        if tokens is None and config.tokens_per_step:
            tokens = ck.step * config.tokens_per_step
        records.append(CheckpointRecord(ck.step, tokens, ck.path, digest, duplicate_of))

    revisions = _registered_revisions(wh, run_id)
    revisions.update({ck.revision: {"commit": ck.commit, "files": ck.files} for ck in checkpoints})
    model_config = json.loads((folder / CONFIG).read_text())
    seed = _SEED.search(repo_id.split("/", 1)[1])
    wh.upsert_run(
        RunRecord(
            run_id=run_id,
            name=run_name,
            seed=int(seed.group(1)) if seed else None,
            source=f"{HUB_PREFIX}{repo_id}",
            source_kind=HUB_SOURCE_KIND,
            arch=model_config.get("model_type"),
            model_config=model_config,
            tokenizer_path=str(tok_path),
            tokenizer_fingerprint=fingerprint,
            tokens_per_step=config.tokens_per_step,
            metadata={"hub": {"repo_id": repo_id, "revisions": revisions}},
        )
    )
    n_new = wh.upsert_checkpoints(run_id, records)
    n_trace_rows = 0
    if log is not None:
        n_trace_rows = wh.write_traces(run_id, log.frame)
        warnings.extend(log.notes())
    source = f"{HUB_PREFIX}{repo_id}"
    return IngestResult(run_id, source, HUB_SOURCE_KIND, len(records), n_new, duplicates, n_trace_rows, warnings)


def _download_config(ck: HubCheckpoint) -> Path:
    """Only config.json of a checkpoint (when the tokenizer comes from --tokenizer); the folder holding it."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(ck.repo_id, CONFIG, revision=ck.commit)).parent
    except Exception as exc:
        raise LdwError(hub_error(exc, ck.path)) from None


def _registered_revisions(wh: Warehouse, run_id: str) -> dict:
    """The hub revisions an earlier ingest registered for ``run_id`` (empty for a new run)."""
    rows = wh.query("SELECT source_kind, metadata FROM runs WHERE run_id = ?", [run_id])
    if rows.height == 0 or rows["source_kind"][0] != HUB_SOURCE_KIND:
        return {}
    return json.loads(rows["metadata"][0] or "{}").get("hub", {}).get("revisions", {})
