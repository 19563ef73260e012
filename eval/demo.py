"""``agentkd demo``: the whole pipeline on offline defaults, in one command.

    agentkd demo --out runs/demo            # expert teacher, micro student (~20 min, 2 cores)
    agentkd demo --quick --out runs/quick   # tiny budgets (< 3 min), what the tests run
    agentkd demo --teacher openai:my-model --base-url http://127.0.0.1:8000/v1

Stages, each in its own process (so its wall time and peak memory are its own) and each
skipped when a previous run finished it (``OUT/stages.json``), so a killed demo resumes:

1. collect: the teacher plays the train seeds of the default envs -> ``OUT/traces.jsonl``;
2. train: a student (``micro``; ``nano`` with --quick) learns from the traces -> ``OUT/student``;
3. export: GGUF, quantized to Q8_0 and Q4_K_M, verified -> ``OUT/export``;
4. compare: teacher vs HF student vs both GGUFs on the same held-out seeds ->
   ``OUT/report`` (report.md, report.json with the stages' timings, chart.png).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.traces import write_json_atomic
from eval.metrics import cpu_count, peak_rss_bytes

log = logging.getLogger(__name__)

DEFAULT_ENVS = "frozenlake-4x4,taxi,babyai-goto-local,tools-chain"
STAGES = ("collect", "train", "export", "compare")


@dataclass(frozen=True)
class DemoConfig:
    """Collect, train, export, quantize and compare, on offline defaults."""

    out: Path = Path("runs/demo")
    """Output directory (traces, student, export, report); re-run to resume."""
    quick: bool = False
    """Tiny budgets (a few episodes, a short training run): the whole demo in minutes."""
    teacher: str = "expert"
    """Teacher policy spec: expert | openai:MODEL | gguf:PATH | hf:PATH."""
    env: str = DEFAULT_ENVS
    """Env ids, separated by commas."""
    student: str | None = None
    """Student size preset (nano, micro, small) or a local checkpoint directory
    (default: micro, quick: nano)."""
    quant: str = "q8_0,q4_k_m"
    """Quantization types of the exported student, separated by commas."""
    train_episodes: int | None = None
    """Teacher episodes per env for training (default: 1000, quick: 8)."""
    eval_episodes: int | None = None
    """Held-out episodes per env and policy (default: 20, quick: 2)."""
    steps: int | None = None
    """Training steps (default: 2000 of batch 8 in bf16, quick: 10)."""
    batch_size: int | None = None
    """Training batch size (default: 8)."""
    max_steps: int | None = None
    """Cap on steps per evaluated episode (default: 50, quick: 24)."""
    copy_warmup: int | None = None
    """Copy warm-up steps before training (``agentkd train --copy-warmup``; default: 0)."""
    rename_entities: bool = False
    """Give each training episode's made-up names (tools-chain) fresh ones
    (``agentkd train --rename-entities``); pays off with a copy warm-up (BENCHMARKS.md)."""
    seed: int = 0
    """Training seed (``agentkd train --seed``). The demo is deterministic for a seed; another
    seed shows how much of a figure is one student's luck."""
    loop_temperature: float = 1.0
    """Loop escape in the compare stage (``agentkd eval --loop-temperature``): a student back
    in a situation it has acted in this episode samples its decision at this temperature
    instead of repeating a cycle (0: off; the expert teacher is never resampled)."""
    workers: int | None = None
    """Worker processes per policy in the compare stage (default: one per CPU core, at most
    4; quick: 1, where starting the processes would cost more than they save)."""
    base_url: str | None = None
    """Base URL of an OpenAI-compatible endpoint for an openai: teacher."""
    api_key: str | None = None
    """API key for an openai: teacher (else OPENAI_API_KEY)."""
    grammar: bool = False
    """An openai: teacher served by llama.cpp: send each decision's GBNF grammar."""
    progress: bool = True
    """Show progress bars."""

    def budget(self) -> dict[str, Any]:
        """The effective budgets (explicit values win over the quick/full defaults)."""
        quick = {"student": "nano", "train_episodes": 8, "eval_episodes": 2, "steps": 10,
                 "batch_size": 8, "lr": 1e-3, "eval_every": 10, "max_steps": 24, "max_tokens": 48,
                 "agreement_states": 8, "export_states": 4, "mixed_precision": "no",
                 "val_greedy_max": 256, "workers": 1, "copy_warmup": 0}
        # Sized by benchmarks/train_quality.py and demo_pipeline.py (BENCHMARKS.md): batches
        # of 8 under bf16 autocast get a micro student past its early plateau (one action
        # for every state) in about a third of the steps that batches of 16 in fp32 took;
        # collecting is cheap (~10 ms an episode), so every example is seen about once.
        # Evaluation is sized by the slowest policy, the transformers student (~10 ms a
        # generated token): 20 held-out episodes per env, each capped at 50 steps, the same
        # cap for every policy, so a lost student does not wander to Taxi's 200-step limit.
        # Episodes run on every core (the same episodes as one worker: greedy and seeded),
        # and the training run's validation decodes 64 held-out states greedily, not 256
        # (it reports; the best checkpoint is chosen by validation loss): on 2 cores of
        # machine B, compare of the same student went from 891 to 421 s, and validation
        # (mostly the held-out loss) from 127 to 95 s.
        full = {"student": "micro", "train_episodes": 1000, "eval_episodes": 20, "steps": 2000,
                "batch_size": 8, "lr": 2e-3, "eval_every": 1000, "max_steps": 50,
                "max_tokens": 160, "agreement_states": 60, "export_states": 24,
                "mixed_precision": "bf16" if _bf16_is_fast() else "no",
                "val_greedy_max": 64, "workers": min(cpu_count(), 4), "copy_warmup": 0}
        b = dict(quick if self.quick else full)
        for k in ("student", "train_episodes", "eval_episodes", "steps", "batch_size", "max_steps", "workers",
                  "copy_warmup"):
            if getattr(self, k) is not None:
                b[k] = getattr(self, k)
        return b


def _bf16_is_fast() -> bool:
    """Whether oneDNN runs bf16 on this CPU (its own check: AVX-512 at least); elsewhere bf16
    autocast falls back to slow paths, so the demo stays in fp32."""
    import torch

    try:
        return bool(torch.cuda.is_available() or torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass
class DemoResult:
    """What ``demo`` produced."""

    report: dict[str, Any]
    report_dir: Path
    stages: list[dict[str, Any]]


def _config(cls: type, required: dict[str, Any], optional: dict[str, Any]) -> Any:
    """Build another command's config: ``required`` fields must exist (a clear error names
    what is missing), ``optional`` ones are passed only where the config has them."""
    names = {f.name for f in dataclasses.fields(cls)}
    missing = sorted(set(required) - names)
    if missing:
        raise TypeError(f"{cls.__module__}.{cls.__name__}: expected field(s) "
                        f"{', '.join(missing)}, found {', '.join(sorted(names))}")
    return cls(**required, **{k: v for k, v in optional.items() if k in names and v is not None})


# --------------------------------------------------------------------------- stages
def _collect(cfg: DemoConfig, b: dict[str, Any]) -> str:
    from agent.collect import CollectConfig, collect

    out = cfg.out / "traces.jsonl"
    collect(_config(CollectConfig,
                    {"teacher": cfg.teacher, "env": cfg.env, "episodes": b["train_episodes"],
                     "out": str(out)},
                    {"split": "train", "base_url": cfg.base_url, "api_key": cfg.api_key,
                     "grammar": cfg.grammar or None, "progress": cfg.progress}))
    return str(out)


def _train(cfg: DemoConfig, b: dict[str, Any]) -> str:
    from distill.train_config import TrainConfig
    from distill.train import train

    best = train(_config(TrainConfig,
                         {"traces": str(cfg.out / "traces.jsonl"), "student": b["student"],
                          "out": str(cfg.out / "student"), "steps": b["steps"]},
                         {"batch_size": b["batch_size"], "lr": b["lr"], "eval_every": b["eval_every"],
                          "val_greedy_max": b["val_greedy_max"], "mixed_precision": b["mixed_precision"],
                          "copy_warmup": b["copy_warmup"], "rename_entities": cfg.rename_entities,
                          "seed": cfg.seed, "progress": cfg.progress}))
    return str(best)


def _export(cfg: DemoConfig, b: dict[str, Any], student: str) -> dict[str, str]:
    from distill.export import ExportConfig, export

    out = cfg.out / "export"
    result = export(_config(
        ExportConfig, {"student": student, "quant": cfg.quant, "out": str(out)},
        {"n_states": b["export_states"], "max_new_tokens": b["max_tokens"]}))
    return {f.qtype: f.path for f in result.files if f.qtype in _quants(cfg.quant)}


def _quants(text: str) -> list[str]:
    return [q.strip().lower() for q in text.split(",") if q.strip()]


def _compare(cfg: DemoConfig, b: dict[str, Any], student: str, ggufs: dict[str, str]) -> str:
    from eval.compare import CompareConfig, compare

    policies = (cfg.teacher, f"hf:{student}", *(f"gguf:{p}" for p in ggufs.values()))
    result = compare(CompareConfig(
        policy=policies, env=cfg.env, episodes=b["eval_episodes"], out=cfg.out / "report",
        teacher=cfg.teacher, agreement_states=b["agreement_states"], workers=b["workers"],
        max_tokens=b["max_tokens"], max_steps=b["max_steps"], base_url=cfg.base_url,
        api_key=cfg.api_key, grammar=cfg.grammar, loop_temperature=cfg.loop_temperature,
        progress=cfg.progress))
    return str(result.paths.json)


def _exit_with(parent_pid: int, poll_s: float = 1.0) -> None:
    """End this stage's process once the demo that started it is gone. A demo ended by
    SIGTERM (which it does not catch) or SIGKILL has no chance to stop its stage, which
    would go on alone (training for minutes) and write into the run directory beside a
    resumed demo."""
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    os._exit(1)


def _stage_entry(fn: Callable[..., Any], args: tuple[Any, ...], conn: Any, parent_pid: int) -> None:
    """Run one stage in this (spawned) process and send back (ok, result, peak RSS)."""
    threading.Thread(target=_exit_with, args=(parent_pid,), name="exit-with-demo", daemon=True).start()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result, ok = fn(*args), True
    except BaseException as e:  # reported by the parent with the stage's name
        result, ok = f"{type(e).__name__}: {e}", False
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    conn.send((ok, result, max(peak_rss_bytes(), children)))
    conn.close()


def _run_stage(name: str, fn: Callable[..., Any], *args: Any) -> tuple[Any, float, int]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    t0 = time.perf_counter()
    proc = ctx.Process(target=_stage_entry, args=(fn, args, child, os.getpid()), name=f"demo-{name}")
    proc.start()
    child.close()
    try:
        ok, result, peak = parent.recv()
    except EOFError:
        proc.join()
        raise RuntimeError(f"demo stage {name!r}: its process died (exit code "
                           f"{proc.exitcode}); re-run the same command to resume") from None
    except KeyboardInterrupt:
        proc.terminate()
        raise
    proc.join()
    if not ok:
        raise RuntimeError(f"demo stage {name!r} failed: {result}")
    return result, time.perf_counter() - t0, peak


def _check_budget(b: dict[str, Any]) -> None:
    """A count no stage can run with is a one-line error naming its flag, before any work."""
    for k in ("train_episodes", "eval_episodes", "steps", "batch_size", "max_steps", "workers"):
        if b[k] <= 0:
            raise ValueError(f"--{k.replace('_', '-')}: expected > 0, got {b[k]}")
    if b["copy_warmup"] < 0:
        raise ValueError(f"--copy-warmup: expected >= 0 steps, got {b['copy_warmup']}")


def demo(cfg: DemoConfig) -> DemoResult:
    """Run (or resume) the pipeline and write the report with per-stage timings."""
    from eval.evaluate import parse_env_list
    from eval.report import write_report

    parse_env_list(cfg.env)  # fail before any work on a typo
    b = cfg.budget()
    _check_budget(b)  # ... or on a budget no stage can run with
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = dataclasses.replace(cfg, out=out)
    config = {**dataclasses.asdict(cfg), "api_key": None, "budget": b}
    state_path = out / "stages.json"
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.exists() else {}
    if state.get("config", {}).get("budget") not in (None, b):
        log.warning("%s: budgets differ from the run that wrote it; finished stages are kept",
                    state_path)
    state["config"] = config
    stages = state.setdefault("stages", {})

    def stage(name: str, fn: Callable[..., Any], *args: Any) -> Any:
        done = stages.get(name)
        if done and done.get("status") == "done":
            log.info("demo: stage %s already done (%s), skipping", name, done["result"])
            return done["result"]
        log.info("demo: stage %s", name)
        result, wall, peak = _run_stage(name, fn, cfg, b, *args)
        stages[name] = {"stage": name, "status": "done", "wall_s": wall,
                        "peak_rss_bytes": peak, "result": result}
        write_json_atomic(state_path, state)
        return result

    stage("collect", _collect)
    student = stage("train", _train)
    ggufs = stage("export", _export, student)
    report_json = Path(stage("compare", _compare, student, ggufs))
    report = json.loads(report_json.read_text(encoding="utf-8"))
    report["stages"] = [stages[n] for n in STAGES]
    report["total_wall_s"] = sum(s["wall_s"] for s in report["stages"])
    report["demo_config"] = config
    write_report(report, report_json.parent)
    return DemoResult(report=report, report_dir=report_json.parent, stages=report["stages"])


def cli(argv: list[str]) -> int:
    import tyro
    from rich.console import Console

    from eval.metrics import human_bytes
    from eval.report import rich_table

    cfg = tyro.cli(DemoConfig, args=argv, prog="agentkd demo")
    result = demo(cfg)
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(rich_table(result.report))
    for s in result.stages:
        console.print(f"  {s['stage']:<8} {s['wall_s']:7.1f} s   peak {human_bytes(s['peak_rss_bytes'])}")
    console.print(f"total {result.report['total_wall_s']:.1f} s; report: "
                  f"{result.report_dir / 'report.md'}")
    return 0
