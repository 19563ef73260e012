"""Tool-use actions: parsing one line of JSON into a canonical call or answer, and grading
answers.

An action is ONE JSON object, either a tool call ``{"tool": NAME, "args": {...}}`` or a
final answer ``{"answer": VALUE}`` (a number or a string). Parsing forgives what models
wrap around it (a leading ``Action:``, whitespace, a Markdown code fence) and nothing else.

The canonical text of an action (what ``parse_action`` returns, what the expert emits and
what a trace records as the env's view of the action) is ``json.dumps`` with the default
separators of this fixed layout:

* a call: ``{"tool": NAME, "args": {...}}``, args in the tool schema's property order,
  only the args that were given, values as validated by the schema, and a whole-valued
  float written as an integer (``170`` rather than ``170.0``);
* an answer: ``{"answer": VALUE}``.

Answers are graded by ``answers_match``: a number is right when it is within
``ABS_TOLERANCE`` (0.01) or within ``REL_TOLERANCE`` (1e-4, i.e. 0.01 %) of the true
value; a string is right when it equals the truth after normalisation (case, whitespace
and punctuation ignored).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from langchain_core.tools import BaseTool
from pydantic import ValidationError

from envs.tools.calculator import parse_number

ABS_TOLERANCE = 0.01
REL_TOLERANCE = 1e-4
MAX_ANSWER_CHARS = 200
_PREFIX = re.compile(r"^\s*action\s*:\s*", re.IGNORECASE)
_FENCE = re.compile(r"^```[a-zA-Z]*\s*(.*?)\s*```$", re.DOTALL)
_PUNCT = re.compile(r"[^\w\s]")


@dataclass(frozen=True)
class ParsedAction:
    """The result of parsing: ``text`` is the canonical action, or None with ``error``
    saying in one line why the action was refused."""

    text: str | None
    error: str = ""
    tool: str | None = None
    args: dict[str, Any] | None = None
    answer: Any = None


def _strip_wrapping(text: str) -> str:
    s = _PREFIX.sub("", text.strip()).strip()
    m = _FENCE.match(s)
    if m:
        s = _PREFIX.sub("", m.group(1).strip()).strip()
    return s


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # "1e999" parses to inf, which JSON cannot write back
        raise ValueError(f"number {text[:30]} is out of range")
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    return value


def canonical_call(tool: str, args: dict[str, Any]) -> str:
    """The canonical text of a call whose args are already validated and ordered."""
    return json.dumps({"tool": tool, "args": {k: _plain(v) for k, v in args.items()}})


def canonical_answer(value: Any) -> str:
    """The canonical text of a final answer."""
    return json.dumps({"answer": _plain(value)})


def schema_hint(tool: BaseTool) -> str:
    """``{"arg": type, ...}`` of a tool, for one-line error messages."""
    props = tool.args
    required = set(tool.tool_call_schema.model_json_schema().get("required", []))
    parts = []
    for arg, prop in props.items():
        kind = prop.get("type", "any")
        if "enum" in prop:
            kind = "|".join(map(str, prop["enum"]))
        parts.append(f'"{arg}": {kind}' + ("" if arg in required else " (optional)"))
    return "{" + ", ".join(parts) + "}"


def _validation_summary(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:3]:
        loc = ".".join(str(x) for x in e["loc"]) or "args"
        msg = e["msg"]
        if len(msg) > 90:
            msg = msg[:87] + "..."
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def parse_tool_action(text: str, tools: dict[str, BaseTool]) -> ParsedAction:
    """Parse raw action text against the available ``tools`` (name -> tool).

    Returns a ``ParsedAction`` whose ``text`` is the canonical action, or None with a
    one-line ``error`` (malformed JSON, unknown tool with the list of tools, args that fail
    the schema with the tool's expected args, a bad answer value).
    """
    tool_list = ", ".join(tools)
    s = _strip_wrapping(text)
    if not s:
        return ParsedAction(None, "empty action; expected one JSON object on the Action line")
    try:
        obj = json.loads(s, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as e:
        reason = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
        return ParsedAction(
            None,
            f"malformed JSON ({reason}); expected {{\"tool\": NAME, \"args\": {{...}}}} "
            f"or {{\"answer\": VALUE}}",
        )
    if not isinstance(obj, dict):
        return ParsedAction(None, f"expected a JSON object, got {type(obj).__name__}")
    keys = set(obj)
    if keys == {"answer"}:
        value = obj["answer"]
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return ParsedAction(None, f"answer: expected a number or a string, got {json.dumps(value)[:60]}")
        if isinstance(value, str) and len(value) > MAX_ANSWER_CHARS:
            return ParsedAction(None, f"answer too long ({len(value)} characters, limit {MAX_ANSWER_CHARS})")
        return ParsedAction(canonical_answer(value), answer=value)
    if "tool" not in keys or not keys <= {"tool", "args"}:
        return ParsedAction(
            None,
            f"expected keys tool and args (or only answer), got {', '.join(sorted(map(str, keys))) or 'none'}",
        )
    name = obj["tool"]
    if not isinstance(name, str) or name not in tools:
        return ParsedAction(None, f"unknown tool {json.dumps(name)[:60]}; available tools: {tool_list}")
    tool = tools[name]
    args = obj.get("args", {})
    if not isinstance(args, dict):
        return ParsedAction(None, f"{name}: args must be an object {schema_hint(tool)}")
    try:
        model = tool.args_schema.model_validate(args, strict=True)  # type: ignore[union-attr]
    except ValidationError as e:
        return ParsedAction(None, f"{name}: bad args ({_validation_summary(e)}); expected {schema_hint(tool)}")
    valid = model.model_dump(exclude_unset=True)
    return ParsedAction(canonical_call(name, valid), tool=name, args=valid)


def normalize_text(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed: how string answers compare."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def answers_match(given: Any, truth: Any) -> bool:
    """Whether a final answer is right (see the module docstring for the tolerance)."""
    if isinstance(truth, (int, float)) and not isinstance(truth, bool):
        value = parse_number(given) if isinstance(given, str) else given
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        diff = abs(value - truth)
        return diff <= ABS_TOLERANCE or diff <= REL_TOLERANCE * abs(truth)
    if not isinstance(given, (str, int, float)) or isinstance(given, bool):
        return False
    return normalize_text(str(given)) == normalize_text(str(truth))
