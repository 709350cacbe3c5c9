"""Contextual diversity of each token type, as Chang et al.'s released code defines it.

Raw diversity of a type w: the number of distinct *context types* seen among
the ``window`` (30) tokens before any occurrence of w inside a counted
sequence. The released code takes as context types the ids below 10,000,
which for its SentencePiece vocabulary are about the 10,000 most frequent
pieces (special tokens have ids above 50,000 and never count); here they are
the :data:`CONTEXT_TYPES` most frequent types of the reference corpus that
are not special tokens (ties broken by the lower id).

Adjusted diversity: raw diversity minus a GAM fit of raw diversity on
``log10`` unigram frequency over every id of the vocabulary (the released
``adjust_contextual_diversities``: LinearGAM with 25 splines and the
logspace(-3, 3, 11) lambda grid, here :mod:`ldw.curves.gam`), where ids never
seen get the lowest observed frequency. A sequence-leading token (their
[CLS], here the evaluation set's prefix token) is left out of the fit, and
gets the lowest adjusted diversity of the other ids.

Memory: one bit per (type, context type): vocabulary x 10,000 / 8 bytes.
"""

from __future__ import annotations

import numpy as np

from ldw.curves.gam import build_smoother, fit_curves
from ldw.errors import LdwError

WINDOW = 30
CONTEXT_TYPES = 10_000
BITS_SET = np.array([bin(byte).count("1") for byte in range(256)], dtype=np.uint8)  # popcount of each byte


def context_types(unigram: np.ndarray, excluded: list[int], n_types: int = CONTEXT_TYPES) -> np.ndarray:
    """Ids of the ``n_types`` most frequent types seen (ties: lower id first), ``excluded`` ids left out."""
    counts = np.asarray(unigram, dtype=np.int64).copy()
    counts[[i for i in excluded if 0 <= i < len(counts)]] = 0
    order = np.lexsort((np.arange(len(counts)), -counts))
    return np.sort(order[: min(n_types, int(np.count_nonzero(counts)))])


class DiversityCounter:
    """Which context types occur within ``window`` tokens before each type, from blocks of sequences."""

    def __init__(self, vocab_size: int, context_ids: np.ndarray, window: int = WINDOW) -> None:
        """Types are ids in [0, ``vocab_size``); ``context_ids`` are the context types to look for."""
        if window < 1:
            raise LdwError(f"diversity window must be at least 1, not {window}")
        self.vocab_size = vocab_size
        self.window = window
        self.n_context = int(np.size(context_ids))
        self._width = -(-max(self.n_context, 1) // 8) * 8  # bits per type, whole bytes
        self._rank = np.full(vocab_size, -1, dtype=np.int64)
        self._rank[np.asarray(context_ids, dtype=np.int64)] = np.arange(self.n_context)
        self._bits = np.zeros(vocab_size * self._width // 8, dtype=np.uint8)

    def add(self, block: np.ndarray) -> None:
        """Add a block of equal-length sequences [B, L] of token ids (every id below ``vocab_size``)."""
        block = np.asarray(block, dtype=np.int64)
        if block.ndim != 2:
            raise LdwError(f"a block of sequences must be 2-D, got shape {block.shape}")
        if block.size and (block.min() < 0 or block.max() >= self.vocab_size):
            raise LdwError(f"token id outside the vocabulary [0, {self.vocab_size}) in a diversity block")
        for distance in range(1, min(self.window, block.shape[1] - 1) + 1):
            rank = self._rank[block[:, :-distance]]
            hit = rank >= 0
            keys = block[:, distance:][hit] * self._width + rank[hit]
            np.bitwise_or.at(self._bits, keys >> 3, np.left_shift(1, keys & 7).astype(np.uint8))

    def raw(self) -> np.ndarray:
        """Raw contextual diversity of every type id, [vocab_size] int64."""
        rows = self._bits.reshape(self.vocab_size, self._width // 8)
        return BITS_SET[rows].sum(axis=1, dtype=np.int64)


def adjusted_diversity(raw: np.ndarray, unigram: np.ndarray, leading_id: int | None) -> np.ndarray:
    """Raw diversity minus its GAM fit on log10 unigram frequency (module docstring), per type id."""
    raw = np.asarray(raw, dtype=np.float64)
    counts = np.asarray(unigram, dtype=np.float64)[: len(raw)]
    if not np.any(counts > 0):
        raise LdwError("no token of the vocabulary was counted; contextual diversity needs a non-empty corpus")
    frequency = counts / counts.sum()
    frequency[counts == 0] = frequency[counts > 0].min()
    fitted = np.ones(len(raw), dtype=bool)
    if leading_id is not None and 0 <= leading_id < len(raw):
        fitted[leading_id] = False
    x = np.log10(frequency[fitted])
    smoother = build_smoother(x)
    adjusted = np.full(len(raw), np.nan)
    adjusted[fitted] = raw[fitted] - fit_curves(smoother, raw[fitted][None, :]).fitted[0]
    adjusted[~fitted] = adjusted[fitted].min()
    return adjusted
