"""Settings through the Python API: the same checks as the command line, as SettingsError, before any work."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import ldw
from ldw.curves.config import MetricsConfig
from ldw.dynamics.config import ScheduleConfig, SpikesConfig, WeightProbeConfig
from ldw.dynamics.spikes import SpikeParams
from ldw.errors import SettingsError
from ldw.ingest.config import IngestConfig
from ldw.ngrams.config import NgramConfig
from ldw.sweep.config import EvalSetConfig, SweepConfig
from ldw.train.config import TrainConfig, TrainConfigError
from ldw.warehouse.lock import HOLDERS_DIR, LOCK_FILE


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        (SweepConfig, {"batch_size": -1}, "--batch-size must be at least 1, not -1"),
        (SweepConfig, {"batch_size": 2.0}, "--batch-size must be a whole number"),
        (SweepConfig, {"batch_size": True}, "--batch-size must be a whole number"),
        (SweepConfig, {"device": "tpu"}, "--device must be auto, cpu, cuda or cuda:N"),
        (SweepConfig, {"shard": (3, 2)}, "--shard 3/2: need 0 <= i < n"),
        (SweepConfig, {"shard": ("0", 2)}, "--shard I must be a whole number"),
        (SweepConfig, {"runs": "seed0"}, "--run must be run ids"),
        (SweepConfig, {"prefetch": -1}, "--prefetch must be at least 0, not -1"),
        (SweepConfig, {"fetch_attempts": 0}, "--fetch-attempts must be at least 1"),
        (SweepConfig, {"precision": "fp8"}, "--precision must be one of fp32, tf32, bf16, fp16"),
        (EvalSetConfig, {"seq_len": 0}, "--seq-len must be at least 2, not 0"),
        (EvalSetConfig, {"seq_len": "128"}, "--seq-len must be a whole number"),
        (EvalSetConfig, {"seed": -1}, "--seed must be at least 0"),
        (EvalSetConfig, {"prefix_token_id": -5}, "--prefix-token-id must be at least 0"),
        (EvalSetConfig, {"n_sequences": 0}, "--sequences must be at least 1"),
        (EvalSetConfig, {"positions_per_sequence": 0}, "--positions must be at least 1"),
        (EvalSetConfig, {"split": "dev"}, "--split must be one of all, train, heldout"),
        (EvalSetConfig, {"heldout_fraction": math.nan}, "--heldout-fraction must be in (0, 1)"),
        (MetricsConfig, {"window": math.nan}, "--window must be in (0, 1], not nan"),
        (MetricsConfig, {"chunk_tokens": 2**40}, "--chunk-tokens must be at most"),
        (MetricsConfig, {"last_k": 0}, "--last-k must be at least 1, not 0"),
        (NgramConfig, {"max_n": 11}, "--max-n must be at most 10"),
        (NgramConfig, {"split": "test"}, "--split must be one of"),
        (SpikesConfig, {"top_n": 0}, "--top-n must be at least 1"),
        (ScheduleConfig, {"runs": ("a",), "decay": math.inf}, "--decay must be in [0, 1)"),
        (WeightProbeConfig, {"device": "gpu"}, "--device must be auto, cpu, cuda or cuda:N"),
        (IngestConfig, {"tokens_per_step": 0}, "--tokens-per-step must be at least 1"),
        (IngestConfig, {"name": "  "}, "--name must be a non-empty run name"),
        (IngestConfig, {"every": 0}, "--every must be at least 1"),
        (IngestConfig, {"revisions": (" , ",)}, "--revisions needs at least one branch name"),
    ],
)
def test_settings_are_checked_when_made(kind: type, options: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        kind(**options)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"k": math.nan}, "--k"),
        ({"window": 1}, "--window"),
        ({"merge_gap": -1}, "--merge-gap"),
        ({"abs_floor": 0}, "abs_floor"),
    ],
)
def test_spike_rule_settings(options: dict, field: str) -> None:
    with pytest.raises(SettingsError, match=field):
        SpikeParams(**options)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lr", math.inf),
        ("lr", math.nan),
        ("weight_decay", math.inf),
        ("steps", 1.5),
        ("seed", -1),
        ("vocab_size", 2**40),
    ],
)
def test_train_settings_refuse_non_finite_and_non_whole_values(field: str, value: object) -> None:
    with pytest.raises(TrainConfigError, match=field) as raised:
        TrainConfig(**{field: value})
    assert isinstance(raised.value, SettingsError)


def test_numpy_numbers_become_plain_numbers() -> None:
    config = EvalSetConfig(seq_len=np.int64(64), n_sequences=np.int32(8), heldout_fraction=np.float32(0.5))
    assert type(config.seq_len) is int and type(config.n_sequences) is int and type(config.heldout_fraction) is float
    json.dumps(config.__dict__)  # the evaluation set stores its settings as JSON


def test_a_prefix_token_outside_the_vocabulary_is_refused_before_the_warehouse_changes(
    _ingested: Path, tmp_path: Path
) -> None:
    wh = tmp_path / "wh"
    shutil.copytree(_ingested, wh)

    def content() -> list[tuple[str, int]]:
        """Every file and folder with its mtime, the writer lock's own files left out (they hold no content)."""
        lock = {wh / LOCK_FILE, wh / HOLDERS_DIR}
        return sorted((p.name, p.stat().st_mtime_ns) for p in wh.rglob("*") if not lock & {p, p.parent})

    before = content()
    with pytest.raises(SettingsError, match="--prefix-token-id 320 is outside the vocabulary"):
        ldw.open(wh, progress=False).evalset(seq_len=32, prefix_token_id=320, replace=True)
    assert content() == before


def test_a_device_that_is_not_here_is_refused_before_the_sweep_opens_the_warehouse(_ingested: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("checks the refusal without CUDA")
    with pytest.raises(SettingsError, match="CUDA is not available"):
        ldw.open(_ingested, progress=False).sweep(device="cuda")
