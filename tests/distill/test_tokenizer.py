"""The student tokenizer: byte-level BPE with agentkd's special tokens and chat template."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from agent.prompt import CHAT_TEMPLATE, END_TOKEN, EOS_TOKEN, SPECIAL_TOKENS, chat_text
from distill.tokenizer import MIN_VOCAB, check_round_trip, train_tokenizer

MESSAGES = [
    {"role": "system", "content": "Reach the goal G without falling into a hole H."},
    {"role": "user", "content": "S F F F\nF H F H\nLegal actions: left, down, right, up"},
]
COMPLETION = "Thought: the goal is down and right.\nAction: right" + END_TOKEN
TEXTS = [chat_text(MESSAGES) + COMPLETION] * 30 + ["caf\u00e9 \u65e5\u672c  tabs\tand\nnewlines"]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, vocab_size=400)


def test_special_tokens_first_and_whole(tok):
    assert tok.convert_ids_to_tokens(list(range(len(SPECIAL_TOKENS)))) == list(SPECIAL_TOKENS)
    assert tok.eos_token == END_TOKEN and tok.eos_token_id == SPECIAL_TOKENS.index(END_TOKEN)
    assert tok.pad_token == EOS_TOKEN and tok.pad_token_id == 0
    assert tok.bos_token is None
    ids = tok.encode("x<|assistant|>\ny<|end|>", add_special_tokens=False)
    assert SPECIAL_TOKENS.index("<|assistant|>") in ids and ids[-1] == tok.eos_token_id


def test_round_trip_and_no_bos(tok):
    odd = ["", " leading space", "\u00fcnicode \u2603 \U0001F600", "a\r\nb", "Action: {\"q\": 1}"]
    check_round_trip(tok, TEXTS + odd)
    ids = tok(TEXTS[0])["input_ids"]
    assert ids == tok.encode(TEXTS[0], add_special_tokens=False)  # nothing prepended


def test_bpe_learns_merges(tok):
    # The repeated prompt must compress far below one token per byte.
    n = len(tok.encode(TEXTS[0], add_special_tokens=False))
    assert n < len(TEXTS[0].encode()) / 2.5
    assert MIN_VOCAB < len(tok) <= 400


def test_chat_template_matches_chat_text(tok):
    rendered = tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert rendered == chat_text(MESSAGES)
    assert tok.chat_template == CHAT_TEMPLATE


def test_save_and_reload(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again.encode(TEXTS[0], add_special_tokens=False) == tok.encode(TEXTS[0], add_special_tokens=False)
    assert (again.eos_token, again.pad_token) == (END_TOKEN, EOS_TOKEN)
    assert again.chat_template == CHAT_TEMPLATE


def test_bad_arguments():
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(TEXTS, vocab_size=100)
    with pytest.raises(ValueError, match="non-empty"):
        train_tokenizer(["", ""])
