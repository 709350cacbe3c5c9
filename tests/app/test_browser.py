"""End to end in a real headless Chromium: the launcher serves the app, a user finds a token and sees its curves.

Needs Debian's ``chromium`` at /usr/bin/chromium and the ``playwright`` Python
package (its own browser download is not used). Screenshots land in the test's
tmp dir.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ldw.testing import SyntheticInfo

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (pip install playwright)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the app exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the app did not answer at {url} within 90 s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(synthetic: SyntheticInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app served by ``ldw.app.launch.launch`` on a free port; the server's process group is ended after."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    code = (
        "import sys; from pathlib import Path; from ldw.app.launch import launch; "
        "raise SystemExit(launch(Path(sys.argv[1]), port=int(sys.argv[2])))"
    )
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", code, str(synthetic.root), str(port)],
            cwd=log.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


SETTLED_WITH_PLOT = """(minTraces) => {
    const running = document.querySelector('[data-testid=stStatusWidgetRunningIcon]');
    const stale = document.querySelector('[data-stale=true]');
    const plot = document.querySelector('.js-plotly-plot');
    return !running && !stale && plot !== null && (plot.data || []).length >= minTraces
        && plot.getBoundingClientRect().height > 0;
}"""


def _wait_settled_with_plot(page, min_traces: int) -> None:
    """Wait until the script run is over (no running icon, no stale element) and a drawn figure is on the page.

    A figure that exists is not enough: under load Streamlit re-renders after the
    first paint, and a node captured before that is detached (or faded as stale)
    by the time it is screenshotted. Two settled polls in a row rule out the gap
    between a click and the start of its script run.
    """
    for _ in range(2):
        page.wait_for_function(SETTLED_WITH_PLOT, arg=min_traces)
        page.wait_for_timeout(300)


def _plot_trace_counts(page) -> list[int]:
    return page.evaluate(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => (d.data || []).length)"
    )


def test_find_a_token_and_see_its_curves_and_the_traces(server: str, tmp_path: Path) -> None:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1300})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{server}/?page=tokens")
            box = page.get_by_label("token text", exact=True).and_(page.locator("input[type=text]"))
            box.fill("the")
            box.press("Enter")
            picker = page.get_by_role("combobox", name="open a result")
            picker.click()
            page.get_by_role("option").first.click()
            _wait_settled_with_plot(page, 3)
            chart = page.locator(".js-plotly-plot").first
            page.screenshot(path=str(tmp_path / "token-explorer.png"))
            chart.screenshot(path=str(tmp_path / "token-curves.png"))
            assert "token=" in page.url and "page=tokens" in page.url
            assert min(_plot_trace_counts(page)) >= 3  # one raw series per run, at least
            assert "surprisal (bits)" in chart.inner_text()

            page.get_by_text("Runs overview").click()
            page.get_by_role("heading", name="Training traces").wait_for()
            _wait_settled_with_plot(page, 9)
            page.screenshot(path=str(tmp_path / "overview.png"))
            traces = page.locator(".js-plotly-plot").first
            traces.screenshot(path=str(tmp_path / "traces.png"))
            assert "page=overview" in page.url
            assert _plot_trace_counts(page)[0] >= 9  # 3 runs x (loss, grad_norm, lr) at least
            assert "learning rate" in traces.inner_text()
        finally:
            browser.close()
    assert (tmp_path / "token-curves.png").stat().st_size > 10_000
