"""The TextEnv contract: a Gymnasium env whose observations and actions are text.

Every world in agentkd (grid games, BabyAI, tool-use tasks) is a ``TextEnv``. The
teacher, the trace files, the student and the evaluation only ever see this interface:

* ``reset(*, seed, options) -> (obs, info)`` and ``step(action_text) -> (obs, reward,
  terminated, truncated, info)``, with ``spaces.Text`` for both spaces;
* ``info["legal_actions"]``: the exact action strings the env accepts now (for prompts and
  for building a grammar); ``info["invalid_action"]``: the last action could not be parsed
  or is not legal, and the world did not move; ``info["success"]`` once the episode ends;
* ``instructions``: the rules and the action vocabulary, the system part of an LLM's prompt
  (a tiny student's compact prompt has none); ``compact_history``: how many recent actions
  a compact prompt shows (0 where the observation alone says everything a policy needs);
* ``expert()``: a policy that solves the env and explains each decision in plain words.

Subclasses implement the ``_reset``/``_apply``/``_render`` hooks; this base class does the
bookkeeping that must be identical everywhere (action parsing, invalid actions, the step
limit, ``success``), so that no env can get the contract subtly wrong.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
from gymnasium import spaces

# Observations and actions are printable text. Tool tasks carry JSON, so the charset is
# the full printable ASCII range plus newline; lengths are generous upper bounds.
TEXT_CHARSET = frozenset(string.printable)
MAX_OBS_CHARS = 8192
MAX_ACTION_CHARS = 2048

_ACTION_PREFIX = re.compile(r"^\s*action\s*:\s*", re.IGNORECASE)
_QUOTES = "\"'`"


class InvalidAction(Exception):
    """Raised by ``TextEnv._apply`` when a parsed action turns out not to be allowed (a tool
    that fails on its arguments, say). The world must not have moved; the message (one line)
    is shown in the observation and the step is recorded as invalid."""


@dataclass(frozen=True)
class ExpertStep:
    """One decision of an env's expert: the action and the reason for it."""

    action: str
    rationale: str


class Expert(Protocol):
    """A planner bound to one env instance; it reads the env's current state."""

    def act(self) -> ExpertStep:
        """Return the expert's action for the env's current state."""
        ...


def normalize_action_text(text: str) -> str:
    """Strip what a model or a person commonly wraps around an action.

    Forgiving about case, surrounding whitespace, a leading ``Action:`` and one pair of
    surrounding quotes; it changes nothing else (inner whitespace is collapsed to one space
    so that ``"go  forward"`` still names ``go forward``).

    Args:
        text: the raw action text.

    Returns:
        The normalised, lower-cased text. Discrete envs compare it with their vocabulary.
    """
    s = _ACTION_PREFIX.sub("", text.strip()).strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in _QUOTES:
        s = s[1:-1].strip()
    return " ".join(s.split()).lower()


class TextEnv(gym.Env[str, str]):
    """Base class of every agentkd environment (see the module docstring for the contract).

    Subclasses set ``env_id``, ``instructions``, ``compact_history`` and
    ``max_steps`` and implement ``_reset``, ``_apply``, ``_render``, ``_legal_actions``,
    ``_success`` and ``expert``. Discrete envs set ``actions`` (their vocabulary) and get
    parsing for free; envs with structured actions (tool calls) override ``parse_action``.
    """

    metadata = {"render_modes": ["ansi"]}

    env_id: str = ""
    instructions: str = ""
    #: Recent actions shown in a compact prompt; 0 when the observation is Markov.
    compact_history: int = 4
    max_steps: int = 100
    #: The action vocabulary of a discrete env, in a fixed order.
    actions: tuple[str, ...] = ()

    def __init__(self, render_mode: str | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode: expected one of {self.metadata['render_modes']} or None, "
                f"got {render_mode!r}"
            )
        self.render_mode = render_mode
        self.observation_space = spaces.Text(
            max_length=MAX_OBS_CHARS, min_length=0, charset=TEXT_CHARSET
        )
        self.action_space = spaces.Text(
            max_length=MAX_ACTION_CHARS, min_length=0, charset=TEXT_CHARSET
        )
        self._t = 0
        self._done = False
        self._last_obs = ""

    # ----------------------------------------------------------------- hooks
    def _reset(self, seed: int | None, options: dict[str, Any] | None) -> None:
        """Build a fresh world for this seed (use ``self.np_random`` for randomness)."""
        raise NotImplementedError

    def _apply(self, action: str) -> tuple[float, bool, str]:
        """Apply a parsed, legal action. Returns (reward, terminated, feedback text)."""
        raise NotImplementedError

    def _render(self) -> str:
        """The observation text of the current state (without step feedback)."""
        raise NotImplementedError

    def _success(self) -> bool:
        """Whether the task is solved in the current state."""
        raise NotImplementedError

    def _legal_actions(self) -> list[str]:
        """The action strings accepted now; discrete envs accept their whole vocabulary."""
        return list(self.actions)

    def expert(self) -> Expert:
        """A policy that solves this env, bound to this instance."""
        raise NotImplementedError

    def invented_names(self) -> list[str]:
        """The proper names this episode made up (people, places, products), as they appear
        in observations and actions. A trainer may rename them consistently (``agentkd train
        --rename-entities``) so that a student learns to copy names rather than memorise
        them. Envs without made-up names return none (the default)."""
        return []

    # ------------------------------------------------------------- parsing
    def parse_action(self, text: str) -> str | None:
        """Map raw action text to a canonical legal action, or None if it is not one."""
        s = normalize_action_text(text)
        return s if s in self._legal_actions() else None

    # ------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        self._done = False
        self._reset(seed, options)
        self._last_obs = self._render()
        return self._last_obs, self._info(invalid=False)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError(f"{self.env_id}: step() called after the episode ended; call reset()")
        if not isinstance(action, str):
            raise TypeError(f"{self.env_id}: action must be str, got {type(action).__name__}")
        self._t += 1
        parsed = self.parse_action(action)
        reward, terminated, invalid = 0.0, False, True
        if parsed is None:
            obs = self._render() + "\n" + self.invalid_feedback(action)
        else:
            try:
                reward, terminated, feedback = self._apply(parsed)
                invalid = False
            except InvalidAction as e:
                feedback = str(e)
            obs = self._render()
            if feedback:
                obs = obs + "\n" + feedback
        truncated = not terminated and self._t >= self.max_steps
        self._done = terminated or truncated
        self._last_obs = obs
        return obs, float(reward), terminated, truncated, self._info(invalid=invalid)

    def invalid_feedback(self, action: str) -> str:
        """One line saying why ``action`` was refused and what is accepted."""
        shown = action.strip().replace("\n", " ")
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return (
            f"Invalid action {shown!r}: nothing happened. "
            f"Legal actions: {', '.join(self._legal_actions())}."
        )

    def _info(self, *, invalid: bool) -> dict[str, Any]:
        info: dict[str, Any] = {
            "legal_actions": self._legal_actions(),
            "invalid_action": invalid,
            "step": self._t,
        }
        if self._done:
            info["success"] = bool(self._success())
        return info

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self._last_obs
        return None

    @property
    def elapsed_steps(self) -> int:
        return self._t
