"""Metrics of an evaluation: per (policy, env) figures computed from episode records only.

Every number in a report comes from here and from the per-episode records an evaluation
wrote (trace lines), so a report can always be recomputed from its ``episodes.jsonl``:

* success rate with a 95% Wilson score interval (honest at 0% and 100%, unlike the normal
  approximation, which collapses to a zero-width interval there);
* mean return and mean steps per episode; the invalid-action rate per step; how many
  decisions loop escape resampled (``agent.episode``);
* latency per decision (p50, p95) and generated tokens per second;
* model size on disk and the process' peak resident memory (RSS high-water mark).
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.types import Episode
from envs.base import normalize_action_text

#: Key of ``Episode.timings`` where an evaluation records its process' peak RSS (bytes).
PEAK_RSS_KEY = "peak_rss_bytes"


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion.

    Args:
        successes: number of successes, ``0 <= successes <= n``.
        n: number of trials; with ``n == 0`` nothing is known and ``(0.0, 1.0)`` is returned.
        z: the normal quantile (1.96 for 95%).

    Returns:
        ``(low, high)``, both within [0, 1].
    """
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"wilson_interval: expected 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) with linear interpolation; None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def peak_rss_bytes() -> int:
    """This process' resident-set high-water mark in bytes (``getrusage``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB


def model_size_bytes(spec: str) -> int | None:
    """Size on disk of the model a policy spec names; None for ``expert`` and APIs.

    ``gguf:PATH`` is the file's size; ``hf:PATH`` the sum of the files in the directory
    (weights, tokenizer and config: what a device must hold). Bare paths count too.
    """
    kind, _, rest = spec.partition(":")
    path = rest if kind in ("gguf", "hf") else (spec if kind == spec else "")
    if not path:
        return None
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return None


def canonical_action(text: str) -> str:
    """An action in a form where two spellings of the same action compare equal.

    JSON actions (tool calls) are re-serialised with sorted keys; other actions go through
    the envs' own normalisation (case, quotes, whitespace, a leading ``Action:``).
    """
    s = text.strip()
    if s[:1] in "{[":
        try:
            return json.dumps(json.loads(s), sort_keys=True, separators=(",", ":"))
        except json.JSONDecodeError:
            pass
    return normalize_action_text(s)


def retention(student_rate: float | None, teacher_rate: float | None) -> float | None:
    """Student success / teacher success; None when the teacher never succeeded."""
    if student_rate is None or not teacher_rate:
        return None
    return student_rate / teacher_rate


@dataclass
class EnvMetrics:
    """The figures of one policy on one env (one row of a report)."""

    policy: str
    env_id: str
    episodes: int
    successes: int
    success_rate: float
    success_low: float
    success_high: float
    mean_return: float
    mean_steps: float
    decisions: int
    invalid_actions: int
    invalid_rate: float
    resampled: int
    errors: int
    latency_p50_s: float | None
    latency_p95_s: float | None
    completion_tokens: int
    tokens_per_s: float | None
    model_size_bytes: int | None
    peak_rss_bytes: int | None
    seeds: list[int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def env_metrics(
    episodes: Iterable[Episode], *, policy: str, env_id: str, model_size: int | None = None
) -> EnvMetrics:
    """Aggregate one policy's episodes on one env.

    Args:
        episodes: the episode records (others' envs or policies are an error: filter first).
        policy: the policy spec the records belong to.
        env_id: the env id they belong to.
        model_size: size on disk of the policy's model (see ``model_size_bytes``).
    """
    eps = list(episodes)
    for e in eps:
        if e.env_id != env_id or e.teacher != policy:
            raise ValueError(
                f"env_metrics({policy!r}, {env_id!r}): got an episode of "
                f"({e.teacher!r}, {e.env_id!r}) seed {e.seed}"
            )
    n = len(eps)
    succ = sum(1 for e in eps if e.success)
    low, high = wilson_interval(succ, n)
    steps = [s for e in eps for s in e.steps]
    latencies = [s.latency_s for s in steps]
    tokens = sum(s.completion_tokens for s in steps)
    gen_time = sum(s.latency_s for s in steps if s.completion_tokens > 0)
    invalid = sum(1 for s in steps if not s.valid)
    rss = [int(e.timings[PEAK_RSS_KEY]) for e in eps if PEAK_RSS_KEY in e.timings]
    return EnvMetrics(
        policy=policy,
        env_id=env_id,
        episodes=n,
        successes=succ,
        success_rate=succ / n if n else 0.0,
        success_low=low,
        success_high=high,
        mean_return=sum(e.total_return for e in eps) / n if n else 0.0,
        mean_steps=len(steps) / n if n else 0.0,
        decisions=len(steps),
        invalid_actions=invalid,
        invalid_rate=invalid / len(steps) if steps else 0.0,
        resampled=sum(1 for s in steps if s.resampled),
        errors=sum(1 for e in eps if e.error),
        latency_p50_s=percentile(latencies, 50),
        latency_p95_s=percentile(latencies, 95),
        completion_tokens=tokens,
        tokens_per_s=tokens / gen_time if tokens and gen_time > 0 else None,
        model_size_bytes=model_size,
        peak_rss_bytes=max(rss) if rss else None,
        seeds=sorted(e.seed for e in eps),
    )


def all_metrics(
    episodes: Iterable[Episode], policies: Sequence[str], env_ids: Sequence[str]
) -> list[EnvMetrics]:
    """``env_metrics`` for every (policy, env), in the given orders (policy-major)."""
    groups: dict[tuple[str, str], list[Episode]] = {}
    for e in episodes:
        groups.setdefault((e.teacher, e.env_id), []).append(e)
    sizes = {p: model_size_bytes(p) for p in policies}
    return [
        env_metrics(groups.get((p, env), []), policy=p, env_id=env, model_size=sizes[p])
        for p in policies
        for env in env_ids
    ]


def human_bytes(n: int | None) -> str:
    """``1536`` -> ``"1.5 KiB"``; None -> ``"-"``."""
    if n is None:
        return "-"
    x = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if x < 1024 or unit == "GiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return f"{x:.1f} GiB"


def cpu_count() -> int:
    """CPUs this process may use (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1
