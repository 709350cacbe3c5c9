"""The app never writes: ``ldw app`` serves a warehouse on a read-only mount, and a session leaves it byte-identical.

The launcher and a session over every page run in one process tree; where
this machine allows a private mount namespace (``unshare``), inside it with the
warehouse bind-mounted read-only. Either way every file of the warehouse,
the catalog included, has the same bytes afterwards.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from ldw.testing import SyntheticInfo

SESSION = """
import json, os, signal, subprocess, sys, time, urllib.request
from streamlit.testing.v1 import AppTest
from ldw.app.launch import APP_MAIN
from ldw.app.state import PAGES

root, port, log = sys.argv[1], sys.argv[2], sys.argv[3]
with open(log, "w") as out:
    server = subprocess.Popen([sys.executable, "-m", "ldw", "app", root, "--port", port],
                              stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
healthy, deadline = False, time.monotonic() + 120
while not healthy and server.poll() is None and time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
            healthy = response.read() == b"ok"
    except OSError:
        time.sleep(0.3)
os.environ["LDW_WAREHOUSE"] = root
errors = {}
for page in PAGES:
    at = AppTest.from_file(str(APP_MAIN), default_timeout=120)
    at.query_params["page"] = page
    errors[page] = [str(e.value) for e in at.run().exception]
if server.poll() is None:
    os.killpg(server.pid, signal.SIGINT)
    server.wait(timeout=60)
print(json.dumps({"healthy": healthy, "errors": errors}))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` and the sha256 of its bytes."""
    files = (p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _read_only_mounts(probe: Path) -> bool:
    """Whether this machine lets a process bind-mount a folder read-only in a private namespace."""
    probe.mkdir()
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && ! touch "$1/x" 2>/dev/null'
    try:
        done = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(probe)], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def test_the_app_serves_a_read_only_warehouse_and_writes_nothing(synthetic: SyntheticInfo, tmp_path: Path) -> None:
    root = tmp_path / "warehouse"
    shutil.copytree(synthetic.root, root)
    before = _snapshot(root)
    command = [sys.executable, "-c", SESSION, str(root), str(_free_port()), str(tmp_path / "server.log")]
    if _read_only_mounts(tmp_path / "probe"):
        mount = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
        command = ["unshare", "-rm", "sh", "-c", mount, "sh", str(root), *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["healthy"], (tmp_path / "server.log").read_text()[-3000:]
    assert result["errors"] == {page: [] for page in result["errors"]} and result["errors"]
    assert _snapshot(root) == before
