"""The stateful tool family: one shopping order against the world's shop.

The order of calls matters: an item can only be removed once it is in the order, and the
shop's stock limits how many can be added, so "add 3, remove 2, add 2" works where "add 5"
does not. Every method checks everything before it changes anything, so a failed call
(a ``ToolError``) leaves the order and the stock exactly as they were.
"""

from __future__ import annotations

from envs.tools.calculator import format_number
from envs.tools.errors import ToolError
from envs.tools.world import World

MAX_QUANTITY = 100


class Order:
    """An order being built: item name -> quantity, plus the shop's remaining stock."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.quantities: dict[str, int] = {}
        self.stock: dict[str, int] = {it.name: it.stock for it in world.items.values()}

    def _check_quantity(self, quantity: int) -> None:
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise ToolError(f"quantity: expected a whole number, got {quantity!r}")
        if not 1 <= quantity <= MAX_QUANTITY:
            raise ToolError(f"quantity: expected 1 to {MAX_QUANTITY}, got {quantity}")

    def add(self, item: str, quantity: int) -> str:
        """Put ``quantity`` of ``item`` into the order, taking them from stock."""
        self._check_quantity(quantity)
        name = self.world.item(item).name
        if quantity > self.stock[name]:
            raise ToolError(f"only {self.stock[name]} {name} left in stock, cannot add {quantity}")
        self.stock[name] -= quantity
        self.quantities[name] = self.quantities.get(name, 0) + quantity
        return f"added {quantity} {name}; the order has {self.quantities[name]} {name}"

    def remove(self, item: str, quantity: int) -> str:
        """Take ``quantity`` of ``item`` out of the order, back into stock."""
        self._check_quantity(quantity)
        name = self.world.item(item).name
        have = self.quantities.get(name, 0)
        if quantity > have:
            raise ToolError(f"the order has {have} {name}, cannot remove {quantity}")
        self.stock[name] += quantity
        if have == quantity:
            del self.quantities[name]
        else:
            self.quantities[name] = have - quantity
        return f"removed {quantity} {name}; the order has {have - quantity} {name}"

    def listing(self) -> str:
        """The order's lines, in the order items were first added, and the item count."""
        if not self.quantities:
            return "the order is empty (0 items)"
        lines = ", ".join(f"{q} {name}" for name, q in self.quantities.items())
        return f"{lines} ({self.count()} items)"

    def count(self) -> int:
        return sum(self.quantities.values())

    def total(self) -> float:
        """The order's price: sum of quantity x unit price, rounded to cents."""
        return round(sum(q * self.world.item(n).price for n, q in self.quantities.items()), 2)

    def total_text(self) -> str:
        return format_number(self.total())
