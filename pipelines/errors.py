"""Errors raised by the pipelines; the CLI prints them as one line."""


class LdwError(Exception):
    """A user-facing failure: the message names the file or run and what is wrong."""
