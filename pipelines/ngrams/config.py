"""Typed settings and result of ``ldw ngrams``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldw.corpus import SPLITS
from ldw.ngrams.counts import DEFAULT_CHUNK_TOKENS
from ldw.setting_checks import choice, real, whole

MAX_ORDER = 10  # n-gram orders beyond this have no use as predictors and only cost memory


@dataclass(frozen=True)
class NgramConfig:
    """The reference corpus to count (``builtin`` or a file), its split, the tokenizer and the highest order."""

    corpus: str = "builtin"
    split: str = "all"
    heldout_fraction: float = 0.1
    tokenizer: Path | None = None
    max_n: int = 5
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS

    def __post_init__(self) -> None:
        object.__setattr__(self, "split", choice("--split", self.split, SPLITS))
        fraction = real("--heldout-fraction", self.heldout_fraction, 0.0, 1.0, low_open=True, high_open=True)
        object.__setattr__(self, "heldout_fraction", fraction)
        object.__setattr__(self, "max_n", whole("--max-n", self.max_n, 1, MAX_ORDER))
        object.__setattr__(self, "chunk_tokens", whole("chunk_tokens", self.chunk_tokens, 1))


@dataclass(frozen=True)
class NgramResult:
    """What ``ldw ngrams`` did: the parameters stored with ``ngram_stats``, tokens covered and timings (s)."""

    params: dict[str, Any]
    n_eval_tokens: int
    count_s: float
    total_s: float

    @property
    def n_tokens_counted(self) -> int:
        """Tokens of the reference corpus that were counted."""
        return int(self.params["n_tokens_counted"])

    @property
    def n_documents(self) -> int:
        """Documents (sequences) of the reference corpus that were counted."""
        return int(self.params["n_documents"])
