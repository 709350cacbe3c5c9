"""Document sources for training and evaluation: the built-in offline corpus,
plain-text / JSONL / Parquet files, and a deterministic train/held-out split.

Documents are read as a stream, so memory stays bounded whatever the size of
the corpus (:func:`corpus_pieces`, used by ``ldw evalset`` and ``ldw ngrams``):

- a text file is read in blocks of ``BLOCK_BYTES`` and cut into documents at
  blank lines; JSONL lines and Parquet values are read one record at a time (a
  single record's text is held whole while it is read);
- every document is stripped of surrounding whitespace (empty ones are
  skipped) and handed on in pieces of at most ``PIECE_CHARS`` characters. A
  longer document is cut just before a whitespace character that follows a
  non-whitespace one (the last such place in the piece; a hard cut at
  ``PIECE_CHARS`` when there is none), so that a tokenizer that splits words
  at whitespace gives the same tokens as on the whole text;
- a split (``train`` / ``heldout``) reads the file twice: once to count the
  documents, once to hand on those of the split.

:func:`read_documents` and :func:`load_documents` return whole documents as
strings, for the reference trainer and small corpora.
"""

from __future__ import annotations

import codecs
import json
import random
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from ldw.errors import LdwError

BUILTIN = "builtin"
SPLITS = ("all", "train", "heldout")
SPLIT_SEED = 0  # every training seed shares the split made with this seed
PIECE_CHARS = 1 << 17  # characters of one document handed on (and tokenized) at a time
BLOCK_BYTES = 1 << 20  # bytes of a text file read at a time
PARQUET_BATCH_ROWS = 1024

CUT_SEARCH_CHARS = 1 << 12  # a cut is searched for backwards this many characters at a time
_BLANK_LINES = re.compile(r"\n[ \t]*\n")
_WORD_END = re.compile(r"(?<=\S)\s")  # a whitespace character right after a non-whitespace one
_TRAILING_BLANKS = re.compile(r"\n[ \t]*\Z")


class CorpusError(LdwError, ValueError):
    """A corpus could not be read; the message names the file and the problem."""


class Piece(NamedTuple):
    """Consecutive text of one document; ``last`` is set on the piece that ends it."""

    text: str
    last: bool


# --- the built-in corpus and the split ------------------------------------------------------------


def builtin_documents() -> list[str]:
    """The offline corpus shipped with Python: one document per pydoc topic, in sorted key order."""
    from pydoc_data.topics import topics

    return [topics[key].strip() for key in sorted(topics) if topics[key].strip()]


def heldout_indices(n_docs: int, eval_fraction: float, seed: int) -> set[int]:
    """Indices of the held-out documents among ``n_docs``: ``round(n_docs * eval_fraction)`` of them,
    at least one when ``eval_fraction > 0``, and never all (the train part keeps at least one)."""
    if not 0.0 <= eval_fraction < 1.0:
        raise CorpusError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    if n_docs < 1:
        raise CorpusError("cannot split an empty document list")
    n_eval = round(n_docs * eval_fraction)
    if eval_fraction > 0:
        n_eval = max(n_eval, 1)
    n_eval = min(n_eval, n_docs - 1)
    return set(random.Random(seed).sample(range(n_docs), n_eval))


def split_documents(docs: list[str], eval_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split documents into (train, held-out) deterministically; both keep the input order.

    The held-out part has ``round(len(docs) * eval_fraction)`` documents, at least one when
    ``eval_fraction > 0``, and the train part always keeps at least one.
    """
    held_out = heldout_indices(len(docs), eval_fraction, seed)
    train = [doc for i, doc in enumerate(docs) if i not in held_out]
    evaluation = [doc for i, doc in enumerate(docs) if i in held_out]
    return train, evaluation


# --- readers: raw fragments of each document --------------------------------------------------------
# A reader yields (text, ends_document) fragments; the text is the document's, unstripped.


def _require_file(path: Path) -> None:
    """Raise CorpusError unless ``path`` is an existing regular file."""
    if not path.exists():
        raise CorpusError(f"{path}: file not found")
    if not path.is_file():
        raise CorpusError(f"{path}: not a regular file")


def _utf8_error(path: Path, data: bytes, err: UnicodeDecodeError, offset: int) -> CorpusError:
    """The error for a bad byte at ``err.start`` of ``data``, which begins at byte ``offset`` of the file."""
    return CorpusError(f"{path}: not valid UTF-8 (byte 0x{data[err.start]:02x} at byte offset {offset + err.start})")


def _text_blocks(path: Path) -> Iterator[str]:
    """The text of a UTF-8 file in blocks: a leading byte-order mark dropped, ``\\r\\n`` and ``\\r`` as ``\\n``."""
    _require_file(path)
    offset, pending, held_cr, first = 0, b"", "", True
    with open(path, "rb") as handle:
        while True:
            raw = handle.read(BLOCK_BYTES)
            final = not raw
            data = pending + raw
            try:
                text, used = codecs.utf_8_decode(data, "strict", final)
            except UnicodeDecodeError as err:
                raise _utf8_error(path, data, err, offset) from None
            pending, offset = data[used:], offset + used
            if first and text:
                text, first = text.removeprefix("\ufeff"), False
            text = held_cr + text
            held_cr = "" if final or not text.endswith("\r") else "\r"  # its \n may come with the next block
            if held_cr:
                text = text[:-1]
            yield text.replace("\r\n", "\n").replace("\r", "\n")
            if final:
                return


def _text_fragments(path: Path) -> Iterator[tuple[str, bool]]:
    """Documents of a plain-text file, separated by blank lines, in bounded fragments."""
    carry = ""
    for block in _text_blocks(path):
        carry += block
        start = 0
        for match in _BLANK_LINES.finditer(carry):
            yield carry[start : match.start()], True
            start = match.end()
        carry = carry[start:]
        if len(carry) > PIECE_CHARS:  # a long document: hand on all but a tail that may begin a separator
            tail = _TRAILING_BLANKS.search(carry)
            keep = tail.start() if tail else len(carry)
            yield carry[:keep], False
            carry = carry[keep:]
    yield carry, True


def _jsonl_fragments(path: Path, text_field: str) -> Iterator[tuple[str, bool]]:
    """Documents of a JSON-lines file, one object per line with a string ``text_field``."""
    _require_file(path)
    offset = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise _utf8_error(path, raw, err, offset) from None
            offset += len(raw)
            if number == 1:
                line = line.removeprefix("\ufeff")
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
            yield value, True


def _is_text_type(kind: object) -> bool:
    """Whether an Arrow type holds text: (large) strings, string views, or a dictionary of them."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    string_view = getattr(pa.types, "is_string_view", lambda _: False)
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or string_view(kind)


def _parquet_fragments(path: Path, text_field: str) -> Iterator[tuple[str, bool]]:
    """Documents of a Parquet file's text column ``text_field`` (nulls skipped), a batch of rows at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _require_file(path)
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise CorpusError(f"{path}: not a readable Parquet file ({err})") from None
    schema = parquet.schema_arrow
    if text_field not in schema.names:
        raise CorpusError(f"{path}: no column {text_field!r} (columns: {', '.join(schema.names)})")
    kind = schema.field(text_field).type
    if not _is_text_type(kind):
        raise CorpusError(f"{path}: column {text_field!r} has type {kind}, not string")
    try:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[text_field]):
            for value in batch.column(0).to_pylist():
                if value is not None:
                    yield value, True
    except (pa.ArrowException, OSError) as err:
        raise CorpusError(f"{path}: not a readable Parquet file ({err})") from None


def _file_fragments(path: Path, text_field: str) -> Iterator[tuple[str, bool]]:
    """Raw fragments of a ``.jsonl``, ``.parquet`` or (any other name) plain-text file."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl_fragments(path, text_field)
    if suffix == ".parquet":
        return _parquet_fragments(path, text_field)
    return _text_fragments(path)


# --- pieces: stripped documents in bounded parts ------------------------------------------------------


def cut_point(text: str, limit: int) -> int:
    """Where to cut ``text`` (longer than ``limit``): before the last whitespace character at or below
    ``limit`` that follows a non-whitespace one; ``limit`` itself when there is no such place."""
    stop = limit + 1
    while stop > 1:
        start = max(0, stop - CUT_SEARCH_CHARS)
        found = [match.start() for match in _WORD_END.finditer(text, start, stop)]
        if found:
            return found[-1]
        stop = start + 1  # the next window overlaps by one character, so no pair is missed
    return limit


def _pieces(fragments: Iterable[tuple[str, bool]]) -> Iterator[Piece]:
    """Each document stripped of surrounding whitespace, in pieces of at most ``PIECE_CHARS`` characters;
    documents that are empty once stripped are skipped."""
    carry, started = "", False
    for text, ends in fragments:
        carry += text
        if not started:
            carry = carry.lstrip()
            started = bool(carry)
        while len(carry) > PIECE_CHARS:
            cut = cut_point(carry, PIECE_CHARS)
            yield Piece(carry[:cut], False)
            carry = carry[cut:]
        if ends:
            if started:
                yield Piece(carry.rstrip(), True)
            carry, started = "", False


def _documents(pieces: Iterable[Piece]) -> Iterator[str]:
    """Whole documents from their pieces."""
    parts: list[str] = []
    for piece in pieces:
        parts.append(piece.text)
        if piece.last:
            yield "".join(parts)
            parts = []


def _file_pieces(path: Path, text_field: str = "text") -> Iterator[Piece]:
    """Pieces of every document of a file; a file without a non-empty document is a CorpusError."""
    empty = True
    for piece in _pieces(_file_fragments(path, text_field)):
        empty = False
        yield piece
    if empty:
        raise CorpusError(f"{path}: no non-empty documents")


def _source_pieces(spec: str) -> Iterator[Piece]:
    """Pieces of every document of a corpus spec: ``"builtin"`` or a file."""
    if spec == BUILTIN:
        return (Piece(doc, True) for doc in builtin_documents())
    return _file_pieces(Path(spec).expanduser())


def corpus_pieces(spec: str, split: str = "all", heldout_fraction: float = 0.1) -> Iterator[Piece]:
    """Pieces of the documents of a corpus spec, or of its train / heldout part as the reference trainer
    splits it (see the module docstring for the bounds on memory)."""
    if split not in SPLITS:
        raise CorpusError(f"--split must be all, train or heldout, not '{split}'")
    if split == "all":
        yield from _source_pieces(spec)
        return
    n_docs = sum(piece.last for piece in _source_pieces(spec))
    held_out = heldout_indices(n_docs, heldout_fraction, SPLIT_SEED)
    keep_held_out = split == "heldout"
    index = 0
    for piece in _source_pieces(spec):
        if (index in held_out) == keep_held_out:
            yield piece
        index += piece.last


def read_documents(path: Path, text_field: str = "text") -> list[str]:
    """Read documents from a UTF-8 text file (blank-line separated), ``.jsonl`` or ``.parquet``.

    Raises CorpusError naming the file for a missing file, non-UTF-8 bytes, a missing
    field/column, or when no non-empty document remains.
    """
    return list(_documents(_file_pieces(Path(path), text_field)))


def load_documents(spec: str) -> list[str]:
    """Documents for a corpus spec: ``"builtin"`` or a path to a text/JSONL/Parquet file."""
    if spec == BUILTIN:
        return builtin_documents()
    return read_documents(Path(spec).expanduser())


def corpus_documents(spec: str, split: str = "all", heldout_fraction: float = 0.1) -> list[str]:
    """Documents of a corpus spec, or its train / heldout part as the reference trainer splits it."""
    return list(_documents(corpus_pieces(spec, split, heldout_fraction)))
