"""Register runs: discover checkpoints, fingerprint the tokenizer, hash weights, load the log."""

from __future__ import annotations

import json
import re
from pathlib import Path

from rich.progress import Progress

from ldw.errors import LdwError, SettingsError
from ldw.ingest.config import IngestConfig, IngestResult
from ldw.ingest.discover import FoundRun, discover_paths, hash_weights
from ldw.ingest.hub import hub_repo
from ldw.ingest.training_logs import find_training_log, load_training_log
from ldw.probe.tokenizing import has_tokenizer, load_tokenizer, tokenizer_fingerprint
from ldw.warehouse import CheckpointRecord, RunRecord, Warehouse


def slugify(name: str) -> str:
    """A run id safe for file names: letters, digits, '.', '_' and '-'."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return slug or "run"


def find_tokenizer(run: FoundRun) -> Path:
    """The tokenizer folder of a run: ``tokenizer/``, the run folder, or a checkpoint folder."""
    candidates = [run.root / "tokenizer", run.root]
    candidates += [c.path for c in reversed(run.checkpoints)]
    for folder in candidates:
        if folder.is_dir() and has_tokenizer(folder):
            return folder
    raise LdwError(f"{run.root}: no tokenizer found in the run or its checkpoints; pass --tokenizer DIR")


def ingest_paths(
    warehouse: Path, paths: list[Path | str], config: IngestConfig = IngestConfig(), progress: bool = True
) -> list[IngestResult]:
    """Register every run found under ``paths`` in the warehouse (created if needed).

    A path ``hf:ORG/NAME`` is a Hugging Face Hub repository whose branches are the checkpoints
    (see :mod:`ldw.ingest.hub`); anything else is a folder on disk. Re-ingesting a run adds new
    checkpoints and keeps finished sweeps of unchanged ones. All runs must share the evaluation
    set's tokenizer.
    """
    repos = [repo for p in paths if (repo := hub_repo(str(p))) is not None]
    local = [Path(p) for p in paths if hub_repo(str(p)) is None]
    if (config.revisions is not None or config.every is not None) and not repos:
        raise SettingsError("--revisions and --every choose branches of hf:ORG/NAME repositories; no such path given")
    runs = discover_paths(local) if local else []
    found = len(runs) + len(repos)
    for option, value in (("--name", config.name), ("--log", config.log)):
        if value is not None and found > 1:
            raise SettingsError(f"{option} given but {found} runs were found; ingest them one at a time")
    wh = Warehouse.create(warehouse)
    results = [_ingest_run(wh, run, config, progress) for run in runs]
    if repos:
        from ldw.ingest.hub_register import ingest_hub_repo

        results += [ingest_hub_repo(wh, repo, config) for repo in repos]
    return results


def _ingest_run(wh: Warehouse, run: FoundRun, config: IngestConfig, progress: bool) -> IngestResult:
    run_name = config.name or run.root.name
    run_id = slugify(run_name)
    tok_path = Path(config.tokenizer).resolve() if config.tokenizer else find_tokenizer(run)
    fingerprint = tokenizer_fingerprint(load_tokenizer(tok_path))
    check_tokenizer(wh, run_id, tok_path, fingerprint)
    log_path = Path(config.log) if config.log is not None else find_training_log(run.root)
    log = load_training_log(log_path) if log_path is not None else None
    tokens_per_step = config.tokens_per_step or run.metadata.get("tokens_per_step")
    tokens_by_step = _hf_tokens_seen(run) if run.kind == "hf_trainer" else {}

    records, hashes, duplicates = [], {}, 0
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"hashing {run_id}", total=len(run.checkpoints))
        for ck in run.checkpoints:
            digest = hash_weights(ck.path)
            duplicate_of = hashes.get(digest) if digest else None
            if duplicate_of is not None:
                duplicates += 1
                run.warnings.append(f"{ck.path}: identical weights to step {duplicate_of}")
            elif digest:
                hashes[digest] = ck.step
            tokens = ck.tokens_seen or tokens_by_step.get(ck.step)
            if tokens is None and tokens_per_step:
                tokens = ck.step * int(tokens_per_step)
            records.append(CheckpointRecord(ck.step, tokens, str(ck.path), digest, duplicate_of))
            bar.advance(task)

    model_config = _read_config(run)
    wh.upsert_run(
        RunRecord(
            run_id=run_id,
            name=run_name,
            seed=run.metadata.get("seed"),
            source=str(run.root),
            source_kind=run.kind,
            arch=model_config.get("model_type"),
            model_config=model_config,
            tokenizer_path=str(tok_path),
            tokenizer_fingerprint=fingerprint,
            tokens_per_step=int(tokens_per_step) if tokens_per_step else None,
            metadata=run.metadata,
        )
    )
    n_new = wh.upsert_checkpoints(run_id, records)
    n_trace_rows = 0
    if log is not None:
        n_trace_rows = wh.write_traces(run_id, log.frame)
        run.warnings.extend(log.notes())
    return IngestResult(run_id, run.root, run.kind, len(records), n_new, duplicates, n_trace_rows, run.warnings)


def check_tokenizer(wh: Warehouse, run_id: str, tok_path: Path, fingerprint: str) -> None:
    """Refuse a tokenizer that differs from the other runs' or the evaluation set's, naming both."""
    others = wh.query(
        "SELECT run_id, tokenizer_path FROM runs WHERE run_id <> ? AND tokenizer_fingerprint <> ?",
        [run_id, fingerprint],
    )
    if others.height:
        raise LdwError(
            f"{tok_path}: tokenizer differs from run '{others['run_id'][0]}' "
            f"({others['tokenizer_path'][0]}); runs compared in one warehouse must share a tokenization"
        )
    config = wh.eval_config()
    if config is not None and config["tokenizer_fingerprint"] != fingerprint:
        raise LdwError(
            f"{tok_path}: tokenizer differs from the evaluation set's ({config.get('tokenizer_path')}); "
            "use a new --warehouse for this run"
        )


def _read_config(run: FoundRun) -> dict:
    for ck in reversed(run.checkpoints):
        path = ck.path / "config.json"
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
    return {}


def _hf_tokens_seen(run: FoundRun) -> dict[int, int]:
    """Tokens seen per step from the latest trainer_state.json, when the Trainer counted them."""
    states = [c.path / "trainer_state.json" for c in run.checkpoints if (c.path / "trainer_state.json").is_file()]
    if not states:
        return {}
    try:
        history = json.loads(states[-1].read_text()).get("log_history", [])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LdwError(f"{states[-1]}: invalid trainer_state.json ({exc})") from exc
    return {
        int(h["step"]): int(h["num_input_tokens_seen"]) for h in history if "step" in h and "num_input_tokens_seen" in h
    }
