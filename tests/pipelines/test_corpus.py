"""Tests for ldw.corpus: the built-in corpus, file readers, their errors and the split."""

import json
import re
from pathlib import Path
from pydoc_data.topics import topics

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ldw.corpus import (
    CorpusError,
    builtin_documents,
    corpus_documents,
    load_documents,
    read_documents,
    split_documents,
)


def _raises_naming(path: Path, what: str):
    """pytest.raises for a CorpusError whose message names ``path`` and contains ``what``."""
    return pytest.raises(CorpusError, match=re.escape(str(path)) + ".*" + re.escape(what))


def test_builtin_documents_are_pydoc_topics_in_sorted_order():
    docs = builtin_documents()
    assert len(docs) == len(topics)
    first, last = min(topics), max(topics)
    assert docs[0] == topics[first].strip()
    assert docs[-1] == topics[last].strip()
    assert all(docs)
    assert load_documents("builtin") == docs


def test_text_file_splits_on_blank_lines(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes("first line\nsecond line\n\n\n   \nthird é\r\n\r\nfourth\n\n".encode())
    assert read_documents(path) == ["first line\nsecond line", "third é", "fourth"]
    assert load_documents(str(path)) == read_documents(path)


def test_jsonl_reads_named_field_skips_blank_lines_and_bom(tmp_path):
    path = tmp_path / "corpus.jsonl"
    rows = [{"body": "alpha", "id": 1}, {"body": "  "}, {"body": "beta\n\ngamma"}]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n", encoding="utf-8-sig")
    assert read_documents(path, text_field="body") == ["alpha", "beta\n\ngamma"]


def test_parquet_reads_text_column_and_skips_nulls(tmp_path):
    path = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"text": ["one", None, "", "two"], "n": [1, 2, 3, 4]}), path)
    assert read_documents(path) == ["one", "two"]


def test_missing_file(tmp_path):
    path = tmp_path / "absent.txt"
    with _raises_naming(path, "file not found"):
        read_documents(path)
    with _raises_naming(path, "file not found"):
        load_documents(str(path))


def test_non_utf8_names_byte_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"hello\ncaf\xe9\n")
    with _raises_naming(path, "not valid UTF-8 (byte 0xe9 at byte offset 9)"):
        read_documents(path)
    jsonl = tmp_path / "latin1.jsonl"
    jsonl.write_bytes(b'{"text": "caf\xe9"}\n')
    with _raises_naming(jsonl, "byte offset 13"):
        read_documents(jsonl)


@pytest.mark.parametrize("content", ["", "\n\n  \n\t\n"])
def test_empty_text_file(tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_text(content, encoding="utf-8")
    with _raises_naming(path, "no non-empty documents"):
        read_documents(path)


def test_jsonl_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"content": "no text"}\n', encoding="utf-8")
    with _raises_naming(path, "line 2 has no 'text' field"):
        read_documents(path)
    path.write_text('{"text": "ok"}\n{"text": \n', encoding="utf-8")
    with _raises_naming(path, "line 2 is not valid JSON"):
        read_documents(path)
    path.write_text('{"text": 3}\n', encoding="utf-8")
    with _raises_naming(path, "line 1 field 'text' is int, not a string"):
        read_documents(path)
    path.write_text('{"text": "   "}\n', encoding="utf-8")
    with _raises_naming(path, "no non-empty documents"):
        read_documents(path)


def test_parquet_errors(tmp_path):
    path = tmp_path / "table.parquet"
    pq.write_table(pa.table({"body": ["x"], "n": [1]}), path)
    with _raises_naming(path, "no column 'text' (columns: body, n)"):
        read_documents(path)
    with _raises_naming(path, "column 'n' has type int64, not string"):
        read_documents(path, text_field="n")
    fake = tmp_path / "fake.parquet"
    fake.write_text("not parquet", encoding="utf-8")
    with _raises_naming(fake, "not a readable Parquet file"):
        read_documents(fake)


def test_directory_is_not_a_corpus(tmp_path):
    with _raises_naming(tmp_path, "not a regular file"):
        read_documents(tmp_path)


def test_split_is_deterministic_disjoint_and_ordered():
    docs = [f"doc {i}" for i in range(50)]
    train, held_out = split_documents(docs, 0.1, seed=0)
    assert (train, held_out) == split_documents(docs, 0.1, seed=0)
    assert len(held_out) == 5 and len(train) == 45
    assert sorted(train + held_out) == sorted(docs)
    assert set(train).isdisjoint(held_out)
    assert train == [doc for doc in docs if doc in set(train)]
    assert held_out == [doc for doc in docs if doc in set(held_out)]
    assert split_documents(docs, 0.1, seed=1)[1] != held_out


def test_split_edge_cases():
    docs = ["a", "b", "c"]
    assert split_documents(docs, 0.0, seed=0) == (docs, [])
    train, held_out = split_documents(docs, 0.01, seed=0)
    assert len(held_out) == 1 and len(train) == 2
    assert split_documents(["only"], 0.5, seed=0) == (["only"], [])
    with pytest.raises(CorpusError, match="eval_fraction"):
        split_documents(docs, 1.0, seed=0)


def test_corpus_documents_split_like_the_trainer() -> None:
    docs = load_documents("builtin")
    train = corpus_documents("builtin", "train", 0.2)
    heldout = corpus_documents("builtin", "heldout", 0.2)
    assert len(heldout) == round(0.2 * len(docs))
    assert sorted(train + heldout) == sorted(docs)
    assert corpus_documents("builtin") == docs
    with pytest.raises(CorpusError, match="--split must be all, train or heldout"):
        corpus_documents("builtin", "dev")
