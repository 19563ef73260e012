"""Unit conversion and date arithmetic, the pure functions behind two of the tools.

Both raise ``ToolError`` with a one-line message on input they cannot handle, and both
bound their work (magnitudes, date ranges) so that no argument makes them slow.
"""

from __future__ import annotations

import calendar
import datetime as dt

from envs.tools.errors import ToolError

#: Unit symbol -> (dimension, factor to the dimension's base unit). Temperature is affine
#: and handled separately.
LINEAR_UNITS: dict[str, tuple[str, float]] = {
    "mm": ("length", 0.001), "cm": ("length", 0.01), "m": ("length", 1.0),
    "km": ("length", 1000.0), "in": ("length", 0.0254), "ft": ("length", 0.3048),
    "yd": ("length", 0.9144), "mi": ("length", 1609.344),
    "mg": ("mass", 1e-6), "g": ("mass", 0.001), "kg": ("mass", 1.0), "t": ("mass", 1000.0),
    "oz": ("mass", 0.028349523125), "lb": ("mass", 0.45359237),
    "ms": ("time", 0.001), "s": ("time", 1.0), "min": ("time", 60.0), "h": ("time", 3600.0),
    "day": ("time", 86400.0), "week": ("time", 604800.0),
}
TEMPERATURE_UNITS = ("C", "F", "K")
UNITS: tuple[str, ...] = (*LINEAR_UNITS, *TEMPERATURE_UNITS)
#: Plain-English names, for questions.
UNIT_NAMES = {
    "mm": "millimetres", "cm": "centimetres", "m": "metres", "km": "kilometres",
    "in": "inches", "ft": "feet", "yd": "yards", "mi": "miles", "mg": "milligrams",
    "g": "grams", "kg": "kilograms", "t": "tonnes", "oz": "ounces", "lb": "pounds",
    "ms": "milliseconds", "s": "seconds", "min": "minutes", "h": "hours", "day": "days",
    "week": "weeks", "C": "degrees Celsius", "F": "degrees Fahrenheit", "K": "kelvin",
}
MAX_VALUE = 1e12

DATE_OPERATIONS = ("add", "subtract", "days_between", "day_of_week")
DATE_UNITS = ("days", "weeks", "months")
MAX_DATE_AMOUNT = 100_000
MIN_YEAR, MAX_YEAR = 1, 9999


def dimension(unit: str) -> str:
    """The dimension of a unit symbol: length, mass, time or temperature."""
    if unit in TEMPERATURE_UNITS:
        return "temperature"
    if unit not in LINEAR_UNITS:
        raise ToolError(f"unknown unit {unit!r}; expected one of {', '.join(UNITS)}")
    return LINEAR_UNITS[unit][0]


def _to_kelvin(value: float, unit: str) -> float:
    return {"C": value + 273.15, "F": (value - 32.0) * 5.0 / 9.0 + 273.15, "K": value}[unit]


def _from_kelvin(value: float, unit: str) -> float:
    return {"C": value - 273.15, "F": (value - 273.15) * 9.0 / 5.0 + 32.0, "K": value}[unit]


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """Convert ``value`` from one unit to another of the same dimension.

    Raises:
        ToolError: an unknown unit, units of different dimensions, or ``|value|`` over
            ``MAX_VALUE``.
    """
    if abs(value) > MAX_VALUE:
        raise ToolError(f"value {value:g} out of range (limit {MAX_VALUE:g} in magnitude)")
    d_from, d_to = dimension(from_unit), dimension(to_unit)
    if d_from != d_to:
        raise ToolError(
            f"cannot convert {from_unit} ({d_from}) to {to_unit} ({d_to}): dimensions differ"
        )
    if d_from == "temperature":
        kelvin = _to_kelvin(value, from_unit)
        if kelvin < 0:
            raise ToolError(f"{value:g} {from_unit} is below absolute zero")
        return _from_kelvin(kelvin, to_unit)
    return value * LINEAR_UNITS[from_unit][1] / LINEAR_UNITS[to_unit][1]


def parse_date(text: str, name: str = "date") -> dt.date:
    """Parse ``YYYY-MM-DD``; anything else is a ToolError naming the argument."""
    try:
        if len(text) != 10:
            raise ValueError
        return dt.date.fromisoformat(text)
    except (ValueError, TypeError):
        raise ToolError(f"{name}: expected a date as YYYY-MM-DD, got {text!r}") from None


def add_months(date: dt.date, months: int) -> dt.date:
    """``date`` moved by whole months, clamped to the last day of a shorter month."""
    index = date.year * 12 + (date.month - 1) + months
    year, month = divmod(index, 12)
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise ToolError(f"resulting year {year} out of range {MIN_YEAR}-{MAX_YEAR}")
    day = min(date.day, calendar.monthrange(year, month + 1)[1])
    return dt.date(year, month + 1, day)


def shift_date(date: dt.date, amount: int, unit: str) -> dt.date:
    """``date`` plus ``amount`` days, weeks or months (negative moves back)."""
    if abs(amount) > MAX_DATE_AMOUNT:
        raise ToolError(f"amount {amount} out of range (limit {MAX_DATE_AMOUNT} in magnitude)")
    if unit == "months":
        return add_months(date, amount)
    if unit not in ("days", "weeks"):
        raise ToolError(f"unit: expected one of {', '.join(DATE_UNITS)}, got {unit!r}")
    try:
        return date + dt.timedelta(days=amount * (7 if unit == "weeks" else 1))
    except OverflowError:
        raise ToolError(f"resulting date out of range {MIN_YEAR}-{MAX_YEAR}") from None


def date_calc(operation: str, date: str, amount: int = 0, unit: str = "days",
              end_date: str = "") -> str:
    """The ``date_calc`` tool's logic. Returns the result as text: a date (YYYY-MM-DD), a
    number of days, or a weekday name.

    Raises:
        ToolError: an unknown operation, a malformed date, a missing ``end_date`` for
            ``days_between``, or a result outside years 1-9999.
    """
    start = parse_date(date, "date")
    if operation in ("add", "subtract"):
        result = shift_date(start, amount if operation == "add" else -amount, unit)
        return result.isoformat()
    if operation == "days_between":
        if not end_date:
            raise ToolError("days_between needs end_date (YYYY-MM-DD)")
        return str((parse_date(end_date, "end_date") - start).days)
    if operation == "day_of_week":
        return calendar.day_name[start.weekday()]
    raise ToolError(f"operation: expected one of {', '.join(DATE_OPERATIONS)}, got {operation!r}")
