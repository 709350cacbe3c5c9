"""Exact streaming n-gram counting against brute-force Python counts (features: test_ngram_features.py)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from ldw.errors import LdwError
from ldw.ngrams.counts import NgramCounter, count_ngrams


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


def released_counts(lines: list[list[int]], n: int, pad: int, prune_below: int | None) -> dict:
    """annotator.get_ngram_surprisals' counting of order n: {(context, target): count}, pruned at the end."""
    counts: dict = Counter()
    for line in lines:
        current = [pad] * n
        for token in line:
            current = current[1:] + [token]
            counts[(tuple(current[:-1]), current[-1])] += 1
    if prune_below is not None:
        counts = Counter({key: c for key, c in counts.items() if c >= prune_below})
    return dict(counts)


@pytest.mark.parametrize("vocab_size, scale", [(9, 1), (50_000, 5_000)])
def test_start_padded_pruned_counts_equal_the_released_counting(vocab_size: int, scale: int) -> None:
    lines = [list(s) for s in random_corpus(5, 120, 6, scale) if len(s)]
    counts = count_ngrams([np.array(s) for s in lines], vocab_size, 5, start_pad=True)
    assert counts.pad_id == vocab_size and counts.n_tokens == sum(len(s) for s in lines)
    pruned = counts.pruned(2, 3)
    for n in range(1, 6):
        for table, prune in ((counts, None), (pruned, 2 if n >= 3 else None)):
            grams, values = table.ngram_table(n)
            ours = {(tuple(int(t) for t in g[:-1]), int(g[-1])): int(v) for g, v in zip(grams, values, strict=True)}
            assert ours == released_counts(lines, n, vocab_size, prune), f"order {n}"
    assert pruned.distinct(5) < counts.distinct(5) and pruned.distinct(2) == counts.distinct(2)


def test_padded_context_counts_sum_the_surviving_continuations() -> None:
    """P(w | c) is renormalized over what survives pruning (the released denominator), pads included."""
    lines = [[9, 1, 2, 3, 1, 2], [9, 1, 2, 4], [9, 3, 1, 2, 3], [9, 5]]
    counts = count_ngrams([np.array(s) for s in lines], 10, 3, start_pad=True).pruned(2, 3)
    gram, context = counts.position_counts(np.array([9, 1, 2, 3]), np.array([4]))
    # (pad, 9) -> 1 twice, 3 once, 5 once; pruning leaves only (pad, 9, 1): P = 2 / 2, where unpruned it is 2 / 4
    assert (gram[2, 1], context[2, 1]) == (2, 2)
    assert (gram[1, 1], context[1, 1]) == (2, 4)  # bigram (9, 1) among the 4 continuations of 9
    assert (gram[0, 0], context[0, 0]) == (4, 17)  # unigram 9 among 17 tokens, no pads
    assert counts.count([10, 10, 9]) == 4 and counts.count([10, 10]) == 0  # a pad is context, never a target
    with pytest.raises(LdwError, match="outside the vocabulary"):
        count_ngrams([np.array([1, 10])], 10, 3, start_pad=True)
