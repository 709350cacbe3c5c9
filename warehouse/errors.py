"""Errors raised by the storage layer."""


class WarehouseError(Exception):
    """A warehouse operation failed; the message names the file and the problem."""
