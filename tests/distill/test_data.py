"""Trace episodes to examples, token ids with loss weights, and batches."""

from __future__ import annotations

import random

import pytest

import envs
from agent.prompt import END_TOKEN, PROMPT_FORMAT, chat_text, make_context, render_messages
from agent.types import Episode, Step
from distill.data import (
    DataError,
    Example,
    build_examples,
    bucketed_batches,
    collate,
    encode,
    episode_examples,
    load_episodes,
    split_episodes,
    with_recall,
)
from distill.tokenizer import train_tokenizer
from distill.traces import TraceWriter
from envs.base import ExpertStep, TextEnv

TOY_ID = "toy-walk"


class ToyWalkEnv(TextEnv):
    """A corridor of ``length`` cells: walk to the goal G. Actions: left, right."""

    actions = ("left", "right")
    instructions = "You walk along a corridor. Reach the goal G. Actions: left, right."
    max_steps = 12

    def __init__(self, length: int = 7) -> None:
        super().__init__()
        self.length = length

    def _reset(self, seed, options):
        self.pos = int(self.np_random.integers(self.length))
        self.goal = int(self.np_random.integers(self.length))
        while self.goal == self.pos:
            self.goal = int(self.np_random.integers(self.length))

    def _apply(self, action):
        self.pos = max(0, min(self.length - 1, self.pos + (1 if action == "right" else -1)))
        done = self.pos == self.goal
        return float(done), done, ""

    def _render(self):
        cells = " ".join("A" if i == self.pos else "G" if i == self.goal else "." for i in range(self.length))
        # The hint keeps the toy learnable in a few seconds: tests check the machinery.
        return f"{cells}\nThe goal is {'east' if self.goal > self.pos else 'west'}."

    def _success(self):
        return self.pos == self.goal

    def expert(self):
        env = self

        class _Expert:
            def act(self):
                side, compass = ("right", "east") if env.goal > env.pos else ("left", "west")
                return ExpertStep(side, f"The goal is {compass}, so I go {side}.")

        return _Expert()


if TOY_ID not in envs.list_envs():
    envs.register(envs.EnvSpec(TOY_ID, f"{__name__}:ToyWalkEnv", {}, "test corridor"))


def toy_episode(seed: int, *, mistake: bool = False, fmt: str = PROMPT_FORMAT) -> Episode:
    """An expert episode of the toy env, built directly from ``env.expert()``."""
    env = envs.make(TOY_ID)
    obs, info = env.reset(seed=seed)
    expert, steps, done, ret = env.expert(), [], False, 0.0
    while not done:
        e = ExpertStep("jump", "Let me try jumping.") if mistake and not steps else expert.act()
        nobs, r, term, trunc, ninfo = env.step(e.action)
        steps.append(Step(observation=obs, legal_actions=info["legal_actions"], rationale=e.rationale,
                          action=e.action, raw="", valid=not ninfo["invalid_action"], reward=r))
        obs, info, done, ret = nobs, ninfo, term or trunc, ret + r
    return Episode(env_id=TOY_ID, seed=seed, teacher="expert", prompt_format=fmt, steps=steps,
                   total_return=ret, success=bool(info["success"]), terminated=True)


def write_traces(path, episodes):
    with TraceWriter(path) as w:
        for ep in episodes:
            w.write(ep)
    return path


def test_examples_use_the_one_prompt_renderer():
    ep = toy_episode(14)
    exs = episode_examples(ep, "compact")
    assert len(exs) == ep.n_steps > 1
    env = envs.make(TOY_ID)
    env.reset(seed=14)
    hist = [s.turn() for s in ep.steps[:1]]
    ctx = make_context(env, ep.steps[1].observation, {"legal_actions": ["left", "right"]}, hist, "compact")
    assert exs[1].prompt == chat_text(render_messages(ctx, "compact"))
    assert "Recent actions: " + ep.steps[0].action in exs[1].prompt
    c = exs[1].completion
    assert c == f"Thought: {ep.steps[1].rationale}\nAction: {ep.steps[1].action}{END_TOKEN}"
    assert c[exs[1].action_start:].startswith("Action: ")
    assert episode_examples(ep, "full")[0].prompt.startswith("<|system|>\nYou walk along")


def test_invalid_steps_and_action_only():
    ep = toy_episode(6, mistake=True)
    assert not ep.steps[0].valid
    exs = episode_examples(ep, "full")
    assert len(exs) == ep.n_steps - 1 and "jump" in exs[0].prompt  # in the history, not a target
    assert len(episode_examples(ep, "full", skip_invalid=False)) == ep.n_steps
    only = episode_examples(ep, "compact", action_only=True)
    assert only[0].completion == f"Thought: \nAction: {ep.steps[1].action}{END_TOKEN}"
    # a full prompt shows the earlier answers as the student wrote them: an action-only
    # student wrote no thought
    ep = next(e for e in map(toy_episode, range(50)) if e.n_steps >= 2)
    answer = f"Thought: {ep.steps[0].rationale}\nAction: {ep.steps[0].action}{END_TOKEN}"
    assert answer in episode_examples(ep, "full")[1].prompt
    bare = episode_examples(ep, "full", action_only=True)[1].prompt
    assert answer not in bare and f"Thought: \nAction: {ep.steps[0].action}{END_TOKEN}" in bare


def test_encode_masks_prompt_and_weights_parts():
    exs = build_examples([toy_episode(s) for s in (0, 2)], "compact")
    tok = train_tokenizer([e.prompt + e.completion for e in exs], vocab_size=400)
    e = exs[0]
    enc = encode(e, tok, rationale_weight=0.5, action_weight=2.0)
    assert enc.input_ids == tok.encode(e.prompt, add_special_tokens=False) + tok.encode(
        e.completion, add_special_tokens=False)
    assert enc.weights[:enc.n_prompt] == [0.0] * enc.n_prompt
    assert set(enc.weights[enc.n_prompt:enc.action_pos]) == {0.5}
    assert set(enc.weights[enc.action_pos:]) == {2.0}
    assert tok.decode(enc.input_ids[enc.action_pos:]) == f"Action: {e.action}{END_TOKEN}"
    assert tok.decode(enc.input_ids[enc.n_prompt:enc.action_pos]).startswith("Thought: ")
    short = encode(e, tok, max_len=enc.n_prompt)  # prompt cut from the left
    assert len(short) == enc.n_prompt and short.input_ids[-3:] == enc.input_ids[-3:]


def test_recall_tail_asks_for_the_prompts_lines_by_their_cues():
    prompt = ("<|user|>\nYou face north.\nKnown RedBalls: 1 ahead, 2 left; 4 ahead.\n"
              "Mission: go to the red ball.\nIn front: nothing.\nTarget: RedBalls: 1 ahead, 2 left.<|end|>\n"
              "<|assistant|>\n")
    completion = f"Thought: RedBalls: 1 ahead, 2 left: go forward.\nAction: go forward{END_TOKEN}"
    ex = Example(prompt, completion, "go forward", completion.index("Action:"))
    tok = train_tokenizer([prompt + completion], vocab_size=400)
    enc = encode(ex, tok)
    r = with_recall(enc, prompt, tok, 3, random.Random(0))
    assert r.input_ids[:len(enc)] == enc.input_ids and r.weights[:len(enc)] == enc.weights
    assert (r.n_prompt, r.action_pos, r.action) == (enc.n_prompt, enc.action_pos, enc.action)
    lines = tok.decode(r.input_ids[len(enc):]).split("\n")
    assert lines[0] == "" and len(lines[1:]) == 3 and len(set(lines[1:])) == 3
    assert set(lines[1:]) <= {"Known RedBalls: 1 ahead, 2 left; 4 ahead.", "In front: nothing.",
                              "Mission: go to the red ball.", "Target: RedBalls: 1 ahead, 2 left."}
    # the loss is on each value, whose tokens are the very tokens the prompt holds
    p_ids, tail = tok.encode(prompt, add_special_tokens=False), list(zip(r.input_ids, r.weights))[len(enc):]
    runs, run = [], []
    for t, w in [*tail, (None, 0.0)]:
        if w:
            run.append(t)
        elif run:
            runs, run = [*runs, run], []
    assert len(runs) == 3
    for run in runs:
        assert any(p_ids[i:i + len(run)] == run for i in range(len(p_ids))), tok.decode(run)
    assert tok.decode(runs[0]).startswith(" ")
    # seeded; all lines when fewer than asked; none past max_len
    assert with_recall(enc, prompt, tok, 3, random.Random(0)).input_ids == r.input_ids
    assert tok.decode(with_recall(enc, prompt, tok, 9, random.Random(1)).input_ids[len(enc):]).count("\n") == 4
    assert with_recall(enc, prompt, tok, 3, random.Random(0), max_len=len(enc)).input_ids == enc.input_ids
    # a line that does not fit is skipped, and a shorter one drawn after it still goes in
    full = with_recall(enc, prompt, tok, 9, random.Random(2))
    starts = [i for i in range(len(enc), len(full)) if full.input_ids[i] == tok.encode("\n")[0]] + [len(full)]
    sizes = [b - a for a, b in zip(starts, starts[1:])]
    assert sizes[0] > min(sizes[1:]), sizes  # this draw puts a longer line before a shorter one
    fits = with_recall(enc, prompt, tok, 9, random.Random(2), max_len=len(enc) + min(sizes[1:]))
    assert fits.input_ids[len(enc):] == full.input_ids[starts[sizes.index(min(sizes[1:]), 1)]:][:min(sizes[1:])]
    # a cue the prompt holds twice (the Action lines of a full prompt's turns) names no one line
    twice = prompt.replace("In front: nothing.", "Mission: go to the blue key.")
    enc2 = encode(Example(twice, completion, "go forward", ex.action_start), tok)
    tail = tok.decode(with_recall(enc2, twice, tok, 9, random.Random(0)).input_ids[len(enc2):])
    assert "Mission" not in tail and tail.count("\n") == 2


def test_topk_from_traces_maps_to_ids_or_fails_clearly():
    exs = build_examples([toy_episode(0)], "compact")
    tok = train_tokenizer([x.prompt + x.completion for x in exs], vocab_size=400)
    e = exs[0]
    c_ids = tok.encode(e.completion, add_special_tokens=False)
    e.top_logprobs = [{tok.decode([i]): -0.1, tok.decode([7]): -3.0} for i in c_ids[:-1]]
    enc = encode(e, tok)
    assert len(enc.topk) == len(c_ids) - 1 and enc.topk[0][c_ids[0]] == pytest.approx(-0.1)
    batch = collate([enc], tok.pad_token_id, topk=True)
    assert batch["topk_mask"][0, enc.n_prompt] and not batch["topk_mask"][0, enc.n_prompt - 1]
    assert batch["prompt_mask"][0].tolist() == [True] * enc.n_prompt + [False] * (len(enc) - enc.n_prompt)
    e.top_logprobs = e.top_logprobs[:-3]
    with pytest.raises(DataError, match="another tokenizer"):
        encode(e, tok)


def test_load_episodes_errors(tmp_path):
    good = write_traces(tmp_path / "a.jsonl", [toy_episode(0), toy_episode(2)])
    assert len(load_episodes([good])) == 2
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match="no episodes"):
        load_episodes([tmp_path / "empty.jsonl"])
    old = write_traces(tmp_path / "old.jsonl", [toy_episode(0, fmt="agentkd-prompt-v0")])
    with pytest.raises(DataError, match="re-collect"):
        load_episodes([old])
    failed = toy_episode(0)
    failed.success = False
    bad = write_traces(tmp_path / "failed.jsonl", [failed])
    with pytest.raises(DataError, match="all 1 episodes failed"):
        load_episodes([bad], only_success=True)


def test_split_and_batches():
    eps = [toy_episode(s) for s in range(0, 20, 2)]
    train, val = split_episodes(eps, 0.2, seed=0)
    assert len(val) == 2 and len(train) == 8 and not {e.seed for e in val} & {e.seed for e in train}
    assert split_episodes(eps, 0.2, seed=0) == (train, val)
    lengths = [5, 50, 6, 49, 7, 48, 8, 47]
    b = bucketed_batches(lengths, 2, seed=1, epoch=0)
    assert sorted(i for bb in b for i in bb) == list(range(8))
    assert all(abs(lengths[x] - lengths[y]) <= 2 for x, y in b)  # similar lengths together
    assert b == bucketed_batches(lengths, 2, seed=1, epoch=0) != bucketed_batches(lengths, 2, seed=1, epoch=1)
