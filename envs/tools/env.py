"""Tool-use tasks as a TextEnv: answer a generated question by calling LangChain tools.

Description:
    Each seed builds a small fictional world (``envs.tools.world``: cities, people,
    companies, a shop) and a question from one task family (``envs.tools.tasks``). The
    agent calls tools, one per step, and then gives a final answer. Facts about the world
    exist only behind ``lookup``, so an LLM cannot answer from memory.

Observation:
    Self-contained and short: ``Question: ...`` and then every successful call so far with
    its result, one a line, e.g. ``lookup(Vell, population) -> 345678`` (argument values
    in schema order). After a refused action, one more line says what was wrong.

Actions:
    One JSON object (``envs.tools.actions``): ``{"tool": NAME, "args": {...}}`` or
    ``{"answer": VALUE}``; ``info["legal_actions"]`` lists the tool names and ``answer``.
    ``parse_action`` returns the canonical JSON text. Malformed JSON, an unknown tool,
    args failing the tool's schema, or a call the tool refuses (unknown entity, division
    by zero, out of stock, a calculator bound) is an invalid action: a one-line message,
    ``info["invalid_action"]`` true, nothing changes, the episode goes on.

Reward:
    1.0 for a correct final answer (numbers within 0.01 absolute or 1e-4 relative; strings
    compared without case, whitespace and punctuation; for ``stateful`` the order must
    also end as the question asks), else 0.

Termination:
    A final answer ends the episode (right or wrong); truncated after ``max_steps`` (10).

Registered ids (family):
    ``tools-single``, ``tools-chain``, ``tools-compare``, ``tools-stateful``, ``tools-mixed``
    (a family drawn per seed). ``tool_schemas`` holds the OpenAI function-tool dicts of the
    family's tools and ``tools`` the LangChain tools bound to the current episode.

Held out:
    Test seeds (odd, ``envs.registry.split_of``) use names no train seed can produce and
    question templates no train seed uses. ``reset()`` without a seed builds a train world.

Expert:
    ``ToolExpert`` follows the task's plan from the env's current state: it skips plan
    calls already made, and for orders that went off plan it repairs the order (removes,
    then adds) before asking for the total.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from typing import Any

from langchain_core.tools import BaseTool

from envs.base import ExpertStep, InvalidAction, TextEnv
from envs.registry import split_of
from envs.tools.actions import (
    ABS_TOLERANCE, REL_TOLERANCE, answers_match, canonical_answer, canonical_call, parse_tool_action,
)
from envs.tools.calculator import format_number
from envs.tools.errors import ToolError
from envs.tools.info_tasks import CHAIN, COMPARE, SINGLE
from envs.tools.order_tasks import STATEFUL
from envs.tools.orders import Order
from envs.tools.tasks import PlanStep, Task, build_task
from envs.tools.tools import ALL_TOOLS, INFO_TOOLS, ORDER_MUTATING, ORDER_TOOLS, make_tools, tool_schema
from envs.tools.world import World, make_world, name_key

logger = logging.getLogger(__name__)

FAMILIES = {"single": SINGLE, "chain": CHAIN, "compare": COMPARE, "stateful": STATEFUL}
FAMILY_TOOLS = {"single": INFO_TOOLS, "chain": INFO_TOOLS, "compare": INFO_TOOLS,
                "stateful": ORDER_TOOLS, "mixed": ALL_TOOLS}
MAX_STEPS = 10


@dataclass(frozen=True)
class Call:
    """A successful tool call of the episode: canonical args and the result text."""

    tool: str
    args: dict[str, Any]
    result: str

    def line(self) -> str:
        shown = (format_number(v) if isinstance(v, (int, float)) else str(v) for v in self.args.values())
        return f"{self.tool}({', '.join(shown)}) -> {self.result}"


def _instructions(names: tuple[str, ...], stateful: bool) -> str:
    tools = make_tools(World("train"), Order(World("train")))
    full = [
        "You answer a question by calling tools, one call per step, and then give the final answer.",
        "Each step, put ONE JSON object on the Action line: a tool call",
        '  {"tool": "<name>", "args": {<arguments>}}',
        "or the final answer",
        '  {"answer": <number or string>}',
        "The observation shows the question and every successful call so far with its result,",
        "like: lookup(Vell, population) -> 345678",
        "A call that fails shows an error and changes nothing; fix it and try again.",
        "The final answer ends the episode. A number is correct within "
        f"{ABS_TOLERANCE:g} or {REL_TOLERANCE * 100:g}% of the true value; text is compared "
        "ignoring case, spaces and punctuation. Dates are YYYY-MM-DD. Use the exact numbers the "
        "tools return.",
    ]
    if stateful:
        full.append("Do the order operations in the order the question gives; the task counts only "
                    "if the order ends as asked and the answer is right.")
    if "lookup" in names:
        full.append("Facts about this world's cities, people and companies are only known through lookup.")
    full.append("Tools (name: what it does; args as JSON schema):")
    for n in names:
        params = tool_schema(tools[n])["function"]["parameters"]
        full.append(f"- {n}: {tools[n].description} args: {json.dumps(params.get('properties', {}))}")
    return "\n".join(full)


class ToolTaskEnv(TextEnv):
    """Tool-use questions of one family (see the module docstring for the spec card)."""

    compact_history = 0  # the observation lists every call so far with its result

    def __init__(self, family: str = "mixed", max_steps: int = MAX_STEPS,
                 render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        if family not in FAMILY_TOOLS:
            raise ValueError(f"family: expected one of {', '.join(FAMILY_TOOLS)}, got {family!r}")
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps: expected an integer >= 1, got {max_steps!r}")
        self.family = family
        self.max_steps = max_steps
        self.env_id = f"tools-{family}"
        self.tool_names: tuple[str, ...] = FAMILY_TOOLS[family]
        self.instructions = _instructions(
            self.tool_names, stateful=family in ("stateful", "mixed"))
        placeholder = World("train")
        self.tools: dict[str, BaseTool] = self._bind(placeholder, Order(placeholder))
        self.tool_schemas: list[dict[str, Any]] = [tool_schema(t, copy_marks=True) for t in self.tools.values()]
        self.world = placeholder
        self.order = Order(placeholder)
        self.task: Task | None = None
        self.calls: list[Call] = []
        self.answer: Any = None
        self._correct = False

    def _bind(self, world: World, order: Order) -> dict[str, BaseTool]:
        tools = make_tools(world, order)
        return {n: tools[n] for n in self.tool_names}

    # ----------------------------------------------------------------- hooks
    def _reset(self, seed: int | None, options: dict[str, Any] | None) -> None:
        split = split_of(seed) if seed is not None else "train"
        rng = random.Random(int(self.np_random.integers(2**62)))
        self.world = make_world(rng, split)
        family = self.family if self.family != "mixed" else rng.choice(sorted(FAMILIES))
        kind = rng.choice(FAMILIES[family])
        scratch = make_tools(self.world, Order(self.world))
        self.task = build_task(family, kind, rng, self.world, scratch, split)
        self.order = Order(self.world)
        self.tools = self._bind(self.world, self.order)
        self.calls, self.answer, self._correct = [], None, False

    def _apply(self, action: str) -> tuple[float, bool, str]:
        assert self.task is not None, "reset() first"
        parsed = parse_tool_action(action, self.tools)
        assert parsed.text is not None, f"_apply got an unparsed action {action!r}"
        if parsed.tool is None:
            self.answer = parsed.answer
            self._correct = answers_match(parsed.answer, self.task.answer) and (
                self.task.target_order is None or self.order.quantities == self.task.target_order)
            verdict = "correct" if self._correct else "wrong"
            return (1.0 if self._correct else 0.0), True, f"Final answer {parsed.answer}: {verdict}."
        try:
            result = str(self.tools[parsed.tool].invoke(parsed.args))
        except ToolError as e:
            raise InvalidAction(f"{parsed.tool} failed: {_one_line(str(e))}") from None
        except Exception as e:  # a tool bug must not end the run; the world did not move
            logger.exception("tool %s raised on %s", parsed.tool, parsed.args)
            raise InvalidAction(f"{parsed.tool} failed: {type(e).__name__}") from None
        self.calls.append(Call(parsed.tool, dict(parsed.args or {}), _one_line(result)))
        return 0.0, False, ""

    def _render(self) -> str:
        if self.task is None:
            return ""
        return "\n".join([f"Question: {self.task.question}", *(c.line() for c in self.calls)])

    def _success(self) -> bool:
        return self._correct

    def _legal_actions(self) -> list[str]:
        return [*self.tools, "answer"]

    def parse_action(self, text: str) -> str | None:
        return parse_tool_action(text, self.tools).text

    def invalid_feedback(self, action: str) -> str:
        shown = _one_line(action.strip())
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return f"Invalid action {shown!r}: {_one_line(parse_tool_action(action, self.tools).error)}"

    def expert(self) -> ToolExpert:
        return ToolExpert(self)

    def invented_names(self) -> list[str]:
        return sorted(self.world.names())


def _one_line(text: str, limit: int = 400) -> str:
    s = " ".join(text.split()).encode("ascii", "backslashreplace").decode("ascii")
    return s if len(s) <= limit else s[: limit - 3] + "..."


class ToolExpert:
    """Follows the task's plan from the env's current state (works after others' calls)."""

    def __init__(self, env: ToolTaskEnv) -> None:
        self.env = env

    def _key(self, tool: str, args: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
        schema = self.env.tools[tool].args_schema
        full = schema.model_validate(args).model_dump()  # type: ignore[union-attr]
        norm = []
        for k, v in full.items():
            if isinstance(v, str):
                v = "".join(v.split()) if k == "expression" else name_key(v)
            elif isinstance(v, (int, float)):
                v = float(v)
            norm.append((k, v))
        return tool, tuple(norm)

    def _done(self, step: PlanStep, call: Call) -> bool:
        return step.tool == call.tool and self._key(step.tool, step.args) == self._key(call.tool, call.args)

    def act(self) -> ExpertStep:
        task = self.env.task
        if task is None:
            raise RuntimeError("ToolExpert.act: the env has not been reset")
        if task.target_order is not None:
            step = self._order_step(task)
        else:
            step = next((s for s in task.plan if not any(self._done(s, c) for c in self.env.calls)), None)
        if step is None:
            return ExpertStep(canonical_answer(task.answer), task.answer_rationale)
        return ExpertStep(canonical_call(step.tool, step.args), step.rationale)

    def _order_step(self, task: Task) -> PlanStep | None:
        calls = self.env.calls
        made = [c for c in calls if c.tool in ORDER_MUTATING]
        plan = [s for s in task.plan if s.tool in ORDER_MUTATING]
        if len(made) < len(plan) and all(self._done(s, c) for s, c in zip(plan, made)):
            return plan[len(made)]
        current, target = self.env.order.quantities, task.target_order or {}
        if current == target:
            query = task.plan[-1]
            last = max((i for i, c in enumerate(calls) if c.tool in ORDER_MUTATING), default=-1)
            if any(c.tool == query.tool for c in calls[last + 1:]):
                return None
            return query
        names = sorted(set(current) | set(target))
        diffs = [(n, target.get(n, 0) - current.get(n, 0)) for n in names]
        for n, d in diffs:  # removals first: they free stock for the additions
            if d < 0:
                return PlanStep("remove_item", {"item": n, "quantity": -d},
                                f"The order has {current[n]} {n} but should have {target.get(n, 0)}, "
                                f"so I remove {-d}.")
        n, d = next((n, d) for n, d in diffs if d > 0)
        return PlanStep("add_item", {"item": n, "quantity": d},
                        f"The order has {current.get(n, 0)} {n} but should have {target[n]}, so I add {d}.")
