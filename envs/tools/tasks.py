"""Tasks: a question, the plan that answers it (tool calls with rationales), and the truth.

A task is generated from a seeded ``random.Random`` and a world. Generators run their plan
on scratch tools while they build it, so every later call is built from the real results
of the earlier ones (the calculator expression holds the looked-up numbers) and the true
answer is what the plan's last call returns. The expert replays the plan (``envs.tools.env``).

Families (``FAMILIES``), each a list of kinds, each kind with question templates:

* ``single``: one call (calculator, convert_units, date_calc or lookup) then the answer;
* ``chain``: lookups chained into a calculation, a unit conversion or a date calculation,
  or a lookup of a looked-up entity (2 to 4 calls);
* ``compare``: two entities looked up and compared (which is larger, the difference, the
  ratio, the sum, days between birth dates);
* ``stateful``: orders built with add_item/remove_item, then order_total or list_items.

The kinds live in ``envs.tools.info_tasks`` (single, chain, compare) and
``envs.tools.order_tasks`` (stateful).

Held out: a template marked ``TEST_ONLY`` is used by test seeds only (test seeds use every
template of a kind); entity names are split by ``envs.tools.world``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

from langchain_core.tools import BaseTool

from envs.tools.calculator import format_number, parse_number
from envs.tools.world import ATTRIBUTES, Entity, World

#: Marks a template used by test seeds only.
TEST_ONLY = "test-only"


@dataclass(frozen=True)
class PlanStep:
    """One tool call of a plan, with the reason the expert gives for it."""

    tool: str
    args: dict[str, Any]
    rationale: str
    result: str = ""


@dataclass(frozen=True)
class Task:
    """A generated question with its plan and true answer.

    ``target_order`` (stateful tasks) is the order the question asks for: item -> quantity;
    the task only counts as solved when the order ends that way too.
    """

    family: str
    kind: str
    template: str  # "<kind>/<index>", to check the hold-out
    question: str
    plan: tuple[PlanStep, ...]
    answer: Any
    answer_rationale: str
    target_order: dict[str, int] | None = None


class PlanBuilder:
    """Runs calls on scratch tools and records them as plan steps."""

    def __init__(self, tools: dict[str, BaseTool]) -> None:
        self.tools = tools
        self.steps: list[PlanStep] = []
        #: Set by stateful generators: the order the question asks for.
        self.target_order: dict[str, int] | None = None

    def call(self, tool: str, rationale: str, **args: Any) -> str:
        schema = self.tools[tool].args_schema
        args = schema.model_validate(args, strict=True).model_dump(exclude_unset=True)  # type: ignore[union-attr]
        result = str(self.tools[tool].invoke(args))
        self.steps.append(PlanStep(tool, args, rationale, result))
        return result

    def number(self, tool: str, rationale: str, **args: Any) -> float:
        value = parse_number(self.call(tool, rationale, **args))
        assert value is not None, f"{tool} returned a non-number for {args}"
        return value


Templates = list[tuple[str, str]]  # (text, "" or TEST_ONLY)


def pick_template(rng: random.Random, kind: str, templates: Templates, split: str) -> tuple[str, str]:
    """(template id, text): train seeds draw from the train templates, test from all."""
    allowed = [i for i, (_, tag) in enumerate(templates) if split == "test" or tag != TEST_ONLY]
    i = rng.choice(allowed)
    return f"{kind}/{i}", templates[i][0]


def phrase(kind: str, attribute: str) -> str:
    return ATTRIBUTES[kind][attribute][0]


def numeric_attributes(kind: str) -> list[str]:
    return [a for a in ATTRIBUTES[kind] if a not in ("founded", "birth_date", "country", "city",
                                                     "employer", "headquarters", "industry")]


def two_distinct(rng: random.Random, world: World, kind: str, attribute: str) -> tuple[Entity, Entity]:
    """Two entities of ``kind`` whose ``attribute`` differs (so a comparison has one answer)."""
    for _ in range(100):
        a, b = rng.sample(world.of_kind(kind), 2)
        if a.facts[attribute] != b.facts[attribute]:
            return a, b
    raise RuntimeError(f"no two {kind}s with different {attribute}")  # practically unreachable


@dataclass(frozen=True)
class Kind:
    """A task kind: its name, question templates and generator
    ``(rng, world, builder, template_text) -> (question, answer, answer_rationale)``."""

    name: str
    templates: Templates
    generate: Callable[[random.Random, World, PlanBuilder, str], tuple[str, Any, str]]


def build_task(family: str, kind: Kind, rng: random.Random, world: World,
               tools: dict[str, BaseTool], split: str) -> Task:
    """Generate one task of ``kind`` using scratch ``tools`` bound to ``world``."""
    template_id, text = pick_template(rng, kind.name, kind.templates, split)
    builder = PlanBuilder(tools)
    question, answer, why = kind.generate(rng, world, builder, text)
    return Task(family, kind.name, template_id, question, tuple(builder.steps), answer, why,
                builder.target_order)


def answer_reason(result: str) -> str:
    return f"The result is {result}, so that is the answer."


def answer_value(result: str) -> Any:
    """A tool result as an answer value: a number when it reads as one, else the text."""
    value = parse_number(result)
    return result if value is None else value


def fmt(value: Any) -> str:
    return format_number(value) if isinstance(value, (int, float)) else str(value)
