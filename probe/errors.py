"""Errors raised on the model side."""


class ProbeError(Exception):
    """A checkpoint or tokenizer could not be loaded or scored; the message names the path."""
