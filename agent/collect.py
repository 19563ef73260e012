"""``agentkd collect``: run a teacher on env seeds and append its episodes to a trace file.

    agentkd collect --teacher expert --env frozenlake-4x4,taxi --episodes 200 --out traces.jsonl
    agentkd collect --teacher openai:qwen --base-url http://127.0.0.1:8000/v1 \\
        --env tools-single --episodes 500 --concurrency 16 --out tools.jsonl

* Each finished episode is appended to ``--out`` as one flushed line; the config is saved
  beside it as ``OUT.config.json``. Re-running the same command resumes: (env, seed) pairs
  already on disk are skipped, and a torn last line is discarded with a warning.
* ``--only-success`` (on by default: this is distillation data) keeps failed episodes out
  of ``--out``; they go to the sidecar ``OUT.failed.jsonl`` instead, so a resume does not
  re-run them and the summary still counts them. Episodes stopped by a backend error
  (an API that kept failing) always go to the sidecar and are retried by a resume.
* ``--concurrency C`` runs C episodes at once in threads, each with its own policy
  instance (for API teachers; a local model would be loaded C times).
* ``--noise P`` (DART-style noise injection, ``agent.noise``) executes, at each step with
  probability P, a random action instead of the teacher's and has the teacher label every
  state the episode visits: ``--out`` then holds one line per labelled state and the
  executed episodes go to ``OUT.executed.jsonl``.
"""

from __future__ import annotations

import itertools
import logging
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tyro

from agent import noise
from agent.types import Episode, Sampling
from distill.traces import iter_appended

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectConfig:
    """Run a teacher on env seeds and append its episodes to a trace file."""

    teacher: str = "expert"
    """Policy spec: expert | openai:MODEL | gguf:PATH | hf:PATH."""
    env: str = "frozenlake-4x4"
    """Env id, or several separated by commas (agentkd envs lists them)."""
    episodes: int = 20
    """Episodes per env (the first N seeds of --split)."""
    split: str = "train"
    """Seed split: train (even seeds) or test (odd seeds)."""
    seed_start: int = 0
    """Index of the first seed, to collect further seeds without repeating."""
    out: str = "traces.jsonl"
    """Trace file to append to (its config goes to OUT.config.json)."""
    only_success: bool = True
    """Keep failed episodes out of --out (default on: this is distillation data); they are
    recorded in OUT.failed.jsonl and counted in the summary."""
    concurrency: int = 1
    """Episodes run at once (threads; for API teachers such as openai:)."""
    base_url: str | None = None
    """OpenAI-compatible endpoint for openai: teachers (default: OPENAI_BASE_URL)."""
    api_key: str | None = None
    """API key for openai: teachers (default: OPENAI_API_KEY)."""
    prompt_variant: str | None = None
    """Prompt variant for openai: teachers (full | compact; default full)."""
    temperature: float = 0.0
    """Sampling temperature of LLM teachers (0: greedy)."""
    max_tokens: int = 160
    """Cap on generated tokens per decision."""
    seed: int = 0
    """Sampling seed of LLM teachers, and the seed of --noise's draws."""
    top_logprobs: int = 0
    """Top-k log-probabilities to record per generated token (0: none; for KD)."""
    n_threads: int | None = None
    """CPU threads of local models (gguf:, hf:)."""
    grammar: bool = False
    """openai: teachers served by llama.cpp: send each decision's GBNF grammar, so only
    legal actions come back."""
    noise: float = 0.0
    """Noise injection (DART): probability that a step executes a random action instead of
    the teacher's; the teacher then labels every visited state and --out gets one line per
    labelled state, whatever the episode's outcome (--only-success does not apply), and the
    executed episodes go to OUT.executed.jsonl. 0: plain teacher episodes."""
    noise_actions: str = ""
    """The actions noise picks from, separated by commas (e.g. 'turn left,turn right,go
    forward'; each must be legal in the env's first state). Default: any legal action."""
    progress: bool = True
    """Show a progress bar."""


@dataclass
class EnvTally:
    """Counts of one env over the requested seeds (old and new episodes)."""

    episodes: int = 0
    successes: int = 0
    steps: int = 0
    invalid: int = 0
    tokens: int = 0
    errors: int = 0
    kept: int = 0

    def add(self, ep: Episode, kept: int) -> None:
        self.episodes += 1
        self.successes += int(ep.success)
        self.steps += ep.n_steps
        self.invalid += sum(not s.valid for s in ep.steps)
        self.tokens += sum(s.prompt_tokens + s.completion_tokens for s in ep.steps)
        self.errors += int(ep.error is not None)
        self.kept += int(kept)


@dataclass
class CollectSummary:
    """What ``collect`` left on disk for the requested seeds."""

    out: Path
    failed: Path
    kept_label: str = "kept"
    new: int = 0
    resumed: int = 0
    per_env: dict[str, EnvTally] = field(default_factory=dict)

    @property
    def total(self) -> EnvTally:
        t = EnvTally()
        for e in self.per_env.values():
            for k, v in asdict(e).items():
                setattr(t, k, getattr(t, k) + v)
        return t

    def table(self) -> Any:
        """A rich Table: one row per env and a total row."""
        from rich.table import Table

        table = Table(title=f"{self.out} ({self.new} new, {self.resumed} already on disk)")
        table.add_column("env", no_wrap=True)
        for col in ("n", "success", "rate", "steps", "invalid", "tokens", "errors", self.kept_label):
            table.add_column(col, justify="right")
        for name, t in [*self.per_env.items(), ("total", self.total)]:
            table.add_row(name, str(t.episodes), str(t.successes), f"{t.successes / max(1, t.episodes):.1%}",
                          f"{t.steps / max(1, t.episodes):.1f}", f"{t.invalid / max(1, t.steps):.1%}",
                          str(t.tokens), str(t.errors), str(t.kept))
        return table


def failed_path(out: str | Path) -> Path:
    """The sidecar of failed / errored episodes beside trace file ``out``."""
    return Path(str(out) + ".failed.jsonl")


def config_path(out: str | Path) -> Path:
    return Path(str(out) + ".config.json")


def _on_disk(cfg: CollectConfig) -> dict[tuple[str, int], tuple[Episode, bool]]:
    """(env, seed) -> (its latest record, whether it is in --out). --out wins over the sidecar."""
    found: dict[tuple[str, int], tuple[Episode, bool]] = {}
    for ep in iter_appended(failed_path(cfg.out)):  # a later line (a retried episode) replaces an earlier one
        found[(ep.env_id, ep.seed)] = (ep, False)
    for ep in iter_appended(cfg.out):  # the first record in --out wins
        key = (ep.env_id, ep.seed)
        if key not in found or not found[key][1]:
            found[key] = (ep, True)
    return found


def _check_config(cfg: CollectConfig) -> None:
    """Refuse to mix teachers, splits or sampling settings in one trace file."""
    import json

    p = config_path(cfg.out)
    if not p.exists() or not Path(cfg.out).exists():
        return
    try:
        old = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return
    same = ("teacher", "split", "prompt_variant", "temperature", "max_tokens", "seed", "top_logprobs",
            "noise", "noise_actions")
    diff = [f"{k}: {old.get(k)!r} on disk, {getattr(cfg, k)!r} now" for k in same
            if k in old and old[k] != getattr(cfg, k)]
    if diff:
        raise ValueError(f"{cfg.out}: collected with another config ({'; '.join(diff)}); "
                         "use another --out or the same settings to resume")


def _validate(cfg: CollectConfig) -> list[str]:
    from envs import seeds, spec

    env_ids = list(dict.fromkeys(s.strip() for s in cfg.env.split(",") if s.strip()))
    if not env_ids:
        raise ValueError(f"--env: expected one or more env ids separated by commas, got {cfg.env!r}")
    for env_id in env_ids:
        spec(env_id)
    seeds(env_ids[0], cfg.split, 0)  # checks the split name
    if cfg.episodes < 1 or cfg.concurrency < 1 or cfg.seed_start < 0:
        raise ValueError(f"expected --episodes >= 1, --concurrency >= 1, --seed-start >= 0; got "
                         f"{cfg.episodes}, {cfg.concurrency}, {cfg.seed_start}")
    if not 0.0 <= cfg.noise <= 1.0:  # NaN fails this too
        raise ValueError(f"--noise: expected a probability in [0, 1], got {cfg.noise}")
    actions = noise.parse_actions(cfg.noise_actions)
    if actions and cfg.noise == 0.0:
        raise ValueError("--noise-actions: has no effect without --noise P > 0")
    if actions:
        noise.check_actions(actions, env_ids, cfg.split, cfg.seed_start)
    return env_ids


def _loader(cfg: CollectConfig) -> Any:
    """A function giving each thread its own policy (the expert binds to one env at a time)."""
    from agent.policies import load_policy

    kw: dict[str, Any] = {
        "sampling": Sampling(temperature=cfg.temperature, max_tokens=cfg.max_tokens, seed=cfg.seed,
                             top_logprobs=cfg.top_logprobs),
        "base_url": cfg.base_url, "api_key": cfg.api_key, "n_threads": cfg.n_threads,
    }
    if cfg.prompt_variant is not None:
        kw["prompt_variant"] = cfg.prompt_variant
    if cfg.grammar:
        kw["grammar"] = True
    first = load_policy(cfg.teacher, **kw)  # fail fast, in this thread, on a bad spec
    local = threading.local()
    owner = threading.get_ident()

    def get() -> Any:
        if threading.get_ident() == owner:
            return first
        if not hasattr(local, "policy"):
            local.policy = load_policy(cfg.teacher, **kw)
        return local.policy

    return get


def _env_getter() -> Any:
    """``get(env_id)``: one env per thread and id, reused across episodes (``reset(seed)``
    starts each afresh; building Taxi's model and planner anew cost ~30 ms an episode)."""
    import envs

    local = threading.local()

    def get(env_id: str) -> Any:
        cache = local.__dict__.setdefault("envs", {})
        if env_id not in cache:
            cache[env_id] = envs.make(env_id)
        return cache[env_id]

    return get


def _run_one(get_policy: Any, get_env: Any, env_id: str, seed: int) -> Episode:
    from agent.episode import run_episode

    return run_episode(get_env(env_id), get_policy(), seed)


def collect(cfg: CollectConfig) -> CollectSummary:
    """Run ``cfg.teacher`` on every (env, seed) not yet on disk and append the episodes
    (with ``cfg.noise``: the labelled states of noisy episodes, ``agent.noise``).

    Returns:
        A summary of every requested (env, seed), counting episodes already on disk.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from distill.traces import TraceWriter, write_json_atomic
    from envs import seeds

    env_ids = _validate(cfg)
    _check_config(cfg)
    noisy = cfg.noise > 0
    wanted = [(e, s) for e in env_ids for s in seeds(e, cfg.split, cfg.episodes, cfg.seed_start)]
    lines: dict[tuple[str, int], int] = {}
    if noisy:
        on_disk, lines = noise.on_disk(cfg.out)
        todo = [k for k in wanted if not on_disk.get(k, (None, False))[1]]
    else:
        on_disk = _on_disk(cfg)
        todo = [k for k in wanted if k not in on_disk or on_disk[k][0].error is not None]
    summary = CollectSummary(out=Path(cfg.out), failed=noise.executed_path(cfg.out) if noisy else failed_path(cfg.out),
                             kept_label="states" if noisy else "kept", resumed=len(wanted) - len(todo))
    if summary.resumed:
        log.info("%s: resuming, %d of %d episodes already on disk", cfg.out, summary.resumed, len(wanted))
    live = {"ok": 0, "n": 0, "tokens": 0, "errors": 0}
    get_policy = _loader(cfg) if todo else None
    get_env = _env_getter()
    if noisy:
        run = noise.runner(cfg.teacher, cfg.noise, cfg.seed, noise.parse_actions(cfg.noise_actions),
                           get_policy, get_env) if todo else None
    else:
        def run(env_id: str, seed: int) -> Any:
            return _run_one(get_policy, get_env, env_id, seed)
    write_json_atomic(config_path(cfg.out), asdict(cfg))
    if todo:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[stats]}"), TimeElapsedColumn())
        with TraceWriter(cfg.out) as writer, TraceWriter(summary.failed) as failed, \
                Progress(*columns, disable=not cfg.progress) as bar:
            what = f"collect {cfg.teacher}" + (f" (noise {cfg.noise:g})" if noisy else "")
            task = bar.add_task(what, total=len(wanted), completed=summary.resumed, stats="")

            def record(result: Any) -> None:
                if noisy:  # labels first, then the executed episode that marks the seed done
                    ep = result.executed
                    keep = ep.error is None
                    if keep:
                        writer.write_many(result.labelled)
                        lines[(ep.env_id, ep.seed)] = len(result.labelled)
                    failed.write(ep)
                else:
                    ep = result
                    keep = ep.error is None and (ep.success or not cfg.only_success)
                    (writer if keep else failed).write(ep)
                on_disk[(ep.env_id, ep.seed)] = (ep, keep)
                live["n"] += 1
                live["ok"] += int(ep.success)
                live["errors"] += int(ep.error is not None)
                live["tokens"] += sum(s.prompt_tokens + s.completion_tokens for s in ep.steps)
                summary.new += 1
                bar.update(task, advance=1, stats=f"success {live['ok']}/{live['n']}  tokens {live['tokens']}  "
                                                  f"errors {live['errors']}")

            if cfg.concurrency == 1:
                for env_id, seed in todo:
                    record(run(env_id, seed))
            else:
                _run_threads(cfg.concurrency, run, todo, record)
    for env_id, seed in wanted:
        ep, kept = on_disk[(env_id, seed)]
        summary.per_env.setdefault(env_id, EnvTally()).add(ep, lines.get((env_id, seed), 0) if noisy else kept)
    return summary


def _run_threads(n: int, run: Any, todo: list[tuple[str, int]], record: Any) -> None:
    """Run ``run(env_id, seed)`` for ``todo`` on ``n`` threads; records are written from this
    thread only."""
    pool = ThreadPoolExecutor(n, thread_name_prefix="collect")
    pending = iter(todo)
    running: set[Future[Any]] = set()
    try:
        for key in itertools.islice(pending, 2 * n):
            running.add(pool.submit(run, *key))
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                record(f.result())
                nxt = next(pending, None)
                if nxt is not None:
                    running.add(pool.submit(run, *nxt))
    finally:
        # On Ctrl-C: drop what has not started; episodes in flight are lost, not half-written.
        pool.shutdown(wait=False, cancel_futures=True)


def cli(argv: list[str]) -> int:
    """``agentkd collect --teacher SPEC --env ID[,ID...] --episodes N --out FILE``."""
    from rich.console import Console

    cfg = tyro.cli(CollectConfig, args=argv, prog="agentkd collect")
    console = Console()
    try:
        summary = collect(cfg)
    except ValueError as e:  # bad spec, env id, split, model path: one line, no traceback
        Console(stderr=True).print(f"[red]agentkd collect: {e}[/red]", highlight=False)
        return 1
    console.print(summary.table())
    return 0
