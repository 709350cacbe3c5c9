"""Train a small byte-level BPE tokenizer for reference runs."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from ldw.errors import LdwError

EOS_TOKEN = "<|endoftext|>"
MIN_VOCAB_SIZE = 257  # 256 byte symbols + the end-of-text token


def train_bpe_tokenizer(docs: list[str], vocab_size: int, out_dir: Path) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``docs`` and save it with ``save_pretrained(out_dir)``.

    ``<|endoftext|>`` (id 0) is the bos, eos, unk and pad token. Training is deterministic:
    the same documents and vocab size give the same vocabulary and merges.
    """
    if vocab_size < MIN_VOCAB_SIZE:
        raise LdwError(f"vocab_size must be at least {MIN_VOCAB_SIZE} for byte-level BPE, got {vocab_size}")
    if not any(doc.strip() for doc in docs):
        raise LdwError("cannot train a tokenizer on an empty corpus")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(docs, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return fast
