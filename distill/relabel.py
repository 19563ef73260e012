"""Teacher labels for states a student visited (the "expert correction" step of DAgger),
and the mixed-control rollouts that visit them.

    from distill.relabel import LabelCache, Relabeler
    relabeler = Relabeler("openai:qwen", load_kwargs, cache=LabelCache("run/labels.jsonl"))
    label = relabeler.label_now(env, obs, info, history)       # while the episode runs
    labels = relabeler.label_many(pending)                      # many states, concurrently

Two kinds of teacher:

* the ``expert`` reads the env's *current state* (``env.expert().act()``), so it labels a
  state while the episode is in it (``label_now``) and is never cached: it is free, and in a
  partially observed env two states can render the same prompt and need different actions;
* an LLM teacher (``openai:``, ``gguf:``, ``hf:``) sees only the prompt that
  ``agent.prompt`` renders, so its answer is a function of that text: it is cached by the
  rendered prompt (with the teacher spec and its sampling settings) in an append-only JSONL
  file, and a state is never paid for twice, not even across a resumed run. States it did
  not have to label at once are labelled after the episode by ``label_many`` on
  ``concurrency`` threads, each with its own policy instance (as ``agent.collect`` does);
  retries are the policy's own (``openai:`` retries with backoff).

A backend failure (``Decision.error``) leaves the state unlabelled and uncached, so a rerun
asks again; an unparseable answer is cached (it was paid for) and counted as invalid.

``rollout`` plays one episode under the beta-mixture (teacher's or student's action
executed, one seeded draw a step) and turns every labelled state into one trace line
(``labelled_state``; the layout is described in ``distill.dagger``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
import dataclasses
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

from agent.prompt import FULL_WINDOW, PROMPT_FORMAT, chat_text, history_start, make_context, render_messages
from agent.types import Context, Decision, Episode, Policy, Step, Turn

log = logging.getLogger(__name__)

#: Builds a teacher policy from its spec (``agent.policies.load_policy`` with fixed kwargs).
PolicyFactory = Callable[[str], Policy]


@dataclass(frozen=True)
class Label:
    """The teacher's answer for one state."""

    rationale: str
    action: str
    raw: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    top_logprobs: list[dict[str, float]] | None = None
    cached: bool = False

    @classmethod
    def of(cls, d: Decision) -> Label:
        return cls(d.rationale, d.action, d.raw, d.prompt_tokens, d.completion_tokens, d.top_logprobs)


@dataclass
class Pending:
    """A state to label later: the teacher's context and how to rebuild the env it is in."""

    env_id: str
    seed: int
    context: Context
    env_options: dict[str, Any]


class LabelCache:
    """Teacher answers keyed by the rendered prompt; an append-only, flushed JSONL file
    (``None`` path: in memory only). Thread-safe."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._d: dict[str, Label] = {}
        self._lock = threading.Lock()
        self._f: Any = None
        if self.path is not None and self.path.is_file():
            self._load(self.path)

    def _load(self, path: Path) -> None:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                try:
                    d = json.loads(line)
                    self._d[d["key"]] = Label(**{k: v for k, v in d.items() if k != "key"})
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    log.warning("%s:%d: skipping a bad cache line (%s)", path, lineno, e)

    @staticmethod
    def key(teacher: str, sampling: dict[str, Any], prompt: str) -> str:
        """The cache key of a teacher's answer to a prompt under its sampling settings."""
        blob = json.dumps([teacher, sampling, prompt], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def get(self, key: str) -> Label | None:
        with self._lock:
            return self._d.get(key)

    def put(self, key: str, label: Label) -> None:
        with self._lock:
            if key in self._d:
                return
            self._d[key] = label
            if self.path is None:
                return
            if self._f is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                from distill.traces import repair_torn_tail

                repair_torn_tail(self.path)
                self._f = open(self.path, "a", encoding="utf-8")
            rec = {"key": key, **{k: v for k, v in asdict(label).items() if k != "cached"}}
            self._f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            self._f.flush()

    def __len__(self) -> int:
        return len(self._d)

    def close(self) -> None:
        with self._lock:
            if self._f is not None:
                self._f.close()
                self._f = None


@dataclass
class RelabelStats:
    """What labelling cost: teacher calls made, answers served from the cache, failures."""

    calls: int = 0
    cache_hits: int = 0
    errors: int = 0


class Relabeler:
    """Asks a teacher for its action in states the student visited (see the module docstring).

    Args:
        teacher: the teacher's policy spec.
        factory: builds a policy from a spec (``load_policy`` with the run's kwargs); called
            once here and once per extra labelling thread.
        cache: where LLM answers are kept (ignored for the expert).
        concurrency: threads for ``label_many``.
    """

    def __init__(self, teacher: str, factory: PolicyFactory, *, cache: LabelCache | None = None,
                 concurrency: int = 1) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency: expected >= 1, got {concurrency}")
        self.teacher = teacher
        self.factory = factory
        self.policy = factory(teacher)
        self.reads_state = self.policy.spec == "expert"
        self.cache = cache if cache is not None else LabelCache()
        self.concurrency = concurrency
        self.stats = RelabelStats()
        self._local = threading.local()
        self._owner = threading.get_ident()
        self._lock = threading.Lock()
        sampling = getattr(self.policy, "sampling", None)
        self._sampling = asdict(sampling) if sampling is not None and is_dataclass(sampling) else {}

    @property
    def prompt_variant(self) -> str:
        return self.policy.prompt_variant

    def reset(self, env: Any) -> None:
        """Bind the teacher to ``env`` for a new episode (after ``env.reset``)."""
        self.policy.reset(env)

    def context(self, env: Any, obs: str, info: dict[str, Any], history: list[Turn]) -> Context:
        """The context the teacher sees in this state (its own prompt variant)."""
        return make_context(env, obs, info, history, self.prompt_variant)

    def _key(self, context: Context) -> str:
        prompt = chat_text(render_messages(context, self.prompt_variant))
        return LabelCache.key(self.policy.spec, self._sampling, prompt)

    def _ask(self, get_policy: Callable[[], Policy], context: Context, key: str | None = None) -> Label | None:
        """The label of ``context`` from the cache, else from ``get_policy()`` (called only
        on a miss, so a hit costs no env and no reset); ``key``: its cache key, if known."""
        if not self.reads_state:
            key = key or self._key(context)
            hit = self.cache.get(key)
            if hit is not None:
                with self._lock:
                    self.stats.cache_hits += 1
                return Label(**{**asdict(hit), "cached": True})
        try:
            decision = get_policy().act(context)
        except Exception as e:  # noqa: BLE001 - a failing backend leaves the state unlabelled
            decision = Decision(rationale="", action="", error=f"{type(e).__name__}: {e}")
        with self._lock:
            self.stats.calls += 1
            self.stats.errors += int(decision.error is not None)
        if decision.error is not None:
            log.warning("%s: no label for a state of %s (%s)", self.teacher, context.env_id, decision.error)
            return None
        label = Label.of(decision)
        if not self.reads_state:
            self.cache.put(key, label)
        return label

    def label_now(self, env: Any, obs: str, info: dict[str, Any],
                  history: list[Turn]) -> Label | None:
        """The teacher's label for the env's current state (None if the backend failed)."""
        return self._ask(lambda: self.policy, self.context(env, obs, info, history))

    def label_many(self, pending: list[Pending]) -> list[Label | None]:
        """Labels of states recorded earlier (LLM teachers only: the expert needs the live
        state), in order, on ``concurrency`` threads."""
        if self.reads_state and pending:
            raise RuntimeError("label_many: the expert reads the env's live state; use label_now")
        # States with the same prompt (a bump into a wall repeats the observation) are asked
        # once: asked in parallel, they would all miss the cache together.
        keys = [self._key(p.context) for p in pending]
        first: dict[str, Pending] = {}
        for p, k in zip(pending, keys):
            first.setdefault(k, p)
        unique = list(first.items())
        if self.concurrency == 1 or len(unique) <= 1:
            answers = [self._ask(lambda p=p: self._bound(p), p.context, k) for k, p in unique]
        else:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="relabel") as pool:
                answers = list(pool.map(lambda kp: self._ask(lambda: self._bound(kp[1]), kp[1].context, kp[0]),
                                        unique))
        by_key = dict(zip(first, answers))
        labels: list[Label | None] = []
        for p, k in zip(pending, keys):
            label = by_key[k]
            if label is not None and p is not first[k]:
                label = Label(**{**asdict(label), "cached": True})
                self.stats.cache_hits += 1
            labels.append(label)
        return labels

    def _bound(self, p: Pending) -> Policy:
        """This thread's teacher, reset on an env of ``p``'s episode (a policy that keeps
        per-episode state, such as a KV cache, sees a fresh episode)."""
        import envs

        if threading.get_ident() == self._owner:
            policy = self.policy
        else:
            if not hasattr(self._local, "policy"):
                self._local.policy = self.factory(self.teacher)
            policy = self._local.policy
        env = envs.make(p.env_id, **p.env_options)
        env.reset(seed=p.seed)
        policy.reset(env)
        return policy


# ------------------------------------------------------------------ mixed-control rollouts
def episode_rng(seed: int, iteration: int, env_id: str, env_seed: int) -> random.Random:
    """The beta-mixture's draws for one rollout (the same on a rerun)."""
    return random.Random(zlib.crc32(f"{seed}:{iteration}:{env_id}:{env_seed}".encode()))


@dataclass
class Rollout:
    """One mixed-control episode: what was executed and the labelled states it produced."""

    executed: Episode
    labelled: list[Episode]
    teacher_steps: int = 0
    invalid_labels: int = 0


def rollout(env: Any, seed: int, relabeler: Relabeler, student: Policy | None, beta: float,
            rng: random.Random, *, max_steps: int = 0, env_options: dict[str, Any] | None = None) -> Rollout:
    """Play one episode under the beta-mixture and label every state with the teacher.

    Args:
        env: a ``TextEnv``.
        seed: the reset seed.
        relabeler: the teacher.
        student: the student policy (None only with ``beta == 1``).
        beta: probability of executing the teacher's action at each step (one draw a step).
        rng: the draws.
        max_steps: cap on steps (0: the env's own limit).
        env_options: the options ``env`` was made with (kept in the records).
    """
    if student is None and beta < 1.0:
        raise ValueError(f"rollout: beta={beta} < 1 needs a student")
    obs, info = env.reset(seed=seed)
    relabeler.reset(env)
    if student is not None:
        student.reset(env)
    mix = f"dagger(beta={beta:.3g}):{student.spec if student is not None else relabeler.policy.spec}"
    ep = Episode(env_id=env.env_id, seed=seed, teacher=mix, prompt_format=PROMPT_FORMAT,
                 env_options=dict(env_options or {}))
    history: list[Turn] = []
    labels: list[Label | Pending | None] = []
    n_teacher = 0
    done = False
    t0 = time.perf_counter()
    while not done:
        teacher_acts = rng.random() < beta
        ctx = relabeler.context(env, obs, info, history)
        label: Label | Pending | None
        if relabeler.reads_state or teacher_acts:
            label = relabeler.label_now(env, obs, info, history)
        else:
            label = Pending(env.env_id, seed, ctx, dict(env_options or {}))
        if teacher_acts:
            n_teacher += 1
            d = Decision(label.rationale, label.action, label.raw) if isinstance(label, Label) else \
                Decision("", "", error=f"teacher {relabeler.teacher} gave no answer")
        else:
            assert student is not None
            d = _act(student, make_context(env, obs, info, history, student.prompt_variant))
        if d.error:
            ep.error = d.error
            break
        labels.append(label)
        next_obs, reward, term, trunc, info = env.step(d.action)
        ep.steps.append(Step(observation=obs, legal_actions=list(ctx.legal_actions), rationale=d.rationale,
                             action=d.action, raw=d.raw, valid=not info.get("invalid_action", False),
                             reward=float(reward)))
        ep.total_return += float(reward)
        history.append(ctx.turn(d))
        obs = next_obs
        done = term or trunc or (max_steps > 0 and len(ep.steps) >= max_steps)
        ep.terminated, ep.truncated = bool(term), bool(trunc) or (done and not term)
    ep.success = bool(info.get("success", False)) and ep.error is None
    ep.timings = {"total_s": time.perf_counter() - t0}
    # LLM teachers label the states the student chose in, all at once, concurrently.
    pending = [i for i, x in enumerate(labels) if isinstance(x, Pending)]
    for i, lab in zip(pending, relabeler.label_many([labels[i] for i in pending])):  # type: ignore[misc]
        labels[i] = lab
    out = Rollout(executed=ep, labelled=[], teacher_steps=n_teacher)
    for t, lab in enumerate(labels):
        if not isinstance(lab, Label):
            continue  # the backend failed: nothing to learn here
        if not lab.action.strip():
            out.invalid_labels += 1
            continue
        out.labelled.append(labelled_state(ep, t, lab, relabeler))
    return out


def labelled_state(ep: Episode, t: int, label: Label, relabeler: Relabeler) -> Episode:
    """Step ``t`` of ``ep`` as one trace line: the executed steps before it (``valid=False``:
    history only) and the state with the teacher's label as its one training target.

    The steps kept are the ones the full window shows at ``t`` (``history_start``: a prompt
    of the line re-renders the prompt of the run; the compact window is never longer)."""
    context = [dataclasses.replace(s, valid=False, raw="", top_logprobs=None)
               for s in ep.steps[history_start(t, FULL_WINDOW):t]]
    state = ep.steps[t]
    target = Step(observation=state.observation, legal_actions=list(state.legal_actions),
                  rationale=label.rationale, action=label.action, raw=label.raw, valid=True, reward=0.0,
                  prompt_tokens=label.prompt_tokens, completion_tokens=label.completion_tokens,
                  top_logprobs=label.top_logprobs)
    return Episode(env_id=ep.env_id, seed=ep.seed, teacher=relabeler.policy.spec, prompt_format=PROMPT_FORMAT,
                   steps=[*context, target], success=ep.success, env_options=dict(ep.env_options),
                   sampling=dict(relabeler._sampling), timings={"dagger_step": float(t)})


def _act(policy: Policy, context: Any) -> Decision:
    try:
        return policy.act(context)
    except Exception as e:  # noqa: BLE001 - a failing backend stops the episode, not the run
        log.exception("%s: act() raised", policy.spec)
        return Decision(rationale="", action="", error=f"{type(e).__name__}: {e}")
