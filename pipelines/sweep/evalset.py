"""Build the evaluation set: fixed-length sequences and the tokens in context to score.

Documents are tokenized, joined with the end-of-text token into one stream
and cut into windows of ``seq_len`` tokens; each window is scored on its own,
so every token's context starts at its window. With a fixed seed every run
of a warehouse is scored on the same tokens.

Memory is bounded by the evaluation set kept, not by the corpus: the corpus
is read and tokenized in pieces (``ldw.corpus``), the token stream is spooled
to an unnamed temporary file beside the warehouse (4 bytes per token, removed
when the command ends, however it ends), and only the chosen windows are read
back. Every setting (the tokenizer, ``--prefix-token-id`` against its
vocabulary) is checked before the warehouse is created or changed.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa

from ldw.corpus import corpus_pieces
from ldw.errors import LdwError, SettingsError
from ldw.probe.tokenizing import PieceEncoder, load_tokenizer, tokenizer_fingerprint
from ldw.sweep.config import EvalSetConfig, EvalSetResult
from ldw.warehouse import Warehouse
from ldw.warehouse.catalog import CATALOG_FILE

TOKEN_DTYPE = np.int32  # the eval tables store int32 token ids
MAX_SET_TOKENS = 2**31 - 1  # eval_sequences is a list<int32> column: 32-bit offsets


class TokenizationWarning(UserWarning):
    """Some long documents were tokenized in pieces whose tokens differ from tokenizing them whole."""


def build_eval_set(warehouse: Path, config: EvalSetConfig, replace: bool = False) -> EvalSetResult:
    """Tokenize the corpus, cut windows, pick positions and store them in the warehouse.

    With ``replace`` a different existing set is replaced (its surprisal is
    dropped); without it a different set is refused and an identical one is
    left as it is (``written`` is then False).
    """
    warehouse = Path(warehouse)
    tok_path = _tokenizer_path(warehouse, config)
    config = EvalSetConfig(**{**asdict(config), "tokenizer_path": str(tok_path)})
    tokenizer = load_tokenizer(tok_path)
    if config.prefix_token_id is not None and config.prefix_token_id >= len(tokenizer):
        raise SettingsError(
            f"--prefix-token-id {config.prefix_token_id} is outside the vocabulary of {tok_path} "
            f"({len(tokenizer)} tokens)"
        )
    _check_runs_tokenizer(warehouse, tok_path, tokenizer_fingerprint(tokenizer))
    rng = np.random.default_rng(config.seed)
    windows = _chosen_windows(warehouse, tokenizer, config, rng)
    seq_ids, positions = _positions(windows.shape, config, rng)
    targets = windows[seq_ids, positions]
    prefix = 1 if config.prefix_token_id is not None else 0
    offsets = np.arange(0, windows.size + 1, config.seq_len, dtype=np.int32)
    sequences = pa.table(
        {
            "seq_id": np.arange(len(windows), dtype=np.int64),
            "input_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(windows.reshape(-1))),
        }
    )
    tokens = pa.table(
        {
            "token_idx": np.arange(len(targets), dtype=np.int64),
            "seq_id": seq_ids.astype(np.int64),
            "position": positions.astype(np.int32),
            "token_id": targets.astype(np.int32),
            "token_text": _token_texts(tokenizer, targets),
            "context_len": (positions + prefix).astype(np.int32),
        }
    )
    wh = Warehouse.create(warehouse)
    written = wh.write_eval_set(
        sequences, tokens, asdict(config), tokenizer_fingerprint(tokenizer), len(tokenizer), replace=replace
    )
    return EvalSetResult(len(windows), len(targets), written, tok_path)


def _tokenizer_path(warehouse: Path, config: EvalSetConfig) -> Path:
    """The tokenizer asked for, else the first ingested run's (read without creating the warehouse)."""
    if config.tokenizer_path:
        return Path(config.tokenizer_path).resolve()
    if (warehouse / CATALOG_FILE).is_file():
        runs = Warehouse.open(warehouse, read_only=True).runs()
        if runs.height:
            return Path(runs["tokenizer_path"][0])
    raise LdwError(f"{warehouse}: no runs ingested and no --tokenizer given; run `ldw ingest` first")


def _spool_folder(warehouse: Path) -> Path:
    """The warehouse folder, or its nearest existing parent while it does not exist yet."""
    folder = warehouse.resolve()
    while not folder.is_dir():
        folder = folder.parent
    return folder


def _chosen_windows(warehouse: Path, tokenizer: Any, config: EvalSetConfig, rng: np.random.Generator) -> np.ndarray:
    """The windows of the token stream the set keeps ([sequences, seq_len]): all, or ``n_sequences`` drawn."""
    encoder = PieceEncoder(tokenizer)
    pieces = corpus_pieces(config.corpus, config.split, config.heldout_fraction)
    with tempfile.TemporaryFile(dir=_spool_folder(warehouse)) as spool:
        n_tokens = _spool_tokens(encoder.encode(pieces), spool)
        if encoder.mismatched_cuts:
            warnings.warn(
                f"{config.corpus}: {encoder.mismatched_cuts} of {encoder.cuts} cuts in documents longer than "
                "the reading piece were tokenized differently from whole text by this tokenizer; "
                "the tokens next to those cuts may differ from tokenizing the documents whole",
                TokenizationWarning,
                stacklevel=2,
            )
        if n_tokens < config.seq_len:
            raise LdwError(
                f"{config.corpus}: evaluation text has {n_tokens} tokens, fewer than one sequence "
                f"of --seq-len {config.seq_len}"
            )
        n_windows = n_tokens // config.seq_len
        kept = min(n_windows, config.n_sequences or n_windows)
        if kept * config.seq_len > MAX_SET_TOKENS:
            raise SettingsError(
                f"{config.corpus}: {kept:,} sequences of {config.seq_len} tokens exceed the {MAX_SET_TOKENS:,} "
                "tokens an evaluation set can hold; choose fewer with --sequences"
            )
        stream = np.memmap(spool, dtype=TOKEN_DTYPE, mode="r", shape=(n_windows, config.seq_len))
        if config.n_sequences is not None and config.n_sequences < n_windows:
            keep = np.sort(rng.choice(n_windows, size=config.n_sequences, replace=False))
            windows = np.array(stream[keep])
        else:
            windows = np.array(stream)
        del stream
    return windows


def _spool_tokens(pieces: Iterable[tuple[np.ndarray, bool]], spool: IO[bytes]) -> int:
    """Write every piece's token ids to ``spool`` as int32; the number of tokens written."""
    total = 0
    for ids, _ in pieces:
        if ids.size and (ids.min() < 0 or ids.max() > np.iinfo(TOKEN_DTYPE).max):
            raise LdwError(f"token id {int(ids.max())} does not fit the evaluation set's int32 token ids")
        spool.write(ids.astype(TOKEN_DTYPE).tobytes())
        total += ids.size
    spool.flush()
    return total


def _check_runs_tokenizer(warehouse: Path, tok_path: Path, fingerprint: str) -> None:
    """Refuse, before anything changes, a tokenizer that differs from the ingested runs' (they could not be scored)."""
    if not (warehouse / CATALOG_FILE).is_file():
        return
    others = Warehouse.open(warehouse, read_only=True).query(
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
    picks = np.sort(np.stack([rng.choice(candidates, size=k, replace=False) for _ in range(n_seq)]), axis=1)
    return np.repeat(np.arange(n_seq), k), picks.reshape(-1)


def _token_texts(tokenizer: Any, targets: np.ndarray) -> pa.Array:
    """The text of each target token, decoding each distinct token once."""
    unique, inverse = np.unique(targets, return_inverse=True)
    texts = pa.array([tokenizer.decode([int(t)]) for t in unique], type=pa.string())
    return texts.take(pa.array(inverse.reshape(-1)))
