"""Task kinds of the ``stateful`` family: build an order, then report its total or size.

The order of calls matters: ``remove`` needs the item in the order first, and in the
``restock`` kind adding everything at once would exceed the shop's stock, which only the
removal in between frees up. Each generator sets ``builder.target_order``, the order the
question asks for.
"""

from __future__ import annotations

import random
import re
from typing import Any

from envs.tools.tasks import TEST_ONLY, Kind, PlanBuilder, answer_reason, answer_value
from envs.tools.world import Item, World

Result = tuple[str, Any, str]
_COUNT = re.compile(r"\((\d+) items\)")


def _items(rng: random.Random, world: World, n: int, min_stock: int = 1) -> list[Item]:
    pool = [it for it in world.items.values() if it.stock >= min_stock]
    return rng.sample(pool, n)


def _finish(b: PlanBuilder, want_total: bool) -> Result:
    target: dict[str, int] = {}
    for s in b.steps:
        if s.tool in ("add_item", "remove_item"):
            sign = 1 if s.tool == "add_item" else -1
            target[s.args["item"]] = target.get(s.args["item"], 0) + sign * s.args["quantity"]
    b.target_order = {k: v for k, v in target.items() if v}
    if want_total:
        r = b.call("order_total", "Now I ask for the order total.")
        return "", answer_value(r), answer_reason(r)
    r = b.call("list_items", "Now I list the order to count the items.")
    m = _COUNT.search(r)
    assert m is not None, f"list_items gave {r!r}"
    return "", int(m.group(1)), f"The order holds {m.group(1)} items, so that is the answer."


def _add_total(rng: random.Random, world: World, b: PlanBuilder, text: str) -> Result:
    i1, i2 = _items(rng, world, 2)
    q1, q2 = rng.randint(1, i1.stock), rng.randint(1, i2.stock)
    b.call("add_item", f"First I add {q1} {i1.name}.", item=i1.name, quantity=q1)
    b.call("add_item", f"Now I add {q2} {i2.name}.", item=i2.name, quantity=q2)
    _, answer, why = _finish(b, want_total=True)
    return text.format(q1=q1, i1=i1.name, q2=q2, i2=i2.name), answer, why


def _add_remove_total(rng: random.Random, world: World, b: PlanBuilder, text: str) -> Result:
    i1, i2 = _items(rng, world, 2, min_stock=2)
    q1 = rng.randint(2, i1.stock)
    r, q2 = rng.randint(1, q1 - 1), rng.randint(1, i2.stock)
    b.call("add_item", f"First I add {q1} {i1.name}.", item=i1.name, quantity=q1)
    b.call("remove_item", f"Now I remove {r} {i1.name}.", item=i1.name, quantity=r)
    b.call("add_item", f"Now I add {q2} {i2.name}.", item=i2.name, quantity=q2)
    _, answer, why = _finish(b, want_total=True)
    return text.format(q1=q1, i1=i1.name, r=r, q2=q2, i2=i2.name), answer, why


def _restock(rng: random.Random, world: World, b: PlanBuilder, text: str) -> Result:
    (it,) = _items(rng, world, 1, min_stock=3)
    s = it.stock
    q1 = rng.randint(2, s)
    r = rng.randint(1, q1 - 1)
    q3 = rng.randint(s - q1 + 1, s - q1 + r)  # q1 + q3 > stock: only works after the removal
    b.call("add_item", f"First I add {q1} {it.name}.", item=it.name, quantity=q1)
    b.call("remove_item", f"Now I remove {r} {it.name}, which puts them back in stock.",
           item=it.name, quantity=r)
    b.call("add_item", f"Now I add {q3} more {it.name}.", item=it.name, quantity=q3)
    _, answer, why = _finish(b, want_total=False)
    return text.format(q1=q1, i1=it.name, r=r, q3=q3), answer, why


def _count(rng: random.Random, world: World, b: PlanBuilder, text: str) -> Result:
    items = _items(rng, world, 3)
    qs = [rng.randint(1, it.stock) for it in items]
    for k, (it, q) in enumerate(zip(items, qs)):
        b.call("add_item", f"{'First' if k == 0 else 'Now'} I add {q} {it.name}.", item=it.name, quantity=q)
    _, answer, why = _finish(b, want_total=False)
    fields = {f"q{k + 1}": q for k, q in enumerate(qs)} | {f"i{k + 1}": it.name for k, it in enumerate(items)}
    return text.format(**fields), answer, why


STATEFUL = [
    Kind("add-total", [
        ("Add {q1} {i1} and {q2} {i2} to the order, then tell me the order total.", ""),
        ("Put {q1} {i1} and {q2} {i2} in the order. What does the order cost?", ""),
        ("Order {q1} {i1} plus {q2} {i2} and report the total price.", TEST_ONLY)], _add_total),
    Kind("add-remove-total", [
        ("Add {q1} {i1}, then remove {r} {i1}, then add {q2} {i2}. What is the order total?", ""),
        ("First add {q1} {i1}, next take {r} of them out again, and finally add {q2} {i2}. "
         "How much is the order?", TEST_ONLY)], _add_remove_total),
    Kind("restock", [
        ("Add {q1} {i1}, remove {r} of them, then add {q3} more {i1}. How many items are in the order?", ""),
        ("Start by adding {q1} {i1}; then remove {r}; then add another {q3}. "
         "How many items does the order hold now?", TEST_ONLY)], _restock),
    Kind("count", [
        ("Add {q1} {i1}, {q2} {i2} and {q3} {i3} to the order. How many items does it hold?", ""),
        ("Put {q1} {i1}, {q2} {i2} and {q3} {i3} into the order and count the items.", TEST_ONLY)],
        _count),
]
