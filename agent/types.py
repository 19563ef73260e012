"""Records that flow between envs, policies, trace files and the evaluation.

These are the contracts of DESIGN.md: a ``Context`` is what a policy knows when it decides,
a ``Decision`` is what it answers, ``Step`` and ``Episode`` are what a run leaves behind
(and what one line of a trace file holds).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

#: Top-k log-probabilities of one generated token: token text -> log-probability.
TopK = dict[str, float]


class Turn(NamedTuple):
    """One earlier step as later prompts show it: what the policy read (the observation and
    the legal actions then) and what it answered (rationale and action)."""

    observation: str
    action: str
    rationale: str = ""
    legal_actions: tuple[str, ...] = ()


@dataclass
class Context:
    """What a policy knows when it decides.

    Attributes:
        env_id: the env being played.
        instructions: the system text (full or compact variant, chosen by the policy).
        history: the earlier steps a prompt shows (``Turn``), oldest first.
        observation: the current observation text.
        legal_actions: the exact strings the env accepts now.
        tools: OpenAI-style function schemas for tool-use envs, else None.
    """

    env_id: str
    instructions: str
    history: list[Turn]
    observation: str
    legal_actions: list[str]
    tools: list[dict[str, Any]] | None = None

    def turn(self, decision: Decision) -> Turn:
        """This context and ``decision``, its answer, as the history of later prompts."""
        return Turn(self.observation, decision.action, decision.rationale, tuple(self.legal_actions))


@dataclass
class Decision:
    """A policy's answer to a context.

    ``action`` is the text sent to the env ("" when the completion could not be parsed;
    the env then records an invalid action). ``error`` is set when the backend itself
    failed (for example an API that kept answering 500): the episode is then stopped and
    recorded as failed, never crashed.
    """

    rationale: str
    action: str
    raw: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    top_logprobs: list[TopK] | None = None
    error: str | None = None


@dataclass(frozen=True)
class Sampling:
    """Sampling settings of an LLM policy; recorded in every episode they produced."""

    temperature: float = 0.0
    max_tokens: int = 160
    seed: int = 0
    #: How many top log-probabilities to keep per generated token (0: none).
    top_logprobs: int = 0
    #: Cap on the rationale's length in characters (the grammar enforces it for gguf:).
    max_rationale_chars: int = 400


@runtime_checkable
class Policy(Protocol):
    """Anything that decides: ``act(context) -> Decision``.

    ``spec`` is the string the policy was loaded from (recorded in traces and reports);
    ``prompt_variant`` is ``"full"`` or ``"compact"`` and comes from the model's own
    metadata, so a caller never has to remember which one a model was trained on.
    """

    spec: str
    prompt_variant: str

    def reset(self, env: Any) -> None:
        """Called once per episode, after ``env.reset`` and before the first ``act``
        (the expert binds to the env here; a llama.cpp policy may keep its KV cache)."""
        ...

    def act(self, context: Context) -> Decision: ...


@dataclass
class Step:
    """One step of an episode as stored in a trace file."""

    observation: str
    legal_actions: list[str]
    rationale: str
    action: str
    raw: str
    valid: bool
    reward: float
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    top_logprobs: list[TopK] | None = None
    #: Decided by loop escape: sampled because the situation had been met before
    #: (``agent.episode``).
    resampled: bool = False

    def turn(self, *, rationale: bool = True) -> Turn:
        """This step as the history of a later prompt (``rationale=False``: the answer of an
        action-only policy, which writes no thought)."""
        return Turn(self.observation, self.action, self.rationale if rationale else "",
                    tuple(self.legal_actions))


@dataclass
class Episode:
    """One finished episode: one line of a trace file.

    ``history`` for the prompt of step t is rebuilt from ``steps[:t]`` (``Step.turn``), so a
    trace holds everything needed to re-render every prompt.
    """

    env_id: str
    seed: int
    teacher: str
    prompt_format: str
    steps: list[Step] = field(default_factory=list)
    total_return: float = 0.0
    success: bool = False
    terminated: bool = False
    truncated: bool = False
    error: str | None = None
    env_options: dict[str, Any] = field(default_factory=dict)
    sampling: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_steps(self) -> int:
        return len(self.steps)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["n_steps"] = self.n_steps
        return d
