"""Benchmark: where does a student part from its teacher, state by state?

    .venv/bin/python benchmarks/student_states.py --student runs/student/best --env-id babyai-goto-local
    .venv/bin/python benchmarks/student_states.py --student runs/student/best --env-id taxi --every 1

The expert plays ``test`` seeds; on every ``--every``-th state of its episodes the student
(``hf:``, greedy, the one prompt renderer) writes its own completion. Each state counts
whether the student's whole rationale is the expert's, word for word, and whether its action
is; states are grouped by the expert's action. An episode's success hides where a student
goes wrong; this shows it (a rationale right up to the action, or wrong from its first
words). Prints a table and some mismatches, and appends one line to
``benchmarks/results/student_states.jsonl``.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import torch
import tyro
from rich.console import Console
from rich.table import Table

RESULTS = "student_states"


@dataclasses.dataclass(frozen=True)
class Config:
    """Greedy completions of a student on the expert's held-out states."""

    student: str
    """A student checkpoint directory (played through transformers, greedy)."""
    env_id: str = "babyai-goto-local"
    """The env whose expert plays the states."""
    episodes: int = 20
    """Expert episodes on ``test`` seeds."""
    every: int = 2
    """Ask the student on every N-th state of each episode (1: all)."""
    show: int = 8
    """Mismatches to print (expert line, then student line)."""
    threads: int = 1
    """torch threads."""
    results_dir: Path | None = None
    """Where student_states.jsonl is appended (default benchmarks/results)."""


def main(cfg: Config) -> dict:
    from common import append_result, recorded_states, stamp

    from agent.policies import load_policy

    if cfg.every < 1 or cfg.episodes < 1:
        raise SystemExit(f"--every and --episodes: expected >= 1, got {cfg.every} and {cfg.episodes}")
    at_start = stamp()
    torch.set_num_threads(cfg.threads)
    policy = load_policy(f"hf:{cfg.student}")
    states = recorded_states(cfg.env_id, cfg.episodes, policy.prompt_variant)[::cfg.every]
    console, shown = Console(), 0
    n, rationale_right, action_right = Counter(), Counter(), Counter()
    for ctx, expert in states:
        got = policy.act(ctx)
        kind = expert.action
        n[kind] += 1
        rationale_right[kind] += got.rationale.strip() == expert.rationale.strip()
        action_right[kind] += got.action == expert.action
        if got.rationale.strip() != expert.rationale.strip() and shown < cfg.show:
            shown += 1
            console.print(f"[green]expert [/green] {expert.rationale} -> {expert.action}", highlight=False)
            console.print(f"[red]student[/red] {got.rationale} -> {got.action}\n", highlight=False)
    table = Table("expert action", "states", "rationale right", "action right")
    by_action = {}
    for kind in sorted(n):
        by_action[kind] = {"states": n[kind], "rationale_right": rationale_right[kind],
                           "action_right": action_right[kind]}
        table.add_row(kind[:40], str(n[kind]), str(rationale_right[kind]), str(action_right[kind]))
    total = sum(n.values())
    table.add_row("all", str(total), str(sum(rationale_right.values())), str(sum(action_right.values())))
    console.print(table)
    line = {**at_start, "config": {**dataclasses.asdict(cfg), "results_dir": None}, "states": total,
            "rationale_right": sum(rationale_right.values()), "action_right": sum(action_right.values()),
            "by_action": by_action}
    append_result(RESULTS, line, cfg.results_dir)
    return line


if __name__ == "__main__":
    main(tyro.cli(Config))
