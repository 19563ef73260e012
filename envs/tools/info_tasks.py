"""Task kinds of the ``single``, ``chain`` and ``compare`` families (see ``envs.tools.tasks``).

Every generator draws its numbers from ``rng``, states its question with the chosen
template, and calls the tools through the ``PlanBuilder`` in the order the expert will.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from envs.tools.tasks import (
    TEST_ONLY, Kind, PlanBuilder, answer_reason, answer_value, fmt, numeric_attributes, phrase,
    two_distinct,
)
from envs.tools.units import LINEAR_UNITS, UNIT_NAMES
from envs.tools.world import World

Result = tuple[str, Any, str]


# ------------------------------------------------------------------ single
def _calc(rng: random.Random, world: World, b: PlanBuilder, text: str) -> Result:
    a, c = rng.randint(2, 99), rng.randint(2, 99)
    expr = rng.choice((
        f"{a} * {c} + {rng.randint(1, 999)}", f"({a} + {rng.randint(1, 99)}) * {c}",
        f"{rng.randint(10, 9999)} / {c}", f"{a} ** 2 - {rng.randint(1, 999)}",
        f"{rng.randint(100, 9999)} % {c}", f"({rng.randint(100, 999)} - {a}) / {c}",
    ))
    r = b.call("calculator", f"I compute {expr} with the calculator.", expression=expr)
    return text.format(expr=expr), answer_value(r), answer_reason(r)


def _convert(rng: random.Random, world: World, b: PlanBuilder, text: str) -> Result:
    dim = rng.choice(("length", "mass", "time", "temperature"))
    if dim == "temperature":
        u1, u2 = rng.sample(("C", "F", "K"), 2)
        value: float = rng.randint(-20, 100) if u1 != "K" else rng.randint(250, 380)
    else:
        u1, u2 = rng.sample([u for u, (d, _) in LINEAR_UNITS.items() if d == dim], 2)
        value = rng.choice((rng.randint(1, 500), round(rng.uniform(1, 100), 1)))
    r = b.call("convert_units", f"I convert {fmt(value)} {u1} to {u2}.",
               value=float(value), from_unit=u1, to_unit=u2)
    q = text.format(v=fmt(value), u1=u1, u2=u2, n1=UNIT_NAMES[u1], n2=UNIT_NAMES[u2])
    return q, answer_value(r), answer_reason(r)


def _random_date(rng: random.Random) -> str:
    return dt.date.fromordinal(rng.randint(dt.date(1950, 1, 1).toordinal(),
                                           dt.date(2040, 12, 31).toordinal())).isoformat()


def _date(rng: random.Random, world: World, b: PlanBuilder, text: str) -> Result:
    # One template list covers four operations; the template text says which.
    d1, d2 = sorted((_random_date(rng), _random_date(rng)))
    n, unit = rng.randint(1, 400), rng.choice(("days", "weeks", "months"))
    if "after" in text or "before" in text:
        op = "add" if "after" in text else "subtract"
        r = b.call("date_calc", f"I {op} {n} {unit} {'to' if op == 'add' else 'from'} {d1}.",
                   operation=op, date=d1, amount=n, unit=unit)
    elif "{d2}" in text:
        r = b.call("date_calc", f"I count the days from {d1} to {d2}.",
                   operation="days_between", date=d1, end_date=d2)
    else:
        r = b.call("date_calc", f"I ask which weekday {d1} is.", operation="day_of_week", date=d1)
    return text.format(d1=d1, d2=d2, n=n, unit=unit), answer_value(r), answer_reason(r)


def _lookup(rng: random.Random, world: World, b: PlanBuilder, text: str) -> Result:
    e = rng.choice(list(world.entities.values()))
    attr = rng.choice(list(e.facts))
    r = b.call("lookup", f"I look up the {phrase(e.kind, attr)} of {e.name}.", entity=e.name, attribute=attr)
    return text.format(p=phrase(e.kind, attr), e=e.name), answer_value(r), answer_reason(r)


SINGLE = [
    Kind("calc", [("What is {expr}?", ""), ("Compute {expr}.", ""),
                  ("Work out the value of {expr}.", TEST_ONLY)], _calc),
    Kind("convert", [("Convert {v} {u1} to {u2}.", ""), ("How many {n2} are in {v} {n1}?", ""),
                     ("Express {v} {n1} in {n2}.", TEST_ONLY)], _convert),
    Kind("date", [("What date is {n} {unit} after {d1}?", ""),
                  ("What date was {n} {unit} before {d1}?", ""),
                  ("How many days are there from {d1} to {d2}?", ""),
                  ("What day of the week is {d1}?", ""),
                  ("Which date comes {n} {unit} after {d1}?", TEST_ONLY),
                  ("Count the days from {d1} until {d2}.", TEST_ONLY),
                  ("On which weekday does {d1} fall?", TEST_ONLY)], _date),
    Kind("lookup", [("What is the {p} of {e}?", ""), ("Look up the {p} of {e}.", ""),
                    ("Tell me the {p} of {e}.", TEST_ONLY)], _lookup),
]


# ------------------------------------------------------------------- chain
def _ratio(rng: random.Random, world: World, b: PlanBuilder, text: str) -> Result:
    # population density of a city (optionally found through a person), or revenue per
    # employee of a company.
    if "{company}" in text:
        c = rng.choice(world.of_kind("company"))
        rev = b.call("lookup", f"I need the revenue of {c.name} first.", entity=c.name, attribute="revenue_musd")
        emp = b.call("lookup", f"Now I need the number of employees of {c.name}.", entity=c.name, attribute="employees")
        r = b.call("calculator", "Now I divide the revenue in USD by the employees.",
                   expression=f"{rev} * 1000000 / {emp}")
        return text.format(company=c.name), answer_value(r), answer_reason(r)
    if "{person}" in text:
        p = rng.choice(world.of_kind("person"))
        city = b.call("lookup", f"I need to know where {p.name} lives first.", entity=p.name, attribute="city")
        q = text.format(person=p.name)
    else:
        city = rng.choice(world.of_kind("city")).name
        q = text.format(city=city)
    pop = b.call("lookup", f"I need the population of {city}.", entity=city, attribute="population")
    area = b.call("lookup", f"Now I need the area of {city}.", entity=city, attribute="area_km2")
    r = b.call("calculator", "Now I divide the population by the area.", expression=f"{pop} / {area}")
    return q, answer_value(r), answer_reason(r)


_CONVERSIONS = (  # (kind, attribute, from unit, target units)
    ("person", "height_cm", "cm", ("ft", "in", "m")),
    ("person", "weight_kg", "kg", ("lb", "g")),
    ("city", "elevation_m", "m", ("ft", "km", "yd")),
    ("city", "avg_temp_c", "C", ("F", "K")),
)


def _lookup_convert(rng: random.Random, world: World, b: PlanBuilder, text: str) -> Result:
    kind, attr, u1, targets = rng.choice(_CONVERSIONS)
    e, u2 = rng.choice(world.of_kind(kind)), rng.choice(targets)
    v = b.number("lookup", f"I need the {phrase(kind, attr)} of {e.name} first.", entity=e.name, attribute=attr)
    r = b.call("convert_units", f"Now I convert {fmt(v)} {u1} to {u2}.", value=float(v), from_unit=u1, to_unit=u2)
    q = text.format(p=phrase(kind, attr).split(" in ")[0], e=e.name, n2=UNIT_NAMES[u2])
    return q, answer_value(r), answer_reason(r)


def _lookup_date(rng: random.Random, world: World, b: PlanBuilder, text: str) -> Result:
    e = rng.choice(world.of_kind("person") + world.of_kind("company") + world.of_kind("city"))
    attr = "birth_date" if e.kind == "person" else "founded"
    event = "born" if e.kind == "person" else "founded"
    d = b.call("lookup", f"I need the {phrase(e.kind, attr)} of {e.name} first.", entity=e.name, attribute=attr)
    if "weekday" in text or "day of the week" in text:
        r = b.call("date_calc", f"Now I ask which weekday {d} was.", operation="day_of_week", date=d)
        return text.format(e=e.name, event=event), answer_value(r), answer_reason(r)
    n, unit = rng.randint(1, 300), rng.choice(("days", "weeks", "months"))
    r = b.call("date_calc", f"Now I add {n} {unit} to {d}.", operation="add", date=d, amount=n, unit=unit)
    return text.format(e=e.name, event=event, n=n, unit=unit), answer_value(r), answer_reason(r)


def _two_hop(rng: random.Random, world: World, b: PlanBuilder, text: str) -> Result:
    p = rng.choice(world.of_kind("person"))
    link = "city" if "lives" in text else "employer"
    other = b.call("lookup", f"I need the {phrase('person', link)} of {p.name} first.", entity=p.name, attribute=link)
    kind = "city" if link == "city" else "company"
    attr = rng.choice([a for a in world.entity(other).facts if a not in ("headquarters",)])
    r = b.call("lookup", f"Now I look up the {phrase(kind, attr)} of {other}.", entity=other, attribute=attr)
    return text.format(p=phrase(kind, attr), person=p.name), answer_value(r), answer_reason(r)


CHAIN = [
    Kind("ratio", [("What is the population density of {city} in people per km2?", ""),
                   ("How much revenue in USD does {company} make per employee?", ""),
                   ("What is the population density, in people per km2, of the city where {person} lives?", ""),
                   ("How many people per km2 live in {city}?", TEST_ONLY),
                   ("What is the revenue per employee of {company} in USD?", TEST_ONLY)], _ratio),
    Kind("lookup-convert", [("What is the {p} of {e} in {n2}?", ""),
                            ("Give the {p} of {e} converted to {n2}.", TEST_ONLY)], _lookup_convert),
    Kind("lookup-date", [("On what day of the week was {e} {event}?", ""),
                         ("What date is {n} {unit} after the day {e} was {event}?", ""),
                         ("Which weekday was it when {e} was {event}?", TEST_ONLY)], _lookup_date),
    Kind("two-hop", [("What is the {p} of the city where {person} lives?", ""),
                     ("What is the {p} of the company {person} works for?", ""),
                     ("{person} lives in a city. What is its {p}?", TEST_ONLY)], _two_hop),
]


# ----------------------------------------------------------------- compare
def _pick_numeric(rng: random.Random, world: World, signed: bool = True) -> tuple[str, str, Any, Any]:
    kind = rng.choice(("city", "person", "company"))
    # Temperatures can be negative or near zero: fine to compare, odd to divide or add.
    attr = rng.choice([a for a in numeric_attributes(kind) if signed or a != "avg_temp_c"])
    a, c = two_distinct(rng, world, kind, attr)
    return kind, attr, a, c


def _which(rng: random.Random, world: World, b: PlanBuilder, text: str) -> Result:
    kind, attr, a, c = _pick_numeric(rng, world)
    larger = "larger" in text or "greater" in text
    va = b.number("lookup", f"I need the {phrase(kind, attr)} of {a.name} first.", entity=a.name, attribute=attr)
    vc = b.number("lookup", f"Now I need the {phrase(kind, attr)} of {c.name}.", entity=c.name, attribute=attr)
    win = a if (va > vc) == larger else c
    why = f"{a.name} has {fmt(va)} and {c.name} has {fmt(vc)}, so the answer is {win.name}."
    return text.format(p=phrase(kind, attr), a=a.name, c=c.name), win.name, why


def _arith(rng: random.Random, world: World, b: PlanBuilder, text: str) -> Result:
    kind, attr, a, c = _pick_numeric(rng, world, signed=False)
    if a.facts[attr] < c.facts[attr]:
        a, c = c, a
    va = b.call("lookup", f"I need the {phrase(kind, attr)} of {a.name} first.", entity=a.name, attribute=attr)
    vc = b.call("lookup", f"Now I need the {phrase(kind, attr)} of {c.name}.", entity=c.name, attribute=attr)
    if "combined" in text or "total" in text:
        expr, why = f"{va} + {vc}", "Now I add the two values."
    elif "times" in text:
        expr, why = f"{va} / {vc}", "Now I divide the first value by the second."
    else:
        expr, why = f"{va} - {vc}", "Now I subtract the second value from the first."
    r = b.call("calculator", why, expression=expr)
    return text.format(p=phrase(kind, attr), a=a.name, c=c.name), answer_value(r), answer_reason(r)


def _older(rng: random.Random, world: World, b: PlanBuilder, text: str) -> Result:
    kind = rng.choice(("person", "city", "company"))
    attr = "birth_date" if kind == "person" else "founded"
    a, c = two_distinct(rng, world, kind, attr)
    if a.facts[attr] > c.facts[attr]:
        a, c = c, a  # a is the older one
    if "How many days" in text:
        da = b.call("lookup", f"I need the {phrase(kind, attr)} of {a.name} first.", entity=a.name, attribute=attr)
        dc = b.call("lookup", f"Now I need the {phrase(kind, attr)} of {c.name}.", entity=c.name, attribute=attr)
        r = b.call("date_calc", f"Now I count the days from {da} to {dc}.",
                   operation="days_between", date=da, end_date=dc)
        return text.format(a=a.name, c=c.name), answer_value(r), answer_reason(r)
    first, second = (a, c) if rng.random() < 0.5 else (c, a)
    d1 = b.call("lookup", f"I need the {phrase(kind, attr)} of {first.name} first.", entity=first.name, attribute=attr)
    d2 = b.call("lookup", f"Now I need the {phrase(kind, attr)} of {second.name}.", entity=second.name, attribute=attr)
    win = first if (d1 < d2) == ("older" in text) else second
    why = f"{first.name}: {d1}, {second.name}: {d2}, so the answer is {win.name}."
    return text.format(a=first.name, c=second.name), win.name, why


COMPARE = [
    Kind("which", [("Which has the larger {p}, {a} or {c}?", ""),
                   ("Between {a} and {c}, which has the smaller {p}?", ""),
                   ("Of {a} and {c}, whose {p} is greater?", TEST_ONLY)], _which),
    Kind("arith", [("How much larger is the {p} of {a} than that of {c}?", ""),
                   ("What is the combined {p} of {a} and {c}?", ""),
                   ("How many times larger is the {p} of {a} than that of {c}?", ""),
                   ("By how much does the {p} of {a} exceed that of {c}?", TEST_ONLY),
                   ("What is the total {p} of {a} and {c} together?", TEST_ONLY)], _arith),
    Kind("older", [("Which is older, {a} or {c}?", ""), ("Which is younger, {a} or {c}?", ""),
                   ("How many days older is {a} than {c}?", ""),
                   ("Who or what came first, {a} or {c}? Name the older.", TEST_ONLY)], _older),
]
