"""Benchmark: does a student cut from its teacher (pruning, then KD) beat one trained from scratch?

    .venv/bin/python benchmarks/prune_vs_scratch.py                          # the issue's bar
    nice -n 10 .venv/bin/python benchmarks/prune_vs_scratch.py --teacher-preset micro \\
        --keep-layers 0,2 --heads 4 --intermediate 256 --train-episodes 60 --teacher-steps 300 \\
        --student-steps 150 --test-episodes 20                               # a reduced CPU budget

Steps, on one env (default ``frozenlake-4x4``):

1. the env's expert plays ``train`` seeds (traces with rationales);
2. a teacher student (preset ``small`` by default) is trained on them with cross-entropy, or
   ``--teacher DIR`` names one already trained on the same traces;
3. ``distill.prune`` cuts a student from it (default: every other layer, half the heads,
   MLP 512 of 1280: about a quarter of a ``small`` teacher's parameters), and a second
   student of exactly the same shape and tokenizer is initialised at random;
4. both train for the same steps and batch size on the same traces: the pruned one with
   token-level KD (forward KL, alpha 0.5) against the teacher online, the scratch one with
   cross-entropy only (the KD run also pays for the teacher's forward passes);
5. the teacher and both trained students (and, with ``--eval-untrained``, the pruned student
   before training) play the same held-out ``test`` seeds, greedy, each episode capped at
   ``--max-steps``: through llama.cpp by default (``--backend gguf``: each model is exported
   to an F32 GGUF by ``distill.export``, which checks its parity with transformers first),
   or through transformers (``--backend hf``, several times slower on these CPUs).

Prints a table and appends one JSON line to ``prune_vs_scratch.jsonl`` in ``--results-dir``
(default ``benchmarks/results``)
(config, success with 95% Wilson intervals, parameters, training seconds).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Literal

import torch
import tyro
from rich.console import Console
from rich.table import Table
from transformers import LlamaForCausalLM

import envs
from agent.episode import run_episode
from agent.policies import load_policy
from agent.types import Sampling
from distill.prune import prune_student
from distill.student import load_student, read_meta, save_student
from distill.traces import TraceWriter
from distill.train import TrainConfig, train

from common import append_result, stamp



@dataclasses.dataclass(frozen=True)
class Config:
    """Pruned-then-distilled student vs a same-size student from scratch, on held-out seeds."""

    env_id: str = "frozenlake-4x4"
    """Env to benchmark."""
    teacher: str = ""
    """An already trained teacher directory (trained on this script's traces); empty: train one."""
    teacher_preset: str = "small"
    """Preset of the teacher trained here."""
    teacher_steps: int = 1500
    """Optimizer steps of the teacher."""
    keep_layers: str = "0,2,4,6"
    """Teacher layers the pruned student keeps."""
    heads: int = 4
    """Attention heads per layer the pruned student keeps."""
    intermediate: int = 512
    """MLP width the pruned student keeps."""
    importance: str = "activation"
    """Pruning importance: magnitude or activation (on the training traces)."""
    student_steps: int = 1000
    """Optimizer steps of each student (the same budget for both)."""
    alpha: float = 0.5
    """KD weight of the pruned student's loss (the scratch student uses CE only)."""
    train_episodes: int = 400
    """Expert episodes (train seeds)."""
    test_episodes: int = 100
    """Held-out test seeds for every model."""
    max_new_tokens: int = 96
    """Tokens a model may generate per decision in the held-out episodes."""
    max_steps: int = 50
    """Step cap of each held-out episode (a lost student otherwise walks to the env's limit)."""
    backend: Literal["gguf", "hf"] = "gguf"
    """How the models play the held-out seeds: gguf (exported, parity-checked, llama.cpp) or hf."""
    n_threads: int = 1
    """Threads for playing the held-out seeds (llama.cpp or torch)."""
    eval_untrained: bool = False
    """Also play the test seeds with the pruned student before any training."""
    batch_size: int = 8
    """Examples per step."""
    lr: float = 2e-3
    """Peak learning rate (teacher and students)."""
    seed: int = 0
    """Seed of initialisations, data order and validation split."""
    workdir: str = "runs/prune_vs_scratch"
    """Where traces and models go."""
    results_dir: Path | None = None
    """Where prune_vs_scratch.jsonl is appended (default benchmarks/results)."""


def scratch_like(pruned_dir: Path, out_dir: Path, seed: int) -> Path:
    """A randomly initialised student with the pruned student's config and tokenizer."""
    model, tok, meta = load_student(pruned_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = LlamaForCausalLM(model.config)
    return save_student(fresh.float(), tok, out_dir, {"prompt_variant": meta["prompt_variant"],
                                                      "scratch_like": str(pruned_dir)})


def successes(spec: str, env_id: str, seeds: list[int], max_new_tokens: int, max_steps: int,
              n_threads: int) -> int:
    """Episodes a policy (``expert``, ``hf:PATH`` or ``gguf:FILE``, greedy) solves, played by
    ``agent.episode.run_episode``: the path ``agentkd eval`` takes."""
    policy = load_policy(spec, sampling=Sampling(max_tokens=max_new_tokens), n_threads=n_threads)
    env = envs.make(env_id)
    env.max_steps = min(env.max_steps, max_steps)
    try:
        return sum(run_episode(env, policy, seed).success for seed in seeds)
    finally:
        close = getattr(policy, "close", None)
        if close is not None:
            close()


def playable(cfg: Config, model_dir: Path, name: str) -> str:
    """The policy spec that plays ``model_dir`` on the chosen backend (gguf: exported first,
    once; the export checks token and logit parity and action agreement with transformers)."""
    if cfg.backend == "hf":
        return f"hf:{model_dir}"
    from distill.export import ExportConfig, export

    out = Path(cfg.workdir) / "gguf" / name
    f32 = out / "student-f32.gguf"
    if not f32.is_file() or f32.stat().st_mtime < (Path(model_dir) / "model.safetensors").stat().st_mtime:
        export(ExportConfig(student=str(model_dir), quant="", out=str(out), n_states=8,  # F32 is always written
                            max_new_tokens=cfg.max_new_tokens, n_threads=cfg.n_threads))
    return f"gguf:{f32}"


def main(cfg: Config) -> None:
    from eval.metrics import wilson_interval

    work = Path(cfg.workdir)
    traces = work / f"{cfg.env_id}.jsonl"
    if not cfg.teacher or not traces.exists():
        traces.parent.mkdir(parents=True, exist_ok=True)
        traces.unlink(missing_ok=True)
        expert, env = load_policy("expert"), envs.make(cfg.env_id)
        with TraceWriter(traces) as w:
            for seed in envs.seeds(cfg.env_id, "train", cfg.train_episodes):
                w.write(run_episode(env, expert, seed))
    common = dict(traces=str(traces), batch_size=cfg.batch_size, lr=cfg.lr, val_frac=0.05,
                  seed=cfg.seed, progress=False)

    # ---- teacher
    t0 = time.perf_counter()
    teacher = Path(cfg.teacher) if cfg.teacher else train(TrainConfig(
        student=cfg.teacher_preset, out=str(work / "teacher"), steps=cfg.teacher_steps,
        eval_every=max(cfg.teacher_steps // 3, 1), **common))
    teacher_s = time.perf_counter() - t0
    variant = read_meta(teacher)["prompt_variant"]

    # ---- the two students of one shape: cut from the teacher, and from scratch
    pruned = prune_student(teacher, keep_layers=cfg.keep_layers, n_heads=cfg.heads, intermediate=cfg.intermediate,
                           importance=cfg.importance, traces=str(traces), out_dir=work / "pruned")
    scratch = scratch_like(pruned, work / "scratch", cfg.seed)
    s_common = dict(steps=cfg.student_steps, eval_every=max(cfg.student_steps // 3, 1),
                    prompt_variant=variant, **common)
    t0 = time.perf_counter()
    kd_best = train(TrainConfig(student=str(pruned), out=str(work / "pruned-kd"), kd="forward",
                                teacher=f"hf:{teacher}", alpha=cfg.alpha, **s_common))
    kd_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ce_best = train(TrainConfig(student=str(scratch), out=str(work / "scratch-ce"), **s_common))
    ce_s = time.perf_counter() - t0

    # ---- held-out success of every model on the same seeds
    test = envs.seeds(cfg.env_id, "test", cfg.test_episodes)
    n = len(test)

    def play(path: Path, name: str) -> int:
        return successes(playable(cfg, path, name), cfg.env_id, test, cfg.max_new_tokens, cfg.max_steps,
                         cfg.n_threads)

    rows = {
        "expert": (successes("expert", cfg.env_id, test, cfg.max_new_tokens, cfg.max_steps, 1), None, None),
        "teacher": (play(teacher, "teacher"), teacher, teacher_s if not cfg.teacher else None),
        "pruned + KD": (play(kd_best, "pruned-kd"), kd_best, kd_s),
        "scratch + CE": (play(ce_best, "scratch-ce"), ce_best, ce_s),
    }
    if cfg.eval_untrained:
        rows["pruned (no training)"] = (play(pruned, "pruned"), pruned, None)
    rec = {**stamp(), "config": {**dataclasses.asdict(cfg), "results_dir": None}, "n_test": n, "models": {}}
    table = Table("model", "success", "95% CI", "parameters", "train s", "val acc")
    for name, (k, path, secs) in rows.items():
        meta = read_meta(path) if path else {}
        entry = {"successes": k, "success": k / n, "ci95": wilson_interval(k, n),
                 "n_parameters": meta.get("n_parameters"), "train_s": None if secs is None else round(secs, 1),
                 "val_action_acc": (meta.get("metrics") or {}).get("val_action_acc")}
        rec["models"][name] = entry
        lo, hi = entry["ci95"]
        table.add_row(name, f"{k}/{n}", f"[{lo:.2f}, {hi:.2f}]",
                      f"{entry['n_parameters'] / 1e6:.2f}M" if entry["n_parameters"] else "-",
                      "-" if secs is None else f"{secs:.0f}",
                      "-" if entry["val_action_acc"] is None else f"{entry['val_action_acc']:.2f}")
    Console().print(table)
    append_result("prune_vs_scratch", rec, cfg.results_dir)


if __name__ == "__main__":
    main(tyro.cli(Config))
