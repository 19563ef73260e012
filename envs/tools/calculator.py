"""A safe arithmetic evaluator: a whitelisted ``ast`` walk, never ``eval``.

Accepted: numbers (``12``, ``3.5``, ``1e3``), ``+ - * / ** %``, unary ``+``/``-`` and
parentheses. Everything else (names, calls, attributes, strings, comparisons, ...) is
refused before any arithmetic is done. The work is bounded so that a model cannot make the
tool hang or eat memory: the input length, the nesting depth, the exponent and the
magnitude of every intermediate result are capped.
"""

from __future__ import annotations

import ast
import math
import operator
from typing import Callable

from envs.tools.errors import ToolError

MAX_EXPRESSION_CHARS = 200
MAX_DEPTH = 20
MAX_EXPONENT = 64
MAX_MAGNITUDE = 1e15

_ALLOWED_CHARS = frozenset("0123456789.+-*/%()eE _")
_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.Mod: operator.mod,
}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


class CalculatorError(ToolError):
    """The expression is not allowed or cannot be computed; the message is one line."""


def _paren_depth(expression: str) -> int:
    depth = deepest = 0
    for ch in expression:
        if ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth -= 1
    return deepest


def _check(value: float) -> float:
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("result is not a finite number")
    if abs(value) > MAX_MAGNITUDE:
        raise CalculatorError(f"result too large (limit {MAX_MAGNITUDE:g} in magnitude)")
    return value


def _eval(node: ast.AST) -> float:
    # Recursion is bounded by the length cap: 200 characters make at most ~200 levels.
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise CalculatorError(f"only numbers are allowed, found {node.value!r}")
        return _check(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check(_UNARY[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left = _eval(node.left)
        right = _eval(node.right)
        if isinstance(node.op, ast.Pow):
            if abs(right) > MAX_EXPONENT:
                raise CalculatorError(f"exponent {right:g} too large (limit {MAX_EXPONENT})")
            if left == 0 and right < 0:
                raise CalculatorError("zero cannot be raised to a negative power")
            if left < 0 and not float(right).is_integer():
                raise CalculatorError("a negative number cannot be raised to a fractional power")
        if isinstance(node.op, (ast.Div, ast.Mod)) and right == 0:
            raise CalculatorError("division by zero")
        try:
            return _check(_BINARY[type(node.op)](left, right))
        except OverflowError:
            raise CalculatorError(f"result too large (limit {MAX_MAGNITUDE:g} in magnitude)") from None
    raise CalculatorError(
        f"unsupported syntax {type(node).__name__}; use numbers, + - * / ** % and parentheses"
    )


def calculate(expression: str) -> float:
    """Evaluate an arithmetic expression.

    Args:
        expression: for example ``"(345678 - 12000) / 2.5"``.

    Returns:
        The value (an ``int`` when every operand and operation kept it integral).

    Raises:
        CalculatorError: the expression is empty, too long, too deep, uses anything but
            numbers and ``+ - * / ** %`` with parentheses, divides by zero, or a result
            leaves the allowed range.
    """
    if not isinstance(expression, str):
        raise CalculatorError(f"expected an expression string, got {type(expression).__name__}")
    if not expression.strip():
        raise CalculatorError("empty expression")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(
            f"expression too long ({len(expression)} characters, limit {MAX_EXPRESSION_CHARS})"
        )
    bad = sorted(set(expression) - _ALLOWED_CHARS)
    if bad:
        raise CalculatorError(
            f"character(s) {''.join(bad)!r} not allowed; use numbers, + - * / ** % and parentheses"
        )
    if _paren_depth(expression) > MAX_DEPTH:
        raise CalculatorError(f"expression nested too deeply (limit {MAX_DEPTH})")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise CalculatorError(f"cannot parse {expression.strip()!r} as arithmetic") from None
    return _eval(tree)


def format_number(value: float) -> str:
    """Render a result the way every tool shows numbers: integers without a decimal
    point, other values rounded to 4 decimals (or 4 significant digits below 1), never
    in exponent notation, so the text can be pasted back into the calculator."""
    if isinstance(value, bool):
        raise TypeError("format_number: expected a number, got bool")
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < MAX_MAGNITUDE):
        return str(int(value))
    x = float(value)
    decimals = 4
    if abs(x) < 1:
        decimals = max(4, 3 - math.floor(math.log10(abs(x))))
    text = f"{x:.{min(decimals, 12)}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def parse_number(text: str) -> float | None:
    """The number in a tool result or answer text (``"1234"``, ``"-3.5"``), else None."""
    s = text.strip().replace(",", "")
    if not s or len(s) > 40:
        return None
    try:
        x = float(s)
    except ValueError:
        return None
    if not math.isfinite(x):
        return None
    return int(x) if x.is_integer() and "." not in s and "e" not in s.lower() else x
