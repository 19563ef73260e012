"""The LangChain tools on valid and invalid input, their OpenAI schemas, and the world."""

from __future__ import annotations

import random

import pytest
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ValidationError

from envs.tools.errors import ToolError
from envs.tools.orders import Order
from envs.tools.tools import ALL_TOOLS, make_tools
from envs.tools.world import (
    ATTRIBUTE_NAMES, TEST_ITEM_ADJECTIVES, TEST_ONSETS, TRAIN_ITEM_ADJECTIVES, TRAIN_ONSETS, World,
    make_world,
)


@pytest.fixture
def world() -> World:
    return make_world(random.Random(3), "train")


@pytest.fixture
def order(world: World) -> Order:
    return Order(world)


@pytest.fixture
def tools(world: World, order: Order) -> dict[str, BaseTool]:
    return make_tools(world, order)


# ----------------------------------------------------------------- schemas
EXPECTED_SCHEMAS = {
    "calculator": ({"expression"}, ["expression"]),
    "convert_units": ({"value", "from_unit", "to_unit"}, ["value", "from_unit", "to_unit"]),
    "date_calc": ({"operation", "date", "amount", "unit", "end_date"}, ["operation", "date"]),
    "lookup": ({"entity", "attribute"}, ["entity", "attribute"]),
    "add_item": ({"item", "quantity"}, ["item", "quantity"]),
    "remove_item": ({"item", "quantity"}, ["item", "quantity"]),
    "list_items": (set(), []),
    "order_total": (set(), []),
}


def test_tools_are_langchain_tools_with_openai_schemas(tools: dict[str, BaseTool]) -> None:
    assert list(tools) == list(ALL_TOOLS) == list(EXPECTED_SCHEMAS)
    for name, tool in tools.items():
        assert isinstance(tool, BaseTool)
        schema = convert_to_openai_tool(tool)
        assert schema["type"] == "function"
        fn = schema["function"]
        assert fn["name"] == name
        assert len(fn["description"]) > 10
        params = fn["parameters"]
        assert params["type"] == "object"
        props, required = EXPECTED_SCHEMAS[name]
        assert set(params.get("properties", {})) == props
        assert sorted(params.get("required", [])) == sorted(required)
        for prop in params.get("properties", {}).values():
            assert "description" in prop and ("type" in prop or "enum" in prop)


def test_enums_and_bounds_are_in_the_schema(tools: dict[str, BaseTool]) -> None:
    conv = convert_to_openai_tool(tools["convert_units"])["function"]["parameters"]["properties"]
    assert {"km", "mi", "lb", "C", "F", "K", "h"} <= set(conv["from_unit"]["enum"])
    look = convert_to_openai_tool(tools["lookup"])["function"]["parameters"]["properties"]
    assert look["attribute"]["enum"] == list(ATTRIBUTE_NAMES)
    calc = convert_to_openai_tool(tools["calculator"])["function"]["parameters"]["properties"]
    assert calc["expression"]["maxLength"] == 200
    add = convert_to_openai_tool(tools["add_item"])["function"]["parameters"]["properties"]
    assert (add["quantity"]["minimum"], add["quantity"]["maximum"]) == (1, 100)


def test_schema_violations_are_refused_by_the_tool(tools: dict[str, BaseTool]) -> None:
    with pytest.raises(ValidationError):
        tools["convert_units"].invoke({"value": 1, "from_unit": "parsec", "to_unit": "m"})
    with pytest.raises(ValidationError):
        tools["calculator"].invoke({"expression": "1+" * 200 + "1"})


# ------------------------------------------------------------ calculator
def test_calculator_tool(tools: dict[str, BaseTool]) -> None:
    assert tools["calculator"].invoke({"expression": "12*3"}) == "36"
    assert tools["calculator"].invoke({"expression": "10 / 4"}) == "2.5"
    with pytest.raises(ToolError, match="not allowed"):
        tools["calculator"].invoke({"expression": "__import__('os')"})


# --------------------------------------------------------- convert_units
@pytest.mark.parametrize(
    ("value", "src", "dst", "expected"),
    [(1, "mi", "km", "1.6093"), (100, "cm", "m", "1"), (2, "lb", "oz", "32"), (1, "t", "kg", "1000"),
     (90, "min", "h", "1.5"), (2, "week", "day", "14"), (100, "C", "F", "212"), (32, "F", "C", "0"),
     (0, "K", "C", "-273.15"), (6, "ft", "in", "72")],
)
def test_convert_units(tools: dict[str, BaseTool], value: float, src: str, dst: str, expected: str) -> None:
    assert tools["convert_units"].invoke({"value": value, "from_unit": src, "to_unit": dst}) == expected


def test_convert_units_refuses_mixed_dimensions_and_impossible_values(tools: dict[str, BaseTool]) -> None:
    with pytest.raises(ToolError, match="dimensions differ"):
        tools["convert_units"].invoke({"value": 1, "from_unit": "kg", "to_unit": "m"})
    with pytest.raises(ToolError, match="below absolute zero"):
        tools["convert_units"].invoke({"value": -500, "from_unit": "C", "to_unit": "K"})


# ------------------------------------------------------------- date_calc
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"operation": "add", "date": "2020-01-05", "amount": 3, "unit": "weeks"}, "2020-01-26"),
        ({"operation": "add", "date": "2020-01-31", "amount": 1, "unit": "months"}, "2020-02-29"),
        ({"operation": "subtract", "date": "2021-03-01", "amount": 1}, "2021-02-28"),
        ({"operation": "subtract", "date": "2020-05-31", "amount": 15, "unit": "months"}, "2019-02-28"),
        ({"operation": "days_between", "date": "2020-01-01", "end_date": "2021-01-01"}, "366"),
        ({"operation": "days_between", "date": "2021-01-01", "end_date": "2020-12-25"}, "-7"),
        ({"operation": "day_of_week", "date": "2024-07-04"}, "Thursday"),
    ],
)
def test_date_calc(tools: dict[str, BaseTool], args: dict, expected: str) -> None:
    assert tools["date_calc"].invoke(args) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"operation": "add", "date": "2020-13-01", "amount": 1}, "YYYY-MM-DD"),
        ({"operation": "add", "date": "5 May 2020", "amount": 1}, "YYYY-MM-DD"),
        ({"operation": "days_between", "date": "2020-01-01"}, "needs end_date"),
        ({"operation": "add", "date": "9999-12-01", "amount": 2, "unit": "months"}, "out of range"),
        ({"operation": "add", "date": "9999-12-01", "amount": 100000}, "out of range"),
    ],
)
def test_date_calc_refuses(tools: dict[str, BaseTool], args: dict, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        tools["date_calc"].invoke(args)


# ---------------------------------------------------------------- lookup
def test_lookup_is_case_insensitive_and_names_what_exists(world: World, tools: dict[str, BaseTool]) -> None:
    city = world.of_kind("city")[0]
    assert tools["lookup"].invoke({"entity": f"  {city.name.upper()} ", "attribute": "population"}) == str(
        city.facts["population"])
    with pytest.raises(ToolError, match="unknown entity 'Atlantis'; known entities: ") as e:
        tools["lookup"].invoke({"entity": "Atlantis", "attribute": "population"})
    assert city.name in str(e.value)
    with pytest.raises(ToolError, match="is a city; its attributes are: population"):
        tools["lookup"].invoke({"entity": city.name, "attribute": "height_cm"})


def test_world_links_point_at_its_own_entities(world: World) -> None:
    cities = {e.name for e in world.of_kind("city")}
    companies = {e.name for e in world.of_kind("company")}
    assert len(cities) == 6 and len(companies) == 4 and len(world.of_kind("person")) == 6
    for p in world.of_kind("person"):
        assert p.facts["city"] in cities and p.facts["employer"] in companies
    for c in world.of_kind("company"):
        assert c.facts["headquarters"] in cities


def test_world_is_seeded() -> None:
    a = make_world(random.Random(11), "test")
    assert a == make_world(random.Random(11), "test")
    assert a != make_world(random.Random(12), "test")


def test_world_names_of_the_splits_are_disjoint() -> None:
    train = set().union(*(make_world(random.Random(s), "train").names() for s in range(300)))
    test = set().union(*(make_world(random.Random(s), "test").names() for s in range(300)))
    assert not {n.lower() for n in train} & {n.lower() for n in test}
    assert len(train) > 1000 and len(test) > 1000
    assert all(n[0] in TRAIN_ONSETS or n.split()[0] in TRAIN_ITEM_ADJECTIVES for n in train)
    assert all(n[0] in TEST_ONSETS or n.split()[0] in TEST_ITEM_ADJECTIVES for n in test)


# ---------------------------------------------------------------- orders
def test_order_tools_track_state_and_stock(world: World, order: Order, tools: dict[str, BaseTool]) -> None:
    item = next(it for it in world.items.values() if it.stock >= 3)
    assert tools["list_items"].invoke({}) == "the order is empty (0 items)"
    assert tools["order_total"].invoke({}) == "0"
    tools["add_item"].invoke({"item": item.name, "quantity": 2})
    tools["add_item"].invoke({"item": item.name.upper(), "quantity": 1})
    assert order.quantities == {item.name: 3}
    assert tools["list_items"].invoke({}) == f"3 {item.name} (3 items)"
    assert float(tools["order_total"].invoke({})) == pytest.approx(3 * item.price)
    tools["remove_item"].invoke({"item": item.name, "quantity": 3})
    assert order.quantities == {} and order.stock[item.name] == item.stock


def test_failed_order_calls_change_nothing(world: World, order: Order, tools: dict[str, BaseTool]) -> None:
    item = next(iter(world.items.values()))
    tools["add_item"].invoke({"item": item.name, "quantity": 1})
    before = (dict(order.quantities), dict(order.stock))
    with pytest.raises(ToolError, match=f"only {item.stock - 1} {item.name} left in stock"):
        tools["add_item"].invoke({"item": item.name, "quantity": item.stock})
    with pytest.raises(ToolError, match=f"the order has 1 {item.name}, cannot remove 2"):
        tools["remove_item"].invoke({"item": item.name, "quantity": 2})
    with pytest.raises(ToolError, match="unknown item 'unicorn'; the shop sells: "):
        tools["add_item"].invoke({"item": "unicorn", "quantity": 1})
    assert (order.quantities, order.stock) == before
