"""N-gram predictors of each evaluation token (the ``ngram_stats`` table).

Definitions (docs/methods.md, "N-gram predictors"), all in bits, counts from a
reference corpus (:mod:`ldw.ngrams.counts`):

* ``log2_unigram_freq``: log2(count(w) / corpus tokens) of the target w.
* ``ngram_surprisal``: -log2 P(w | up to max_n-1 preceding tokens of its own
  sequence), MLE ``c(context w) / c(context .)`` with plain backoff: the highest
  order whose n-gram was seen is used (a seen n-gram implies a seen context).
  ``ngram_order`` records that order.
* ``ngram_surprisal_resid``: residual of the OLS fit of ngram_surprisal on
  log2_unigram_freq (with intercept) over all evaluation tokens.
* ``context_logprob``: mean log2 unigram probability of the tokens before the
  target in its sequence (NaN at position 0).
* ``log2_context_length``: log2 of the number of tokens before the target in
  its sequence (NaN at position 0).

A target never seen in the reference corpus (``unigram_count`` 0,
``ngram_order`` 0) gets the smallest nonzero unigram probability, as Chang et
al.'s released code smooths unseen unigrams; unseen context tokens get the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from ldw.errors import LdwError
from ldw.ngrams.counts import NgramCounts

TABLE = "ngram_stats"
PREDICTORS = (
    "log2_unigram_freq",
    "ngram_surprisal",
    "ngram_surprisal_resid",
    "context_logprob",
    "log2_context_length",
)


def _flatten(sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenated tokens, lengths and start offsets of a list of sequences."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    tokens = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences]) if sequences else np.zeros(0, np.int64)
    return tokens, lengths, np.cumsum(lengths) - lengths


def _unigram_log2_prob(counts: NgramCounts, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unigram counts of ``tokens`` and their log2 probabilities, unseen ones floored."""
    known = (tokens >= 0) & (tokens < counts.vocab_size)
    raw = np.where(known, counts.unigram[np.where(known, tokens, 0)], 0)
    floor = counts.unigram[counts.unigram > 0].min()
    return raw, np.log2(np.maximum(raw, floor) / counts.n_tokens)


def _residualize(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Residuals of the OLS fit y ~ 1 + x."""
    if y.size == 0:
        return y.copy()
    design = np.column_stack([np.ones_like(x), x])
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    return y - design @ beta


def ngram_features(
    counts: NgramCounts,
    sequences: list[np.ndarray],
    token_seq_id: np.ndarray,
    token_position: np.ndarray,
    token_idx: np.ndarray | None = None,
) -> pl.DataFrame:
    """N-gram predictors (module docstring) of the tokens ``sequences[seq_id][position]``.

    Rows follow the input order; ``token_idx``, when given, becomes the first column.
    """
    if counts.n_tokens == 0:
        raise LdwError("the reference corpus has no tokens; n-gram statistics need a non-empty corpus")
    seq_id = np.asarray(token_seq_id, dtype=np.int64)
    position = np.asarray(token_position, dtype=np.int64)
    if seq_id.shape != position.shape or seq_id.ndim != 1:
        raise LdwError(
            f"token_seq_id {seq_id.shape} and token_position {position.shape} must be equal-length 1-D arrays"
        )
    tokens, lengths, starts = _flatten(sequences)
    if seq_id.size and (seq_id.min() < 0 or seq_id.max() >= len(sequences)):
        raise LdwError(f"a token's seq_id is outside the {len(sequences)} evaluation sequences")
    if seq_id.size and (np.any(position < 0) or np.any(position >= lengths[seq_id])):
        bad = int(np.flatnonzero((position < 0) | (position >= lengths[seq_id]))[0])
        raise LdwError(f"token {bad}: position {position[bad]} outside its sequence of {lengths[seq_id[bad]]} tokens")
    flat = starts[seq_id] + position
    gram, context = counts.position_counts(tokens, lengths)
    gram, context = gram[:, flat], context[:, flat]
    seen = gram > 0
    order = np.where(seen.any(axis=0), counts.max_n - np.argmax(seen[::-1], axis=0), 0)
    pick = np.maximum(order - 1, 0)
    columns = np.arange(flat.size)
    unigram_count, log2_prob = _unigram_log2_prob(counts, tokens)
    with np.errstate(divide="ignore", invalid="ignore"):
        surprisal = np.where(order > 0, np.log2(context[pick, columns] / gram[pick, columns]), -log2_prob[flat])
        prefix_sum = np.concatenate([[0.0], np.cumsum(log2_prob)])
        context_logprob = np.where(position > 0, (prefix_sum[flat] - prefix_sum[starts[seq_id]]) / position, np.nan)
        log2_context_length = np.where(position > 0, np.log2(position), np.nan)
    data: dict[str, Any] = {} if token_idx is None else {"token_idx": np.asarray(token_idx, dtype=np.int64)}
    data.update(
        {
            "unigram_count": unigram_count[flat],
            "log2_unigram_freq": log2_prob[flat],
            "ngram_order": order.astype(np.int8),
            "ngram_surprisal": surprisal,
            "ngram_surprisal_resid": _residualize(surprisal, log2_prob[flat]),
            "context_logprob": context_logprob,
            "log2_context_length": log2_context_length,
        }
    )
    return pl.DataFrame(data)
