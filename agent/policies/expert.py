"""The ``expert`` policy: the env's own planner, as a teacher that explains itself.

    from agent.policies import load_policy
    policy = load_policy("expert")

Each env's ``expert()`` reads the env's current state, so the policy binds to the env in
``reset`` (once per episode) and ignores the context's text when it acts. Its completion is
rendered with ``agent.prompt.render_completion``, exactly what a student is trained on.
"""

from __future__ import annotations

import time
from typing import Any

from agent.prompt import render_completion
from agent.types import Context, Decision


class ExpertPolicy:
    """A policy that plays an env's ``expert()`` (see the module docstring)."""

    spec = "expert"
    #: The expert does not read prompts; traces it leaves render with the full variant.
    prompt_variant = "full"

    def __init__(self) -> None:
        self._expert: Any = None
        self._env_id = ""

    def reset(self, env: Any) -> None:
        """Bind to ``env``'s expert for this episode (call after ``env.reset``)."""
        self._expert = env.expert()
        self._env_id = getattr(env, "env_id", "")

    def act(self, context: Context) -> Decision:
        if self._expert is None:
            raise RuntimeError("ExpertPolicy.act: call reset(env) first (the expert reads the env's state)")
        if context.env_id and self._env_id and context.env_id != self._env_id:
            raise RuntimeError(
                f"ExpertPolicy.act: bound to env {self._env_id!r}, got a context of {context.env_id!r}; "
                "call reset(env) for each episode"
            )
        t0 = time.perf_counter()
        step = self._expert.act()
        return Decision(
            rationale=step.rationale,
            action=step.action,
            raw=render_completion(step.rationale, step.action),
            latency_s=time.perf_counter() - t0,
        )
