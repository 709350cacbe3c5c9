"""N-gram counting and features against brute-force Python references."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from ldw.corpus import load_documents
from ldw.errors import LdwError
from ldw.ngrams.config import NgramConfig
from ldw.ngrams.counts import NgramCounter, count_ngrams
from ldw.ngrams.features import ngram_features
from ldw.ngrams.store import compute_ngram_stats
from ldw.probe.tokenizing import load_tokenizer
from ldw.train.bpe import train_bpe_tokenizer
from ldw.warehouse import Warehouse


def brute_counts(sequences: list[np.ndarray], max_n: int) -> dict[int, Counter]:
    """Counter of every k-gram inside each sequence, k = 1..max_n."""
    return {
        k: Counter(tuple(int(t) for t in s[i : i + k]) for s in sequences for i in range(len(s) - k + 1))
        for k in range(1, max_n + 1)
    }


def random_corpus(seed: int, n_seq: int, vocab_used: int, scale: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab_used, size=rng.integers(0, 25)) * scale for _ in range(n_seq)]


@pytest.mark.parametrize("vocab_size, scale", [(6, 1), (70_000, 7_000), (1 << 22, 400_000)])
def test_counts_equal_brute_force_for_every_order(vocab_size: int, scale: int) -> None:
    corpus = random_corpus(0, 150, 6, scale)
    expected = brute_counts(corpus, 5)
    counts = count_ngrams(corpus, vocab_size, max_n=5)
    assert counts.n_tokens == sum(len(s) for s in corpus)
    for k in range(1, 6):
        grams, values = counts.ngram_table(k)
        assert {tuple(int(t) for t in g): int(v) for g, v in zip(grams, values, strict=True)} == dict(expected[k])
        assert counts.distinct(k) == len(expected[k])


def test_dense_ids_are_used_where_plain_keys_would_overflow() -> None:
    assert count_ngrams([], 50_000, 5).dense == (False, False, False, True, False)
    assert count_ngrams([], 1 << 22, 5).dense == (False, True, True, True, False)


def test_ngrams_never_cross_sequence_boundaries() -> None:
    counts = count_ngrams([np.array([1, 2]), np.array([3, 4, 5]), np.array([1])], vocab_size=8, max_n=3)
    assert counts.count([2, 3]) == 0
    assert counts.count([1, 2]) == 1 and counts.count([3, 4, 5]) == 1
    assert counts.count([2, 3, 4]) == 0
    assert counts.count([1]) == 2


@pytest.mark.parametrize("chunk_tokens", [1, 7, 50, 10_000])
def test_chunked_counting_equals_one_shot(chunk_tokens: int) -> None:
    corpus = random_corpus(1, 120, 5, 9_000)
    one_shot = count_ngrams(corpus, 60_000, 5, chunk_tokens=10**9)
    chunked = NgramCounter(60_000, 5, chunk_tokens=chunk_tokens)
    for sequence in corpus:
        chunked.add(sequence)
    result = chunked.finish()
    for k in range(1, 6):
        a, b = one_shot.ngram_table(k), result.ngram_table(k)
        order_a, order_b = np.lexsort(a[0].T[::-1]), np.lexsort(b[0].T[::-1])
        assert np.array_equal(a[0][order_a], b[0][order_b])
        assert np.array_equal(a[1][order_a], b[1][order_b])


def test_context_counts_are_sums_over_following_tokens() -> None:
    corpus = random_corpus(2, 100, 4)
    expected = brute_counts(corpus, 4)
    counts = count_ngrams(corpus, 4, 4)
    query = np.array([3, 1, 0, 2, 2, 1, 3])
    gram, context = counts.position_counts(query, np.array([len(query)]))
    for i in range(len(query)):
        for k in range(1, min(i + 1, 4) + 1):
            prefix = tuple(int(t) for t in query[i - k + 1 : i])
            followed = sum(c for g, c in expected[k].items() if g[:-1] == prefix)
            assert context[k - 1, i] == followed
            assert gram[k - 1, i] == expected[k][tuple(int(t) for t in query[i - k + 1 : i + 1])]


BACKOFF_CORPUS = [
    np.array([1, 2, 3, 4, 5]),
    np.array([1, 2, 3, 4, 6]),
    np.array([7, 2, 3, 4, 5]),
    np.array([2, 3, 9]),
    np.array([4, 2, 3]),  # (2, 3) at the end: counted, but never followed by a token
]


def test_backoff_uses_the_highest_seen_order_with_exact_mle() -> None:
    counts = count_ngrams(BACKOFF_CORPUS, vocab_size=12, max_n=5)
    sequences = [np.array([8, 2, 3, 4, 5]), np.array([1, 2, 3, 9]), np.array([5, 11])]
    table = ngram_features(counts, sequences, np.array([0, 1, 1, 2]), np.array([4, 3, 0, 1]))
    rows = table.to_dicts()
    # (8 2 3 4 5) unseen -> 4-gram (2 3 4 5): 2 of the 3 times (2 3 4) is followed by a token.
    assert rows[0]["ngram_order"] == 4
    assert rows[0]["ngram_surprisal"] == pytest.approx(math.log2(3 / 2))
    # (1 2 3 9) unseen -> 3-gram (2 3 9): once among the 4 times (2 3) is followed (not 5 occurrences).
    assert rows[1]["ngram_order"] == 3
    assert rows[1]["ngram_surprisal"] == pytest.approx(2.0)
    # A first token has no context: unigram MLE, 4 ones among 21 tokens.
    assert rows[2]["ngram_order"] == 1
    assert rows[2]["ngram_surprisal"] == pytest.approx(math.log2(21 / 2))
    assert rows[2]["log2_unigram_freq"] == pytest.approx(math.log2(2 / 21))
    # Token 11 never occurs: floored at the rarest seen token's probability (count 1 of 21).
    assert rows[3]["ngram_order"] == 0 and rows[3]["unigram_count"] == 0
    assert rows[3]["ngram_surprisal"] == pytest.approx(math.log2(21))
    assert rows[3]["context_logprob"] == pytest.approx(math.log2(2 / 21))


def brute_features(corpus: list[np.ndarray], sequences: list[np.ndarray], seq_id, position, max_n: int) -> dict:
    """The module's definitions, one token at a time in plain Python."""
    grams = brute_counts(corpus, max_n)
    total = sum(grams[1].values())
    floor = min(grams[1].values()) / total

    def unigram_p(t: int) -> float:
        return grams[1][(t,)] / total if grams[1][(t,)] else floor

    out = {"log2_unigram_freq": [], "ngram_surprisal": [], "context_logprob": [], "log2_context_length": []}
    for s, p in zip(seq_id, position, strict=True):
        seq = [int(t) for t in sequences[s]]
        target = seq[p]
        surprisal = -math.log2(unigram_p(target))
        for k in range(min(p + 1, max_n), 0, -1):
            context = tuple(seq[p - k + 1 : p])
            c = grams[k][context + (target,)]
            if c:
                followed = sum(v for g, v in grams[k].items() if g[:-1] == context)
                surprisal = -math.log2(c / followed)
                break
        out["log2_unigram_freq"].append(math.log2(unigram_p(target)))
        out["ngram_surprisal"].append(surprisal)
        logs = [math.log2(unigram_p(t)) for t in seq[:p]]
        out["context_logprob"].append(sum(logs) / len(logs) if logs else math.nan)
        out["log2_context_length"].append(math.log2(p) if p else math.nan)
    return {k: np.array(v) for k, v in out.items()}


def test_features_equal_brute_force() -> None:
    rng = np.random.default_rng(3)
    corpus = random_corpus(4, 200, 6)
    sequences = [rng.integers(0, 8, size=n) for n in (12, 1, 9, 15)]
    seq_id = np.concatenate([np.full(len(s), i) for i, s in enumerate(sequences)])
    position = np.concatenate([np.arange(len(s)) for s in sequences])
    shuffle = rng.permutation(len(seq_id))
    seq_id, position = seq_id[shuffle], position[shuffle]
    counts = count_ngrams(corpus, 8, 5)
    table = ngram_features(counts, sequences, seq_id, position, token_idx=np.arange(len(seq_id)) + 100)
    expected = brute_features(corpus, sequences, seq_id, position, 5)
    assert table["token_idx"].to_list() == list(range(100, 100 + len(seq_id)))
    for name, values in expected.items():
        np.testing.assert_allclose(table[name].to_numpy(), values, rtol=1e-12, atol=1e-12, equal_nan=True)
    fit = stats.linregress(expected["log2_unigram_freq"], expected["ngram_surprisal"])
    resid = expected["ngram_surprisal"] - (fit.intercept + fit.slope * expected["log2_unigram_freq"])
    np.testing.assert_allclose(table["ngram_surprisal_resid"].to_numpy(), resid, atol=1e-10)


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(LdwError, match="outside the vocabulary"):
        count_ngrams([np.array([1, 9])], vocab_size=5)
    with pytest.raises(LdwError, match="1-D array of integer"):
        count_ngrams([np.array([1.5])], vocab_size=5)
    counts = count_ngrams([np.array([1, 2])], vocab_size=5)
    with pytest.raises(LdwError, match="position 3 outside"):
        ngram_features(counts, [np.array([1, 2])], np.array([0]), np.array([3]))
    with pytest.raises(LdwError, match="non-empty corpus"):
        ngram_features(count_ngrams([], 5), [np.array([1])], np.array([0]), np.array([0]))


def test_compute_ngram_stats_writes_one_row_per_eval_token(ingested_warehouse: Path, tmp_path: Path) -> None:
    wh = Warehouse.open(ingested_warehouse)
    corpus = tmp_path / "ref.txt"
    corpus.write_text("\n\n".join(load_documents("builtin")[:40]), encoding="utf-8")
    summary = compute_ngram_stats(ingested_warehouse, NgramConfig(corpus=str(corpus), max_n=5), progress=False)
    stored = wh.query("SELECT * FROM ngram_stats ORDER BY token_idx")
    tokens = wh.eval_tokens()
    assert stored["token_idx"].to_list() == tokens["token_idx"].to_list()
    params = wh.derived_params("ngram_stats")
    assert params["corpus"] == str(corpus) and params["max_n"] == 5
    tokenizer = load_tokenizer(Path(wh.eval_config()["tokenizer_path"]))
    docs = [
        tokenizer(d, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        for d in load_documents(str(corpus))
    ]
    assert params["n_tokens_counted"] == summary.n_tokens_counted == sum(len(d) for d in docs)
    unigrams = Counter(t for d in docs for t in d)
    expected = [unigrams[int(t)] for t in tokens["token_id"]]
    assert stored["unigram_count"].to_list() == expected
    assert stored.select(pl.col("ngram_surprisal").is_finite().all()).item()


def test_a_different_tokenizer_is_refused(ingested_warehouse: Path, tmp_path: Path) -> None:
    train_bpe_tokenizer(load_documents("builtin")[:20], 300, tmp_path / "other")
    with pytest.raises(LdwError, match="differs from the one the evaluation set was built with"):
        compute_ngram_stats(ingested_warehouse, NgramConfig(tokenizer=tmp_path / "other"), progress=False)
