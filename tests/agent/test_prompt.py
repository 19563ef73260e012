"""The one prompt format: render/parse round trips, variants, and the chat template."""

from __future__ import annotations

import jinja2
import pytest

import envs
from agent.episode import run_episode
from agent.policies import load_policy
from agent.prompt import (CHAT_TEMPLATE, COMPACT_WINDOW, FULL_WINDOW, END_TOKEN, chat_text, history_start,
                          make_context, parse_completion, render_completion, render_messages)
from agent.types import Turn


@pytest.mark.parametrize("rationale, action", [
    ("The goal is down, so go down.", "down"),
    ("Action: is a word I may say mid-line; the Action is 'left'.", "left"),
    ("Next Action: up would hit the wall.\nSo I choose right.", "right"),
    ("Call the calculator (Action: tool).", '{"tool": "calculator", "args": {"expression": "2*3"}}'),
    ("", "pick up"),
])
def test_render_parse_round_trip(rationale, action):
    text = render_completion(rationale, action)
    assert text.count("\n") == 1  # rationale newlines become spaces: one Action line
    assert parse_completion(text) == (" ".join(rationale.split()), action)


def test_parse_is_forgiving_and_never_raises():
    assert parse_completion("thought: go\n  ACTION :  left  \nmore text") == ("go", "left")
    assert parse_completion("Thought: go\nAction: left<|end|>") == ("go", "left")
    assert parse_completion("Thought: nothing to do") == ("nothing to do", None)
    assert parse_completion("") == ("", None)
    assert parse_completion("Action: a\nAction: b") == ("", "a")  # the first Action line wins


def test_variants_differ_in_instructions_and_history():
    env = envs.make("frozenlake-4x4")
    obs, info = env.reset(seed=0)
    history = [Turn(f"obs {i}", "up", f"thought {i}", ("up", "down")) for i in range(10)]
    full = render_messages(make_context(env, obs, info, history, "full"), "full")
    compact = render_messages(make_context(env, obs, info, history, "compact"), "compact")
    assert full[0] == {"role": "system", "content": env.instructions}
    # 10 earlier steps: the window (6) dropped its oldest half twice, so steps 6-9 show
    shown = 10 - history_start(10, FULL_WINDOW)
    assert shown == 4 and len(full) == 1 + 2 * shown + 1
    # each turn as it was when it was the newest: legal actions, then the whole answer
    assert full[1:3] == [{"role": "user", "content": "obs 6\nLegal actions: up, down"},
                         {"role": "assistant", "content": "Thought: thought 6\nAction: up"}]
    assert full[-1]["content"].endswith("Legal actions: left, down, right, up")
    # FrozenLake's observation is its whole state: a compact prompt is the observation alone.
    assert compact == [{"role": "user", "content": obs}]
    babyai = envs.make("babyai-goto-local")
    obs, info = babyai.reset(seed=0)
    assert babyai.compact_history == COMPACT_WINDOW
    compact = render_messages(make_context(babyai, obs, info, history, "compact"), "compact")
    assert compact[0]["content"] == "Recent actions: " + " | ".join(["up"] * COMPACT_WINDOW) + "\n" + obs
    with pytest.raises(ValueError, match="expected one of full, compact"):
        make_context(env, obs, info, history, "tiny")


@pytest.mark.parametrize("size", [1, 2, 3, FULL_WINDOW, 7])
def test_the_window_drops_half_its_turns_at_once(size):
    starts = [history_start(n, size) for n in range(60)]
    shown = [n - s for n, s in enumerate(starts)]
    drop = max(1, size // 2)
    assert shown[:size + 1] == list(range(size + 1))  # everything while it fits
    assert max(shown) == size and min(shown[size:]) == size - drop + 1
    assert all(b >= a for a, b in zip(starts, starts[1:]))  # the oldest turn shown never goes back
    # the start moves only by whole halves: between moves, each prompt extends the last
    assert {b - a for a, b in zip(starts, starts[1:])} <= {0, drop}
    assert sum(b != a for a, b in zip(starts, starts[1:])) == -(-(59 - size) // drop)
    if size == FULL_WINDOW:  # never fewer turns than the compact window keeps (DAgger relies on it)
        assert min(shown[COMPACT_WINDOW:]) >= COMPACT_WINDOW


@pytest.mark.parametrize("env_id", ["frozenlake-8x8", "babyai-goto-local", "tools-chain"])
def test_a_full_prompt_extends_the_previous_prompt_and_its_answer(env_id):
    # What makes the KV cache of a gguf: policy pay off: the chat text of step t+1 starts
    # with the chat text of step t plus the completion written there, except where the
    # window drops its oldest turns (then it still starts with the system message).
    env, expert = envs.make(env_id), load_policy("expert")
    prompts: list[tuple[str, str]] = []

    class Watch:
        spec, prompt_variant = "watch", "full"

        def reset(self, env):
            expert.reset(env)

        def act(self, context):
            d = expert.act(context)
            prompts.append((chat_text(render_messages(context, "full")), render_completion(d.rationale, d.action)))
            return d

    for seed in envs.seeds(env_id, "test", 3):
        prompts.clear()
        run_episode(env, Watch(), seed=seed)
        for t in range(1, len(prompts)):
            (before, answer), (now, _) = prompts[t - 1], prompts[t]
            if history_start(t, FULL_WINDOW) == history_start(t - 1, FULL_WINDOW):
                assert now.startswith(before + answer + END_TOKEN), (env_id, seed, t)
            else:
                system = chat_text(render_messages(make_context(env, "", {}, [], "full"), "full")[:1], False)
                assert now.startswith(system) and not now.startswith(before)  # the oldest turns went


def test_chat_text_equals_the_jinja_template():
    env = envs.make("tools-single")
    obs, info = env.reset(seed=2)
    messages = render_messages(make_context(env, obs, info, [Turn("q", '{"answer": 1}')], "full"), "full")
    tmpl = jinja2.Environment().from_string(CHAT_TEMPLATE)
    for gen in (True, False):
        assert tmpl.render(messages=messages, add_generation_prompt=gen) == chat_text(messages, gen)
