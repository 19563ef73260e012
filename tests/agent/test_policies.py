"""load_policy spec strings and the expert policy."""

from __future__ import annotations

import pytest

import envs
from agent.policies import load_policy, normalize_spec
from agent.policies.base import backoff_delays, decision_from_text, topk_from_openai, with_retries
from agent.policies.expert import ExpertPolicy
from agent.prompt import make_context, parse_completion
from agent.types import Policy


@pytest.mark.parametrize("spec, canonical", [
    ("expert", "expert"), ("openai:gpt-4o-mini", "openai:gpt-4o-mini"), ("gguf:a/b.gguf", "gguf:a/b.gguf"),
    ("hf:runs/student", "hf:runs/student"), ("model-q8_0.gguf", "gguf:model-q8_0.gguf"),
])
def test_spec_forms(spec, canonical):
    assert normalize_spec(spec) == canonical


@pytest.mark.parametrize("spec", ["", "gpt-4", "openai:", "vllm:x", "no/such/dir"])
def test_bad_spec_lists_the_valid_forms(spec):
    with pytest.raises(ValueError, match="expected one of: expert, openai:MODEL, gguf:PATH, hf:PATH"):
        load_policy(spec)


def test_bare_directory_means_hf_and_missing_gguf_is_clear(tmp_path):
    assert normalize_spec(str(tmp_path)) == f"hf:{tmp_path}"
    with pytest.raises(ValueError, match="no GGUF file at"):
        load_policy(f"gguf:{tmp_path / 'absent.gguf'}")


def test_expert_ignores_llm_options_and_meets_the_protocol():
    p = load_policy("expert", sampling=None, base_url="http://x", api_key="k", n_threads=2, prompt_variant="compact")
    assert isinstance(p, ExpertPolicy) and isinstance(p, Policy) and p.prompt_variant == "full"


@pytest.mark.parametrize("env_id", ["frozenlake-4x4", "tools-single"])
def test_expert_decision_is_the_envs_expert_rendered_as_a_completion(env_id):
    env = envs.make(env_id)
    obs, info = env.reset(seed=4)
    want = env.expert().act()
    p = ExpertPolicy()
    p.reset(env)
    d = p.act(make_context(env, obs, info, [], "full"))
    assert (d.rationale, d.action) == (want.rationale, want.action)
    assert parse_completion(d.raw) == (" ".join(want.rationale.split()), want.action)


def test_expert_must_be_reset_first():
    env = envs.make("frozenlake-4x4")
    obs, info = env.reset(seed=0)
    with pytest.raises(RuntimeError, match="call reset"):
        ExpertPolicy().act(make_context(env, obs, info, [], "full"))


def test_helpers():
    d = decision_from_text("Thought: left is the way\nAction: left<|end|>junk", prompt_tokens=3)
    assert (d.rationale, d.action, d.raw, d.prompt_tokens) == ("left is the way", "left", "Thought: left is the way\nAction: left", 3)
    assert decision_from_text("no action here").action == ""
    assert topk_from_openai(None) is None and topk_from_openai([]) is None
    assert topk_from_openai([{"token": "a", "logprob": -0.5, "top_logprobs": []}]) == [{"a": -0.5}]
    assert backoff_delays(5, 1.0, 5.0) == [1.0, 2.0, 4.0, 5.0, 5.0]
    tries = iter([OSError("x"), OSError("y"), 42])

    def call():
        v = next(tries)
        if isinstance(v, Exception):
            raise v
        return v

    waits: list[float] = []
    assert with_retries(call, retriable=lambda e: isinstance(e, OSError), delays=[1, 2], sleep=waits.append) == (42, 3, None)
    assert waits == [1, 2]
    res, n, err = with_retries(lambda: 1 / 0, retriable=lambda e: False, delays=[1], sleep=waits.append)
    assert (res, n, type(err)) == (None, 1, ZeroDivisionError)
