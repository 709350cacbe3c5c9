"""Checks every verb's typed settings share: whole numbers, real numbers, choices and device names.

Each check returns the value in its plain Python type (a NumPy integer becomes
an ``int``, so settings stay JSON-ready) or raises :class:`SettingsError` naming
the option as the command line spells it. The settings classes call them in
``__post_init__``, so the command line and the Python API refuse the same values
before any file is read or written.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable

from ldw.errors import SettingsError

# Sizes and counts end up in int32 columns (positions, token ids, sequence lengths) or torch shapes.
MAX_COUNT = 2**31 - 1
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def whole(option: str, value: object, low: int = 0, high: int = MAX_COUNT) -> int:
    """``value`` as an int in ``[low, high]`` (bools and non-integral numbers are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SettingsError(f"{option} must be a whole number, not {value!r}")
    number = int(value)
    if number < low:
        raise SettingsError(f"{option} must be at least {low}, not {number}")
    if number > high:
        raise SettingsError(f"{option} must be at most {high}, not {number}")
    return number


def optional_whole(option: str, value: object, low: int = 0, high: int = MAX_COUNT) -> int | None:
    """Like :func:`whole`, with None passed through (an option left unset)."""
    return None if value is None else whole(option, value, low, high)


def real(
    option: str,
    value: object,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float within the bounds (open bounds exclude their end point)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SettingsError(f"{option} must be a number, not {value!r}")
    number = float(value)
    below = number <= low if low_open else number < low
    above = number >= high if high_open else number > high
    if not math.isfinite(number) or below or above:
        raise SettingsError(f"{option} must be {_range_text(low, high, low_open, high_open)}, not {number}")
    return number


def _range_text(low: float, high: float, low_open: bool, high_open: bool) -> str:
    """``a finite number in (0, 1]``, ``a finite number > 0`` and the like."""
    if math.isinf(low) and math.isinf(high):
        return "a finite number"
    if math.isinf(high):
        return f"a finite number {'>' if low_open else '>='} {low:g}"
    if math.isinf(low):
        return f"a finite number {'<' if high_open else '<='} {high:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def choice(option: str, value: object, choices: Iterable[str]) -> str:
    """``value`` when it is one of ``choices``."""
    allowed = tuple(choices)
    if value not in allowed:
        raise SettingsError(f"{option} must be one of {', '.join(allowed)}, not {value!r}")
    return str(value)


def device_name(option: str, value: object) -> str:
    """A device spelled ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (whether it exists is checked where it is used)."""
    if not isinstance(value, str) or not _DEVICE.match(value):
        raise SettingsError(f"{option} must be auto, cpu, cuda or cuda:N, not {value!r}")
    return value
