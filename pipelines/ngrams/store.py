"""``ldw ngrams``: count a reference corpus and store every evaluation token's n-gram predictors.

The corpus is read and tokenized in pieces (``ldw.corpus``) and streamed into
the counter, so only the counts (not the corpus or its tokens) are held in
memory: memory grows with the number of distinct n-grams, not with the corpus.
Which corpus and how it is cut into counted windows: :mod:`ldw.ngrams.reference`;
the predictors: :mod:`ldw.ngrams.features` and :mod:`ldw.ngrams.diversity`.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress, TextColumn, TimeElapsedColumn

from ldw.corpus import CorpusError, Piece, corpus_pieces
from ldw.errors import LdwError, LdwWarning
from ldw.ngrams.config import NgramConfig, NgramResult
from ldw.ngrams.diversity import CONTEXT_TYPES, WINDOW, adjusted_diversity
from ldw.ngrams.features import CLIP_SD, PREDICTORS, TABLE, ZERO_PROBABILITY, raw_features, released_predictors
from ldw.ngrams.reference import (
    DocumentMatcher,
    choose_reference,
    count_reference,
    eval_coverage,
    model_sequences,
    training_windows,
)
from ldw.probe.tokenizing import PieceEncoder, load_tokenizer, tokenizer_fingerprint
from ldw.warehouse import Warehouse
from ldw.warehouse.tables import table_spec

PRUNE_MIN_COUNT = 2
PRUNE_FROM_ORDER = 3


class _Documents:
    """Token ids of the corpus pieces (eos after each document), counting the documents as they pass."""

    def __init__(self, encoder: PieceEncoder, pieces: Iterable[Piece], progress: bool) -> None:
        self.encoder, self.pieces, self.progress = encoder, pieces, progress
        self.count = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        console = Console(stderr=True, quiet=not self.progress)
        columns = (TextColumn("{task.description}"), TextColumn("{task.completed} docs"), TimeElapsedColumn())
        with Progress(*columns, console=console, disable=not self.progress) as bar:
            task = bar.add_task("n-gram counts", total=None)
            for ids, last in self.encoder.encode(self.pieces):
                yield ids
                if last:
                    self.count += 1
                    bar.advance(task)


def _mismatched_cuts_note(corpus: str, encoder: PieceEncoder) -> list[str]:
    """The warning when tokenizing long documents in pieces gave other tokens than the whole text would."""
    if not encoder.mismatched_cuts:
        return []
    return [
        f"{corpus}: {encoder.mismatched_cuts} of {encoder.cuts} cuts in documents longer than the reading "
        "piece were tokenized differently from whole text by this tokenizer"
    ]


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


def _runs_metadata(wh: Warehouse) -> list[dict[str, Any]]:
    """The recorded metadata (the reference trainer's run.json) of every run."""
    return [json.loads(text) if text else {} for text in wh.runs()["metadata"].to_list()]


def _eval_documents(eval_config: dict[str, Any]) -> DocumentMatcher | None:
    """A matcher of the documents the evaluation set was cut from, when its corpus can still be read (else None)."""
    if "corpus" not in eval_config:
        return None
    try:
        split = eval_config.get("split", "all")
        return DocumentMatcher(corpus_pieces(eval_config["corpus"], split, eval_config["heldout_fraction"]))
    except CorpusError:
        return None


def _leak(counted: str, matcher: DocumentMatcher | None) -> tuple[dict[str, Any], list[str]]:
    """How many evaluation documents the counted corpus held, and the warning when it held any.

    The warning names the counted corpus, not the warehouse: it is stored with the table, and a copied
    warehouse must not carry the original's path.
    """
    if matcher is None:
        return {"eval_documents_counted": None, "eval_documents": None}, []
    notes = []
    if matcher.shared:
        notes.append(
            f"{counted}: {matcher.shared} of the {matcher.documents} documents the evaluation set was cut from are in "
            "the counted corpus: the n-gram predictors of their tokens were counted on the evaluation text itself; "
            "count only the training documents (by default the runs' own training split) or build the evaluation "
            "set from held-out documents"
        )
    return {"eval_documents_counted": matcher.shared, "eval_documents": matcher.documents}, notes


def compute_ngram_stats(
    warehouse_path: Path, config: NgramConfig = NgramConfig(), progress: bool = True
) -> NgramResult:
    """Count the reference corpus and store every evaluation token's predictors in ``ngram_stats``.

    The corpus defaults to the documents the runs were trained on
    (:func:`ldw.ngrams.reference.choose_reference`); ``corpus`` is otherwise
    ``"builtin"`` or a text/JSONL/Parquet file (:func:`ldw.corpus.load_documents`).
    The tokenizer defaults to the evaluation set's. An :class:`ldw.LdwWarning`
    says when the counted corpus contains evaluation windows.
    """
    started = time.perf_counter()
    wh = Warehouse.open(Path(warehouse_path))
    tokenizer, tok_path = _reference_tokenizer(wh, config.tokenizer)
    eval_config = wh.require_eval_config()
    prefix, seq_len = eval_config.get("prefix_token_id"), int(eval_config["seq_len"])
    reference = choose_reference(config.corpus, config.split, config.heldout_fraction, _runs_metadata(wh))
    windows, seq_index, position, token_idx = _eval_inputs(wh)
    sequences = model_sequences(windows, prefix)
    matcher = _eval_documents(eval_config)
    pieces = corpus_pieces(reference.corpus, reference.split, reference.heldout_fraction)
    encoder = PieceEncoder(tokenizer)
    docs = _Documents(encoder, matcher.watch(pieces) if matcher is not None else pieces, progress)
    vocab_size = max(len(tokenizer), wh.vocab_size())
    specials = sorted({*tokenizer.all_special_ids, *([] if prefix is None else [prefix])})
    counted = training_windows(docs, seq_len, prefix)
    full, types, raw_div = count_reference(counted, vocab_size, config.max_n, config.chunk_tokens, specials)
    counting_s = time.perf_counter() - started
    if full.n_tokens == 0:
        raise LdwError(f"{reference.corpus}: fewer tokens than one window of {seq_len}; nothing to count")
    coverage = eval_coverage(full, sequences)
    counts = full.pruned(PRUNE_MIN_COUNT, PRUNE_FROM_ORDER) if config.max_n >= PRUNE_FROM_ORDER else full
    diversity = (adjusted_diversity(raw_div, full.unigram, prefix), raw_div)
    raw = raw_features(counts, sequences, seq_index, position + (prefix is not None), diversity, token_idx)
    table, predictors = released_predictors(raw)
    leak, notes = _leak(f"{reference.corpus} ({reference.split})", matcher)
    notes += _mismatched_cuts_note(reference.corpus, encoder)
    params = {
        "corpus": reference.corpus,
        "split": reference.split,
        "heldout_fraction": reference.heldout_fraction if reference.split != "all" else None,
        "reference_source": reference.source,
        "tokenizer_path": str(tok_path.resolve()),
        "max_n": config.max_n,
        "counted_sequences": "the reference documents, each followed by eos, joined into one stream and cut into "
        "windows of seq_len tokens (tail dropped), each led by the evaluation set's prefix token when it has one",
        "seq_len": seq_len,
        "prefix_token_id": prefix,
        "n_documents": docs.count,
        "n_sequences": full.n_sequences,
        "n_tokens_counted": full.n_tokens,
        "distinct_ngrams": [full.distinct(k) for k in range(1, config.max_n + 1)],
        "distinct_ngrams_after_pruning": [counts.distinct(k) for k in range(1, config.max_n + 1)],
        "vocab_size": vocab_size,
        "eos_appended": tokenizer.eos_token_id is not None,
        "start_padding": f"{config.max_n - 1} pad ids (id {vocab_size}, outside the vocabulary) before every counted "
        "and evaluation sequence; pads are context only",
        "pruning": {
            "min_count": PRUNE_MIN_COUNT,
            "orders": list(range(PRUNE_FROM_ORDER, config.max_n + 1)),
            "when": "once, on the final counts",
        },
        "probability": f"MLE over the surviving continuations of the context; p <= {ZERO_PROBABILITY:g} is unseen",
        "backoff": "highest order with a seen probability (plain backoff, no discount)",
        "unseen_unigram": "the lowest seen unigram log2-probability over every position of the evaluation sequences",
        "diversity": {
            "window": WINDOW,
            "context_types": int(types.size),
            "context_types_rule": f"the {CONTEXT_TYPES} most frequent types of the counted corpus, special tokens "
            f"{specials} excluded",
            "adjustment": "raw minus a GAM (25 splines, lambda logspace(-3, 3, 11), GCV) of raw diversity on log10 "
            "unigram frequency over every vocabulary id (unseen ids at the lowest frequency), the prefix token "
            "left out of the fit and given the lowest adjusted value",
        },
        "predictors": list(PREDICTORS),
        "clip_sd": CLIP_SD,
        **predictors,
        **leak,
        "eval_ngram_coverage": coverage,
        "warnings": notes,
    }
    for note in notes:
        warnings.warn(note, LdwWarning, stacklevel=2)
    columns = [name for name in table_spec(TABLE).schema.names if name in table.columns]
    wh.write_derived(TABLE, table.select(columns).to_arrow(), params)
    total_s = time.perf_counter() - started
    return NgramResult(params, table.height, round(counting_s, 2), round(total_s, 2), notes)
