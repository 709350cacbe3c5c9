"""Typed settings and result of ``ldw ingest``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ldw.errors import SettingsError
from ldw.setting_checks import optional_whole


@dataclass(frozen=True)
class IngestConfig:
    """How runs are registered: an explicit run name and training log (one run only), a tokenizer folder,
    tokens per step.

    For Hugging Face Hub repositories (``hf:ORG/NAME``): ``revisions`` keeps the branches matching any
    of these names or glob patterns (``step*``; comma-separated lists are split), and ``every`` keeps
    every N-th of them in step order (the last one always).
    """

    name: str | None = None
    tokenizer: Path | None = None
    tokens_per_step: int | None = None
    log: Path | None = None
    revisions: tuple[str, ...] | None = None
    every: int | None = None

    def __post_init__(self) -> None:
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise SettingsError(f"--name must be a non-empty run name, not {self.name!r}")
        object.__setattr__(self, "tokens_per_step", optional_whole("--tokens-per-step", self.tokens_per_step, 1))
        object.__setattr__(self, "every", optional_whole("--every", self.every, 1))
        if self.revisions is not None:
            patterns = tuple(p.strip() for text in self.revisions for p in text.split(",") if p.strip())
            if not patterns:
                raise SettingsError("--revisions needs at least one branch name or pattern (e.g. 'step*')")
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
