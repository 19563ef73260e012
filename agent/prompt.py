"""The one prompt format: contexts to chat messages, completions to (rationale, action).

The teacher's prompts, the student's training examples and the runtime's prompts all come
from this module; nothing else builds prompt text. Changing what it renders changes
``PROMPT_FORMAT``, which is stored in every trace file and every exported model, so a
student is never fed prompts of a format it was not trained on.

Two variants share one completion format (``Thought: ...`` / ``Action: ...``):

* ``full`` (LLM teachers, pretrained students): the env's full instructions as the system
  message, then the earlier steps as chat turns (the observation with the legal actions as
  user, the whole ``Thought: ... / Action: ...`` answer as assistant), then the current
  observation with the legal actions. Each prompt is the previous prompt, plus the answer
  the model wrote to it, plus the new observation, so a runtime that keeps its KV cache
  (``gguf:``) re-reads only the new turn. The window holds at most ``FULL_WINDOW`` turns
  and drops its oldest half at once when full (``history_start``), so that prefix breaks
  once every ``FULL_WINDOW // 2`` steps, not at every step.
* ``compact`` (tiny students): one user turn holding the current observation and, for envs
  whose observation does not say everything (``env.compact_history`` > 0), that many of
  the last actions. No instructions and no legal-actions line: both are the same in every
  prompt of an env, so for a student trained on the env's traces they carry nothing, and
  together they were a third of its prompt. Short prompts keep a from-scratch student fast
  to train and to run (a training step costs in proportion to its tokens).

A model's variant is stored in its metadata (student config, GGUF key), never passed by a
caller from memory.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from agent.types import Context, Turn

#: v3: full-variant history turns keep the thought and the legal actions, and the window
#: drops half its turns at once (prompts that extend the previous one; v2 re-read them).
PROMPT_FORMAT = "agentkd-prompt-v3"
#: Earlier formats that rendered a variant's prompts exactly as this one does: a model
#: trained on them in that variant reads this version's prompts unchanged, so it is kept.
#: (v2 -> v3 changed only the full variant; checked on the expert's states of every env.)
SAME_PROMPTS = {"compact": ("agentkd-prompt-v2",), "full": ()}
VARIANTS = ("full", "compact")
FULL_WINDOW = 6
#: The longest compact history an env may ask for (``env.compact_history``).
COMPACT_WINDOW = 4

# Special tokens of agentkd's own chat template (students trained from scratch).
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
END_TOKEN = "<|end|>"
EOS_TOKEN = "<|endoftext|>"
SPECIAL_TOKENS = (EOS_TOKEN, *ROLE_TOKENS.values(), END_TOKEN)

#: The Jinja form of ``chat_text``; stored in tokenizers and GGUF files. Tests check that
#: both render the same text.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

_ACTION_LINE = re.compile(r"^[ \t]*action[ \t]*:[ \t]*(.*)$", re.IGNORECASE | re.MULTILINE)
_THOUGHT_PREFIX = re.compile(r"^\s*thought\s*:\s*", re.IGNORECASE)


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"prompt variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    return variant


def check_model_format(prompt_format: str | None, what: str, variant: str = "full") -> None:
    """Refuse a model trained on another prompt format (``None``: a model without agentkd
    metadata, fed the ``full`` variant, is fine; so is a format of ``SAME_PROMPTS`` for the
    model's ``variant``).

    Raises:
        ValueError: naming ``what`` (the model), its format and this version's.
    """
    if prompt_format is None or prompt_format == PROMPT_FORMAT or prompt_format in SAME_PROMPTS.get(variant, ()):
        return
    raise ValueError(
        f"{what}: trained on prompt format {prompt_format!r} ({variant} variant), but this agentkd "
        f"renders {PROMPT_FORMAT!r}; re-collect its traces and re-train it with this version "
        "(agentkd collect, agentkd train)"
    )


def history_start(n: int, size: int) -> int:
    """Index of the oldest of ``n`` earlier steps that a window of at most ``size`` turns
    shows: 0 while they fit; past that, the oldest ``size // 2`` (at least 1) drop out at
    once, so the window holds between ``size - size // 2 + 1`` and ``size`` turns."""
    if n <= size:
        return 0
    drop = max(1, size // 2)
    return -(-(n - size) // drop) * drop


def make_context(
    env: Any,
    observation: str,
    info: dict[str, Any],
    history: list[Turn],
    variant: str,
) -> Context:
    """Build the context a policy sees from an env, its last observation and the history.

    Args:
        env: a ``TextEnv``.
        observation: the current observation text.
        info: the info dict returned with it (for ``legal_actions``).
        history: every earlier step of the episode (``Turn``), oldest first; the window is
            applied here (full: ``history_start``; compact: the last
            ``env.compact_history`` actions).
        variant: ``"full"`` or ``"compact"``.
    """
    check_variant(variant)
    if variant == "full":
        shown, instructions = list(history[history_start(len(history), FULL_WINDOW):]), env.instructions
    else:
        window = min(int(getattr(env, "compact_history", COMPACT_WINDOW)), COMPACT_WINDOW)
        shown, instructions = list(history[-window:]) if window else [], ""
    return Context(
        env_id=env.env_id,
        instructions=instructions,
        history=shown,
        observation=observation,
        legal_actions=list(info.get("legal_actions", [])),
        tools=getattr(env, "tool_schemas", None),
    )


def _user_turn(observation: str, legal_actions: Sequence[str]) -> str:
    legal = ", ".join(legal_actions)
    return f"{observation}\nLegal actions: {legal}" if legal else observation


def render_messages(context: Context, variant: str) -> list[dict[str, str]]:
    """The chat messages for ``context``: full: system, history turns, user; compact: user."""
    check_variant(variant)
    messages = [{"role": "system", "content": context.instructions}] if variant == "full" else []
    if variant == "full":
        # Every turn as it was when it was the newest, answer included: the prompt then
        # extends the previous one (see the module docstring).
        for turn in context.history:
            messages.append({"role": "user", "content": _user_turn(turn.observation, turn.legal_actions)})
            messages.append({"role": "assistant", "content": render_completion(turn.rationale, turn.action)})
        messages.append({"role": "user", "content": _user_turn(context.observation, context.legal_actions)})
    else:
        # The observation comes last, next to the answer: what the answer copies from it
        # (a mission, a map row) then sits at a fixed distance, the easiest copy to learn.
        text = context.observation
        if context.history:
            text = "Recent actions: " + " | ".join(t.action for t in context.history) + "\n" + text
        messages.append({"role": "user", "content": text})
    return messages


def render_completion(rationale: str, action: str) -> str:
    """The target text of one decision. Newlines in the rationale become spaces, so the
    ``Action:`` line is always the first line that starts with ``Action:``."""
    thought = " ".join(rationale.split())
    return f"Thought: {thought}\nAction: {action}"


def parse_completion(text: str) -> tuple[str, str | None]:
    """Split a completion into (rationale, action).

    The action is the rest of the first line that starts with ``Action:`` (case and
    surrounding whitespace are ignored); the rationale is everything before that line,
    without a leading ``Thought:``. A rationale may mention the word "Action" anywhere
    except at the start of a line. Returns ``(text, None)`` when there is no action line:
    an unparseable completion is a normal outcome, recorded by the caller.
    """
    m = _ACTION_LINE.search(text)
    if m is None:
        return _THOUGHT_PREFIX.sub("", text.strip()).strip(), None
    rationale = _THOUGHT_PREFIX.sub("", text[: m.start()].strip()).strip()
    action = m.group(1).strip()
    for stop in (END_TOKEN, EOS_TOKEN):
        action = action.split(stop, 1)[0].strip()
    return rationale, action


def chat_text(messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """agentkd's chat template applied in Python (same text as ``CHAT_TEMPLATE``)."""
    parts = [f"<|{m['role']}|>\n{m['content']}{END_TOKEN}\n" for m in messages]
    if add_generation_prompt:
        parts.append("<|assistant|>\n")
    return "".join(parts)


def completion_suffix() -> str:
    """What follows a completion in training text: the end-of-turn token."""
    return END_TOKEN
