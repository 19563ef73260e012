"""The one prompt format: render/parse round trips, variants, and the chat template."""

from __future__ import annotations

import jinja2
import pytest

import envs
from agent.prompt import (CHAT_TEMPLATE, COMPACT_WINDOW, FULL_WINDOW, chat_text, make_context, parse_completion,
                          render_completion, render_messages)


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
    history = [(f"obs {i}", "up") for i in range(10)]
    full = render_messages(make_context(env, obs, info, history, "full"), "full")
    compact = render_messages(make_context(env, obs, info, history, "compact"), "compact")
    assert full[0] == {"role": "system", "content": env.instructions}
    assert len(full) == 1 + 2 * FULL_WINDOW + 1 and full[1]["content"] == f"obs {10 - FULL_WINDOW}"
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


def test_chat_text_equals_the_jinja_template():
    env = envs.make("tools-single")
    obs, info = env.reset(seed=2)
    messages = render_messages(make_context(env, obs, info, [("q", '{"answer": 1}')], "full"), "full")
    tmpl = jinja2.Environment().from_string(CHAT_TEMPLATE)
    for gen in (True, False):
        assert tmpl.render(messages=messages, add_generation_prompt=gen) == chat_text(messages, gen)
