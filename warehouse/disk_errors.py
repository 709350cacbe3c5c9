"""Recognise a full or read-only disk behind a failed write, from Python, pyarrow or DuckDB alike."""

from __future__ import annotations

import errno
import os
import re

DISK_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the warehouse is not writable",
}
ADVICE = {
    errno.ENOSPC: "free some space and rerun: finished work is kept",
    errno.EDQUOT: "free some space and rerun: finished work is kept",
    errno.EROFS: "remount it read-write or copy it to a writable folder",
}
QUOTED_PATH = re.compile(r'"(/[^"]+)"')


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def disk_failure(exc: BaseException) -> tuple[str | None, str] | None:
    """``(path, reason)`` when ``exc`` or what caused it is a full or read-only disk, else None.

    ``reason`` is one line, e.g. "the disk is full (No space left on device):
    free some space and rerun: finished work is kept". ``path`` is the file
    named by the error (an OSError's filename or the quoted path in a DuckDB
    message), or None when the error names none. DuckDB reports the
    operating system's message without an errno, so it is matched by text.
    """
    for error in _chain(exc):
        for code, reason in DISK_REASONS.items():
            text = os.strerror(code)
            if isinstance(error, OSError) and error.errno is not None:
                if error.errno != code:
                    continue
                path = error.filename if isinstance(error.filename, str) else None
            elif text in str(error):
                found = QUOTED_PATH.search(str(error))
                path = found.group(1) if found else None
            else:
                continue
            return path, f"{reason} ({text}); {ADVICE[code]}"
    return None


def disk_reason(exc: BaseException) -> str | None:
    """The one-line reason of :func:`disk_failure` (e.g. "the disk is full (...)"), or None."""
    failure = disk_failure(exc)
    return failure[1] if failure else None
