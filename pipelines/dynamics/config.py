"""Typed settings and results of the training-dynamics verbs: spikes, the LR-law fit, weight probes."""

from __future__ import annotations

from dataclasses import dataclass, field

from ldw.dynamics.spikes import SpikeParams
from ldw.errors import LdwError


@dataclass(frozen=True)
class SpikesConfig:
    """Which traces to scan, the spike rule's parameters, and how many risers to keep per spike."""

    traces: tuple[str, ...] = ("loss", "grad_norm")
    rule: SpikeParams = field(default_factory=SpikeParams)
    top_n: int = 1000

    def __post_init__(self) -> None:
        if not self.traces:
            raise LdwError("--trace: name at least one trace")
        if self.top_n < 1:
            raise LdwError(f"--top-n must be at least 1, not {self.top_n}")


@dataclass(frozen=True)
class SpikesResult:
    """Spikes found (table ``spikes``), spikes bracketed by checkpoints (table ``spike_tokens``), warnings.

    ``warnings`` names each trace too short for the window (see
    :func:`ldw.dynamics.spikes.short_trace_warning`).
    """

    spikes: int
    bracketed: int
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScheduleConfig:
    """Runs the LR-annealing law is fitted on (jointly), schedules to predict, the S2 decay, the fit start."""

    runs: tuple[str, ...]
    predict: tuple[str, ...] = ()
    decay: float = 0.999
    fit_from: float = 0.05

    def __post_init__(self) -> None:
        if not self.runs:
            raise LdwError("--run: name at least one run to fit")
        if not 0.0 <= self.decay < 1.0:
            raise LdwError(f"--decay must be in [0, 1), not {self.decay}")
        if not 0.0 <= self.fit_from < 1.0:
            raise LdwError(f"--fit-from must be in [0, 1), not {self.fit_from}")


@dataclass(frozen=True)
class WeightProbeConfig:
    """Runs to probe (default all), evaluation sequences in the probe batch, and the device."""

    runs: tuple[str, ...] | None = None
    sequences: int = 8
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.sequences < 1:
            raise LdwError(f"--sequences must be at least 1, not {self.sequences}")
