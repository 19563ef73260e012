"""The LangChain tools of the tool-use envs, bound to one episode's world and order.

Each tool is a ``langchain_core.tools.StructuredTool`` with a pydantic argument schema, so
``convert_to_openai_tool(tool)`` gives the JSON schema an OpenAI-compatible client (or a
grammar builder) needs, and the same objects work in any LangChain agent. A tool that
cannot do what it is asked raises ``ToolError`` (a LangChain ``ToolException``) with a
one-line message.

    >>> from envs.tools.tools import make_tools
    >>> tools = make_tools(world, Order(world))
    >>> tools["calculator"].invoke({"expression": "12*3"})
    '36'
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.tools import BaseTool, StructuredTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ConfigDict, Field

from envs.tools import units
from envs.tools.calculator import MAX_EXPRESSION_CHARS, calculate, format_number
from envs.tools.orders import MAX_QUANTITY, Order
from envs.tools.world import ATTRIBUTE_NAMES, World

MAX_NAME_CHARS = 60
#: Schema mark of an argument copied from the episode's text (agent.grammar.COPY_KEY reads it):
#: names, dates and the amounts a question gives. Not the calculator's expression, which
#: combines numbers, nor the answer, which a count may compute.
COPY_KEY = "x-copy"

#: Tools that change the order; the others only read.
ORDER_MUTATING = ("add_item", "remove_item")
INFO_TOOLS = ("calculator", "convert_units", "date_calc", "lookup")
ORDER_TOOLS = ("add_item", "remove_item", "list_items", "order_total")
ALL_TOOLS = (*INFO_TOOLS, *ORDER_TOOLS)


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CalculatorArgs(_Args):
    expression: str = Field(
        max_length=MAX_EXPRESSION_CHARS,
        description="Arithmetic with numbers, + - * / ** % and parentheses, e.g. '(12 + 3) * 4'.",
    )


class ConvertUnitsArgs(_Args):
    value: float = Field(ge=-units.MAX_VALUE, le=units.MAX_VALUE, description="The amount to convert.",
                         json_schema_extra={COPY_KEY: True})
    from_unit: Literal[units.UNITS] = Field(description="The unit of value.")  # type: ignore[valid-type]
    to_unit: Literal[units.UNITS] = Field(description="The unit to convert to (same dimension).")  # type: ignore[valid-type]


class DateCalcArgs(_Args):
    operation: Literal[units.DATE_OPERATIONS] = Field(  # type: ignore[valid-type]
        description="add or subtract amount units to date; days_between date and end_date; "
        "day_of_week of date."
    )
    date: str = Field(max_length=10, description="A date as YYYY-MM-DD.", json_schema_extra={COPY_KEY: True})
    amount: int = Field(0, ge=-units.MAX_DATE_AMOUNT, le=units.MAX_DATE_AMOUNT,
                        description="How many units to add or subtract.", json_schema_extra={COPY_KEY: True})
    unit: Literal[units.DATE_UNITS] = Field("days", description="days, weeks or months.")  # type: ignore[valid-type]
    end_date: str = Field("", max_length=10, description="The second date for days_between.",
                          json_schema_extra={COPY_KEY: True})


class LookupArgs(_Args):
    entity: str = Field(max_length=MAX_NAME_CHARS, description="The name of a city, person or company.",
                        json_schema_extra={COPY_KEY: True})
    attribute: Literal[ATTRIBUTE_NAMES] = Field(description="The fact to look up.")  # type: ignore[valid-type]


class ItemArgs(_Args):
    item: str = Field(max_length=MAX_NAME_CHARS, description="The name of a product of the shop.",
                      json_schema_extra={COPY_KEY: True})
    quantity: int = Field(ge=1, le=MAX_QUANTITY, description="How many.", json_schema_extra={COPY_KEY: True})


class NoArgs(_Args):
    pass


def _fact_text(value: Any) -> str:
    return format_number(value) if isinstance(value, (int, float)) else str(value)


def make_tools(world: World, order: Order) -> dict[str, BaseTool]:
    """Every tool, bound to ``world`` and ``order``, by name (in ``ALL_TOOLS`` order)."""

    def calculator(expression: str) -> str:
        return format_number(calculate(expression))

    def convert_units(value: float, from_unit: str, to_unit: str) -> str:
        return format_number(units.convert(value, from_unit, to_unit))

    def date_calc(operation: str, date: str, amount: int = 0, unit: str = "days",
                  end_date: str = "") -> str:
        return units.date_calc(operation, date, amount, unit, end_date)

    def lookup(entity: str, attribute: str) -> str:
        return _fact_text(world.lookup(entity, attribute))

    specs = (
        (calculator, CalculatorArgs, "Evaluate an arithmetic expression and return the number."),
        (convert_units, ConvertUnitsArgs,
         "Convert a value between units of length (mm cm m km in ft yd mi), mass "
         "(mg g kg t oz lb), time (ms s min h day week) or temperature (C F K)."),
        (date_calc, DateCalcArgs,
         "Date arithmetic: add/subtract days, weeks or months; days between two dates; "
         "day of the week."),
        (lookup, LookupArgs, "Look up one fact about a city, person or company of this world."),
        (order.add, ItemArgs, "Add a quantity of a shop item to the order (limited by stock)."),
        (order.remove, ItemArgs, "Remove a quantity of an item that is in the order."),
        (lambda: order.listing(), NoArgs, "List the items in the order and how many there are."),
        (lambda: order.total_text(), NoArgs, "The total price of the order."),
    )
    tools: dict[str, BaseTool] = {}
    for name, (func, schema, description) in zip(ALL_TOOLS, specs):
        tools[name] = StructuredTool.from_function(
            func=func, name=name, description=description, args_schema=schema
        )
    return tools


def tool_schema(tool: BaseTool, *, copy_marks: bool = False) -> dict[str, Any]:
    """The OpenAI function-tool dict of a tool: ``{"type": "function", "function":
    {"name", "description", "parameters"}}``.

    ``copy_marks``: also mark the arguments whose value is a name copied from the question
    or a tool result (``"x-copy": true``, ``agent.grammar.COPY_KEY``; the names of entities
    and items), which a grammar-constrained model may then only copy. The prompt's text of
    the tools leaves the marks out.
    """
    schema = convert_to_openai_tool(tool)
    if copy_marks and isinstance(tool.args_schema, type):
        marked = tool.args_schema.model_json_schema().get("properties", {})
        props = schema["function"]["parameters"].get("properties", {})
        for arg, prop in props.items():
            if marked.get(arg, {}).get(COPY_KEY) is True:
                prop[COPY_KEY] = True
    return schema


def args_signature(tool: BaseTool) -> str:
    """A short ``name(arg: type, ...)`` line for prompts; optional args show their default."""
    params = tool_schema(tool)["function"]["parameters"]
    required = set(params.get("required", []))
    parts = []
    for arg, prop in params.get("properties", {}).items():
        kind = "|".join(prop["enum"]) if "enum" in prop and len(prop["enum"]) <= 4 else prop.get("type", "")
        if "enum" in prop and len(prop["enum"]) > 4:
            kind = "one of " + " ".join(map(str, prop["enum"]))
        shown = f"{arg}: {kind}" if arg in required else f"{arg}: {kind} = {prop.get('default')!r}"
        parts.append(shown)
    return f"{tool.name}({', '.join(parts)})"
