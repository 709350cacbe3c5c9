"""Tests for the trainer's stability knobs: LR schedules, Takase et al.'s init and embeddings,
Qi et al.'s step bound, Wortsman et al.'s qk-layernorm / z-loss / signals, and that every
knob's checkpoints reload as plain transformers models computing the training forward."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from ldw.corpus import builtin_documents
from ldw.probe.loading import load_causal_lm
from ldw.train.config import TrainConfig, TrainConfigError, build_model_config, learning_rate, lr_sequence
from ldw.train.knobs import TrainingKnobs
from ldw.train.lr_schedules import generate, parse_schedule_spec
from ldw.train.stability import AttentionLogitMonitor, apply_small_init, small_init_std
from ldw.train.step_bound import StepBound, power_sigma1
from ldw.train.trainer import _train_loop, token_stream, train_run

TINY = dict(steps=3, save_every=3, batch_size=2, seq_len=16, vocab_size=320, warmup_steps=0, device="cpu")


def _model(config: TrainConfig, vocab: int = 320):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(build_model_config(config, vocab, 0))


def _log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


# --- learning-rate schedules -------------------------------------------------------------------


def test_schedules_give_the_expected_sequences():
    def lrs(**kw: object) -> list[float]:
        return lr_sequence(TrainConfig(steps=10, lr=1.0, **kw))[1:]

    assert lrs(schedule="constant", warmup_steps=0) == pytest.approx([1.0] * 10)
    assert lrs(schedule="constant", warmup_steps=4) == pytest.approx([0.25, 0.5, 0.75] + [1.0] * 7)
    # wsd: last 20% (steps 8..10) linear from 1 to min_lr_ratio 0.1 over progress (s - 8) / 2
    assert lrs(schedule="wsd", warmup_steps=0) == pytest.approx([1.0] * 8 + [0.55, 0.1])
    sqrt_decay = [1.0] * 8 + [1 - 0.9 * math.sqrt(0.5), 0.1]
    assert lrs(schedule="wsd", warmup_steps=0, decay_shape="sqrt") == pytest.approx(sqrt_decay)
    spec = parse_schedule_spec("wsd:shape=sqrt,min_ratio=0.1")  # the LR-law side reads the same shape
    assert generate(spec, 10, 1.0, 0)[1:] == pytest.approx(sqrt_decay)
    assert lrs(schedule="wsd", decay_fraction=0.5, min_lr_ratio=0.0, warmup_steps=0) == pytest.approx(
        [1.0] * 5 + [0.8, 0.6, 0.4, 0.2, 0.0]
    )
    multistep = lrs(schedule="multistep", warmup_steps=0, lr_milestones=(0.5, 0.8), lr_gamma=0.1)
    assert multistep == pytest.approx([1.0] * 4 + [0.1] * 3 + [0.01] * 3)
    cosine = [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / 10)) for s in range(1, 11)]
    assert lrs(warmup_steps=0) == pytest.approx(cosine)
    assert lrs(warmup_steps=20) == pytest.approx([s / 20 for s in range(1, 11)])  # warmup longer than the run
    assert learning_rate(8, TrainConfig(steps=10, lr=1.0, schedule="wsd", warmup_steps=2)) == 1.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("schedule", "linear"),
        ("decay_shape", "cubic"),
        ("lr_milestones", (0.9, 0.5)),
        ("min_lr_ratio", 2.0),
        ("step_bound_tau", -1.0),
        ("z_loss", -0.1),
        ("est_stages", ((0.5, 0.5, 0.5),)),
        ("est_stages", ((0.7, 1, 1, 1), (0.7, 1, 1, 1))),
        ("est_stages", ((0.5, 0.0, 1, 1),)),
        ("qk_layernorm", True),
    ],
)
def test_config_rejects_bad_stability_values(field, value):
    with pytest.raises(TrainConfigError, match=field):
        TrainConfig(**{field: value})


def test_defaults_are_off_and_old_run_files_still_match(tiny_runs, tmp_path):
    assert TrainConfig().stability_knobs == {}
    run = json.loads((tiny_runs[0] / "run.json").read_text())
    assert "stability" not in run and run["train_config"]["schedule"] == "cosine"
    assert {"est_stages", "z_loss", "step_bound_tau", "qk_layernorm"} <= set(run["train_config"])
    assert all(set(row) == {"step", "loss", "grad_norm", "lr", "tokens_seen"} for row in _log(tiny_runs[0]))
    config = TrainConfig(**run["train_config"])
    old = {
        key: value
        for key, value in run["train_config"].items()
        if key
        in (
            "corpus",
            "seed",
            "size",
            "arch",
            "steps",
            "batch_size",
            "seq_len",
            "lr",
            "warmup_steps",
            "save_every",
            "eval_fraction",
            "tokenizer",
            "vocab_size",
            "device",
            "weight_decay",
            "grad_clip",
        )
    }
    (tmp_path / "run.json").write_text(json.dumps({"train_config": old, "complete": True}))
    assert train_run(config, tmp_path, progress=False) == tmp_path  # reused: missing fields count as defaults
    with pytest.raises(TrainConfigError, match=r"differs in: z_loss"):
        train_run(TrainConfig(**{**run["train_config"], "z_loss": 1e-4}), tmp_path, progress=False)


# --- Takase et al. -----------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["gpt_neox", "llama"])
def test_small_init_matches_takase_stds(arch):
    config = TrainConfig(size="small", arch=arch)
    model = _model(config, vocab=2000)
    stds = apply_small_init(model)
    d, n_layers = 256, 6
    assert stds["std"] == pytest.approx(math.sqrt(2 / (5 * d))) == small_init_std(d)
    outputs = ("attention.dense.weight", "dense_4h_to_h.weight", "o_proj.weight", "down_proj.weight")
    checked = {"output": 0, "other": 0}
    for name, param in model.named_parameters():
        if param.ndim == 2:
            is_output = name.endswith(outputs)
            expected = math.sqrt(2 / (5 * d)) / (math.sqrt(2 * n_layers) if is_output else 1.0)
            assert param.std().item() == pytest.approx(expected, rel=0.03), name
            assert abs(param.mean().item()) < 0.05 * expected, name
            checked["output" if is_output else "other"] += 1
        elif name.endswith("bias"):
            assert torch.count_nonzero(param) == 0, name  # Linear biases zeroed, norm biases untouched (0)
        else:
            assert torch.all(param == 1.0), name  # norm gains untouched
    assert checked["output"] == 2 * n_layers and checked["other"] > 2 * n_layers


def test_embedding_knobs_fold_into_a_plain_checkpoint(tiny_runs, tmp_path):
    config = TrainConfig(
        **{
            **TINY,
            "scaled_embed": True,
            "embed_layernorm": True,
            "small_init": True,
            "tokenizer": str(tiny_runs[0] / "tokenizer"),
        }
    )
    out = train_run(config, tmp_path / "run", progress=False)
    start = AutoModelForCausalLM.from_pretrained(out / "step0").get_input_embeddings().weight.detach()
    rows = start.double()
    assert torch.allclose(rows.mean(1), torch.zeros(len(rows), dtype=torch.double), atol=1e-5)  # LayerNorm at init
    assert torch.allclose(rows.var(1, unbiased=False), torch.ones(len(rows), dtype=torch.double), atol=1e-3)
    scaled = TrainConfig(**{**config.to_dict(), "embed_layernorm": False})
    out = train_run(scaled, tmp_path / "scaled", progress=False)
    start = AutoModelForCausalLM.from_pretrained(out / "step0").get_input_embeddings().weight
    assert start.std().item() == pytest.approx(math.sqrt(64) * small_init_std(64), rel=0.03)  # sqrt(2/5)
    info = json.loads((out / "run.json").read_text())["stability"]
    assert info["knobs"] == {"scaled_embed": True, "small_init": True} and "sqrt(d) * E[token]" in info["embedding"]


# --- every knob: checkpoint = in-memory training forward ---------------------------------------

KNOB_SETS = [
    {"scaled_embed": True},
    {"embed_layernorm": True, "small_init": True},
    {"scaled_embed": True, "embed_layernorm": True, "arch": "llama"},
    {"qk_layernorm": True, "arch": "llama"},
    {"z_loss": 1e-3, "log_signals": True, "schedule": "wsd"},
    {"step_bound_tau": 0.01},
    {"est_stages": ((0.67, 0.5, 0.5, 0.5),)},
]


@pytest.mark.parametrize("knobs", KNOB_SETS, ids=lambda k: "+".join(k))
def test_checkpoints_reload_with_the_training_forward(tiny_runs, tmp_path, knobs):
    tokenizer = AutoTokenizer.from_pretrained(tiny_runs[0] / "tokenizer")
    config = TrainConfig(**{**TINY, **knobs})
    stream = token_stream(builtin_documents()[:30], tokenizer)
    model = _model(config, len(tokenizer))
    kit = TrainingKnobs(model, config)
    _train_loop(kit, tokenizer, stream, config, torch.device("cpu"), tmp_path, progress=False)
    kit.close()
    ids = stream[:40].view(2, 20)
    model.eval()
    with torch.no_grad():
        trained = model(input_ids=ids).logits
        reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "step3")(input_ids=ids).logits
        swept = load_causal_lm(tmp_path / "step3", torch.device("cpu"), torch.float32)(input_ids=ids).logits
    assert torch.allclose(trained, reloaded, atol=1e-5, rtol=0) and torch.allclose(trained, swept, atol=1e-5, rtol=0)
    assert not torch.equal(trained, AutoModelForCausalLM.from_pretrained(tmp_path / "step0")(input_ids=ids).logits)
    assert json.loads((tmp_path / "step3" / "config.json").read_text())["model_type"] == (
        "qwen3" if config.qk_layernorm else model.config.model_type
    )
    extra = {
        "z_loss": {"z_loss"},
        "log_signals": {"max_attn_logit", "logit_lse_mean"},
        "step_bound_tau": {"step_bound_clipped", "step_bound_min_scale", "step_bound_max_ratio"},
        "est_stages": {"est_stage", "est_flops"},
    }
    expected = {"step", "loss", "grad_norm", "lr", "tokens_seen"}.union(*(extra.get(k, set()) for k in knobs))
    assert all(set(row) == expected for row in _log(tmp_path))


# --- Wortsman et al. ---------------------------------------------------------------------------


def test_qk_layernorm_model_is_llama_plus_per_head_q_k_norms():
    llama = _model(TrainConfig(arch="llama"))
    qwen = _model(TrainConfig(arch="llama", qk_layernorm=True))
    assert qwen.config.model_type == "qwen3" and qwen.config.head_dim == 16
    missing, unexpected = qwen.load_state_dict(llama.state_dict(), strict=False)
    assert unexpected == [] and sorted({key.split(".")[-2] for key in missing}) == ["k_norm", "q_norm"]
    ids = torch.randint(0, 320, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.allclose(qwen(input_ids=ids).logits, llama(input_ids=ids).logits, atol=1e-3)
        for layer in qwen.model.layers:
            layer.self_attn.q_norm = torch.nn.Identity()
            layer.self_attn.k_norm = torch.nn.Identity()
        assert torch.allclose(qwen(input_ids=ids).logits, llama(input_ids=ids).logits, atol=1e-5)


def test_z_loss_adds_exactly_the_term():
    config = TrainConfig(**{**TINY, "z_loss": 1e-2})
    model = _model(config)
    ids = torch.randint(0, 320, (2, 16), generator=torch.Generator().manual_seed(1))
    objective, ce, extra = TrainingKnobs(model, config).loss(ids)
    logits = model(input_ids=ids).logits.detach().double().numpy()[:, :-1]
    lse = logsumexp(logits, axis=-1)
    targets = ids.numpy()[:, 1:]
    expected_ce = float(np.mean(lse - np.take_along_axis(logits, targets[..., None], -1)[..., 0]))
    expected_z = 1e-2 * float(np.mean(lse**2))
    assert ce.item() == pytest.approx(expected_ce, rel=1e-5)
    assert extra["z_loss"] == pytest.approx(expected_z, rel=1e-5)
    assert objective.item() == pytest.approx(expected_ce + expected_z, rel=1e-5)


def test_max_attention_logit_matches_a_direct_computation():
    config = TrainConfig(arch="llama")
    model = _model(config).eval()
    ids = torch.randint(0, 320, (1, 10), generator=torch.Generator().manual_seed(2))
    captured = []
    handles = [
        layer.input_layernorm.register_forward_hook(lambda m, a, out: captured.append(out))
        for layer in model.model.layers
    ]
    monitor = AttentionLogitMonitor(model)
    with torch.no_grad():
        model(input_ids=ids)
        measured = monitor.pop()
        cos, sin = model.model.rotary_emb(captured[0], torch.arange(10)[None])
        best = -math.inf
        for layer, hidden in zip(model.model.layers, captured, strict=True):
            q = layer.self_attn.q_proj(hidden).view(1, 10, 4, 16).transpose(1, 2)
            k = layer.self_attn.k_proj(hidden).view(1, 10, 4, 16).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            scores = (q @ k.transpose(2, 3)).numpy() / 4.0
            best = max(best, max(scores[..., i, : i + 1].max() for i in range(10)))  # causal entries only
    monitor.remove()
    for handle in handles:
        handle.remove()
    assert measured == pytest.approx(best, rel=1e-5)
    assert model.config._attn_implementation == "sdpa"


def test_attention_monitors_of_two_models_stay_apart():
    first, second = _model(TrainConfig()), _model(TrainConfig(arch="llama"))
    monitors = [AttentionLogitMonitor(first), AttentionLogitMonitor(second)]
    with torch.no_grad():
        first(input_ids=torch.zeros(1, 4, dtype=torch.long))
    assert math.isfinite(monitors[0].pop()) and monitors[1].pop() == -math.inf
    for monitor in monitors:
        monitor.remove()
    assert not hasattr(first.gpt_neox.layers[0].attention, "_ldw_logit_monitor")


# --- Qi et al. ---------------------------------------------------------------------------------


def test_power_iteration_converges_to_the_svd():
    matrix = torch.randn(30, 20, generator=torch.Generator().manual_seed(3))
    sigma, _ = power_sigma1(matrix, torch.ones(20) / math.sqrt(20), 200)
    assert sigma == pytest.approx(np.linalg.svd(matrix.numpy(), compute_uv=False)[0], rel=1e-5)


def test_step_bound_caps_sigma1_of_every_applied_update():
    gen = torch.Generator().manual_seed(4)
    params = [torch.nn.Parameter(torch.randn(24, 16, generator=gen)) for _ in range(3)]
    bound = StepBound(params, tau=0.05, iters=50, seed=0)
    before = [p.detach().clone() for p in params]
    updates = [torch.randn(24, 16, generator=gen) * scale for scale in (1.0, 0.1, 1e-3)]
    bound.snapshot()
    with torch.no_grad():
        for p, u in zip(params, updates, strict=True):
            p.add_(u)
    stats = bound.apply()
    for p, w, u in zip(params, before, updates, strict=True):
        applied = (p.detach() - w).numpy()
        limit = 0.05 * np.linalg.svd(w.numpy(), compute_uv=False)[0]
        sigma = np.linalg.svd(applied, compute_uv=False)[0]
        assert sigma <= limit * (1 + 1e-4)
        if np.linalg.svd(u.numpy(), compute_uv=False)[0] > limit:
            assert sigma == pytest.approx(limit, rel=1e-4)
            assert np.allclose(applied, u.numpy() * sigma / np.linalg.svd(u.numpy(), compute_uv=False)[0], atol=1e-6)
        else:
            assert np.allclose(applied, u.numpy(), atol=1e-6)  # within the bound: untouched
    assert (stats.matrices, stats.clipped) == (3, 2) and stats.min_scale < 0.1


def test_step_bound_in_training_logs_and_run_file(tiny_runs, tmp_path):
    config = TrainConfig(
        **{
            **TINY,
            "steps": 4,
            "lr": 0.05,
            "step_bound_tau": 0.02,
            "step_bound_power_iters": 20,
            "tokenizer": str(tiny_runs[0] / "tokenizer"),
        }
    )
    out = train_run(config, tmp_path / "run", progress=False)
    log = _log(out)
    assert all(0 <= row["step_bound_clipped"] <= 10 and 0 < row["step_bound_min_scale"] <= 1 for row in log)
    assert sum(row["step_bound_clipped"] for row in log) > 0
    summary = json.loads((out / "run.json").read_text())["stability"]["step_bound"]
    assert summary["clipped_updates"] == sum(row["step_bound_clipped"] for row in log)
    assert summary["matrix_updates"] == 4 * 10  # 2 layers x (qkv, dense, 2 MLP) + embedding + head
    for step in range(4):  # checkpoints at every step 0..4
        w0 = AutoModelForCausalLM.from_pretrained(out / f"step{step}").state_dict()
        w1 = AutoModelForCausalLM.from_pretrained(out / f"step{step + 1}").state_dict()
        for name, value in w0.items():
            if value.ndim == 2:
                sigma_u = np.linalg.svd((w1[name] - value).numpy(), compute_uv=False)[0]
                sigma_w = np.linalg.svd(value.numpy(), compute_uv=False)[0]
                assert sigma_u <= 0.02 * sigma_w * 1.02, (step, name)
