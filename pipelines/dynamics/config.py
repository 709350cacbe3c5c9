"""Typed settings and results of the training-dynamics verbs: spikes, the LR-law fit, weight probes."""

from __future__ import annotations

from dataclasses import dataclass, field

from ldw.dynamics.spikes import SpikeParams
from ldw.errors import SettingsError
from ldw.setting_checks import device_name, real, whole
from ldw.train.lr_schedules import parse_schedule_spec


@dataclass(frozen=True)
class SpikesConfig:
    """Which traces to scan, the spike rule's parameters, and how many risers to keep per spike."""

    traces: tuple[str, ...] = ("loss", "grad_norm")
    rule: SpikeParams = field(default_factory=SpikeParams)
    top_n: int = 1000

    def __post_init__(self) -> None:
        if not self.traces:
            raise SettingsError("--trace: name at least one trace")
        if not isinstance(self.rule, SpikeParams):
            raise SettingsError(f"rule must be a SpikeParams, not {self.rule!r}")
        object.__setattr__(self, "top_n", whole("--top-n", self.top_n, 1))


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
            raise SettingsError("--run: name at least one run to fit")
        for text in self.predict:
            parse_schedule_spec(text)  # a malformed --predict is refused before the fit
        object.__setattr__(self, "decay", real("--decay", self.decay, 0.0, 1.0, high_open=True))
        object.__setattr__(self, "fit_from", real("--fit-from", self.fit_from, 0.0, 1.0, high_open=True))


@dataclass(frozen=True)
class WeightProbeConfig:
    """Runs to probe (default all), evaluation sequences in the probe batch, and the device."""

    runs: tuple[str, ...] | None = None
    sequences: int = 8
    device: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sequences", whole("--sequences", self.sequences, 1))
        object.__setattr__(self, "device", device_name("--device", self.device))
