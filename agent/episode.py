"""One episode of any policy in any TextEnv: the loop every command shares.

    import envs
    from agent.episode import run_episode
    from agent.policies import load_policy

    episode = run_episode(envs.make("frozenlake-4x4"), load_policy("expert"), seed=0)

``env.reset(seed)``, then ``policy.reset(env)``, then until the env ends the episode: the
context is built by ``agent.prompt.make_context`` with the policy's own prompt variant,
the policy decides, and the decision's action goes to ``env.step``. Unparseable or illegal
output is the env's business (an invalid step, recorded); a backend that fails
(``Decision.error``, or an exception from ``act``) stops the episode, which is returned as
failed with the error. Model output never crashes the loop.

Loop escape (``loop_temperature`` > 0): a greedy policy that meets a situation it has
already acted in this episode (the same observation after the same recent actions: what a
compact prompt shows) answers as it did before, and in a deterministic env goes round the
same cycle until the step limit. On such a repeat the decision is sampled instead, at that
temperature with a seed of its own (``Sampling.seed`` plus the repeat's count, so a run is
reproducible), and the step is marked ``resampled``. Policies without sampling settings
(the expert) are never resampled.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from agent.prompt import PROMPT_FORMAT, make_context
from agent.types import Context, Decision, Episode, Policy, Step, Turn

log = logging.getLogger(__name__)

#: Called after every step with (step number from 1, the observation decided on, the
#: decision, the info returned by ``env.step``).
OnStep = Callable[[int, str, Decision, dict[str, Any]], None]


def _sampling_of(policy: Any) -> dict[str, Any]:
    sampling = getattr(policy, "sampling", None)
    if sampling is not None and dataclasses.is_dataclass(sampling):
        return dataclasses.asdict(sampling)
    return {}


def situation(compact: Context) -> tuple[Any, ...]:
    """What a compact prompt shows of a state (``compact``: its compact-variant context):
    the observation, the legal actions and the env's ``compact_history`` last actions (the
    key of loop escape)."""
    return compact.observation, tuple(compact.legal_actions), tuple(t.action for t in compact.history)


def check_loop_temperature(value: float) -> float:
    """``value`` if it is a temperature loop escape can use (0: off), else a ValueError."""
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"--loop-temperature: expected a temperature >= 0 (0: off), got {value}")
    return value


def _act_resampled(policy: Any, context: Any, temperature: float, repeat: int) -> Decision:
    """``_act`` with the policy's sampling swapped for ``temperature`` and a seed of this
    repeat's own, then restored."""
    before = policy.sampling
    policy.sampling = dataclasses.replace(before, temperature=max(temperature, before.temperature),
                                          seed=before.seed + repeat)
    try:
        return _act(policy, context)
    finally:
        policy.sampling = before


def _act(policy: Policy, context: Any) -> Decision:
    """``policy.act`` with a backend exception turned into a Decision error."""
    try:
        return policy.act(context)
    except Exception as e:  # noqa: BLE001 - a failing backend must not kill a long run
        log.exception("%s: act() raised; the episode is recorded as failed", policy.spec)
        return Decision(rationale="", action="", error=f"{type(e).__name__}: {e}")


def run_episode(
    env: Any,
    policy: Policy,
    seed: int,
    *,
    options: dict[str, Any] | None = None,
    on_step: OnStep | None = None,
    env_options: dict[str, Any] | None = None,
    loop_temperature: float = 0.0,
) -> Episode:
    """Play one episode of ``env`` with ``policy`` from ``seed``.

    Args:
        env: a ``TextEnv`` (anything with its reset/step/instructions contract).
        policy: any ``Policy``.
        seed: the reset seed (train seeds even, test seeds odd).
        options: reset options passed to ``env.reset``.
        on_step: called after every step (for progress displays).
        env_options: the keyword options ``env`` was made with (``envs.make(id, **opts)``),
            recorded so the episode's prompts can be rebuilt from the trace.
        loop_temperature: > 0: on a situation already met this episode, sample the
            decision at this temperature (module docstring, loop escape); 0: off.

    Returns:
        The finished Episode: teacher = ``policy.spec``, prompt_format =
        ``agent.prompt.PROMPT_FORMAT``, the policy's sampling settings, per-step records
        and timings (``total_s``, ``policy_s``, ``env_s``).
    """
    t_start = time.perf_counter()
    obs, info = env.reset(seed=seed, options=options)
    policy.reset(env)
    episode = Episode(
        env_id=env.env_id, seed=seed, teacher=policy.spec, prompt_format=PROMPT_FORMAT,
        env_options=dict(env_options or {}), sampling=_sampling_of(policy),
    )
    history: list[Turn] = []
    policy_s = env_s = 0.0
    terminated = truncated = False
    sampled = dataclasses.is_dataclass(getattr(policy, "sampling", None))
    escape = check_loop_temperature(loop_temperature) > 0 and sampled
    met: set[tuple[Any, ...]] = set()
    repeats = 0
    while not (terminated or truncated):
        context = make_context(env, obs, info, history, policy.prompt_variant)
        resampled = False
        if escape:
            compact = context if policy.prompt_variant == "compact" else \
                make_context(env, obs, info, history, "compact")
            key = situation(compact)
            resampled = key in met
            met.add(key)
        t0 = time.perf_counter()
        if resampled:
            repeats += 1
            decision = _act_resampled(policy, context, loop_temperature, repeats)
        else:
            decision = _act(policy, context)
        policy_s += time.perf_counter() - t0
        if decision.error:
            episode.error = decision.error
            log.warning("%s seed %d step %d: %s", episode.env_id, seed, len(episode.steps) + 1,
                        decision.error)
            break
        t0 = time.perf_counter()
        next_obs, reward, terminated, truncated, info = env.step(decision.action)
        env_s += time.perf_counter() - t0
        episode.steps.append(Step(
            observation=obs,
            legal_actions=list(context.legal_actions),
            rationale=decision.rationale,
            action=decision.action,
            raw=decision.raw,
            valid=not info.get("invalid_action", False),
            reward=float(reward),
            latency_s=decision.latency_s,
            prompt_tokens=decision.prompt_tokens,
            completion_tokens=decision.completion_tokens,
            top_logprobs=decision.top_logprobs,
            resampled=resampled,
        ))
        episode.total_return += float(reward)
        history.append(context.turn(decision))
        if on_step is not None:
            on_step(len(episode.steps), obs, decision, info)
        obs = next_obs
    episode.terminated, episode.truncated = bool(terminated), bool(truncated)
    episode.success = bool(info.get("success", False)) and episode.error is None
    episode.timings = {"total_s": time.perf_counter() - t_start, "policy_s": policy_s, "env_s": env_s}
    return episode
