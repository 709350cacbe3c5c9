"""Starting the app as a real server for the browser and launcher tests: a free port, waiting for health."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

HEALTH_TIMEOUT_S = 120


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_healthy(url: str) -> bool:
    """Whether a Streamlit server answers its health check at ``url``."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.read() == b"ok"
    except OSError:
        return False


def wait_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    """Wait until the server answers, failing with its log if it exits or never answers."""
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the app exited with {process.returncode}:\n{log.read_text()}")
        if is_healthy(url):
            return
        time.sleep(0.5)
    pytest.fail(f"the app did not answer at {url} within {HEALTH_TIMEOUT_S} s:\n{log.read_text()}")
