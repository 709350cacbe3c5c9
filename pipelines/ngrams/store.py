"""``ldw ngrams``: count a reference corpus and store every evaluation token's n-gram predictors.

The corpus is read and tokenized in pieces (``ldw.corpus``) and streamed into
the counter a document at a time, so only the counts (not the corpus or its
tokens) are held in memory: memory grows with the number of distinct n-grams,
not with the corpus. A document longer than ``chunk_tokens`` tokens is counted
as consecutive sequences of at most that many tokens (the n-grams spanning such
a cut, at most ``max_n - 1`` per cut, are not counted; a warning says how many
documents were cut). The predictors are defined in :mod:`ldw.ngrams.features`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress, TextColumn, TimeElapsedColumn

from ldw.corpus import Piece, corpus_pieces
from ldw.errors import LdwError
from ldw.ngrams.config import NgramConfig, NgramResult
from ldw.ngrams.counts import NgramCounter
from ldw.ngrams.features import TABLE, ngram_features
from ldw.probe.tokenizing import PieceEncoder, load_tokenizer, tokenizer_fingerprint
from ldw.warehouse import Warehouse


class NgramCorpusWarning(UserWarning):
    """Documents of the reference corpus were counted in parts, or tokenized in pieces that differ from whole."""


def _tokenized_documents(
    encoder: PieceEncoder, pieces: Iterable[Piece], max_tokens: int, progress: bool, corpus: str
) -> Iterator[np.ndarray]:
    """Token ids of each document followed by eos; a longer document than ``max_tokens`` in parts of that size."""
    console = Console(stderr=True, quiet=not progress)
    columns = (TextColumn("{task.description}"), TextColumn("{task.completed} docs"), TimeElapsedColumn())
    cut_documents = 0
    parts: list[np.ndarray] = []
    held, cut = 0, False
    with Progress(*columns, console=console, disable=not progress) as bar:
        task = bar.add_task("n-gram counts", total=None)
        for ids, last in encoder.encode(pieces):
            parts.append(ids)
            held += ids.size
            if held > max_tokens:
                tokens = np.concatenate(parts)
                whole = tokens.size // max_tokens * max_tokens
                yield from np.split(tokens[:whole], whole // max_tokens)
                parts, held, cut = [tokens[whole:].copy()], tokens.size - whole, True  # free the counted ones
            if last:
                yield np.concatenate(parts)
                cut_documents += cut
                parts, held, cut = [], 0, False
                bar.advance(task)
    _warn_about_cuts(corpus, encoder, cut_documents, max_tokens)


def _warn_about_cuts(corpus: str, encoder: PieceEncoder, cut_documents: int, max_tokens: int) -> None:
    """Say how many documents were counted in parts, and where tokenizing in pieces differed from whole."""
    if cut_documents:
        warnings.warn(
            f"{corpus}: {cut_documents} documents longer than {max_tokens:,} tokens were counted in parts of "
            "that many tokens; n-grams across the cuts are not counted",
            NgramCorpusWarning,
            stacklevel=3,
        )
    if encoder.mismatched_cuts:
        warnings.warn(
            f"{corpus}: {encoder.mismatched_cuts} of {encoder.cuts} cuts in documents longer than the reading "
            "piece were tokenized differently from whole text by this tokenizer",
            NgramCorpusWarning,
            stacklevel=3,
        )


def _eval_inputs(wh: Warehouse) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Evaluation sequences (indexed 0..S-1) and each token's (index, position, token_idx)."""
    seqs = wh.eval_sequences()
    tokens = wh.eval_tokens()
    if seqs.height == 0 or tokens.height == 0:
        raise LdwError(f"{wh.root}: the evaluation set is empty; run `ldw evalset` first")
    seq_ids = seqs["seq_id"].to_numpy()
    flat = seqs["input_ids"].explode().drop_nulls().to_numpy().astype(np.int64)
    lengths = seqs["input_ids"].list.len().to_numpy().astype(np.int64)
    sequences = np.split(flat, np.cumsum(lengths)[:-1])
    index = np.searchsorted(seq_ids, tokens["seq_id"].to_numpy())
    index = np.minimum(index, len(seq_ids) - 1)
    if np.any(seq_ids[index] != tokens["seq_id"].to_numpy()):
        raise LdwError(f"{wh.root}: eval_tokens names a seq_id missing from eval_sequences")
    position = tokens["position"].to_numpy().astype(np.int64)
    inside = (position >= 0) & (position < lengths[index])
    flat_pos = (np.cumsum(lengths) - lengths)[index] + np.where(inside, position, 0)
    if not inside.all() or np.any(flat[flat_pos] != tokens["token_id"].to_numpy()):
        raise LdwError(f"{wh.root}: eval_tokens disagrees with eval_sequences (token_id at seq_id/position)")
    return sequences, index, position, tokens["token_idx"].to_numpy()


def _reference_tokenizer(wh: Warehouse, tokenizer_path: Path | None) -> tuple[Any, Path]:
    """The tokenizer to count with; it must tokenize exactly like the evaluation set's."""
    config = wh.require_eval_config()
    path = Path(tokenizer_path) if tokenizer_path is not None else Path(config["tokenizer_path"])
    tokenizer = load_tokenizer(path)
    if tokenizer_fingerprint(tokenizer) != config["tokenizer_fingerprint"]:
        raise LdwError(f"{path}: tokenizer differs from the one the evaluation set was built with")
    return tokenizer, path


def compute_ngram_stats(
    warehouse_path: Path, config: NgramConfig = NgramConfig(), progress: bool = True
) -> NgramResult:
    """Count n-grams of a reference corpus and store every evaluation token's predictors.

    ``corpus`` is ``"builtin"`` or a text/JSONL/Parquet file (documents as in
    :func:`ldw.corpus.load_documents`), optionally only its ``split``
    ("train" = the documents the reference trainer trained on); each document
    plus eos is one sequence. The tokenizer defaults to the evaluation set's.
    Writes the derived table ``ngram_stats`` and returns its parameters plus timings.
    """
    corpus, split, heldout_fraction, max_n = config.corpus, config.split, config.heldout_fraction, config.max_n
    tokenizer_path, chunk_tokens = config.tokenizer, config.chunk_tokens
    started = time.perf_counter()
    wh = Warehouse.open(Path(warehouse_path))
    tokenizer, tok_path = _reference_tokenizer(wh, tokenizer_path)
    sequences, seq_index, position, token_idx = _eval_inputs(wh)
    pieces = corpus_pieces(corpus, split, heldout_fraction)
    vocab_size = max(len(tokenizer), wh.vocab_size())
    counter = NgramCounter(vocab_size, max_n, chunk_tokens)
    counter.update(_tokenized_documents(PieceEncoder(tokenizer), pieces, chunk_tokens, progress, corpus))
    counts = counter.finish()
    counted = time.perf_counter()
    features = ngram_features(counts, sequences, seq_index, position, token_idx)
    params = {
        "corpus": corpus,
        "split": split,
        "heldout_fraction": heldout_fraction if split != "all" else None,
        "tokenizer_path": str(tok_path.resolve()),
        "max_n": max_n,
        "n_tokens_counted": counts.n_tokens,
        "n_documents": counts.n_sequences,
        "distinct_ngrams": [counts.distinct(k) for k in range(1, max_n + 1)],
        "vocab_size": vocab_size,
        "eos_appended": tokenizer.eos_token_id is not None,
        "backoff": "highest order with a nonzero count (plain backoff, no discount)",
        "unseen_unigram": "smallest nonzero unigram probability",
    }
    wh.write_derived(TABLE, features.to_arrow(), params)
    return NgramResult(params, features.height, round(counted - started, 2), round(time.perf_counter() - started, 2))
