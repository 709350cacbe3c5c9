"""Typed settings and result of ``ldw ngrams``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ldw.corpus import SPLITS
from ldw.ngrams.counts import DEFAULT_CHUNK_TOKENS
from ldw.setting_checks import choice, real, whole

MAX_ORDER = 10  # n-gram orders beyond this have no use as predictors and only cost memory


@dataclass(frozen=True)
class NgramConfig:
    """The reference corpus to count, its split, the tokenizer and the highest order.

    ``corpus`` None: the documents the runs were trained on, when the
    warehouse knows them (runs of ``ldw train``); ``split`` None: ``train`` for
    the runs' own corpus, ``all`` for another file; ``heldout_fraction`` None:
    the runs' own (0.1 for another file).
    """

    corpus: str | None = None
    split: str | None = None
    heldout_fraction: float | None = None
    tokenizer: Path | None = None
    max_n: int = 5
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS

    def __post_init__(self) -> None:
        if self.split is not None:
            object.__setattr__(self, "split", choice("--split", self.split, SPLITS))
        if self.heldout_fraction is not None:
            fraction = real("--heldout-fraction", self.heldout_fraction, 0.0, 1.0, low_open=True, high_open=True)
            object.__setattr__(self, "heldout_fraction", fraction)
        object.__setattr__(self, "max_n", whole("--max-n", self.max_n, 1, MAX_ORDER))
        object.__setattr__(self, "chunk_tokens", whole("chunk_tokens", self.chunk_tokens, 1))


@dataclass(frozen=True)
class NgramResult:
    """What ``ldw ngrams`` did: the parameters stored with ``ngram_stats``, tokens covered, timings (s), warnings."""

    params: dict[str, Any]
    n_eval_tokens: int
    count_s: float
    total_s: float
    warnings: list[str] = field(default_factory=list)

    @property
    def n_tokens_counted(self) -> int:
        """Tokens of the reference corpus that were counted."""
        return int(self.params["n_tokens_counted"])

    @property
    def n_documents(self) -> int:
        """Documents of the reference corpus that were counted."""
        return int(self.params["n_documents"])
