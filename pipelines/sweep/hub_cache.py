"""Housekeeping in the Hugging Face cache: remove what a sweep downloaded, and partial downloads left by a kill.

The cache (``HF_HUB_CACHE``) keeps each file once, as ``blobs/<etag>``, with a symlink
``snapshots/<commit>/<file>`` per revision that holds it. A revision's download is removed by
unlinking its snapshot entries and every blob no other snapshot links to (duplicate weights in
two revisions share one blob). huggingface_hub downloads into ``blobs/<etag>.<id>.incomplete``
and renames the file when complete; a process killed mid-download leaves that part behind.
"""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

from filelock import FileLock, Timeout

from ldw.ingest.hub import cache_folder_root


def remove_downloads(entries: list[Path]) -> None:
    """Remove snapshot entries (and their blobs, unless another snapshot of the repository links to them)."""
    for entry in entries:
        repo = entry.parent.parent.parent  # <repo>/snapshots/<commit>/<file>
        if entry.is_symlink():
            blob = entry.resolve()
            entry.unlink()
            if not _linked_from(repo / "snapshots", blob):
                blob.unlink(missing_ok=True)
        elif entry.exists():
            entry.unlink()  # a cache without symlinks holds the file itself
        with suppress(OSError):
            entry.parent.rmdir()  # only once the snapshot folder is empty


def remove_partial_downloads(repo_folder: Path) -> list[Path]:
    """Delete ``blobs/*.incomplete`` of one repository that no running download holds; what was deleted.

    huggingface_hub holds ``.locks/<repo>/<etag>.lock`` while it downloads a blob, so a part
    whose lock can be taken at once belongs to a process that is gone.
    """
    removed: list[Path] = []
    locks = Path(cache_folder_root()) / ".locks" / repo_folder.name
    for part in sorted((repo_folder / "blobs").glob("*.incomplete")):
        etag = part.name.split(".", 1)[0]
        locks.mkdir(parents=True, exist_ok=True)
        try:
            with FileLock(locks / f"{etag}.lock", timeout=0):
                part.unlink(missing_ok=True)
                removed.append(part)
        except Timeout:
            continue
    return removed


def _linked_from(snapshots: Path, blob: Path) -> bool:
    """Whether any snapshot entry under ``snapshots`` still links to ``blob``."""
    for folder, _, names in os.walk(snapshots):
        for name in names:
            path = Path(folder, name)
            if path.is_symlink() and path.resolve() == blob:
                return True
    return False


class DownloadLedger:
    """The cache entries a sweep downloaded and has not removed yet, listed in a file (one path a line).

    An entry is listed before its download starts and unlisted once removed, so a sweep killed in
    between leaves it listed, and the next sweep with the same ledger removes it before it starts.
    Only one thread of one process uses a ledger (the prefetch thread of a local sweep).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[Path]:
        """The listed entries."""
        if not self.path.is_file():
            return []
        return [Path(line) for line in self.path.read_text().splitlines() if line]

    def add(self, entry: Path) -> None:
        """List one entry (durably) before it is downloaded."""
        with self.path.open("a") as handle:
            handle.write(f"{entry}\n")
            handle.flush()
            os.fsync(handle.fileno())

    def discard(self, entries: list[Path]) -> None:
        """Unlist entries; the ledger file goes once empty."""
        left = [e for e in self.entries() if e not in set(entries)]
        if left:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(f"{e}\n" for e in left))
            os.replace(tmp, self.path)
        else:
            self.path.unlink(missing_ok=True)

    def remove_leftovers(self) -> list[Path]:
        """Remove from the cache what an earlier, killed sweep downloaded and left listed; what was removed."""
        left = [e for e in self.entries() if e.is_symlink() or e.exists()]
        remove_downloads(left)
        self.path.unlink(missing_ok=True)
        return left
