"""URL query-string state: parsing is lenient, writing is minimal and round-trips."""

from __future__ import annotations

from ldw.app.state import AppState, parse_spike_key, read_state, spike_key, state_params, write_state


def test_defaults_for_missing_and_malformed_values() -> None:
    assert read_state({}) == AppState()
    state = read_state({"page": "nope", "token": "12a", "x": "cubic", "runs": ""})
    assert state == AppState()


def test_round_trip_through_params() -> None:
    state = AppState(page="tokens", runs=("seed0", "seed2"), token=42, spike="seed0~loss~3", xscale="linear")
    params = state_params(state)
    assert params == {"page": "tokens", "runs": "seed0,seed2", "token": "42", "spike": "seed0~loss~3", "x": "linear"}
    assert read_state(params) == state


def test_repeated_keys_take_the_last_value() -> None:
    assert read_state({"token": ["3", "7"]}).token == 7


def test_write_state_removes_stale_keys_and_keeps_unchanged_ones() -> None:
    params = {"page": "spikes", "spike": "a~loss~1", "token": "5", "junk": "1"}
    write_state(params, AppState(page="tokens", token=5))
    assert params == {"page": "tokens", "token": "5"}


def test_spike_keys_allow_tildes_in_run_ids() -> None:
    key = spike_key("run~a", "grad_norm", 12)
    assert parse_spike_key(key) == ("run~a", "grad_norm", 12)
    assert parse_spike_key("seed0~loss~x") is None
    assert parse_spike_key(None) is None
