"""Typed settings and results of ``ldw evalset`` and ``ldw sweep`` (no torch here: the Python API imports them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ldw.errors import LdwError


@dataclass(frozen=True)
class EvalSetConfig:
    """How the evaluation set is built (stored with it)."""

    corpus: str = "builtin"
    split: str = "all"
    heldout_fraction: float = 0.1
    seq_len: int = 128
    n_sequences: int | None = None
    positions_per_sequence: int | None = None
    seed: int = 0
    prefix_token_id: int | None = None
    tokenizer_path: str = ""


@dataclass(frozen=True)
class EvalSetResult:
    """What ``build_eval_set`` did: sequences and scored tokens, whether it wrote them, the tokenizer used."""

    sequences: int
    tokens: int
    written: bool
    tokenizer: Path


EXECUTORS = ("local", "ray")
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")  # as ldw.probe.precision defines them
FUSED_HEADS = ("none", "liger", "cce")  # as ldw.probe.fused_head defines them


@dataclass(frozen=True)
class SweepConfig:
    """What a sweep scores and where: runs (default all), device, batch size, shard ``(i, n)``, executor.

    ``precision``: ``fp32`` (exact, the default: float32 weights and matmuls, TF32 off), or the faster
    ``tf32``, ``bf16``, ``fp16``; every sweep stores its measured error (see ``ldw.probe.precision``).
    ``batch_size``: sequences per forward (None: chosen for the device; halved on out-of-memory).
    ``fused_head``: ``liger`` or ``cce`` tries that fused unembedding + cross-entropy kernel (CUDA,
    bf16/fp16 weights, the package installed), else the exact chunked head. ``compile``: ``torch.compile``
    the transformer body.

    ``prefetch``: checkpoints fetched and loaded ahead of the one being scored (0: none).
    ``keep_weights``: keep the files a sweep downloaded from the Hugging Face Hub in the cache
    (by default each revision's downloads are removed once it is scored).
    ``fetch_attempts``: downloads of a hub checkpoint before it is recorded as failed.
    """

    runs: tuple[str, ...] | None = None
    device: str = "auto"
    batch_size: int | None = None
    shard: tuple[int, int] | None = None
    executor: str = "local"
    ray_address: str | None = None
    prefetch: int = 1
    keep_weights: bool = False
    fetch_attempts: int = 3
    precision: str = "fp32"
    fused_head: str = "none"
    compile: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise LdwError(f"--precision must be one of {', '.join(PRECISIONS)}, not '{self.precision}'")
        if self.fused_head not in FUSED_HEADS:
            raise LdwError(f"--fused-head must be one of {', '.join(FUSED_HEADS)}, not '{self.fused_head}'")
        if self.batch_size is not None and self.batch_size < 1:
            raise LdwError(f"--batch-size must be at least 1, not {self.batch_size}")
        if self.prefetch < 0:
            raise LdwError(f"--prefetch must be 0 or more, not {self.prefetch}")
        if self.fetch_attempts < 1:
            raise LdwError(f"--fetch-attempts must be at least 1, not {self.fetch_attempts}")
        if self.shard is not None and not 0 <= self.shard[0] < self.shard[1]:
            raise LdwError(f"--shard {self.shard[0]}/{self.shard[1]}: need 0 <= i < n")
        if self.executor not in EXECUTORS:
            raise LdwError(f"--executor must be one of {', '.join(EXECUTORS)}, not '{self.executor}'")
        if self.ray_address is not None and self.executor != "ray":
            raise LdwError("--ray-address needs --executor ray")


@dataclass
class SweepSummary:
    """Counts of what a sweep did."""

    scored: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
