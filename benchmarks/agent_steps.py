"""Benchmark: agent steps/s over whole episodes, with and without KV prefix reuse and the grammar.

    .venv/bin/python benchmarks/agent_steps.py                          # micro Q8_0, frozenlake-8x8
    .venv/bin/python benchmarks/agent_steps.py --env-id taxi --episodes 4 --max-tokens 32
    .venv/bin/python benchmarks/agent_steps.py --prompt-variant full --train-steps 300  # chat history

``GGUFPolicy`` instances of one student file (``reuse_prefix`` x ``use_grammar``, and the
grammar applied to every token, ``check_grammar=False``, beside the default check) play
the same held-out seeds, one episode each per round, interleaved (the order rotated every
round), each episode capped at ``--max-steps``. Reported per configuration: median ms per
step over episodes, steps/s, generated tokens per step, ms per generated token, and the
share of prompt tokens that the KV cache did not re-evaluate. Ratios: reuse speed-up
(target >= 2x) and grammar cost (target < 20%), each with the other switch held fixed.
The student is randomly initialised unless ``--train-steps`` > 0 (then trained briefly on
expert traces), so without the grammar its actions are mostly invalid; timings are per
step and per token for that reason. One JSON line goes to
``benchmarks/results/agent_steps.jsonl``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import tyro
from rich.console import Console
from rich.table import Table

from common import append_result, interleaved, median, stamp, student_files

#: name: (reuse_prefix, use_grammar, check_grammar). "+grammar" is the policy's default: greedy
#: text checked against the grammar afterwards; "+grammar(eager)" decodes every token under it.
CONFIGS = {"reuse+grammar": (True, True, True), "fresh+grammar": (False, True, True),
           "reuse-grammar": (True, False, True), "fresh-grammar": (False, False, True),
           "reuse+grammar(eager)": (True, True, False)}
TARGET_REUSE = 2.0
TARGET_GRAMMAR_COST = 0.20


@dataclasses.dataclass(frozen=True)
class Config:
    """Steps/s over whole episodes: KV prefix reuse on/off x grammar on/off."""

    preset: str = "micro"
    """Student size preset (distill.student.PRESETS)."""
    quant: str = "q8_0"
    """Which GGUF: f32 or a quant type of distill.quantize."""
    env_id: str = "frozenlake-8x8"
    """Env to play (multi-step)."""
    episodes: int = 6
    """Held-out seeds, each played once by every configuration."""
    max_steps: int = 20
    """Step cap per episode."""
    max_tokens: int = 48
    """Token budget per decision (Sampling.max_tokens)."""
    threads: int = 2
    """llama.cpp threads."""
    train_steps: int = 0
    """0: randomly initialised student; > 0: train it that many steps on expert traces first."""
    prompt_variant: Literal["compact", "full"] = "compact"
    """Prompt variant of the student: compact (a tiny student's one-turn prompt) or full (the
    instructions, then the last steps as chat turns: the prompt a pretrained student or an LLM
    teacher gets, where most of a step's prompt is the previous step's)."""
    workdir: Path = Path("/tmp/agentkd-bench")
    """Cache for the student and its GGUFs."""
    results_dir: Path | None = None
    """Where NAME.jsonl is appended (default benchmarks/results)."""


def run(cfg: Config) -> dict[str, Any]:
    """Play the episodes under every configuration; the result line."""
    import envs
    from agent.episode import run_episode
    from agent.policies.gguf import GGUFPolicy
    from agent.types import Sampling

    if cfg.episodes < 1 or cfg.max_steps < 1:
        raise SystemExit(f"--episodes/--max-steps: expected >= 1, got {cfg.episodes}/{cfg.max_steps}")
    quants = [cfg.quant] if cfg.quant != "f32" else []
    files = student_files(cfg.preset, cfg.workdir, quants=quants, env_ids=(cfg.env_id,),
                          train_steps=cfg.train_steps, variant=cfg.prompt_variant)
    sampling = Sampling(temperature=0.0, max_tokens=cfg.max_tokens)
    policies = {name: GGUFPolicy(files[cfg.quant], sampling=sampling, n_threads=cfg.threads,
                                 reuse_prefix=reuse, use_grammar=grammar, check_grammar=check)
                for name, (reuse, grammar, check) in CONFIGS.items()}
    seeds = envs.seeds(cfg.env_id, "test", cfg.episodes)
    stats: dict[str, list[dict[str, float]]] = {n: [] for n in policies}

    def play(name: str) -> Any:
        def f(r: int) -> None:
            policy = policies[name]
            env = envs.make(cfg.env_id)
            env.max_steps = cfg.max_steps
            reused = []
            ep = run_episode(env, policy, seeds[r % len(seeds)],
                             on_step=lambda *a: reused.append(policy.last_reused_tokens))
            n = max(len(ep.steps), 1)
            stats[name].append({
                "steps": len(ep.steps), "policy_s": ep.timings["policy_s"],
                "gen_tokens": sum(s.completion_tokens or 0 for s in ep.steps),
                "prompt_tokens": sum(s.prompt_tokens or 0 for s in ep.steps),
                "reused_tokens": sum(reused), "valid": sum(s.valid for s in ep.steps) / n})
        return f

    for name in policies:  # warm-up: grammar compilation and first allocations
        play(name)(0)
        stats[name].clear()
        policies[name].grammar_fallbacks = 0
    interleaved({n: play(n) for n in policies}, cfg.episodes)
    rows = {}
    for name, eps in stats.items():
        steps = sum(e["steps"] for e in eps)
        gen = sum(e["gen_tokens"] for e in eps)
        rows[name] = {
            "ms_per_step_p50": round(1000 * median([e["policy_s"] / max(e["steps"], 1) for e in eps]), 2),
            "steps_per_s": round(steps / sum(e["policy_s"] for e in eps), 2),
            "gen_tokens_per_step": round(gen / max(steps, 1), 1),
            "ms_per_gen_token": round(1000 * sum(e["policy_s"] for e in eps) / max(gen, 1), 3),
            "prompt_tokens_per_step": round(sum(e["prompt_tokens"] for e in eps) / max(steps, 1), 1),
            "reused_frac": round(sum(e["reused_tokens"] for e in eps) / max(sum(e["prompt_tokens"] for e in eps), 1), 3),
            "valid_frac": round(sum(e["valid"] * e["steps"] for e in eps) / max(steps, 1), 3),
            "steps": steps,
            "grammar_fallbacks": policies[name].grammar_fallbacks,
        }
    for p in policies.values():
        p.close()

    def ratio(a: str, b: str, key: str = "ms_per_step_p50") -> float:
        return round(rows[a][key] / rows[b][key], 3)

    reuse = {"grammar": ratio("fresh+grammar", "reuse+grammar"),
             "no_grammar": ratio("fresh-grammar", "reuse-grammar")}
    grammar_cost = {"reuse": round(ratio("reuse+grammar", "reuse-grammar") - 1, 3),
                    "fresh": round(ratio("fresh+grammar", "fresh-grammar") - 1, 3),
                    "reuse_per_token": round(ratio("reuse+grammar", "reuse-grammar", "ms_per_gen_token") - 1, 3),
                    "reuse_eager": round(ratio("reuse+grammar(eager)", "reuse-grammar") - 1, 3),
                    "reuse_eager_per_token": round(ratio("reuse+grammar(eager)", "reuse-grammar",
                                                         "ms_per_gen_token") - 1, 3)}
    return {**stamp(), "config": {**dataclasses.asdict(cfg), "workdir": str(cfg.workdir), "results_dir": None},
            "student": "random init" if cfg.train_steps == 0 else f"trained {cfg.train_steps} steps",
            "rows": rows, "reuse_speedup": reuse, "grammar_cost": grammar_cost,
            "reuse_target_met": min(reuse.values()) >= TARGET_REUSE,
            "grammar_target_met": grammar_cost["reuse"] < TARGET_GRAMMAR_COST}


def main(cfg: Config) -> dict[str, Any]:
    line = run(cfg)
    append_result("agent_steps", line, cfg.results_dir)
    table = Table(title=f"Agent steps, {cfg.preset} {cfg.quant} ({cfg.prompt_variant}), {cfg.env_id}, "
                        f"{cfg.episodes} episodes <= {cfg.max_steps} steps, {cfg.threads} threads (load {line['machine']['loadavg_1m']})")
    for col in ("config", "ms/step p50", "steps/s", "gen tok/step", "ms/gen tok", "prompt tok/step",
                "reused", "valid", "grammar re-decodes"):
        table.add_column(col, justify="left" if col == "config" else "right")
    for name, r in line["rows"].items():
        table.add_row(name, f"{r['ms_per_step_p50']:.1f}", f"{r['steps_per_s']:.2f}", f"{r['gen_tokens_per_step']:.1f}",
                      f"{r['ms_per_gen_token']:.2f}", f"{r['prompt_tokens_per_step']:.0f}",
                      f"{r['reused_frac']:.0%}", f"{r['valid_frac']:.0%}", str(r["grammar_fallbacks"]))
    console = Console(width=120)
    console.print(table)
    console.print(f"reuse speed-up {line['reuse_speedup']} (target >= {TARGET_REUSE}x); "
                  f"grammar cost {line['grammar_cost']} (target < {TARGET_GRAMMAR_COST:.0%})")
    return line


if __name__ == "__main__":
    main(tyro.cli(Config, prog="benchmarks/agent_steps.py"))
