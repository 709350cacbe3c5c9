"""Where the sweep gets a checkpoint: a folder on disk, or a revision streamed from the Hugging Face Hub.

:func:`fetch_checkpoint` gives a :class:`Fetched` (a local folder the loader reads) or the
one-line reason the checkpoint cannot be had. A hub revision is fetched by its commit, as
ingest listed it: config.json and the weight files only (a ``.bin`` is then read by the same
loader, with ``weights_only``, as a local one). Files already in the Hugging Face cache are used
as they are, with no request; with ``HF_HUB_OFFLINE=1`` only they are. Each downloaded LFS file
is checked against the sha256 the Hub listed. A dropped or truncated download is resumed by
huggingface_hub itself (5 times, 1 s apart); when that fails too, the whole fetch is tried again
after a backoff, ``attempts`` times in all. ``Fetched.release`` removes what was downloaded
unless the weights are to be kept; what was in the cache before stays.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from ldw.ingest.discover import WEIGHT_SUFFIXES
from ldw.ingest.hub import HubCheckpoint, cache_folder, hub_error
from ldw.sweep.hub_cache import DownloadLedger, remove_downloads, remove_partial_downloads

BACKOFF_S = 1.0
READ_CHUNK = 8 << 20


@dataclass
class Fetched:
    """A checkpoint available as a local folder; ``downloaded`` lists the cache entries this fetch created."""

    folder: Path
    downloaded: list[Path] = field(default_factory=list)
    keep: bool = True
    ledger: DownloadLedger | None = None

    def warm(self) -> None:
        """Read the weight files once, so a load that follows comes from the page cache, not the disk."""
        for path in sorted(self.folder.iterdir()):
            if path.suffix in WEIGHT_SUFFIXES and path.is_file():
                with path.open("rb") as handle:
                    while handle.read(READ_CHUNK):
                        pass

    def release(self) -> None:
        """Remove the downloaded files from the cache unless they are kept."""
        if not self.keep:
            remove_downloads(self.downloaded)
            if self.ledger is not None:
                self.ledger.discard(self.downloaded)
        self.downloaded = []


class ChecksumError(OSError):
    """A downloaded file's sha256 differs from the one the Hub listed."""


def fetch_checkpoint(
    path: str,
    hub: HubCheckpoint | None,
    keep_weights: bool = False,
    attempts: int = 3,
    ledger: DownloadLedger | None = None,
    backoff_s: float = BACKOFF_S,
) -> Fetched | str:
    """The checkpoint as a local folder, or the one-line reason it cannot be had.

    ``ledger`` lists each download (unless the weights are kept) until it is removed again.
    """
    if hub is None:
        return Fetched(Path(path))
    return _fetch_hub(hub, keep_weights, attempts, None if keep_weights else ledger, backoff_s)


def _fetch_hub(
    ck: HubCheckpoint, keep: bool, attempts: int, ledger: DownloadLedger | None, backoff_s: float
) -> Fetched | str:
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import HTTPError
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars("huggingface_hub.http_get")  # the sweep draws its own progress
    remove_partial_downloads(cache_folder(ck.repo_id))
    snapshot = cache_folder(ck.repo_id) / "snapshots" / ck.commit
    cached = {n for n in ck.files if isinstance(try_to_load_from_cache(ck.repo_id, n, revision=ck.commit), str)}
    fetched = Fetched(snapshot, [], keep, ledger)
    for attempt in range(1, attempts + 1):
        try:
            for name, sha in ck.files.items():
                entry = snapshot / name
                if name not in cached and entry not in fetched.downloaded:
                    if ledger is not None:
                        ledger.add(entry)
                    fetched.downloaded.append(entry)
                path = Path(hf_hub_download(ck.repo_id, name, revision=ck.commit))  # cached: no request
                if name not in cached and sha is not None:
                    _verify(path, sha)
            return fetched
        except (HTTPError, OSError) as exc:
            if not _permanent(exc) and attempt < attempts:
                time.sleep(backoff_s * 2 ** (attempt - 1))
                continue
            fetched.release()
            tries = f" (tried {attempt} times)" if attempt > 1 else ""
            return hub_error(exc, ck.path) + tries
    raise AssertionError("unreachable: the last attempt returns")


def _verify(entry: Path, sha256: str) -> None:
    """Raise ChecksumError (after removing the file from the cache) when ``entry`` is not the listed file."""
    digest = hashlib.sha256()
    with entry.open("rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        remove_downloads([entry])
        raise ChecksumError(f"{entry.name} has sha256 {digest.hexdigest()[:12]}, the Hub lists {sha256[:12]}")


def _permanent(exc: BaseException) -> bool:
    """Whether trying again cannot help: no such repository, revision or file, no access, or offline."""
    from huggingface_hub import errors

    gone = (
        errors.RepositoryNotFoundError,
        errors.RevisionNotFoundError,
        errors.EntryNotFoundError,
        errors.DisabledRepoError,
        errors.OfflineModeIsEnabled,
    )
    if isinstance(exc, gone):
        return True
    if isinstance(exc, errors.HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        return 400 <= status < 500 and status not in (408, 429)
    return False
