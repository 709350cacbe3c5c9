"""The launcher: a localhost headless streamlit command, a clear error on a non-warehouse, and (real processes)
stopping the server with `ldw app` and ending with the server's exit code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ldw.app.launch import APP_MAIN, exit_code, launch, streamlit_command
from ldw.warehouse import WarehouseError
from tests.app.serving import free_port, is_healthy, wait_healthy


def test_command_binds_localhost_headless_and_passes_the_warehouse(tmp_path: Path) -> None:
    cmd = streamlit_command(tmp_path / "wh", 8599, "127.0.0.1")
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4] == str(APP_MAIN)
    options = cmd[5 : cmd.index("--")]
    pairs = dict(zip(options[::2], options[1::2], strict=True))
    assert pairs["--server.address"] == "127.0.0.1" and pairs["--server.port"] == "8599"
    assert pairs["--server.headless"] == "true" and pairs["--browser.gatherUsageStats"] == "false"
    assert cmd[cmd.index("--") + 1 :] == ["--warehouse", str((tmp_path / "wh").resolve())]


def test_launch_refuses_a_folder_that_is_not_a_warehouse(tmp_path: Path) -> None:
    with pytest.raises(WarehouseError, match="not a warehouse"):
        launch(tmp_path)


def _children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (Linux /proc)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@contextmanager
def _serving(root: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, int, str]]:
    """``ldw app -w ROOT --port P`` as a real process: (it, the Streamlit server's pid, the URL).

    Whatever the test does, both processes are gone afterwards.
    """
    port = free_port()
    log = tmp_path / "ldw-app.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ldw", "app", "-w", str(root), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = None
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process, log)
        [server] = _children(process.pid)
        yield process, server, url
    finally:
        for pid in (process.pid, server):
            if pid is not None and _alive(pid):
                os.kill(pid, signal.SIGKILL)
        process.wait()


def _ended(process: subprocess.Popen) -> int:
    """The exit code of ``process`` (waits up to a minute)."""
    return process.wait(timeout=60)


linux_only = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")


@linux_only
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_stops_the_server_too(bare: Path, tmp_path: Path, stop: signal.Signals) -> None:
    with _serving(bare, tmp_path) as (process, server, url):
        assert _alive(server) and is_healthy(url)
        os.kill(process.pid, stop)  # to `ldw app` only, as a service manager or a closed terminal does
        assert _ended(process) == 0
        assert not _alive(server)  # not orphaned: gone with `ldw app`
        assert not is_healthy(url)


@linux_only
def test_a_server_crash_ends_ldw_app_with_its_exit_code(bare: Path, tmp_path: Path) -> None:
    with _serving(bare, tmp_path) as (process, server, _):
        os.kill(server, signal.SIGKILL)
        assert _ended(process) == 128 + signal.SIGKILL


def test_exit_codes_follow_the_shell_convention() -> None:
    assert exit_code(0) == 0 and exit_code(3) == 3 and exit_code(-signal.SIGSEGV) == 128 + signal.SIGSEGV
