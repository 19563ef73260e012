"""Entity renaming (``agentkd train --rename-entities``): fresh names, consistent per episode."""

from __future__ import annotations

import random
import re

import envs
from agent.episode import run_episode
from agent.policies import load_policy
from distill.data import build_examples, episode_examples
from distill.rename import Renamer, episode_rng, fresh_names, fresh_word, word_pieces


def _episode(env_id: str = "tools-chain", seed: int = 0):
    return run_episode(envs.make(env_id), load_policy("expert"), seed)


def test_fresh_word_keeps_case_and_length_bounds():
    rng = random.Random(0)
    for like in ("Vell", "Bala", "x", "Tirsenwickdorard", "mug"):
        for _ in range(50):
            w = fresh_word(rng, like)
            assert w.isalpha() and 3 <= len(w) <= 10
            assert w[0].isupper() == like[0].isupper()


def test_fresh_names_distinct_new_and_same_shape():
    names = ["Bala Tirsen", "Vell", "Dalo Corp", "Vellholm", "red mug"]
    m = fresh_names(names, random.Random(1))
    assert set(m) == set(names)
    assert len(set(v.lower() for v in m.values())) == len(names)
    assert not {v.lower() for v in m.values()} & {n.lower() for n in names}
    for old, new in m.items():
        assert len(new.split(" ")) == len(old.split(" "))
    assert fresh_names(names, random.Random(1)) == m  # seeded


def test_renamer_whole_words_longest_first_one_pass():
    r = Renamer({"Vell": "Quo", "Vellholm": "Ax", "Quo": "Zed", "Bala Tirsen": "Mi Ka"})
    text = 'Vellholm and Vell, "Bala Tirsen" (Vell\'s); Vellx Quo'
    # Vellx is another word; the original Quo becomes Zed, and a replacement is never replaced again.
    assert r(text) == 'Ax and Quo, "Mi Ka" (Quo\'s); Vellx Zed'
    assert Renamer({})("Vell") == "Vell"


def test_episode_renamed_consistently_and_actions_still_valid():
    ep = _episode("tools-chain", 0)
    env = envs.make("tools-chain")
    env.reset(seed=ep.seed)
    old = env.invented_names()
    plain = episode_examples(ep, "compact", env=env)
    renamed = episode_examples(ep, "compact", env=env, rename_seed=0)
    assert len(plain) == len(renamed) >= 2
    assert [e.prompt for e in plain] != [e.prompt for e in renamed]
    mapping = fresh_names(old, episode_rng(0, ep.env_id, ep.seed))
    for p, r in zip(plain, renamed):
        for name in old:  # no made-up name of the world survives anywhere
            assert name not in r.prompt + r.completion
        assert Renamer(mapping)(p.prompt) == r.prompt
        assert Renamer(mapping)(p.completion) == r.completion
        assert r.completion.endswith(r.action + "<|end|>")
        assert r.completion[r.action_start:].startswith("Action: ")
    # Deterministic for a run seed, different for another.
    again = episode_examples(ep, "compact", env=env, rename_seed=0)
    assert [e.prompt for e in again] == [e.prompt for e in renamed]
    other = episode_examples(ep, "compact", env=env, rename_seed=1)
    assert [e.prompt for e in other] != [e.prompt for e in renamed]


def test_renamed_actions_act_in_a_world_with_the_new_names():
    """The renamed action calls the entity the renamed prompt asked about: replaying the
    episode in its own world with the mapping undone gives the teacher's actions."""
    ep = _episode("tools-chain", 2)
    env = envs.make("tools-chain")
    env.reset(seed=ep.seed)
    mapping = fresh_names(env.invented_names(), episode_rng(5, ep.env_id, ep.seed))
    back = Renamer({v: k for k, v in mapping.items()})
    renamed = episode_examples(ep, "compact", env=env, rename_seed=5)
    assert [back(e.action) for e in renamed] == [s.action for s in ep.steps if s.valid]


def test_envs_without_names_and_topk_steps_are_left_alone():
    ep = _episode("frozenlake-4x4", 0)
    assert envs.make("frozenlake-4x4").invented_names() == []
    a = build_examples([ep], "compact")
    b = build_examples([ep], "compact", rename_seed=0)
    assert [(e.prompt, e.completion) for e in a] == [(e.prompt, e.completion) for e in b]
    tools = _episode("tools-chain", 4)
    tools.steps[0].top_logprobs = [{"T": -0.1}]
    kept = episode_examples(tools, "compact", rename_seed=0)
    plain = episode_examples(tools, "compact")
    assert kept[0].prompt == plain[0].prompt and kept[1].prompt != plain[1].prompt


def test_train_cli_records_the_option_and_fits_the_tokenizer_to_renamed_texts(tmp_path):
    """Through ``agentkd train --rename-entities``: the run records the option, and the
    tokenizer, fitted to the training texts, is fitted to the renamed ones."""
    import json

    from agent.cli import main
    from distill.traces import TraceWriter

    path = tmp_path / "t.jsonl"
    with TraceWriter(path) as w:
        for s in (0, 2, 4, 6):
            w.write(_episode("tools-chain", s))
    vocabs = []
    for flag in ([], ["--rename-entities"]):
        out = tmp_path / f"run{len(flag)}"
        assert main(["train", "--traces", str(path), "--student", "nano", "--out", str(out), "--steps", "1",
                     "--batch-size", "4", "--vocab-size", "400", "--val-frac", "0", "--no-progress", *flag]) == 0
        assert json.loads((out / "train_config.json").read_text())["rename_entities"] is bool(flag)
        vocabs.append(set(json.loads((out / "last" / "tokenizer.json").read_text())["model"]["vocab"]))
    assert vocabs[0] != vocabs[1]


def test_rename_on_envs_without_names_says_it_changes_nothing(tmp_path, caplog):
    from distill.train import _warn_nothing_to_rename

    eps = [_episode("frozenlake-4x4", 0), _episode("tools-chain", 0), _episode("taxi", 2)]
    with caplog.at_level("WARNING", logger="distill.train"):
        _warn_nothing_to_rename(eps)
    assert "--rename-entities: frozenlake-4x4, taxi make up no names" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="distill.train"):
        _warn_nothing_to_rename(eps[1:2])
    assert caplog.text == ""


def test_word_pieces_are_the_vocabularys_short_letter_tokens():
    from distill.tokenizer import train_tokenizer

    tok = train_tokenizer(["Fonar Pelsen met Sorin Nimsen at 16:27; Pelsen's employer?"] * 20, 300)
    pieces = word_pieces(tok)
    assert pieces == sorted(set(pieces)) and pieces
    assert all(p.isascii() and p.isalpha() and p == p.lower() and len(p) <= 4 for p in pieces)
    # The name's own tokens are pieces, word starts without their space mark and lower-cased;
    # digits, punctuation and tokens of five letters or more are not.
    name_tokens = [t for t in tok.tokenize(" Sorsen Pelin") if t.removeprefix("Ġ").isalpha()]
    assert any(t.startswith("Ġ") for t in name_tokens) and any(len(t) > 1 for t in name_tokens)
    assert {t.removeprefix("Ġ").lower() for t in name_tokens if len(t.removeprefix("Ġ")) <= 4} <= set(pieces)
    long = [t for t in tok.get_vocab() if t.removeprefix("Ġ").isalpha() and len(t.removeprefix("Ġ")) > 4]
    assert long and not {t.removeprefix("Ġ").lower() for t in long} & set(pieces)
    assert "16" not in pieces and ":" not in pieces and not any(p.startswith("Ġ") for p in pieces)


def test_names_from_pieces_are_made_of_those_pieces_only():
    rng = random.Random(0)
    for like in ("Vell", "x", "Tirsenwickdorard", "mug"):
        w = fresh_word(rng, like, ["qu", "zo", "sen"])
        assert re.fullmatch(r"(qu|zo|sen)+", w.lower()) and len(w) >= 3
        assert w[0].isupper() == like[0].isupper()
    ep = _episode("tools-chain", 0)
    env = envs.make("tools-chain")
    env.reset(seed=ep.seed)
    old = env.invented_names()
    mapping = fresh_names(old, episode_rng(0, ep.env_id, ep.seed), ["qu", "zo", "sen"])
    renamed = episode_examples(ep, "compact", env=env, rename_seed=0, rename_pieces=["qu", "zo", "sen"])
    assert renamed[0].prompt == Renamer(mapping)(episode_examples(ep, "compact", env=env)[0].prompt)
    for new in mapping.values():
        assert all(re.fullmatch(r"(qu|zo|sen)+", w.lower()) for w in new.split(" "))


def test_train_rename_from_pieces_uses_the_students_own_pieces(tmp_path, monkeypatch):
    """``--rename-from pieces``: the training examples (and the copy warm-up's words) are
    renamed again with the letter pieces of the tokenizer the run trained."""
    import json

    import distill.train as train_mod
    from agent.cli import main
    from distill.traces import TraceWriter

    path = tmp_path / "t.jsonl"
    with TraceWriter(path) as w:
        for s in (0, 2, 4):
            w.write(_episode("tools-chain", s))
    calls, built, warm = [], [], []
    build, copy = train_mod.data.build_examples, train_mod.copy_warmup

    def spy_build(eps, variant, **kw):
        calls.append(kw.get("rename_pieces"))
        built.append(build(eps, variant, **kw))
        return built[-1]

    def spy_copy(model, tok, texts, steps, **kw):
        texts = list(texts)
        warm.append(texts)
        return copy(model, tok, texts, steps, **kw)

    monkeypatch.setattr(train_mod.data, "build_examples", spy_build)
    monkeypatch.setattr(train_mod, "copy_warmup", spy_copy)
    out = tmp_path / "run"
    assert main(["train", "--traces", str(path), "--student", "nano", "--out", str(out), "--steps", "1",
                 "--batch-size", "4", "--vocab-size", "400", "--val-frac", "0", "--no-progress",
                 "--copy-warmup", "2", "--rename-entities", "--rename-from", "pieces"]) == 0
    from transformers import AutoTokenizer

    pieces = word_pieces(AutoTokenizer.from_pretrained(out / "last"))
    assert pieces and calls[0] is None and calls[-1] == pieces  # letters (for the tokenizer), then pieces
    assert json.loads((out / "train_config.json").read_text())["rename_from"] == "pieces"
    # The warm-up copies the texts renamed from pieces (validation is empty here).
    assert warm[0] == [e.prompt + e.completion for e in built[-1]] != [e.prompt + e.completion for e in built[0]]


def test_renamed_run_resumes_to_the_same_weights(tmp_path):
    """A killed run renamed from pieces rebuilds the same names from its saved tokenizer."""
    import torch
    from safetensors.torch import load_file

    from distill.train import TrainConfig, train
    from distill.traces import TraceWriter

    path = tmp_path / "t.jsonl"
    with TraceWriter(path) as w:
        for s in (0, 2, 4):
            w.write(_episode("tools-chain", s))
    kw = dict(traces=str(path), student="nano", steps=4, batch_size=4, eval_every=100, val_frac=0.0,
              vocab_size=400, progress=False, rename_entities=True, copy_warmup=2)
    train(TrainConfig(out=str(tmp_path / "a"), **kw))
    train(TrainConfig(out=str(tmp_path / "b"), stop_after=2, **kw))
    train(TrainConfig(out=str(tmp_path / "b"), resume=True, **kw))
    a, b = (load_file(tmp_path / r / "last" / "model.safetensors") for r in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_too_few_pieces_is_a_clear_error():
    import pytest

    with pytest.raises(ValueError, match=r"renaming '\w+': no new name.*pieces \(1\) are too few"):
        fresh_names(["Ann", "Bob", "Eve", "Tom"], random.Random(0), ["a"])
    with pytest.raises(ValueError, match=r"rename pieces: expected letter pieces"):
        fresh_word(random.Random(0), "Vell", [])
