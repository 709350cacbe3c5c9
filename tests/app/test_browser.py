"""End to end in a real headless Chromium: the launcher serves the app; a user finds a token and sees its curves
beside the training traces, opens a spike's trace window and its tokens, and jumps back to the explorer.

Needs Debian's ``chromium`` at /usr/bin/chromium and the ``playwright`` Python
package (its own browser download is not used). Screenshots land in the test's
tmp dir.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ldw.testing import SyntheticInfo
from tests.app.serving import free_port, wait_healthy

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
TIMEOUT_MS = 120_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (pip install playwright)")


@pytest.fixture(scope="module")
def server(synthetic: SyntheticInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app served by ``ldw.app.launch.launch`` on a free port; the server's process group is ended after."""
    port = free_port()
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
        wait_healthy(url, process, log)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


SETTLED_WITH_PLOTS = """([minPlots, minTraces]) => {
    const running = document.querySelector('[data-testid=stStatusWidgetRunningIcon]');
    const stale = document.querySelector('[data-stale=true]');
    const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
    return !running && !stale && plots.length >= minPlots && (plots[0].data || []).length >= minTraces
        && plots.every(p => p.getBoundingClientRect().height > 0 && (p.data || []).length > 0);
}"""


def _wait_settled_with_plot(page, min_traces: int, min_plots: int = 1) -> None:
    """Wait until the script run is over (no running icon, no stale element) and drawn figures are on the page.

    A figure that exists is not enough: under load Streamlit re-renders after the
    first paint, and a node captured before that is detached (or faded as stale)
    by the time it is screenshotted. Two settled polls in a row rule out the gap
    between a click and the start of its script run.
    """
    for _ in range(2):
        page.wait_for_function(SETTLED_WITH_PLOTS, arg=[min_plots, min_traces])
        page.wait_for_timeout(300)


def _plot_trace_counts(page) -> list[int]:
    return page.evaluate(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => (d.data || []).length)"
    )


def _layout(page, index: int = 0) -> dict:
    """hovermode, hoversubplots and the shape labels of the index-th figure, as the browser holds them."""
    return page.evaluate(
        """(i) => { const p = document.querySelectorAll('.js-plotly-plot')[i];
            return {hovermode: p.layout.hovermode, hoversubplots: p.layout.hoversubplots,
                    labels: (p.layout.shapes || []).map(s => (s.label || {}).text).filter(t => t)}; }""",
        index,
    )


def test_token_curves_beside_the_traces_and_a_spike_round_trip(server: str, tmp_path: Path) -> None:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1500})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{server}/?page=tokens")
            box = page.get_by_label("token text", exact=True).and_(page.locator("input[type=text]"))
            box.fill("the")
            box.press("Enter")
            picker = page.get_by_role("combobox", name="open a result")
            picker.click()
            page.get_by_role("option").first.click()
            _wait_settled_with_plot(page, 3 + 9)  # 3 runs' raw curves, and their loss, grad-norm and lr panels
            chart = page.locator(".js-plotly-plot").first
            page.screenshot(path=str(tmp_path / "token-explorer.png"), full_page=True)
            chart.screenshot(path=str(tmp_path / "token-curves-and-traces.png"))
            assert "token=" in page.url and "page=tokens" in page.url
            text = chart.inner_text()
            for title in ("surprisal (bits)", "loss (nats)", "gradient norm", "learning rate", "checkpoints"):
                assert title in text
            layout = _layout(page)
            assert layout["hovermode"] == "x unified" and layout["hoversubplots"] == "axis"
            assert any("loss #0" in t for t in layout["labels"]) and not any("▶" in t for t in layout["labels"])

            page.get_by_text("Spikes", exact=True).click()
            page.get_by_role("heading", name="The traces around the spike").wait_for()
            _wait_settled_with_plot(page, 1, min_plots=2)  # the trace window and the risers
            page.screenshot(path=str(tmp_path / "spikes.png"), full_page=True)
            window = _layout(page, 0)["labels"]
            assert any(t.endswith("(before)") for t in window) and any(t.endswith("(after)") for t in window)
            assert page.get_by_role("heading", name="Tokens that got worse across it").is_visible()
            assert "page=spikes" in page.url and "spike=" in page.url

            page.get_by_role("button", name="Open in explorer").click()
            page.wait_for_url("**page=tokens**")
            page.get_by_role("heading", name="Token explorer").wait_for()
            _wait_settled_with_plot(page, 3 + 9)
            assert "spike=" in page.url and "token=" in page.url
            chosen = [t for t in _layout(page)["labels"] if "▶" in t]
            assert len(chosen) == 1  # the spike the user came from, highlighted
            page.locator(".js-plotly-plot").first.screenshot(path=str(tmp_path / "token-with-spike.png"))

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
    assert (tmp_path / "token-curves-and-traces.png").stat().st_size > 10_000
