"""Exact streaming n-gram counts (n = 1..max_n) over token-id sequences.

Encoding. An order-k n-gram (k >= 2) is the pair (identifier of its (k-1)-gram
prefix, last token), packed exactly into one int64 key ``prefix * V + token``.
The identifier of a unigram is its token id. While ``V**(k+1)`` fits in int64,
the identifier of a k-gram is its own key (so keys of order k are the plain
base-V numbers of the k ids); above that, k-grams get dense ids handed out as
new ones appear, bounded by the number of distinct k-grams. Keys never collide
(no hashing) and fit in 64 bits for any vocabulary, as long as the number of
distinct n-grams of one order stays below 2**63 / V.

Counting. Sequences are buffered into chunks of whole sequences; n-grams never
cross a sequence boundary. Per chunk and order, the keys of every position are
built from the previous order's identifiers with numpy, reduced with
``np.unique`` (a plain sort; an argsort only for orders that need dense ids)
and merged into that order's sorted (keys, counts[, ids]) arrays in one linear
pass. Memory is 16-24 bytes per distinct n-gram plus the chunk buffer; it grows
with the number of distinct n-grams, not with the corpus size.

Lookup. Keys of one order are sorted by prefix, so the context count
``sum_w c(prefix w)`` (the MLE denominator) is a range sum over a cumulative
count array.

Start padding (``start_pad=True``, as Chang et al.'s released counts): every
sequence is counted as if ``max_n - 1`` copies of a pad id (one past the
vocabulary) stood before it, so the first tokens are counted in n-grams with
pad contexts, e.g. ``(pad, pad, w0)``; the pad itself is never a target (the
all-pad n-grams are kept with count 0 because longer keys are built on them).
:meth:`NgramCounts.pruned` drops the n-grams of some orders seen fewer than a
minimum number of times; the MLE denominators are then sums over the
surviving continuations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ldw.errors import LdwError

INT64_MAX = np.iinfo(np.int64).max
DEFAULT_CHUNK_TOKENS = 1 << 23
MAX_VOCAB = 1 << 24
EMPTY = np.empty(0, dtype=np.int64)


def _offsets(lengths: np.ndarray) -> np.ndarray:
    """Position of every token inside its own sequence, for concatenated sequences."""
    starts = np.cumsum(lengths) - lengths
    return np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(starts, lengths)


def _dense_orders(vocab_size: int, max_n: int) -> tuple[bool, ...]:
    """For k = 1..max_n: whether k-grams need dense ids (their keys times V would overflow)."""
    return tuple(1 < k < max_n and vocab_size ** (k + 1) > INT64_MAX for k in range(1, max_n + 1))


def _unique_with_inverse(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted distinct keys, the index of each key's distinct value, and counts."""
    perm = np.argsort(keys)
    ordered = keys[perm]
    first = np.empty(ordered.size, dtype=bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    inverse = np.empty(ordered.size, dtype=np.int64)
    inverse[perm] = np.cumsum(first) - 1
    return ordered[starts], inverse, np.diff(np.append(starts, ordered.size))


class _SortedTable:
    """Distinct keys of one order, sorted, with counts and (when dense) ids."""

    def __init__(self, dense: bool) -> None:
        self.dense = dense
        self.keys = EMPTY
        self.counts = EMPTY
        self.ids = EMPTY

    def merge(self, keys: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Add ``counts`` for sorted distinct ``keys``; return each key's dense id (empty unless dense)."""
        n_old = self.keys.size
        if n_old == 0:
            self.keys, self.counts = keys, counts
            if self.dense:
                self.ids = np.arange(keys.size, dtype=np.int64)
            return self.ids.copy()
        pos = np.searchsorted(self.keys, keys)
        found = self.keys[np.minimum(pos, n_old - 1)] == keys
        self.counts[pos[found]] += counts[found]
        new = ~found
        n_new = int(new.sum())
        gid = EMPTY
        if self.dense:
            gid = np.empty(keys.size, dtype=np.int64)
            gid[found] = self.ids[pos[found]]
            gid[new] = np.arange(self.ids.size, self.ids.size + n_new, dtype=np.int64)
        if n_new == 0:
            return gid
        is_new = np.zeros(n_old + n_new, dtype=bool)
        is_new[pos[new] + np.arange(n_new)] = True
        is_old = ~is_new
        parts = [(self.keys, keys[new]), (self.counts, counts[new])]
        if self.dense:
            parts.append((self.ids, gid[new]))
        merged = []
        for old, added in parts:
            out = np.empty(n_old + n_new, dtype=np.int64)
            out[is_new] = added
            out[is_old] = old
            merged.append(out)
        self.keys, self.counts = merged[0], merged[1]
        if self.dense:
            self.ids = merged[2]
        return gid


@dataclass(frozen=True)
class NgramCounts:
    """Final counts: unigram counts per token id plus one sorted table per order >= 2.

    ``keys[k-2]``, ``counts[k-2]``, ``cumulative[k-2]`` (counts prefixed with 0
    and summed) and ``ids[k-2]`` (dense ids, empty unless ``dense[k-1]``)
    describe order k; see the module docstring for the key encoding.
    ``vocab_size`` is the base of the keys: with start padding the pad id
    ``pad_id = vocab_size - 1`` is part of it. ``n_tokens`` counts real tokens.
    """

    vocab_size: int
    max_n: int
    n_tokens: int
    n_sequences: int
    dense: tuple[bool, ...]
    unigram: np.ndarray
    keys: tuple[np.ndarray, ...]
    counts: tuple[np.ndarray, ...]
    cumulative: tuple[np.ndarray, ...]
    ids: tuple[np.ndarray, ...]
    pad_id: int | None = None

    def distinct(self, order: int) -> int:
        """Number of distinct n-grams of ``order`` seen (pad-only placeholders not included)."""
        self._check_order(order)
        if order == 1:
            return int(np.count_nonzero(self.unigram))
        return int(np.count_nonzero(self.counts[order - 2]))

    def pruned(self, min_count: int, from_order: int) -> NgramCounts:
        """These counts without the n-grams of order >= ``from_order`` (>= 2) seen fewer than ``min_count`` times.

        An n-gram's count is at most its prefix's, so no kept n-gram loses the
        prefix its key is built on.
        """
        if from_order < 2:
            raise LdwError(f"pruning starts at order 2 or higher, not {from_order}")
        keys, counts, ids = list(self.keys), list(self.counts), list(self.ids)
        for k in range(from_order, self.max_n + 1):
            keep = (counts[k - 2] >= min_count) | (counts[k - 2] == 0)  # count 0: a pad-only placeholder
            keys[k - 2], counts[k - 2] = keys[k - 2][keep], counts[k - 2][keep]
            if self.dense[k - 1]:
                ids[k - 2] = ids[k - 2][keep]
        return dataclasses.replace(
            self,
            keys=tuple(keys),
            counts=tuple(counts),
            cumulative=tuple(np.concatenate([[0], np.cumsum(c)]) for c in counts),
            ids=tuple(ids),
        )

    def ngram_table(self, order: int) -> tuple[np.ndarray, np.ndarray]:
        """All n-grams of ``order`` as an int64 array [distinct, order] with their counts."""
        self._check_order(order)
        if order == 1:
            seen = np.flatnonzero(self.unigram)
            return seen[:, None].astype(np.int64), self.unigram[seen]
        columns = []
        keys = self.keys[order - 2]
        for k in range(order, 1, -1):
            columns.append(keys % self.vocab_size)
            keys = keys // self.vocab_size
            if self.dense[k - 2]:
                key_by_id = np.empty(int(self.ids[k - 3].max(initial=-1)) + 1, dtype=np.int64)  # pruned: gaps
                key_by_id[self.ids[k - 3]] = self.keys[k - 3]
                keys = key_by_id[keys]
        columns.append(keys)
        seen = self.counts[order - 2] > 0
        return np.stack(columns[::-1], axis=1)[seen], self.counts[order - 2][seen]

    def count(self, ngram: Sequence[int]) -> int:
        """Count of one n-gram (a sequence of 1..max_n token ids); 0 when unseen."""
        ngram = np.asarray(ngram, dtype=np.int64)
        self._check_order(ngram.size)
        gram, _ = self.position_counts(ngram, np.array([ngram.size]))
        return int(gram[ngram.size - 1, -1])

    def position_counts(self, tokens: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Counts for every position of concatenated sequences, for each order k = 1..max_n.

        Returns ``(gram, context)``, both int64 [max_n, len(tokens)]: ``gram[k-1, i]``
        is the count of the k-gram ending at position i and ``context[k-1, i]`` the
        count of its (k-1)-token context followed by any token (the corpus size for
        k = 1). Both are 0 where the k-gram does not fit inside its sequence or its
        context was never seen; token ids outside the vocabulary count as unseen.
        With start padding every sequence is read with the pads before it, as counted.
        """
        tokens = np.asarray(tokens, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        if int(lengths.sum()) != tokens.size or (lengths.size and lengths.min() < 0):
            raise LdwError(f"sequence lengths sum to {int(lengths.sum())}, not {tokens.size} tokens")
        if self.pad_id is None:
            return self._position_counts(tokens, lengths)
        pads = self.max_n - 1
        real = np.arange(tokens.size) + pads * (np.repeat(np.arange(lengths.size), lengths) + 1)
        padded = np.full(tokens.size + pads * lengths.size, self.pad_id, dtype=np.int64)
        padded[real] = tokens
        gram, context = self._position_counts(padded, lengths + pads)
        return gram[:, real], context[:, real]

    def _position_counts(self, tokens: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, vocab = tokens.size, self.vocab_size
        gram = np.zeros((self.max_n, n), dtype=np.int64)
        context = np.zeros((self.max_n, n), dtype=np.int64)
        known = (tokens >= 0) & (tokens < vocab)
        safe = np.where(known, tokens, 0)
        gram[0] = np.where(known, self.unigram[safe], 0)
        context[0] = self.n_tokens
        prefix_of_next = np.where(known, safe, -1)
        offset = _offsets(lengths)
        for k in range(2, self.max_n + 1):
            keys, counts, cumulative, ids = (a[k - 2] for a in (self.keys, self.counts, self.cumulative, self.ids))
            if keys.size == 0:
                break
            idx = np.flatnonzero(offset >= k - 1)
            prefix = prefix_of_next[idx - 1]
            seen = prefix >= 0
            idx, prefix = idx[seen], prefix[seen]
            wanted = prefix * vocab + safe[idx]
            order = np.argsort(wanted)
            idx, prefix, wanted = idx[order], prefix[order], wanted[order]
            lo = np.searchsorted(keys, prefix * vocab)
            hi = np.searchsorted(keys, (prefix + 1) * vocab)
            context[k - 1, idx] = cumulative[hi] - cumulative[lo]
            pos = np.minimum(np.searchsorted(keys, wanted), keys.size - 1)
            hit = known[idx] & (keys[pos] == wanted)
            gram[k - 1, idx[hit]] = counts[pos[hit]]
            prefix_of_next = np.full(n, -1, dtype=np.int64)
            prefix_of_next[idx[hit]] = ids[pos[hit]] if self.dense[k - 1] else wanted[hit]
        return gram, context

    def _check_order(self, order: int) -> None:
        if not 1 <= order <= self.max_n:
            raise LdwError(f"n-gram order {order} outside 1..{self.max_n}")


class NgramCounter:
    """Accumulates n-gram counts from token-id sequences added one at a time."""

    def __init__(
        self, vocab_size: int, max_n: int = 5, chunk_tokens: int = DEFAULT_CHUNK_TOKENS, start_pad: bool = False
    ) -> None:
        """Count orders 1..``max_n`` over ids in [0, ``vocab_size``), every ``chunk_tokens``; see the module doc."""
        if not 1 <= vocab_size <= MAX_VOCAB:
            raise LdwError(f"vocab_size must be in [1, {MAX_VOCAB}], got {vocab_size}")
        if max_n < 1:
            raise LdwError(f"max_n must be at least 1, got {max_n}")
        if chunk_tokens < 1:
            raise LdwError(f"chunk_tokens must be positive, got {chunk_tokens}")
        self.pad_id = vocab_size if start_pad else None
        self.vocab_size = vocab_size + 1 if start_pad else vocab_size
        self.max_n = max_n
        self.chunk_tokens = chunk_tokens
        self.n_tokens = 0
        self.n_sequences = 0
        self._pads = np.full(max_n - 1 if start_pad else 0, vocab_size, dtype=np.int64)
        self._dense = _dense_orders(self.vocab_size, max_n)
        self._unigram = np.zeros(self.vocab_size, dtype=np.int64)
        self._tables = [_SortedTable(self._dense[k - 1]) for k in range(2, max_n + 1)]
        self._buffer: list[np.ndarray] = []
        self._buffered = 0

    def add(self, sequence: Sequence[int] | np.ndarray) -> None:
        """Add one sequence of token ids (n-grams never span two sequences).

        Ids are range-checked when the buffered chunk is counted (at the latest in ``finish``).
        """
        arr = np.asarray(sequence)
        if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise LdwError(f"a sequence must be a 1-D array of integer token ids, got {arr.dtype} of shape {arr.shape}")
        if arr.size == 0:
            return
        if self.pad_id is not None:
            if int(arr.max()) >= self.pad_id:
                raise LdwError(f"token id {int(arr.max())} outside the vocabulary [0, {self.pad_id})")
            arr = np.concatenate([self._pads, arr])
        self._buffer.append(arr.astype(np.int64, copy=False))
        self._buffered += arr.size
        if self._buffered >= self.chunk_tokens:
            self._flush()

    def update(self, sequences: Iterable[Sequence[int] | np.ndarray]) -> None:
        """Add every sequence of an iterable."""
        for sequence in sequences:
            self.add(sequence)

    def finish(self) -> NgramCounts:
        """Count what is still buffered and return the final counts."""
        self._flush()
        counts = [t.counts for t in self._tables]
        unigram = self._unigram.copy()
        if self.pad_id is not None:
            self._zero_pad_only(unigram, counts)
        return NgramCounts(
            vocab_size=self.vocab_size,
            max_n=self.max_n,
            n_tokens=self.n_tokens - self.n_sequences * self._pads.size,
            n_sequences=self.n_sequences,
            dense=self._dense,
            unigram=unigram,
            keys=tuple(t.keys for t in self._tables),
            counts=tuple(counts),
            cumulative=tuple(np.concatenate([[0], np.cumsum(c)]) for c in counts),
            ids=tuple(t.ids for t in self._tables),
            pad_id=self.pad_id,
        )

    def _zero_pad_only(self, unigram: np.ndarray, counts: list[np.ndarray]) -> None:
        """Set the counts of (pad,), (pad, pad), ... to 0: pads are context, never targets."""
        unigram[self.pad_id] = 0
        prefix = self.pad_id
        for k, table in enumerate(self._tables, start=2):
            key = prefix * self.vocab_size + self.pad_id
            pos = int(np.searchsorted(table.keys, key))
            if pos == table.keys.size or table.keys[pos] != key:
                break  # no sequence long enough to hold this many pads before a token
            counts[k - 2] = counts[k - 2].copy()
            counts[k - 2][pos] = 0
            prefix = int(table.ids[pos]) if table.dense else key

    def _flush(self) -> None:
        if not self._buffer:
            return
        lengths = np.array([a.size for a in self._buffer], dtype=np.int64)
        tokens = np.concatenate(self._buffer)
        self._buffer, self._buffered = [], 0
        low, high = int(tokens.min()), int(tokens.max())
        if low < 0 or high >= self.vocab_size:
            raise LdwError(f"token id {low if low < 0 else high} outside the vocabulary [0, {self.vocab_size})")
        self.n_tokens += tokens.size
        self.n_sequences += lengths.size
        self._unigram += np.bincount(tokens, minlength=self.vocab_size)
        offset = _offsets(lengths)
        prefix_of_next = tokens
        for k, table in enumerate(self._tables, start=2):
            idx = np.flatnonzero(offset >= k - 1)
            if idx.size == 0:
                break
            if self._dense[k - 2] and self._tables[k - 3].ids.size > INT64_MAX // self.vocab_size:
                raise LdwError(f"too many distinct {k - 1}-grams to encode {k}-grams in 64 bits")
            keys = prefix_of_next[idx - 1] * self.vocab_size + tokens[idx]
            if table.dense:
                distinct, inverse, counts = _unique_with_inverse(keys)
                gid = table.merge(distinct, counts)
                prefix_of_next = np.empty(tokens.size, dtype=np.int64)
                prefix_of_next[idx] = gid[inverse]
            else:
                distinct, counts = np.unique(keys, return_counts=True)
                table.merge(distinct, counts.astype(np.int64))
                if k < self.max_n:
                    prefix_of_next = np.empty(tokens.size, dtype=np.int64)
                    prefix_of_next[idx] = keys


def count_ngrams(
    sequences: Iterable[Sequence[int] | np.ndarray],
    vocab_size: int,
    max_n: int = 5,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    start_pad: bool = False,
) -> NgramCounts:
    """Count n-grams of orders 1..``max_n`` within each sequence of an iterable of token ids."""
    counter = NgramCounter(vocab_size, max_n, chunk_tokens, start_pad)
    counter.update(sequences)
    return counter.finish()
