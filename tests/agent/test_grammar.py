"""GBNF grammars: an untrained model under them emits only legal actions, episode after episode."""

from __future__ import annotations

import json

import llama_cpp
import pytest

import envs
from agent.grammar import action_schema, gbnf_literal, grammar_for, in_grammar
from agent.policies.gguf import GGUFPolicy
from agent.prompt import make_context
from agent.types import Context, Sampling

CALC = {"type": "function", "function": {"name": "calculator", "description": "Evaluate arithmetic.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                       "required": ["expression"]}}}


def test_discrete_grammar_text():
    ctx = Context("x", "", [], "obs", ["left", 'say "hi"'])
    g = grammar_for(ctx, 50)
    assert 'root ::= "Thought: " thought "\\nAction: " action' in g
    assert "thought ::= thought-char{0,50}" in g
    assert 'action ::= "left" | "say \\"hi\\""' in g
    assert grammar_for(ctx, 50, action_only=True).startswith("root ::= action\n")
    llama_cpp.LlamaGrammar.from_string(g, verbose=False)  # llama.cpp parses it


@pytest.mark.parametrize("text,at_end,ok", [
    ("Thought: row 1: x o\nAction: left", False, True),
    ("Thought: \nAction: up", True, True),
    ("Thought: a <b> c\nAction: left", True, True),
    ("Thought: a <|end|>\nAction: left", True, False),    # a control token's text
    ("Thought: a <\nAction: left", True, False),           # "<" must pair with a character
    ("Thought: two\nlines\nAction: left", True, False),
    ("Thought: tab\there\nAction: left", True, False),
    ("Thinking: x\nAction: left", True, False),
    ("Thought: x\nAction: jump", True, False),
    ("Thought: x", True, False),
    ("Thought: " + "y" * 11 + "\nAction: left", True, False),  # over the cap of 10
    ("Thought: " + "<y" * 10 + "\nAction: left", True, True),  # "<y" counts as one
    ("Thought: x\nAction: go", True, True),                # end-of-turn right after "go": allowed
    ("Thought: x\nAction: go", False, False),              # a line break: "go on" was open too
    ("Thought: x\nAction: go on", False, True),
])
def test_in_grammar_accepts_exactly_the_completions_the_grammar_would_force(text, at_end, ok):
    ctx = Context("x", "", [], "obs", ["left", "up", "go", "go on"])
    assert in_grammar(text, ctx, 10, at_end_token=at_end) is ok
    # the grammar parses and llama.cpp agrees on what it allows
    assert llama_cpp.LlamaGrammar.from_string(grammar_for(ctx, 10), verbose=False)


def test_in_grammar_leaves_tool_calls_to_the_grammar():
    ctx = Context("t", "", [], "obs", ["calculator", "answer"], tools=[CALC])
    assert in_grammar('Thought: x\nAction: {"answer": 1}', ctx, 10, at_end_token=True) is None
    free = Context("f", "", [], "obs", [])
    assert in_grammar("Thought: x\nAction: anything at all", free, 10, at_end_token=True)
    assert not in_grammar("Thought: x\nAction: anything at all", free, 10, at_end_token=False)


def test_tool_schema_offers_only_legal_tools_and_closes_objects():
    schema = action_schema([CALC], ["calculator", "answer"])
    call, answer = schema["oneOf"]
    assert call["properties"]["tool"] == {"const": "calculator"}
    assert call["properties"]["args"]["additionalProperties"] is False
    assert call["properties"]["args"]["properties"]["expression"]["maxLength"] == 200
    assert answer["required"] == ["answer"]
    assert len(action_schema([CALC], ["answer"])["oneOf"]) == 1
    with pytest.raises(ValueError, match="legal actions"):
        action_schema([CALC], ["lookup"])
    assert gbnf_literal('a"b\n') == '"a\\"b\\n"'


def _episode(policy, env_id: str, seed: int) -> list[tuple[str, list[str], dict]]:
    """Play one episode; returns (action, legal actions, info after) per step."""
    env = envs.make(env_id)
    obs, info = env.reset(seed=seed)
    policy.reset(env)
    history, out, done = [], [], False
    while not done:
        ctx = make_context(env, obs, info, history, policy.prompt_variant)
        d = policy.act(ctx)
        history.append(ctx.turn(d))
        obs, _, term, trunc, info = env.step(d.action)
        out.append((d.action, ctx.legal_actions, info))
        done = term or trunc
    return out


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [0.0, 1.5])
def test_untrained_model_only_emits_legal_frozenlake_actions(tiny_gguf, temperature):
    # a tiny token budget also exercises the path that finishes the action after the budget
    policy = GGUFPolicy(tiny_gguf, sampling=Sampling(temperature=temperature, max_tokens=24,
                                                     max_rationale_chars=60))
    steps = _episode(policy, "frozenlake-4x4", seed=1)
    assert steps
    for action, legal, info in steps:
        assert action in legal
        assert not info["invalid_action"]


@pytest.mark.slow
def test_untrained_model_only_emits_wellformed_tool_calls(tiny_gguf):
    env = envs.make("tools-single")
    policy = GGUFPolicy(tiny_gguf, sampling=Sampling(temperature=1.0, max_tokens=48, max_rationale_chars=40))
    steps = _episode(policy, "tools-single", seed=3)
    for action, legal, info in steps:
        obj = json.loads(action)  # one line of JSON, always
        assert ("answer" in obj and len(obj) == 1) or (set(obj) == {"tool", "args"} and obj["tool"] in legal)
        if "tool" in obj:
            fn = next(t["function"] for t in env.tool_schemas if t["function"]["name"] == obj["tool"])
            assert set(fn["parameters"].get("required", [])) <= set(obj["args"])
            assert set(obj["args"]) <= set(fn["parameters"]["properties"])
