"""Benchmark: training throughput of ``agentkd train`` (tokens/s) per student preset.

    .venv/bin/python benchmarks/train_throughput.py                       # nano, micro, small
    .venv/bin/python benchmarks/train_throughput.py --presets micro --steps 40

For each preset: the same expert traces (``--env-id``, ``--episodes`` train seeds), the same
batches, ``distill.train`` for ``--steps`` optimizer steps on this machine's cores, no
validation pass. Reported per preset: tokens/s as ``distill.train`` logs it (every token of
every padded batch row the model ran on), seconds per step, parameters, and how far that is
from a compute bound: a training step costs about 6 x (matmul parameters) FLOPs per token
(forward 2, backward 4), against the machine's fp32 matmul rate measured in the same run.
Each preset runs fp32 and bf16 autocast (``--mixed-precision``) back to back, and the table
gives their ratio.
One JSON line goes to ``benchmarks/results/train_throughput.jsonl``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Literal

import torch
import tyro
from rich.console import Console
from rich.table import Table

from common import append_result, matmul_gflops, stamp
from throughput import matmul_params


@dataclasses.dataclass(frozen=True)
class Config:
    """Tokens/s of ``agentkd train`` per preset on the same traces."""

    presets: tuple[str, ...] = ("nano", "micro", "small")
    """Student presets (distill.student.PRESETS)."""
    env_id: str = "frozenlake-4x4"
    """Env whose expert traces are trained on."""
    episodes: int = 200
    """Expert episodes (train seeds)."""
    steps: int = 60
    """Optimizer steps per preset (the first few warm up the allocator, all are counted)."""
    batch_size: int = 16
    """Examples per step."""
    precisions: tuple[Literal["no", "bf16"], ...] = ("no", "bf16")
    """--mixed-precision settings to compare per preset (run back to back, order alternating)."""
    workdir: Path = Path("/tmp/agentkd-bench/train_throughput")
    """Traces and students."""
    results_dir: Path | None = None
    """Where NAME.jsonl is appended (default benchmarks/results)."""


def _traces(cfg: Config) -> Path:
    from train_quality import expert_episode

    import envs
    from distill.traces import TraceWriter

    path = cfg.workdir / f"{cfg.env_id}-{cfg.episodes}.jsonl"
    if not path.exists():
        cfg.workdir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        env = envs.make(cfg.env_id)
        with TraceWriter(tmp) as w:
            for seed in envs.seeds(cfg.env_id, "train", cfg.episodes):
                w.write(expert_episode(env, seed))
        tmp.rename(path)
    return path


def bench_preset(cfg: Config, preset: str, precision: Literal["no", "bf16"], traces: Path,
                 gflops: float) -> dict[str, Any]:
    """Train one preset ``cfg.steps`` steps; its tokens/s and share of the compute bound."""
    from distill.student import read_meta
    from distill.train import TrainConfig, train

    out = cfg.workdir / f"{preset}-{precision}"
    t0 = time.perf_counter()
    train(TrainConfig(traces=str(traces), student=preset, out=str(out), steps=cfg.steps,
                      batch_size=cfg.batch_size, eval_every=10**9, val_frac=0.0, progress=False,
                      mixed_precision=precision))
    wall = time.perf_counter() - t0
    meta = read_meta(out / "last")
    tok_s = float(meta["metrics"]["tokens_per_s"])
    params = matmul_params(out / "last")
    bound = gflops * 1e9 / (6 * params)  # tokens/s if every FLOP ran at the matmul rate
    return {"preset": preset, "precision": precision, "n_parameters": meta.get("n_parameters"), "matmul_params": params,
            "tokens_per_s": round(tok_s, 1), "s_per_step": round(float(meta["metrics"].get("tokens", 0))
                                                             / tok_s / cfg.steps, 3),
            "bound_tok_s": round(bound, 1), "of_bound": round(tok_s / bound, 3),
            "wall_s": round(wall, 1)}


def run(cfg: Config) -> dict[str, Any]:
    threads = torch.get_num_threads()
    traces = _traces(cfg)
    gflops = matmul_gflops(threads)
    rows = []
    for i, p in enumerate(cfg.presets):
        order = cfg.precisions if i % 2 == 0 else tuple(reversed(cfg.precisions))
        done = {prec: bench_preset(cfg, p, prec, traces, gflops) for prec in order}
        rows += [done[prec] for prec in cfg.precisions]
        base = done[cfg.precisions[0]]["tokens_per_s"]
        for r in rows[-len(cfg.precisions):]:
            r["vs_first"] = round(r["tokens_per_s"] / base, 2)
    line = {**stamp(), "config": {k: str(v) if isinstance(v, Path) else v
                                  for k, v in dataclasses.asdict(cfg).items()},
            "threads": threads, "matmul_gflops": round(gflops, 1), "presets": rows}
    append_result("train_throughput", line, cfg.results_dir)
    return line


def main(cfg: Config) -> dict[str, Any]:
    line = run(cfg)
    table = Table("preset", "precision", "params", "tok/s", "ratio", "s/step", "bound tok/s", "of bound",
                  title=f"agentkd train, {line['threads']} threads, batch {cfg.batch_size} "
                        f"(matmul {line['matmul_gflops']} GFLOP/s)")
    for r in line["presets"]:
        table.add_row(r["preset"], r["precision"], f"{r['n_parameters'] / 1e6:.2f}M",
                      f"{r['tokens_per_s']:.0f}", f"{r['vs_first']:.2f}x",
                      f"{r['s_per_step']:.2f}", f"{r['bound_tok_s']:.0f}", f"{100 * r['of_bound']:.0f}%")
    Console().print(table)
    return line


if __name__ == "__main__":
    main(tyro.cli(Config))
