"""Errors raised on the model side."""

from ldw.errors import SettingsError


class ProbeError(Exception):
    """A checkpoint or tokenizer could not be loaded or scored; the message names the path."""


class DeviceError(ProbeError, SettingsError):
    """The device asked for is malformed or not on this machine (a setting: the command line exits 2)."""
