"""Load tokenizers and fingerprint them, so runs compared share one tokenization."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ldw.errors import first_line
from ldw.probe.errors import ProbeError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
BATCH_DOCS = 256  # pieces tokenized together ...
BATCH_CHARS = 1 << 17  # ... up to about this many characters (the tokenizer holds ~350 bytes per token)
CUT_CHECK_CHARS = 256  # characters either side of a cut that are tokenized whole and in two to compare


def has_tokenizer(folder: Path) -> bool:
    """Whether a folder holds tokenizer files."""
    return any((folder / name).is_file() for name in TOKENIZER_FILES)


def load_tokenizer(path: Path, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Load a tokenizer from a local folder (never from the Hub); one-line error naming it on failure."""
    path = Path(path)
    if not path.exists():
        raise ProbeError(f"{path}: tokenizer folder not found")
    if not path.is_dir():
        raise ProbeError(f"{path}: not a folder; give the folder that holds the tokenizer files")
    if not has_tokenizer(path):
        raise ProbeError(f"{path}: no tokenizer files in this folder (expected one of {', '.join(TOKENIZER_FILES)})")
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, local_files_only=True)
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


class PieceEncoder:
    """Token ids of documents handed on in pieces (``(text, ends_document)`` pairs), a batch at a time.

    Each piece becomes its token ids, with eos (when the tokenizer has one)
    after a document's last piece. Where a document was cut into pieces, the
    ``CUT_CHECK_CHARS`` characters either side of the cut are also tokenized
    whole: ``cuts`` counts the cuts and ``mismatched_cuts`` those where the
    tokenizer gave other tokens than on the two sides apart (a tokenizer that
    does not split words at whitespace), for the caller to report.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        self.cuts = 0
        self.mismatched_cuts = 0
        self._left: str | None = None  # the end of the previous piece when it did not end its document

    def encode(self, pieces: Iterable[tuple[str, bool]]) -> Iterator[tuple[np.ndarray, bool]]:
        """``(token ids, ends_document)`` for every piece, in order."""
        batch: list[tuple[str, bool]] = []
        chars = 0
        for piece in pieces:
            batch.append(piece)
            chars += len(piece[0])
            if len(batch) >= BATCH_DOCS or chars >= BATCH_CHARS:
                yield from self._encode_batch(batch)
                batch, chars = [], 0
        yield from self._encode_batch(batch)

    def _ids(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]

    def _encode_batch(self, batch: list[tuple[str, bool]]) -> Iterator[tuple[np.ndarray, bool]]:
        if not batch:
            return
        for (text, last), ids in zip(batch, self._ids([text for text, _ in batch]), strict=True):
            if self._left is not None:
                self._check_cut(self._left, text[:CUT_CHECK_CHARS])
            self._left = None if last else text[-CUT_CHECK_CHARS:]
            yield np.asarray(ids + self.eos if last else ids, dtype=np.int64), last

    def _check_cut(self, left: str, right: str) -> None:
        whole, apart_left, apart_right = self._ids([left + right, left, right])
        self.cuts += 1
        self.mismatched_cuts += whole != apart_left + apart_right
