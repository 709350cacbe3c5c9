"""Shareable state: the page, selected runs, token and spike live in the URL query string.

Every widget that changes one of these writes it back with :func:`write_state`,
so the address bar always holds a link that reopens the same view.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

PAGES = {
    "overview": "Runs overview",
    "tokens": "Token explorer",
    "population": "Population",
    "spikes": "Spikes",
    "schedules": "Schedules",
    "export": "Export",
}
XSCALES = ("log", "linear")


@dataclass(frozen=True)
class AppState:
    """What the URL says: page slug, selected runs (None = all), token, spike key and step axis."""

    page: str = "overview"
    runs: tuple[str, ...] | None = None
    token: int | None = None
    spike: str | None = None
    xscale: str = "log"


def _first(params: Mapping[str, Any], key: str) -> str | None:
    value = params.get(key)
    if isinstance(value, list):
        value = value[-1] if value else None
    return None if value in (None, "") else str(value)


def read_state(params: Mapping[str, Any]) -> AppState:
    """Parse query parameters leniently: unknown or malformed values fall back to defaults."""
    page = _first(params, "page")
    runs = _first(params, "runs")
    token = _first(params, "token")
    xscale = _first(params, "x")
    return AppState(
        page=page if page in PAGES else "overview",
        runs=tuple(r for r in runs.split(",") if r) if runs else None,
        token=int(token) if token is not None and token.isdigit() else None,
        spike=_first(params, "spike"),
        xscale=xscale if xscale in XSCALES else "log",
    )


def state_params(state: AppState) -> dict[str, str]:
    """The query parameters that encode ``state`` (defaults left out to keep links short)."""
    params = {"page": state.page}
    if state.runs is not None:
        params["runs"] = ",".join(state.runs)
    if state.token is not None:
        params["token"] = str(state.token)
    if state.spike:
        params["spike"] = state.spike
    if state.xscale != "log":
        params["x"] = state.xscale
    return params


def write_state(params: MutableMapping[str, Any], state: AppState) -> None:
    """Make ``params`` (``st.query_params``) hold exactly ``state``, touching only keys that changed."""
    wanted = state_params(state)
    for key in [k for k in params if k not in wanted]:
        del params[key]
    for key, value in wanted.items():
        if params.get(key) != value:
            params[key] = value


def spike_key(run_id: str, trace: str, spike_id: int) -> str:
    """URL form of one spike: ``RUN~TRACE~ID``."""
    return f"{run_id}~{trace}~{spike_id}"


def parse_spike_key(key: str | None) -> tuple[str, str, int] | None:
    """Inverse of :func:`spike_key`; None when malformed."""
    if not key:
        return None
    parts = key.rsplit("~", 2)
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    return parts[0], parts[1], int(parts[2])
