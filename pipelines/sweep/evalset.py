"""Build the evaluation set: fixed-length sequences and the tokens in context to score.

Documents are tokenized, joined with the end-of-text token into one stream
and cut into windows of ``seq_len`` tokens; each window is scored on its own,
so every token's context starts at its window. With a fixed seed every run
of a warehouse is scored on the same tokens.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa

from ldw.corpus import corpus_documents
from ldw.errors import LdwError
from ldw.probe.tokenizing import encode_documents, load_tokenizer, tokenizer_fingerprint
from ldw.sweep.config import EvalSetConfig, EvalSetResult
from ldw.warehouse import Warehouse


def build_eval_set(warehouse: Path, config: EvalSetConfig, replace: bool = False) -> EvalSetResult:
    """Tokenize the corpus, cut windows, pick positions and store them in the warehouse.

    With ``replace`` a different existing set is replaced (its surprisal is
    dropped); without it a different set is refused and an identical one is
    left as it is (``written`` is then False).
    """
    wh = Warehouse.create(warehouse)
    tok_path = _tokenizer_path(wh, config)
    config = EvalSetConfig(**{**asdict(config), "tokenizer_path": str(tok_path)})
    tokenizer = load_tokenizer(tok_path)
    _check_runs_tokenizer(wh, tok_path, tokenizer_fingerprint(tokenizer))
    docs = corpus_documents(config.corpus, config.split, config.heldout_fraction)
    parts = list(encode_documents(tokenizer, docs))
    stream = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    if len(stream) < config.seq_len:
        raise LdwError(
            f"{config.corpus}: evaluation text has {len(stream)} tokens, fewer than one sequence "
            f"of --seq-len {config.seq_len}"
        )
    rng = np.random.default_rng(config.seed)
    windows = stream[: len(stream) // config.seq_len * config.seq_len].reshape(-1, config.seq_len)
    if config.n_sequences is not None and config.n_sequences < len(windows):
        keep = np.sort(rng.choice(len(windows), size=config.n_sequences, replace=False))
        windows = windows[keep]
    seq_ids, positions = _positions(windows.shape, config, rng)
    targets = windows[seq_ids, positions]
    texts = _token_texts(tokenizer, targets)
    prefix = 1 if config.prefix_token_id is not None else 0
    sequences = pa.table({"seq_id": np.arange(len(windows)), "input_ids": list(windows.astype(np.int32))})
    tokens = pa.table(
        {
            "token_idx": np.arange(len(targets), dtype=np.int64),
            "seq_id": seq_ids.astype(np.int64),
            "position": positions.astype(np.int32),
            "token_id": targets.astype(np.int32),
            "token_text": texts,
            "context_len": (positions + prefix).astype(np.int32),
        }
    )
    written = wh.write_eval_set(
        sequences, tokens, asdict(config), tokenizer_fingerprint(tokenizer), len(tokenizer), replace=replace
    )
    return EvalSetResult(len(windows), len(targets), written, tok_path)


def _tokenizer_path(wh: Warehouse, config: EvalSetConfig) -> Path:
    if config.tokenizer_path:
        return Path(config.tokenizer_path).resolve()
    runs = wh.runs()
    if runs.height == 0:
        raise LdwError(f"{wh.root}: no runs ingested and no --tokenizer given; run `ldw ingest` first")
    return Path(runs["tokenizer_path"][0])


def _check_runs_tokenizer(wh: Warehouse, tok_path: Path, fingerprint: str) -> None:
    """Refuse, before anything changes, a tokenizer that differs from the ingested runs' (they could not be scored)."""
    others = wh.query(
        "SELECT run_id, tokenizer_path FROM runs WHERE tokenizer_fingerprint IS DISTINCT FROM ? ORDER BY run_id",
        [fingerprint],
    )
    if others.height:
        runs = ", ".join(f"{run_id} ({path})" for run_id, path in others.iter_rows())
        raise LdwError(
            f"{tok_path}: tokenizer differs from that of run(s) {runs}; every run of a warehouse is scored with "
            "the evaluation set's tokenizer: use a new --warehouse for this tokenizer"
        )


def _positions(
    shape: tuple[int, int], config: EvalSetConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    n_seq, seq_len = shape
    first = 0 if config.prefix_token_id is not None else 1
    candidates = np.arange(first, seq_len)
    k = config.positions_per_sequence
    if k is None or k >= len(candidates):
        return np.repeat(np.arange(n_seq), len(candidates)), np.tile(candidates, n_seq)
    if k < 1:
        raise LdwError(f"--positions must be at least 1, not {k}")
    picks = np.sort(np.stack([rng.choice(candidates, size=k, replace=False) for _ in range(n_seq)]), axis=1)
    return np.repeat(np.arange(n_seq), k), picks.reshape(-1)


def _token_texts(tokenizer, targets: np.ndarray) -> list[str]:
    unique = np.unique(targets)
    texts = {int(t): tokenizer.decode([int(t)]) for t in unique}
    return [texts[int(t)] for t in targets]
