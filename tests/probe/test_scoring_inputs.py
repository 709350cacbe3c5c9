"""The scorer refuses what it cannot score instead of returning values it never computed (issue 17, point 3)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from ldw.probe.errors import ProbeError
from ldw.probe.loading import load_causal_lm
from ldw.probe.scoring import EvalBatchPlan, score_surprisal
from ldw.probe.tokenizing import load_tokenizer

VOCAB = 50


@pytest.fixture(scope="module")
def model() -> GPTNeoXForCausalLM:
    torch.manual_seed(0)
    config = GPTNeoXConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    return GPTNeoXForCausalLM(config).eval()


def plan(prefix: int | None = None) -> EvalBatchPlan:
    ids = np.random.default_rng(0).integers(0, VOCAB, size=(6, 8))
    seq = np.repeat(np.arange(6), 7)
    pos = np.tile(np.arange(1, 8), 6)
    return EvalBatchPlan(ids, seq, pos, prefix)


@pytest.mark.parametrize("batch_size", [-1, 0, 2.5, True])
def test_a_batch_size_below_one_or_not_whole_is_refused(model: GPTNeoXForCausalLM, batch_size: object) -> None:
    with pytest.raises(ProbeError, match="batch size must be a whole number of at least 1"):
        score_surprisal(model, plan(), batch_size)  # type: ignore[arg-type]


def test_every_planned_token_is_scored_at_every_batch_size(model: GPTNeoXForCausalLM) -> None:
    full = score_surprisal(model, plan(), 6)
    for batch_size in (1, 4, 5, 100):
        np.testing.assert_allclose(score_surprisal(model, plan(), batch_size), full, rtol=1e-5)
    assert np.isfinite(full).all()


def test_token_ids_outside_the_embedding_are_refused(model: GPTNeoXForCausalLM) -> None:
    with pytest.raises(ProbeError, match=f"token id {VOCAB + 3} is outside the model's vocabulary of {VOCAB}"):
        score_surprisal(model, _with_id(plan(), VOCAB + 3), 4)
    with pytest.raises(ProbeError, match=f"token id {VOCAB} is outside"):
        score_surprisal(model, plan(prefix=VOCAB), 4)


def _with_id(base: EvalBatchPlan, token: int) -> EvalBatchPlan:
    ids = base.input_ids.copy()
    ids[2, 3] = token
    return EvalBatchPlan(ids, base.seq_ids, base.positions, base.prefix_token_id)


@pytest.mark.parametrize(
    ("seq_ids", "positions", "message"),
    [
        (np.array([0, 6]), np.array([1, 1]), "sequences outside 0..5"),
        (np.array([0, 1]), np.array([1, 8]), "positions beyond the sequence length 8"),
        (np.array([0, 1]), np.array([1]), "one sequence id and one position each"),
    ],
)
def test_plans_naming_tokens_that_do_not_exist_are_refused(
    seq_ids: np.ndarray, positions: np.ndarray, message: str
) -> None:
    with pytest.raises(ProbeError, match=message):
        EvalBatchPlan(np.zeros((6, 8), dtype=np.int64), seq_ids, positions)


# --- refusals that name the file and the way on (issue 17, point 12) ----------------------------------


class Payload:
    """Pickles as a call of os.system: what a hostile .bin carries."""

    def __reduce__(self) -> tuple:
        return (os.system, ("echo never-run",))


@pytest.mark.parametrize("weights_file", ["pytorch_model.bin", "weights.pt"])
def test_a_pickle_that_needs_code_is_refused_in_one_whole_sentence(
    tiny_runs: list[Path], tmp_path: Path, weights_file: str
) -> None:
    source = tiny_runs[0] / "step24"
    folder = tmp_path / "hostile"
    folder.mkdir()
    shutil.copy(source / "config.json", folder / "config.json")
    state = load_file(source / "model.safetensors")
    state["payload"] = Payload()
    torch.save(state, folder / weights_file)
    with pytest.raises(ProbeError) as raised:
        load_causal_lm(folder, torch.device("cpu"))
    message = str(raised.value)
    assert message.startswith(f"{folder / weights_file}: refused: the pickled weights reference ")
    assert "system" in message and "weights_only=False" not in message and "\n" not in message
    assert message.endswith("save them as safetensors to score this checkpoint")


def test_tokenizer_folders_that_are_not_there_are_named(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match=f"^{tmp_path / 'absent'}: tokenizer folder not found$"):
        load_tokenizer(tmp_path / "absent")
    (tmp_path / "file.json").write_text("{}")
    with pytest.raises(ProbeError, match="not a folder"):
        load_tokenizer(tmp_path / "file.json")
    with pytest.raises(ProbeError, match="no tokenizer files in this folder"):
        load_tokenizer(tmp_path)
