"""Fit the LR-annealing loss law on warehouse runs and predict other schedules.

Writes two derived tables:

- ``lr_law_fit``: one row — runs used, the parameters (L0, A, alpha, C), the
  momentum decay, Huber delta, fit window and the fit error (RMSE, MAPE %) on
  the fitted points;
- ``lr_law_curves``: for every fitted run (``kind = 'fit'``) and every
  predicted schedule (``kind = 'predict'``): schedule, step, lr,
  predicted_loss and observed_loss (null where unknown).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ldw.dynamics.lr_law import DECAY, HUBER_DELTA, LawFit, LossCurve, curve_error, fit_law, predict_loss, warmup_end
from ldw.errors import LdwError
from ldw.ingest.training_logs import read_training_log
from ldw.train.lr_schedules import ScheduleSpec, generate, lr_per_step, parse_schedule_spec, read_lr_text
from ldw.warehouse import Warehouse
from ldw.warehouse.tables import polars_schema

CURVES_SCHEMA = polars_schema("lr_law_curves")


@dataclass(frozen=True)
class ScheduleFitResult:
    """The fit, the curves written to ``lr_law_curves`` and the error of every curve with observed loss."""

    fit: LawFit
    curves: pl.DataFrame
    errors: pl.DataFrame


def curve_from_traces(traces: pl.DataFrame, name: str, where: str) -> LossCurve:
    """A ``LossCurve`` from long-format traces (``step``, ``name``, ``value``) holding ``loss`` and ``lr``."""
    loss = traces.filter(pl.col("name") == "loss").sort("step")
    lr = traces.filter(pl.col("name") == "lr").sort("step")
    missing = [n for n, t in (("loss", loss), ("lr", lr)) if t.height == 0]
    if missing:
        raise LdwError(f"{where}: no {' or '.join(missing)} trace; the LR law needs both")
    last = int(max(loss["step"].max(), lr["step"].max()))
    lrs = lr_per_step(lr["step"].to_numpy(), lr["value"].to_numpy(), last)
    return LossCurve(name, lrs, loss["step"].to_numpy(), loss["value"].to_numpy())


def _run_curve(wh: Warehouse, run_id: str) -> LossCurve:
    traces = wh.traces(run_id)
    if traces.height == 0:
        raise LdwError(f"{wh.root}: run '{run_id}' has no traces (known runs: {', '.join(wh.run_ids()) or 'none'})")
    return curve_from_traces(traces, run_id, f"{wh.root}: run '{run_id}'")


def _even_steps(last: int, max_points: int) -> np.ndarray:
    """At most ``max_points`` distinct steps spread evenly over 1..last."""
    return np.unique(np.linspace(1, last, min(max_points, last)).round().astype(np.int64))


def _curve_rows(
    name: str, kind: str, fit: LawFit, lrs: np.ndarray, steps: np.ndarray, observed: np.ndarray | None, decay: float
) -> pl.DataFrame:
    pred = predict_loss(fit.params, lrs, decay)
    return pl.DataFrame(
        {
            "schedule": name,
            "kind": kind,
            "step": steps,
            "lr": lrs[steps],
            "predicted_loss": pred[steps],
            "observed_loss": observed if observed is not None else [None] * len(steps),
        },
        schema=CURVES_SCHEMA,
    )


def _predicted(wh: Warehouse, spec: ScheduleSpec, template: LossCurve) -> tuple[np.ndarray, LossCurve | None]:
    """LR sequence of a spec, plus the observed curve when the spec has one (a run or a training log)."""
    if spec.kind == "run":
        curve = _run_curve(wh, spec.name)
        return curve.lrs, curve
    if spec.kind == "file":
        path = Path(spec.text)
        if path.suffix.lower() == ".txt":
            return read_lr_text(path), None
        traces = read_training_log(path)
        if traces.filter(pl.col("name") == "loss").height == 0:
            lr = traces.filter(pl.col("name") == "lr")
            if lr.height == 0:
                raise LdwError(f"{path}: no lr trace to predict from")
            return lr_per_step(lr["step"].to_numpy(), lr["value"].to_numpy()), None
        curve = curve_from_traces(traces, spec.name, str(path))
        return curve.lrs, curve
    lrs = template.lrs
    return generate(spec, len(lrs) - 1, float(lrs.max()), warmup_end(lrs)), None


def fit_schedule_in_warehouse(
    warehouse_path: Path,
    run_ids: Sequence[str],
    predict: Sequence[str] = (),
    fit_from_fraction: float = 0.05,
    max_curve_points: int = 2000,
    decay: float = DECAY,
) -> ScheduleFitResult:
    """Fit the law on ``run_ids`` (jointly), predict each ``predict`` schedule, write both derived tables.

    ``predict`` items: ``constant``, ``cosine``, ``wsd``, ``multistep`` (with
    ``:key=value,...`` options; steps, peak LR and warmup default to the first
    fitted run's), ``run:RUN_ID`` (another run, with its observed loss) or a
    file (a training log, or ``.txt`` with one LR per line from step 0).
    ``decay`` is the momentum factor of S2 (the paper's 0.999; short runs of
    a few thousand steps may transfer better with 0.99, see
    ``benchmarks/lr_law_transfer.py``).
    """
    if not 0.0 <= decay < 1.0:
        raise LdwError(f"decay must be in [0, 1), got {decay}")
    if not run_ids:
        raise LdwError("name at least one run to fit the LR law on (--run)")
    wh = Warehouse.open(Path(warehouse_path))
    fitted = [_run_curve(wh, run_id) for run_id in run_ids]
    fit = fit_law(fitted, fit_from_fraction=fit_from_fraction, decay=decay)
    parts, errors = [], []
    for curve in fitted:
        parts.append(_curve_rows(curve.name, "fit", fit, curve.lrs, curve.steps, curve.loss, decay))
        errors.append((curve.name, "fit", *curve_error(fit.params, curve, decay)))
    for text in predict:
        spec = parse_schedule_spec(text)
        lrs, observed = _predicted(wh, spec, fitted[0])
        name = spec.name if spec.kind != "generator" else spec.text
        if observed is not None:
            parts.append(_curve_rows(name, "predict", fit, lrs, observed.steps, observed.loss, decay))
            errors.append((name, "predict", *curve_error(fit.params, observed, decay)))
        else:
            steps = _even_steps(len(lrs) - 1, max_curve_points)
            parts.append(_curve_rows(name, "predict", fit, lrs, steps, None, decay))
    curves = pl.concat(parts)
    p = fit.params
    fit_row = pl.DataFrame(
        schema=polars_schema("lr_law_fit"),
        data=[
            {
                "runs": ",".join(fit.curves),
                "L0": p.L0,
                "A": p.A,
                "alpha": p.alpha,
                "C": p.C,
                "decay": decay,
                "huber_delta": HUBER_DELTA,
                "fit_from_fraction": fit_from_fraction,
                "rmse": fit.rmse,
                "mape_pct": fit.mape_pct,
                "n_points": fit.n_points,
            }
        ],
    )
    settings = {"runs": list(run_ids), "predict": list(predict), "fit_from_fraction": fit_from_fraction, "decay": decay}
    with wh.replace_derived_tables({"lr_law_fit": settings, "lr_law_curves": settings}) as write:
        write["lr_law_fit"]("all", fit_row)
        write["lr_law_curves"]("all", curves)
    error_frame = pl.DataFrame(errors, schema=["schedule", "kind", "rmse", "mape_pct"], orient="row")
    return ScheduleFitResult(fit, curves, error_frame)
