"""Start the explorer: ``streamlit run`` of the installed app script on a warehouse, bound to localhost by default.

``ldw app`` supervises the Streamlit server it starts: SIGTERM, SIGHUP or
SIGINT stop the server (SIGTERM, then SIGKILL after ``STOP_GRACE_S``) before
``ldw app`` returns, and a server that dies ends ``ldw app`` with its exit
code (128 + N when signal N killed it). On Linux the server also gets SIGTERM
if ``ldw app`` itself is killed outright (``PR_SET_PDEATHSIG``), so it is
never left serving on its own.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from ldw.warehouse import Warehouse

APP_MAIN = Path(__file__).resolve().parent / "main.py"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
STOP_GRACE_S = 10.0
POLL_S = 0.5  # how often the supervisor looks whether a stopped server has gone yet
PR_SET_PDEATHSIG = 1


def streamlit_command(warehouse: Path, port: int, host: str) -> list[str]:
    """The command line that serves the app (headless, no file watcher, no usage stats)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_MAIN),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
        "--theme.base",
        "light",
        "--theme.primaryColor",
        "#475569",
        "--",
        "--warehouse",
        str(Path(warehouse).resolve()),
    ]


def launch(warehouse: Path, port: int = 8501, host: str = "127.0.0.1") -> int:
    """Serve the explorer on ``host:port`` until interrupted; returns streamlit's exit code.

    Opening the warehouse first checks it is one (a clear error otherwise).
    It is opened read-only, like every query of the app: the app never
    writes, so it serves a warehouse on a read-only mount, and its views (paths
    relative to the folder) read a moved or copied folder as it is.
    """
    Warehouse.open(Path(warehouse), read_only=True)
    process = subprocess.Popen(streamlit_command(Path(warehouse), port, host), preexec_fn=_die_with_parent)
    return supervise(process)


def _die_with_parent() -> None:
    """In the server's process, before exec: ask Linux for SIGTERM when its parent (``ldw app``) dies."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def exit_code(returncode: int) -> int:
    """A child's return code as a shell reports it: 128 + N when signal N ended it."""
    return 128 - returncode if returncode < 0 else returncode


def supervise(process: subprocess.Popen) -> int:
    """Wait for the server; a stop signal stops it first. Returns the exit code ``ldw app`` ends with.

    After SIGTERM, SIGHUP or SIGINT the server gets SIGTERM (SIGKILL if it is
    still running ``STOP_GRACE_S`` later) and its own exit code is returned;
    the previous signal handlers are restored afterwards.
    """
    received: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        if process.poll() is None:
            process.terminate()

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    deadline = None
    try:
        while True:
            try:
                returncode = process.wait(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                if received and deadline is None:
                    deadline = time.monotonic() + STOP_GRACE_S
                if deadline is not None and time.monotonic() > deadline:
                    process.kill()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received and returncode in (-int(signal.SIGTERM), -int(signal.SIGINT)):
        return 0  # the server ended as asked
    return exit_code(returncode)
