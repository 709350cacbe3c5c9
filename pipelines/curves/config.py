"""Typed settings and result of ``ldw metrics``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ldw.curves.metrics import WINDOW, WINDOW_CHECKPOINTS
from ldw.errors import LdwError
from ldw.warehouse.parquet_io import ROW_GROUP_SIZE


@dataclass(frozen=True)
class MetricsConfig:
    """How ``ldw metrics`` runs: the final-surprisal window, the sigmoid AoA, chunk size, whether curves are kept.

    The window is the checkpoints of the last ``window`` fraction of training
    steps, at most the last ``last_k`` of them (None: no cap). ``window=1.0``
    with ``last_k=K`` is exactly the last K checkpoints.
    """

    window: float = WINDOW
    last_k: int | None = WINDOW_CHECKPOINTS
    sigmoid: bool = False
    chunk_tokens: int = ROW_GROUP_SIZE
    store_curves: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.window <= 1.0:
            raise LdwError(f"--window must be in (0, 1], not {self.window}")
        if self.last_k is not None and self.last_k < 1:
            raise LdwError(f"--last-k must be at least 1, not {self.last_k}")
        if self.chunk_tokens < 1:
            raise LdwError(f"--chunk-tokens must be at least 1, not {self.chunk_tokens}")


@dataclass(frozen=True)
class MetricsResult:
    """What ``ldw metrics`` computed: runs (and the skipped ones, with why), tokens, tables, time, parameters.

    ``warnings`` are the cautions raised on the way (also issued as
    :class:`ldw.LdwWarning` and stored in ``params["warnings"]``).
    """

    runs: list[str]
    skipped_runs: dict[str, str]
    tokens: int
    chunks: int
    tables: list[str]
    seconds: float
    params: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
