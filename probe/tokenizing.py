"""Load tokenizers and fingerprint them, so runs compared share one tokenization."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ldw.errors import first_line
from ldw.probe.errors import ProbeError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def has_tokenizer(folder: Path) -> bool:
    """Whether a folder holds tokenizer files."""
    return any((folder / name).is_file() for name in TOKENIZER_FILES)


def load_tokenizer(path: Path, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Load a tokenizer from a local folder; one-line error naming it on failure."""
    try:
        return AutoTokenizer.from_pretrained(Path(path), trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise ProbeError(f"{path}: cannot load tokenizer ({first_line(exc)})") from exc


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """sha256 over what decides tokenization: vocabulary, merges, normalizer, specials.

    Padding and truncation settings are left out: they do not change which
    ids a text becomes.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
    else:
        spec = {"class": type(tokenizer).__name__, "vocab": sorted(tokenizer.get_vocab().items())}
    payload = json.dumps(spec, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(payload).hexdigest()


def encode_documents(tokenizer: PreTrainedTokenizerBase, docs: list[str], batch: int = 256) -> Iterator[np.ndarray]:
    """Token ids (int64) of each document followed by eos when the tokenizer has one, a batch at a time."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for start in range(0, len(docs), batch):
        for ids in tokenizer(docs[start : start + batch], add_special_tokens=False, verbose=False)["input_ids"]:
            yield np.asarray(ids + eos, dtype=np.int64)
