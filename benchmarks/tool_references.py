"""Benchmark: a tool-use student that never copies a name, because names are references.

    .venv/bin/python benchmarks/tool_references.py --workdir /tmp/refs
    .venv/bin/python benchmarks/tool_references.py --workdir /tmp/refs --hide-results

Every tools-chain student so far fails on the test split's names, which no train world
holds (BENCHMARKS.md, Training quality and Demo pipeline). This measures what is left once
names need no copying: in each step's observation the episode's made-up names
(``env.invented_names()``), its dates and its numbers become ``E1``, ``D1``, ``N1``, ... in
order of first appearance (``--hide-results``: also every other tool result, ``R1``, ...);
the rationale and the action get the same references (a number by its value). A student is
trained on the expert's traces rewritten that way, then plays ``test`` seeds through
transformers, greedy, with a wrapper policy that hides the observation before each
decision and writes the names back into the answer. Successes are split by the question's
template: the test split also asks questions in phrasings no train seed uses (``TEST_ONLY``,
``envs.tools.tasks``).

A measurement, not a feature: a student trained this way needs the env's names at run time,
which ``agentkd serve`` and the LangChain chat model do not have. Appends one line to
``benchmarks/results/tool_references.jsonl``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import tyro

RESULTS = "tool_references"

_DATE = r"\d{4}-\d{2}-\d{2}"
_NUMBER = r"(?<![\w.])\d+(?:\.\d+)?(?!\w)"
_RESULT = re.compile(r" -> (.+)$", re.MULTILINE)
_REF = re.compile(r"(?<!\w)[DENR]\d+(?!\w)")


class References:
    """One observation's references: ``hide`` writes them for the names, dates, numbers
    (and, with ``results``, the other tool results) it holds; ``show`` writes them back."""

    def __init__(self, observation: str, names: list[str], results: bool = False) -> None:
        self._names = set(names)
        alts = [_DATE, *(rf"(?<!\w){re.escape(n)}(?!\w)" for n in sorted(self._names, key=len, reverse=True)),
                _NUMBER]
        self._rx = re.compile("(" + "|".join(alts) + ")")
        found = [(m.start(), m.group(1)) for m in self._rx.finditer(observation)]
        if results:
            found += [(m.start(1), m.group(1)) for m in _RESULT.finditer(observation)
                      if not self._rx.fullmatch(m.group(1))]
        self.refs: dict[str, str] = {}
        counts: Counter[str] = Counter()
        for _, text in sorted(found):
            if text not in self.refs:
                kind = ("D" if re.fullmatch(_DATE, text) else "E" if text in self._names
                        else "N" if re.fullmatch(_NUMBER, text) else "R")
                counts[kind] += 1
                self.refs[text] = f"{kind}{counts[kind]}"
        others = [re.escape(t) for t in sorted(self.refs, key=len, reverse=True) if self.refs[t][0] == "R"]
        self._hide_rx = re.compile("(" + "|".join([*(rf"(?<!\w){o}(?!\w)" for o in others), *alts]) + ")")
        self._numbers = {float(t): r for t, r in reversed(list(self.refs.items())) if r[0] == "N"}
        self._back = {r: t for t, r in self.refs.items()}

    def hide(self, text: str) -> str:
        def ref(m: re.Match[str]) -> str:
            s = m.group(1)
            if s in self.refs:
                return self.refs[s]
            if re.fullmatch(_NUMBER, s):  # 12.0 for the question's 12
                return self._numbers.get(float(s), s)
            return s
        return self._hide_rx.sub(ref, text)

    def show(self, text: str) -> str:
        return _REF.sub(lambda m: self._back.get(m.group(0), m.group(0)), text)


class ReferencePolicy:
    """``inner`` (trained on hidden traces) deciding on hidden observations; its answer
    shown with the env's own names."""

    def __init__(self, inner: Any, results: bool = False) -> None:
        self.inner, self.results = inner, results
        self.spec = f"{inner.spec}+references"
        self.prompt_variant, self.sampling = inner.prompt_variant, inner.sampling
        self.env: Any = None

    def reset(self, env: Any) -> None:
        self.env = getattr(env, "unwrapped", env)
        self.inner.reset(env)

    def act(self, context: Any) -> Any:
        refs = References(context.observation, self.env.invented_names(), self.results)
        d = self.inner.act(dataclasses.replace(context, observation=refs.hide(context.observation)))
        return dataclasses.replace(d, action=refs.show(d.action), raw=refs.show(d.raw),
                                   rationale=refs.show(d.rationale))


def hide_traces(src: Path, dst: Path, results: bool) -> int:
    """``src`` with every step's observation, rationale, action and raw text hidden, written
    to ``dst`` through a temp file (a killed run leaves no partial ``dst`` to be reused)."""
    import os

    import envs
    from distill.traces import TraceWriter, iter_traces

    made: dict[str, Any] = {}
    n = 0
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with TraceWriter(tmp) as w:
        for e in iter_traces(src):
            env = made.setdefault(e.env_id, envs.make(e.env_id, **e.env_options))
            env.reset(seed=e.seed)
            names = env.unwrapped.invented_names()
            for s in e.steps:
                refs = References(s.observation, names, results)
                s.observation, s.rationale, s.action, s.raw = (
                    refs.hide(s.observation), refs.hide(s.rationale), refs.hide(s.action), refs.hide(s.raw))
            w.write(e)
            n += 1
    os.replace(tmp, dst)
    return n


def test_only(env: Any) -> bool:
    """Whether the env's current question uses a template that train seeds never use."""
    from envs.tools.env import FAMILIES
    from envs.tools.tasks import TEST_ONLY

    kind, index = env.task.template.split("/")
    templates = next(k.templates for fam in FAMILIES.values() for k in fam if k.name == kind)
    return templates[int(index)][1] == TEST_ONLY


@dataclasses.dataclass(frozen=True)
class Config:
    """Train a student on tool-use traces with names as references; play test seeds."""

    workdir: str = "/tmp/tool_references"
    """Traces, hidden traces, student and episodes (reused when present)."""
    env_id: str = "tools-chain"
    """A tool-use env (one with ``invented_names``)."""
    episodes: int = 3000
    """Expert episodes on train seeds."""
    student: str = "micro"
    """Student preset."""
    steps: int = 800
    """Training steps."""
    batch_size: int = 16
    """Training batch size."""
    lr: float = 2e-3
    """Peak learning rate."""
    mixed_precision: Literal["no", "bf16"] = "bf16"
    """``agentkd train --mixed-precision`` (no | bf16)."""
    hide_results: bool = False
    """Also hide every tool result that is not a name, date or number (``R1``, ...)."""
    test_episodes: int = 50
    """Test seeds played."""
    max_tokens: int = 128
    """Generated tokens per decision."""
    seed: int = 0
    """Training seed."""
    results_dir: Path | None = None
    """Where tool_references.jsonl is appended (default benchmarks/results)."""


def main(cfg: Config) -> dict[str, Any]:
    from common import append_result, stamp

    import envs
    from agent.collect import CollectConfig, collect
    from agent.episode import run_episode
    from agent.policies import load_policy
    from agent.types import Sampling
    from distill.traces import TraceWriter
    from distill.train import STATE_FILE, train
    from distill.train_config import TrainConfig
    from envs.tools.env import ToolTaskEnv
    from eval.metrics import wilson_interval

    if cfg.episodes < 1 or cfg.steps < 1 or cfg.test_episodes < 1:
        raise SystemExit(f"--episodes, --steps, --test-episodes: expected >= 1, got "
                         f"{cfg.episodes}, {cfg.steps}, {cfg.test_episodes}")
    if not isinstance(envs.make(cfg.env_id).unwrapped, ToolTaskEnv):
        raise SystemExit(f"--env-id: expected a tool-use env (tools-...), got {cfg.env_id!r}")
    at_start = stamp()
    work = Path(cfg.workdir)
    work.mkdir(parents=True, exist_ok=True)
    traces = work / f"{cfg.env_id}-{cfg.episodes}.jsonl"
    collect(CollectConfig(env=cfg.env_id, episodes=cfg.episodes, out=str(traces), progress=False))  # resumes
    tag = f"{cfg.env_id}-{cfg.episodes}-{'results' if cfg.hide_results else 'names'}"
    hidden = work / f"{tag}-hidden.jsonl"
    if not hidden.is_file():
        hide_traces(traces, hidden, cfg.hide_results)
    out = work / f"{tag}-{cfg.student}-{cfg.steps}x{cfg.batch_size}-s{cfg.seed}"
    best = out / "best"
    if not (best / "config.json").is_file():
        # best/ is written by the one validation, at the end: without it, (re)start or resume
        best = Path(train(TrainConfig(traces=str(hidden), student=cfg.student, out=str(out), steps=cfg.steps,
                                      batch_size=cfg.batch_size, lr=cfg.lr, eval_every=cfg.steps,
                                      val_greedy_max=64, mixed_precision=cfg.mixed_precision, seed=cfg.seed,
                                      resume=(out / "last" / STATE_FILE).is_file(), progress=False)))
    log_path = out / "log.jsonl"
    logged = [json.loads(x) for x in log_path.read_text().splitlines()] if log_path.is_file() else []
    log = next((x for x in reversed(logged) if "val_loss" in x), {})
    policy = ReferencePolicy(load_policy(f"hf:{best}", sampling=Sampling(max_tokens=cfg.max_tokens)),
                             cfg.hide_results)
    env = envs.make(cfg.env_id)
    split: Counter[tuple[bool, bool]] = Counter()
    invalid = steps = 0
    (out / "episodes.jsonl").unlink(missing_ok=True)
    with TraceWriter(out / "episodes.jsonl") as w:
        for seed in envs.seeds(cfg.env_id, "test", cfg.test_episodes):
            ep = run_episode(env, policy, seed)
            split[(test_only(env.unwrapped), ep.success)] += 1
            steps += len(ep.steps)
            invalid += sum(not s.valid for s in ep.steps)
            w.write(ep)
    ok = split[(False, True)] + split[(True, True)]
    line = {**at_start, "config": {**dataclasses.asdict(cfg), "results_dir": None}, "student_dir": str(best),
            "val": {k: log.get(k) for k in ("val_loss", "val_action_acc", "tokens")},
            "success": ok, "episodes": cfg.test_episodes, "ci95": list(wilson_interval(ok, cfg.test_episodes)),
            "train_templates": [split[(False, True)], split[(False, True)] + split[(False, False)]],
            "test_only_templates": [split[(True, True)], split[(True, True)] + split[(True, False)]],
            "invalid_steps": [invalid, steps]}
    print(json.dumps({k: line[k] for k in ("success", "ci95", "train_templates", "test_only_templates",
                                           "invalid_steps", "val")}))
    append_result(RESULTS, line, cfg.results_dir)
    return line


if __name__ == "__main__":
    main(tyro.cli(Config))
