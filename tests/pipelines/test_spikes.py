"""Spike detector: exact events on constructed traces, no false positives on noisy decay, a real spiking run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from scipy.stats import median_abs_deviation

from ldw.dynamics.spikes import SpikeParams, detect_spikes, robust_baseline, short_trace_warning
from ldw.dynamics.spikes_store import detect_spikes_in_warehouse
from ldw.errors import LdwError
from ldw.warehouse import Warehouse


def _smooth_decay(n: int, seed: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    steps = np.arange(1, n + 1)
    rng = np.random.default_rng(seed)
    return steps, 2.0 + 3.0 * steps**-0.3 + rng.normal(0.0, noise, n)


def test_baseline_matches_a_direct_loop_with_scipy_mad() -> None:
    _, values = _smooth_decay(300, 3, 0.05)
    params = SpikeParams(window=40, min_history=7)
    baseline, scale = robust_baseline(values, params)
    for i in range(len(values)):
        window = values[max(0, i - 40) : i]
        if len(window) < 7:
            assert np.isnan(baseline[i])
            continue
        mad = median_abs_deviation(window, scale="normal")  # 1.4826 * MAD
        expected_scale = max(mad, 0.005 * abs(np.median(window)), 1e-8)
        assert baseline[i] == pytest.approx(np.median(window), rel=1e-12)
        assert scale[i] == pytest.approx(expected_scale, rel=1e-5)


def test_constructed_spikes_exact_events() -> None:
    steps, values = _smooth_decay(1000, 0, 0.01)
    steps = steps * 10  # logged every 10 steps: the rule counts points, reports steps
    values[300:303] += [1.0, 2.0, 0.5]  # one event, peak in the middle
    values[600] += 1.5  # single point
    values[800] += 1.0  # two bumps 2 points apart: merged
    values[803] += 3.0
    values[999] += 2.0  # last point: never comes back under
    spikes = detect_spikes(steps, values)
    rows = spikes.select("step_start", "step_peak", "step_end").rows()
    assert rows == [(3010, 3020, 3040), (6010, 6010, 6020), (8010, 8040, 8050), (10000, 10000, None)]
    assert spikes["spike_id"].to_list() == [0, 1, 2, 3]
    first = spikes.row(0, named=True)
    assert first["peak_value"] == values[301]
    assert first["magnitude"] == pytest.approx(values[301] - np.median(values[250:300]))
    baseline, scale = robust_baseline(values)
    assert first["magnitude_mads"] == pytest.approx(first["magnitude"] / scale[300])
    # a minimum duration of 2 points drops the single-point spikes
    longer = detect_spikes(steps, values, SpikeParams(min_points=2))
    assert longer["step_start"].to_list() == [3010, 8010]
    # without merging the two bumps are separate events
    split = detect_spikes(steps, values, SpikeParams(merge_gap=1))
    assert split.filter(pl.col("step_start") >= 8000)["step_start"].to_list() == [8010, 8040, 10000]


@pytest.mark.parametrize("seed", range(5))
def test_no_false_positives_on_noisy_decay(seed: int) -> None:
    steps, values = _smooth_decay(5000, seed, 0.05)
    assert detect_spikes(steps, values).height == 0


def test_rejects_bad_traces() -> None:
    with pytest.raises(LdwError, match="strictly increasing"):
        detect_spikes(np.array([1, 3, 2]), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(LdwError, match="finite"):
        detect_spikes(np.array([1, 2]), np.array([1.0, np.nan]))
    with pytest.raises(LdwError, match="window"):
        SpikeParams(window=1)


def _train_with_lr_jump(steps: int = 150, jump_at: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """A tiny GPT-NeoX trained on the builtin corpus (bytes) with Adam; the LR jumps 100x at ``jump_at``.

    One thread: tiny matmuls only lose time to thread hand-offs on a busy machine.
    """
    from pydoc_data.topics import topics

    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    text = "".join(topics[key] for key in sorted(topics)).encode()[:400_000]
    data = torch.tensor(list(text), dtype=torch.long)
    config = GPTNeoXConfig(
        vocab_size=256,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    model = GPTNeoXForCausalLM(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.95))
    generator = torch.Generator().manual_seed(0)
    losses, grad_norms = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _steps(model, optimizer, data, generator, steps, jump_at, losses, grad_norms)
    finally:
        torch.set_num_threads(threads)
    return np.array(losses), np.array(grad_norms)


def _steps(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: torch.Tensor,
    generator: torch.Generator,
    steps: int,
    jump_at: int,
    losses: list[float],
    grad_norms: list[float],
) -> None:
    for step in range(1, steps + 1):
        if step == jump_at:
            for group in optimizer.param_groups:
                group["lr"] = 3e-1
        starts = torch.randint(0, len(data) - 32, (16, 1), generator=generator)
        batch = data[starts + torch.arange(32)]
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        grad_norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf")).item())
        optimizer.step()
        losses.append(loss.item())


def test_real_run_with_high_lr_spikes() -> None:
    losses, grad_norms = _train_with_lr_jump()
    steps = np.arange(1, len(losses) + 1)
    spikes = detect_spikes(steps, losses)
    assert spikes.height >= 1
    first = spikes.row(0, named=True)
    assert 101 <= first["step_start"] <= 103  # the jump to a 100x learning rate
    assert first["peak_value"] > first["baseline"] + 1.0
    assert detect_spikes(steps[:100], losses[:100]).height == 0  # none before the jump
    grad_spikes = detect_spikes(steps, grad_norms)
    assert grad_spikes.filter(pl.col("step_start").is_between(101, 103)).height == 1


def test_detect_spikes_in_warehouse(tmp_path: Path) -> None:
    wh = Warehouse.create(tmp_path / "wh")
    steps, loss = _smooth_decay(400, 1, 0.01)
    loss[200] += 1.0
    grad = np.full(400, 1.0) + np.random.default_rng(2).normal(0, 0.01, 400)
    grad[100:102] += 5.0
    frame = pl.concat(
        [
            pl.DataFrame({"step": steps, "name": "loss", "value": loss}),
            pl.DataFrame({"step": steps, "name": "grad_norm", "value": grad}),
            pl.DataFrame({"step": steps, "name": "lr", "value": np.where(steps == 50, 9.0, 1.0)}),
        ]
    )
    wh.write_traces("run-a", frame)
    wh.write_traces("run-b", frame.filter(pl.col("name") == "loss"))
    scan = detect_spikes_in_warehouse(tmp_path / "wh", params=SpikeParams(k=5.0))
    table = wh.query("SELECT * FROM spikes ORDER BY run_id, trace, spike_id")
    assert scan.found == table.height == 3 and scan.warnings == []
    assert table.select("run_id", "trace", "step_start", "step_end").rows() == [
        ("run-a", "grad_norm", 101, 103),
        ("run-a", "loss", 201, 202),
        ("run-b", "loss", 201, 202),
    ]
    params = wh.derived_params("spikes")
    assert params["k"] == 5.0 and params["names"] == ["loss", "grad_norm"]
    # rerunning with another rule replaces the table
    assert detect_spikes_in_warehouse(tmp_path / "wh", names=("grad_norm",)).found == 1
    assert wh.query("SELECT count(*) AS n FROM spikes")["n"][0] == 1
    # no spikes: the table exists, empty, with its columns
    assert detect_spikes_in_warehouse(tmp_path / "wh", names=("lr",), params=SpikeParams(k=1e6)).found == 0
    empty = wh.query("SELECT * FROM spikes")
    assert empty.height == 0 and empty.columns[:3] == ["run_id", "trace", "spike_id"]


def test_detect_spikes_in_warehouse_without_traces(tmp_path: Path) -> None:
    Warehouse.create(tmp_path / "wh")
    with pytest.raises(LdwError, match="no loss / grad_norm traces"):
        detect_spikes_in_warehouse(tmp_path / "wh")


def test_a_trace_shorter_than_the_window_is_named_in_a_warning(tmp_path: Path) -> None:
    wh = Warehouse.create(tmp_path / "wh")
    steps, loss = _smooth_decay(400, 1, 0.01)
    wh.write_traces("long", pl.DataFrame({"step": steps, "name": "loss", "value": loss}))
    wh.write_traces("short", pl.DataFrame({"step": steps[:30], "name": "loss", "value": loss[:30]}))
    wh.write_traces("tiny", pl.DataFrame({"step": steps[:8], "name": "loss", "value": loss[:8]}))
    scan = detect_spikes_in_warehouse(tmp_path / "wh", names=("loss",))
    assert scan.found == 0 and len(scan.warnings) == 2
    short, tiny = sorted(scan.warnings)
    assert short.startswith("run 'short', trace 'loss': 30 logged points, fewer than the window (50)")
    assert tiny.startswith("run 'tiny', trace 'loss': only 8 logged points") and "too short to judge" in tiny
    assert short_trace_warning(50) is None and short_trace_warning(11) is not None
    assert "fewer than the window" in short_trace_warning(11) and "only 10" in short_trace_warning(10)


def test_the_rule_refuses_a_window_below_its_history(tmp_path: Path) -> None:
    with pytest.raises(LdwError, match=r"window must be at least min_history \(10\)"):
        SpikeParams(window=5)
    assert SpikeParams(window=5, min_history=5).window == 5


class _ByteWindows(torch.utils.data.Dataset):
    """Windows of the builtin corpus as bytes (a 256-token vocabulary), at fixed random starts."""

    def __init__(self, n: int, length: int) -> None:
        from pydoc_data.topics import topics

        text = torch.tensor(list("".join(topics[key] for key in sorted(topics)).encode()[:400_000]))
        starts = torch.randint(0, len(text) - length, (n, 1), generator=torch.Generator().manual_seed(0))
        self.windows = text[starts + torch.arange(length)]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.windows[i], "labels": self.windows[i]}


class _JumpAt(torch.optim.lr_scheduler.LambdaLR):
    """A learning rate 100x higher from step ``at`` on."""

    def __init__(self, optimizer: torch.optim.Optimizer, at: int) -> None:
        super().__init__(optimizer, lambda step: 100.0 if step >= at else 1.0)


def test_default_rule_finds_the_loss_spike_in_a_trainer_log(tiny_runs: list[Path], tmp_path: Path) -> None:
    """A real transformers.Trainer run (logging every step) whose learning rate jumps 100x at step 101."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, Trainer, TrainingArguments

    from ldw.ingest.config import IngestConfig
    from ldw.ingest.register import ingest_paths

    torch.manual_seed(0)
    config = GPTNeoXConfig(
        vocab_size=256,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    model = GPTNeoXForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    out = tmp_path / "hf_run"
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=160,
        save_steps=160,
        logging_steps=1,
        per_device_train_batch_size=16,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        max_grad_norm=1e9,  # logs the gradient norm, never clips
    )
    data = _ByteWindows(16 * 160, 32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls only lose time to thread hand-offs on a busy machine
    try:
        Trainer(model=model, args=args, train_dataset=data, optimizers=(optimizer, _JumpAt(optimizer, 100))).train()
    finally:
        torch.set_num_threads(threads)
    ingest_paths(tmp_path / "wh", [out], IngestConfig(tokenizer=tiny_runs[0] / "tokenizer"), progress=False)
    scan = detect_spikes_in_warehouse(tmp_path / "wh")  # the defaults
    spikes = Warehouse.open(tmp_path / "wh").query("SELECT * FROM spikes WHERE trace = 'loss'")
    assert scan.warnings == [] and spikes.height >= 1
    first = spikes.row(0, named=True)
    assert 101 <= first["step_start"] <= 103 and first["peak_value"] > first["baseline"] + 1.0
