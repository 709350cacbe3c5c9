"""Timestamps as stored in the catalog."""

from datetime import datetime, timezone


def utcnow() -> datetime:
    """Current UTC time without tzinfo (DuckDB TIMESTAMP)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)
