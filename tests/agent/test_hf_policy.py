"""The hf: policy on a tiny randomly initialised Llama saved to a temp dir."""

from __future__ import annotations

import json

import pytest
import torch

import envs
from agent.episode import run_episode
from agent.policies import load_policy
from agent.policies.hf import HFPolicy
from agent.prompt import END_TOKEN, chat_text, make_context, render_completion, render_messages
from agent.types import Sampling

ENV = "frozenlake-4x4"


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    from distill.student import build_student, save_student
    from distill.tokenizer import train_tokenizer

    env = envs.make(ENV)
    texts = []
    for seed in range(0, 16, 2):
        obs, info = env.reset(seed=seed)
        for variant in ("compact", "full"):
            ctx = make_context(env, obs, info, [], variant)
            texts.append(chat_text(render_messages(ctx, variant)) + render_completion("go right", "right") + END_TOKEN)
    tok = train_tokenizer(texts, vocab_size=400)
    model = build_student("nano", len(tok), seed=0)
    return save_student(model, tok, tmp_path_factory.mktemp("hf") / "student",
                        {"prompt_variant": "compact", "preset": "nano"})


def test_variant_comes_from_agentkd_json_and_prompt_is_chat_text(student_dir):
    p = load_policy(f"hf:{student_dir}", sampling=Sampling(max_tokens=6))
    assert isinstance(p, HFPolicy) and p.prompt_variant == "compact" and p.spec == f"hf:{student_dir}"
    env = envs.make(ENV)
    obs, info = env.reset(seed=1)
    ctx = make_context(env, obs, info, [], "compact")
    assert p.prompt_text(ctx) == chat_text(render_messages(ctx, "compact"))
    assert load_policy(str(student_dir)).spec == f"hf:{student_dir}"  # a bare directory means hf:


def test_greedy_episode_records_tokens_latency_and_topk(student_dir):
    p = load_policy(f"hf:{student_dir}", sampling=Sampling(max_tokens=5, top_logprobs=3))
    env = envs.make(ENV)
    env.max_steps = 2
    ep = run_episode(env, p, seed=1)
    assert ep.error is None and ep.n_steps == 2 and ep.sampling["max_tokens"] == 5
    for st in ep.steps:
        assert st.prompt_tokens > 20 and 1 <= st.completion_tokens <= 5 and st.latency_s > 0
        assert len(st.top_logprobs) == st.completion_tokens
        assert all(1 <= len(t) <= 3 and max(t.values()) <= 0.0 for t in st.top_logprobs)
        assert not st.valid or st.action == "right"  # random weights: invalid, recorded, no crash
    again = run_episode(env, p, seed=1)  # greedy: the same completions
    assert [s.raw for s in again.steps] == [s.raw for s in ep.steps]


def test_sampling_is_reproducible_with_its_seed(student_dir):
    env = envs.make(ENV)
    obs, info = env.reset(seed=3)
    ctx = make_context(env, obs, info, [], "compact")
    raws = []
    for _ in range(2):
        p = HFPolicy(student_dir, sampling=Sampling(temperature=1.0, max_tokens=6, seed=7))
        p.reset(env)
        raws.append(p.act(ctx).raw)
    assert raws[0] == raws[1]


def test_logits_match_a_forward_pass_over_prompt_and_completion(student_dir):
    p = HFPolicy(student_dir)
    logits = p.logits("<|user|>\nhi<|end|>\n", "Thought: go\nAction: right")
    ids = p.tokenizer("<|user|>\nhi<|end|>\nThought: go\nAction: right", add_special_tokens=False)["input_ids"]
    assert logits.shape == (len(ids), len(p.tokenizer))
    with torch.no_grad():
        ref = p.model(input_ids=torch.tensor([ids])).logits[0]
    torch.testing.assert_close(logits, ref)


def test_a_directory_that_is_not_a_causal_lm_is_a_one_line_error(tmp_path):
    with pytest.raises(ValueError, match="expected a model directory with config.json") as e:
        load_policy(f"hf:{tmp_path}")
    assert "\n" not in str(e.value)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 10, "hidden_size": 8,
                                                       "num_hidden_layers": 1, "num_attention_heads": 1,
                                                       "intermediate_size": 8}))
    with pytest.raises(ValueError) as e:
        load_policy(f"hf:{tmp_path}")
    assert "\n" not in str(e.value) and str(tmp_path) in str(e.value)


def test_a_student_of_another_prompt_format_is_refused(student_dir, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(student_dir, old)
    meta = json.loads((old / "agentkd.json").read_text())
    (old / "agentkd.json").write_text(json.dumps({**meta, "prompt_format": "agentkd-prompt-v1"}))
    with pytest.raises(ValueError, match="trained on prompt format 'agentkd-prompt-v1'.*re-train") as e:
        load_policy(f"hf:{old}")
    assert "\n" not in str(e.value) and str(old) in str(e.value)
    # v3 changed only the full variant: a v2 compact student reads v3 prompts unchanged
    v2 = {**meta, "prompt_format": "agentkd-prompt-v2"}
    (old / "agentkd.json").write_text(json.dumps({**v2, "prompt_variant": "compact"}))
    assert load_policy(f"hf:{old}").prompt_variant == "compact"
    (old / "agentkd.json").write_text(json.dumps({**v2, "prompt_variant": "full"}))
    with pytest.raises(ValueError, match=r"'agentkd-prompt-v2' \(full variant\)"):
        load_policy(f"hf:{old}")
