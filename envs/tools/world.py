"""A small fictional world generated from a seed: cities, people, companies, and a shop.

The facts exist nowhere else, so an agent has to call ``lookup`` to learn them. Names are
built from syllables; the first letter of a name decides its split (``TRAIN_ONSETS`` vs
``TEST_ONSETS``), so a world of the test split never contains a name a train world can
contain, and the two sets are disjoint by construction (tests check it anyway).
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any, Callable

from envs.tools.errors import ToolError

TRAIN_ONSETS = ("B", "D", "G", "K", "M", "T", "V", "Z")
TEST_ONSETS = ("F", "H", "L", "N", "P", "R", "S", "W")
_VOWELS = ("a", "e", "i", "o", "u")
_MIDDLES = ("l", "r", "n", "m", "th", "v", "s", "d", "ll", "rr")
_CITY_ENDS = ("", "a", "on", "ar", "ia", "holm", "ford", "mere", "ton")
_FIRST_ENDS = ("a", "o", "in", "el", "ar", "ie", "en")
_FAMILY_ENDS = ("ley", "sen", "wick", "dor", "ard", "ing")
_COMPANY_SUFFIXES = ("Corp", "Works", "Labs", "Foods", "Motors", "Systems")
_COUNTRIES = ("Ostravia", "Kelmar", "Dunmere", "Valdoria", "Eskeland")
_INDUSTRIES = ("software", "farming", "shipping", "energy", "retail", "mining")
TRAIN_ITEM_ADJECTIVES = ("red", "blue", "green", "oak", "steel", "paper")
TEST_ITEM_ADJECTIVES = ("amber", "teal", "ivory", "cedar", "copper", "linen")
_ITEM_NOUNS = ("mug", "pen", "lamp", "chair", "notebook", "kettle", "basket", "clock")

N_CITIES, N_PEOPLE, N_COMPANIES, N_ITEMS = 6, 6, 4, 6


def _date(rng: random.Random, first_year: int, last_year: int) -> str:
    start = dt.date(first_year, 1, 1).toordinal()
    end = dt.date(last_year, 12, 31).toordinal()
    return dt.date.fromordinal(rng.randint(start, end)).isoformat()


#: kind -> attribute -> (how a question names it, how a value is drawn). Attribute names
#: carry their unit (``area_km2``), so a result needs no unit text.
ATTRIBUTES: dict[str, dict[str, tuple[str, Callable[[random.Random], Any]]]] = {
    "city": {
        "population": ("population", lambda r: r.randint(5_000, 3_000_000)),
        "area_km2": ("area in km2", lambda r: round(r.uniform(10, 900), 1)),
        "elevation_m": ("elevation in metres", lambda r: r.randint(2, 2500)),
        "avg_temp_c": ("average temperature in degrees Celsius",
                       lambda r: round(r.uniform(-5, 28), 1)),
        "founded": ("founding date", lambda r: _date(r, 1500, 1950)),
        "country": ("country", lambda r: r.choice(_COUNTRIES)),
    },
    "person": {
        "height_cm": ("height in cm", lambda r: r.randint(150, 200)),
        "weight_kg": ("weight in kg", lambda r: round(r.uniform(45, 110), 1)),
        "birth_date": ("birth date", lambda r: _date(r, 1945, 2005)),
        # city and employer are filled in from the world's own entities.
        "city": ("home city", None),
        "employer": ("employer", None),
    },
    "company": {
        "employees": ("number of employees", lambda r: r.randint(20, 50_000)),
        "revenue_musd": ("revenue in million USD", lambda r: round(r.uniform(1, 5000), 1)),
        "founded": ("founding date", lambda r: _date(r, 1850, 2015)),
        "headquarters": ("headquarters city", None),
        "industry": ("industry", lambda r: r.choice(_INDUSTRIES)),
    },
}
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(
    dict.fromkeys(a for attrs in ATTRIBUTES.values() for a in attrs)
)


def _onsets(split: str) -> tuple[str, ...]:
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    return TRAIN_ONSETS if split == "train" else TEST_ONSETS


def _stem(rng: random.Random, onsets: tuple[str, ...]) -> str:
    return rng.choice(onsets) + rng.choice(_VOWELS) + rng.choice(_MIDDLES)


def city_name(rng: random.Random, split: str) -> str:
    return _stem(rng, _onsets(split)) + rng.choice(_CITY_ENDS)


def person_name(rng: random.Random, split: str) -> str:
    onsets = _onsets(split)
    return f"{_stem(rng, onsets)}{rng.choice(_FIRST_ENDS)} {_stem(rng, onsets)}{rng.choice(_FAMILY_ENDS)}"


def company_name(rng: random.Random, split: str) -> str:
    return f"{_stem(rng, _onsets(split)).capitalize()}{rng.choice(_VOWELS)} {rng.choice(_COMPANY_SUFFIXES)}"


def item_name(rng: random.Random, split: str) -> str:
    adjectives = TRAIN_ITEM_ADJECTIVES if split == "train" else TEST_ITEM_ADJECTIVES
    return f"{rng.choice(adjectives)} {rng.choice(_ITEM_NOUNS)}"


def name_key(name: str) -> str:
    """How names are matched: case and surrounding/inner whitespace do not matter."""
    return " ".join(name.split()).lower()


@dataclass(frozen=True)
class Entity:
    """One thing in the world: a name, a kind (city, person, company) and its facts."""

    name: str
    kind: str
    facts: dict[str, Any]


@dataclass(frozen=True)
class Item:
    """A product of the shop: unit price and how many are in stock."""

    name: str
    price: float
    stock: int


@dataclass
class World:
    """The entities and shop items of one episode."""

    split: str
    entities: dict[str, Entity] = field(default_factory=dict)  # name_key -> entity
    items: dict[str, Item] = field(default_factory=dict)  # name_key -> item

    def of_kind(self, kind: str) -> list[Entity]:
        return [e for e in self.entities.values() if e.kind == kind]

    def entity(self, name: str) -> Entity:
        """The entity called ``name`` (case-insensitive); unknown names raise ToolError."""
        e = self.entities.get(name_key(name))
        if e is None:
            known = ", ".join(x.name for x in self.entities.values())
            raise ToolError(f"unknown entity {name!r}; known entities: {known}")
        return e

    def lookup(self, name: str, attribute: str) -> Any:
        """One fact; an attribute the entity's kind does not have raises ToolError."""
        e = self.entity(name)
        if attribute not in e.facts:
            raise ToolError(
                f"{e.name} is a {e.kind}; its attributes are: {', '.join(e.facts)}"
            )
        return e.facts[attribute]

    def item(self, name: str) -> Item:
        it = self.items.get(name_key(name))
        if it is None:
            raise ToolError(
                f"unknown item {name!r}; the shop sells: {', '.join(i.name for i in self.items.values())}"
            )
        return it

    def names(self) -> set[str]:
        return {e.name for e in self.entities.values()} | {i.name for i in self.items.values()}


def _unique(rng: random.Random, make: Callable[[random.Random, str], str], split: str,
            n: int, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        name = make(rng, split)
        if name_key(name) not in taken:
            taken.add(name_key(name))
            out.append(name)
    return out


def make_world(rng: random.Random, split: str) -> World:
    """Generate a world whose names all belong to ``split`` ("train" or "test")."""
    world = World(split=split)
    taken: set[str] = set()
    cities = _unique(rng, city_name, split, N_CITIES, taken)
    people = _unique(rng, person_name, split, N_PEOPLE, taken)
    companies = _unique(rng, company_name, split, N_COMPANIES, taken)
    links = {"city": cities, "employer": companies, "headquarters": cities}
    for kind, names in (("city", cities), ("company", companies), ("person", people)):
        for name in names:
            facts = {
                attr: (rng.choice(links[attr]) if draw is None else draw(rng))
                for attr, (_, draw) in ATTRIBUTES[kind].items()
            }
            world.entities[name_key(name)] = Entity(name, kind, facts)
    for name in _unique(rng, item_name, split, N_ITEMS, taken):
        price = round(rng.randint(50, 4000) / 100, 2)
        world.items[name_key(name)] = Item(name, price, rng.randint(3, 9))
    return world
