"""Typed settings and result of ``ldw ngrams``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldw.errors import LdwError
from ldw.ngrams.counts import DEFAULT_CHUNK_TOKENS


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
        if self.max_n < 1:
            raise LdwError(f"--max-n must be at least 1, not {self.max_n}")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise LdwError(f"--heldout-fraction must be in (0, 1), not {self.heldout_fraction}")


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
