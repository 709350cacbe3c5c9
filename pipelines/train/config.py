"""Configuration of reference training runs: the TrainConfig, model size presets,
the learning-rate schedule and the Pythia-like checkpoint schedule.

The stability knobs (Takase et al., Qi et al., Wortsman et al., Li et al. EST) are
fields of TrainConfig, every one off by default; ``pipelines/stability.py``,
``pipelines/step_bound.py`` and ``pipelines/subnetwork.py`` implement them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from ldw.errors import LdwError, SettingsError
from ldw.setting_checks import MAX_COUNT, real, whole
from ldw.train.lr_schedules import GENERATORS, WSD_SHAPES

if TYPE_CHECKING:
    from transformers import PretrainedConfig

ARCHS = ("gpt_neox", "llama")
DEVICES = ("auto", "cpu", "cuda")
SCHEDULES = tuple(GENERATORS)  # constant | cosine | wsd | multistep
MIN_LR_RATIO = 0.1  # default end of the cosine (and wsd) decay: 10% of the peak learning rate

# hidden size, layers, attention heads, MLP intermediate size
SIZE_PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 256},
    "small": {"hidden_size": 256, "num_hidden_layers": 6, "num_attention_heads": 8, "intermediate_size": 1024},
    "160m": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
}


MAX_SEED = 2**63 - 1
MAX_VOCAB = 1 << 24  # no tokenizer in use comes near it; far beyond it the BPE trainer overflows
# Whole-number fields and their (lowest, highest) value; the other checks below cover the rest.
WHOLE_FIELDS = {
    "seed": (0, MAX_SEED),
    "steps": (1, MAX_COUNT),
    "batch_size": (1, MAX_COUNT),
    "seq_len": (2, MAX_COUNT),
    "warmup_steps": (0, MAX_COUNT),
    "save_every": (1, MAX_COUNT),
    "vocab_size": (257, MAX_VOCAB),
    "step_bound_power_iters": (1, MAX_COUNT),
}
# Real-number fields that must be finite; their ranges are checked below.
REAL_FIELDS = (
    "lr",
    "eval_fraction",
    "weight_decay",
    "grad_clip",
    "min_lr_ratio",
    "decay_fraction",
    "lr_gamma",
    "step_bound_tau",
    "z_loss",
)


class TrainConfigError(LdwError, ValueError):
    """A training configuration or run folder is invalid; the message says which and why."""


class TrainSettingsError(TrainConfigError, SettingsError):
    """A training setting is malformed or out of range (a usage error: ``ldw train`` exits 2)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a reference training run (the defaults are the offline demo's)."""

    corpus: str = "builtin"
    seed: int = 0
    size: str = "tiny"
    arch: str = "gpt_neox"
    steps: int = 1000
    batch_size: int = 8
    seq_len: int = 64
    lr: float = 1e-2
    warmup_steps: int = 50
    save_every: int = 100
    eval_fraction: float = 0.1
    tokenizer: str | None = None
    vocab_size: int = 512
    device: str = "auto"
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    # learning-rate schedule (warmup_steps applies to all; warmup_steps=0 means none)
    schedule: str = "cosine"
    min_lr_ratio: float = MIN_LR_RATIO  # cosine and wsd end at min_lr_ratio * lr
    decay_fraction: float = 0.2  # wsd: the last fraction of steps decays
    decay_shape: str = "linear"  # wsd: linear | sqrt (1 - sqrt(progress))
    lr_milestones: tuple[float, ...] = (0.8, 0.9)  # multistep: fractions of steps where lr *= lr_gamma
    lr_gamma: float = 0.316
    # Takase et al. 2023 ("Spike No More")
    scaled_embed: bool = False  # embeddings * sqrt(hidden_size)
    embed_layernorm: bool = False  # LayerNorm after the embedding
    small_init: bool = False  # std sqrt(2/(5d)); attention/MLP output projections also / sqrt(2 * layers)
    # Qi et al. 2025: sigma1(update) <= tau * sigma1(W) for every matrix (0 = off)
    step_bound_tau: float = 0.0
    step_bound_power_iters: int = 10
    # Wortsman et al. 2023
    qk_layernorm: bool = False  # arch llama only: built as Qwen3 (per-head RMSNorm on q and k)
    z_loss: float = 0.0  # adds z_loss * mean(logsumexp(logits)^2)
    log_signals: bool = False  # log max attention logit and mean output log-partition per step
    # Li et al. 2024 (EST): stages of (fraction_of_steps, head_fraction, mlp_fraction, layer_fraction)
    est_stages: tuple[tuple[float, float, float, float], ...] = ()

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "lr_milestones", tuple(real("lr_milestones", m) for m in self.lr_milestones))
        except (TypeError, SettingsError):
            raise TrainSettingsError(f"lr_milestones must be fractions of steps, got {self.lr_milestones!r}") from None
        object.__setattr__(self, "est_stages", _normalize_stages(self.est_stages))
        try:
            for name, (low, high) in WHOLE_FIELDS.items():
                object.__setattr__(self, name, whole(name, getattr(self, name), low, high))
            for name in REAL_FIELDS:
                object.__setattr__(self, name, real(name, getattr(self, name)))
        except SettingsError as exc:
            raise TrainSettingsError(str(exc)) from None
        checks = [
            (self.size in SIZE_PRESETS, f"size must be one of {', '.join(SIZE_PRESETS)}, got {self.size!r}"),
            (self.arch in ARCHS, f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}, got {self.device!r}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (0.0 <= self.eval_fraction < 1.0, f"eval_fraction must be in [0, 1), got {self.eval_fraction}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (self.grad_clip >= 0, f"grad_clip must be >= 0 (0 disables clipping), got {self.grad_clip}"),
            *self._stability_checks(),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainSettingsError(message)

    def _stability_checks(self) -> list[tuple[bool, str]]:
        """(ok, message) pairs for the schedule and stability fields."""
        milestones = self.lr_milestones
        return [
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"),
            (0.0 <= self.min_lr_ratio <= 1.0, f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}"),
            (0.0 < self.decay_fraction <= 1.0, f"decay_fraction must be in (0, 1], got {self.decay_fraction}"),
            (
                self.decay_shape in WSD_SHAPES,
                f"decay_shape must be one of {', '.join(WSD_SHAPES)}, got {self.decay_shape!r}",
            ),
            (
                all(0.0 < m < 1.0 for m in milestones) and list(milestones) == sorted(milestones),
                f"lr_milestones must be increasing fractions in (0, 1), got {list(milestones)}",
            ),
            (0.0 < self.lr_gamma <= 1.0, f"lr_gamma must be in (0, 1], got {self.lr_gamma}"),
            (
                self.step_bound_tau >= 0,
                f"step_bound_tau must be >= 0 (0 disables the bound), got {self.step_bound_tau}",
            ),
            (
                self.step_bound_power_iters >= 1,
                f"step_bound_power_iters must be >= 1, got {self.step_bound_power_iters}",
            ),
            (
                not self.qk_layernorm or self.arch == "llama",
                "qk_layernorm needs arch 'llama' (built as a Qwen3 model: Llama with per-head q/k RMSNorm); "
                "GPT-NeoX has no transformers-native q/k norm",
            ),
            (self.z_loss >= 0, f"z_loss must be >= 0, got {self.z_loss}"),
            *_stage_checks(self.est_stages),
        ]

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict (tuples become lists, as they read back from run.json)."""
        return json.loads(json.dumps(asdict(self)))

    def identity(self) -> dict[str, Any]:
        """The fields that decide what a run produces (all but ``device``), for reuse checks."""
        identity = self.to_dict()
        del identity["device"]
        return identity

    @property
    def stability_knobs(self) -> dict[str, Any]:
        """The stability fields that differ from their (off) defaults, by name."""
        names = (
            "scaled_embed",
            "embed_layernorm",
            "small_init",
            "step_bound_tau",
            "qk_layernorm",
            "z_loss",
            "log_signals",
            "est_stages",
        )
        defaults = {f.name: f.default for f in fields(self)}
        return {name: self.to_dict()[name] for name in names if getattr(self, name) != defaults[name]}


def config_defaults() -> dict[str, Any]:
    """Every TrainConfig field's default, JSON-ready (what a run.json written before a field existed meant)."""
    return TrainConfig().to_dict()


def parse_milestones(text: str) -> tuple[float, ...]:
    """Multistep milestones written as comma-separated fractions of steps, e.g. ``0.8,0.9``."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise TrainSettingsError(f"--lr-milestones must be fractions separated by commas, not {text!r}") from None


def parse_est_stages(text: str) -> tuple[tuple[float, float, float, float], ...]:
    """Parse EST stages written ``STEPS:HEADS:MLP:LAYERS`` (fractions), stages comma-separated,
    e.g. ``0.3:0.5:0.5:0.5,0.3:0.75:0.75:1``; an empty text means no EST."""
    stages = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        values = item.split(":")
        if len(values) != 4:
            raise TrainSettingsError(f"est_stages: stage {item!r} is not STEPS:HEADS:MLP:LAYERS")
        try:
            stages.append(tuple(float(value) for value in values))
        except ValueError:
            raise TrainSettingsError(f"est_stages: stage {item!r} has a value that is not a number") from None
    return tuple(stages)


def _normalize_stages(stages: Any) -> tuple[tuple[float, ...], ...]:
    """EST stages as a tuple of float tuples (run.json stores lists)."""
    try:
        return tuple(tuple(real("est_stages", x) for x in stage) for stage in stages)
    except (TypeError, SettingsError):
        raise TrainSettingsError(
            f"est_stages must be a list of (steps, heads, mlp, layers) fractions, got {stages!r}"
        ) from None


def _stage_checks(stages: tuple[tuple[float, ...], ...]) -> list[tuple[bool, str]]:
    """(ok, message) pairs for ``est_stages``."""
    shapes_ok = all(len(stage) == 4 for stage in stages)
    return [
        (
            shapes_ok,
            f"est_stages: each stage needs 4 numbers (steps, heads, mlp, layers fractions), got {list(stages)}",
        ),
        (
            not shapes_ok or all(stage[0] > 0 and all(0.0 < f <= 1.0 for f in stage[1:]) for stage in stages),
            f"est_stages: step fractions must be > 0 and head/mlp/layer fractions in (0, 1], got {list(stages)}",
        ),
        (
            not shapes_ok or sum(stage[0] for stage in stages) <= 1.0 + 1e-9,
            f"est_stages: step fractions must sum to <= 1 (the rest trains the full model), got {list(stages)}",
        ),
    ]


def checkpoint_steps(total_steps: int, save_every: int) -> list[int]:
    """Pythia-like checkpoint schedule: 0, then 1, 2, 4, ... below ``save_every``,
    then every ``save_every`` steps, and always ``total_steps``."""
    if total_steps < 0 or save_every < 1:
        raise TrainConfigError(f"need total_steps >= 0 and save_every >= 1, got {total_steps}, {save_every}")
    steps = {0, total_steps}
    power = 1
    while power < save_every and power <= total_steps:
        steps.add(power)
        power *= 2
    steps.update(range(save_every, total_steps + 1, save_every))
    return sorted(steps)


def lr_sequence(config: TrainConfig) -> np.ndarray:
    """Learning rate of every optimizer step, ``lrs[s]`` for s = 0..steps (index 0 unused by training).

    Linear warmup over ``warmup_steps`` (none when 0), then ``config.schedule`` from the
    generators of ``ldw.train.lr_schedules``: cosine to ``min_lr_ratio * lr``; constant;
    wsd (stable, then the last ``decay_fraction`` decays, ``decay_shape`` linear or 1-sqrt,
    to ``min_lr_ratio * lr``); multistep (``lr_gamma`` at each of ``lr_milestones``).
    A warmup as long as the run or longer leaves only the warmup ramp.
    """
    if config.warmup_steps >= config.steps:
        return config.lr * np.arange(config.steps + 1, dtype=np.float64) / config.warmup_steps
    base = {"steps": config.steps, "peak": config.lr, "warmup": config.warmup_steps}
    options: dict[str, Any] = {
        "constant": {},
        "cosine": {"min_ratio": config.min_lr_ratio},
        "wsd": {"decay_fraction": config.decay_fraction, "min_ratio": config.min_lr_ratio, "shape": config.decay_shape},
        "multistep": {"milestones": config.lr_milestones, "gamma": config.lr_gamma},
    }[config.schedule]
    try:
        return GENERATORS[config.schedule](**base, **options)
    except LdwError as err:
        raise TrainConfigError(f"schedule {config.schedule}: {err}") from None


def learning_rate(step: int, config: TrainConfig) -> float:
    """Learning rate of optimizer step ``step`` (1-based) under ``config`` (see ``lr_sequence``)."""
    if not 0 <= step <= config.steps:
        raise TrainConfigError(f"step must be in 0..{config.steps}, got {step}")
    return float(lr_sequence(config)[step])


def build_model_config(config: TrainConfig, vocab_size: int, eos_token_id: int) -> PretrainedConfig:
    """The transformers model config for ``config.arch`` at ``config.size``.

    ``max_position_embeddings`` equals the training ``seq_len`` (the longest context the
    model has seen), the vocabulary is the tokenizer's, and the stored dtype is float32.
    ``arch="llama"`` with ``qk_layernorm`` builds a ``Qwen3Config``: the Llama block with a
    per-head RMSNorm on queries and keys before RoPE, loadable by AutoModelForCausalLM.
    """
    from transformers import GPTNeoXConfig, LlamaConfig, Qwen3Config  # here: importing transformers costs seconds

    shape = dict(SIZE_PRESETS[config.size])
    common = dict(
        vocab_size=vocab_size,
        max_position_embeddings=config.seq_len,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=eos_token_id,
        tie_word_embeddings=False,
        **shape,
    )
    if config.arch == "gpt_neox":
        model_config = GPTNeoXConfig(**common)
    elif config.qk_layernorm:
        heads = shape["num_attention_heads"]
        model_config = Qwen3Config(num_key_value_heads=heads, head_dim=shape["hidden_size"] // heads, **common)
    else:
        model_config = LlamaConfig(num_key_value_heads=shape["num_attention_heads"], **common)
    model_config.dtype = "float32"
    return model_config
