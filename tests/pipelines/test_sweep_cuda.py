"""The sweep on a CUDA GPU, checked against the exact CPU sweep of the same checkpoints (skipped without CUDA).

Each precision the sweep offers is compared with the fp32 CPU sweep: fp32 within the 0.01-bit bar
everywhere, the faster ones within the error they recorded on their sample. Also: the batch size
chosen for the GPU, a real out-of-memory error halving the batch, the fused heads and
``torch.compile`` when asked, Ray with one GPU per task, and the trainer's bf16 autocast path.
``benchmarks/gpu_session.sh`` runs these on a GPU machine; its ``--dry-run`` runs them on the CPU
(``LDW_CUDA_TESTS_DEVICE=cpu``) to check the tests themselves, less those that need CUDA's memory
or autocast, and ``torch.compile`` (minutes on a small CPU).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from ldw.probe.scoring import EvalBatchPlan, ScoreOptions, score_plan
from ldw.sweep.config import SweepConfig
from ldw.sweep.run import run_sweep
from ldw.train.trainer import train_run
from ldw.warehouse import Warehouse
from tests.conftest import TINY_TRAIN

DEVICE = os.environ.get("LDW_CUDA_TESTS_DEVICE", "cuda")
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
needs_cuda = pytest.mark.skipif(DEVICE != "cuda", reason="needs CUDA itself (a dry run on the CPU skips it)")
BAR_BITS = 0.01


def _values(root: Path) -> dict[tuple[str, int], np.ndarray]:
    frame = Warehouse.open(root, read_only=True).query(
        "SELECT run_id, step, list(surprisal_bits ORDER BY token_idx) AS v FROM surprisal GROUP BY run_id, step"
    )
    return {(r, s): np.asarray(v, dtype=np.float64) for r, s, v in frame.iter_rows()}


def _settings(root: Path) -> dict:
    return json.loads(Warehouse.open(root, read_only=True).query("SELECT settings FROM sweeps")["settings"][0])


@pytest.fixture(scope="module")
def cpu_sweep(_ingested: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The exact fp32 sweep of the tiny runs on the CPU."""
    root = tmp_path_factory.mktemp("cpu") / "wh"
    shutil.copytree(_ingested, root)
    run_sweep(root, SweepConfig(device="cpu"), progress=False)
    return root


def _gpu_sweep(ingested_warehouse: Path, **options: object) -> tuple[dict, dict]:
    summary = run_sweep(ingested_warehouse, SweepConfig(device=DEVICE, **options), progress=False)
    assert not summary.failed
    return _values(ingested_warehouse), _settings(ingested_warehouse)


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16", "fp16"])
def test_each_precision_on_cuda_against_the_exact_cpu_sweep(
    precision: str, cpu_sweep: Path, ingested_warehouse: Path
) -> None:
    gpu, settings = _gpu_sweep(ingested_warehouse, precision=precision)
    cpu = _values(cpu_sweep)
    assert settings["device"].startswith(DEVICE) and settings["precision"] == precision
    assert settings["batch_size_given"] is False and settings["batch_size"] >= 1
    worst = max(float(np.abs(gpu[key] - cpu[key]).max()) for key in cpu)
    first = settings["precision_error"]
    if precision == "fp32":
        assert worst < BAR_BITS and first["within_bar"] and first["reference"] == "float64"
    else:
        # the recorded error is the error against exact values on the sample at the measured checkpoints
        _, seq_ids, _ = Warehouse.open(cpu_sweep, read_only=True).eval_arrays()
        mask = np.isin(seq_ids, first["sequences"])
        for check in (first, settings["precision_error_last"]):
            key = (check["run_id"], check["step"])
            assert check["max_abs_bits"] == pytest.approx(np.abs(gpu[key] - cpu[key])[mask].max(), abs=1e-3)


@pytest.mark.parametrize("head", ["liger", "cce"])
def test_fused_heads_when_installed_stay_as_close_as_the_chunked_head(
    head: str, cpu_sweep: Path, ingested_warehouse: Path, tmp_path: Path
) -> None:
    pytest.importorskip({"liger": "liger_kernel", "cce": "cut_cross_entropy"}[head])
    chunked_root = tmp_path / "chunked"
    shutil.copytree(ingested_warehouse, chunked_root)
    chunked, _ = _gpu_sweep(chunked_root, precision="bf16")
    fused, settings = _gpu_sweep(ingested_warehouse, precision="bf16", fused_head=head)
    assert settings["head"] == head
    cpu = _values(cpu_sweep)
    chunked_err = max(float(np.abs(chunked[k] - cpu[k]).max()) for k in cpu)
    fused_err = max(float(np.abs(fused[k] - cpu[k]).max()) for k in cpu)
    assert fused_err <= max(2 * chunked_err, 0.05)


@needs_cuda
def test_compiled_body_stays_within_the_bar(cpu_sweep: Path, ingested_warehouse: Path) -> None:
    gpu, settings = _gpu_sweep(ingested_warehouse, compile=True)
    cpu = _values(cpu_sweep)
    assert settings["compile"] is True
    assert max(float(np.abs(gpu[k] - cpu[k]).max()) for k in cpu) < BAR_BITS


@needs_cuda
def test_a_real_out_of_memory_error_halves_the_batch() -> None:
    torch.manual_seed(0)
    config = GPTNeoXConfig(
        vocab_size=1024, hidden_size=512, num_hidden_layers=2, num_attention_heads=8, intermediate_size=2048
    )
    model = GPTNeoXForCausalLM(config).cuda().eval()
    ids = np.random.default_rng(0).integers(0, 1024, size=(64, 2048))
    plan = EvalBatchPlan(ids, np.repeat(np.arange(64), 2047), np.tile(np.arange(1, 2048), 64))
    want = score_plan(model, plan, ScoreOptions(batch_size=2)).values
    free, _ = torch.cuda.mem_get_info()
    hog = torch.empty(free - (3 << 30), dtype=torch.uint8, device="cuda")  # leave 3 GiB
    try:
        got = score_plan(model, plan, ScoreOptions(batch_size=64))
    finally:
        del hog
        torch.cuda.empty_cache()
    assert got.batch_size < 64  # a forward of 64 x 2048 tokens needs more than 3 GiB
    np.testing.assert_allclose(got.values, want, atol=1e-4)


def test_ray_gives_each_task_one_gpu(cpu_sweep: Path, ingested_warehouse: Path) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, num_gpus=int(DEVICE == "cuda"), include_dashboard=False, logging_level=logging.WARNING)
    try:
        gpu, settings = _gpu_sweep(ingested_warehouse, executor="ray")
    finally:
        ray.shutdown()
    assert settings["executor"] == "ray" and settings["device"].startswith(DEVICE)
    cpu = _values(cpu_sweep)
    assert max(float(np.abs(gpu[k] - cpu[k]).max()) for k in cpu) < BAR_BITS


@needs_cuda
def test_trainer_bf16_autocast_follows_the_fp32_cpu_run(tiny_runs: list[Path], tmp_path: Path) -> None:
    base = dataclasses.replace(TINY_TRAIN, steps=12, save_every=12, tokenizer=str(tiny_runs[0] / "tokenizer"))
    logs = {}
    for device in ("cpu", "cuda"):
        out = train_run(dataclasses.replace(base, device=device), tmp_path / device, progress=False)
        logs[device] = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    cpu = np.array([row["loss"] for row in logs["cpu"]])
    cuda = np.array([row["loss"] for row in logs["cuda"]])
    assert np.all(np.isfinite(cuda))
    assert abs(cuda[0] - cpu[0]) < 0.02  # same init and batch: only bf16 rounding differs
    assert float(np.mean(np.abs(cuda - cpu))) < 0.05 * math.log(TINY_TRAIN.vocab_size)
