"""Benchmark: does a micro student trained on expert traces keep the expert's success?

    .venv/bin/python benchmarks/train_quality.py                            # the issue's bar
    .venv/bin/python benchmarks/train_quality.py --env-ids frozenlake-4x4 --train-episodes 300 \\
        --steps 300 --test-episodes 20                                      # a reduced budget
    .venv/bin/python benchmarks/train_quality.py --env-ids babyai-goto-local --steps 2400 \\
        --noise-episodes 1500 --noise-actions "turn left,turn right,go forward" \\
        --test-episodes 200 --loop-temperature 1                            # BabyAI's bar, with loop escape

For each env: the env's expert plays ``train`` seeds (traces written with ``TraceWriter``),
``distill.train`` trains a student (with ``--noise-episodes``, on noise-injected expert
episodes too: ``agentkd collect --noise``), and the student plays held-out ``test`` seeds through
transformers (greedy decoding, the one prompt renderer, ``parse_completion``; with
``--loop-temperature``, the same seeds again with loop escape). The issue's
bar: within ~10 minutes of training on 2 CPU cores, success >= 90% of the expert's.
Prints a table and appends one JSON line per env to
``benchmarks/results/train_quality.jsonl``: where it ran (commit, machine, load), the
config, success with its 95% Wilson interval, the wall time of ``train`` (validations and
checkpoints included) and of its training steps alone, tokens/s, and the validation curve.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Literal

import torch
import tyro
from rich.console import Console
from rich.table import Table

import envs
from agent.collect import CollectConfig, collect
from agent.episode import check_loop_temperature
from agent.noise import executed_path
from agent.types import Episode
from distill.student import read_meta
from distill.traces import TraceWriter
from distill.train import TrainConfig, train

RESULTS = "train_quality"


@dataclasses.dataclass(frozen=True)
class Config:
    """Train a student per env on expert traces and compare held-out success."""

    env_ids: tuple[str, ...] = ("frozenlake-4x4", "taxi", "babyai-goto-local")
    """Envs to benchmark."""
    student: str = "micro"
    """Student preset."""
    train_episodes: int = 3000
    """Expert episodes (train seeds) per env (~10 ms each to collect; more than the steps
    below can use, so every example is seen about once)."""
    test_episodes: int = 50
    """Held-out test seeds per env, for both the expert and the student."""
    steps: int = 1500
    """Optimizer steps per env (sized to ~10 minutes of micro on 2 free cores; see
    BENCHMARKS.md)."""
    batch_size: int = 8
    """Examples per step."""
    lr: float = 2e-3
    """Peak learning rate."""
    eval_every: int = 500
    """Validate (and save the last checkpoint) every N steps."""
    max_steps: int = 50
    """Cap on steps per held-out episode for expert and student alike (0: the env's own
    limit). A lost student otherwise wanders to the limit (Taxi: 200 steps of generation)."""
    mixed_precision: Literal["no", "bf16"] = "no"
    """``agentkd train --mixed-precision``: no | bf16 (fast only on CPUs with AVX512-BF16)."""
    action_only: bool = False
    """Train on ``Action: ...`` alone (no rationale): the loss is all on the decision."""
    tie_embeddings: bool = False
    """``agentkd train --tie-embeddings``: the output head is the input embedding."""
    copy_warmup: int = 0
    """``agentkd train --copy-warmup``: steps of copy warm-up before distillation."""
    noise_episodes: int = 0
    """Noise-injected expert episodes per env (``agentkd collect --noise``, DART), on the
    train seeds after the plain ones, trained on together with them: states off the
    expert's path, each with the expert's label (0: plain episodes only)."""
    noise: float = 0.25
    """``agentkd collect --noise``: the probability that a step executes a random action."""
    noise_actions: str = ""
    """``agentkd collect --noise-actions``: the actions noise picks from, comma-separated
    (default: any legal action; BabyAI: 'turn left,turn right,go forward')."""
    seed: int = 0
    """``agentkd train --seed``: the student's initialisation and data order."""
    loop_temperature: float = 0.0
    """> 0: the student also plays the same test seeds with loop escape (``agentkd eval
    --loop-temperature``: a situation already met in the episode is decided again by
    sampling at this temperature), recorded beside the greedy figure (0: greedy only)."""
    workdir: str = "runs/train_quality"
    """Where traces and students go."""
    results_dir: Path | None = None
    """Where train_quality.jsonl is appended (default benchmarks/results)."""


def expert_episode(env: Any, seed: int) -> Episode:
    """One expert episode of ``env`` as a trace record (rationales included), played by
    the same ``run_episode`` that ``agentkd collect`` uses."""
    from agent.episode import run_episode
    from agent.policies import load_policy

    return run_episode(env, load_policy("expert"), seed)


def student_successes(student_dir: str | Path, env_id: str, seeds: list[int], max_steps: int = 0,
                      loop_temperature: float = 0.0) -> int:
    """Episodes the student solves, played by the real ``hf:`` policy (greedy; with loop
    escape at ``loop_temperature`` > 0) and ``agent.episode.run_episode``, the same path
    ``agentkd eval`` takes."""
    from agent.episode import run_episode
    from agent.policies import load_policy

    policy = load_policy(f"hf:{student_dir}", n_threads=torch.get_num_threads())
    env = envs.make(env_id, **({"max_steps": max_steps} if max_steps else {}))
    return sum(run_episode(env, policy, seed, loop_temperature=loop_temperature).success for seed in seeds)


def _curve(student_dir: Path) -> list[dict[str, Any]]:
    """The validation lines of a training run's log.jsonl."""
    keys = ("step", "val_action_acc", "val_tf_action_acc", "val_loss", "tokens_per_s", "val_s")
    lines = (json.loads(x) for x in (student_dir / "log.jsonl").read_text().splitlines() if x.strip())
    return [{k: round(v, 4) if isinstance(v, float) else v for k, v in d.items() if k in keys} for d in lines]


def check(cfg: Config) -> None:
    """The noise and loop-escape flags, checked before any collection or training runs."""
    if cfg.noise_episodes < 0:
        raise ValueError(f"--noise-episodes: expected 0 or more, got {cfg.noise_episodes}")
    if cfg.noise_episodes and not 0.0 < cfg.noise <= 1.0:  # NaN fails this too
        raise ValueError(f"--noise: expected a probability in (0, 1] with --noise-episodes, got {cfg.noise}")
    if cfg.noise_actions and not cfg.noise_episodes:
        raise ValueError("--noise-actions: has no effect without --noise-episodes N > 0")
    check_loop_temperature(cfg.loop_temperature)  # the check agentkd eval makes


def main(cfg: Config) -> None:
    check(cfg)
    from common import append_result, stamp
    from eval.metrics import wilson_interval

    console = Console()
    table = Table("env", "expert", "student", "ratio", *(("loop escape", "ratio") if cfg.loop_temperature else ()),
                  "train s", "steps s", "tok/s", "val acc")
    work = Path(cfg.workdir)
    for env_id in cfg.env_ids:
        at_start = stamp()
        traces = work / f"{env_id}.jsonl"
        traces.unlink(missing_ok=True)
        env = envs.make(env_id)
        with TraceWriter(traces) as w:
            for seed in envs.seeds(env_id, "train", cfg.train_episodes):
                w.write(expert_episode(env, seed))
        files = [str(traces)]
        if cfg.noise_episodes:
            noisy = work / f"{env_id}.noisy.jsonl"
            for old in (noisy, executed_path(noisy)):
                old.unlink(missing_ok=True)
            collect(CollectConfig(env=env_id, episodes=cfg.noise_episodes, seed_start=cfg.train_episodes,
                                  out=str(noisy), noise=cfg.noise, noise_actions=cfg.noise_actions,
                                  progress=False))
            files.append(str(noisy))
        t0 = time.perf_counter()
        best = train(TrainConfig(traces=",".join(files), student=cfg.student, out=str(work / env_id),
                                 steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                                 eval_every=cfg.eval_every, val_frac=0.05, progress=False,
                                 action_only=cfg.action_only, mixed_precision=cfg.mixed_precision,
                                 tie_embeddings=cfg.tie_embeddings, copy_warmup=cfg.copy_warmup,
                                 seed=cfg.seed))
        train_s = time.perf_counter() - t0
        curve = _curve(work / env_id)
        steps_s = train_s - curve[-1].get("val_s", 0.0)
        best_meta = read_meta(best)
        test = envs.seeds(env_id, "test", cfg.test_episodes)
        capped = envs.make(env_id, **({"max_steps": cfg.max_steps} if cfg.max_steps else {}))
        exp = sum(expert_episode(capped, s).success for s in test)
        stu = student_successes(best, env_id, test, cfg.max_steps)
        esc = (student_successes(best, env_id, test, cfg.max_steps, cfg.loop_temperature)
               if cfg.loop_temperature else None)
        n = len(test)
        rec = {
            **at_start, "env_id": env_id, "config": {**dataclasses.asdict(cfg), "results_dir": None},
            "expert_success": exp / n, "student_success": stu / n,
            "student_ci95": wilson_interval(stu, n), "ratio": (stu / exp) if exp else None,
            **({"loop_success": esc / n, "loop_ci95": wilson_interval(esc, n),
                "loop_ratio": (esc / exp) if exp else None} if esc is not None else {}),
            "train_s": round(train_s, 1), "train_steps_s": round(steps_s, 1),
            "tokens_per_s": curve[-1].get("tokens_per_s"), "best_step": best_meta.get("step"),
            "val_action_acc": best_meta["metrics"].get("val_action_acc"), "curve": curve,
            "n_parameters": best_meta.get("n_parameters"),
        }
        append_result(RESULTS, rec, cfg.results_dir)
        escaped = (f"{esc}/{n}", f"{rec['loop_ratio']:.2f}" if exp else "-") if esc is not None else ()
        table.add_row(env_id, f"{exp}/{n}", f"{stu}/{n}", f"{rec['ratio']:.2f}" if exp else "-", *escaped,
                      f"{train_s:.0f}", f"{steps_s:.0f}", f"{rec['tokens_per_s']:.0f}",
                      f"{rec['val_action_acc']}")
    console.print(table)


if __name__ == "__main__":
    main(tyro.cli(Config))
