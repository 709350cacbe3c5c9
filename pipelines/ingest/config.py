"""Typed settings and result of ``ldw ingest``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ldw.errors import LdwError


@dataclass(frozen=True)
class IngestConfig:
    """How runs are registered: an explicit run name (one run only), a tokenizer folder, tokens per step.

    For Hugging Face Hub repositories (``hf:ORG/NAME``): ``revisions`` keeps the branches matching any
    of these names or glob patterns (``step*``; comma-separated lists are split), and ``every`` keeps
    every N-th of them in step order (the last one always).
    """

    name: str | None = None
    tokenizer: Path | None = None
    tokens_per_step: int | None = None
    revisions: tuple[str, ...] | None = None
    every: int | None = None

    def __post_init__(self) -> None:
        if self.tokens_per_step is not None and self.tokens_per_step < 1:
            raise LdwError(f"--tokens-per-step must be at least 1, not {self.tokens_per_step}")
        if self.every is not None and self.every < 1:
            raise LdwError(f"--every must be at least 1, not {self.every}")
        if self.revisions is not None:
            patterns = tuple(p.strip() for text in self.revisions for p in text.split(",") if p.strip())
            if not patterns:
                raise LdwError("--revisions needs at least one branch name or pattern (e.g. 'step*')")
            object.__setattr__(self, "revisions", patterns)


@dataclass
class IngestResult:
    """What ingest did for one run."""

    run_id: str
    source: Path | str
    kind: str
    n_checkpoints: int
    n_new: int
    n_duplicates: int
    n_trace_rows: int
    warnings: list[str]
