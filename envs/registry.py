"""The env registry: ids, construction, and disjoint train/test seeds.

Env modules are imported lazily (by dotted path) so that ``import envs`` stays cheap and an
env family whose optional dependency is missing does not break the others.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Literal

from envs.base import TextEnv

Split = Literal["train", "test"]
SPLITS: tuple[str, ...] = ("train", "test")


@dataclass(frozen=True)
class EnvSpec:
    """How to build one registered env id."""

    id: str
    entry_point: str  # "module.path:ClassName"
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""


_REGISTRY: dict[str, EnvSpec] = {}


def register(spec: EnvSpec) -> None:
    """Add an env id; registering the same id twice is an error, not an override."""
    if spec.id in _REGISTRY:
        raise ValueError(f"env id {spec.id!r} is already registered")
    _REGISTRY[spec.id] = spec


def list_envs() -> list[str]:
    """All registered env ids, sorted."""
    return sorted(_REGISTRY)


def spec(env_id: str) -> EnvSpec:
    """The spec of ``env_id``; an unknown id is an error that lists the valid ones."""
    try:
        return _REGISTRY[env_id]
    except KeyError:
        raise ValueError(
            f"unknown env id {env_id!r}; expected one of: {', '.join(list_envs())}"
        ) from None


def _load_class(entry_point: str) -> type[TextEnv]:
    module_name, _, cls_name = entry_point.partition(":")
    return getattr(importlib.import_module(module_name), cls_name)


def env_options(env_id: str) -> dict[str, Any]:
    """The keyword options ``make(env_id, ...)`` accepts, with their defaults."""
    s = spec(env_id)
    cls = _load_class(s.entry_point)
    params = inspect.signature(cls.__init__).parameters
    opts = {
        name: p.default
        for name, p in params.items()
        if name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }
    opts.update(s.kwargs)
    for fixed in s.kwargs:  # fixed by the id itself (e.g. the map size), not user options
        opts.pop(fixed, None)
    return opts


def make(env_id: str, **kwargs: Any) -> TextEnv:
    """Build a registered env.

    Args:
        env_id: a registered id (see ``list_envs()``).
        **kwargs: env options (for example ``slippery=True``); an unknown option is an
            error that lists the valid ones.
    """
    s = spec(env_id)
    valid = env_options(env_id)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        shown = ", ".join(f"{k}={v!r}" for k, v in valid.items()) or "(none)"
        raise ValueError(
            f"{env_id}: unknown option(s) {', '.join(unknown)}; valid options: {shown}"
        )
    cls = _load_class(s.entry_point)
    env = cls(**{**s.kwargs, **kwargs})
    env.env_id = env_id
    return env


def split_of(seed: int) -> Split:
    """The split a seed belongs to: even seeds train, odd seeds test.

    Envs that hold out content for the test split (entity names, question templates) ask
    this, so the hold-out follows the seed wherever it is used.
    """
    return "train" if seed % 2 == 0 else "test"


def seeds(env_id: str, split: str, n: int, start: int = 0) -> list[int]:
    """``n`` seeds of ``split`` for ``env_id``; train and test seeds never overlap.

    Args:
        env_id: a registered id (checked, so a typo fails here rather than later).
        split: ``"train"`` or ``"test"``.
        n: how many seeds.
        start: index of the first seed, to take further seeds without repeating.
    """
    spec(env_id)
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
    if n < 0 or start < 0:
        raise ValueError(f"n and start must be >= 0, got n={n}, start={start}")
    parity = 0 if split == "train" else 1
    return [2 * i + parity for i in range(start, start + n)]
