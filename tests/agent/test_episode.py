"""run_episode: the loop every command shares (records, invalid output, backend errors)."""

from __future__ import annotations

import pytest

import envs
from agent.episode import run_episode
from agent.policies import load_policy
from agent.prompt import FULL_WINDOW, PROMPT_FORMAT
from agent.types import Decision, Sampling


class Recorder:
    """Plays a fixed list of completions and keeps every context it was shown."""

    spec = "recorder"

    def __init__(self, actions: list[str], variant: str = "full", sampling: Sampling | None = None) -> None:
        self.actions, self.prompt_variant, self.contexts, self.resets = list(actions), variant, [], 0
        if sampling is not None:
            self.sampling = sampling

    def reset(self, env) -> None:
        self.resets += 1

    def act(self, context) -> Decision:
        self.contexts.append(context)
        a = self.actions.pop(0)
        if isinstance(a, Exception):
            raise a
        if a is None:
            return Decision(rationale="", action="", error="backend down")
        return Decision(rationale=f"try {a}", action=a, raw=f"Thought: try {a}\nAction: {a}",
                        prompt_tokens=10, completion_tokens=3, latency_s=0.01)


def test_expert_episode_record():
    ep = run_episode(envs.make("frozenlake-4x4"), load_policy("expert"), seed=1)
    assert ep.success and ep.terminated and not ep.truncated and ep.error is None
    assert ep.teacher == "expert" and ep.prompt_format == PROMPT_FORMAT and ep.seed == 1
    assert ep.total_return == 1.0 == sum(s.reward for s in ep.steps)
    assert all(s.valid and s.legal_actions == ["left", "down", "right", "up"] for s in ep.steps)
    assert set(ep.timings) == {"total_s", "policy_s", "env_s"}
    replay = envs.make("frozenlake-4x4")
    obs, _ = replay.reset(seed=1)
    for s in ep.steps:  # each step's observation is the one the action was taken in
        assert s.observation == obs
        obs, *_ = replay.step(s.action)


def test_invalid_output_is_recorded_and_the_episode_goes_on():
    env = envs.make("frozenlake-4x4")
    pol = Recorder(["fly", "", "down"], sampling=Sampling(temperature=0.5))
    env.max_steps = 3
    steps_seen = []
    ep = run_episode(env, pol, seed=0, on_step=lambda t, obs, d, info: steps_seen.append((t, d.action)))
    assert [s.valid for s in ep.steps] == [False, False, True] and ep.error is None
    # an invalid action does not move the world; the env says why in the next observation
    assert ep.steps[1].observation.startswith(ep.steps[0].observation)
    assert "Invalid action 'fly'" in ep.steps[1].observation
    assert steps_seen == [(1, "fly"), (2, ""), (3, "down")]
    assert ep.sampling["temperature"] == 0.5 and ep.steps[0].prompt_tokens == 10
    # the history the policy sees holds the refused actions too
    assert [(t.observation, t.action) for t in pol.contexts[2].history] == [(ep.steps[0].observation, "fly"),
                                                                          (ep.steps[1].observation, "")]


@pytest.mark.parametrize("failure", [None, RuntimeError("socket closed")])
def test_a_backend_failure_stops_the_episode_as_failed(failure):
    pol = Recorder(["right", failure])
    ep = run_episode(envs.make("frozenlake-4x4"), pol, seed=0)
    assert ep.n_steps == 1 and not ep.success and not ep.terminated
    assert ep.error == ("backend down" if failure is None else "RuntimeError: socket closed")


def test_history_is_windowed_and_variant_comes_from_the_policy():
    env = envs.make("babyai-goto-local", max_steps=FULL_WINDOW + 3)
    pol = Recorder(["up"] * env.max_steps, variant="compact")
    run_episode(env, pol, seed=0)
    assert pol.contexts[0].instructions == ""
    assert [len(c.history) for c in pol.contexts][-1] == env.compact_history == 4
    markov = Recorder(["up"] * 3, variant="compact")
    run_episode(envs.make("frozenlake-4x4", max_steps=3), markov, seed=0)
    assert [len(c.history) for c in markov.contexts] == [0, 0, 0]  # compact_history = 0
    full = Recorder(["up"] * env.max_steps)
    run_episode(env, full, seed=0)
    assert full.contexts[0].instructions == env.instructions
    assert max(len(c.history) for c in full.contexts) == FULL_WINDOW and full.resets == 1


def test_tool_env_episode_carries_tool_schemas():
    pol = Recorder(['{"answer": 1}'])
    ep = run_episode(envs.make("tools-single"), pol, seed=0)
    assert pol.contexts[0].tools and ep.terminated and ep.n_steps == 1 and not ep.success


class Pacer:
    """Greedy, it walks right from the start and left back to it, for ever; sampled, it
    goes down. Keeps the sampling settings of every decision."""

    spec = "pacer"
    prompt_variant = "compact"

    def __init__(self) -> None:
        self.sampling, self.start, self.seen = Sampling(seed=7), None, []

    def reset(self, env) -> None:
        self.start = None

    def act(self, context) -> Decision:
        self.seen.append(self.sampling)
        self.start = self.start or context.observation
        if self.sampling.temperature > 0:
            action = "down"
        else:
            action = "right" if context.observation == self.start else "left"
        return Decision(rationale="", action=action)


def test_loop_escape_resamples_a_situation_met_before():
    # frozenlake's compact prompt is the observation alone: back at the start, the greedy
    # pacer would go right again, and round the same two cells until the step limit
    looping = run_episode(envs.make("frozenlake-4x4", max_steps=12), Pacer(), seed=0)
    assert [s.action for s in looping.steps] == ["right", "left"] * 6 and not looping.success
    assert not any(s.resampled for s in looping.steps)

    pacer = Pacer()
    ep = run_episode(envs.make("frozenlake-4x4", max_steps=12), pacer, seed=0, loop_temperature=0.8)
    assert [s.action for s in ep.steps[:3]] == ["right", "left", "down"]
    assert [s.resampled for s in ep.steps[:3]] == [False, False, True]
    # the repeat was sampled at the escape's temperature, with a seed of its own; then the
    # policy's own settings were back
    assert pacer.seen[2] == Sampling(temperature=0.8, seed=8)
    assert pacer.sampling == Sampling(seed=7) and ep.sampling == {**ep.sampling, "temperature": 0.0, "seed": 7}
    assert all(s == Sampling(seed=7) for s, st in zip(pacer.seen, ep.steps) if not st.resampled)
    # each further repeat gets the next seed
    assert [s.seed for s, st in zip(pacer.seen, ep.steps) if st.resampled] == list(
        range(8, 8 + sum(st.resampled for st in ep.steps)))


def test_loop_escape_keys_on_the_recent_actions_and_leaves_the_expert_alone():
    # babyai's compact prompt holds the last 4 actions: turning on the spot meets the same
    # view again after 4 turns, but the same prompt only after 8
    spins = Recorder(["turn left"] * 10, variant="compact", sampling=Sampling())
    ep = run_episode(envs.make("babyai-goto-local", max_steps=10), spins, seed=0, loop_temperature=1.0)
    assert not ep.terminated  # seed 0: no object of the mission right next to the start
    assert [s.resampled for s in ep.steps] == [False] * 8 + [True] * 2
    assert spins.contexts[4].observation == spins.contexts[0].observation
    expert = run_episode(envs.make("babyai-goto-local"), load_policy("expert"), seed=0, loop_temperature=1.0)
    assert expert.success and not any(s.resampled for s in expert.steps)


def test_a_loop_temperature_that_is_no_temperature_is_refused():
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="--loop-temperature"):
            run_episode(envs.make("frozenlake-4x4"), Pacer(), seed=0, loop_temperature=bad)
