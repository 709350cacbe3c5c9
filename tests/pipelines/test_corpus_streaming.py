"""Streaming corpus reading: bounded pieces give the same documents and tokens as reading whole files."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from ldw import corpus
from ldw.corpus import corpus_pieces, cut_point, read_documents
from ldw.probe.tokenizing import PieceEncoder, load_tokenizer

SMALL = {"BLOCK_BYTES": 7, "PIECE_CHARS": 16, "CUT_SEARCH_CHARS": 4}
# words, runs of spaces and tabs, line breaks of every kind, multi-byte characters
ALPHABET = st.sampled_from(
    ["a", "bc", "é", "中文", "🙂", " ", "  ", "\t", "\n", "\n\n", "\r\n", "\r", "\n \t\n", "x" * 20]
)


def reference_documents(path: Path) -> list[str]:
    """A text file read whole: UTF-8 without BOM, universal newlines, split at blank lines, stripped."""
    text = path.read_bytes().decode("utf-8").removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return [doc.strip() for doc in re.split(r"\n[ \t]*\n", text) if doc.strip()]


@pytest.fixture()
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 7 bytes and pieces of 16 characters, so every boundary case is met on short texts."""
    for name, value in SMALL.items():
        monkeypatch.setattr(corpus, name, value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(ALPHABET, max_size=60), bom=st.booleans())
def test_text_files_stream_to_the_documents_read_whole(
    parts: list[str], bom: bool, tmp_path: Path, small_pieces: None
) -> None:
    path = tmp_path / "corpus.txt"
    path.write_bytes(("\ufeff" if bom else "").encode() + "".join(parts).encode())
    expected = reference_documents(path)
    if not expected:
        with pytest.raises(corpus.CorpusError, match="no non-empty documents"):
            read_documents(path)
        return
    assert read_documents(path) == expected
    pieces = list(corpus_pieces(str(path)))
    assert all(len(piece.text) <= SMALL["PIECE_CHARS"] for piece in pieces)
    assert sum(piece.last for piece in pieces) == len(expected)


def test_cut_point_prefers_the_last_word_start() -> None:
    assert cut_point("aaa bbb ccc ddd", 10) == 7  # before " ccc": the last whitespace after a word, at or below 10
    assert cut_point("aaaaaaaaaaaaaaa", 10) == 10  # no whitespace: a hard cut
    assert cut_point("a" * 3 + " " + "b" * 50, 40) == 3


def test_a_huge_line_is_read_in_bounded_pieces_with_the_tokens_of_the_whole(
    tmp_path: Path, tiny_runs: list[Path], small_pieces: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(corpus, "PIECE_CHARS", 300)
    rng = np.random.default_rng(0)
    words = ["the", "model", "learned", "é", "zwölf", "中文字", "x=1;", "...", "42", "don't"]
    line = " ".join(rng.choice(words, size=3000))  # one document of about 17k characters on one line
    path = tmp_path / "long.txt"
    path.write_text(f"first document\n\n{line}\n\nlast", encoding="utf-8")
    tokenizer = load_tokenizer(tiny_runs[0] / "tokenizer")
    encoder = PieceEncoder(tokenizer)
    pieces = list(corpus_pieces(str(path)))
    assert len(pieces) > 40 and max(len(p.text) for p in pieces) <= 300
    streamed = np.concatenate([ids for ids, _ in encoder.encode(pieces)])
    eos = [tokenizer.eos_token_id]
    whole = [tokenizer(doc, add_special_tokens=False)["input_ids"] + eos for doc in ["first document", line, "last"]]
    np.testing.assert_array_equal(streamed, np.concatenate(whole))
    assert encoder.cuts == len(pieces) - 3 and encoder.mismatched_cuts == 0


def test_cuts_a_tokenizer_merges_across_are_counted(tmp_path: Path, small_pieces: None) -> None:
    """A BPE without a whitespace pre-tokenizer merges across spaces: the cuts it tokenizes differently are found."""
    text = "ab cd ef " * 200
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator([text], trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<eos>")
    encoder = PieceEncoder(tokenizer)
    list(encoder.encode([("ab cd ef ab", False), (" cd ef ab cd", True)]))
    assert encoder.cuts == 1 and encoder.mismatched_cuts == 1


def test_dictionary_encoded_parquet_text_is_read(tmp_path: Path) -> None:
    path = tmp_path / "dict.parquet"
    texts = pa.array(["one", None, "two", "one"]).dictionary_encode()
    pq.write_table(pa.table({"text": texts}), path)
    assert pa.types.is_dictionary(pq.read_schema(path).field("text").type)
    assert read_documents(path) == ["one", "two", "one"]


def test_jsonl_with_a_line_separator_inside_a_string(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"text": "a\u2028b"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert read_documents(path) == ["a\u2028b"]


def test_split_streams_the_same_documents_as_the_trainer_split(tmp_path: Path) -> None:
    path = tmp_path / "many.txt"
    docs = [f"document {i} " + "word " * (i % 7) for i in range(101)]
    path.write_text("\n\n".join(docs), encoding="utf-8")
    train, heldout = corpus.split_documents(read_documents(path), 0.1, corpus.SPLIT_SEED)
    for split, expected in (("train", train), ("heldout", heldout)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert corpus.corpus_documents(str(path), split, 0.1) == expected


def test_ngrams_counts_a_long_document_read_in_pieces_as_the_whole_text(
    ingested_warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ldw
    from ldw.errors import LdwWarning

    path = tmp_path / "reference.txt"
    long_doc = " ".join(["the model learned"] * 200)
    path.write_text(f"short one\n\n{long_doc}\n\nshort two", encoding="utf-8")
    wb = ldw.open(ingested_warehouse, progress=False)
    whole = wb.ngrams(corpus=str(path))
    whole_stats = wb.ngram_stats()
    monkeypatch.setattr(corpus, "PIECE_CHARS", 64)  # the long document reaches the counter in ~60 pieces
    with warnings.catch_warnings():
        warnings.simplefilter("error", LdwWarning)  # cut at whitespace: tokenized as the whole text, no warning
        pieces = wb.ngrams(corpus=str(path), chunk_tokens=64)
    assert pieces.n_documents == whole.n_documents == 3
    assert pieces.n_tokens_counted == whole.n_tokens_counted > 0
    assert pieces.params["distinct_ngrams"] == whole.params["distinct_ngrams"]
    assert wb.ngram_stats().equals(whole_stats)
