"""``compute_metrics`` on a real warehouse: chunked results equal the whole-matrix metrics."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from ldw.cli.main import app
from ldw.curves.aoa import chance_bits
from ldw.curves.config import MetricsConfig
from ldw.curves.metrics import run_metrics
from ldw.curves.store import compute_metrics
from ldw.errors import LdwError, LdwWarning
from ldw.testing import build_curves_warehouse, chang_steps
from ldw.warehouse import Warehouse

VOCAB = 320
N_TOKENS = 300


@pytest.fixture(scope="module")
def computed(tmp_path_factory: pytest.TempPathFactory):
    steps = chang_steps(13, max_step=20_000)
    runs = {"seed0": steps, "seed1": steps, "seed2": np.delete(steps, 7), "stub": steps[:2]}
    root = tmp_path_factory.mktemp("metrics") / "wh"
    matrices = build_curves_warehouse(root, runs, N_TOKENS, VOCAB)
    with pytest.warns(LdwWarning):  # a first pass, replaced by the second
        compute_metrics(root, MetricsConfig(chunk_tokens=N_TOKENS), progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = MetricsConfig(window=0.3, last_k=3, sigmoid=True, chunk_tokens=128)
        summary = compute_metrics(root, config, progress=False)
    issued = [str(w.message) for w in caught if issubclass(w.category, LdwWarning)]
    return root, runs, matrices, summary, issued


def test_summary_and_recorded_parameters(computed):
    root, runs, _, summary, issued = computed
    assert summary.runs == ["seed0", "seed1", "seed2"] and list(summary.skipped_runs) == ["stub"]
    assert summary.chunks == 3 and summary.tokens == N_TOKENS
    params = Warehouse.open(root).derived_params("token_metrics")
    assert params["window"] == 0.3 and params["last_k"] == 3 and params["aoa_grid_points"] == 1000
    assert params["n_splines"] == 25 and params["sigmoid"] and "curve_fit" in params["sigmoid_rule"]
    assert params["chance_bits"] == pytest.approx(np.log2(VOCAB))
    assert params["steps"]["seed2"] == [int(s) for s in runs["seed2"] if s > 0]
    assert params["crossrun_steps"] == [int(s) for s in runs["seed2"] if s > 0]
    for run_id in summary.runs:
        steps = runs[run_id]
        expected = [int(s) for s in steps[steps >= 0.7 * steps[-1]][-3:]]
        assert params["window_steps"][run_id] == expected
        assert params["window_checkpoints"][run_id] == len(expected)
        assert params["positive_checkpoints"][run_id] == int(np.sum(steps > 0))
        assert min(params["admissible_lams"][run_id]) > 1e-3 and max(params["admissible_lams"][run_id]) == 1e3
    for key in ("window_rule", "lambda_rule", "few_checkpoints_rule", "aoa_rule", "acquired_rule", "crossrun_rule"):
        assert params[key]
    # 12 or 11 positive checkpoints: fewer than 37 -> a warning per run; every window holds at most 3 (< 5)
    assert issued == summary.warnings == params["warnings"]
    assert sum("fewer than 37" in w for w in issued) == 3
    assert [w.split(":")[0] for w in issued if "window holds" in w] == ["run seed0", "run seed1", "run seed2"]


def test_token_metrics_equal_whole_matrix_metrics(computed):
    root, runs, matrices, *_ = computed
    wh = Warehouse.open(root)
    table = wh.query("SELECT * FROM token_metrics ORDER BY run_id, token_idx")
    assert table.height == 3 * N_TOKENS
    for run_id in ("seed0", "seed2"):
        rows = table.filter(table["run_id"] == run_id)
        expected = run_metrics(runs[run_id], matrices[run_id], chance_bits(VOCAB), 0.3, 3, sigmoid=True)
        np.testing.assert_array_equal(rows["token_idx"].to_numpy(), np.arange(N_TOKENS))
        np.testing.assert_allclose(rows["final_surprisal"].to_numpy(), expected.final_surprisal, rtol=1e-12)
        np.testing.assert_allclose(rows["within_run_var"].to_numpy(), expected.within_run_var, rtol=1e-12)
        np.testing.assert_allclose(rows["aoa_log10_step"].to_numpy(), expected.aoa.log10_step, rtol=1e-12)
        np.testing.assert_allclose(rows["forgettability"].to_numpy(), expected.forgettability, rtol=1e-9)
        np.testing.assert_allclose(rows["gam_lambda"].to_numpy(), expected.lam)
        assert rows["acquired"].to_list() == expected.aoa.acquired.tolist()
        sig = rows["sigmoid_aoa_log10_step"].to_numpy()
        # flat or 12-point noisy curves are ill-posed for the sigmoid: their fit is decided by rounding (test_aoa.py)
        assert np.mean(np.abs(sig - expected.sigmoid_aoa.log10_step) < 1e-9) > 0.9
        assert np.all((sig >= np.log10(expected.steps[0])) & (sig <= np.log10(expected.steps[-1])))
        np.testing.assert_allclose(rows["sigmoid_aoa_step"].to_numpy(), 10.0**sig)


def test_crossrun_metrics_and_stored_curves(computed):
    root, runs, matrices, *_ = computed
    wh = Warehouse.open(root)
    curves = wh.query("SELECT * FROM token_curves_smoothed ORDER BY run_id, token_idx")
    assert curves.height == 3 * N_TOKENS
    smoothed = {}
    for run_id in ("seed0", "seed1", "seed2"):
        g = np.array(curves.filter(curves["run_id"] == run_id)["g_bits"].to_list())
        expected = run_metrics(runs[run_id], matrices[run_id], chance_bits(VOCAB)).smoothed
        np.testing.assert_allclose(g, expected, rtol=1e-6)
        shared = np.isin(runs[run_id][runs[run_id] > 0], runs["seed2"])
        smoothed[run_id] = expected[:, shared]
    pairs = itertools.combinations(smoothed.values(), 2)
    brute = np.mean([np.mean((a - b) ** 2, axis=1) for a, b in pairs], axis=0)
    cross = wh.query("SELECT * FROM crossrun_metrics ORDER BY token_idx")
    assert cross.height == N_TOKENS and set(cross["n_runs"].to_list()) == {3}
    np.testing.assert_allclose(cross["crossrun_var"].to_numpy(), brute, rtol=1e-9)
    metrics = wh.query("SELECT token_idx, avg(final_surprisal) AS m FROM token_metrics GROUP BY 1 ORDER BY 1")
    np.testing.assert_allclose(cross["mean_final_surprisal"].to_numpy(), metrics["m"].to_numpy(), rtol=1e-12)
    assert "mean_sigmoid_aoa_log10_step" in cross.columns
    acquired = wh.query("SELECT token_idx, sum(acquired::INT) AS n FROM token_metrics GROUP BY 1 ORDER BY 1")
    assert cross["n_runs_acquired"].to_list() == acquired["n"].to_list()


def test_warehouse_without_swept_runs_is_refused(tmp_path: Path):
    build_curves_warehouse(tmp_path / "wh", {"only": np.array([0, 1, 2])}, N_TOKENS, VOCAB)
    with pytest.raises(LdwError, match="no run has 4\\+ swept checkpoints"):
        compute_metrics(tmp_path / "wh", progress=False)


def test_token_major_raw_curves_equal_the_surprisal_view(computed):
    root, runs, *_ = computed
    wh = Warehouse.open(root)
    params = wh.derived_params("token_curves_raw")
    assert params["chunk_tokens"] == 128 and set(params["steps"]) == {"seed0", "seed1", "seed2"}
    for token in (0, 127, 128, N_TOKENS - 1):
        part = f"{wh.derived_location('token_curves_raw')}/chunk-{token // 128:06d}.parquet"
        raw = pl.read_parquet(part).filter(pl.col("token_idx") == token).with_columns(pl.col("run_id").cast(pl.String))
        view = wh.query(
            "SELECT run_id, step, token_idx, surprisal_bits FROM surprisal "
            "WHERE token_idx = ? AND run_id <> 'stub' ORDER BY run_id, step",
            [token],
        )
        assert raw.select(view.columns).equals(view)


def test_cli_prints_each_warning_on_one_line(tmp_path: Path):
    build_curves_warehouse(tmp_path / "wh", {"short": chang_steps(13, max_step=20_000)}, 60, VOCAB)
    result = CliRunner().invoke(app, ["metrics", "-w", str(tmp_path / "wh"), "-q", "--window", "1", "--last-k", "4"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("warning ")]
    assert len(lines) == 2 and "window holds 4 checkpoint(s)" in lines[0] and "fewer than 37" in lines[1]
    params = Warehouse.open(tmp_path / "wh").derived_params("token_metrics")
    assert params["window_steps"]["short"] == [int(s) for s in chang_steps(13, max_step=20_000)[-4:]]
