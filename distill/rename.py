"""Entity renaming: train on made-up names the student has never seen, every episode anew.

    agentkd train --traces t.jsonl --student micro --rename-entities --out runs/micro

A tool-use world invents its names (``Bala Tirsen``, ``Vell``), and the test worlds invent
theirs from letters no train world uses (``envs.tools.world``), so an answer that names the
right person must copy the name from the question. A student that saw the same few hundred
train names thousands of times learns them as words and writes one it knows instead
(BENCHMARKS.md, Training quality). Renaming gives each training episode fresh names,
consistently across its steps (question, tool results, rationale and action alike), so no
name recurs and only a copy predicts it.

The new names keep the old name's shape (number of words, capitals) and are drawn from a
generator seeded by the run's seed and the episode (and, for pieces, the tokenizer the run
saved), so a resumed run rebuilds the same examples. They are built from the student
tokenizer's own short letter pieces, each as likely as any other (``--rename-from
pieces``, the default), or like words (``--rename-from letters``: consonant and vowel
groups drawn from the whole alphabet). A name the student must copy at test time is
written in pieces of its vocabulary, and a piece that made-up words rarely hold (``sen``
in ``Pel|sen``) is one a letters-trained student has hardly ever written, so it writes a
commoner one in its place; strung from the pieces, every short letter piece is about as
likely in a training name as any other. They never consult an env's test split: a test
name can come up only by chance.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from typing import Any

_CONSONANTS = "bcdfghjklmnprstvwxz"
_VOWELS = "aeiouy"
_CLUSTERS = ("th", "sh", "ch", "st", "nd", "rr", "ll", "br", "kr", "tr", "gl", "ss")


#: Draws for one new name before renaming gives up (a piece set far too small for the world).
_TRIES = 1000


def word_pieces(tok: Any, longest: int = 4) -> list[str]:
    """The letter pieces of a tokenizer's vocabulary: tokens that are 1-``longest`` ASCII
    letters once the word-start mark (byte-level ``Ġ``, SentencePiece ``▁``) is dropped,
    lower-cased, distinct and sorted. Longer ones are mostly the prompts' own words
    (``fahrenheit``), not name parts."""
    out = {t.removeprefix("Ġ").removeprefix("▁").lower() for t in tok.get_vocab()}
    return sorted(p for p in out if p.isascii() and p.isalpha() and len(p) <= longest)


def fresh_word(rng: random.Random, like: str, pieces: Sequence[str] | None = None) -> str:
    """A made-up word about as long as ``like``, capitalised when it is: 3-10 letters of
    consonant and vowel groups, or, when ``pieces`` is given, pieces (each as likely) strung
    until it has 3-10 letters (so at most 9 more than that)."""
    target = max(3, min(10, len(like) + rng.randint(-2, 2)))
    if pieces is not None:
        if not pieces:
            raise ValueError("rename pieces: expected letter pieces to build names from, got none")
        out = ""
        while len(out) < target:
            out += rng.choice(pieces)
        return out.capitalize() if like[:1].isupper() else out
    out, vowel = "", rng.random() < 0.3
    while len(out) < target:
        if vowel:
            out += rng.choice(_VOWELS)
        else:
            out += rng.choice(_CLUSTERS) if rng.random() < 0.15 else rng.choice(_CONSONANTS)
        vowel = not vowel
    out = out[:target]
    return out.capitalize() if like[:1].isupper() else out


def fresh_names(names: Iterable[str], rng: random.Random,
                pieces: Sequence[str] | None = None) -> dict[str, str]:
    """Map each name to a new one of the same words' shape (words from ``pieces`` when
    given, see ``fresh_word``); distinct names stay distinct, and no new name equals an old
    one (case-insensitive)."""
    old = sorted(set(names))
    taken = {n.lower() for n in old}
    out: dict[str, str] = {}
    for name in old:
        for _ in range(_TRIES):
            new = " ".join(fresh_word(rng, w, pieces) for w in name.split(" "))
            if new.lower() not in taken:
                break
        else:
            source = f"the pieces ({len(pieces)})" if pieces is not None else "the letters"
            raise ValueError(f"renaming {name!r}: no new name unlike the {len(taken)} taken ones in {_TRIES} "
                             f"draws; {source} are too few to rename this world")
        taken.add(new.lower())
        out[name] = new
    return out


class Renamer:
    """Replace whole-word occurrences of the mapped names, longest first, in one pass (so a
    replacement is never replaced again)."""

    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = {k: v for k, v in mapping.items() if k}
        keys = sorted(self.mapping, key=len, reverse=True)
        self._re = re.compile(r"(?<!\w)(" + "|".join(map(re.escape, keys)) + r")(?!\w)") if keys else None

    def __call__(self, text: str) -> str:
        if self._re is None:
            return text
        return self._re.sub(lambda m: self.mapping[m.group(1)], text)


def episode_rng(seed: int, env_id: str, episode_seed: int) -> random.Random:
    """The names' generator of one episode: the same for the same run seed and episode."""
    return random.Random(f"rename:{seed}:{env_id}:{episode_seed}")
