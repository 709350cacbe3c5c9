"""N-gram and context predictors of each evaluation token (the ``ngram_stats`` table), as Chang et al. release them.

All logarithms base 2; counts from the reference corpus (:mod:`ldw.ngrams.counts`,
start-padded, 3- to 5-grams seen once pruned); each evaluation sequence is read
as the model reads it (prefix token first when the evaluation set has one) and
padded at its start like the counted sequences.

* ``P_k(w | c)``: maximum likelihood ``c(c w) / sum of the counts of c's
  surviving continuations``; a probability of at most 1e-8 counts as unseen
  (the released ``np.isclose(p, 0)``).
* Backoff: at each position, the highest order whose probability is seen
  (plain backoff, no discount); ``ngram_order`` records it. Where not even the
  unigram is seen, the lowest seen unigram log-probability over every position
  of the evaluation sequences fills in (``ngram_order`` 0).
* ``log2_unigram_freq``: the target's backed-off unigram log-probability.
* ``ngram_log2prob``: the target's backed-off ``max_n``-gram log-probability.
* ``context_logprob``: mean backed-off unigram log-probability of every token
  before the target (the prefix token included).
* ``log2_context_length``: log2 of the number of tokens before the target.
* ``contextual_diversity`` (:mod:`ldw.ngrams.diversity`), ``contextual_div_raw``.

:func:`released_predictors` then makes the regression predictors: the n-gram
log-probability is replaced by its residual on the unigram log-probability
(OLS with intercept, ``ngram_log2prob_resid``), and each of the five
:data:`PREDICTORS` is clipped to mean +- 5 SD (population SD, computed before
clipping), in that order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import statsmodels.api as sm

from ldw.errors import LdwError
from ldw.ngrams.counts import NgramCounts

TABLE = "ngram_stats"
ZERO_PROBABILITY = 1e-8
CLIP_SD = 5.0
PREDICTORS = (
    "log2_unigram_freq",
    "ngram_log2prob_resid",
    "log2_context_length",
    "context_logprob",
    "contextual_diversity",
)


def backoff_log2prob(counts: NgramCounts, tokens: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backed-off log2 probability of every token of concatenated sequences, [max_n, n], and the order used.

    Row ``k - 1`` is the k-gram estimate backed off to lower orders (row 0: the
    unigram, filled where unseen). The order array belongs to the last row.
    """
    gram, context = counts.position_counts(tokens, lengths)
    with np.errstate(divide="ignore", invalid="ignore"):
        prob = gram / context
    seen = (gram > 0) & (prob > ZERO_PROBABILITY)
    log2p = np.where(seen, np.log2(np.where(seen, prob, 1.0)), np.nan)
    if not seen[0].any():
        raise LdwError("no evaluation token occurs in the reference corpus; n-gram statistics need an overlap")
    fill = np.nanmin(log2p[0])
    order = np.where(seen[0], 1, 0)
    log2p[0] = np.where(seen[0], log2p[0], fill)
    for k in range(2, counts.max_n + 1):
        order = np.where(seen[k - 1], k, order)
        log2p[k - 1] = np.where(seen[k - 1], log2p[k - 1], log2p[k - 2])
    return log2p, order


def raw_features(
    counts: NgramCounts,
    sequences: list[np.ndarray],
    token_seq: np.ndarray,
    token_position: np.ndarray,
    diversity: tuple[np.ndarray, np.ndarray] | None = None,
    token_idx: np.ndarray | None = None,
) -> pl.DataFrame:
    """The predictors before residualizing and clipping, for tokens ``sequences[seq][position]``.

    ``sequences`` are read as the model reads them (prefix token included);
    ``diversity`` is (adjusted, raw) per type id. Rows follow the input order;
    ``token_idx``, when given, becomes the first column.
    """
    if counts.n_tokens == 0:
        raise LdwError("the reference corpus has no tokens; n-gram statistics need a non-empty corpus")
    seq = np.asarray(token_seq, dtype=np.int64)
    position = np.asarray(token_position, dtype=np.int64)
    if seq.shape != position.shape or seq.ndim != 1:
        raise LdwError(f"token_seq {seq.shape} and token_position {position.shape} must be equal-length 1-D arrays")
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    if seq.size and (seq.min() < 0 or seq.max() >= len(sequences)):
        raise LdwError(f"a token's sequence is outside the {len(sequences)} evaluation sequences")
    if seq.size and (np.any(position < 1) or np.any(position >= lengths[seq])):
        bad = int(np.flatnonzero((position < 1) | (position >= lengths[seq]))[0])
        raise LdwError(f"token {bad}: position {position[bad]} has no context or lies outside its sequence")
    tokens = np.concatenate(sequences).astype(np.int64) if sequences else np.zeros(0, np.int64)
    starts = np.cumsum(lengths) - lengths
    flat = starts[seq] + position
    log2p, order = backoff_log2prob(counts, tokens, lengths)
    prefix_sum = np.concatenate([[0.0], np.cumsum(log2p[0])])
    targets = tokens[flat]
    known = targets < len(counts.unigram)
    data: dict[str, Any] = {} if token_idx is None else {"token_idx": np.asarray(token_idx, dtype=np.int64)}
    data.update(
        {
            "unigram_count": np.where(known, counts.unigram[np.where(known, targets, 0)], 0),
            "ngram_order": order[flat].astype(np.int8),
            "ngram_log2prob": log2p[-1, flat],
            "log2_unigram_freq": log2p[0, flat],
            "log2_context_length": np.log2(position.astype(np.float64)),
            "context_logprob": (prefix_sum[flat] - prefix_sum[starts[seq]]) / position,
        }
    )
    if diversity is not None:
        adjusted, raw = diversity
        inside = targets < len(adjusted)
        data["contextual_diversity"] = np.where(inside, adjusted[np.where(inside, targets, 0)], np.nan)
        data["contextual_div_raw"] = np.where(inside, raw[np.where(inside, targets, 0)], 0)
    return pl.DataFrame(data)


def released_predictors(raw: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Residualize the n-gram log-probability on the unigram one, then clip the predictors at mean +- 5 SD.

    Returns the table (``ngram_log2prob_resid`` added) and what was done: the
    residualizing fit and, per predictor, mean, SD, bounds and tokens clipped.
    """
    unigram, ngram = raw["log2_unigram_freq"].to_numpy(), raw["ngram_log2prob"].to_numpy()
    fit = sm.OLS(ngram, sm.add_constant(unigram, has_constant="add")).fit()
    table = raw.with_columns(pl.Series("ngram_log2prob_resid", ngram - fit.predict()))
    clipping: dict[str, Any] = {}
    for name in [p for p in PREDICTORS if p in table.columns]:
        values = table[name].to_numpy()
        mean, sd = float(np.mean(values)), float(np.std(values))
        low, high = mean - CLIP_SD * sd, mean + CLIP_SD * sd
        clipping[name] = {"mean": mean, "sd": sd, "low": low, "high": high}
        clipping[name]["clipped"] = int(np.sum((values < low) | (values > high)))
        table = table.with_columns(pl.Series(name, np.clip(values, low, high)))
    residualizing = {"intercept": float(fit.params[0]), "slope": float(fit.params[1])}
    return table, {"ngram_residualized_on_unigram": residualizing, "clipping": clipping}
