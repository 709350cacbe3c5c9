"""LR-annealing law: areas against a direct loop, parameter recovery, schedule transfer, scipy cross-check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.optimize import least_squares

from ldw.dynamics.lr_law import HUBER_DELTA, LawParams, LossCurve, effective_lrs, fit_law, law_areas, predict_loss
from ldw.dynamics.lr_law_store import fit_schedule_in_warehouse
from ldw.errors import LdwError
from ldw.train.lr_schedules import (
    constant_schedule,
    cosine_schedule,
    generate,
    multistep_schedule,
    parse_schedule_spec,
    sequence_schedule,
    wsd_schedule,
)
from ldw.warehouse import Warehouse

TRUE = LawParams(L0=2.0, A=1.2, alpha=0.45, C=0.6)
T, PEAK, WARMUP = 3000, 3e-3, 50


def _synthetic(name: str, lrs: np.ndarray, seed: int, noise: float = 0.002) -> LossCurve:
    steps = np.arange(1, len(lrs))
    rng = np.random.default_rng(seed)
    return LossCurve(name, lrs, steps, predict_loss(TRUE, lrs)[steps] * np.exp(rng.normal(0.0, noise, len(steps))))


def test_areas_match_a_direct_loop() -> None:
    lrs = cosine_schedule(400, 1e-3, warmup=30)
    eta = [lrs.max() if s < 30 else lrs[s] for s in range(len(lrs))]  # warmup at the maximum
    s1, s2, m, acc1, acc2 = [], [], 0.0, 0.0, 0.0
    for i in range(len(eta)):
        m = 0.0 if i == 0 else 0.999 * m + (eta[i - 1] - eta[i])
        acc1 += eta[i]
        acc2 += m
        s1.append(acc1)
        s2.append(acc2)
    got1, got2 = law_areas(lrs)
    np.testing.assert_allclose(got1, s1, rtol=1e-12)
    np.testing.assert_allclose(got2, s2, rtol=1e-9, atol=1e-15)
    assert got2[:31].max() == 0.0  # no annealing during warmup or at the peak
    np.testing.assert_array_equal(effective_lrs(lrs)[:30], np.full(30, 1e-3))


def test_schedules() -> None:
    cos = cosine_schedule(100, 1.0, warmup=10, min_ratio=0.1)
    assert len(cos) == 101 and cos[0] == 0.0 and cos[5] == pytest.approx(0.5) and cos[10] == 1.0
    assert cos[100] == pytest.approx(0.1) and cos[55] == pytest.approx(0.55)
    wsd = wsd_schedule(100, 1.0, warmup=10, decay_fraction=0.2)
    assert np.all(wsd[10:81] == 1.0) and wsd[90] == pytest.approx(0.5) and wsd[100] == 0.0
    ms = multistep_schedule(100, 1.0, milestones=(0.5, 0.75), gamma=0.1)
    assert ms[49] == 1.0 and ms[50] == pytest.approx(0.1) and ms[75] == pytest.approx(0.01)
    assert np.all(constant_schedule(20, 2.0, warmup=4)[4:] == 2.0)
    seq = sequence_schedule(np.array([1.0, 0.5, 0.25]), warmup=2)
    np.testing.assert_allclose(seq, [0.0, 0.5, 1.0, 0.5, 0.25])
    spec = parse_schedule_spec("multistep:milestones=0.5/0.75,gamma=0.1")
    np.testing.assert_allclose(generate(spec, 100, 1.0, 0), ms)
    with pytest.raises(LdwError, match="not a file, run:ID or one of"):
        parse_schedule_spec("linear")
    with pytest.raises(LdwError, match="not a number"):
        parse_schedule_spec("cosine:min_ratio=abc")


def test_recovers_known_parameters() -> None:
    curves = [
        _synthetic("constant", constant_schedule(T, PEAK, WARMUP), 0),
        _synthetic("wsd", wsd_schedule(T, PEAK, WARMUP, decay_fraction=0.2), 1),
    ]
    fit = fit_law(curves)
    # 0.2% multiplicative noise on 5,700 points: each parameter within 2%
    np.testing.assert_allclose(fit.params.as_array(), TRUE.as_array(), rtol=0.02)
    assert fit.mape_pct < 0.3 and fit.curves == ("constant", "wsd")


def test_predicts_cosine_after_fitting_constant_and_wsd() -> None:
    curves = [
        _synthetic("constant", constant_schedule(T, PEAK, WARMUP), 0),
        _synthetic("wsd", wsd_schedule(T, PEAK, WARMUP, decay_fraction=0.2), 1),
    ]
    fit = fit_law(curves)
    cosine = cosine_schedule(T, PEAK, WARMUP)
    predicted = predict_loss(fit.params, cosine)[WARMUP:]
    truth = predict_loss(TRUE, cosine)[WARMUP:]
    assert np.max(np.abs(predicted - truth) / truth) < 0.005


def test_fit_agrees_with_scipy_least_squares_huber() -> None:
    """scipy's least_squares with loss='huber', f_scale=delta minimises the same Huber sum another way."""
    curves = [
        _synthetic("constant", constant_schedule(1000, PEAK, 20), 2, noise=0.01),
        _synthetic("cosine", cosine_schedule(1000, PEAK, 20), 3, noise=0.01),
    ]
    fit = fit_law(curves)
    start = int(np.ceil(0.05 * 1000))
    data = []
    for curve in curves:
        s1, s2 = law_areas(curve.lrs)
        keep = curve.steps >= start
        data.append((s1[curve.steps[keep]], s2[curve.steps[keep]], np.log(curve.loss[keep])))
    n = len(data[0][0])
    assert all(len(d[0]) == n for d in data)  # equal points per curve: the per-curve mean is a plain sum / n

    def residuals(x: np.ndarray) -> np.ndarray:
        return np.concatenate([np.log(x[0] + x[1] * s1 ** -x[2] - x[3] * s2) - log_y for s1, s2, log_y in data])

    ref = least_squares(
        residuals,
        TRUE.as_array(),
        loss="huber",
        f_scale=HUBER_DELTA,
        bounds=(0.0, np.inf),
        xtol=1e-14,
        ftol=1e-14,
        gtol=1e-14,
        max_nfev=20_000,
    )
    ref_objective = ref.cost / n / HUBER_DELTA**2  # cost = sum of Huber(r); ours = sum / n / delta^2
    assert fit.objective <= ref_objective * (1 + 1e-6)
    np.testing.assert_allclose(fit.params.as_array(), ref.x, rtol=1e-3)


def _write_run(wh: Warehouse, run_id: str, curve: LossCurve, every: int = 1) -> None:
    steps = curve.steps[::every]
    frame = pl.concat(
        [
            pl.DataFrame({"step": steps, "name": "loss", "value": curve.loss[::every]}),
            pl.DataFrame({"step": np.arange(1, len(curve.lrs)), "name": "lr", "value": curve.lrs[1:]}),
        ]
    )
    wh.write_traces(run_id, frame)


def test_fit_schedule_in_warehouse(tmp_path: Path) -> None:
    wh = Warehouse.create(tmp_path / "wh")
    cosine = cosine_schedule(T, PEAK, WARMUP)
    _write_run(wh, "const", _synthetic("const", constant_schedule(T, PEAK, WARMUP), 0))
    _write_run(wh, "wsd", _synthetic("wsd", wsd_schedule(T, PEAK, WARMUP), 1), every=10)
    _write_run(wh, "cos", _synthetic("cos", cosine, 2))
    lr_file = tmp_path / "schedule.txt"
    lr_file.write_text("\n".join(str(v) for v in multistep_schedule(T, PEAK, WARMUP)))
    cos_log = tmp_path / "cos_log.jsonl"
    cos = _synthetic("cos", cosine, 2)
    cos_log.write_text(
        "".join(
            f'{{"step": {s}, "loss": {v}, "learning_rate": {cosine[s]}}}\n'
            for s, v in zip(cos.steps, cos.loss, strict=True)
        )
    )
    result = fit_schedule_in_warehouse(
        tmp_path / "wh",
        ["const", "wsd"],
        predict=["run:cos", "cosine", "wsd:decay_fraction=0.1", str(lr_file), str(cos_log)],
    )
    errors = {row["schedule"]: row for row in result.errors.iter_rows(named=True)}
    assert set(errors) == {"const", "wsd", "cos", "cos_log.jsonl"}
    assert errors["cos_log.jsonl"]["mape_pct"] == pytest.approx(errors["cos"]["mape_pct"])
    assert errors["cos"]["kind"] == "predict" and errors["cos"]["mape_pct"] < 0.5
    fit_row = wh.query("SELECT * FROM lr_law_fit")
    assert fit_row["runs"].to_list() == ["const,wsd"]
    assert fit_row["alpha"][0] == pytest.approx(TRUE.alpha, rel=0.05)
    curves = wh.query("SELECT * FROM lr_law_curves")
    kinds = dict(curves.group_by("schedule").agg(pl.col("kind").first()).iter_rows())
    assert kinds == {
        "const": "fit",
        "wsd": "fit",
        "cos": "predict",
        "cosine": "predict",
        "wsd:decay_fraction=0.1": "predict",
        "schedule.txt": "predict",
        "cos_log.jsonl": "predict",
    }
    generated = curves.filter(pl.col("schedule") == "cosine").sort("step")
    assert generated["observed_loss"].null_count() == generated.height and generated.height == 2000
    # the generated cosine uses the first fitted run's length, peak and warmup: the same as the 'cos' run
    np.testing.assert_allclose(generated["lr"].to_numpy(), cosine[generated["step"].to_numpy()])
    observed = curves.filter(pl.col("schedule") == "cos")
    assert observed["observed_loss"].null_count() == 0
    assert wh.derived_params("lr_law_curves")["predict"][0] == "run:cos"


def test_fit_schedule_needs_loss_and_lr(tmp_path: Path) -> None:
    wh = Warehouse.create(tmp_path / "wh")
    wh.write_traces("r", pl.DataFrame({"step": [1, 2], "name": ["loss", "loss"], "value": [3.0, 2.9]}))
    with pytest.raises(LdwError, match="run 'r': no lr trace"):
        fit_schedule_in_warehouse(tmp_path / "wh", ["r"])
    with pytest.raises(LdwError, match="run 'x' has no traces"):
        fit_schedule_in_warehouse(tmp_path / "wh", ["x"])
    with pytest.raises(LdwError, match="decay must be in"):
        fit_schedule_in_warehouse(tmp_path / "wh", ["r"], decay=1.0)
