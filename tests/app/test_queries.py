"""The app's queries against a synthetic warehouse, checked with independent readers (pyarrow, NumPy, Polars)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from ldw.app import analysis_queries as aq
from ldw.app import population_queries as pop
from ldw.app import queries as q
from ldw.app import search_queries as sq
from ldw.app import token_queries as tq
from ldw.app.source import Source, warehouse_version
from ldw.testing import SyntheticInfo, write_token_curves_raw
from ldw.warehouse import Warehouse
from ldw.warehouse.checkpoint_surprisal import checkpoint_surprisal


@pytest.fixture()
def wh(synthetic: SyntheticInfo) -> Warehouse:
    return Warehouse.open(synthetic.root, read_only=True)


@pytest.fixture()
def eval_tokens(synthetic: SyntheticInfo) -> pl.DataFrame:
    return pl.read_parquet(next((synthetic.root / "parquet" / "eval").glob("*/eval_tokens.parquet")))


def test_tables_and_run_summary(wh: Warehouse, synthetic: SyntheticInfo) -> None:
    tables = q.table_columns(wh)
    for name in (
        "token_metrics",
        "crossrun_metrics",
        "token_curves_smoothed",
        "ngram_stats",
        "spikes",
        "spike_tokens",
        "lr_law_fit",
        "lr_law_curves",
        "surprisal",
        "traces",
    ):
        assert name in tables
    assert "token_curves_raw" not in tables
    summary = wh.run_summary()
    assert summary["run_id"].to_list() == synthetic.run_ids
    assert summary["done"].to_list() == [len(synthetic.steps)] * 3
    assert summary["pending"].to_list() == [0, 0, 0]
    assert int(summary["tokens_scored"][0]) == synthetic.n_tokens * len(synthetic.steps)


def test_raw_curves_match_the_surprisal_files(wh: Warehouse, synthetic: SyntheticInfo) -> None:
    token = 123
    curves = tq.raw_curves(wh, token, ["seed0", "seed2"], None)
    assert curves["run_id"].unique().sort().to_list() == ["seed0", "seed2"]
    for run_id in ("seed0", "seed2"):
        run = curves.filter(pl.col("run_id") == run_id)
        assert run["step"].to_list() == synthetic.steps.tolist()
        expected = [checkpoint_surprisal(wh, run_id, int(s))[token] for s in synthetic.steps]
        np.testing.assert_allclose(run["bits"].to_numpy(), expected, rtol=1e-6)


def test_token_major_table_gives_the_same_curves_and_detects_staleness(
    synthetic: SyntheticInfo, tmp_path: Path
) -> None:
    root = tmp_path / "copy"
    shutil.copytree(synthetic.root, root)
    writable = Warehouse.open(root)
    assert write_token_curves_raw(writable, chunk_tokens=256) == 3
    wh = Warehouse.open(root, read_only=True)
    assert tq.raw_table_chunk(wh) == 256
    for token in (0, 255, 256, 599):
        fast = tq.raw_curves(wh, token, synthetic.run_ids, 256)
        slow = tq.raw_curves(wh, token, synthetic.run_ids, None)
        assert fast.height == len(synthetic.run_ids) * len(synthetic.steps) and fast.equals(slow)
    assert tq.raw_curves(wh, 300, ["seed1"], 256)["run_id"].unique().to_list() == ["seed1"]
    writable.execute("UPDATE checkpoints SET status = 'pending' WHERE run_id = 'seed1' AND step = 1")
    assert tq.raw_table_chunk(wh) is None


def test_smoothed_curves_unnest_at_the_recorded_steps(wh: Warehouse, synthetic: SyntheticInfo) -> None:
    curves = tq.smoothed_curves(wh, 300, ["seed1"])
    part = pq.read_table(f"{wh.derived_location('token_curves_smoothed')}/chunk-000000.parquet")
    rows = part.to_pylist()
    expected = next(r["g_bits"] for r in rows if r["run_id"] == "seed1" and r["token_idx"] == 300)
    assert curves["step"].to_list() == synthetic.steps[synthetic.steps > 0].tolist()
    np.testing.assert_allclose(curves["bits"].to_numpy(), expected, rtol=1e-6)


def test_traces_downsampling_averages_buckets(wh: Warehouse) -> None:
    raw = wh.query("SELECT step, value FROM traces WHERE run_id = 'seed0' AND name = 'loss' ORDER BY step")
    full = q.traces_downsampled(wh, ["seed0"], ["loss"], False, max_points=10_000)
    assert full.height == raw.height and full["points"].max() == 1
    np.testing.assert_allclose(full["value"].to_numpy(), raw["value"].to_numpy())
    small = q.traces_downsampled(wh, ["seed0"], ["loss"], False, max_points=50)
    steps, values = raw["step"].to_numpy(), raw["value"].to_numpy()
    bucket = np.floor((steps - steps.min()) / (steps.max() - steps.min()) * 49)
    expected = [values[bucket == b].mean() for b in np.unique(bucket)]
    assert small.height == len(expected) <= 50
    np.testing.assert_allclose(small["value"].to_numpy(), expected)
    assert int(small["points"].sum()) == raw.height
    logged = q.traces_downsampled(wh, ["seed0", "seed1"], ["loss", "lr"], True, max_points=40)
    assert logged.group_by("run_id", "name").len()["len"].max() <= 40


def test_text_and_id_searches_agree_with_polars(wh: Warehouse, eval_tokens: pl.DataFrame) -> None:
    exact = sq.search_token_text(wh, " the", "exact", limit=10_000)
    assert exact["token_idx"].to_list() == eval_tokens.filter(pl.col("token_text") == " the")["token_idx"].to_list()
    trimmed = sq.search_token_text(wh, "the ", "ignoring surrounding spaces", limit=5)
    assert trimmed.height == 5 and int(trimmed["total"][0]) == exact.height
    contains = sq.search_token_text(wh, "HE", "contains (any case)", limit=10_000)
    expected = eval_tokens.filter(pl.col("token_text").str.to_lowercase().str.contains("he", literal=True))
    assert contains["token_idx"].to_list() == expected["token_idx"].to_list()
    by_id = sq.search_token_id(wh, 5, limit=10_000)
    assert by_id["token_idx"].to_list() == eval_tokens.filter(pl.col("token_id") == 5)["token_idx"].to_list()


@pytest.mark.parametrize("text", ["'; DROP TABLE runs; --", "%", "_", "\\", "$q"])
def test_search_text_is_never_sql(wh: Warehouse, text: str) -> None:
    assert sq.search_token_text(wh, text, "exact").height == 0
    assert sq.search_token_text(wh, text, "contains (any case)").height == 0
    assert wh.run_summary().height == 3


def test_rankings_agree_with_polars(wh: Warehouse, synthetic: SyntheticInfo) -> None:
    metrics = pl.read_parquet(f"{wh.derived_location('token_metrics')}/*.parquet")
    run = sq.rank_tokens(wh, "latest_aoa", "seed1", limit=20)
    expected = (
        metrics.filter(pl.col("run_id") == "seed1")
        .sort(["aoa_log10_step", "token_idx"], descending=[True, False])
        .head(20)
    )
    assert run["token_idx"].to_list() == expected["token_idx"].to_list()
    np.testing.assert_allclose(run["score"].to_numpy(), expected["aoa_log10_step"].to_numpy())
    cross = pl.read_parquet(f"{wh.derived_location('crossrun_metrics')}/*.parquet")
    seeds = sq.rank_tokens(wh, "most_variable_seeds", None, limit=10)
    assert (
        seeds["token_idx"].to_list()
        == cross.sort(["crossrun_var", "token_idx"], descending=[True, False]).head(10)["token_idx"].to_list()
    )
    easiest = sq.rank_tokens(wh, "easiest", None, limit=3)
    assert easiest["score"].to_list() == sorted(cross["mean_final_surprisal"].to_list())[:3]


def test_context_search_finds_each_occurrence(wh: Warehouse, synthetic: SyntheticInfo) -> None:
    seqs = pl.read_parquet(next((synthetic.root / "parquet" / "eval").glob("*/eval_sequences.parquet")))
    ids = seqs.filter(pl.col("seq_id") == 7)["input_ids"][0].to_list()
    needle = "".join(synthetic.vocab[i] for i in ids[4:7])
    texts = sq.sequence_texts(wh)
    seq_ids, positions = sq.context_matches(texts, needle.upper(), sq.CONTEXT_TARGETS[0])
    assert (7, 6) in set(zip(seq_ids, positions, strict=True))
    seq_ids, positions = sq.context_matches(texts, needle, sq.CONTEXT_TARGETS[1])
    assert (7, 7) in set(zip(seq_ids, positions, strict=True))
    for seq_id, position in zip(seq_ids, positions, strict=True):
        row = seqs.filter(pl.col("seq_id") == seq_id)["input_ids"][0].to_list()
        before = "".join(synthetic.vocab[i] for i in row[:position]).lower()
        assert before.endswith(needle.lower())
    hits = sq.hits_at(wh, tuple(seq_ids), tuple(positions))
    assert hits.height == len(seq_ids) and set(hits["seq_id"].to_list()) <= set(seq_ids)
    assert sq.context_matches(texts, "(.*)", sq.CONTEXT_TARGETS[0]) == ([], [])


def test_context_and_snippets(wh: Warehouse, synthetic: SyntheticInfo) -> None:
    row = tq.token_row(wh, 40)
    vocab = tq.vocab_texts(wh)
    ids = tq.sequence_ids(wh, (row["seq_id"],))[row["seq_id"]]
    context = tq.token_context(ids, row["position"], vocab)
    target = context.filter(pl.col("is_target"))
    assert target["token_text"][0] == row["token_text"] and target["position"][0] == row["position"]
    hits = sq.search_token_id(wh, row["token_id"]).filter(pl.col("token_idx") == 40)
    snippet = sq.with_snippets(hits, {row["seq_id"]: ids}, vocab, width=3)["context"][0]
    assert snippet.endswith("".join(synthetic.vocab[i] for i in ids[row["position"] - 3 : row["position"]]))
    assert tq.token_row(wh, 10**9) is None


def test_histogram_and_density_count_every_finite_value(wh: Warehouse, synthetic: SyntheticInfo) -> None:
    final = pop.Field("token_metrics", "final_surprisal")
    freq = pop.Field("ngram_stats", "log2_unigram_freq")
    metrics = pl.read_parquet(f"{wh.derived_location('token_metrics')}/*.parquet")
    lo, hi = pop.field_range(wh, final)
    values = np.sort(metrics["final_surprisal"].to_numpy())
    assert values[0] <= lo < np.quantile(values, 0.01) and np.quantile(values, 0.99) < hi <= values[-1]
    hist = pop.histogram(wh, final, ["seed0", "seed1"], (lo, hi), bins=25)
    counts = hist.group_by("run_id").agg(pl.col("count").sum()).sort("run_id")
    assert counts["count"].to_list() == [synthetic.n_tokens, synthetic.n_tokens]
    seed0 = metrics.filter(pl.col("run_id") == "seed0")["final_surprisal"].to_numpy()
    expected, _ = np.histogram(np.clip(seed0, lo, np.nextafter(hi, lo)), bins=25, range=(lo, hi))
    got = dict(
        zip(
            np.round((hist.filter(pl.col("run_id") == "seed0")["x"].to_numpy() - lo) / (hi - lo) * 25 - 0.5),
            hist.filter(pl.col("run_id") == "seed0")["count"].to_list(),
            strict=True,
        )
    )
    assert [got.get(float(b), 0) for b in range(25)] == expected.tolist()
    cells, trend = pop.density(wh, freq, final, ["seed2"], pop.field_range(wh, freq), (lo, hi), bins=30)
    assert int(cells["count"].sum()) == synthetic.n_tokens
    seed2 = metrics.filter(pl.col("run_id") == "seed2")["final_surprisal"]
    assert (trend["mean"] * trend["n"]).sum() / trend["n"].sum() == pytest.approx(seed2.mean())
    assert trend["mean"][0] > trend["mean"][-1]  # rare tokens end with higher surprisal (as constructed)
    every, every_trend = pop.density(wh, freq, final, None, pop.field_range(wh, freq), (lo, hi), bins=30)
    assert int(every["count"].sum()) == 3 * synthetic.n_tokens and every_trend["run_id"].n_unique() == 3
    cross = pop.Field("crossrun_metrics", "crossrun_var")
    cells, trend = pop.density(wh, freq, cross, ["ignored"], pop.field_range(wh, freq), pop.field_range(wh, cross))
    assert int(cells["count"].sum()) == synthetic.n_tokens and trend["run_id"].unique().to_list() == ["all runs"]


def test_mean_curves_by_frequency(wh: Warehouse, synthetic: SyntheticInfo) -> None:
    sample = 400
    ventiles = pop.mean_curves_by_frequency(wh, "seed1", sample_tokens=sample)
    assert ventiles["bin"].n_unique() == 20 and ventiles.unique("bin")["tokens"].sum() == sample
    one = pop.merge_frequency_bins(ventiles, 1)
    expected = [checkpoint_surprisal(wh, "seed1", int(s))[:sample].mean() for s in synthetic.steps]
    assert one["step"].to_list() == synthetic.steps.tolist() and one["tokens"].unique().to_list() == [sample]
    np.testing.assert_allclose(one["bits"].to_numpy(), expected, rtol=1e-5)
    five = pop.merge_frequency_bins(ventiles, 5)
    bins = five.unique("bin").sort("bin")
    assert bins["bin"].to_list() == [1, 2, 3, 4, 5] and bins["tokens"].sum() == sample
    assert bins["freq_hi"].to_list() == sorted(bins["freq_hi"].to_list())
    last = five.filter(pl.col("step") == int(synthetic.steps.max())).sort("bin")
    assert last["bits"][0] > last["bits"][-1]  # the rarest fifth ends above the most frequent (as constructed)
    with pytest.raises(ValueError, match="divide 20"):
        pop.merge_frequency_bins(ventiles, 3)


def test_spike_tokens_are_the_injected_risers(wh: Warehouse, synthetic: SyntheticInfo) -> None:
    def after(end: int) -> int:
        return int(synthetic.steps[synthetic.steps >= end][0])

    ends = {spike_id: end for run_id, spike_id, _, end in synthetic.spikes if run_id == "seed0"}
    # every spike whose first checkpoint after it is the same bumps that checkpoint
    risers = np.unique(
        np.concatenate(
            [synthetic.spike_risers[("seed0", i)] for i, end in ends.items() if after(end) == after(ends[0])]
        )
    )
    for trace in ("loss", "grad_norm"):  # keyed by trace: each trace's spike has its own rows
        rows = aq.spike_tokens(wh, "seed0", trace, 0, limit=len(risers))
        assert set(rows["token_idx"].to_list()) == set(risers.tolist())
        assert rows["rank"].to_list() == list(range(1, len(risers) + 1))
        assert (rows["delta_bits"] > 1.5).all()
    assert aq.spike_tokens(wh, "seed0", "lr", 0).height == 0


def test_trace_window_is_every_logged_point_in_range(wh: Warehouse) -> None:
    window = aq.trace_window(wh, "seed1", ["loss", "lr"], 1000, 1200)
    reference = pl.read_parquet(wh.store.path("traces/seed1.parquet")).filter(
        pl.col("name").is_in(["loss", "lr"]) & pl.col("step").is_between(1000, 1200)
    )
    assert window.height == reference.height == 2 * 21
    assert window.sort("name", "step")["value"].to_list() == reference.sort("name", "step")["value"].to_list()


def test_weight_probe_series_take_the_max_of_sigma1_and_the_mean_of_entropy(wh: Warehouse) -> None:
    assert set(q.weight_probe_names(wh)) == {"qk_sigma1", "attn_entropy_bits", "probe_loss"}
    series = q.weight_probe_series(wh, ["seed0"], ["qk_sigma1", "attn_entropy_bits", "probe_loss"])
    rows = wh.query("SELECT * FROM weight_probes WHERE run_id = 'seed0'")
    for name, how in (("qk_sigma1", "max"), ("attn_entropy_bits", "mean"), ("probe_loss", "mean")):
        expected = (
            rows.filter(pl.col("name") == name).group_by("step").agg(getattr(pl.col("value"), how)()).sort("step")
        )
        got = series.filter(pl.col("name") == name).sort("step")
        assert got["step"].to_list() == expected["step"].to_list()
        np.testing.assert_allclose(got["value"].to_numpy(), expected["value"].to_numpy())


def test_lr_law_tables(wh: Warehouse) -> None:
    fit = aq.lr_law_fit(wh)
    assert fit["runs"][0] == "seed0" and math.isfinite(fit["rmse"][0])
    curves = aq.lr_law_curves(wh)
    assert set(curves["schedule"].to_list()) == {"seed0", "constant"}
    assert curves.filter(pl.col("schedule") == "constant")["observed_loss"].null_count() > 0


def test_version_changes_when_the_warehouse_does(synthetic: SyntheticInfo, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(synthetic.root, root)
    Warehouse.open(root)
    before = warehouse_version(root)
    assert warehouse_version(root) == before
    source = Source.at(root)
    assert source.get(Warehouse.run_summary).height == 3
    wh = Warehouse.open(root)
    wh.write_derived("spikes", wh.query("SELECT * FROM spikes LIMIT 1"), {"changed": True})
    assert warehouse_version(root) != before
    assert Source.at(root).version != source.version


def test_rankings_offered_follow_the_columns_present() -> None:
    tables = {"token_metrics": ("run_id", "token_idx", "final_surprisal", "aoa_log10_step")}
    found = sq.available_rankings(tables)
    assert set(found) == {"latest_aoa", "earliest_aoa", "hardest", "easiest"}
    assert found["hardest"] == (True, False)
    tables["crossrun_metrics"] = ("token_idx", "crossrun_var")
    assert sq.available_rankings(tables)["most_variable_seeds"] == (False, True)


def test_aoa_rankings_and_views_leave_out_tokens_never_acquired(with_acquired: Path) -> None:
    wh = Warehouse.open(with_acquired, read_only=True)
    never = set(range(0, 600, 7))
    ranked = sq.rank_tokens(wh, "latest_aoa", "seed2", limit=600, has_acquired=True)
    assert ranked.height == 600 - len(never) and not never & set(ranked["token_idx"].to_list())
    assert sq.rank_tokens(wh, "hardest", "seed2", limit=600, has_acquired=True).height == 600  # not an AoA ranking
    assert set(sq.rank_tokens(wh, "latest_aoa", "seed2", limit=600)["token_idx"].to_list()) >= never
    aoa = pop.Field("token_metrics", "aoa_log10_step")
    lo, hi = pop.field_range(wh, aoa, True)
    counts = (
        pop.histogram(wh, aoa, ["seed1", "seed2"], (lo, hi), 20, True).group_by("run_id").agg(pl.col("count").sum())
    )
    assert dict(counts.iter_rows()) == {"seed1": 600, "seed2": 600 - len(never)}
    assert pop.not_acquired_count(wh, None) == pop.not_acquired_count(wh, ["seed2"]) == len(never)
    assert pop.not_acquired_count(wh, ["seed0", "seed1"]) == 0
