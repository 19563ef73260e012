from __future__ import annotations

import math
import random

import pytest
import torch
from safetensors.torch import load_file

from agent.prompt import ROLE_TOKENS
from distill.copy_warmup import WORDS, copy_example, copy_warmup, vocabulary
from distill.student import build_student, read_meta
from distill.tokenizer import train_tokenizer
from distill.train import TrainConfig, train
from tests.distill.test_data import toy_episode, write_traces

TEXTS = ["<|user|>\nred key 1 ahead, 3 left; grey box 2 right<|end|>",
         "Thought: go to the red key: red key 1 ahead.\nAction: go forward"]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS * 20, vocab_size=300)


def test_vocabulary_is_the_texts_words_without_chat_markers():
    words = vocabulary(TEXTS)
    assert words == sorted(set(words))
    assert {"red", "key", "ahead,", "Thought:", "forward"} <= set(words)
    assert not any("<|" in w for w in words)


def test_a_copy_example_repeats_its_run_and_scores_only_the_repeat(tok):
    words = vocabulary(TEXTS)
    sep = tok.convert_tokens_to_ids(ROLE_TOKENS["assistant"])
    for seed in range(20):
        ids, labels = copy_example(words, tok, random.Random(seed))
        k = ids.index(sep)
        assert ids[:k] == ids[k + 1:] and len(ids) == 2 * k + 1
        assert labels[:k + 1] == [-100] * (k + 1) and labels[k + 1:] == ids[k + 1:]
        text = tok.decode(ids[:k])
        assert WORDS[0] <= len(text.split()) <= WORDS[1] and set(text.split()) <= set(words)
    # seeded: the same generator state gives the same example
    assert copy_example(words, tok, random.Random(3)) == copy_example(words, tok, random.Random(3))


def test_warmup_trains_the_model_on_copies(tok):
    model = build_student("nano", len(tok), seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng_before = torch.get_rng_state()
    out = copy_warmup(model, tok, TEXTS, steps=30, seed=0)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the main run's draws are untouched
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    # from ln(vocab) at the start to well under it: the repeat's tokens are being predicted
    assert out["copy_loss"] < 0.6 * math.log(len(tok)) and 0.0 < out["copy_acc"] <= 1.0
    with pytest.raises(ValueError, match="no words to copy"):
        copy_warmup(model, tok, ["<|user|>"], steps=1)


def test_train_with_copy_warmup_records_it_and_resumes_exactly(tmp_path):
    traces = write_traces(tmp_path / "toy.jsonl", [toy_episode(s) for s in (2, 8, 12, 14)])
    base = dict(traces=str(traces), student="nano", steps=6, batch_size=4, lr=3e-3, warmup=2,
                eval_every=100, val_frac=0.0, vocab_size=400, progress=False, copy_warmup=10)
    train(TrainConfig(out=str(tmp_path / "a"), **base))
    train(TrainConfig(out=str(tmp_path / "b"), stop_after=3, **base))
    train(TrainConfig(out=str(tmp_path / "b"), resume=True, **base))
    a = load_file(tmp_path / "a" / "last" / "model.safetensors")
    b = load_file(tmp_path / "b" / "last" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    meta = read_meta(tmp_path / "a" / "last")
    assert set(meta["copy_warmup"]) == {"copy_loss", "copy_acc"} and meta["train_config"]["copy_warmup"] == 10
    assert read_meta(tmp_path / "b" / "last")["copy_warmup"] == meta["copy_warmup"]  # kept on resume
    plain = train(TrainConfig(out=str(tmp_path / "c"), **{**base, "copy_warmup": 0}))
    c = load_file(plain.parent / "last" / "model.safetensors")
    assert any(not torch.equal(a[k], c[k]) for k in a)  # the warm-up really ran
    with pytest.raises(ValueError, match="--copy-warmup: expected >= 0"):
        train(TrainConfig(out=str(tmp_path / "d"), **{**base, "copy_warmup": -1}))
    with pytest.raises(ValueError, match="--copy-warmup trains a fresh preset student"):
        train(TrainConfig(out=str(tmp_path / "e"), **{**base, "student": str(tmp_path / "a" / "last")}))
