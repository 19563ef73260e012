"""``agentkd eval``: run one policy on held-out test seeds and report its metrics per env.

    agentkd eval --policy gguf:runs/demo/export/student-q8_0.gguf \\
        --env frozenlake-4x4,taxi --episodes 50 --workers 2 --out runs/eval-q8

Every finished episode is appended (flushed) to ``OUT/episodes.jsonl`` as a trace line,
so an interrupted eval resumes where it stopped: (policy, env, seed) triples already on
disk are skipped. Episodes run in worker processes (``--workers N``), each of which loads
its policy once; peak memory is then the RSS high-water mark of the processes that ran the
policy, not of this one. ``run_policies`` is shared with ``agentkd compare``.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.policies import normalize_spec
from agent.types import Episode, Sampling
from distill.traces import (SCHEMA_VERSION, TraceWriter, episode_from_dict, iter_traces,
                            repair_torn_tail)
from eval.metrics import PEAK_RSS_KEY, EnvMetrics, all_metrics, cpu_count, peak_rss_bytes

log = logging.getLogger(__name__)

RECORDS = "episodes.jsonl"


@dataclass(frozen=True)
class RunOptions:
    """How policies are loaded and run: the options eval, compare and demo share (the
    commands' configs extend it, so the flags and their help are defined once)."""

    workers: int = 1
    """Worker processes per policy, each loading the policy once (0: run in this process)."""
    temperature: float = 0.0
    """Sampling temperature of LLM policies (0: greedy)."""
    max_tokens: int = 160
    """Cap on generated tokens per decision."""
    base_url: str | None = None
    """Base URL of an OpenAI-compatible endpoint (openai: policies; else OPENAI_BASE_URL)."""
    api_key: str | None = None
    """API key for openai: policies (else OPENAI_API_KEY)."""
    n_threads: int | None = None
    """CPU threads per worker for local models (default: cores / workers)."""
    prompt_variant: str | None = None
    """Prompt variant for openai: policies (full | compact); others read their metadata."""
    max_steps: int | None = None
    """Cap on steps per episode, below the env's own limit (a bounded eval of weak students)."""
    loop_temperature: float = 0.0
    """Loop escape: an LLM policy back in a situation it has already acted in this episode
    (same observation after the same recent actions) samples its decision at this
    temperature instead of repeating itself (0: off; the expert is never resampled)."""
    grammar: bool = False
    """openai: policies served by llama.cpp: send each decision's GBNF grammar (legal actions
    only), as gguf: policies always do."""
    copy_args: bool = True
    """Under the grammar (gguf:, and openai: with --grammar), a tool argument the tool marks
    as copied (the name of an entity or item) may only be a span of the episode's text;
    --no-copy-args lets the model write any string there."""
    progress: bool = True
    """Show a progress bar."""

    def run_options(self) -> RunOptions:
        """Just the run options of a command's config."""
        return RunOptions(**{f.name: getattr(self, f.name) for f in dataclasses.fields(RunOptions)})

    def load_kwargs(self, spec: str) -> dict[str, Any]:
        """Keyword arguments of ``agent.policies.load_policy(spec, ...)`` for these options."""
        threads = self.n_threads
        if threads is None and self.workers > 1:  # share the cores, do not oversubscribe
            threads = max(1, cpu_count() // self.workers)
        kw: dict[str, Any] = {
            "sampling": Sampling(temperature=self.temperature, max_tokens=self.max_tokens),
            "base_url": self.base_url,
            "api_key": self.api_key,
            "n_threads": threads,
        }
        if self.prompt_variant is not None:
            kw["prompt_variant"] = self.prompt_variant
        try:
            kind = normalize_spec(spec).partition(":")[0]
        except ValueError:  # not a spec load_policy knows: it names the problem when called
            kind = ""
        if self.grammar and kind == "openai":  # the other backends have no such option
            kw["grammar"] = True
        if not self.copy_args and (kind == "gguf" or (self.grammar and kind == "openai")):
            kw["copy_args"] = False
        return kw


@dataclass(frozen=True)
class EvalConfig(RunOptions):
    """Evaluate one policy on the test seeds of one or more envs."""

    policy: str = "expert"
    """Policy spec: expert | openai:MODEL | gguf:PATH | hf:PATH."""
    env: str = "frozenlake-4x4"
    """Env id, or several separated by commas."""
    episodes: int = 20
    """Episodes per env (the first N test seeds of each env)."""
    out: Path = Path("runs/eval")
    """Output directory: episodes.jsonl, report.json, report.md, chart.png."""
    seed_start: int = 0
    """Index of the first test seed (to evaluate further seeds without repeating)."""


@dataclass
class EvalResult:
    """What ``evaluate`` produced."""

    rows: list[EnvMetrics]
    records: Path
    report: Any  # eval.report.ReportPaths


def parse_env_list(text: str) -> list[str]:
    """``"a, b,a"`` -> ``["a", "b"]``, each checked against the registry."""
    import envs

    ids = list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    if not ids:
        raise ValueError(f"--env: expected one or more env ids separated by commas, got {text!r}")
    for env_id in ids:
        envs.spec(env_id)  # an unknown id fails here with the valid ones listed
    return ids


def eval_seeds(env_ids: Sequence[str], episodes: int, start: int = 0) -> dict[str, list[int]]:
    """The held-out seeds every policy meets: env -> the same list for everyone."""
    import envs

    if episodes < 1:
        raise ValueError(f"--episodes: expected >= 1, got {episodes}")
    return {env_id: envs.seeds(env_id, "test", episodes, start) for env_id in env_ids}


def load_records(path: Path, keys: set[tuple[str, str, int]] | None = None) -> list[Episode]:
    """The episodes of a records file (first one of each (policy, env, seed)); if ``keys``
    is given, only those triples."""
    if not path.exists():
        return []
    repair_torn_tail(path)
    seen: dict[tuple[str, str, int], Episode] = {}
    for e in iter_traces(path):
        key = (e.teacher, e.env_id, e.seed)
        if (keys is None or key in keys) and key not in seen:
            seen[key] = e
    return list(seen.values())


# ----------------------------------------------------------------- episode running
def _run_one(policy: Any, spec: str, env_cache: dict[str, Any], env_id: str, seed: int,
             max_steps: int | None = None, loop_temperature: float = 0.0) -> Episode:
    import envs
    from agent.episode import run_episode

    env = env_cache.get(env_id)
    if env is None:
        env = env_cache[env_id] = envs.make(env_id)
        if max_steps:
            env = env_cache[env_id] = _StepCap(env, max_steps)
    ep = run_episode(env, policy, seed, loop_temperature=loop_temperature)
    ep.teacher = spec  # records are keyed by the spec the user gave
    ep.timings[PEAK_RSS_KEY] = float(peak_rss_bytes())
    return ep


class _StepCap:
    """A TextEnv whose episodes are truncated after ``cap`` steps.

    The env itself is left as it is (its instructions may state its own step limit, and a
    student must see the prompts it was trained on); only ``step`` reports truncation.
    """

    def __init__(self, env: Any, cap: int) -> None:
        self._env, self._cap = env, cap

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    def reset(self, **kwargs: Any) -> tuple[str, dict[str, Any]]:
        return self._env.reset(**kwargs)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._env.step(action)
        if not (terminated or truncated) and self._env.elapsed_steps >= self._cap:
            truncated, info = True, {**info, "success": False}
        return obs, reward, terminated, truncated, info


# Worker-process state: the policy is loaded once per worker by the pool's initializer.
_WORKER: dict[str, Any] = {}


def _worker_init(spec: str, load_kwargs: dict[str, Any], max_steps: int | None,
                 loop_temperature: float) -> None:
    from agent.policies import load_policy

    try:
        _WORKER["policy"] = load_policy(spec, **load_kwargs)
    except Exception as e:  # raised again by the first task, so the caller sees the cause
        _WORKER["error"] = e
    _WORKER.update(spec=spec, envs={}, max_steps=max_steps, loop_temperature=loop_temperature)


def _worker_task(env_id: str, seed: int) -> dict[str, Any]:
    if "error" in _WORKER:
        raise _WORKER["error"]
    return _run_one(_WORKER["policy"], _WORKER["spec"], _WORKER["envs"], env_id, seed,
                    _WORKER["max_steps"], _WORKER["loop_temperature"]).to_dict()


def _progress(enabled: bool) -> Any:
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[stats]}"), TimeElapsedColumn(),
                    TimeRemainingColumn(), disable=not enabled)


def run_policies(
    specs: Sequence[str],
    seeds: dict[str, list[int]],
    out_dir: str | os.PathLike[str],
    options: RunOptions = RunOptions(),
) -> list[Episode]:
    """Run every policy on every (env, seed) not yet in ``OUT/episodes.jsonl``.

    Policies run one after the other (each in its own worker processes, so their peak
    memory is measured apart); episodes of one policy run ``options.workers`` at a time.

    Returns:
        The records of exactly the requested (policy, env, seed) triples, old and new.
    """
    from agent.episode import check_loop_temperature

    check_loop_temperature(options.loop_temperature)  # before any worker starts
    records = Path(out_dir) / RECORDS
    wanted = {(p, env, s) for p in specs for env, ss in seeds.items() for s in ss}
    done = {(e.teacher, e.env_id, e.seed) for e in load_records(records, wanted)}
    if done:
        log.info("%s: resuming, %d of %d episodes already done", records, len(done), len(wanted))
    with TraceWriter(records) as writer, _progress(options.progress) as bar:
        for spec in specs:
            todo = [(env, s) for env, ss in seeds.items() for s in ss if (spec, env, s) not in done]
            total = sum(len(ss) for ss in seeds.values())
            task = bar.add_task(spec, total=total, completed=total - len(todo), stats="")
            tally = {"n": 0, "ok": 0}

            def record(ep: Episode, task: Any = task, tally: dict[str, int] = tally) -> None:
                writer.write(ep)
                tally["n"] += 1
                tally["ok"] += int(ep.success)
                bar.update(task, advance=1, stats=f"success {tally['ok']}/{tally['n']} "
                           f"(last: {ep.env_id} seed {ep.seed})")

            if todo:
                _run_spec(spec, todo, options, record)
    return load_records(records, wanted)


def _run_spec(spec: str, todo: list[tuple[str, int]], options: RunOptions, record: Any) -> None:
    kw = options.load_kwargs(spec)
    if options.workers <= 0:
        from agent.policies import load_policy

        policy, cache = load_policy(spec, **kw), {}
        for env_id, seed in todo:
            record(_run_one(policy, spec, cache, env_id, seed, options.max_steps, options.loop_temperature))
        return
    # spawn: a fresh interpreter per worker (safe with torch/llama.cpp threads, and its
    # RSS high-water mark is the policy's own).
    ctx = multiprocessing.get_context("spawn")
    workers = min(options.workers, len(todo))
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(spec, kw, options.max_steps, options.loop_temperature)) as pool:
        pending = iter(todo)
        running = {pool.submit(_worker_task, *t) for t in _take(pending, 2 * workers)}
        try:
            while running:
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for f in finished:
                    record(episode_from_dict({"schema": SCHEMA_VERSION, **f.result()}, spec))
                running |= {pool.submit(_worker_task, *t) for t in _take(pending, len(finished))}
        except BaseException:
            for f in running:
                f.cancel()
            raise


def _take(it: Any, n: int) -> list[Any]:
    out = []
    for x in it:
        out.append(x)
        if len(out) == n:
            break
    return out


# ------------------------------------------------------------------------ evaluate
def evaluate(cfg: EvalConfig) -> EvalResult:
    """Run ``cfg.policy`` on ``cfg.episodes`` test seeds of each env and write a report."""
    from distill.traces import write_json_atomic
    from eval.report import build_report, write_report

    env_ids = parse_env_list(cfg.env)
    seeds = eval_seeds(env_ids, cfg.episodes, cfg.seed_start)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    config = {"command": "eval", **dataclasses.asdict(cfg), "api_key": None}
    write_json_atomic(out / "eval_config.json", config)
    episodes = run_policies([cfg.policy], seeds, out, cfg.run_options())
    rows = all_metrics(episodes, [cfg.policy], env_ids)
    report = build_report(rows, policies=[cfg.policy], env_ids=env_ids, records=RECORDS,
                          config=config)
    return EvalResult(rows=rows, records=out / RECORDS, report=write_report(report, out))


def cli(argv: list[str]) -> int:
    import json
    import sys

    import tyro
    from rich.console import Console

    from eval.report import rich_table

    cfg = tyro.cli(EvalConfig, args=argv, prog="agentkd eval")
    try:
        result = evaluate(cfg)
    except ValueError as e:  # bad spec, env id, option value: one line, no traceback
        print(f"agentkd eval: {e}", file=sys.stderr)
        return 1
    report = json.loads(result.report.json.read_text(encoding="utf-8"))
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(rich_table(report))
    console.print(f"report: {result.report.markdown}")
    return 0
