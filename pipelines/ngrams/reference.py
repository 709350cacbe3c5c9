"""The reference corpus of ``ldw ngrams``: which documents, cut into which sequences, and whether it leaks.

* :func:`choose_reference`: by default the documents the runs were trained on,
  when every run records them (runs of the reference trainer keep their
  corpus and held-out fraction in ``run.json``, stored as the runs' metadata).
* :func:`training_windows`: the counted sequences. Chang et al.'s released code
  counts each line of its training file, i.e. each 128-token training sequence
  as the model saw it, [CLS] first. Here the training documents are joined into
  one stream (each followed by its end-of-text token, as the reference trainer
  and ``ldw evalset`` join them) and cut into windows of the evaluation set's
  length, each led by the evaluation set's prefix token when it has one: the
  counted sequences have the shape of the evaluation sequences, so an n-gram
  context is what the model sees, including document boundaries inside a
  window and the start of a window.
* :func:`count_reference`: the start-padded n-gram counts of those windows
  and, from a second pass over them (spooled to a temporary file, so memory
  stays bounded by the distinct n-grams), the raw contextual diversity.
* :class:`DocumentMatcher`: how many of the documents the evaluation set was
  cut from are among the counted documents (exact text, compared by digest as
  the corpus streams past, so memory holds one digest per evaluation
  document), the leak check; and
  :func:`eval_coverage`, the share of evaluation n-grams of the highest order
  that were counted (a diagnostic: high for a leaky corpus, and for corpora
  with much repeated text).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ldw.corpus import SPLIT_SEED, Piece
from ldw.errors import LdwError
from ldw.ngrams.counts import NgramCounter, NgramCounts
from ldw.ngrams.diversity import DiversityCounter, context_types

SPOOL_WINDOWS = 8192  # windows per block read back for the diversity pass (fewer when the chunk is smaller)

FOUND_WINDOW_COVERAGE = 0.9  # a window counts as found when this share of its n-grams was counted
LEAK_WARNING_FRACTION = 0.05  # warn when more evaluation windows than this are found in the counted corpus


@dataclass(frozen=True)
class Reference:
    """The corpus spec, split and held-out fraction to count, and where the choice came from."""

    corpus: str
    split: str
    heldout_fraction: float
    source: str  # "runs": the runs' recorded training documents; "given": the options as passed


def runs_training_corpus(metadata: list[dict[str, Any]]) -> tuple[str, float] | None:
    """(corpus, held-out fraction) every run was trained on, when every run records the same; else None."""
    found = set()
    for meta in metadata:
        train = meta.get("train_config") or {}
        corpus, fraction = meta.get("corpus", train.get("corpus")), train.get("eval_fraction")
        if corpus is None or fraction is None or meta.get("split_seed", SPLIT_SEED) != SPLIT_SEED:
            return None
        found.add((str(corpus), float(fraction)))
    return found.pop() if len(found) == 1 else None


def choose_reference(
    corpus: str | None, split: str | None, heldout_fraction: float | None, runs_metadata: list[dict[str, Any]]
) -> Reference:
    """The reference corpus: the options given, completed from the runs' training documents where they are known.

    No corpus: the runs' training corpus, ``train`` split (an error when the
    runs do not record one). The runs' corpus without a split: its ``train``
    split. Another corpus without a split: all of it (it is taken to be
    training data).
    """
    known = runs_training_corpus(runs_metadata)
    if corpus is None and known is None:
        raise LdwError(
            "the runs do not record one training corpus (they were not all trained by `ldw train` on the same "
            "documents): pass --corpus with the training data"
        )
    chosen = corpus if corpus is not None else known[0]
    runs_corpus = known is not None and chosen == known[0]
    if split is None:
        split = "train" if runs_corpus else "all"
    if heldout_fraction is None:
        heldout_fraction = known[1] if runs_corpus else 0.1
    source = "runs" if runs_corpus and split == "train" and heldout_fraction == known[1] else "given"
    return Reference(chosen, split, heldout_fraction, source)


def training_windows(documents: Iterable[np.ndarray], seq_len: int, prefix: int | None) -> Iterator[np.ndarray]:
    """The documents' token ids joined into one stream and cut into ``seq_len`` windows, each led by ``prefix``.

    ``documents`` may hand a document on in consecutive parts (the pieces of a
    streamed corpus): the stream is the same. The incomplete tail is dropped,
    as ``ldw evalset`` drops it. Memory holds one part and less than one window besides.
    """
    if seq_len < 1:
        raise LdwError(f"window length must be at least 1, not {seq_len}")
    lead = np.array([] if prefix is None else [prefix], dtype=np.int64)
    carry = np.zeros(0, dtype=np.int64)
    for doc in documents:
        stream = np.concatenate([carry, np.asarray(doc, dtype=np.int64)])
        whole = len(stream) // seq_len * seq_len
        for start in range(0, whole, seq_len):
            yield np.concatenate([lead, stream[start : start + seq_len]])
        carry = stream[whole:]


def count_reference(
    windows: Iterable[np.ndarray], vocab_size: int, max_n: int, chunk_tokens: int, special_ids: list[int]
) -> tuple[NgramCounts, np.ndarray, np.ndarray]:
    """Start-padded counts of ``windows`` (equal-length), the context types and every type's raw diversity.

    ``special_ids`` never count as context types. ``chunk_tokens`` bounds the tokens held at once, by
    the counter and by the diversity pass alike.
    """
    counter = NgramCounter(vocab_size, max_n, chunk_tokens, start_pad=True)
    width = 0
    with tempfile.TemporaryFile() as spool:
        for window in windows:
            if width and len(window) != width:
                raise LdwError(f"counted windows differ in length ({len(window)}, {width})")
            width = len(window)
            counter.add(window)
            spool.write(np.asarray(window, dtype=np.int32).tobytes())
        counts = counter.finish()
        types = context_types(counts.unigram[:vocab_size], special_ids)
        diversity = DiversityCounter(vocab_size, types)
        spool.seek(0)
        per_block = max(1, min(SPOOL_WINDOWS, chunk_tokens // max(width, 1)))  # no more tokens than the counter's chunk
        while width and (block := np.frombuffer(spool.read(per_block * width * 4), dtype=np.int32)).size:
            diversity.add(block.reshape(-1, width))
    return counts, types, diversity.raw()


def model_sequences(windows: list[np.ndarray], prefix: int | None) -> list[np.ndarray]:
    """The evaluation windows as the model reads them: the prefix token (when there is one) first."""
    if prefix is None:
        return [np.asarray(w, dtype=np.int64) for w in windows]
    return [np.concatenate([[prefix], np.asarray(w, dtype=np.int64)]) for w in windows]


def document_digests(pieces: Iterable[Piece]) -> Iterator[bytes]:
    """A digest of each document's exact text, from its pieces (the same however the document was cut)."""
    digest = hashlib.blake2b(digest_size=16)
    for piece in pieces:
        digest.update(piece.text.encode("utf-8"))
        if piece.last:
            yield digest.digest()
            digest = hashlib.blake2b(digest_size=16)


class DocumentMatcher:
    """Which of some documents occur, with exactly the same text, in a stream of pieces passed through it."""

    def __init__(self, documents: Iterable[Piece]) -> None:
        digests = list(document_digests(documents))
        self.documents = len(digests)
        self._wanted = set(digests)
        self._found: set[bytes] = set()

    def watch(self, pieces: Iterable[Piece]) -> Iterator[Piece]:
        """``pieces`` unchanged, noting every wanted document among them."""
        digest = hashlib.blake2b(digest_size=16)
        for piece in pieces:
            digest.update(piece.text.encode("utf-8"))
            if piece.last:
                if (found := digest.digest()) in self._wanted:
                    self._found.add(found)
                digest = hashlib.blake2b(digest_size=16)
            yield piece

    @property
    def shared(self) -> int:
        """How many distinct wanted documents the watched stream held."""
        return len(self._found)


def eval_coverage(counts: NgramCounts, sequences: list[np.ndarray]) -> float:
    """Share of the evaluation sequences' highest-order n-grams (whole context inside the sequence) counted."""
    order = counts.max_n
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    gram, _ = counts.position_counts(np.concatenate(sequences), lengths)
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    inside = offsets >= order - 1
    return float(np.mean(gram[order - 1][inside] > 0)) if inside.any() else float("nan")
