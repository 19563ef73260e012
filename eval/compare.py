"""``agentkd compare``: several policies on the same held-out seeds, and a report.

    agentkd compare --policy expert --policy hf:runs/demo/student \\
        --policy gguf:runs/demo/export/student-q8_0.gguf \\
        --policy gguf:runs/demo/export/student-q4_k_m.gguf \\
        --env frozenlake-4x4,taxi --episodes 50 --out runs/compare

The first ``--policy`` is the teacher unless ``--teacher`` names another. Every policy meets
exactly the same test seeds; the episodes go to ``OUT/episodes.jsonl`` (resumable, like
``agentkd eval``). For each student the report adds the retention (student success /
teacher success) and the action agreement with the teacher on the teacher's own states:
the teacher's recorded episodes are replayed step by step, each state is rendered with
``agent.prompt.make_context`` in the student's own prompt variant, and the student's
action is compared with the one the teacher took there.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import tyro

from agent.types import Episode
from distill.traces import write_json_atomic
from eval.evaluate import RECORDS, RunOptions, eval_seeds, parse_env_list, run_policies
from eval.metrics import EnvMetrics, all_metrics, canonical_action

log = logging.getLogger(__name__)

AGREEMENT_FILE = "agreement.json"


@dataclass(frozen=True)
class CompareConfig(RunOptions):
    """Compare policies on the same test seeds and write report.md/json + chart.png."""

    policy: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """Policy spec, repeat for each policy (expert | openai:MODEL | gguf:PATH | hf:PATH)."""
    env: str = "frozenlake-4x4"
    """Env id, or several separated by commas."""
    episodes: int = 20
    """Episodes per env and policy (the first N test seeds of each env)."""
    out: Path = Path("runs/compare")
    """Output directory: episodes.jsonl, report.json, report.md, chart.png."""
    teacher: str | None = None
    """The reference policy for retention and agreement (default: the first --policy)."""
    agreement_states: int = 200
    """Teacher states replayed per (student, env) for action agreement (0: skip)."""
    seed_start: int = 0
    """Index of the first test seed."""


@dataclass
class CompareResult:
    """What ``compare`` produced."""

    rows: list[EnvMetrics]
    report: dict[str, Any]
    paths: Any  # eval.report.ReportPaths
    agreement: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)


def action_agreement(
    policy: Any, teacher_episodes: Sequence[Episode], max_states: int
) -> tuple[int, int]:
    """How often ``policy`` picks the teacher's action on the teacher's own states.

    Each teacher episode is replayed: the env is reset to its seed (policies that read
    the env, like the expert, then see the teacher's state), and at step t the context is
    built from the recorded observation, legal actions and the teacher's earlier steps
    (its history); after asking the policy, the teacher's action is applied.

    Returns:
        ``(agreeing, states)``; a backend error counts as a disagreement.
    """
    import envs
    from agent.prompt import make_context

    agree = n = 0
    for ep in teacher_episodes:
        if n >= max_states:
            break
        env = envs.make(ep.env_id, **ep.env_options)
        env.reset(seed=ep.seed)
        policy.reset(env)
        live = True
        for t, step in enumerate(ep.steps):
            if n >= max_states:
                break
            history = [s.turn() for s in ep.steps[:t]]
            ctx = make_context(env, step.observation, {"legal_actions": step.legal_actions},
                               history, policy.prompt_variant)
            decision = policy.act(ctx)
            n += 1
            agree += int(decision.error is None
                         and canonical_action(decision.action) == canonical_action(step.action))
            if live:
                _, _, term, trunc, _ = env.step(step.action)
                live = not (term or trunc)
    return agree, n


def _agreements(
    students: Sequence[str], teacher: str, episodes: Sequence[Episode], env_ids: Sequence[str],
    out: Path, max_states: int, options: RunOptions,
) -> dict[tuple[str, str], tuple[int, int]]:
    """Agreement per (student, env), cached in ``OUT/agreement.json`` for resumes."""
    from agent.policies import load_policy

    cache_path = out / AGREEMENT_FILE
    cache: dict[str, Any] = {}
    if cache_path.exists():
        try:
            cache = json.loads(cache_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{cache_path}: expected the JSON of a previous compare, got invalid JSON "
                f"({e.msg}); delete the file to recompute it") from None
    result: dict[tuple[str, str], tuple[int, int]] = {}
    by_env = {env: sorted((e for e in episodes if e.teacher == teacher and e.env_id == env),
                          key=lambda e: e.seed) for env in env_ids}
    for student in students:
        policy = None
        for env in env_ids:
            key = f"{student}|{teacher}|{env}|{max_states}"
            if key not in cache:
                if policy is None:
                    policy = load_policy(student, **options.load_kwargs(student))
                cache[key] = list(action_agreement(policy, by_env[env], max_states))
                write_json_atomic(cache_path, cache)
            result[(student, env)] = tuple(cache[key])  # type: ignore[assignment]
    return result


def compare(cfg: CompareConfig) -> CompareResult:
    """Run every policy on the same seeds, measure agreement, and write the report."""
    from eval.report import build_report, write_report

    policies = list(dict.fromkeys(cfg.policy))
    if not policies:
        raise ValueError("compare: expected at least one --policy SPEC, got none")
    teacher = cfg.teacher or policies[0]
    if teacher not in policies:
        policies.insert(0, teacher)  # the teacher is run on the same seeds too
    env_ids = parse_env_list(cfg.env)
    seeds = eval_seeds(env_ids, cfg.episodes, cfg.seed_start)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    config = {"command": "compare", **dataclasses.asdict(cfg), "api_key": None}
    write_json_atomic(out / "compare_config.json", config)
    options = cfg.run_options()
    episodes = run_policies(policies, seeds, out, options)
    rows = all_metrics(episodes, policies, env_ids)
    students = [p for p in policies if p != teacher]
    agreement = (_agreements(students, teacher, episodes, env_ids, out, cfg.agreement_states,
                             options) if cfg.agreement_states > 0 else {})
    report = build_report(rows, policies=policies, env_ids=env_ids, teacher=teacher,
                          agreement=agreement, records=RECORDS, config=config)
    return CompareResult(rows=rows, report=report, paths=write_report(report, out),
                         agreement=agreement)


def cli(argv: list[str]) -> int:
    import sys

    from rich.console import Console

    from eval.report import rich_table

    cfg = tyro.cli(CompareConfig, args=argv, prog="agentkd compare")
    try:
        result = compare(cfg)
    except ValueError as e:  # bad spec, env id, option value: one line, no traceback
        print(f"agentkd compare: {e}", file=sys.stderr)
        return 1
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(rich_table(result.report))
    console.print(f"report: {result.paths.markdown}")
    return 0


__all__ = ["CompareConfig", "CompareResult", "action_agreement", "cli", "compare"]
