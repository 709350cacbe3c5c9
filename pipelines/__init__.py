"""ldw, the learning-dynamics workbench: per-token learning curves of LM checkpoints in a DuckDB/Parquet warehouse.

    import ldw
    wb = ldw.open("ldw-demo")
    wb.token_metrics()

Names are imported on first use, so ``import ldw`` (and the app, which lives
under ``ldw.app``) loads neither torch nor transformers.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "open": "ldw.workbench",
    "Workbench": "ldw.workbench",
    "LdwError": "ldw.errors",
    "LdwWarning": "ldw.errors",
    "SettingsError": "ldw.errors",
    "IngestConfig": "ldw.ingest.config",
    "IngestResult": "ldw.ingest.config",
    "EvalSetConfig": "ldw.sweep.config",
    "EvalSetResult": "ldw.sweep.config",
    "SweepConfig": "ldw.sweep.config",
    "SweepSummary": "ldw.sweep.config",
    "MetricsConfig": "ldw.curves.config",
    "MetricsResult": "ldw.curves.config",
    "NgramConfig": "ldw.ngrams.config",
    "NgramResult": "ldw.ngrams.config",
    "SpikeParams": "ldw.dynamics.spikes",
    "SpikesConfig": "ldw.dynamics.config",
    "SpikesResult": "ldw.dynamics.config",
    "ScheduleConfig": "ldw.dynamics.config",
    "WeightProbeConfig": "ldw.dynamics.config",
    "TrainConfig": "ldw.train.config",
    "train_run": "ldw.train.trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import an exported name from its module on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ldw' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
