"""``agentkd traces``: inspect or convert a trace file.

    agentkd traces stats traces.jsonl
    agentkd traces export traces.jsonl --format chat --out chat.jsonl

``stats`` counts episodes, successes, steps, invalid actions, tokens and errors, per env.
``export --format chat`` writes one JSON object per step: ``{"messages": [system, ...,
user, assistant], "tools": [...]}`` (``tools`` only for tool envs) - the form Hugging Face
datasets and TRL's SFTTrainer read - rendered by ``agent.prompt`` like every other prompt.
A corrupt line is reported with its line number and skipped (``--strict`` makes it fatal);
a file of another schema version is an error.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tyro
from tyro.conf import Positional

from agent.types import Episode, Turn


@dataclass(frozen=True)
class StatsConfig:
    """Count episodes, successes, steps, invalid actions and tokens per env."""

    file: Positional[str]
    """The trace file (JSONL)."""
    strict: bool = False
    """Stop at the first corrupt line instead of skipping it."""
    json: bool = False
    """Print the stats as JSON instead of a table."""


@dataclass(frozen=True)
class ExportConfig:
    """Convert a trace file to chat messages (+ tools) JSONL, one line per step."""

    file: Positional[str]
    """The trace file (JSONL)."""
    out: str = "chat.jsonl"
    """Output JSONL file (written atomically)."""
    format: Literal["chat"] = "chat"
    """Output format: chat (Hugging Face / TRL messages + tools)."""
    variant: str = "full"
    """Prompt variant to render: full or compact."""
    only_success: bool = False
    """Export only successful episodes."""
    include_invalid: bool = False
    """Also export steps whose action the env refused."""
    strict: bool = False
    """Stop at the first corrupt line instead of skipping it."""


def _episodes(path: str, strict: bool, errors: list[str]) -> list[Episode]:
    from distill.traces import iter_traces

    return list(iter_traces(path, strict=strict, errors=errors))


def trace_stats(path: str | os.PathLike[str], *, strict: bool = False) -> dict[str, Any]:
    """Stats of a trace file: ``{"file", "corrupt_lines", "total": {...}, "per_env": {env: {...}}}``
    where each group holds episodes, successes, success_rate, steps, mean_steps, invalid,
    invalid_rate, prompt_tokens, completion_tokens, errors."""
    errors: list[str] = []
    groups: dict[str, dict[str, Any]] = {}
    for ep in _episodes(str(path), strict, errors):
        for key in (ep.env_id, "total"):
            g = groups.setdefault(key, dict.fromkeys(
                ("episodes", "successes", "steps", "invalid", "prompt_tokens", "completion_tokens", "errors"), 0))
            g["episodes"] += 1
            g["successes"] += int(ep.success)
            g["steps"] += ep.n_steps
            g["invalid"] += sum(not s.valid for s in ep.steps)
            g["prompt_tokens"] += sum(s.prompt_tokens for s in ep.steps)
            g["completion_tokens"] += sum(s.completion_tokens for s in ep.steps)
            g["errors"] += int(ep.error is not None)
    for g in groups.values():
        g["success_rate"] = g["successes"] / g["episodes"]
        g["mean_steps"] = g["steps"] / g["episodes"]
        g["invalid_rate"] = g["invalid"] / g["steps"] if g["steps"] else 0.0
    total = groups.pop("total", None)
    return {"file": str(path), "corrupt_lines": errors, "total": total,
            "per_env": dict(sorted(groups.items()))}


def chat_records(episode: Episode, variant: str = "full", *, include_invalid: bool = False,
                 env: Any | None = None) -> list[dict[str, Any]]:
    """One ``{"messages": [...], "tools": [...]}`` record per step of ``episode``.

    The prompt is rebuilt with ``agent.prompt`` exactly as a policy saw it (history = the
    earlier steps as turns, instructions from the env); the assistant
    message is the step's ``Thought:``/``Action:`` completion.
    """
    import envs
    from agent.prompt import make_context, render_completion, render_messages

    env = env or envs.make(episode.env_id, **episode.env_options)
    env.reset(seed=episode.seed)
    records: list[dict[str, Any]] = []
    history: list[Turn] = []
    for step in episode.steps:
        if step.valid or include_invalid:
            ctx = make_context(env, step.observation, {"legal_actions": step.legal_actions}, history, variant)
            messages: list[dict[str, Any]] = render_messages(ctx, variant)
            messages.append({"role": "assistant", "content": render_completion(step.rationale, step.action)})
            rec: dict[str, Any] = {"messages": messages}
            if ctx.tools:
                rec["tools"] = ctx.tools
            records.append(rec)
        history.append(step.turn())
    return records


def export_chat(cfg: ExportConfig) -> tuple[int, int, list[str]]:
    """Write ``cfg.file`` as chat JSONL to ``cfg.out`` (atomically).

    Returns:
        (episodes exported, records written, corrupt-line messages).
    """
    import envs
    from agent.prompt import check_variant

    check_variant(cfg.variant)
    errors: list[str] = []
    episodes = [e for e in _episodes(cfg.file, cfg.strict, errors) if e.success or not cfg.only_success]
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    cache: dict[str, Any] = {}
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for ep in episodes:
            key = json.dumps([ep.env_id, ep.env_options], sort_keys=True, default=str)
            if key not in cache:
                cache[key] = envs.make(ep.env_id, **ep.env_options)
            for rec in chat_records(ep, cfg.variant, include_invalid=cfg.include_invalid, env=cache[key]):
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                n += 1
    os.replace(tmp, out)
    return len(episodes), n, errors


def _print_stats(stats: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=stats["file"])
    table.add_column("env", no_wrap=True)
    for col in ("episodes", "success", "steps", "invalid", "tokens", "errors"):
        table.add_column(col, justify="right")
    rows = [*stats["per_env"].items(), ("total", stats["total"])]
    for name, g in rows:
        table.add_row(name, str(g["episodes"]), f"{g['successes']} ({g['success_rate']:.1%})",
                      f"{g['steps']} ({g['mean_steps']:.1f}/ep)", f"{g['invalid_rate']:.1%}",
                      f"{g['prompt_tokens']}+{g['completion_tokens']}", str(g["errors"]))
    Console().print(table)


USAGE = """usage: agentkd traces {stats,export} FILE [options]

  stats FILE                              episodes, success, steps, invalid rate, tokens per env
  export FILE --format chat --out OUT     chat messages (+ tools) JSONL, one line per step

agentkd traces stats --help / agentkd traces export --help for the options."""


def cli(argv: list[str]) -> int:
    """``agentkd traces stats FILE`` | ``agentkd traces export FILE --format chat --out F``."""
    from distill.traces import TraceError

    if not argv or argv[0] not in ("stats", "export"):
        print(USAGE, file=sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        if argv[0] == "stats":
            scfg = tyro.cli(StatsConfig, args=argv[1:], prog="agentkd traces stats")
            stats = trace_stats(scfg.file, strict=scfg.strict)
            if stats["total"] is None:
                print(f"agentkd traces: {scfg.file}: no valid episodes", file=sys.stderr)
                return 1
            if scfg.json:
                print(json.dumps(stats, indent=2))
            else:
                _print_stats(stats)
            if stats["corrupt_lines"]:
                print(f"{len(stats['corrupt_lines'])} corrupt line(s) skipped:", file=sys.stderr)
                for msg in stats["corrupt_lines"]:
                    print(f"  {msg}", file=sys.stderr)
            return 0
        ecfg = tyro.cli(ExportConfig, args=argv[1:], prog="agentkd traces export")
        n_eps, n_recs, errors = export_chat(ecfg)
        for msg in errors:
            print(f"skipped {msg}", file=sys.stderr)
        print(f"{ecfg.out}: {n_recs} chat records from {n_eps} episodes")
        return 0
    except (TraceError, ValueError) as e:
        print(f"agentkd traces: {e}", file=sys.stderr)
        return 1
