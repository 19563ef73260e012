"""Shared pieces of the benchmark scripts: where they ran, interleaved timing, test models.

Every benchmark line carries ``stamp()``: the date, the git commit, the machine (CPU model,
cores this process may use, memory, load average at the start) and the library versions.
Lines are appended (and fsynced) to ``benchmarks/results/NAME.jsonl`` by ``append_result``.

Timing compares A and B in the same run, interleaved (A B A B ..., the order rotated every
round), and reports medians, because these machines are shared and noisy.

Test models: ``student_files`` builds a student of any preset with a byte-level BPE tokenizer
trained on expert-trace prompts, randomly initialised (speed does not depend on the weights;
scripts fix the number of generated tokens) or briefly trained with ``distill.train`` (when
realistic completions matter, e.g. grammar cost), then writes the F32 GGUF and its quants.
Files are cached in a work directory keyed by their recipe.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RESULTS_DIR = Path(__file__).resolve().parent / "results"


# ---------------------------------------------------------------------------- provenance
def git_commit(where: Path | None = None) -> str | None:
    """The short commit of the repository holding ``where`` (default: this file), with
    ``+dirty`` when tracked files differ from it; None outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                              cwd=where or Path(__file__).parent).stdout.strip()
    try:
        commit = git("rev-parse", "--short", "HEAD")
        return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return None


#: The code a run executes is the code at its start (a commit made while it runs is not in it).
RUN_COMMIT = git_commit()


def cpu_model() -> str:
    """The CPU model name (``lscpu``, else /proc/cpuinfo, else ``platform.processor``)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    """Total memory in GiB (/proc/meminfo); None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_info() -> dict[str, Any]:
    """CPU model, usable cores, memory and the 1-minute load average (other jobs' share)."""
    from eval.metrics import cpu_count

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpu": cpu_model(), "cores": cpu_count(), "arch": platform.machine(),
            "memory_gib": memory_gib(), "loadavg_1m": None if load is None else round(load, 2)}


def versions() -> dict[str, str | None]:
    """Versions of Python and the libraries the timings depend on."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "llama_cpp_python", "gguf", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def stamp() -> dict[str, Any]:
    """What every result line starts with: date, commit, machine, versions."""
    return {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "commit": RUN_COMMIT, "machine": machine_info(), "versions": versions()}


def append_result(name: str, line: dict[str, Any], results_dir: Path | None = None) -> Path:
    """Append ``line`` as one JSON line to ``RESULTS_DIR/NAME.jsonl`` (flushed, fsynced)."""
    path = Path(results_dir or RESULTS_DIR) / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return path


# ---------------------------------------------------------------------------- timing
def interleaved(fns: dict[str, Callable[[int], Any]], rounds: int) -> dict[str, list[float]]:
    """Time each function once per round, interleaved; the order rotates every round.

    Args:
        fns: name -> function of the round index (e.g. which recorded state to decide on).
        rounds: how many times each function is timed.

    Returns:
        name -> seconds of every round, in round order.
    """
    names = list(fns)
    times: dict[str, list[float]] = {n: [0.0] * rounds for n in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter()
            fns[name](r)
            times[name][r] = time.perf_counter() - t0
    return times


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100, linear interpolation) of a non-empty sequence."""
    from eval.metrics import percentile

    v = percentile(values, q)
    if v is None:
        raise ValueError("quantile: expected at least one value, got none")
    return v


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    return statistics.median(values)


def matmul_gflops(threads: int, n: int = 1024, repeats: int = 10) -> float:
    """The best fp32 GFLOP/s of ``repeats`` n x n torch matmuls on ``threads`` threads.

    The best, not the median: this is the machine's ceiling (a bound), and other jobs on a
    shared machine only ever pull a repeat down."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b  # warm-up
        rates = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            rates.append(2 * n**3 / (time.perf_counter() - t0) / 1e9)
        return max(rates)
    finally:
        torch.set_num_threads(old)


# ---------------------------------------------------------------------------- states, models
def recorded_states(env_id: str, n_episodes: int, variant: str = "compact",
                    split: str = "test") -> list[tuple[Any, Any]]:
    """(Context, expert Decision) of every step of the expert's episodes on ``split`` seeds."""
    import envs
    from agent.policies import load_policy
    from agent.prompt import make_context
    from agent.types import Turn

    env, expert = envs.make(env_id), load_policy("expert")
    states = []
    for seed in envs.seeds(env_id, split, n_episodes):
        obs, info = env.reset(seed=seed)
        expert.reset(env)
        history: list[Turn] = []
        done = False
        while not done:
            ctx = make_context(env, obs, info, history, variant)
            decision = expert.act(ctx)
            states.append((ctx, decision))
            history.append(ctx.turn(decision))
            obs, _, term, trunc, info = env.step(decision.action)
            done = term or trunc
    return states


def _trace_texts(env_ids: Sequence[str], variant: str) -> list[str]:
    from agent.prompt import END_TOKEN, chat_text, render_completion, render_messages

    texts = []
    for env_id in env_ids:
        for ctx, d in recorded_states(env_id, 16, variant, split="train"):
            texts.append(chat_text(render_messages(ctx, variant))
                         + render_completion(d.rationale, d.action) + END_TOKEN)
    return texts


def student_files(preset: str, workdir: Path, *, quants: Sequence[str] = ("q8_0", "q4_k_m"),
                  env_ids: Sequence[str] = ("frozenlake-8x8", "taxi"), vocab_size: int = 2048,
                  train_steps: int = 0, variant: str = "compact") -> dict[str, Path]:
    """A student of ``preset`` and its GGUFs, built once and cached under ``workdir``.

    Args:
        preset: ``distill.student.PRESETS`` name.
        workdir: cache directory.
        quants: quant types besides the F32 GGUF.
        env_ids: envs whose expert traces train the tokenizer (and the student, if trained).
        vocab_size: tokenizer vocabulary.
        train_steps: 0: random initial weights; > 0: ``agentkd train`` for that many steps.
        variant: prompt variant the student is built for.

    Returns:
        ``{"hf": student dir, "f32": path, QUANT: path, ...}``.
    """
    from distill.gguf_writer import write_gguf
    from distill.quantize import quantize

    tag = f"{preset}-v{vocab_size}-t{train_steps}-{variant}-{'+'.join(env_ids)}"
    root = Path(workdir) / tag
    hf = root / "student"
    if not (hf / "agentkd.json").is_file():
        if train_steps > 0:
            hf = _trained(preset, root, env_ids, vocab_size, train_steps, variant)
        else:
            from distill.student import build_student, save_student
            from distill.tokenizer import train_tokenizer

            tok = train_tokenizer(_trace_texts(env_ids, variant), vocab_size=vocab_size)
            model = build_student(preset, len(tok), seed=0)
            save_student(model, tok, hf, {"prompt_variant": variant, "preset": preset})
    files = {"hf": hf, "f32": root / "student-f32.gguf"}
    if not files["f32"].is_file():
        write_gguf(hf, files["f32"])
    for q in quants:
        files[q] = root / f"student-{q}.gguf"
        if not files[q].is_file():
            quantize(files["f32"], files[q], q)
    return files


def _trained(preset: str, root: Path, env_ids: Sequence[str], vocab_size: int, steps: int,
             variant: str) -> Path:
    import envs
    from agent.episode import run_episode
    from agent.policies import load_policy
    from distill.traces import TraceWriter
    from distill.train import train
    from distill.train_config import TrainConfig

    traces = root / "traces.jsonl"
    if traces.exists():
        traces.unlink()  # a half-written earlier attempt
    expert = load_policy("expert")
    with TraceWriter(traces) as writer:
        for env_id in env_ids:
            for seed in envs.seeds(env_id, "train", 24):
                writer.write(run_episode(envs.make(env_id), expert, seed))
    cfg = TrainConfig(traces=str(traces), student=preset, out=str(root / "run"),
                      vocab_size=vocab_size, steps=steps, batch_size=8, warmup=min(10, steps),
                      lr=3e-3, prompt_variant=variant, progress=False)
    best = Path(train(cfg))
    hf = root / "student"
    os.replace(best, hf)
    return hf
