from __future__ import annotations

import math

import pytest

from agent.types import Episode, Step
from eval.metrics import (
    PEAK_RSS_KEY,
    all_metrics,
    canonical_action,
    env_metrics,
    human_bytes,
    model_size_bytes,
    peak_rss_bytes,
    percentile,
    retention,
    wilson_interval,
)


def _wilson_by_quadratic(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Reference: the Wilson bounds are the roots p of (p - k/n)^2 = z^2 p (1 - p) / n."""
    ph = k / n
    a = 1 + z * z / n
    b = -(2 * ph + z * z / n)
    c = ph * ph
    disc = math.sqrt(max(b * b - 4 * a * c, 0.0))
    return (-b - disc) / (2 * a), (-b + disc) / (2 * a)


@pytest.mark.parametrize(
    "k,n,known",
    [
        (0, 10, (0.0, 0.2775)),
        (5, 10, (0.2366, 0.7634)),
        (10, 10, (0.7225, 1.0)),
        (81, 100, (0.7222, 0.8749)),
    ],
)
def test_wilson_matches_published_figures_and_the_quadratic(k, n, known):
    low, high = wilson_interval(k, n)
    ref = _wilson_by_quadratic(k, n)
    assert low == pytest.approx(ref[0], abs=1e-12)
    assert high == pytest.approx(ref[1], abs=1e-12)
    assert (low, high) == pytest.approx(known, abs=5e-5)


def test_wilson_edge_cases():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(1, 1)
    assert high == 1.0 and low == pytest.approx(_wilson_by_quadratic(1, 1)[0])
    with pytest.raises(ValueError, match="3/2"):
        wilson_interval(3, 2)
    # wider z, wider interval
    assert wilson_interval(5, 10, z=2.576)[0] < wilson_interval(5, 10)[0]


def test_percentile_interpolates_like_numpy():
    xs = [0.4, 0.1, 0.3, 0.2, 1.0]
    assert percentile(xs, 50) == pytest.approx(0.3)
    assert percentile(xs, 95) == pytest.approx(0.4 + 0.8 * 0.6)
    assert percentile([], 50) is None


def _ep(policy, env_id, seed, success, steps, *, ret=None, rss=None, error=None):
    ss = [
        Step(observation=f"o{i}", legal_actions=["a", "b"], rationale="r", action=a, raw="",
             valid=v, reward=0.0, latency_s=lat, completion_tokens=tok)
        for i, (a, v, lat, tok) in enumerate(steps)
    ]
    return Episode(env_id=env_id, seed=seed, teacher=policy, prompt_format="p", steps=ss,
                   total_return=float(success) if ret is None else ret, success=success,
                   error=error, timings={PEAK_RSS_KEY: rss} if rss else {})


def test_env_metrics_values():
    eps = [
        _ep("gguf:m", "e", 1, True, [("a", True, 0.1, 10), ("b", True, 0.3, 10)], rss=100),
        _ep("gguf:m", "e", 3, False, [("a", False, 0.2, 5)], ret=-1.0, rss=300),
        _ep("gguf:m", "e", 5, True, [("b", True, 0.4, 15)], rss=200, error=None),
        _ep("gguf:m", "e", 7, False, [], error="backend down"),
    ]
    m = env_metrics(eps, policy="gguf:m", env_id="e", model_size=1234)
    assert (m.episodes, m.successes, m.success_rate) == (4, 2, 0.5)
    assert (m.success_low, m.success_high) == pytest.approx(wilson_interval(2, 4))
    assert m.mean_return == pytest.approx((1 - 1 + 1 + 0) / 4)
    assert m.mean_steps == pytest.approx(4 / 4)
    assert (m.decisions, m.invalid_actions, m.invalid_rate) == (4, 1, 0.25)
    assert m.errors == 1
    assert m.latency_p50_s == pytest.approx(0.25)
    assert m.latency_p95_s == pytest.approx(0.3 + 0.85 * 0.1)
    assert m.completion_tokens == 40
    assert m.tokens_per_s == pytest.approx(40 / 1.0)
    assert m.peak_rss_bytes == 300 and m.model_size_bytes == 1234
    assert m.seeds == [1, 3, 5, 7]


def test_env_metrics_expert_has_no_token_rate_and_refuses_foreign_records():
    m = env_metrics([_ep("expert", "e", 1, True, [("a", True, 0.0, 0)])],
                    policy="expert", env_id="e")
    assert m.tokens_per_s is None and m.peak_rss_bytes is None
    with pytest.raises(ValueError, match="'other'"):
        env_metrics([_ep("other", "e", 1, True, [])], policy="expert", env_id="e")


def test_all_metrics_groups_by_policy_and_env_in_order():
    eps = [_ep("b", "x", 1, True, []), _ep("a", "y", 1, False, []), _ep("a", "x", 1, True, [])]
    rows = all_metrics(eps, ["a", "b"], ["x", "y"])
    assert [(r.policy, r.env_id, r.episodes) for r in rows] == [
        ("a", "x", 1), ("a", "y", 1), ("b", "x", 1), ("b", "y", 0)]


def test_model_size_and_peak_rss(tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"x" * 100)
    d = tmp_path / "student"
    (d / "sub").mkdir(parents=True)
    (d / "a.bin").write_bytes(b"x" * 10)
    (d / "sub" / "b.json").write_bytes(b"x" * 5)
    assert model_size_bytes(f"gguf:{f}") == 100
    assert model_size_bytes(f"hf:{d}") == 15
    assert model_size_bytes(str(f)) == 100
    assert model_size_bytes("expert") is None
    assert model_size_bytes("openai:gpt-4o") is None
    assert peak_rss_bytes() > 10 * 1024 * 1024  # any Python running pytest holds > 10 MiB


def test_canonical_action_and_retention():
    assert canonical_action('{"b": 1, "a": [2]}') == canonical_action('{ "a":[2],"b":1 }')
    assert canonical_action("  Action: 'Move Left' ") == "move left"
    assert canonical_action("{not json") == "{not json"
    assert retention(0.45, 0.9) == pytest.approx(0.5)
    assert retention(0.5, 0.0) is None
    assert human_bytes(1536) == "1.5 KiB" and human_bytes(None) == "-"
