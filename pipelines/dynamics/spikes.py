"""Loss and gradient-norm spike detection: an explicit rule instead of judging by eye.

The rule (applied to one trace, points in step order; all counts are in
logged points, not optimizer steps, so the logging interval does not matter):

1. Baseline: for each point i, the median ``b_i`` of the ``window`` points
   before it (the current point excluded). Points with fewer than
   ``min_history`` earlier points are never flagged.
2. Scale: ``s_i = max(1.4826 * MAD_i, rel_floor * |b_i|, abs_floor)`` where
   ``MAD_i`` is the median absolute deviation of the same window from ``b_i``
   (1.4826 * MAD estimates the standard deviation of Gaussian noise). The
   floors keep a very smooth trace from flagging tiny wiggles.
3. A point is flagged when ``v_i - b_i > k * s_i`` (only upward excursions).
4. Runs of consecutive flagged points are events; two events separated by at
   most ``merge_gap`` unflagged points are merged; events spanning fewer than
   ``min_points`` points (first to last flagged) are dropped.
5. Each spike reports: ``step_start`` (first flagged point), ``step_peak``
   (highest value inside the event), ``step_end`` (the first point after the
   event that is back under the threshold; null when the trace ends still
   above it), ``baseline`` and scale at the start, ``peak_value``,
   ``magnitude = peak_value - baseline`` and ``magnitude_mads`` = magnitude
   divided by the scale at the start.

Because the window includes earlier spike points, a sustained level shift
longer than about ``window / 2`` points becomes the new baseline and the event
ends: spikes are transient excursions by construction. On a decaying loss the
trailing median lags above the current value, so the decay itself never
triggers the rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view

from ldw.errors import LdwError, SettingsError
from ldw.setting_checks import real, whole

MAD_TO_STD = 1.4826
_CHUNK = 16_384

SPIKE_SCHEMA = pl.Schema(
    {
        "spike_id": pl.Int64,
        "step_start": pl.Int64,
        "step_peak": pl.Int64,
        "step_end": pl.Int64,
        "baseline": pl.Float64,
        "peak_value": pl.Float64,
        "magnitude": pl.Float64,
        "magnitude_mads": pl.Float64,
    }
)


@dataclass(frozen=True)
class SpikeParams:
    """Parameters of the spike rule (see the module docstring); counts are logged points."""

    window: int = 50
    k: float = 6.0
    min_history: int = 10
    min_points: int = 1
    merge_gap: int = 5
    rel_floor: float = 0.005
    abs_floor: float = 1e-8

    def __post_init__(self) -> None:
        checked = {
            "window": whole("--window", self.window, 2),
            "k": real("--k", self.k, 0.0, low_open=True),
            "min_points": whole("--min-points", self.min_points, 1),
            "merge_gap": whole("--merge-gap", self.merge_gap, 0),
            "rel_floor": real("rel_floor", self.rel_floor, 0.0),
            "abs_floor": real("abs_floor", self.abs_floor, 0.0, low_open=True),
        }
        checked["min_history"] = whole("min_history", self.min_history, 1)
        if checked["window"] < checked["min_history"]:
            raise SettingsError(
                f"--window must be at least min_history ({checked['min_history']}) logged points, "
                f"not {checked['window']}"
            )
        for name, value in checked.items():
            object.__setattr__(self, name, value)


def short_trace_warning(n_points: int, params: SpikeParams = SpikeParams()) -> str | None:
    """What a trace of ``n_points`` logged points cannot show under ``params`` (None when it is long enough).

    With fewer points than the window, every point is judged against all the
    points before it; with ``min_history`` points or fewer, none can be flagged.
    """
    if n_points <= params.min_history:
        return (
            f"only {n_points} logged points; the rule needs more than {params.min_history} "
            "to flag any, so 0 spikes here means the trace is too short to judge"
        )
    if n_points < params.window:
        return (
            f"{n_points} logged points, fewer than the window ({params.window}): each point is judged against "
            f"the points before it, and the first {params.min_history} are never flagged"
        )
    return None


def robust_baseline(values: np.ndarray, params: SpikeParams = SpikeParams()) -> tuple[np.ndarray, np.ndarray]:
    """Trailing-window median ``b`` and floored robust scale ``s`` for every point (NaN where too little history)."""
    v = np.asarray(values, dtype=np.float64)
    n, w = len(v), params.window
    baseline = np.full(n, np.nan)
    mad = np.full(n, np.nan)
    for i in range(params.min_history, min(w, n)):
        head = v[:i]
        baseline[i] = np.median(head)
        mad[i] = np.median(np.abs(head - baseline[i]))
    if n > w:
        windows = sliding_window_view(v[:-1], w)  # row j holds v[j : j+w], the window of point j+w
        for lo in range(0, len(windows), _CHUNK):
            block = windows[lo : lo + _CHUNK]
            med = np.median(block, axis=1)
            baseline[w + lo : w + lo + len(block)] = med
            mad[w + lo : w + lo + len(block)] = np.median(np.abs(block - med[:, None]), axis=1)
    scale = np.maximum(np.maximum(MAD_TO_STD * mad, params.rel_floor * np.abs(baseline)), params.abs_floor)
    return baseline, scale


def _events(flags: np.ndarray, merge_gap: int) -> list[tuple[int, int]]:
    """(first, last) flagged index of each event after merging across small gaps."""
    idx = np.flatnonzero(flags)
    if len(idx) == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) - 1 > merge_gap)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], [idx[-1]]])
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def detect_spikes(steps: np.ndarray, values: np.ndarray, params: SpikeParams = SpikeParams()) -> pl.DataFrame:
    """Spikes of one trace (see the module docstring for the rule); one row per spike, ``SPIKE_SCHEMA``.

    ``steps`` must be strictly increasing and ``values`` finite (as
    ``read_training_log`` returns them).
    """
    steps = np.asarray(steps, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    if steps.shape != v.shape or steps.ndim != 1:
        raise LdwError(f"steps and values must be 1-D of one length, got {steps.shape} and {v.shape}")
    if len(steps) > 1 and np.any(np.diff(steps) <= 0):
        raise LdwError("spike detection needs strictly increasing steps")
    if not np.all(np.isfinite(v)):
        raise LdwError("spike detection needs finite values (drop NaN/inf first)")
    baseline, scale = robust_baseline(v, params)
    with np.errstate(invalid="ignore"):
        flags = np.nan_to_num(v - baseline, nan=-np.inf) > params.k * np.nan_to_num(scale, nan=np.inf)
    rows = []
    for first, last in _events(flags, params.merge_gap):
        if last - first + 1 < params.min_points:
            continue
        peak = first + int(np.argmax(v[first : last + 1]))
        magnitude = float(v[peak] - baseline[first])
        rows.append(
            {
                "spike_id": len(rows),
                "step_start": int(steps[first]),
                "step_peak": int(steps[peak]),
                "step_end": int(steps[last + 1]) if last + 1 < len(steps) else None,
                "baseline": float(baseline[first]),
                "peak_value": float(v[peak]),
                "magnitude": magnitude,
                "magnitude_mads": magnitude / float(scale[first]),
            }
        )
    return pl.DataFrame(rows, schema=SPIKE_SCHEMA)
