"""The student's tokenizer: a byte-level BPE trained on the trace texts.

A student trained from scratch gets a small vocabulary fitted to its own prompts and
completions, so short sequences and a small embedding matrix. The choices below are what
keeps GGUF export exact:

* the pre-tokenizer is ``ByteLevel(add_prefix_space=False, use_regex=True)``, i.e. the GPT-2
  regex, so llama.cpp's ``gpt2`` pre-tokenizer splits text identically;
* no normalizer, a ``ByteLevel`` decoder, and all 256 byte symbols in the base alphabet,
  so every string round-trips and no unknown token exists;
* agentkd's special tokens (``agent.prompt.SPECIAL_TOKENS``) come first (ids 0..4) and are
  special: they are never split and never produced by merges;
* ``eos_token`` is ``<|end|>`` (the end of an assistant turn, where generation stops),
  ``pad_token`` is ``<|endoftext|>``, no BOS token is added, and the chat template is
  ``agent.prompt.CHAT_TEMPLATE``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from agent.prompt import CHAT_TEMPLATE, END_TOKEN, EOS_TOKEN, SPECIAL_TOKENS

log = logging.getLogger(__name__)

#: Smallest sensible vocabulary: the special tokens plus the 256 byte symbols.
MIN_VOCAB = len(SPECIAL_TOKENS) + 256


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts``.

    Args:
        texts: training texts (for a student: the prompt + completion of every example).
        vocab_size: the target vocabulary size, special tokens and the byte alphabet
            included. The result may be smaller when the texts hold fewer distinct merges.

    Returns:
        A ``PreTrainedTokenizerFast`` with agentkd's special tokens and chat template.
    """
    if vocab_size < MIN_VOCAB:
        raise ValueError(
            f"vocab_size: expected at least {MIN_VOCAB} (special tokens + 256 bytes), "
            f"got {vocab_size}"
        )
    texts = list(texts)
    if not any(t for t in texts):
        raise ValueError("train_tokenizer: expected at least one non-empty text, got none")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Special tokens inside the texts must not be merged into words: strip them before
    # training (they are added whole, as special tokens, by the trainer).
    clean = [_strip_special(t) for t in texts]
    tok.train_from_iterator(clean, trainer=trainer, length=len(clean))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=END_TOKEN,
        pad_token=EOS_TOKEN,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in (END_TOKEN, EOS_TOKEN)],
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "right"
    log.info("trained a byte-level BPE tokenizer: %d tokens on %d texts", len(fast), len(texts))
    return fast


def _strip_special(text: str) -> str:
    for t in SPECIAL_TOKENS:
        text = text.replace(t, "\n")
    return text


def check_round_trip(tokenizer: PreTrainedTokenizerFast, texts: Iterable[str]) -> None:
    """Raise ``ValueError`` naming the first text that does not decode back to itself."""
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False)
        back = tokenizer.decode(ids, skip_special_tokens=False)
        if back != text:
            raise ValueError(
                f"tokenizer round trip failed: expected {text[:80]!r}, got {back[:80]!r}"
            )
