"""Learning-rate schedules as per-step arrays, for the LR-annealing loss law.

Every generator returns ``lrs`` of length ``steps + 1``: ``lrs[s]`` is the
learning rate of optimizer step ``s`` (index 0 included, so that arrays line
up with step numbers). Warmup, when asked for, is linear from ``peak / warmup``
at step 1 to ``peak`` at step ``warmup`` (step 0 gets 0), as the reference
trainer does; the law counts warmup steps at the peak anyway.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ldw.errors import LdwError, SettingsError


def _check(steps: int, peak: float, warmup: int) -> None:
    if steps < 1 or peak <= 0 or not 0 <= warmup < steps:
        raise LdwError(f"schedule needs steps >= 1, peak > 0 and 0 <= warmup < steps; got {steps}, {peak}, {warmup}")


def _with_warmup(lrs: np.ndarray, peak: float, warmup: int) -> np.ndarray:
    """Overwrite steps 0..warmup with the linear warmup."""
    if warmup > 0:
        lrs[: warmup + 1] = peak * np.arange(warmup + 1) / warmup
    return lrs


def _progress(steps: int, start: int) -> np.ndarray:
    """Fraction 0..1 of the way from step ``start`` to ``steps`` for every step (clipped)."""
    s = np.arange(steps + 1, dtype=np.float64)
    return np.clip((s - start) / max(steps - start, 1), 0.0, 1.0)


def constant_schedule(steps: int, peak: float, warmup: int = 0) -> np.ndarray:
    """``peak`` at every step after warmup."""
    _check(steps, peak, warmup)
    return _with_warmup(np.full(steps + 1, peak, dtype=np.float64), peak, warmup)


def cosine_schedule(steps: int, peak: float, warmup: int = 0, min_ratio: float = 0.1) -> np.ndarray:
    """Cosine decay from ``peak`` after warmup to ``min_ratio * peak`` at the last step."""
    _check(steps, peak, warmup)
    floor = min_ratio * peak
    lrs = floor + (peak - floor) * 0.5 * (1.0 + np.cos(math.pi * _progress(steps, warmup)))
    return _with_warmup(lrs, peak, warmup)


WSD_SHAPES = ("linear", "sqrt")


def wsd_schedule(
    steps: int, peak: float, warmup: int = 0, decay_fraction: float = 0.2, min_ratio: float = 0.0, shape: str = "linear"
) -> np.ndarray:
    """Warmup-stable-decay: ``peak`` until the last ``decay_fraction`` of steps, then down to ``min_ratio * peak``,
    linearly (``shape="linear"``) or as ``1 - sqrt(progress)`` (``shape="sqrt"``, Hägele et al. 2024)."""
    _check(steps, peak, warmup)
    if not 0.0 < decay_fraction <= 1.0:
        raise LdwError(f"wsd decay_fraction must be in (0, 1], got {decay_fraction}")
    if shape not in WSD_SHAPES:
        raise LdwError(f"wsd shape must be one of {', '.join(WSD_SHAPES)}, got {shape!r}")
    decay_start = max(warmup, steps - int(round(decay_fraction * steps)))
    floor = min_ratio * peak
    progress = _progress(steps, decay_start)
    lrs = peak - (peak - floor) * (np.sqrt(progress) if shape == "sqrt" else progress)
    return _with_warmup(lrs, peak, warmup)


def multistep_schedule(
    steps: int, peak: float, warmup: int = 0, milestones: tuple[float, ...] = (0.8, 0.9), gamma: float = 0.316
) -> np.ndarray:
    """Step decay: multiply by ``gamma`` at each milestone (fractions of ``steps``)."""
    _check(steps, peak, warmup)
    s = np.arange(steps + 1)
    drops = sum((s >= int(round(m * steps))).astype(np.int64) for m in milestones)
    return _with_warmup(peak * gamma ** drops.astype(np.float64), peak, warmup)


def sequence_schedule(lrs: np.ndarray, warmup: int = 0) -> np.ndarray:
    """A given per-step LR sequence (``lrs[s]`` for steps 0..N), optionally with a linear warmup put in front."""
    lrs = np.asarray(lrs, dtype=np.float64)
    if lrs.ndim != 1 or len(lrs) < 2 or not np.all(np.isfinite(lrs)) or np.any(lrs < 0):
        raise LdwError("an LR sequence needs at least 2 finite, non-negative values")
    if warmup <= 0:
        return lrs.copy()
    peak = float(lrs.max())
    return np.concatenate([peak * np.arange(warmup) / warmup, lrs])


def lr_per_step(steps: np.ndarray, values: np.ndarray, last_step: int | None = None) -> np.ndarray:
    """Per-step LR for steps 0..last_step from a (possibly sparse) logged trace, by linear interpolation
    (constant before the first and after the last logged step)."""
    steps = np.asarray(steps, dtype=np.float64)
    last = int(steps.max()) if last_step is None else last_step
    return np.interp(np.arange(last + 1, dtype=np.float64), steps, np.asarray(values, dtype=np.float64))


GENERATORS: dict[str, Callable[..., np.ndarray]] = {
    "constant": constant_schedule,
    "cosine": cosine_schedule,
    "wsd": wsd_schedule,
    "multistep": multistep_schedule,
}


@dataclass(frozen=True)
class ScheduleSpec:
    """A named schedule to predict: a generator with options, a warehouse run, or a file."""

    text: str
    kind: str  # "generator" | "run" | "file"
    name: str
    options: dict[str, float | int | str | tuple[float, ...]]


def _option(key: str, raw: str, spec: str) -> float | int | str | tuple[float, ...]:
    if key == "shape":
        return raw
    try:
        if key == "milestones":
            return tuple(float(x) for x in raw.split("/"))
        if key in ("steps", "warmup"):
            return int(raw)
        return float(raw)
    except ValueError:
        raise SettingsError(f"schedule '{spec}': option {key}={raw!r} is not a number") from None


def parse_schedule_spec(text: str) -> ScheduleSpec:
    """Parse ``cosine``, ``wsd:decay_fraction=0.1,warmup=20``, ``wsd:shape=sqrt``,
    ``multistep:milestones=0.5/0.75,gamma=0.3``,
    ``run:RUN_ID`` or a path to a training log / a ``.txt`` file of one LR per line (steps 0..N).

    A text that is none of these, or a generator option it does not take, is a SettingsError.
    """
    if text.startswith("run:"):
        return ScheduleSpec(text, "run", text[4:], {})
    if Path(text).exists():
        return ScheduleSpec(text, "file", Path(text).name, {})
    name, _, rest = text.partition(":")
    if name not in GENERATORS:
        raise SettingsError(f"schedule '{text}': not a file, run:ID or one of {', '.join(GENERATORS)}")
    known = list(inspect.signature(GENERATORS[name]).parameters)
    options: dict[str, float | int | str | tuple[float, ...]] = {}
    for item in filter(None, rest.split(",")):
        key, eq, raw = item.partition("=")
        if not eq:
            raise SettingsError(f"schedule '{text}': option '{item}' is not key=value")
        if key.strip() not in known:
            raise SettingsError(
                f"schedule '{text}': {name} has no option '{key.strip()}' (options: {', '.join(known)})"
            )
        options[key.strip()] = _option(key.strip(), raw.strip(), text)
    return ScheduleSpec(text, "generator", name, options)


def generate(spec: ScheduleSpec, steps: int, peak: float, warmup: int) -> np.ndarray:
    """The LR array of a generator spec; ``steps``/``peak``/``warmup`` are defaults its options may override."""
    options = dict(spec.options)
    args = {
        "steps": int(options.pop("steps", steps)),
        "peak": float(options.pop("peak", peak)),
        "warmup": int(options.pop("warmup", warmup)),
    }
    try:
        return GENERATORS[spec.name](**args, **options)
    except TypeError as err:
        raise LdwError(f"schedule '{spec.text}': {err}") from None


def read_lr_text(path: Path) -> np.ndarray:
    """A ``.txt`` file of one LR per line (line 1 = step 0)."""
    try:
        values = [float(line) for line in path.read_text(encoding="utf-8").split() if line.strip()]
    except ValueError as err:
        raise LdwError(f"{path}: not one number per line ({err})") from None
    return sequence_schedule(np.array(values))
