"""Document sources for training and evaluation: the built-in offline corpus,
plain-text / JSONL / Parquet files, and a deterministic train/held-out split."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from ldw.errors import LdwError

BUILTIN = "builtin"
SPLIT_SEED = 0  # every training seed shares the split made with this seed

_BLANK_LINES = re.compile(r"\n[ \t]*\n")


class CorpusError(LdwError, ValueError):
    """A corpus could not be read; the message names the file and the problem."""


def builtin_documents() -> list[str]:
    """The offline corpus shipped with Python: one document per pydoc topic, in sorted key order."""
    from pydoc_data.topics import topics

    return [topics[key].strip() for key in sorted(topics) if topics[key].strip()]


def _require_file(path: Path) -> None:
    """Raise CorpusError unless ``path`` is an existing regular file."""
    if not path.exists():
        raise CorpusError(f"{path}: file not found")
    if not path.is_file():
        raise CorpusError(f"{path}: not a regular file")


def _decode_utf8(path: Path) -> str:
    """Read ``path`` as UTF-8 (a leading byte-order mark is dropped), naming the first bad byte offset on failure."""
    _require_file(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        raise CorpusError(
            f"{path}: not valid UTF-8 (byte 0x{data[err.start]:02x} at byte offset {err.start})"
        ) from None


def _text_documents(path: Path) -> list[str]:
    """Documents of a plain-text file, separated by blank lines."""
    text = _decode_utf8(path).replace("\r\n", "\n").replace("\r", "\n")
    return [doc.strip() for doc in _BLANK_LINES.split(text)]


def _jsonl_documents(path: Path, text_field: str) -> list[str]:
    """Documents of a JSON-lines file, one object per line with a string ``text_field``."""
    docs = []
    for number, line in enumerate(_decode_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise CorpusError(f"{path}: line {number} is not valid JSON ({err.msg})") from None
        if not isinstance(record, dict) or text_field not in record:
            raise CorpusError(f"{path}: line {number} has no {text_field!r} field")
        value = record[text_field]
        if not isinstance(value, str):
            raise CorpusError(f"{path}: line {number} field {text_field!r} is {type(value).__name__}, not a string")
        docs.append(value.strip())
    return docs


def _parquet_documents(path: Path, text_field: str) -> list[str]:
    """Documents of a Parquet file's string column ``text_field`` (nulls skipped)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _require_file(path)
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as err:
        raise CorpusError(f"{path}: not a readable Parquet file ({err})") from None
    if text_field not in schema.names:
        raise CorpusError(f"{path}: no column {text_field!r} (columns: {', '.join(schema.names)})")
    if not (
        pa.types.is_string(schema.field(text_field).type) or pa.types.is_large_string(schema.field(text_field).type)
    ):
        raise CorpusError(f"{path}: column {text_field!r} has type {schema.field(text_field).type}, not string")
    column = pq.read_table(path, columns=[text_field]).column(text_field)
    return [value.strip() for value in column.to_pylist() if value is not None]


def read_documents(path: Path, text_field: str = "text") -> list[str]:
    """Read documents from a UTF-8 text file (blank-line separated), ``.jsonl`` or ``.parquet``.

    Raises CorpusError naming the file for a missing file, non-UTF-8 bytes, a missing
    field/column, or when no non-empty document remains.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        docs = _jsonl_documents(path, text_field)
    elif suffix == ".parquet":
        docs = _parquet_documents(path, text_field)
    else:
        docs = _text_documents(path)
    docs = [doc for doc in docs if doc]
    if not docs:
        raise CorpusError(f"{path}: no non-empty documents")
    return docs


def load_documents(spec: str) -> list[str]:
    """Documents for a corpus spec: ``"builtin"`` or a path to a text/JSONL/Parquet file."""
    if spec == BUILTIN:
        return builtin_documents()
    return read_documents(Path(spec).expanduser())


def split_documents(docs: list[str], eval_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split documents into (train, held-out) deterministically; both keep the input order.

    The held-out part has ``round(len(docs) * eval_fraction)`` documents, at least one when
    ``eval_fraction > 0``, and the train part always keeps at least one.
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise CorpusError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    if not docs:
        raise CorpusError("cannot split an empty document list")
    n_eval = round(len(docs) * eval_fraction)
    if eval_fraction > 0:
        n_eval = max(n_eval, 1)
    n_eval = min(n_eval, len(docs) - 1)
    held_out = set(random.Random(seed).sample(range(len(docs)), n_eval))
    train = [doc for i, doc in enumerate(docs) if i not in held_out]
    evaluation = [doc for i, doc in enumerate(docs) if i in held_out]
    return train, evaluation


def corpus_documents(spec: str, split: str = "all", heldout_fraction: float = 0.1) -> list[str]:
    """Documents of a corpus spec, or its train / heldout part as the reference trainer splits it."""
    docs = load_documents(spec)
    if split == "all":
        return docs
    if split not in ("train", "heldout"):
        raise CorpusError(f"--split must be all, train or heldout, not '{split}'")
    train, heldout = split_documents(docs, heldout_fraction, SPLIT_SEED)
    return train if split == "train" else heldout
