"""Typed settings and result of ``ldw ingest``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ldw.errors import LdwError


@dataclass(frozen=True)
class IngestConfig:
    """How runs are registered: an explicit run name (one run only), a tokenizer folder, tokens per step."""

    name: str | None = None
    tokenizer: Path | None = None
    tokens_per_step: int | None = None

    def __post_init__(self) -> None:
        if self.tokens_per_step is not None and self.tokens_per_step < 1:
            raise LdwError(f"--tokens-per-step must be at least 1, not {self.tokens_per_step}")


@dataclass
class IngestResult:
    """What ingest did for one run."""

    run_id: str
    source: Path
    kind: str
    n_checkpoints: int
    n_new: int
    n_duplicates: int
    n_trace_rows: int
    warnings: list[str]
