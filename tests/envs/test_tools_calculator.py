"""The calculator: real arithmetic, and refusal (never a crash or a hang) of everything else."""

from __future__ import annotations

import pytest

from envs.tools.calculator import (
    MAX_EXPRESSION_CHARS, CalculatorError, calculate, format_number, parse_number,
)
from envs.tools.errors import ToolError


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("2 ** 10", 1024),
        ("2 ** -2", 0.25),
        ("-3 ** 2", -9),  # Python precedence: unary minus binds looser than **
        ("(-3) ** 2", 9),
        ("17 % 5", 2),
        ("7 / 2", 3.5),
        ("1701406 / 467.3", 1701406 / 467.3),
        ("1e3 + 0.5", 1000.5),
        ("--4", 4),
        ("1+" * 90 + "1", 91),  # long but flat: fine
    ],
)
def test_evaluates_arithmetic(expression: str, expected: float) -> None:
    assert calculate(expression) == pytest.approx(expected)


def test_integer_arithmetic_stays_integer() -> None:
    assert isinstance(calculate("6 * 7"), int)
    assert isinstance(calculate("6 / 3"), float)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('echo hi')", "not allowed"),
        ("open('x')", "not allowed"),
        ("[1, 2]", "not allowed"),
        ("1 if 1 else 2", "not allowed"),
        ("1 < 2", "not allowed"),
        ("2 ** 99999999", "exponent"),
        ("9 ** 9 ** 9", "exponent"),
        ("10 ** 15 * 10", "too large"),
        ("99999999 * 99999999", "too large"),
        ("1e400", "finite"),
        ("1 / 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("0 ** -1", "negative power"),
        ("(-8) ** 0.5", "fractional power"),
        ("(" * 50 + "1" + ")" * 50, "nested too deeply"),
        ("1" * (MAX_EXPRESSION_CHARS + 1), "too long"),
        ("9" * 10_000_000, "too long"),
        ("", "empty"),
        ("   ", "empty"),
        ("1 +", "cannot parse"),
        ("(1 + 2", "cannot parse"),
        ("1..2", "cannot parse"),
        ("1 // 2", "unsupported"),
    ],
)
def test_refuses_with_one_line_message(expression: str, message: str) -> None:
    with pytest.raises(CalculatorError, match=message) as e:
        calculate(expression)
    assert "\n" not in str(e.value)
    assert isinstance(e.value, ToolError)


def test_non_string_input_is_refused() -> None:
    with pytest.raises(CalculatorError, match="expected an expression string"):
        calculate(12)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "text"),
    [(36, "36"), (2.0, "2"), (3 / 7, "0.4286"), (1609.344, "1609.344"), (2801.28043, "2801.2804"),
     (0.000012345, "0.00001234"), (-0.5, "-0.5"), (1e14, "100000000000000")],
)
def test_format_number_is_short_and_pasteable(value: float, text: str) -> None:
    assert format_number(value) == text
    assert "e" not in text
    assert calculate(text) == pytest.approx(value, rel=1e-3)


def test_parse_number() -> None:
    assert parse_number("12") == 12 and isinstance(parse_number("12"), int)
    assert parse_number(" 12.50 ") == 12.5
    assert parse_number("1,234") == 1234
    assert parse_number("nan") is None
    assert parse_number("inf") is None
    assert parse_number("Vell") is None
    assert parse_number("2020-01-26") is None
