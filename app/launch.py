"""Start the explorer: ``streamlit run`` of the installed app script on a warehouse, bound to localhost by default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ldw.warehouse import Warehouse

APP_MAIN = Path(__file__).resolve().parent / "main.py"


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
    process = subprocess.Popen(streamlit_command(Path(warehouse), port, host))
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return process.wait()
