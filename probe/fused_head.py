"""Opt-in fused unembedding + cross-entropy kernels (CUDA only): -ln p(target) per token without the logits.

``liger`` is liger-kernel's fused linear cross-entropy, ``cce`` Apple's cut-cross-entropy; both are
Triton kernels for CUDA, neither is a dependency of ldw (``pip install liger-kernel`` or
``cut-cross-entropy``). They are tried only on CUDA with bfloat16 or float16 weights (with float32
weights their Triton matmuls would run in TF32, which breaks the exact default); anywhere else, or when
the package is missing, the scorer takes its own chunked head, which is exact, and records why.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ldw.probe.errors import ProbeError

FUSED_HEADS = ("none", "liger", "cce")
HALF_DTYPES = (torch.bfloat16, torch.float16)

# hidden [N, d], unembedding weight [V, d], targets [N] -> -ln p(target) [N] (float32)
FusedHead = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _liger(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

    return liger_fused_linear_cross_entropy(hidden, weight, targets, reduction="none").float()


def _cce(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    from cut_cross_entropy import linear_cross_entropy

    return linear_cross_entropy(hidden, weight, targets, reduction="none").float()


KERNELS: dict[str, tuple[str, FusedHead]] = {
    "liger": ("liger_kernel", _liger),
    "cce": ("cut_cross_entropy", _cce),
}
PACKAGES = {"liger": "liger-kernel", "cce": "cut-cross-entropy"}


def pick_fused_head(name: str, head: torch.nn.Module, device: torch.device) -> tuple[FusedHead | None, str]:
    """The fused kernel ``name`` if it can run here, else None; and what the scorer will use, in words."""
    if name == "none":
        return None, "chunked"
    if name not in KERNELS:
        raise ProbeError(f"fused head '{name}': expected one of {', '.join(FUSED_HEADS)}")
    module, kernel = KERNELS[name]
    weight = getattr(head, "weight", None)
    if device.type != "cuda":
        return None, f"chunked ({name} needs CUDA)"
    if not isinstance(head, torch.nn.Linear) or head.bias is not None or weight is None:
        return None, f"chunked ({name} needs a linear head without bias)"
    if weight.dtype not in HALF_DTYPES:
        return None, f"chunked ({name} is used with bf16 or fp16 weights only)"
    try:
        __import__(module)
    except ImportError:
        return None, f"chunked ({name} not installed: pip install {PACKAGES[name]})"
    return kernel, name
