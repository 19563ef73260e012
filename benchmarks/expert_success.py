"""Benchmark: how often each env's own expert succeeds on held-out seeds.

    .venv/bin/python benchmarks/expert_success.py                         # every id, 200 seeds
    .venv/bin/python benchmarks/expert_success.py --env-ids taxi cliffwalking --n 50

The issue's target: the expert succeeds on at least 99% of 200 ``test`` seeds of every env
(100% where the env is deterministic). Prints a table (success rate with its 95% Wilson
interval, mean steps, mean return, wall time) and appends one JSON line per env to
``benchmarks/results/expert_success.jsonl``. Ids whose env family cannot be imported here
(a missing optional dependency) are skipped with a note.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any, Literal

import tyro
from rich.console import Console
from rich.table import Table

import envs
from envs.toytext import run_expert
from eval.metrics import wilson_interval
from common import RUN_COMMIT

RESULTS = Path(__file__).resolve().parent / "results" / "expert_success.jsonl"
TARGET = 0.99


@dataclasses.dataclass(frozen=True)
class Config:
    """Run each env's expert on held-out seeds."""

    env_ids: tuple[str, ...] = ()
    """Env ids to run (default: every registered id whose family can be imported)."""
    n: int = 200
    """Seeds per env."""
    split: Literal["train", "test"] = "test"
    """Which seeds: held-out ``test`` (odd) or ``train`` (even)."""
    out: Path = RESULTS
    """JSONL file the results are appended to."""


def bench_env(env_id: str, n: int, split: str) -> dict[str, Any]:
    """Play the expert of ``env_id`` on ``n`` seeds of ``split``; the result line."""
    env = envs.make(env_id)
    start = time.perf_counter()
    runs = [run_expert(env, seed) for seed in envs.seeds(env_id, split, n)]
    wall = time.perf_counter() - start
    successes = sum(r.success for r in runs)
    low, high = wilson_interval(successes, n)
    return {
        "env_id": env_id, "split": split, "episodes": n, "successes": successes,
        "success_rate": successes / n, "wilson95": [round(low, 4), round(high, 4)],
        "mean_steps": sum(r.steps for r in runs) / n,
        "mean_return": sum(r.ret for r in runs) / n,
        "wall_s": round(wall, 2), "target_met": successes / n >= TARGET,
    }


def main(cfg: Config) -> list[dict[str, Any]]:
    console = Console()
    if not console.is_terminal:  # piped to a file: no terminal width to respect
        console = Console(width=120)
    if cfg.n < 1:
        raise SystemExit(f"--n: expected >= 1, got {cfg.n}")
    ids = list(cfg.env_ids) or envs.list_envs()
    try:
        for env_id in ids:
            envs.spec(env_id)
    except ValueError as e:
        raise SystemExit(f"--env-ids: {e}") from None
    lines, stamp = [], {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": RUN_COMMIT,
    }
    table = Table(title=f"Expert success on {cfg.n} {cfg.split} seeds")
    table.add_column("env", no_wrap=True, min_width=max(map(len, ids)))
    for col in ("success", "95% CI", "mean steps", "mean return", "wall s"):
        table.add_column(col, justify="right")
    for env_id in ids:
        try:
            line = {**stamp, **bench_env(env_id, cfg.n, cfg.split)}
        except ImportError as e:
            if cfg.env_ids:  # asked for by name: that is an error, not a skip
                raise
            console.print(f"[yellow]skipped {env_id}: {e}[/yellow]")
            continue
        lines.append(line)
        lo, hi = line["wilson95"]
        style = "" if line["target_met"] else "red"
        table.add_row(env_id, f"{line['success_rate']:.1%}", f"{lo:.3f}-{hi:.3f}",
                      f"{line['mean_steps']:.1f}", f"{line['mean_return']:.2f}",
                      f"{line['wall_s']:.1f}", style=style)
        cfg.out.parent.mkdir(parents=True, exist_ok=True)
        with open(cfg.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
            f.flush()
            os.fsync(f.fileno())
    console.print(table)
    return lines


if __name__ == "__main__":
    main(tyro.cli(Config, prog="benchmarks/expert_success.py"))
