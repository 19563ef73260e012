"""GBNF grammars that let a local model emit only a well-formed, legal decision.

    from agent.grammar import grammar_for
    gbnf = grammar_for(context, max_rationale_chars=400)

The completion format is agent.prompt's: ``Thought: <rationale>\\nAction: <action>``. The
rationale is free text on one line, capped in length; the action is one of the env's legal
action strings, or, for a tool-use env (``context.tools`` set), one line of JSON that is a
call of one of the tools with arguments matching its JSON schema
(``{"tool": NAME, "args": {...}}``) or a final answer (``{"answer": VALUE}``). llama.cpp
allows the end-of-turn token only once the grammar is complete, so generation stops right
after the action.

A string or number argument whose schema carries ``"x-copy": true`` (``COPY_KEY``: a value
the question or a tool result gives, such as the entity of ``lookup`` or the date of
``date_calc``) is a copy: with ``copy_args`` on, the grammar lets it be only a span of up to
``MAX_COPY_WORDS`` whole words of the episode's text (``copy_spans``), a number only one the
text spells, so a model that starts a name or a number right cannot drift into another.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agent.types import Context

#: Cap on any JSON string inside a tool call (bounded work for anything a model requests).
MAX_JSON_STRING = 200
#: Cap on a free-text action (an env that gives no legal-action list and no tools).
MAX_FREE_ACTION = 200
#: JSON-schema key of a tool argument copied from the episode's text (see the module docstring).
COPY_KEY = "x-copy"
#: Longest copied span, in words.
MAX_COPY_WORDS = 4

# A rationale character: anything but a line break. "<|" is excluded so that the text of a
# chat control token (whose piece is "<|user|>" etc.) cannot be sampled inside a thought.
_THOUGHT_CHAR = 'thought-char ::= [^\\x00-\\x1F\\x7F<] | "<" [^|\\x00-\\x1F\\x7F<]'


def gbnf_literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def grammar_for(context: Context, max_rationale_chars: int, *, action_only: bool = False,
                copy_args: bool = True) -> str:
    """The GBNF grammar of one decision in ``context``.

    Args:
        context: the decision's context (its ``legal_actions`` and ``tools``).
        max_rationale_chars: cap on the rationale's length (in printable characters; a
            ``<`` and the character after it count as one).
        action_only: the grammar of the action alone (what follows ``Action: ``), used to
            finish a completion whose token budget ran out inside the rationale.
        copy_args: tool arguments marked ``x-copy`` may only be spans of the episode's text
            (``context_spans``); off: anything their schema allows.

    Returns:
        GBNF text whose root rule is the whole completion (or the action).
    """
    if max_rationale_chars < 0:
        raise ValueError(f"max_rationale_chars: expected >= 0, got {max_rationale_chars}")
    if context.tools:
        action_rules = tool_action_rules(context.tools, context.legal_actions,
                                         context_spans(context) if copy_args else None)
    elif context.legal_actions:
        alts = " | ".join(gbnf_literal(a) for a in dict.fromkeys(context.legal_actions))
        action_rules = f"action ::= {alts}"
    else:
        action_rules = f"action ::= [^\\n\\r]{{1,{MAX_FREE_ACTION}}}"
    if action_only:
        return "root ::= action\n" + action_rules + "\n"
    thought = f"thought-char{{0,{max_rationale_chars}}}" if max_rationale_chars else '""'
    return "\n".join([
        f'root ::= "Thought: " thought "\\nAction: " action',
        f"thought ::= {thought}",
        _THOUGHT_CHAR,
        action_rules,
    ]) + "\n"


_THOUGHT_RE = re.compile(r"(?:[^\x00-\x1f\x7f<]|<[^|\x00-\x1f\x7f<])*")
_FREE_ACTION_RE = re.compile(r"[^\n\r]{1,%d}" % MAX_FREE_ACTION)


def in_grammar(completion: str, context: Context, max_rationale_chars: int, *, at_end_token: bool) -> bool | None:
    """Whether a grammar-constrained greedy decoder would have written ``completion`` too,
    given that an unconstrained one wrote it (each of its tokens was its argmax).

    True when ``completion`` is a whole sentence of ``grammar_for(context, ...)`` (then every
    prefix was allowed, so every argmax was too) and its stop was allowed: the end-of-turn
    token (``at_end_token``), or a line break after an action that no legal action extends
    (then the constrained decoder's only choice was end-of-turn). None where this is not
    checked here: tool-use contexts, whose actions are JSON."""
    if context.tools:
        return None
    head, sep, action = completion.partition("\nAction: ")
    if not sep or not head.startswith("Thought: "):
        return False
    thought = head[len("Thought: "):]
    if not _THOUGHT_RE.fullmatch(thought) or len(thought) - thought.count("<") > max_rationale_chars:
        return False
    if context.legal_actions:
        legal = set(context.legal_actions)
        extendable = any(a != action and a.startswith(action) for a in legal)
        return action in legal and (at_end_token or not extendable)
    return bool(_FREE_ACTION_RE.fullmatch(action)) and (at_end_token or len(action) == MAX_FREE_ACTION)


_SPAN_BREAK = re.compile(r"->|[\n,;:?!()\[\]{}\"=<>|]|\.(?=\s|$)")


def copy_spans(text: str, max_words: int = MAX_COPY_WORDS) -> list[str]:
    """Every run of 1 to ``max_words`` whole words of ``text`` that no punctuation breaks
    (line breaks, ``,;:?!()[]{}"=<>|``, ``->``, a sentence's full stop), in first-seen order;
    a word's possessive ``'s`` is dropped as well as kept.

    >>> copy_spans("Where does Rena Findor's sister live?", 2)[4:7]
    ['Rena', "Rena Findor's", 'Rena Findor']
    """
    spans: dict[str, None] = {}
    for segment in _SPAN_BREAK.split(text):
        words = segment.split()
        for i in range(len(words)):
            for j in range(i + 1, min(i + max_words, len(words)) + 1):
                span = " ".join(words[i:j])
                spans[span] = None
                if span.endswith("'s") and len(span) > 2:
                    spans[span[:-2]] = None
    return [s for s in spans if len(s) <= MAX_JSON_STRING]


def copy_source(context: Context) -> str | None:
    """The episode's text a copied argument comes from: the earlier observations and the
    current one. None when no tool argument is marked (nothing to copy)."""
    if not context.tools or not any(_copy_marked(t) for t in context.tools):
        return None
    seen = dict.fromkeys(t.observation for t in context.history)
    seen[context.observation] = None
    return "\n".join(seen)


def context_spans(context: Context) -> list[str] | None:
    """The spans (``copy_spans``) of ``copy_source(context)``; None when nothing is marked."""
    text = copy_source(context)
    return None if text is None else copy_spans(text)


def _copy_marked(schema: Any) -> bool:
    if isinstance(schema, dict):
        return schema.get(COPY_KEY) is True or any(_copy_marked(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_copy_marked(v) for v in schema)
    return False


def strip_copy_marks(schema: Any) -> Any:
    """``schema`` without its ``x-copy`` keys (for servers that take the schema itself)."""
    if isinstance(schema, dict):
        return {k: strip_copy_marks(v) for k, v in schema.items() if k != COPY_KEY}
    if isinstance(schema, list):
        return [strip_copy_marks(v) for v in schema]
    return schema


def _number(text: str, integer: bool) -> int | float | None:
    """``text`` as the JSON number it spells exactly (``174``, ``11.8``), else None."""
    try:
        value: int | float = int(text) if integer else float(text)
    except ValueError:
        return None
    if isinstance(value, float) and value.is_integer() and json.dumps(int(value)) == text:
        value = int(value)
    return value if json.dumps(value) == text else None


def _copy_choices(schema: dict[str, Any], spans: list[str]) -> list[Any]:
    """What an ``x-copy`` argument of ``schema``'s type may be, out of ``spans``."""
    kind = schema.get("type")
    if "enum" in schema or "const" in schema:  # already a closed set: the copy adds nothing
        return []
    if kind == "string":
        limit = schema.get("maxLength", MAX_JSON_STRING)
        return [s for s in spans if len(s) <= limit]
    if kind in ("number", "integer"):
        lo, hi = schema.get("minimum", float("-inf")), schema.get("maximum", float("inf"))
        found = (_number(s, kind == "integer") for s in spans)
        return list(dict.fromkeys(v for v in found if v is not None and lo <= v <= hi))
    return []


def _copies(schema: Any, spans: list[str] | None) -> Any:
    """``schema`` with each ``x-copy`` string or number restricted to ``spans`` (none, or
    none of the argument's type: anything its schema allows)."""
    if isinstance(schema, dict):
        out = {k: _copies(v, spans) for k, v in schema.items() if k != COPY_KEY}
        choices = _copy_choices(out, spans) if schema.get(COPY_KEY) is True and spans else []
        if choices:
            return {"type": "string", "enum": choices} if out.get("type") == "string" else {"enum": choices}
        return out
    if isinstance(schema, list):
        return [_copies(v, spans) for v in schema]
    return schema


def action_schema(tools: list[dict[str, Any]], legal_actions: list[str] | None = None,
                  spans: list[str] | None = None) -> dict[str, Any]:
    """A JSON schema of one tool-env action: a call of one of ``tools`` or a final answer.

    Args:
        tools: OpenAI function-tool dicts (``{"type": "function", "function": {...}}``).
        legal_actions: when given and non-empty, only tools named in it are offered, and
            the answer only if ``"answer"`` is in it.
        spans: what an ``x-copy`` argument may be (``context_spans``); None or empty:
            anything its schema allows (the mark is dropped).
    """
    legal = set(legal_actions or [])
    alternatives: list[dict[str, Any]] = []
    defs: dict[str, Any] = {}
    for tool in tools:
        fn = tool.get("function", tool)
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"tool schema: expected a function with a name, got {tool!r}")
        if legal and name not in legal:
            continue
        params = _bounded(_copies(fn.get("parameters") or {"type": "object", "properties": {}}, spans))
        defs.update(params.pop("$defs", {}))
        alternatives.append({
            "type": "object",
            "properties": {"tool": {"const": name}, "args": params},
            "required": ["tool", "args"],
            "additionalProperties": False,
        })
    if not legal or "answer" in legal:
        alternatives.append({
            "type": "object",
            "properties": {"answer": {"anyOf": [
                {"type": "number"}, {"type": "string", "maxLength": MAX_JSON_STRING},
            ]}},
            "required": ["answer"],
            "additionalProperties": False,
        })
    if not alternatives:
        raise ValueError(
            f"tool action schema: no tool of {[t.get('function', t).get('name') for t in tools]} "
            f"is among the legal actions {sorted(legal)}"
        )
    schema: dict[str, Any] = {"oneOf": alternatives}
    if defs:
        schema["$defs"] = _bounded(defs)
    return schema


def tool_action_rules(tools: list[dict[str, Any]], legal_actions: list[str] | None = None,
                      spans: list[str] | None = None) -> str:
    """GBNF rules (root renamed ``action``) for one line of tool-call / answer JSON."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    gbnf = json_schema_to_gbnf(json.dumps(action_schema(tools, legal_actions, spans)),
                               prop_order=["tool", "args", "answer"])
    lines = []
    for line in gbnf.splitlines():
        if line.startswith("root ::="):
            line = "action ::=" + line[len("root ::="):]
        elif line.startswith("char ::="):
            # JSON strings stay on the action's line: no raw control characters.
            line = line.replace('[^"\\\\]', '[^"\\\\\\x00-\\x1F\\x7F]')
        lines.append(line)
    return "\n".join(lines)


def _bounded(schema: Any) -> Any:
    """Close objects (no undeclared keys) and cap string lengths, recursively."""
    if isinstance(schema, dict):
        out = {k: _bounded(v) for k, v in schema.items()}
        if out.get("type") == "object" and "additionalProperties" not in out:
            out["additionalProperties"] = False
        if out.get("type") == "string" and "maxLength" not in out and "enum" not in out:
            out["maxLength"] = MAX_JSON_STRING
        return out
    if isinstance(schema, list):
        return [_bounded(v) for v in schema]
    return schema
