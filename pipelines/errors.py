"""Errors raised by the pipelines, and the one-line form of any exception for user-facing messages.

This module imports nothing from ``ldw``: the model side (``ldw.probe``) and the
storage side (``ldw.warehouse``), which know nothing of each other or of the
pipelines, use :func:`first_line` too.
"""


class LdwError(Exception):
    """A user-facing failure: the message names the file or run and what is wrong (``ldw`` exits 1)."""


class SettingsError(LdwError, ValueError):
    """A setting is malformed, out of range or unusable here; refused before anything is written.

    The command line reports it like a usage error: one line, exit code 2.
    """


class LdwWarning(UserWarning):
    """A result was computed but deserves care (too few checkpoints, a leaky reference corpus); the message says why."""


def first_line(exc: BaseException) -> str:
    """``ExceptionType: first line of its message`` (just the type when the message is empty)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
