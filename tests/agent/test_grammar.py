"""GBNF grammars: an untrained model under them emits only legal actions, episode after episode."""

from __future__ import annotations

import json

import llama_cpp
import pytest

import envs
from agent.grammar import (COPY_KEY, action_schema, context_spans, copy_spans, gbnf_literal, grammar_for,
                           in_grammar, strip_copy_marks)
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


LOOKUP = {"type": "function", "function": {"name": "lookup", "description": "Look up a fact.",
          "parameters": {"type": "object", "required": ["entity"],
                         "properties": {"entity": {"type": "string", "maxLength": 60, COPY_KEY: True}}}}}


def test_copy_spans_are_word_runs_that_no_punctuation_breaks():
    spans = copy_spans("Question: Where does Rena Findor's sister live?\nlookup(Rena Findor, city) -> Gur Hollow. "
                       "Next", 3)
    for s in ["Rena Findor", "Rena Findor's", "Where does Rena", "Gur Hollow", "Gur", "city", "Next"]:
        assert s in spans
    # no span runs over a break: ":", "?", "(", ",", ")", "->", a full stop, a line break
    for s in ["Question: Where", "live lookup", "lookup(Rena", "Findor, city", "Hollow. Next", "city ->"]:
        assert s not in spans
    assert max(len(s.split()) for s in spans) == 3
    assert len(spans) == len(set(spans))
    assert copy_spans("  ") == []
    assert copy_spans("1627.3 * 10") == ["1627.3", "1627.3 *", "1627.3 * 10", "*", "* 10", "10"]


def test_copy_marked_argument_becomes_an_enum_of_the_episodes_spans():
    ctx = Context("t", "", [], "Question: What is the city of Rena Findor?", ["lookup", "answer"],
                  tools=[LOOKUP])
    spans = context_spans(ctx)
    assert "Rena Findor" in spans and "Rena Findor?" not in spans
    entity = action_schema([LOOKUP], ["lookup"], spans)["oneOf"][0]["properties"]["args"]["properties"]["entity"]
    assert entity == {"type": "string", "enum": spans}
    # off (or nothing to copy from): any string, and the mark never reaches the JSON schema
    free = action_schema([LOOKUP], ["lookup"])["oneOf"][0]["properties"]["args"]["properties"]["entity"]
    assert free == {"type": "string", "maxLength": 60}
    assert grammar_for(ctx, 20, copy_args=False) != grammar_for(ctx, 20)
    assert '\\"Rena Findor\\"' in grammar_for(ctx, 20)
    assert COPY_KEY not in json.dumps(strip_copy_marks([LOOKUP]))
    assert context_spans(Context("t", "", [], "obs", ["calculator"], tools=[CALC])) is None  # nothing marked
    llama_cpp.LlamaGrammar.from_string(grammar_for(ctx, 20), verbose=False)


def test_copied_numbers_are_the_numbers_the_text_spells():
    conv = {"type": "function", "function": {"name": "convert", "description": "", "parameters": {
        "type": "object", "required": ["value", "n"], "properties": {
            "value": {"type": "number", COPY_KEY: True},
            "n": {"type": "integer", "minimum": 0, "maximum": 200, COPY_KEY: True},
            "unit": {"type": "string", "enum": ["cm", "m"], COPY_KEY: True}}}}}
    spans = copy_spans("lookup(Bo, height_cm) -> 174\nlookup(Bo, temp) -> 11.8; -3 and 007 and 1e5 on 1996-04-13")
    props = action_schema([conv], ["convert"], spans)["oneOf"][0]["properties"]["args"]["properties"]
    assert props["value"] == {"enum": [174, 11.8, -3]}  # 007 and 1e5 spell no JSON number
    assert props["n"] == {"enum": [174]}                 # integers in range only
    assert props["unit"] == {"type": "string", "enum": ["cm", "m"]}  # no span fits: its own enum stays
    assert json.dumps(props["value"]["enum"]) == "[174, 11.8, -3]"
    grammar = grammar_for(Context("t", "", [], "obs", ["convert"], tools=[conv]), 10)
    llama_cpp.LlamaGrammar.from_string(grammar, verbose=False)


def test_tool_envs_mark_names_but_the_prompt_text_does_not_change():
    env = envs.make("tools-mixed")
    marked = {t["function"]["name"]: [a for a, p in t["function"]["parameters"]["properties"].items()
                                      if p.get(COPY_KEY)] for t in env.tool_schemas}
    assert marked["lookup"] == ["entity"] and marked["add_item"] == ["item", "quantity"]
    assert marked["date_calc"] == ["date", "amount", "end_date"] and marked["convert_units"] == ["value"]
    assert marked["calculator"] == [] and marked["order_total"] == []
    assert COPY_KEY not in env.instructions


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


@pytest.mark.slow
def test_untrained_model_copies_names_only_from_the_episode(tiny_gguf):
    # an untrained model at temperature 1.5 writes anything, yet under the copy every entity
    # it asks lookup for is a span of the question it was shown (lookup made the only legal
    # tool, so each decision is a call)
    from dataclasses import replace

    contexts = []
    for seed in envs.seeds("tools-chain", "test", 6):
        env = envs.make("tools-chain")
        obs, info = env.reset(seed=seed)
        contexts.append(replace(make_context(env, obs, info, [], "full"), legal_actions=["lookup"]))
    for copy_args in (True, False):
        policy = GGUFPolicy(tiny_gguf, sampling=Sampling(temperature=1.5, max_tokens=32, max_rationale_chars=20,
                                                         seed=7), copy_args=copy_args)
        copied = []
        for ctx in contexts:
            call = json.loads(policy.act(ctx).action)
            assert call["tool"] == "lookup"
            copied.append(call["args"]["entity"] in context_spans(ctx))
        # without the copy, the same model writes names the question never had
        assert all(copied) if copy_args else not all(copied)


@pytest.mark.parametrize("env_id", ["tools-single", "tools-chain", "tools-compare", "tools-stateful"])
def test_copy_never_forbids_what_the_expert_writes(env_id):
    # every argument the expert sends, marked x-copy or not, is one the copying grammar allows,
    # literally (a number as the text spells it): names, dates and amounts all come from the text
    from agent.types import Decision

    copied = 0
    for split in ("train", "test"):
        for seed in envs.seeds(env_id, split, 15):
            env = envs.make(env_id)
            obs, info = env.reset(seed=seed)
            expert, history, done = env.expert(), [], False
            while not done:
                ctx = make_context(env, obs, info, history, "full")
                step = expert.act()
                call = json.loads(step.action)
                if "tool" in call:
                    schema = action_schema(ctx.tools, ctx.legal_actions, context_spans(ctx))
                    alt = next(a for a in schema["oneOf"] if a["properties"].get("tool") == {"const": call["tool"]})
                    props = alt["properties"]["args"]["properties"]
                    for arg, value in call["args"].items():
                        fn = next(t["function"] for t in ctx.tools if t["function"]["name"] == call["tool"])
                        if fn["parameters"]["properties"][arg].get(COPY_KEY) and "enum" in props[arg]:
                            assert json.dumps(value) in [json.dumps(v) for v in props[arg]["enum"]], (arg, value)
                            copied += 1
                history.append(ctx.turn(Decision(step.rationale, step.action)))
                obs, _, term, trunc, info = env.step(step.action)
                done = term or trunc
            assert info.get("success", True)
    assert copied
