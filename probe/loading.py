"""Load a causal LM checkpoint from a local folder onto a device."""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel
from transformers.utils import logging as hf_logging

from ldw.errors import first_line
from ldw.probe.errors import DeviceError, ProbeError

HF_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
STATE_DICT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
STATE_DICT_PREFIXES = ("module.", "_orig_mod.")
# how torch names what a weights-only unpickler refused ("Unsupported global: GLOBAL x", "unsupported GLOBAL x ...")
_PICKLE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
SINGLE_THREAD_MAX_HIDDEN = 128  # narrower models run faster on one CPU thread (tiny ops)


@contextmanager
def cpu_threads(device: torch.device, hidden_size: int) -> Iterator[int]:
    """Use one intra-op thread for narrow models on CPU when training, scoring or probing them.

    Their ops are too small to split, and on shared cores the threads'
    synchronisation costs several times the work (a tiny model's sweep took
    3-6x the CPU time on 2 threads). Restores the previous thread count
    afterwards; yields the thread count in use.
    """
    previous = torch.get_num_threads()
    single = device.type == "cpu" and hidden_size <= SINGLE_THREAD_MAX_HIDDEN
    torch.set_num_threads(1 if single else previous)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def resolve_device(device: str) -> torch.device:
    """Turn "auto" | "cpu" | "cuda" | "cuda:i" into a device ("auto" picks CUDA when present).

    Anything else, CUDA when it is not available, or a CUDA index beyond the
    GPUs present is a one-line DeviceError (a ProbeError and a SettingsError).
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda") or (dev.type == "cpu" and dev.index not in (None, 0)):
        raise DeviceError(f"device '{device}': expected auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device '{device}' requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceError(f"device '{device}': only {torch.cuda.device_count()} CUDA device(s) present")
    return dev


def load_causal_lm(
    path: Path, device: torch.device, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False
) -> PreTrainedModel:
    """Load a checkpoint folder (``save_pretrained`` output or a plain state dict + config) in ``dtype``.

    Float32 by default on every device (the exact precision; see :mod:`ldw.probe.precision`).
    Pickled weights are read with ``weights_only=True``; remote code runs only
    when asked. Any failure is a one-line :class:`ProbeError` naming the folder.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ProbeError(f"{path}: no config.json in checkpoint folder")
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (ValueError, KeyError, OSError, json.JSONDecodeError) as exc:
        raise ProbeError(f"{path}: cannot read config.json ({first_line(exc)})") from exc
    hf_logging.disable_progress_bar()  # the sweep draws its own progress
    weights = next((path / name for name in HF_WEIGHT_FILES if (path / name).is_file()), None)
    try:
        if weights is not None:
            model = AutoModelForCausalLM.from_pretrained(
                path, dtype=dtype, trust_remote_code=trust_remote_code, attn_implementation="sdpa"
            )
        else:
            model = _from_state_dict(path, config, dtype, trust_remote_code)
    except ProbeError:
        raise
    except pickle.UnpicklingError as exc:
        raise _pickle_refusal(weights or path, exc) from exc
    except Exception as exc:
        raise ProbeError(f"{path}: cannot load weights ({first_line(exc)})") from exc
    return model.to(device).eval()


def _pickle_refusal(path: Path, exc: pickle.UnpicklingError) -> ProbeError:
    """The error for pickled weights that ``weights_only=True`` refuses: what they reference, and the way on."""
    found = _PICKLE_GLOBAL.search(str(exc))
    if found is None:  # a damaged pickle rather than a refused one
        return ProbeError(f"{path}: cannot load weights (pickle data is damaged: {first_line(exc)})")
    return ProbeError(
        f"{path}: refused: the pickled weights reference {found.group(1)}, which a weights-only load does not "
        "allow (ldw never runs code from a checkpoint); save them as safetensors to score this checkpoint"
    )


def _from_state_dict(path: Path, config, dtype: torch.dtype, trust_remote_code: bool) -> PreTrainedModel:
    files = sorted(p for p in path.iterdir() if p.suffix in STATE_DICT_SUFFIXES and p.is_file())
    if len(files) != 1:
        found = ", ".join(p.name for p in files) or "none"
        raise ProbeError(f"{path}: expected one weights file beside config.json, found {found}")
    file = files[0]
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(file)
    else:
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise _pickle_refusal(file, exc) from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    state = {_strip_prefix(k): v for k, v in state.items()}
    model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code, attn_implementation="sdpa")
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])  # a list or a {target: source} dict
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ProbeError(
            f"{file}: state dict does not match config ({len(missing)} missing keys e.g. "
            f"{missing[:2]}, {len(unexpected)} unexpected e.g. {unexpected[:2]})"
        )
    return model.to(dtype)


def _strip_prefix(key: str) -> str:
    for prefix in STATE_DICT_PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return key
