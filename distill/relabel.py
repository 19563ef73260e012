"""Teacher labels for states a student visited (the "expert correction" step of DAgger).

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
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

from agent.prompt import chat_text, make_context, render_messages
from agent.types import Context, Decision, Policy

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

    def context(self, env: Any, obs: str, info: dict[str, Any], history: list[tuple[str, str]]) -> Context:
        """The context the teacher sees in this state (its own prompt variant)."""
        return make_context(env, obs, info, history, self.prompt_variant)

    def _key(self, context: Context) -> str:
        prompt = chat_text(render_messages(context, self.prompt_variant))
        return LabelCache.key(self.policy.spec, self._sampling, prompt)

    def _ask(self, policy: Policy, context: Context) -> Label | None:
        if not self.reads_state:
            key = self._key(context)
            hit = self.cache.get(key)
            if hit is not None:
                with self._lock:
                    self.stats.cache_hits += 1
                return Label(**{**asdict(hit), "cached": True})
        try:
            decision = policy.act(context)
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
                  history: list[tuple[str, str]]) -> Label | None:
        """The teacher's label for the env's current state (None if the backend failed)."""
        return self._ask(self.policy, self.context(env, obs, info, history))

    def label_many(self, pending: list[Pending]) -> list[Label | None]:
        """Labels of states recorded earlier (LLM teachers only: the expert needs the live
        state), in order, on ``concurrency`` threads."""
        if self.reads_state and pending:
            raise RuntimeError("label_many: the expert reads the env's live state; use label_now")
        if self.concurrency == 1 or len(pending) <= 1:
            return [self._ask(self._bound(p), p.context) for p in pending]
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="relabel") as pool:
            return list(pool.map(lambda p: self._ask(self._bound(p), p.context), pending))

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
