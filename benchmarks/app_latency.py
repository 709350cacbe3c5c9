"""Interaction latency of the explorer's queries on a synthetic warehouse at the Chang et al. scale.

Builds (or reuses, with ``--dir``) a warehouse of TOKENS x RUNS x CHECKPOINTS
through the Warehouse API (one surprisal file of TOKENS float32 per run and
checkpoint, plus every derived table the app reads, and optionally the
token-major ``token_curves_raw``), then times the app's query functions the
way a page calls them on a cache miss: each call opens its own read-only
connection. Token lookups are timed on distinct random tokens (median and
max); everything else is the median of ``--repeats`` calls. Targets: a
token's curves for all runs < 200 ms, population density views < 1 s.

    python -m benchmarks.app_latency                                   # 1M x 5 x 222 (~13 GB, long build)
    python -m benchmarks.app_latency --tokens 65536 --runs 2 --checkpoints 20 --dir /tmp/ldw-bench-small

``--first-render WAREHOUSE`` instead measures what a user waits for: ``ldw app
WAREHOUSE`` is started as a real server, and a headless Chromium (Debian's
/usr/bin/chromium, driven by Playwright) opens new sessions on it; each time is
from opening the URL to the page's first figure drawn with the script run
over. Target: under 5 s for the first page of a new session on the demo
warehouse (``ldw demo``).

    python -m benchmarks.app_latency --first-render ldw-demo

Prints a table and writes ``benchmarks/results/app_latency.json`` (the
first-render figures under ``first_render``; each mode keeps the other's).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ldw.app import population_queries as pop
from ldw.app import queries as q
from ldw.app import search_queries as sq
from ldw.app import token_queries as tq
from ldw.app.source import warehouse_version
from ldw.testing import SyntheticSpec, build_synthetic_warehouse, write_token_curves_raw
from ldw.warehouse import Warehouse

RESULTS = Path(__file__).resolve().parent / "results" / "app_latency.json"
CHROMIUM = Path("/usr/bin/chromium")
FIRST_RENDER_TARGET_S = 5.0
SETTLED = """() => {
    const plot = document.querySelector('.js-plotly-plot');
    return !document.querySelector('[data-testid=stStatusWidgetRunningIcon]')
        && !document.querySelector('[data-stale=true]') && plot !== null && (plot.data || []).length > 0;
}"""
SPEC_FILE = "benchmark_spec.json"
SEQ_LEN = 128


def spec_from_args(args: argparse.Namespace) -> SyntheticSpec:
    """Warehouse sizes: sequences of 128 tokens, every position but the first scored."""
    return SyntheticSpec(
        n_sequences=math.ceil(args.tokens / (SEQ_LEN - 1)),
        seq_len=SEQ_LEN,
        n_runs=args.runs,
        n_checkpoints=args.checkpoints,
        vocab_size=args.vocab,
        max_step=args.max_step,
        trace_every=args.trace_every,
        smoothed=not args.no_smoothed,
        top_n=1000,
    )


def ensure_warehouse(root: Path, spec: SyntheticSpec, token_major: bool) -> dict[str, Any]:
    """Build the warehouse unless ``root`` already holds one of the same spec; returns build facts."""
    wanted = {k: getattr(spec, k) for k in spec.__dataclass_fields__}
    marker = root / SPEC_FILE
    stored = json.loads(marker.read_text()) if marker.exists() else {}
    facts: dict[str, Any] = {k: v for k, v in stored.items() if k != "spec"}
    facts["built"] = False
    if stored.get("spec") != wanted:
        if (root / "catalog.duckdb").exists():
            raise SystemExit(f"{root}: holds a warehouse of another size; pass an empty --dir")
        start = time.perf_counter()
        build_synthetic_warehouse(root, spec, progress=True)
        facts = {"built": True, "build_s": round(time.perf_counter() - start, 1)}
    wh = Warehouse.open(root)
    if token_major and tq.raw_table_chunk(Warehouse.open(root, read_only=True)) is None:
        start = time.perf_counter()
        write_token_curves_raw(wh, chunk_tokens=32_768)
        facts["token_major_build_s"] = round(time.perf_counter() - start, 1)
    marker.write_text(json.dumps({"spec": wanted, **{k: v for k, v in facts.items() if k != "built"}}))
    size = sum(p.stat().st_size for p in (root / "parquet").rglob("*.parquet"))
    facts["parquet_gb"] = round(size / 1e9, 2)
    return facts


def timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """(result, milliseconds) of one call."""
    start = time.perf_counter()
    result = fn(*args)
    return result, (time.perf_counter() - start) * 1000


def over_tokens(fn: Callable[..., Any], wh: Warehouse, tokens: list[int], *rest: Any) -> dict[str, float]:
    """Median / max ms of ``fn(wh, token, *rest)`` over distinct tokens (each a cache miss in the app)."""
    times = [timed(fn, wh, t, *rest)[1] for t in tokens]
    return {"median_ms": statistics.median(times), "max_ms": max(times), "calls": len(times)}


def repeated(fn: Callable[..., Any], repeats: int, *args: Any) -> dict[str, float]:
    """Median / max ms of ``repeats`` identical calls."""
    times = [timed(fn, *args)[1] for _ in range(repeats)]
    return {"median_ms": statistics.median(times), "max_ms": max(times), "calls": len(times)}


def token_page(wh: Warehouse, token: int, runs: list[str], chunk: int | None) -> None:
    """Everything the token page queries for a newly selected token (vocabulary and table facts cached)."""
    row = tq.token_row(wh, token)
    tq.sequence_ids(wh, (row["seq_id"],))
    tq.raw_curves(wh, token, runs, chunk)
    tq.smoothed_curves(wh, token, runs)
    tq.token_metrics(wh, token)
    tq.crossrun_row(wh, token)
    tq.ngram_row(wh, token)


def measure(root: Path, repeats: int, n_tokens: int, seed: int) -> dict[str, dict[str, float]]:
    """Time every query family; keys name the query and its scope."""
    wh = Warehouse.open(root, read_only=True)
    runs = wh.run_ids()
    rng = np.random.default_rng(seed)
    tokens = [int(t) for t in rng.choice(wh.token_count(), size=repeats * 2, replace=False)]
    chunk = tq.raw_table_chunk(wh)
    final, freq = pop.Field("token_metrics", "final_surprisal"), pop.Field("ngram_stats", "log2_unigram_freq")
    out: dict[str, dict[str, float]] = {}
    out["token curves, all runs (surprisal files)"] = over_tokens(tq.raw_curves, wh, tokens, runs, None)
    if chunk is not None:
        out["token curves, all runs (token_curves_raw)"] = over_tokens(tq.raw_curves, wh, tokens, runs, chunk)
    out["smoothed G, all runs (token_curves_smoothed)"] = over_tokens(tq.smoothed_curves, wh, tokens, runs)
    out["token page, new token (all queries)"] = over_tokens(token_page, wh, tokens, runs, chunk)
    out["warehouse version"] = repeated(warehouse_version, repeats, root)
    out["table list"] = repeated(q.table_columns, repeats, wh)
    out["overview: run summary"] = repeated(Warehouse.run_summary, repeats, wh)
    out["overview: traces (3 x runs, bucketed)"] = repeated(
        q.traces_downsampled, repeats, wh, runs, ["loss", "grad_norm", "lr"], True
    )
    out["overview: checkpoints + spikes"] = repeated(
        lambda: (q.checkpoint_table(wh, runs), q.spikes(wh, runs)), repeats
    )
    out["search: token text, exact"] = repeated(sq.search_token_text, repeats, wh, " the", "exact", 200)
    out["search: token text, contains"] = repeated(sq.search_token_text, repeats, wh, "IN", "contains (any case)", 200)
    out["search: token id"] = repeated(sq.search_token_id, repeats, wh, 7, 200)
    out["search: rank one run (latest AoA)"] = repeated(sq.rank_tokens, repeats, wh, "latest_aoa", runs[0], 200)
    out["search: rank across runs (crossrun var)"] = repeated(
        sq.rank_tokens, repeats, wh, "most_variable_seeds", None, 200
    )
    out["search: vocabulary (once per version)"] = repeated(tq.vocab_texts, 1, wh)
    texts, build_ms = timed(sq.sequence_texts, wh)
    out["search: context index (once per version)"] = {"median_ms": build_ms, "max_ms": build_ms, "calls": 1}
    out["search: context text (indexed)"] = repeated(
        lambda: sq.hits_at(wh, *map(tuple, sq.context_matches(texts, " of the", sq.CONTEXT_TARGETS[1]))), repeats
    )
    final_range, freq_range = pop.field_range(wh, final), pop.field_range(wh, freq)
    out["population: field range (once per field and version)"] = repeated(pop.field_range, repeats, wh, final)
    out["population: histogram, all runs"] = repeated(pop.histogram, repeats, wh, final, None, final_range, 60)
    out["population: density + trend, freq x final, all runs"] = repeated(
        pop.density, repeats, wh, freq, final, None, freq_range, final_range, 80
    )
    out["population: density + trend, 2 of the runs"] = repeated(
        pop.density, repeats, wh, freq, final, runs[:2], freq_range, final_range, 80
    )
    out["population: mean curves by freq, 1 run, 65,536 tokens"] = repeated(
        pop.mean_curves_by_frequency, max(1, repeats // 2), wh, runs[0], min(65_536, n_tokens)
    )
    return out


ONE_CHART_APP = (
    "import plotly.graph_objects as go\nimport streamlit as st\n"
    "st.header('one chart')\nst.plotly_chart(go.Figure(go.Scatter(x=[1, 2, 3], y=[1, 3, 2])))\n"
)


def _time_page(context: Any, url: str) -> float:
    """Seconds from opening ``url`` in a new tab of ``context`` to its first figure drawn, the script run over."""
    page = context.new_page()
    try:
        page.set_default_timeout(300_000)
        start = time.perf_counter()
        page.goto(url)
        page.wait_for_function(SETTLED)
        return time.perf_counter() - start
    finally:
        page.close()


def _new_session(browser: Any, url: str) -> float:
    """:func:`_time_page` in a fresh browser context: no cookies, no cached scripts, like a first visit."""
    context = browser.new_context(viewport={"width": 1500, "height": 1200})
    try:
        return _time_page(context, url)
    finally:
        context.close()


@contextmanager
def _serving(command: list[str]) -> Iterator[tuple[str, float]]:
    """Run ``command`` (a Streamlit server; ``{port}`` is filled in) until healthy: (URL, seconds to healthy)."""
    import socket
    import subprocess
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    server = subprocess.Popen(
        [part.format(port=port) for part in command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read() == b"ok":
                        break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit(f"{command[:4]} exited with {server.returncode}") from None
                time.sleep(0.2)
        yield url, time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=60)


def first_render(warehouse: Path, repeats: int) -> dict[str, Any]:
    """Time new browser sessions on ``ldw app WAREHOUSE`` (see the module docstring).

    Also times, the same way, a minimal Streamlit page with one three-point
    Plotly chart: the floor that loading Streamlit's and Plotly's scripts sets
    on this machine at this load, so the app's own cost can be told apart.
    """
    import sys
    import tempfile

    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {"warehouse": str(Path(warehouse).resolve()), "target_s": FIRST_RENDER_TARGET_S}
    command = [sys.executable, "-m", "ldw", "app", "-w", str(warehouse), "--port", "{port}"]
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
        try:
            with _serving(command) as (url, ready):
                out["server_ready_s"] = round(ready, 2)
                sessions = [_new_session(browser, url) for _ in range(repeats)]
                out["first_session_s"] = round(sessions[0], 2)
                out["later_new_sessions_s"] = [round(t, 2) for t in sessions[1:]]
                returning = browser.new_context(viewport={"width": 1500, "height": 1200})
                _time_page(returning, url)
                out["returning_session_s"] = round(_time_page(returning, url), 2)  # scripts in the browser cache
                returning.close()
                out["token_page_new_session_s"] = round(_new_session(browser, f"{url}/?page=tokens&token=100"), 2)
                out["spikes_page_new_session_s"] = round(_new_session(browser, f"{url}/?page=spikes"), 2)
            script = Path(tmp) / "one_chart.py"
            script.write_text(ONE_CHART_APP)
            minimal = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", "{port}"]
            with _serving([*minimal, "--server.headless", "true"]) as (url, _):
                out["one_chart_page_new_session_s"] = round(min(_new_session(browser, url) for _ in range(2)), 2)
        finally:
            browser.close()
    out["load_average_1m"] = round(os.getloadavg()[0], 2)
    return out


def _save(key: str, value: Any) -> None:
    """Write one key of the results file, keeping the others."""
    stored = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    stored[key] = value
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(stored, indent=2) + "\n")


def main() -> None:
    """Parse arguments, build or reuse the warehouse, time, print and save."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/ldw-app-bench"), help="warehouse to build or reuse")
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--checkpoints", type=int, default=222)
    parser.add_argument("--vocab", type=int, default=50_277)
    parser.add_argument("--max-step", type=int, default=143_000)
    parser.add_argument("--trace-every", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-smoothed", action="store_true", help="skip token_curves_smoothed (saves ~4 GB)")
    parser.add_argument("--no-token-major", action="store_true", help="skip the token-major token_curves_raw")
    parser.add_argument("--first-render", type=Path, metavar="WAREHOUSE", help="time new browser sessions instead")
    args = parser.parse_args()
    if args.first_render is not None:
        figures = first_render(args.first_render, max(2, args.repeats))
        for name, value in figures.items():
            print(f"{name:32s} {value}")
        _save("first_render", figures)
        print(f"wrote {RESULTS}")
        return
    spec = spec_from_args(args)
    facts = ensure_warehouse(args.dir, spec, token_major=not args.no_token_major)
    results = measure(args.dir, args.repeats, spec.n_tokens, seed=0)
    size = f"{spec.n_tokens:,} tokens x {spec.n_runs} runs x {spec.n_checkpoints} checkpoints"
    print(
        f"\napp latency on {size} ({facts['parquet_gb']} GB of Parquet), {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'query':62s} {'median ms':>10s} {'max ms':>10s} {'calls':>6s}")
    for name, row in results.items():
        print(f"{name:62s} {row['median_ms']:10.1f} {row['max_ms']:10.1f} {row['calls']:6d}")
    stored = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                **({"first_render": stored["first_render"]} if "first_render" in stored else {}),
                "size": {
                    "tokens": spec.n_tokens,
                    "runs": spec.n_runs,
                    "checkpoints": spec.n_checkpoints,
                    "surprisal_files": spec.n_runs * spec.n_checkpoints,
                },
                "build": facts,
                "machine": {
                    "cpus": os.cpu_count(),
                    "load_average_1m": os.getloadavg()[0],
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "targets_ms": {"token curves, all runs": 200, "population density": 1000},
                "results": results,
            },
            indent=2,
        )
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
