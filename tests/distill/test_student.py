"""Student presets, save/load round trip and metadata."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import LlamaForCausalLM

from agent.prompt import PROMPT_FORMAT
from distill.student import (
    META_KEYS,
    PRESETS,
    build_student,
    count_parameters,
    load_student,
    read_meta,
    save_student,
)
from distill.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(["Thought: go.\nAction: left<|end|>"] * 20, vocab_size=300)


@pytest.mark.parametrize(("preset", "lo", "hi"), [("nano", 1.5e6, 2.5e6), ("micro", 4e6, 5.5e6),
                                                   ("small", 24e6, 28e6)])
def test_preset_sizes(preset, lo, hi):
    m = build_student(preset, 2048)
    c = m.config
    total, emb = count_parameters(m)
    assert lo < total < hi
    assert c.hidden_size % 256 == 0 and c.intermediate_size % 256 == 0
    assert c.hidden_size // c.num_attention_heads == 64
    assert not c.tie_word_embeddings and c.max_position_embeddings == 2048
    assert m.lm_head.weight.data_ptr() != m.model.embed_tokens.weight.data_ptr()
    assert emb == 2 * 2048 * c.hidden_size
    tied = build_student(preset, 2048, tie=True)
    assert tied.lm_head.weight.data_ptr() == tied.model.embed_tokens.weight.data_ptr()
    assert count_parameters(tied) == (total - emb // 2, emb // 2)


def test_build_is_seeded():
    a, b, c = (build_student("nano", 300, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.lm_head.weight, b.lm_head.weight)
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)


def test_unknown_preset():
    with pytest.raises(ValueError, match="nano, micro, small"):
        build_student("huge", 300)


def test_save_load_round_trip(tok, tmp_path):
    model = build_student("nano", len(tok), seed=3)
    out = save_student(model, tok, tmp_path / "s", {"prompt_variant": "compact", "preset": "nano",
                                                     "trace_hashes": {"t.jsonl": "ab"}})
    meta = read_meta(out)
    assert set(META_KEYS) <= set(meta)
    assert meta["prompt_format"] == PROMPT_FORMAT and meta["trace_hashes"] == {"t.jsonl": "ab"}
    assert meta["n_parameters"] == count_parameters(model)[0]
    m2, t2, meta2 = load_student(out)
    assert isinstance(m2, LlamaForCausalLM) and meta2 == meta
    assert m2.config.eos_token_id == tok.eos_token_id and m2.config.bos_token_id is None
    ids = torch.tensor([tok.encode("Action: left")])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, m2(ids).logits)
    # Saving again replaces the directory whole, leaving no temp dirs behind.
    save_student(model, tok, out, {"prompt_variant": "full"})
    assert read_meta(out)["prompt_variant"] == "full"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_plain_checkpoint_has_empty_meta(tok, tmp_path):
    model = build_student("nano", len(tok))
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    assert load_student(tmp_path)[2] == {}


def test_bad_inputs(tok, tmp_path):
    with pytest.raises(ValueError, match="prompt_variant"):
        save_student(build_student("nano", len(tok)), tok, tmp_path / "x", {})
    with pytest.raises(ValueError, match="config.json"):
        load_student(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(ValueError, match="not a causal LM"):
        load_student(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="weights"):
        load_student(tmp_path)
