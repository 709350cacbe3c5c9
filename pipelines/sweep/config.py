"""Typed settings and results of ``ldw evalset`` and ``ldw sweep`` (no torch here: the Python API imports them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ldw.corpus import SPLITS
from ldw.errors import SettingsError
from ldw.setting_checks import choice, device_name, optional_whole, real, whole

MAX_SEED = 2**63 - 1


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

    def __post_init__(self) -> None:
        if not isinstance(self.corpus, str) or not self.corpus:
            raise SettingsError(f"--corpus must be 'builtin' or a file, not {self.corpus!r}")
        if not isinstance(self.tokenizer_path, str):
            raise SettingsError(f"tokenizer_path must be a string (a folder), not {self.tokenizer_path!r}")
        prefix = optional_whole("--prefix-token-id", self.prefix_token_id, 0)
        checked = {
            "split": choice("--split", self.split, SPLITS),
            "heldout_fraction": real("--heldout-fraction", self.heldout_fraction, 0, 1, low_open=True, high_open=True),
            # without a prefix token position 0 is never scored, so a window needs two tokens to score one
            "seq_len": whole("--seq-len", self.seq_len, 1 if prefix is not None else 2),
            "n_sequences": optional_whole("--sequences", self.n_sequences, 1),
            "positions_per_sequence": optional_whole("--positions", self.positions_per_sequence, 1),
            "seed": whole("--seed", self.seed, 0, MAX_SEED),
            "prefix_token_id": prefix,
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)


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
        if self.runs is not None and (isinstance(self.runs, str) or not all(isinstance(r, str) for r in self.runs)):
            raise SettingsError(f"--run must be run ids (a tuple of strings), not {self.runs!r}")
        object.__setattr__(self, "device", device_name("--device", self.device))
        object.__setattr__(self, "batch_size", optional_whole("--batch-size", self.batch_size, 1))
        if self.shard is not None:
            object.__setattr__(self, "shard", _checked_shard(self.shard))
        object.__setattr__(self, "executor", choice("--executor", self.executor, EXECUTORS))
        object.__setattr__(self, "prefetch", whole("--prefetch", self.prefetch, 0))
        object.__setattr__(self, "fetch_attempts", whole("--fetch-attempts", self.fetch_attempts, 1))
        object.__setattr__(self, "precision", choice("--precision", self.precision, PRECISIONS))
        object.__setattr__(self, "fused_head", choice("--fused-head", self.fused_head, FUSED_HEADS))
        if self.ray_address is not None and self.executor != "ray":
            raise SettingsError("--ray-address needs --executor ray")


def _checked_shard(shard: object) -> tuple[int, int]:
    """A shard ``(i, n)`` with ``0 <= i < n``."""
    if not isinstance(shard, tuple) or len(shard) != 2:
        raise SettingsError(f"--shard must be a pair (i, n), not {shard!r}")
    index, count = whole("--shard I", shard[0]), whole("--shard N", shard[1], 1)
    if index >= count:
        raise SettingsError(f"--shard {index}/{count}: need 0 <= i < n")
    return index, count


@dataclass
class SweepSummary:
    """Counts of what a sweep did."""

    scored: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
