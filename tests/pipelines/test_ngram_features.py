"""N-gram predictors against a re-implementation of Chang et al.'s released annotator; the ``ldw ngrams`` command."""

from __future__ import annotations

import dataclasses
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from pygam import LinearGAM
from typer.testing import CliRunner

from ldw.cli.main import app
from ldw.corpus import corpus_documents, load_documents
from ldw.errors import LdwError, LdwWarning
from ldw.ngrams.config import NgramConfig
from ldw.ngrams.counts import count_ngrams
from ldw.ngrams.diversity import DiversityCounter, adjusted_diversity, context_types
from ldw.ngrams.features import backoff_log2prob, raw_features, released_predictors
from ldw.ngrams.reference import choose_reference, training_windows
from ldw.ngrams.store import compute_ngram_stats
from ldw.probe.tokenizing import encode_documents, load_tokenizer
from ldw.train.bpe import train_bpe_tokenizer
from ldw.warehouse import Warehouse


def released_surprisals(lines: list[list[int]], evals: list[list[int]], n: int, pad: int) -> np.ndarray:
    """get_ngram_surprisals: order-n counts (3+ pruned below 2), MLE over what is left, NaN where p is ~0."""
    counts: dict = {}
    for line in lines:
        current = [pad] * n
        for token in line:
            current = current[1:] + [token]
            counts.setdefault(tuple(current[:-1]), Counter())[current[-1]] += 1
    if n >= 3:
        counts = {c: Counter({t: k for t, k in targets.items() if k >= 2}) for c, targets in counts.items()}
    out = np.full((len(evals), len(evals[0])), np.nan)
    for i, line in enumerate(evals):
        current = [pad] * n
        for j, token in enumerate(line):
            current = current[1:] + [token]
            targets = counts.get(tuple(current[:-1]), Counter())
            total = sum(targets.values())
            p = targets[token] / total if total else 0.0
            out[i, j] = np.nan if np.isclose(p, 0.0) else -np.log2(p)
    return out


def released_backoff(lines: list[list[int]], evals: list[list[int]], n: int, pad: int) -> np.ndarray:
    """get_ngram_surprisals_with_backoff: NaNs take the next lower order; unigram NaNs the largest unigram value."""
    result = None
    for order in range(n, 0, -1):
        current = released_surprisals(lines, evals, order, pad)
        if order == 1:
            current[np.isnan(current)] = np.nanmax(current)
        result = current if result is None else np.where(np.isnan(result), current, result)
    return result


TOY_LINES = [[9, 1, 2, 3, 1, 2], [9, 1, 2, 4], [9, 3, 1, 2, 3], [9, 5]]
TOY_EVAL = [[9, 1, 2, 3, 4, 6], [9, 3, 1, 2, 5, 1]]


def test_worked_toy_example_of_the_released_code():
    """Spec section 5.7: vocab 10 (pad 10, [CLS] 9), 3-grams; targets (0,1) (0,3) (0,5) (1,2) (1,4)."""
    counts = count_ngrams([np.array(s) for s in TOY_LINES], 10, 3, start_pad=True).pruned(2, 3)
    table = raw_features(counts, [np.array(s) for s in TOY_EVAL], np.array([0, 0, 0, 1, 1]), np.array([1, 3, 5, 2, 4]))
    log17 = np.log2(17)
    np.testing.assert_allclose(-table["ngram_log2prob"].to_numpy(), [0, 0, log17, 0, log17], atol=1e-12)
    np.testing.assert_allclose(
        -table["log2_unigram_freq"].to_numpy(), np.log2(17 / np.array([4, 3, 1, 4, 1])), atol=1e-12
    )  # S1 = [2.0875, 2.5025, 4.0875 (token 6 unseen: the largest value), 2.0875, 4.0875]
    np.testing.assert_allclose(-table["context_logprob"].to_numpy(), [2.0875, 2.0875, 2.5705, 2.295, 2.1912], atol=5e-5)
    np.testing.assert_allclose(table["log2_context_length"].to_numpy(), np.log2([1, 3, 5, 2, 4]))
    assert table["ngram_order"].to_list() == [3, 3, 0, 2, 1]  # (3, 1) pruned as a 3-gram; 5 seen once
    log2p, _ = backoff_log2prob(counts, np.array(TOY_EVAL[1]), np.array([6]))
    np.testing.assert_allclose(-log2p[2], [0, 2, 0, 0, log17, np.log2(17 / 4)], atol=1e-12)  # S3 with backoff


@pytest.mark.parametrize("seed", [0, 1])
def test_predictors_equal_the_released_annotator_on_random_corpora(seed: int):
    rng = np.random.default_rng(seed)
    vocab, cls = 12, 11
    lines = [[cls, *rng.integers(0, 9, 15)] for _ in range(300)]  # ids 9, 10 never occur: unseen in evaluation
    evals = [[cls, *rng.integers(0, 11, 15)] for _ in range(20)]
    counts = count_ngrams([np.array(s) for s in lines], vocab, 5, start_pad=True).pruned(2, 3)
    seq, pos = np.repeat(np.arange(20), 15), np.tile(np.arange(1, 16), 20)
    table = raw_features(counts, [np.array(s) for s in evals], seq, pos)
    s5, s1 = released_backoff(lines, evals, 5, vocab), released_backoff(lines, evals, 1, vocab)
    np.testing.assert_allclose(table["ngram_log2prob"].to_numpy(), -s5[seq, pos], atol=1e-12)
    np.testing.assert_allclose(table["log2_unigram_freq"].to_numpy(), -s1[seq, pos], atol=1e-12)
    context = np.array([-s1[i, :j].mean() for i, j in zip(seq, pos, strict=True)])
    np.testing.assert_allclose(table["context_logprob"].to_numpy(), context, atol=1e-12)
    assert (table["ngram_order"] == 0).sum() > 0 and (table["ngram_order"] == 5).sum() > 0
    final, done = released_predictors(table)
    # get_features_dataframe: residual of OLS ngram ~ unigram + 1, then every predictor clipped at mean +- 5 sd
    design = np.column_stack([np.ones(len(seq)), -s1[seq, pos]])
    beta = np.linalg.lstsq(design, -s5[seq, pos], rcond=None)[0]
    resid = -s5[seq, pos] - design @ beta
    low, high = resid.mean() - 5 * resid.std(), resid.mean() + 5 * resid.std()
    np.testing.assert_allclose(final["ngram_log2prob_resid"].to_numpy(), np.clip(resid, low, high), atol=1e-10)
    assert done["ngram_residualized_on_unigram"]["slope"] == pytest.approx(beta[1], rel=1e-10)


def test_clipping_at_five_population_sds():
    values = np.r_[np.zeros(99), 100.0]  # mean 1, population sd 9.95: the outlier is clipped to 50.75
    rng = np.random.default_rng(0)
    frame = pl.DataFrame(
        {
            "log2_unigram_freq": rng.normal(size=100),
            "ngram_log2prob": rng.normal(size=100),
            "log2_context_length": values,
        }
    )
    clipped, done = released_predictors(frame)
    bound = values.mean() + 5 * values.std()
    assert done["clipping"]["log2_context_length"]["clipped"] == 1
    assert done["clipping"]["log2_context_length"]["high"] == pytest.approx(bound) == pytest.approx(50.74937)
    np.testing.assert_allclose(clipped["log2_context_length"].to_numpy(), np.r_[np.zeros(99), bound])


def test_probabilities_up_to_1e8_count_as_unseen():
    """The released np.isclose(p, 0): p <= 1e-8 is treated like an unseen n-gram, also for unigrams."""
    counts = count_ngrams([np.array([1, 2, 1, 3])], 5, 2, start_pad=True)
    huge = dataclasses.replace(counts, n_tokens=10**9)  # unigram p = count / 1e9 <= 1e-8: all unseen but token 1
    huge.unigram[1] = 50
    log2p, order = backoff_log2prob(huge, np.array([1, 2, 4]), np.array([3]))
    np.testing.assert_allclose(log2p[0], np.log2(50 / 1e9))  # 2 and 4 take the largest seen value: token 1's
    assert order.tolist() == [2, 2, 0]  # the bigrams (pad, 1), (1, 2) are seen; (2, 4) is not


def released_raw_diversity(lines: list[list[int]], vocab: int, types: set[int], window: int = 30) -> np.ndarray:
    """get_contextual_diversities with the context types given (the release: ids below 10,000)."""
    seen = np.zeros((vocab, vocab), dtype=bool)
    for line in lines:
        for i, token in enumerate(line):
            for j in range(max(0, i - window), i):
                if line[j] in types:
                    seen[token, line[j]] = True
    return seen.sum(axis=1)


def test_contextual_diversity_equals_the_released_definition():
    rng = np.random.default_rng(3)
    vocab, cls = 60, 59
    lines = [[cls, *rng.zipf(1.4, 70) % 50] for _ in range(40)]
    unigram = np.bincount(np.concatenate(lines), minlength=vocab)
    types = context_types(unigram, [cls], n_types=25)
    assert len(types) == 25 and cls not in types
    frequent = np.lexsort((np.arange(vocab), -np.where(np.arange(vocab) == cls, 0, unigram)))[:25]
    assert set(types) == set(frequent)
    counter = DiversityCounter(vocab, types)
    counter.add(np.array(lines[:25]))
    counter.add(np.array(lines[25:]))
    raw = counter.raw()
    np.testing.assert_array_equal(raw, released_raw_diversity(lines, vocab, set(types.tolist())))
    # adjust_contextual_diversities: LinearGAM(25 splines) gridsearch of raw on log10 frequency, [CLS] left out
    adjusted = adjusted_diversity(raw, unigram, cls)
    frequency = unigram / unigram.sum()
    frequency[unigram == 0] = frequency[unigram > 0].min()
    keep = np.arange(vocab) != cls
    x = np.log10(frequency[keep])
    gam = LinearGAM(n_splines=25).gridsearch(x[:, None], raw[keep], lam=np.logspace(-3, 3, 11), progress=False)
    expected = raw[keep] - gam.predict(x[:, None])
    np.testing.assert_allclose(adjusted[keep], expected, atol=1e-8)
    assert adjusted[cls] == pytest.approx(expected.min())


def test_training_windows_cut_the_joined_stream_like_the_evaluation_set():
    docs = [np.array([1, 2, 3]), np.array([4, 5, 6, 7, 8]), np.array([9])]
    assert [w.tolist() for w in training_windows(docs, 4, None)] == [[1, 2, 3, 4], [5, 6, 7, 8]]  # 9 dropped
    assert [w.tolist() for w in training_windows(docs, 3, 0)] == [[0, 1, 2, 3], [0, 4, 5, 6], [0, 7, 8, 9]]


def test_reference_defaults_to_the_runs_training_documents():
    trained = [{"corpus": "builtin", "split_seed": 0, "train_config": {"eval_fraction": 0.2}}] * 2
    assert choose_reference(None, None, None, trained) == choose_reference("builtin", None, None, trained)
    chosen = choose_reference(None, None, None, trained)
    assert (chosen.corpus, chosen.split, chosen.heldout_fraction, chosen.source) == ("builtin", "train", 0.2, "runs")
    other = choose_reference("web.txt", None, None, trained)
    assert (other.split, other.source) == ("all", "given")
    assert choose_reference(None, "all", None, trained).source == "given"
    with pytest.raises(LdwError, match="pass --corpus"):
        choose_reference(None, None, None, [{}, *trained])
    mixed = [trained[0], {**trained[0], "corpus": "other.txt"}]
    with pytest.raises(LdwError, match="pass --corpus"):
        choose_reference(None, None, None, mixed)


def test_ngram_stats_count_the_runs_training_split_and_warn_about_leaks(ingested_warehouse: Path) -> None:
    wh = Warehouse.open(ingested_warehouse)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LdwWarning)  # the evaluation set is held out: nothing to warn of
        result = compute_ngram_stats(ingested_warehouse, progress=False)
    params = wh.derived_params("ngram_stats")
    assert (params["corpus"], params["split"], params["reference_source"]) == ("builtin", "train", "runs")
    assert params["eval_documents_counted"] == 0 and result.warnings == []
    stored = wh.query("SELECT * FROM ngram_stats ORDER BY token_idx")
    tokens = wh.eval_tokens()
    assert stored["token_idx"].to_list() == tokens["token_idx"].to_list()
    tokenizer = load_tokenizer(Path(wh.eval_config()["tokenizer_path"]))
    train = corpus_documents("builtin", "train", params["heldout_fraction"])
    windows = list(training_windows(encode_documents(tokenizer, train), params["seq_len"], None))
    assert params["n_sequences"] == len(windows) and params["n_tokens_counted"] == 32 * len(windows)
    unigrams = Counter(int(t) for w in windows for t in w)
    assert stored["unigram_count"].to_list() == [unigrams[int(t)] for t in tokens["token_id"]]
    for name in ("log2_unigram_freq", "ngram_log2prob_resid", "context_logprob", "contextual_diversity"):
        bounds = params["clipping"][name]
        assert stored[name].is_finite().all() and bounds["low"] <= stored[name].min() <= stored[name].max()
    assert params["pruning"] == {"min_count": 2, "orders": [3, 4, 5], "when": "once, on the final counts"}
    with pytest.warns(LdwWarning, match="documents the evaluation set was cut from are in the counted corpus"):
        leaky = compute_ngram_stats(ingested_warehouse, NgramConfig(split="all"), progress=False)
    assert leaky.params["eval_documents_counted"] == leaky.params["eval_documents"] > 0
    assert leaky.params["eval_ngram_coverage"] > params["eval_ngram_coverage"]


def test_cli_names_the_counted_split_and_prints_the_leak_warning(ingested_warehouse: Path) -> None:
    result = CliRunner().invoke(app, ["ngrams", "-w", str(ingested_warehouse), "-q", "--split", "all"])
    assert result.exit_code == 0, result.output
    assert "of builtin, split all;" in result.stdout
    (warning,) = [line for line in result.stderr.splitlines() if line.startswith("warning ")]
    assert "documents the evaluation set was cut from are in the counted corpus" in warning


def test_a_different_tokenizer_is_refused(ingested_warehouse: Path, tmp_path: Path) -> None:
    train_bpe_tokenizer(load_documents("builtin")[:20], 300, tmp_path / "other")
    with pytest.raises(LdwError, match="differs from the one the evaluation set was built with"):
        compute_ngram_stats(ingested_warehouse, NgramConfig(tokenizer=tmp_path / "other"), progress=False)
