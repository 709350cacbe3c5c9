"""Configuration of reference training runs: the TrainConfig, model size presets,
the learning-rate schedule and the Pythia-like checkpoint schedule."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from transformers import GPTNeoXConfig, LlamaConfig, PretrainedConfig

from pipelines.errors import LdwError

ARCHS = ("gpt_neox", "llama")
DEVICES = ("auto", "cpu", "cuda")
MIN_LR_RATIO = 0.1  # cosine decay ends at 10% of the peak learning rate

# hidden size, layers, attention heads, MLP intermediate size
SIZE_PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 256},
    "small": {"hidden_size": 256, "num_hidden_layers": 6, "num_attention_heads": 8, "intermediate_size": 1024},
    "160m": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
}


class TrainConfigError(LdwError, ValueError):
    """A training configuration or run folder is invalid; the message says which and why."""


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

    def __post_init__(self) -> None:
        checks = [
            (self.size in SIZE_PRESETS, f"size must be one of {', '.join(SIZE_PRESETS)}, got {self.size!r}"),
            (self.arch in ARCHS, f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}, got {self.device!r}"),
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.seq_len >= 2, f"seq_len must be >= 2, got {self.seq_len}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}"),
            (self.save_every >= 1, f"save_every must be >= 1, got {self.save_every}"),
            (0.0 <= self.eval_fraction < 1.0, f"eval_fraction must be in [0, 1), got {self.eval_fraction}"),
            (self.vocab_size >= 257, f"vocab_size must be >= 257, got {self.vocab_size}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (self.grad_clip >= 0, f"grad_clip must be >= 0 (0 disables clipping), got {self.grad_clip}"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainConfigError(message)

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict."""
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """The fields that decide what a run produces (all but ``device``), for reuse checks."""
        fields = self.to_dict()
        del fields["device"]
        return fields


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


def learning_rate(step: int, config: TrainConfig) -> float:
    """Learning rate of optimizer step ``step`` (1-based): linear warmup over ``warmup_steps``,
    then cosine decay from ``lr`` to ``MIN_LR_RATIO * lr`` at the last step."""
    if step <= config.warmup_steps:
        return config.lr * step / config.warmup_steps
    decay_steps = config.steps - config.warmup_steps
    progress = (step - config.warmup_steps) / decay_steps
    floor = MIN_LR_RATIO * config.lr
    return floor + (config.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_model_config(config: TrainConfig, vocab_size: int, eos_token_id: int) -> PretrainedConfig:
    """The transformers model config for ``config.arch`` at ``config.size``.

    ``max_position_embeddings`` equals the training ``seq_len`` (the longest context the
    model has seen), the vocabulary is the tokenizer's, and the stored dtype is float32.
    """
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
    else:
        model_config = LlamaConfig(num_key_value_heads=shape["num_attention_heads"], **common)
    model_config.dtype = "float32"
    return model_config
