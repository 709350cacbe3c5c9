"""One writer at a time: the warehouse's writer lock, which names its holder.

Every ``ldw`` command that writes a warehouse holds ``WAREHOUSE/writer.lock``
(an ``flock``) while it runs: exclusively, except sharded sweeps
(``--shard I/N``), which share it with the other shards of the same split so a
Slurm array sweeps in parallel; each shard ``I/N`` runs once, and shards of
different ``N`` never mix. Readers (``ldw status``, ``ldw doctor``, the app,
``sql``) never take it.

Each holder records who it is (pid, host, command, since when) in a file of
``writer.lock.holders/``, locked by the holder for as long as it lives, so a
command that finds the warehouse taken names the holder and, with ``wait``,
says why it waits. The kernel releases the locks of a process that dies (even
by SIGKILL), so a stale lock never blocks anyone: a record nobody holds is
stale, ignored and removed by the next writer.

``flock`` rather than the ``filelock`` package: sharded sweeps need a shared
mode, and the records need a lock of their own that outlives nothing.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ldw.warehouse.clock import utcnow
from ldw.warehouse.disk_errors import disk_reason
from ldw.warehouse.errors import WarehouseError

LOCK_FILE = "writer.lock"
HOLDERS_DIR = "writer.lock.holders"
ADMISSION_FILE = ".admission"
POLL_S = 0.25


@dataclass(frozen=True)
class Holder:
    """A process holding the writer lock, as its record says."""

    pid: int
    host: str
    command: str
    argv: str
    since: str
    shard: tuple[int, int] | None = None

    def describe(self) -> str:
        """``ldw metrics (pid 12 on node7, since 2025-05-01 12:00:01 UTC, for 3m05s: `ldw metrics -w wh`)``."""
        since = datetime.fromisoformat(self.since)
        running = max(0, int((utcnow() - since).total_seconds()))
        shard = f" --shard {self.shard[0]}/{self.shard[1]}" if self.shard else ""
        return (
            f"ldw {self.command}{shard} (pid {self.pid} on {self.host}, since {since:%Y-%m-%d %H:%M:%S} UTC, "
            f"for {running // 60}m{running % 60:02d}s: `{self.argv}`)"
        )

    def is_this_process(self) -> bool:
        """Whether the record is this process's own."""
        return self.pid == os.getpid() and self.host == socket.gethostname()


@dataclass
class _Held:
    fd: int
    record: Path
    record_fd: int
    count: int


_held: dict[Path, _Held] = {}
_guard = threading.Lock()


def process_command_line() -> str:
    """This process's command line as a user typed it (``ldw sweep -w wh``, ``python script.py``)."""
    argv = list(sys.argv) or ["python"]
    head = Path(argv[0]).name
    if head == "__main__.py":
        head = "python -m ldw"
    elif head.endswith(".py"):
        head = f"python {argv[0]}"
    return " ".join([head, shlex.join(argv[1:])]).strip()[:300]


def holders_of(root: Path) -> list[Holder]:
    """The live holders of ``root``'s writer lock (none when nobody writes); reads only."""
    return [holder for holder, _ in _records(Path(root) / HOLDERS_DIR)]


def _records(folder: Path) -> list[tuple[Holder, Path]]:
    """(holder, record file) of every record whose owner is alive, i.e. still holds the record's lock."""
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue  # released meanwhile
        try:
            if _try_flock(fd, fcntl.LOCK_SH):
                continue  # nobody holds it: its owner died
            with suppress(ValueError, json.JSONDecodeError, OSError):
                data = json.loads(os.pread(fd, 1 << 16, 0))
                shard = tuple(data["shard"]) if data.get("shard") else None
                holder = Holder(data["pid"], data["host"], data["command"], data["argv"], data["since"], shard)
                out.append((holder, path))
        finally:
            os.close(fd)
    return out


def _try_flock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def notify_stderr(message: str) -> None:
    """Print a notice (e.g. why a command waits) on stderr."""
    print(message, file=sys.stderr, flush=True)


@contextmanager
def writer_lock(
    root: Path,
    command: str,
    wait: bool = False,
    shard: tuple[int, int] | None = None,
    notify: Callable[[str], None] = notify_stderr,
) -> Iterator[None]:
    """Hold ``root``'s writer lock for the block: exclusively, or shared with other shards of ``shard``'s split.

    Taken already (by another process), it raises a WarehouseError naming the
    holder, or with ``wait`` says whom it waits for (through ``notify``, again
    whenever the holder changes) and waits. Nested use in one process is free.
    """
    key = Path(root).resolve()
    with _guard:
        held = _held.get(key)
        if held is not None:
            held.count += 1
    if held is None:
        held = _acquire(key, command, wait, shard, notify)
        with _guard:
            _held[key] = held
    try:
        yield
    finally:
        with _guard:
            held.count -= 1
            last = held.count == 0
            if last:
                del _held[key]
        if last:
            _release(held)


def _acquire(
    root: Path, command: str, wait: bool, shard: tuple[int, int] | None, notify: Callable[[str], None]
) -> _Held:
    try:
        fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        reason = disk_reason(exc) or f"cannot open the writer lock ({exc.strerror})"
        raise WarehouseError(f"{root / LOCK_FILE}: {reason}") from exc
    said = None
    try:
        while True:
            busy = _try_once(root, fd, command, shard)
            if isinstance(busy, _Held):
                return busy
            message = f"{root} is being written by {busy}"
            if not wait:
                raise WarehouseError(f"{message}; rerun with --wait to wait for it")
            if message != said:
                notify(f"waiting: {message}")
                said = message
            time.sleep(POLL_S)
    except BaseException:
        os.close(fd)
        raise


def _try_once(root: Path, fd: int, command: str, shard: tuple[int, int] | None) -> _Held | str:
    """Take the lock in the mode ``shard`` needs and record this process as holder; else who holds it."""
    if not _try_flock(fd, fcntl.LOCK_SH if shard else fcntl.LOCK_EX):
        holders = holders_of(root)
        return ", ".join(h.describe() for h in holders) if holders else "another ldw process (starting or stopping)"
    folder = root / HOLDERS_DIR
    folder.mkdir(exist_ok=True)
    # the admission lock makes checking the other shards and recording this one a single step
    admission = os.open(folder / ADMISSION_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(admission, fcntl.LOCK_EX)
        records = _records(folder)
        clash = _shard_clash([holder for holder, _ in records], shard) if shard else None
        if clash is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return clash
        _remove_stale(folder, {path for _, path in records})
        return _Held(fd, *_publish(folder, command, shard), 1)
    finally:
        os.close(admission)


def _shard_clash(holders: list[Holder], shard: tuple[int, int]) -> str | None:
    """Who already sweeps shard ``I/N``, or another split of the warehouse; None when ``shard`` may run."""
    for holder in holders:
        if holder.shard == shard:
            return f"{holder.describe()} (shard {shard[0]}/{shard[1]} runs once)"
        if holder.shard is not None and holder.shard[1] != shard[1]:
            return f"{holder.describe()} (concurrent shards must split the checkpoints the same way: same N)"
    return None


def _remove_stale(folder: Path, live: set[Path]) -> None:
    """Delete the records (and half-written ones) of holders that died."""
    for path in [*folder.glob("*.json"), *folder.glob(".*.tmp")]:
        if path in live:
            continue
        with suppress(FileNotFoundError):
            fd = os.open(path, os.O_RDONLY)
            try:
                if _try_flock(fd, fcntl.LOCK_EX):
                    path.unlink(missing_ok=True)
            finally:
                os.close(fd)


def _publish(folder: Path, command: str, shard: tuple[int, int] | None) -> tuple[Path, int]:
    """Write this process's holder record, locked by it until release (locked before it is visible)."""
    name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "argv": process_command_line(),
        "since": utcnow().isoformat(timespec="seconds"),
        "shard": list(shard) if shard else None,
    }
    tmp = folder / f".{name}.tmp"
    record_fd = -1
    try:
        record_fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        fcntl.flock(record_fd, fcntl.LOCK_EX)
        os.write(record_fd, json.dumps(record).encode())
        path = folder / f"{name}.json"
        os.replace(tmp, path)
    except OSError as exc:  # a full or read-only disk: one line naming the record, and no half record left
        if record_fd >= 0:
            os.close(record_fd)
        tmp.unlink(missing_ok=True)
        reason = disk_reason(exc) or f"cannot record the writer lock's holder ({exc.strerror})"
        raise WarehouseError(f"{tmp}: {reason}") from exc
    return path, record_fd


def _release(held: _Held) -> None:
    held.record.unlink(missing_ok=True)
    os.close(held.record_fd)
    os.close(held.fd)  # closing the descriptor releases the flock
