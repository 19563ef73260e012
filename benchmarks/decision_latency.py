"""Benchmark: one student deciding on the same recorded states through transformers and llama.cpp.

    .venv/bin/python benchmarks/decision_latency.py                      # micro, 16 states
    .venv/bin/python benchmarks/decision_latency.py --preset nano --n-states 4 --max-tokens 8

The states are the expert's own steps on held-out seeds of ``--env-id`` (prompt -> rationale +
action). Each backend decides on each state once per round, interleaved (HF F32 Q8_0 Q4_K_M,
the order rotated every round): transformers fp32 ``generate`` (``HFPolicy``) and llama.cpp
(``GGUFPolicy``, without the grammar and without KV reuse, so that both do the same work:
the whole prompt, then ``--max-tokens`` greedy tokens; the student is randomly initialised,
so it never stops early and every decision generates exactly ``--max-tokens`` tokens).
Prints p50/p95 ms per decision, ms per generated token and the speed-up over transformers,
and appends one JSON line to ``benchmarks/results/decision_latency.jsonl``.
Target (issue 8): llama.cpp Q8_0 at least 5x faster than transformers.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import tyro
from rich.console import Console
from rich.table import Table

from common import append_result, interleaved, median, quantile, recorded_states, stamp, student_files

TARGET_Q8_SPEEDUP = 5.0


@dataclasses.dataclass(frozen=True)
class Config:
    """Decision latency: transformers fp32 vs llama.cpp F32/Q8_0/Q4_K_M on recorded states."""

    preset: str = "micro"
    """Student size preset (distill.student.PRESETS)."""
    env_id: str = "frozenlake-8x8"
    """Env whose expert steps on held-out seeds are the recorded states."""
    n_states: int = 16
    """Recorded states; each backend decides on each once (the rounds)."""
    max_tokens: int = 48
    """Tokens generated per decision (fixed: the random student never stops early)."""
    threads: int = 2
    """CPU threads for torch and llama.cpp."""
    quants: tuple[str, ...] = ("f32", "q8_0", "q4_k_m")
    """llama.cpp files to time (f32 and quant types of distill.quantize)."""
    workdir: Path = Path("/tmp/agentkd-bench")
    """Cache for the student and its GGUFs."""
    results_dir: Path | None = None
    """Where NAME.jsonl is appended (default benchmarks/results)."""


def run(cfg: Config) -> dict[str, Any]:
    """Time every backend on the same states; the result line."""
    from agent.policies.gguf import GGUFPolicy
    from agent.policies.hf import HFPolicy
    from agent.types import Sampling

    if cfg.n_states < 1 or cfg.max_tokens < 1:
        raise SystemExit(f"--n-states/--max-tokens: expected >= 1, got {cfg.n_states}/{cfg.max_tokens}")
    quants = [q for q in cfg.quants if q != "f32"]
    files = student_files(cfg.preset, cfg.workdir, quants=quants)
    states = [ctx for ctx, _ in recorded_states(cfg.env_id, 4)]
    step = max(1, len(states) // cfg.n_states)  # spread over the episodes
    states = (states[::step] * cfg.n_states)[: cfg.n_states]
    sampling = Sampling(temperature=0.0, max_tokens=cfg.max_tokens)
    policies: dict[str, Any] = {"hf-fp32": HFPolicy(files["hf"], sampling=sampling, device="cpu",
                                                    n_threads=cfg.threads)}
    for q in cfg.quants:
        policies[f"gguf-{q}"] = GGUFPolicy(files[q], sampling=sampling, n_threads=cfg.threads,
                                           use_grammar=False, reuse_prefix=False)
    tokens: dict[str, list[tuple[int, int]]] = {n: [] for n in policies}

    def decide(name: str) -> Any:
        def f(r: int) -> None:
            d = policies[name].act(states[r])
            tokens[name].append((d.prompt_tokens, d.completion_tokens))
        return f

    for name in policies:  # warm-up: first-call allocations are not what we measure
        decide(name)(0)
        tokens[name].clear()
    times = interleaved({n: decide(n) for n in policies}, cfg.n_states)
    base = median(times["hf-fp32"])
    rows = {}
    for name, ts in times.items():
        gen = sum(c for _, c in tokens[name])
        rows[name] = {
            "p50_ms": round(1000 * median(ts), 2), "p95_ms": round(1000 * quantile(ts, 95), 2),
            "ms_per_gen_token": round(1000 * sum(ts) / max(gen, 1), 3),
            "mean_prompt_tokens": round(sum(p for p, _ in tokens[name]) / len(ts), 1),
            "mean_gen_tokens": round(gen / len(ts), 1),
            "speedup_vs_hf": round(base / median(ts), 2),
        }
    for p in policies.values():
        if hasattr(p, "close"):
            p.close()
    q8 = rows.get("gguf-q8_0", {}).get("speedup_vs_hf")
    return {**stamp(), "config": {**dataclasses.asdict(cfg), "workdir": str(cfg.workdir),
                                  "results_dir": None},
            "student": "random init (tokenizer trained on expert traces)",
            "rows": rows, "q8_speedup": q8,
            "target_met": None if q8 is None else q8 >= TARGET_Q8_SPEEDUP}


def main(cfg: Config) -> dict[str, Any]:
    line = run(cfg)
    append_result("decision_latency", line, cfg.results_dir)
    m = line["machine"]
    table = Table(title=f"Decision latency, {cfg.preset} student, {cfg.n_states} states of {cfg.env_id}, "
                        f"{cfg.max_tokens} tokens, {cfg.threads} threads (load {m['loadavg_1m']})")
    for col in ("backend", "p50 ms", "p95 ms", "ms/gen token", "prompt tok", "x vs HF"):
        table.add_column(col, justify="left" if col == "backend" else "right")
    for name, r in line["rows"].items():
        table.add_row(name, f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}", f"{r['ms_per_gen_token']:.2f}",
                      f"{r['mean_prompt_tokens']:.0f}", f"{r['speedup_vs_hf']:.2f}")
    Console(width=120).print(table)
    return line


if __name__ == "__main__":
    main(tyro.cli(Config, prog="benchmarks/decision_latency.py"))
