"""The launcher: a localhost headless streamlit command, and a clear error before starting on a non-warehouse."""

from __future__ import annotations

from pathlib import Path

import pytest

from ldw.app.launch import APP_MAIN, launch, streamlit_command
from ldw.warehouse import WarehouseError


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
