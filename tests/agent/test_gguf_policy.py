"""The gguf: policy: prompt variant from metadata, KV prefix reuse, streaming, log-probs, bad files."""

from __future__ import annotations

import pytest

from agent.policies.gguf import GGUFPolicy
from agent.prompt import chat_text, render_messages
from agent.types import Context, Sampling
from distill.gguf_writer import GGUFFileError

LEGAL = ["left", "down", "right", "up"]


def _ctx(obs: str, history=()) -> Context:
    return Context("frozenlake-4x4", "Walk on the lake from S to G.", list(history), obs, LEGAL)


@pytest.fixture(scope="module")
def policy(tiny_gguf):
    # decoded under the grammar from the start: the 12-step student's greedy text is rarely a sentence of it
    return GGUFPolicy(tiny_gguf, sampling=Sampling(max_tokens=32, max_rationale_chars=40, top_logprobs=3),
                      check_grammar=False)


def test_variant_and_prompt_come_from_the_file(policy, tiny_gguf):
    assert policy.prompt_variant == "compact"
    assert policy.spec == f"gguf:{tiny_gguf}"
    ctx = _ctx("SFFF\nFHFH")
    assert policy.prompt_text(ctx) == chat_text(render_messages(ctx, "compact"))


def test_decision_fields_streaming_and_logprobs(policy):
    pieces: list[str] = []
    policy.on_token = pieces.append
    try:
        d = policy.act(_ctx("SFFF\nFHFH\nYou are at row 0."))
    finally:
        policy.on_token = None
    assert d.action in LEGAL and d.error is None
    assert d.raw.startswith("Thought: ") and d.raw.endswith(f"\nAction: {d.action}")
    assert "".join(pieces) == d.raw  # the stream is exactly the completion
    assert d.prompt_tokens > 10 and d.completion_tokens >= 3 and d.latency_s > 0
    assert len(d.top_logprobs) == d.completion_tokens
    # (partial UTF-8 byte tokens share the text "\ufffd", so a few entries may merge)
    assert all(1 <= len(t) <= 3 and all(v <= 0 for v in t.values()) for t in d.top_logprobs)


def test_kv_cache_prefix_is_reused_between_decisions(policy, tiny_gguf):
    # A Markov env's compact prompt is the observation alone: consecutive ones share the map.
    first, second = _ctx("SFFF\nFHFH\nstep one"), _ctx("SFFF\nFHFH\nstep two")
    policy.act(first)
    policy.act(second)
    shared = len(policy.llm.tokenize(policy.prompt_text(first).split("step one")[0].encode(),
                                     add_bos=False, special=True))
    assert policy.last_reused_tokens >= shared - 1 > 10
    fresh = GGUFPolicy(tiny_gguf, sampling=Sampling(max_tokens=16), reuse_prefix=False)
    fresh.act(first)
    fresh.act(second)
    assert fresh.last_reused_tokens == 0


def test_grammars_are_cached_per_action_set(policy):
    a = policy._grammar(_ctx("x"), False)
    assert policy._grammar(_ctx("y"), False) is a
    assert policy._grammar(Context("e", "", [], "x", ["up"]), False) is not a


def test_prompt_too_long_is_a_recorded_error(tiny_gguf):
    small = GGUFPolicy(tiny_gguf, n_ctx=256)
    d = small.act(_ctx("F" * 500))
    assert d.action == "" and "does not fit n_ctx=256" in d.error


def test_bad_files_fail_before_llama_cpp(tmp_path, tiny_gguf):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(GGUFFileError, match="not a GGUF file") as e:
        GGUFPolicy(bad)
    assert str(e.value).count("\n") == 0
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[:4096])
    with pytest.raises(GGUFFileError, match="truncated"):
        GGUFPolicy(cut)


@pytest.mark.parametrize("cut", ["Thought: abc\n", "Thought: abc\nAction:", "Thought: abc\nAction: "])
def test_budget_cut_inside_the_separator_still_finishes_with_an_action(tiny_gguf, monkeypatch, cut):
    # The token budget can run out half-way through "\nAction: "; the policy must then finish
    # the action after one clean separator, not keep the half-written one (which parsed as
    # an empty action).
    pol = GGUFPolicy(tiny_gguf, sampling=Sampling(max_tokens=8), check_grammar=False)
    answers = iter([(cut, 8, [], False, "budget"), ("up", 1, [], True, "eog")])
    monkeypatch.setattr(pol, "_generate", lambda tokens, n, grammar: next(answers))
    d = pol.act(_ctx("S F\nF G"))
    assert d.raw == "Thought: abc\nAction: up"
    assert (d.rationale, d.action) == ("abc", "up")


def test_a_gguf_of_another_prompt_format_is_refused(tiny_student_dir, tmp_path):
    import json
    import shutil

    from distill.gguf_writer import write_gguf

    old = tmp_path / "old"
    shutil.copytree(tiny_student_dir, old)
    meta = json.loads((old / "agentkd.json").read_text())
    (old / "agentkd.json").write_text(json.dumps({**meta, "prompt_format": "agentkd-prompt-v1"}))
    path = write_gguf(old, tmp_path / "old.gguf")
    with pytest.raises(ValueError, match="trained on prompt format 'agentkd-prompt-v1'"):
        GGUFPolicy(path)
    for variant, kept in (("compact", True), ("full", False)):  # v3 changed only the full variant
        (old / "agentkd.json").write_text(json.dumps({**meta, "prompt_format": "agentkd-prompt-v2",
                                                      "prompt_variant": variant}))
        path = write_gguf(old, tmp_path / f"v2-{variant}.gguf")
        if kept:
            assert GGUFPolicy(path).prompt_variant == "compact"
        else:
            with pytest.raises(ValueError, match=r"'agentkd-prompt-v2' \(full variant\)"):
                GGUFPolicy(path)


def test_checked_greedy_decision_skips_the_grammar_or_decodes_again(tiny_gguf, monkeypatch):
    pol = GGUFPolicy(tiny_gguf, sampling=Sampling(max_tokens=32))
    calls = []

    def fake(answers):
        it = iter(answers)
        return lambda tokens, n, grammar: (calls.append(grammar), next(it))[1]

    monkeypatch.setattr(pol, "_generate", fake([("Thought: ok\nAction: up", 5, [], True, "line")]))
    d = pol.act(_ctx("S F\nF G"))
    assert (d.action, calls, pol.grammar_fallbacks) == ("up", [None], 0)
    calls.clear()
    monkeypatch.setattr(pol, "_generate", fake([("Thought: ok\nAction: fly", 5, [], True, "line"),
                                                 ("Thought: ok\nAction: left", 5, [], True, "eog")]))
    d = pol.act(_ctx("S F\nF G"))
    assert d.action == "left" and calls[0] is None and calls[1] is not None and pol.grammar_fallbacks == 1
    pol.sampling = Sampling(max_tokens=32, temperature=0.7)  # sampling: the grammar from the start
    calls.clear()
    monkeypatch.setattr(pol, "_generate", fake([("Thought: ok\nAction: up", 5, [], True, "eog")]))
    pol.act(_ctx("S F\nF G"))
    assert calls[0] is not None


def test_checking_stops_paying_for_a_student_mostly_outside_the_grammar(tiny_gguf, monkeypatch):
    from agent.policies.gguf import CHECK_WINDOW, RECHECK_EVERY

    pol = GGUFPolicy(tiny_gguf, sampling=Sampling(max_tokens=32))
    first_passes: list[int] = []  # decision numbers that were checked first
    state = {"n": 0, "outside": True}

    def fake(tokens, n, grammar):
        if grammar is None:
            first_passes.append(state["n"])
            return ("Thought: ok\nAction: fly" if state["outside"] else "Thought: ok\nAction: up"), 5, [], True, "line"
        return "Thought: ok\nAction: left", 5, [], True, "eog"

    monkeypatch.setattr(pol, "_generate", fake)

    def decide(k):
        out = []
        for _ in range(k):
            state["n"] += 1
            out.append(pol.act(_ctx("S F\nF G")).action)
        return out

    # every decision is the constrained one, checked or not
    assert decide(4 * RECHECK_EVERY) == ["left"] * (4 * RECHECK_EVERY)
    # the first RECHECK_EVERY were checked and failed; after that only one in RECHECK_EVERY
    assert first_passes == [*range(1, RECHECK_EVERY + 1), *range(2 * RECHECK_EVERY, 4 * RECHECK_EVERY + 1,
                                                                   RECHECK_EVERY)]
    assert pol.grammar_fallbacks == len(first_passes)
    # the student gets better: the rechecks notice, and every decision is checked again
    state["outside"] = False
    decide(CHECK_WINDOW * RECHECK_EVERY)
    first_passes.clear()
    assert decide(5) == ["up"] * 5 and len(first_passes) == 5


@pytest.fixture(scope="module")
def trained_gguf(tmp_path_factory):
    """A nano student trained long enough (150 steps) that its greedy decisions are well formed."""
    import envs
    from agent.episode import run_episode
    from agent.policies import load_policy
    from distill.gguf_writer import write_gguf
    from distill.traces import TraceWriter
    from distill.train import train
    from distill.train_config import TrainConfig

    root = tmp_path_factory.mktemp("trained_gguf")
    expert = load_policy("expert")
    with TraceWriter(root / "t.jsonl") as w:
        for seed in envs.seeds("frozenlake-4x4", "train", 16):
            w.write(run_episode(envs.make("frozenlake-4x4"), expert, seed))
    best = train(TrainConfig(traces=str(root / "t.jsonl"), student="nano", out=str(root / "run"),
                             vocab_size=512, steps=150, batch_size=8, warmup=10, lr=3e-3, val_frac=0.0,
                             progress=False))
    return write_gguf(best, root / "s-f32.gguf"), root / "t.jsonl"


@pytest.mark.slow
def test_checked_grammar_decides_exactly_as_the_grammar(trained_gguf):
    from distill import data

    path, traces = trained_gguf
    checked = GGUFPolicy(path, sampling=Sampling(max_tokens=96), n_threads=1)
    eager = GGUFPolicy(path, sampling=Sampling(max_tokens=96), n_threads=1, check_grammar=False)
    episodes = data.load_episodes([traces])[:4]
    contexts = [Context(ep.env_id, "", [], st.observation, st.legal_actions) for ep in episodes for st in ep.steps]
    assert len(contexts) >= 12
    for ctx in contexts:
        a, b = checked.act(ctx), eager.act(ctx)
        assert (a.raw, a.action, a.completion_tokens) == (b.raw, b.action, b.completion_tokens)
        assert a.action in LEGAL
    assert checked.grammar_fallbacks < len(contexts) // 2  # most decisions never touched the grammar


def test_pieces_longer_than_the_buffer_are_read_whole(tiny_gguf, monkeypatch):
    import agent.policies.gguf as g

    monkeypatch.setattr(g, "_PIECE_BYTES", 1)  # every piece of 2+ bytes takes the grow-and-retry path
    pol = GGUFPolicy(tiny_gguf, sampling=Sampling(max_tokens=8))
    assert max(len(pol._piece(t)) for t in range(pol.llm.n_vocab())) > 1
    for tok in range(min(pol.llm.n_vocab(), 300)):
        assert pol._piece(tok) == pol.llm.detokenize([tok], special=True)  # short pieces: the same bytes
    import codecs
    strict = codecs.getincrementaldecoder("utf-8")()
    pol._last_text_exact = True
    pol._check_bytes(strict, "é".encode()[:1])      # half a character: fine until it ends unfinished
    assert pol._last_text_exact
    pol._check_bytes(strict, b"a")                 # ... which a plain byte does
    assert not pol._last_text_exact
    pol._last_text_exact = True
    pol._check_bytes(strict, b"")
    assert not pol._last_text_exact                # an empty piece: the grammar rejects it


def test_a_sampled_decision_follows_its_seed(tiny_gguf):
    # loop escape swaps in a seed per repeat: the same seed must give the same text (a run
    # is reproducible), different seeds different draws
    pol = GGUFPolicy(tiny_gguf, sampling=Sampling(max_tokens=24, temperature=1.5, seed=3))
    ctx = _ctx("SFFF\nFHFH\nYou are at row 1.")
    first = pol.act(ctx).raw
    pol.act(_ctx("FFFH\nHFFG"))  # another decision in between draws nothing from the seed
    assert pol.act(ctx).raw == first
    texts = set()
    for seed in range(4, 10):
        pol.sampling = Sampling(max_tokens=24, temperature=1.5, seed=seed)
        texts.add(pol.act(ctx).raw)
    assert len(texts) > 1
