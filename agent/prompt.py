"""The one prompt format: contexts to chat messages, completions to (rationale, action).

The teacher's prompts, the student's training examples and the runtime's prompts all come
from this module; nothing else builds prompt text. Changing what it renders changes
``PROMPT_FORMAT``, which is stored in every trace file and every exported model, so a
student is never fed prompts of a format it was not trained on.

Two variants share one completion format (``Thought: ...`` / ``Action: ...``):

* ``full`` (LLM teachers): the env's full instructions as the system message, then the last
  ``FULL_WINDOW`` steps as chat turns (observation as user, ``Action: ...`` as assistant),
  then the current observation with the legal actions.
* ``compact`` (tiny students): the env's short instructions, and one user turn holding the
  current observation and the last ``COMPACT_WINDOW`` actions. Short prompts keep a
  from-scratch student fast to train and to run.

A model's variant is stored in its metadata (student config, GGUF key), never passed by a
caller from memory.
"""

from __future__ import annotations

import re
from typing import Any

from agent.types import Context

PROMPT_FORMAT = "agentkd-prompt-v1"
VARIANTS = ("full", "compact")
FULL_WINDOW = 6
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


def make_context(
    env: Any,
    observation: str,
    info: dict[str, Any],
    history: list[tuple[str, str]],
    variant: str,
) -> Context:
    """Build the context a policy sees from an env, its last observation and the history.

    Args:
        env: a ``TextEnv``.
        observation: the current observation text.
        info: the info dict returned with it (for ``legal_actions``).
        history: every (observation, action) pair of the episode so far, oldest first;
            the window is applied here.
        variant: ``"full"`` or ``"compact"``.
    """
    check_variant(variant)
    window = FULL_WINDOW if variant == "full" else COMPACT_WINDOW
    instructions = env.instructions if variant == "full" else env.compact_instructions
    return Context(
        env_id=env.env_id,
        instructions=instructions,
        history=list(history[-window:]) if window else [],
        observation=observation,
        legal_actions=list(info.get("legal_actions", [])),
        tools=getattr(env, "tool_schemas", None),
    )


def _current_turn(context: Context) -> str:
    legal = ", ".join(context.legal_actions)
    return f"{context.observation}\nLegal actions: {legal}" if legal else context.observation


def render_messages(context: Context, variant: str) -> list[dict[str, str]]:
    """The chat messages for ``context`` (system, [history turns], user)."""
    check_variant(variant)
    messages = [{"role": "system", "content": context.instructions}]
    if variant == "full":
        for obs, action in context.history:
            messages.append({"role": "user", "content": obs})
            messages.append({"role": "assistant", "content": f"Action: {action}"})
        messages.append({"role": "user", "content": _current_turn(context)})
    else:
        text = _current_turn(context)
        if context.history:
            text += "\nRecent actions: " + " | ".join(a for _, a in context.history)
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
