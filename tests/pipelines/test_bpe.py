"""Tests for ldw.train.bpe: byte-level BPE training, saving and determinism."""

import pytest
from transformers import AutoTokenizer

from ldw.corpus import builtin_documents
from ldw.errors import LdwError
from ldw.train.bpe import EOS_TOKEN, train_bpe_tokenizer

DOCS = builtin_documents()[:20]


def test_trained_tokenizer_has_vocab_eos_and_round_trips(tmp_path):
    tokenizer = train_bpe_tokenizer(DOCS, 400, tmp_path / "tok")
    assert len(tokenizer) == 400
    for role in ("eos_token", "bos_token", "unk_token", "pad_token"):
        assert getattr(tokenizer, role) == EOS_TOKEN
    assert tokenizer.eos_token_id == 0
    text = "def f(x):\n    return 'héllo ✓ 😀'"  # characters never seen in training still round-trip
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert len(ids) < len(text.encode())  # merges were learned


def test_saved_tokenizer_loads_with_auto_tokenizer(tmp_path):
    tokenizer = train_bpe_tokenizer(DOCS, 300, tmp_path / "tok")
    loaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    text = DOCS[3][:500]
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.eos_token_id == tokenizer.eos_token_id


def test_training_is_deterministic(tmp_path):
    train_bpe_tokenizer(DOCS, 350, tmp_path / "a")
    train_bpe_tokenizer(list(DOCS), 350, tmp_path / "b")
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()


def test_bad_arguments(tmp_path):
    with pytest.raises(LdwError, match="vocab_size must be at least 257"):
        train_bpe_tokenizer(DOCS, 100, tmp_path / "tok")
    with pytest.raises(LdwError, match="empty corpus"):
        train_bpe_tokenizer(["", "  "], 300, tmp_path / "tok")
