from __future__ import annotations

import json

import pytest

import envs
from agent.types import Decision, Turn
from distill.traces import read_traces
from eval.compare import CompareConfig, action_agreement, cli, compare

ENV = "babyai-goto-local"


class Noisy:
    """The env's expert, except that every third decision of an episode picks another
    legal action: a stand-in student whose agreement with the expert is known exactly."""

    prompt_variant = "compact"

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def reset(self, env) -> None:
        self._expert, self._t = env.expert(), 0

    def act(self, ctx) -> Decision:
        step = self._expert.act()
        action = step.action
        if self._t % 3 == 2:
            action = next(a for a in ctx.legal_actions if a != step.action)
        self._t += 1
        return Decision(rationale=step.rationale, action=action, completion_tokens=3,
                        latency_s=0.002)


@pytest.fixture
def with_noisy(monkeypatch):
    import agent.policies as policies

    real = policies.load_policy
    monkeypatch.setattr(policies, "load_policy",
                        lambda spec, **kw: Noisy(spec) if spec.startswith("noisy")
                        else real(spec, **kw))


def _cfg(tmp_path, **kw):
    base = dict(policy=("expert", "noisy:a"), env=ENV, episodes=3, out=tmp_path / "cmp",
                workers=0, progress=False)
    return CompareConfig(**{**base, **kw})


def test_every_policy_meets_the_same_seeds(tmp_path, with_noisy):
    result = compare(_cfg(tmp_path, policy=("expert", "noisy:a", "noisy:b")))
    eps = read_traces(tmp_path / "cmp" / "episodes.jsonl")
    by_policy = {p: sorted(e.seed for e in eps if e.teacher == p)
                 for p in ("expert", "noisy:a", "noisy:b")}
    assert by_policy == {p: envs.seeds(ENV, "test", 3) for p in by_policy}
    # same seed, same world: every policy's first observation is the teacher's
    first = {(e.teacher, e.seed): e.steps[0].observation for e in eps}
    for seed in envs.seeds(ENV, "test", 3):
        assert first[("noisy:a", seed)] == first[("expert", seed)] == first[("noisy:b", seed)]
    assert result.report["paired_seeds"] is True
    assert result.report["seeds"] == {ENV: [1, 3, 5]}


def test_agreement_and_retention_match_the_records(tmp_path, with_noisy):
    result = compare(_cfg(tmp_path))
    eps = read_traces(tmp_path / "cmp" / "episodes.jsonl")
    teacher = [e for e in eps if e.teacher == "expert"]
    states = sum(e.n_steps for e in teacher)
    disagree = sum(1 for e in teacher for t in range(e.n_steps) if t % 3 == 2)
    assert result.agreement == {("noisy:a", ENV): (states - disagree, states)}
    data = json.loads(result.paths.json.read_text())
    (student,) = data["students"]
    assert student["agreement"] == pytest.approx((states - disagree) / states)
    rows = {r["policy"]: r for r in data["rows"]}
    noisy = [e for e in eps if e.teacher == "noisy:a"]
    assert rows["noisy:a"]["successes"] == sum(e.success for e in noisy)
    assert student["retention"] == pytest.approx(
        rows["noisy:a"]["success_rate"] / rows["expert"]["success_rate"])
    assert rows["noisy:a"]["tokens_per_s"] == pytest.approx(3 / 0.002)
    # resumed compare: nothing re-run, agreement read from its cache
    again = compare(_cfg(tmp_path))
    assert len(read_traces(tmp_path / "cmp" / "episodes.jsonl")) == len(eps)
    assert again.agreement == result.agreement


def test_agreement_replay_uses_the_students_prompt_variant(tmp_path):
    from agent.types import Episode, Step

    env = envs.make(ENV)
    obs, info = env.reset(seed=1)
    seen = []

    class Recorder:
        spec, prompt_variant = "rec", "compact"

        def reset(self, env):
            pass

        def act(self, ctx):
            seen.append(ctx)
            return Decision(rationale="", action=ctx.legal_actions[0])

    legal = info["legal_actions"]
    ep = Episode(env_id=ENV, seed=1, teacher="expert", prompt_format="v", steps=[
        Step(observation=obs, legal_actions=legal, rationale="", action=legal[0], raw="",
             valid=True, reward=0.0),
        Step(observation="second", legal_actions=legal, rationale="", action=legal[1], raw="",
             valid=True, reward=0.0)])
    assert action_agreement(Recorder(), [ep], max_states=10) == (1, 2)
    assert seen[0].instructions == ""  # a student's compact prompt
    assert seen[1].history == [Turn(obs, legal[0], "", tuple(legal))] and seen[1].observation == "second"
    assert action_agreement(Recorder(), [ep], max_states=1) == (1, 1)


def test_teacher_defaults_to_the_first_policy_and_is_run_when_named(tmp_path, with_noisy):
    result = compare(_cfg(tmp_path, policy=("noisy:a",), teacher="expert",
                          agreement_states=0))
    assert result.report["policies"] == ["expert", "noisy:a"]
    assert result.report["teacher"] == "expert"
    assert result.report["students"][0]["agreement"] is None
    with pytest.raises(ValueError, match="--policy"):
        compare(_cfg(tmp_path, policy=()))


def test_cli_takes_repeated_policies(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = cli(["--policy", "expert", "--policy", "expert", "--env", ENV, "--episodes", "1",
              "--out", str(out), "--workers", "0", "--no-progress"])
    assert rc == 0
    assert json.loads((out / "report.json").read_text())["policies"] == ["expert"]
    assert str(out / "report.md") in capsys.readouterr().out


@pytest.mark.slow
def test_gguf_student_in_worker_processes(tmp_path, tiny_gguf):
    """A real llama.cpp policy, loaded once per spawned worker, on the teacher's seeds."""
    spec = f"gguf:{tiny_gguf}"
    result = compare(CompareConfig(policy=("expert", spec), env="frozenlake-4x4", episodes=2,
                                   out=tmp_path / "g", workers=2, max_steps=8, max_tokens=48,
                                   agreement_states=6, progress=False))
    rows = {r["policy"]: r for r in result.report["rows"]}
    assert rows[spec]["seeds"] == rows["expert"]["seeds"] == [1, 3]
    assert rows[spec]["model_size_bytes"] == tiny_gguf.stat().st_size
    assert rows[spec]["completion_tokens"] > 0 and rows[spec]["tokens_per_s"] > 0
    assert rows[spec]["peak_rss_bytes"] > 0
    assert result.agreement[(spec, "frozenlake-4x4")][1] == 6
