"""Benchmark: does DAgger close the gap between an SFT-only student and its teacher?

    .venv/bin/python benchmarks/dagger.py                                   # the issue's bar
    .venv/bin/python benchmarks/dagger.py --env-ids babyai-goto-local \
        --start babyai-goto-local=/tmp/tq/babyai-goto-local/best,/tmp/tq/babyai-goto-local.jsonl
                                  # DAgger from a student train_quality.py already trained
    nice -n 10 .venv/bin/python benchmarks/dagger.py --env-ids frozenlake-8x8 --student nano \\
        --action-only --sft-episodes 40 --sft-steps 200 --episodes 15 --steps 100 \\
        --iterations 2 --test-episodes 20 --max-steps 40                   # a reduced budget

For each env, ``distill.dagger.dagger`` trains the SFT start on expert rollouts
(iteration 0, beta = 1), then runs DAgger iterations (the student acts under the
beta-mixture, the expert labels every visited state, the student trains further on the
aggregate), measuring held-out success after each. The issue's bar: on ``frozenlake-8x8``
and a BabyAI id, where the SFT-only ``micro`` student falls short of the teacher, DAgger
closes at least half of the remaining gap within 3 iterations on 2 CPU cores.
Prints each env's table and appends one JSON line per env to
``benchmarks/results/dagger.jsonl`` (config, the curve, gap closed, wall time).
Re-running with the same flags resumes each env's run where it stopped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Literal

import tyro

from common import stamp
from distill.dagger import DaggerConfig, dagger, report_table

RESULTS = Path(__file__).resolve().parent / "results" / "dagger.jsonl"


@dataclasses.dataclass(frozen=True)
class Config:
    """DAgger vs SFT-only vs teacher, per env."""

    env_ids: tuple[str, ...] = ("frozenlake-8x8", "babyai-goto-local")
    """Envs to benchmark."""
    student: str = "micro"
    """Student preset."""
    iterations: int = 3
    """DAgger iterations after the SFT start."""
    beta_decay: float = 0.5
    """beta_i = beta_decay ** i."""
    sft_episodes: int = 100
    """Expert rollouts (train seeds) for the SFT start."""
    sft_steps: int = 600
    """Optimizer steps of the SFT start."""
    episodes: int = 40
    """Student rollouts per DAgger iteration."""
    steps: int = 300
    """Optimizer steps per DAgger iteration."""
    batch_size: int = 16
    """Examples per step."""
    lr: float = 2e-3
    """Peak learning rate."""
    mixed_precision: Literal["no", "bf16"] = "no"
    """``agentkd dagger --mixed-precision``: no | bf16 (fast only on CPUs with AVX512-BF16)."""
    action_only: bool = False
    """Train on actions only (no rationales): much faster rollouts on CPU."""
    rename_entities: bool = False
    """``agentkd dagger --rename-entities``: tool-use envs, names renamed in training."""
    test_episodes: int = 50
    """Held-out test seeds per env."""
    max_steps: int = 60
    """Cap on steps per episode (rollouts and evaluation)."""
    max_tokens: int = 64
    """Cap on generated tokens per decision."""
    loop_temperature: float = 0.0
    """Loop escape in the held-out evaluation (``agentkd dagger --loop-temperature``)."""
    workdir: str = "runs/bench_dagger"
    """Where the runs go (one directory per env)."""
    rollout_backend: Literal["hf", "gguf"] = "gguf"
    """How students play (rollouts, evaluation): gguf exports each one and plays through llama.cpp."""
    rollout_quant: str = "q8_0"
    """GGUF type students play at."""
    n_threads: int | None = None
    """Threads of the local models (llama.cpp, torch)."""
    seed: int = 0
    """``agentkd dagger --seed``: the beta-mixture's draws and training."""
    start: tuple[str, ...] = ()
    """ENV=STUDENT_DIR,TRACES: that env's SFT start is an already trained student (iteration 0
    only evaluates it; TRACES, its SFT data, stays in every iteration's training data)."""


def main(cfg: Config) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    starts = {}
    for item in cfg.start:
        env_id, _, rest = item.partition("=")
        student_dir, _, traces = rest.partition(",")
        if not student_dir or not traces:
            raise SystemExit(f"--start: expected ENV=STUDENT_DIR,TRACES, got {item!r}")
        starts[env_id] = (student_dir, traces)
    for env_id in cfg.env_ids:
        student, traces = starts.get(env_id, (cfg.student, ""))
        dc = DaggerConfig(env=env_id, teacher="expert", student=student, traces=traces,
                          out=str(Path(cfg.workdir) / env_id), rollout_backend=cfg.rollout_backend,
                          rollout_quant=cfg.rollout_quant, n_threads=cfg.n_threads,
                          iterations=cfg.iterations, beta_decay=cfg.beta_decay, episodes=cfg.episodes,
                          sft_episodes=cfg.sft_episodes, sft_steps=cfg.sft_steps, steps=cfg.steps,
                          batch_size=cfg.batch_size, lr=cfg.lr, mixed_precision=cfg.mixed_precision,
                          action_only=cfg.action_only, rename_entities=cfg.rename_entities,
                          test_episodes=cfg.test_episodes, max_steps=cfg.max_steps, max_tokens=cfg.max_tokens,
                          loop_temperature=cfg.loop_temperature, seed=cfg.seed, progress=False)
        t0 = time.perf_counter()
        report = dagger(dc)
        wall = time.perf_counter() - t0
        state = json.loads((Path(dc.out) / "state.json").read_text(encoding="utf-8"))
        rows = report["iterations"]
        best_gap = max((r["gap_closed"] for r in rows[1:4] if r["gap_closed"] is not None), default=None)
        rec = {
            **stamp(), "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "env_id": env_id,
            "config": dataclasses.asdict(cfg), "teacher_success": report["teacher"]["success"],
            "curve": [{k: r[k] for k in ("iteration", "beta", "success", "ci95", "gap_closed", "states_total")}
                      for r in rows],
            "best_gap_closed_within_3": best_gap,
            "bar_met": bool(best_gap is not None and best_gap >= 0.5),
            "wall_s_this_call": round(wall, 1), "phase_seconds": state.get("seconds", {}),
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"\n{env_id}\n{report_table(report)}\n")


if __name__ == "__main__":
    main(tyro.cli(Config))
