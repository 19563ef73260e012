"""Trace files: one episode per JSON line, versioned, appended as episodes finish.

A trace file is what a teacher leaves and what a student learns from. Writing appends one
complete line per finished episode and flushes it, so a killed collection loses at most the
episode in flight; ``repair_torn_tail`` removes a half-written last line before appending
again. Reading validates every line: a corrupt line is reported with its number and skipped
(or raises with ``strict=True``); a file of another schema version is a clear error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from agent.types import Episode, Step

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_STEP_FIELDS = {f.name for f in fields(Step)}
_EPISODE_FIELDS = {f.name for f in fields(Episode)} - {"steps"}
_REQUIRED = ("env_id", "seed", "teacher", "prompt_format", "steps", "success")


class TraceError(ValueError):
    """A trace file or line that does not hold what agentkd expects."""


def episode_to_line(episode: Episode) -> str:
    d = {"schema": SCHEMA_VERSION, **episode.to_dict()}
    return json.dumps(d, ensure_ascii=False, separators=(",", ":")) + "\n"


def episode_from_dict(d: Any, where: str) -> Episode:
    """Validate one decoded line and build the Episode; errors name ``where``."""
    if not isinstance(d, dict):
        raise TraceError(f"{where}: expected a JSON object, got {type(d).__name__}")
    schema = d.get("schema")
    if schema != SCHEMA_VERSION:
        raise TraceError(
            f"{where}: trace schema version {schema!r}, expected {SCHEMA_VERSION}; "
            "re-collect the traces with this version of agentkd"
        )
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise TraceError(f"{where}: missing field(s) {', '.join(missing)}")
    if not isinstance(d["steps"], list):
        raise TraceError(f"{where}: 'steps' must be a list, got {type(d['steps']).__name__}")
    steps = []
    for i, s in enumerate(d["steps"]):
        if not isinstance(s, dict):
            raise TraceError(f"{where}: step {i} is not an object")
        absent = [k for k in ("observation", "action", "valid", "reward") if k not in s]
        if absent:
            raise TraceError(f"{where}: step {i} lacks {', '.join(absent)}")
        s = {k: v for k, v in s.items() if k in _STEP_FIELDS}
        s.setdefault("legal_actions", [])
        s.setdefault("rationale", "")
        s.setdefault("raw", "")
        steps.append(Step(**s))
    kwargs = {k: v for k, v in d.items() if k in _EPISODE_FIELDS}
    return Episode(steps=steps, **kwargs)


def repair_torn_tail(path: str | os.PathLike[str]) -> bool:
    """Cut a last line that has no newline (a write killed half-way). Returns True if cut."""
    p = Path(path)
    if not p.exists() or p.stat().st_size == 0:
        return False
    with open(p, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return False
        data = p.read_bytes()
        keep = data.rfind(b"\n") + 1
        f.seek(keep)
        f.truncate()
    log.warning("%s: discarded a torn last line (%d bytes) left by an interrupted write",
                path, len(data) - keep)
    return True


class TraceWriter:
    """Appends episodes to a trace file, one flushed line each (use as a context manager).

    A line goes to the file in one unbuffered ``write`` call: a buffered text file splits a
    line longer than its 8 KiB buffer into several calls, and a kill between them left a
    torn line (long Taxi episodes did)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_torn_tail(self.path)
        self._f = open(self.path, "ab", buffering=0)

    def write(self, episode: Episode) -> None:
        self.write_many([episode])

    def write_many(self, episodes: list[Episode]) -> None:
        """Append several episodes in one ``write`` call (the labelled states of one rollout:
        a kill leaves all of them or none, short of a torn last line)."""
        data = memoryview("".join(episode_to_line(e) for e in episodes).encode("utf-8"))
        while data:  # a regular file takes it whole; loop in case a call writes less
            data = data[self._f.write(data):]
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_traces(
    path: str | os.PathLike[str], *, strict: bool = False, errors: list[str] | None = None
) -> Iterator[Episode]:
    """Yield the episodes of a trace file.

    Args:
        path: the JSONL file.
        strict: raise ``TraceError`` on the first bad line instead of skipping it.
        errors: if given, each skipped line's message is appended to it.
    """
    p = Path(path)
    if not p.is_file():
        raise TraceError(f"trace file {str(p)!r} does not exist")
    with open(p, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{p}:{lineno}"
            try:
                try:
                    d = json.loads(line)
                except json.JSONDecodeError as e:
                    torn = " (torn last line)" if not line.endswith("\n") else ""
                    raise TraceError(f"{where}: not valid JSON{torn}: {e.msg}") from None
                if isinstance(d, dict) and d.get("schema") not in (None, SCHEMA_VERSION):
                    # Another version is never a per-line glitch: stop with a clear error.
                    raise TraceError(
                        f"{where}: trace schema version {d.get('schema')!r}, expected "
                        f"{SCHEMA_VERSION}; re-collect the traces with this version of agentkd"
                    )
                yield episode_from_dict(d, where)
            except TraceError as e:
                if strict or "schema version" in str(e):
                    raise
                log.warning("skipping %s", e)
                if errors is not None:
                    errors.append(str(e))


def iter_appended(path: str | os.PathLike[str]) -> Iterator[Episode]:
    """The episodes of a trace file that a resumable run appends to: none while it does not
    exist, and a torn last line (a write killed half-way) cut before reading."""
    if Path(path).exists():
        repair_torn_tail(path)
        yield from iter_traces(path)


def read_traces(path: str | os.PathLike[str], *, strict: bool = False) -> list[Episode]:
    """All episodes of a trace file (see ``iter_traces``)."""
    return list(iter_traces(path, strict=strict))


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file, recorded as provenance next to what was trained on it."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON to ``path`` through a temp file and a rename, so it is whole or absent."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n",
                   encoding="utf-8")
    os.replace(tmp, p)


def rewrite_traces(path: str | os.PathLike[str], episodes: list[Episode]) -> None:
    """Replace trace file ``path`` by ``episodes``, through a temp file and a rename."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text("".join(episode_to_line(e) for e in episodes), encoding="utf-8")
    os.replace(tmp, p)
