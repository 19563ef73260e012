"""Benchmark: does a micro student trained on expert traces keep the expert's success?

    .venv/bin/python benchmarks/train_quality.py                            # the issue's bar
    .venv/bin/python benchmarks/train_quality.py --env-ids frozenlake-4x4 --train-episodes 100 \\
        --steps 300 --test-episodes 50                                      # a reduced budget

For each env: the env's expert plays ``train`` seeds (traces written with ``TraceWriter``),
``distill.train`` trains a student, and the student plays held-out ``test`` seeds through
transformers (greedy decoding, the one prompt renderer, ``parse_completion``). The issue's
bar: within ~10 minutes of training on 2 CPU cores, success >= 90% of the expert's.
Prints a table and appends one JSON line per env to
``benchmarks/results/train_quality.jsonl`` (config, success with 95% Wilson interval,
training time, tokens/s).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from pathlib import Path
from typing import Literal

import torch
import tyro
from rich.console import Console
from rich.table import Table

import envs
from agent.types import Episode
from distill.student import read_meta
from distill.traces import TraceWriter
from distill.train import TrainConfig, train

RESULTS = Path(__file__).resolve().parent / "results" / "train_quality.jsonl"


@dataclasses.dataclass(frozen=True)
class Config:
    """Train a student per env on expert traces and compare held-out success."""

    env_ids: tuple[str, ...] = ("frozenlake-4x4", "taxi", "babyai-goto-local")
    """Envs to benchmark."""
    student: str = "micro"
    """Student preset."""
    train_episodes: int = 400
    """Expert episodes (train seeds) per env."""
    test_episodes: int = 100
    """Held-out test seeds per env, for both the expert and the student."""
    steps: int = 1000
    """Optimizer steps per env (~10 minutes of micro on 2 free cores; the student's first
    ~300 steps are a plateau, see BENCHMARKS.md)."""
    batch_size: int = 16
    """Examples per step."""
    lr: float = 2e-3
    """Peak learning rate."""
    max_steps: int = 0
    """Cap on steps per held-out episode for expert and student alike (0: the env's own
    limit). A lost student otherwise wanders to the limit (Taxi: 200 steps of generation)."""
    mixed_precision: Literal["no", "bf16"] = "no"
    """``agentkd train --mixed-precision``: no | bf16."""
    action_only: bool = False
    """Train on ``Action: ...`` alone (no rationale): the loss is all on the decision."""
    workdir: str = "runs/train_quality"
    """Where traces and students go."""


def expert_episode(env_id: str, seed: int, max_steps: int = 0) -> Episode:
    """One expert episode as a trace record (rationales included), played by the same
    ``run_episode`` that ``agentkd collect`` uses."""
    from agent.episode import run_episode
    from agent.policies import load_policy

    options = {"max_steps": max_steps} if max_steps else {}
    return run_episode(envs.make(env_id, **options), load_policy("expert"), seed, env_options=options or None)


def student_successes(student_dir: str | Path, env_id: str, seeds: list[int], max_steps: int = 0) -> int:
    """Episodes the student solves, played by the real ``hf:`` policy (greedy) and
    ``agent.episode.run_episode``, the same path ``agentkd eval`` takes."""
    from agent.episode import run_episode
    from agent.policies import load_policy

    policy = load_policy(f"hf:{student_dir}", n_threads=torch.get_num_threads())
    env = envs.make(env_id, **({"max_steps": max_steps} if max_steps else {}))
    return sum(run_episode(env, policy, seed).success for seed in seeds)


def main(cfg: Config) -> None:
    from eval.metrics import wilson_interval

    console = Console()
    table = Table("env", "expert", "student", "ratio", "train s", "tok/s", "val acc")
    work = Path(cfg.workdir)
    for env_id in cfg.env_ids:
        traces = work / f"{env_id}.jsonl"
        if traces.exists():
            traces.unlink()
        with TraceWriter(traces) as w:
            for seed in envs.seeds(env_id, "train", cfg.train_episodes):
                w.write(expert_episode(env_id, seed))
        t0 = time.perf_counter()
        best = train(TrainConfig(traces=str(traces), student=cfg.student, out=str(work / env_id),
                                 steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                                 eval_every=max(cfg.steps // 3, 1), val_frac=0.05, progress=False,
                                 action_only=cfg.action_only,
                                 mixed_precision=cfg.mixed_precision))
        train_s = time.perf_counter() - t0
        meta = read_meta(work / env_id / "last")
        best_meta = read_meta(best)
        test = envs.seeds(env_id, "test", cfg.test_episodes)
        exp = sum(expert_episode(env_id, s, cfg.max_steps).success for s in test)
        stu = student_successes(best, env_id, test, cfg.max_steps)
        n = len(test)
        rec = {
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "env_id": env_id,
            "config": dataclasses.asdict(cfg), "expert_success": exp / n, "student_success": stu / n,
            "student_ci95": wilson_interval(stu, n), "ratio": (stu / exp) if exp else None,
            "train_s": round(train_s, 1), "tokens_per_s": meta["metrics"].get("tokens_per_s"),
            "val_action_acc": best_meta["metrics"].get("val_action_acc"),
            "n_parameters": best_meta.get("n_parameters"),
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with open(RESULTS, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, default=str) + "\n")
        table.add_row(env_id, f"{exp}/{n}", f"{stu}/{n}", f"{rec['ratio']:.2f}" if exp else "-",
                      f"{train_s:.0f}", f"{rec['tokens_per_s']:.0f}", f"{rec['val_action_acc']}")
    console.print(table)


if __name__ == "__main__":
    main(tyro.cli(Config))
