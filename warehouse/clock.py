"""Timestamps as stored in the catalog."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Current UTC time without tzinfo (DuckDB TIMESTAMP)."""
    return datetime.now(UTC).replace(tzinfo=None)
