"""Typed settings and result of ``ldw metrics``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ldw.curves.metrics import WINDOW, WINDOW_CHECKPOINTS
from ldw.setting_checks import optional_whole, real, whole
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
        object.__setattr__(self, "window", real("--window", self.window, 0.0, 1.0, low_open=True))
        object.__setattr__(self, "last_k", optional_whole("--last-k", self.last_k, 1))
        object.__setattr__(self, "chunk_tokens", whole("--chunk-tokens", self.chunk_tokens, 1))


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
