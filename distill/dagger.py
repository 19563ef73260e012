"""``agentkd dagger``: on-policy distillation (DAgger) - the student acts, the teacher corrects.

    agentkd dagger --env frozenlake-8x8 --teacher expert --student micro --iterations 3 \\
        --episodes 40 --sft-steps 600 --steps 300 --test-episodes 50 --out runs/dagger-8x8
    agentkd dagger --env tools-single --teacher openai:qwen --base-url http://127.0.0.1:8000/v1 \\
        --student runs/student/best --traces tools.jsonl --concurrency 16 --out runs/dagger-tools

Iteration 0 is the SFT start: with a preset ``--student`` the teacher alone plays
``--sft-episodes`` train seeds (beta_0 = 1) and a student is trained on its labels; with a
checkpoint directory that checkpoint is the start. Iteration i = 1..N:

1. the current student plays ``--episodes`` fresh train seeds under a beta-mixture: at
   each step, with probability ``beta_i = beta_decay ** i`` the teacher's action is
   executed, else the student's (seeded per episode, so a rerun repeats it);
2. in every state visited, the teacher labels the action it would take and why
   (``distill.relabel``: the expert reads the live state; an LLM teacher is asked through
   the same prompt format, cached by prompt, ``--concurrency`` threads);
3. each labelled state becomes one trace line, ``OUT/iter_i/labels.jsonl``: an Episode
   whose last step is the state (its observation, the teacher's rationale and action,
   ``valid=True``) after the executed steps before it (the student's actions as the env
   took them, ``valid=False`` so that ``distill.data`` trains on none of them but rebuilds
   the history of the prompt from them; only the last ``max(FULL_WINDOW, COMPACT_WINDOW)``
   steps are kept, which is all a prompt shows). The aggregate is every iteration's file;
4. the student is trained further (from the previous iteration's best checkpoint) on the
   aggregate, then plays ``--test-episodes`` held-out test seeds (``eval.evaluate``).

``OUT/state.json`` records each finished phase; every phase also resumes by itself
(episodes on disk are skipped, training continues from ``last/``, evaluation records are
reused), so re-running an interrupted command continues in the iteration it was in.
``OUT/report.json``, ``report.md`` and ``report.png`` (``distill.dagger_report``): the teacher,
the SFT-only student and every iteration on the same test seeds.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agent.types import Episode, Sampling
from distill.dagger_report import build_report, report_table, write_markdown
from distill.relabel import LabelCache, Relabeler, Rollout, episode_rng, labelled_state, rollout

log = logging.getLogger(__name__)

STATE_FILE = "state.json"


@dataclass(frozen=True)
class DaggerConfig:
    """On-policy distillation: iterations of student rollouts, teacher labels, training."""

    env: str = "frozenlake-4x4"
    """Env id, or several separated by commas (episodes are per env)."""
    teacher: str = "expert"
    """Teacher policy spec: expert | openai:MODEL | gguf:PATH | hf:PATH."""
    student: str = "micro"
    """The SFT start: a size preset (trained first on teacher rollouts) or a student directory."""
    traces: str = ""
    """Extra trace files in every iteration's training data (e.g. the SFT data of --student PATH).
    Part of that data is enough, since the start has seen it all: the new labels are then a
    larger share and each iteration reads less (BabyAI: 1000 of 4500 SFT episodes,
    BENCHMARKS.md, Training quality)."""
    out: str = "runs/dagger"
    """Run directory (state, labels, students, evaluation, report)."""
    iterations: int = 3
    """DAgger iterations after the SFT start."""
    beta_decay: float = 0.5
    """beta_i = beta_decay ** i: probability that the teacher's action is executed in iteration i."""
    episodes: int = 20
    """Rollouts on fresh train seeds per env and iteration. Their labelled states should be
    a fair share of the aggregate: under 5% of it (a large --traces file) is warned about."""
    sft_episodes: int = 0
    """Teacher rollouts per env for the SFT start of a preset student (0: --episodes)."""
    sft_steps: int = 300
    """Optimizer steps of the SFT start (preset students)."""
    steps: int = 150
    """Optimizer steps per DAgger iteration (continuing from the previous student)."""
    batch_size: int = 16
    """Examples per optimizer step."""
    lr: float = 2e-3
    """Peak learning rate."""
    mixed_precision: Literal["no", "bf16"] = "no"
    """Training under bf16 autocast (``agentkd train --mixed-precision``): faster on CPUs with
    AVX512-BF16."""
    warmup: int = 20
    """Warmup steps of each training run."""
    vocab_size: int = 2048
    """Tokenizer size of a preset student."""
    action_only: bool = False
    """Train on the teacher's actions only (no rationales): shorter completions, faster rollouts."""
    rename_entities: bool = False
    """Tool-use envs: every training line's made-up names renamed afresh (``agentkd train
    --rename-entities``, from the student tokenizer's pieces), as the start was trained; without
    it a renamed start is trained on the train worlds' own names again."""
    val_frac: float = 0.05
    """Labelled states held out for validation (best-checkpoint choice)."""
    kd: Literal["none", "forward", "reverse", "jsd"] = "none"
    """Token-level loss on the labels: with an hf: teacher (same tokenizer) or --top-logprobs."""
    top_logprobs: int = 0
    """Top-k log-probabilities the teacher records per label token (for --kd without hf:)."""
    test_episodes: int = 20
    """Held-out test seeds per env for every student and the teacher."""
    max_steps: int = 0
    """Cap on steps per episode in rollouts and evaluation (0: the env's own limit)."""
    max_tokens: int = 96
    """Cap on generated tokens per decision (student, LLM teacher)."""
    loop_temperature: float = 0.0
    """Loop escape in the held-out evaluation (``agentkd eval --loop-temperature``): > 0
    samples, at this temperature, a decision in a situation already met in the episode.
    Rollouts stay greedy (the states DAgger labels are the student's own)."""
    rollout_backend: Literal["hf", "gguf"] = "hf"
    """How the student plays (rollouts and held-out evaluation): hf, through transformers; gguf,
    each iteration's student is first exported (parity-checked) and plays through llama.cpp,
    several times faster per decision on a CPU (BENCHMARKS.md, decision latency)."""
    rollout_quant: str = "q8_0"
    """GGUF type the student plays at with --rollout-backend gguf (f32 plays as the HF student)."""
    concurrency: int = 1
    """Threads labelling states of an LLM teacher (each with its own policy)."""
    base_url: str | None = None
    """OpenAI-compatible endpoint of an openai: teacher (default: OPENAI_BASE_URL)."""
    api_key: str | None = None
    """API key of an openai: teacher (default: OPENAI_API_KEY)."""
    prompt_variant: str | None = None
    """Prompt variant of an openai: teacher (full | compact)."""
    grammar: bool = False
    """openai: teachers served by llama.cpp: constrain answers to legal actions."""
    n_threads: int | None = None
    """CPU threads of local models."""
    seed: int = 0
    """Seed of the beta-mixture draws and of training."""
    progress: bool = True
    """Show progress bars."""


def beta_schedule(iteration: int, decay: float) -> float:
    """beta_i = decay ** i (beta_0 = 1: the SFT start is the teacher alone)."""
    if iteration < 0 or not 0.0 <= decay <= 1.0:
        raise ValueError(f"beta schedule: expected iteration >= 0 and decay in [0, 1], got {iteration}, {decay}")
    return 1.0 if iteration == 0 else decay ** iteration


# --------------------------------------------------------------------------- the run
def dagger(cfg: DaggerConfig, *, teacher_factory: Any = None) -> dict[str, Any]:
    """Run (or resume) DAgger as ``cfg`` says; returns the report (also ``OUT/report.json``).

    Args:
        cfg: the run's config.
        teacher_factory: builds the teacher from its spec (tests pass a counting one);
            default ``agent.policies.load_policy`` with the config's options.
    """
    from distill.traces import write_json_atomic

    env_ids = _validate(cfg)
    out = Path(cfg.out)
    state = _load_state(cfg, out)
    factory = teacher_factory or _teacher_factory(cfg)
    relabeler = Relabeler(cfg.teacher, factory, cache=LabelCache(out / "label_cache.jsonl"),
                          concurrency=cfg.concurrency)
    preset = _is_preset(cfg.student)
    student_dir: str | None = None if preset else cfg.student
    student_spec: str | None = None  # how the current student plays
    files = [p.strip() for p in cfg.traces.split(",") if p.strip()]

    def phase(name: str, fn: Any) -> Any:
        if name not in state["done"]:
            t0 = time.perf_counter()
            state["results"][name] = fn()
            state.setdefault("seconds", {})[name] = round(time.perf_counter() - t0, 2)
            state["done"].append(name)
            write_json_atomic(out / STATE_FILE, state)
        return state["results"][name]

    rows: list[dict[str, Any]] = []
    for i in range(cfg.iterations + 1):
        beta = beta_schedule(i, cfg.beta_decay)
        it = out / f"iter_{i}"
        row: dict[str, Any] = {"iteration": i, "beta": beta}
        if i > 0 or preset:
            n = _episodes(cfg, i)
            row.update(phase(f"{i}:collect", lambda: _collect(cfg, env_ids, i, beta, n, relabeler, student_spec, it)))
            if row["states_new"]:
                files.append(str(it / "labels.jsonl"))
            else:  # e.g. an LLM teacher whose every answer failed to parse: train on the rest
                log.warning("iteration %d: %s gave no usable label (%d unparseable answers); it adds no "
                            "states to the aggregate", i, cfg.teacher, row.get("labels_invalid", 0))
                if not files:
                    raise ValueError(f"--teacher {cfg.teacher}: no usable label in iteration {i} and no "
                                     "--traces to train on; check its answers first (agentkd run --policy "
                                     f"{cfg.teacher})")
            student_dir = phase(f"{i}:train", lambda: _train(cfg, i, files, student_dir, it))
        assert student_dir is not None
        student_spec = (phase(f"{i}:export", lambda: _export(cfg, student_dir, it)) if cfg.rollout_backend == "gguf"
                        else f"hf:{student_dir}")
        row.update(states_total=sum(_count_states(f) for f in files), student=student_dir, policy=student_spec)
        if i > 0 and (warning := small_share_warning(i, row["states_new"], row["states_total"])):
            log.warning(warning)
        row.update(phase(f"{i}:eval", lambda: _success(cfg, student_spec, env_ids, out)))
        rows.append(row)
    teacher = phase("teacher:eval", lambda: _success(cfg, relabeler.policy.spec, env_ids, out))
    relabeler.cache.close()
    report = build_report(dataclasses.asdict(cfg), rows, teacher, relabeler.policy.spec, len(relabeler.cache))
    write_json_atomic(out / "report.json", report)
    write_markdown(report, out)
    return report


#: Below this share of the aggregate, an iteration's new states moved a BabyAI student
#: little (BENCHMARKS.md, DAgger: 2-4% gave 31 -> 34 of 50; 15-22% gave 31 -> 40).
SMALL_SHARE = 0.05


def small_share_warning(i: int, new: int, total: int) -> str | None:
    """A warning when iteration ``i``'s ``new`` labelled states are under ``SMALL_SHARE`` of
    the ``total`` the student trains on (large ``--traces``, few ``--episodes``), else None."""
    if total <= 0 or new / total >= SMALL_SHARE:
        return None
    return (f"iteration {i}: its {new} new labelled states are {new / total:.1%} of the {total} in the "
            f"aggregate; with so small a share the student barely moves (raise --episodes, or pass "
            f"fewer --traces episodes)")


def _validate(cfg: DaggerConfig) -> list[str]:
    from agent.episode import check_loop_temperature
    from eval.evaluate import parse_env_list

    env_ids = parse_env_list(cfg.env)
    for name in ("iterations", "episodes", "test_episodes", "steps", "batch_size", "concurrency"):
        low = 0 if name == "iterations" else 1
        if getattr(cfg, name) < low:
            raise ValueError(f"--{name.replace('_', '-')}: expected >= {low}, got {getattr(cfg, name)}")
    beta_schedule(0, cfg.beta_decay)
    check_loop_temperature(cfg.loop_temperature)
    if cfg.rollout_backend == "gguf" and cfg.rollout_quant.strip().lower() != "f32":
        from distill.quantize import check_qtype

        check_qtype(cfg.rollout_quant)
    if not _is_preset(cfg.student) and not (Path(cfg.student) / "config.json").is_file():
        raise ValueError(f"--student: expected a preset (nano, micro, small) or a student directory "
                         f"with config.json, got {cfg.student!r}")
    return env_ids


def _episodes(cfg: DaggerConfig, i: int) -> int:
    """Rollouts per env in iteration ``i`` (the SFT start may use more)."""
    return (cfg.sft_episodes or cfg.episodes) if i == 0 else cfg.episodes


def _is_preset(student: str) -> bool:
    from distill.student import PRESETS

    return student in PRESETS


#: Fields that must not change when a run is resumed (they define its data and students).
_FIXED = ("env", "teacher", "student", "traces", "beta_decay", "episodes", "sft_episodes", "sft_steps",
          "steps", "seed", "max_steps", "kd", "action_only", "top_logprobs", "test_episodes",
          "rollout_backend", "rollout_quant", "rename_entities", "loop_temperature")


def _load_state(cfg: DaggerConfig, out: Path) -> dict[str, Any]:
    from distill.traces import write_json_atomic

    path = out / STATE_FILE
    if path.is_file():
        state = json.loads(path.read_text(encoding="utf-8"))
        # a field newer than the run on disk: it ran at the field's default
        on_disk = {k: state["config"].get(k, getattr(DaggerConfig, k, None)) for k in _FIXED}
        diff = [f"{k}: {on_disk[k]!r} on disk, {getattr(cfg, k)!r} now" for k in _FIXED
                if on_disk[k] != getattr(cfg, k)]
        if diff:
            raise ValueError(f"{out}: a DAgger run with another config ({'; '.join(diff)}); "
                             "use another --out or the same settings to resume")
        log.info("%s: resuming after %s", out, state["done"][-1] if state["done"] else "nothing")
        state["config"] = dataclasses.asdict(cfg)  # e.g. more --iterations
        return state
    state = {"config": dataclasses.asdict(cfg), "done": [], "results": {}}
    write_json_atomic(path, state)
    return state


def _teacher_factory(cfg: DaggerConfig) -> Any:
    from agent.policies import load_policy

    kw: dict[str, Any] = {"sampling": Sampling(max_tokens=cfg.max_tokens, seed=cfg.seed,
                                               top_logprobs=cfg.top_logprobs),
                          "base_url": cfg.base_url, "api_key": cfg.api_key, "n_threads": cfg.n_threads}
    if cfg.prompt_variant is not None:
        kw["prompt_variant"] = cfg.prompt_variant
    if cfg.grammar:
        kw["grammar"] = True
    return lambda spec: load_policy(spec, **kw)


def _collect(cfg: DaggerConfig, env_ids: list[str], i: int, beta: float, n: int, relabeler: Relabeler,
             student_spec: str | None, it: Path) -> dict[str, Any]:
    """Iteration ``i``'s rollouts on ``n`` fresh train seeds per env, appended episode by
    episode (labels first, then the executed episode: an episode is done once it is in
    ``rollouts.jsonl``; labels of an unfinished one are dropped on resume)."""
    import envs
    from agent.policies import load_policy
    from distill.traces import TraceWriter, iter_appended, iter_traces, rewrite_traces

    labels_path, rollouts_path = it / "labels.jsonl", it / "rollouts.jsonl"
    done = {(e.env_id, e.seed) for e in iter_appended(rollouts_path)}
    if labels_path.is_file():
        rewrite_traces(labels_path, [e for e in iter_appended(labels_path) if (e.env_id, e.seed) in done])
    student = None
    if beta < 1.0:
        student = load_policy(str(student_spec), sampling=Sampling(max_tokens=cfg.max_tokens),
                              n_threads=cfg.n_threads)
    start = sum(_episodes(cfg, j) for j in range(i))
    calls0, invalid = relabeler.stats.calls, 0
    with TraceWriter(labels_path) as lw, TraceWriter(rollouts_path) as rw:
        for env_id in env_ids:
            env = envs.make(env_id)
            for seed in envs.seeds(env_id, "train", n, start):
                if (env_id, seed) in done:
                    continue
                r = rollout(env, seed, relabeler, student, beta, episode_rng(cfg.seed, i, env_id, seed),
                            max_steps=cfg.max_steps)
                lw.write_many(r.labelled)
                invalid += r.invalid_labels
                rw.write(r.executed)
    if student is not None and hasattr(student, "close"):
        student.close()
    executed = list(iter_traces(rollouts_path))
    return {"rollout_success": sum(e.success for e in executed) / max(1, len(executed)),
            "states_new": _count_lines(labels_path), "teacher_calls": relabeler.stats.calls - calls0,
            "labels_invalid": invalid}


def _count_lines(path: str | Path) -> int:
    p = Path(path)
    return sum(1 for line in p.open(encoding="utf-8") if line.strip()) if p.is_file() else 0


def _count_states(path: str | Path) -> int:
    """Training targets in a trace file: its valid steps (a label line has one; the steps
    before it are history), whatever kind of file it is (labels or --traces episodes)."""
    from distill.traces import iter_traces

    return sum(sum(s.valid for s in e.steps) for e in iter_traces(path)) if Path(path).is_file() else 0


def _train(cfg: DaggerConfig, i: int, files: list[str], student_dir: str | None, it: Path) -> str:
    """Train on the aggregate: a fresh preset student at i == 0, else continue from the
    previous iteration's best checkpoint (same prompt variant and tokenizer)."""
    from distill.student import read_meta
    from distill.train import STATE_FILE as TRAIN_STATE, train
    from distill.train_config import TrainConfig

    out = it / "student"
    kd_teacher = cfg.teacher if cfg.kd != "none" and cfg.teacher.startswith("hf:") else ""
    base = cfg.student if student_dir is None else student_dir
    variant = None if student_dir is None else read_meta(student_dir).get("prompt_variant")
    tc = TrainConfig(traces=",".join(files), student=base, out=str(out), prompt_variant=variant,
                     vocab_size=cfg.vocab_size, kd=cfg.kd, teacher=kd_teacher,
                     steps=cfg.sft_steps if student_dir is None else cfg.steps, batch_size=cfg.batch_size,
                     lr=cfg.lr, warmup=cfg.warmup, val_frac=cfg.val_frac, action_only=cfg.action_only,
                     mixed_precision=cfg.mixed_precision, rename_entities=cfg.rename_entities,
                     # two validations per run pick the best checkpoint by loss; greedy accuracy
                     # on 64 states is logged only (decoding 256 cost more than the training)
                     eval_every=max(1, (cfg.sft_steps if student_dir is None else cfg.steps) // 2),
                     val_greedy_max=64,
                     resume=(out / "last" / TRAIN_STATE).is_file(), seed=cfg.seed + i, progress=cfg.progress)
    return str(train(tc))


def _export(cfg: DaggerConfig, student_dir: str, it: Path) -> str:
    """The iteration's student as a parity-checked GGUF of --rollout-quant; its policy spec."""
    from distill.export import ExportConfig, export

    q = cfg.rollout_quant.strip().lower()
    res = export(ExportConfig(student=student_dir, quant=q, out=str(it / "gguf"), n_states=8,
                              max_new_tokens=cfg.max_tokens, n_threads=cfg.n_threads))
    return f"gguf:{res.file(q).path}"


def _success(cfg: DaggerConfig, spec: str, env_ids: list[str], out: Path) -> dict[str, Any]:
    """Held-out success of ``spec`` on the test seeds (records reused on resume)."""
    from eval.evaluate import RunOptions, eval_seeds, run_policies
    from eval.metrics import wilson_interval

    opts = RunOptions(workers=0, max_tokens=cfg.max_tokens, base_url=cfg.base_url, api_key=cfg.api_key,
                      n_threads=cfg.n_threads, prompt_variant=cfg.prompt_variant,
                      max_steps=cfg.max_steps or None, grammar=cfg.grammar, progress=cfg.progress,
                      loop_temperature=cfg.loop_temperature)
    eps = run_policies([spec], eval_seeds(env_ids, cfg.test_episodes), out / "eval", opts)
    ok, n = sum(e.success for e in eps), len(eps)
    per_env = {e: sum(x.success for x in eps if x.env_id == e) / max(1, sum(x.env_id == e for x in eps))
               for e in env_ids}
    return {"success": ok / max(1, n), "ci95": list(wilson_interval(ok, n)), "n": n, "per_env": per_env}


def cli(argv: list[str]) -> int:
    """``agentkd dagger``: parse DaggerConfig and run it."""
    import tyro
    from transformers.utils import logging as hf_logging

    from distill.data import DataError

    cfg = tyro.cli(DaggerConfig, args=argv, prog="agentkd dagger")
    hf_logging.disable_progress_bar()
    try:
        report = dagger(cfg)
    except (DataError, ValueError) as e:
        print(f"agentkd dagger: {e}")
        return 2
    print(report_table(report))
    print(f"report: {Path(cfg.out) / 'report.md'}")
    return 0


__all__ = ["DaggerConfig", "Rollout", "beta_schedule", "cli", "dagger", "episode_rng", "labelled_state",
           "report_table", "rollout", "LabelCache", "Relabeler"]
