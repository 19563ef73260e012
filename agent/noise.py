"""Noise injection (DART) for ``agentkd collect --noise P``: the teacher's episodes, pushed
off its path, with the teacher's label on every state.

    agentkd collect --teacher expert --env babyai-goto-local --episodes 1500 --noise 0.2 \\
        --noise-actions "turn left,turn right,go forward" --out noisy.jsonl

At each step, with probability P, a random action (of ``--noise-actions``, or any legal
one) is executed instead of the teacher's, and the teacher labels every state the episode
visits (``distill.relabel.rollout``, as ``agentkd dagger`` does with a student). A student
trained on plain teacher episodes has never seen a state off the teacher's path; these
lines show it such states and the teacher's way back, without a student in the loop.
``--out`` holds one line per labelled state (the executed steps before it as history,
``valid=False``; the layout of ``agentkd dagger``'s labels), whatever the episode's outcome
(the label is the teacher's either way), and the executed episodes go to
``OUT.executed.jsonl``: a seed is done once its executed episode is there, and a resume
drops the labels of a seed that is not.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import zlib
from pathlib import Path
from typing import Any

from agent.types import Decision, Episode
from distill.traces import iter_appended

log = logging.getLogger(__name__)


def executed_path(out: str | Path) -> Path:
    """The executed episodes of a ``--noise`` collection beside its labels ``out``."""
    return Path(str(out) + ".executed.jsonl")


def parse_actions(text: str) -> list[str]:
    """``--noise-actions`` as a list (empty: any legal action)."""
    return [a.strip() for a in text.split(",") if a.strip()]


def check_actions(actions: list[str], env_ids: list[str], split: str, seed_start: int) -> None:
    """Every noise action must be legal in each env's first state (a typo would otherwise
    leave the noise nothing to pick but the fallback)."""
    import envs

    for env_id in env_ids:
        env = envs.make(env_id)
        _, info = env.reset(seed=envs.seeds(env_id, split, 1, seed_start)[0])
        legal = list(info.get("legal_actions", []))
        missing = [a for a in actions if a not in legal]
        if missing:
            raise ValueError(f"--noise-actions: {', '.join(map(repr, missing))} not legal in {env_id} "
                             f"(its legal actions: {', '.join(legal)})")


class NoisePolicy:
    """The noise: a uniformly random action of ``actions`` that is legal in the state (any
    legal action where none is), from its own seeded generator."""

    spec = "random"
    prompt_variant = "full"

    def __init__(self, rng: random.Random, actions: list[str]) -> None:
        self.rng, self.actions = rng, actions

    def reset(self, env: Any) -> None:
        pass

    def act(self, context: Any) -> Decision:
        legal = list(context.legal_actions)
        choices = [a for a in self.actions if a in legal] or legal
        action = self.rng.choice(choices)
        return Decision(rationale="", action=action, raw=f"Action: {action}")


def runner(teacher: str, noise: float, seed: int, actions: list[str], get_policy: Any, get_env: Any) -> Any:
    """``run(env_id, seed) -> Rollout``: the teacher's action executed with probability
    1 - ``noise`` (``distill.relabel.rollout``'s beta), every state labelled by it; each
    thread has its own ``Relabeler`` around its own teacher instance (``get_policy()``)."""
    from distill.relabel import Relabeler, episode_rng, rollout

    local = threading.local()

    def run(env_id: str, env_seed: int) -> Any:
        if not hasattr(local, "relabeler"):
            local.relabeler = Relabeler(teacher, lambda _spec: get_policy())
        # Seeded per (seed, env, episode), so a rerun or another --concurrency repeats it.
        rng = random.Random(zlib.crc32(f"noise:{seed}:{env_id}:{env_seed}".encode()))
        r = rollout(get_env(env_id), env_seed, local.relabeler, NoisePolicy(rng, actions), 1.0 - noise,
                    episode_rng(seed, 0, env_id, env_seed))
        r.executed = dataclasses.replace(r.executed, teacher=f"noise({noise:g}):{teacher}")
        for line in r.labelled:  # the teacher's tokens, paid in every state, for the summary
            step, label = r.executed.steps[int(line.timings["dagger_step"])], line.steps[-1]
            step.prompt_tokens, step.completion_tokens = label.prompt_tokens, label.completion_tokens
        return r

    return run


def on_disk(out: str | Path) -> tuple[dict[tuple[str, int], tuple[Episode, bool]], dict[tuple[str, int], int]]:
    """A ``--noise`` collection on disk: (env, seed) -> (its executed episode, whether it is
    done) and the number of labelled lines of each done seed. Labels of a seed whose executed
    episode is not on disk (a kill between the two writes) or failed are dropped here, so a
    resume writes them once."""
    from distill.traces import rewrite_traces

    found: dict[tuple[str, int], tuple[Episode, bool]] = {}
    for ep in iter_appended(executed_path(out)):  # a later line (a retried episode) replaces an earlier one
        found[(ep.env_id, ep.seed)] = (ep, ep.error is None)
    lines: dict[tuple[str, int], int] = {}
    if Path(out).exists():
        labels = list(iter_appended(out))
        keep = [e for e in labels if found.get((e.env_id, e.seed), (None, False))[1]]
        if len(keep) < len(labels):
            log.warning("%s: dropping %d labelled states of unfinished episodes", out, len(labels) - len(keep))
            rewrite_traces(out, keep)
        for e in keep:
            lines[(e.env_id, e.seed)] = lines.get((e.env_id, e.seed), 0) + 1
    return found, lines
