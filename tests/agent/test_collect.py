"""agentkd collect: end to end through the CLI, resume after SIGKILL, the failed sidecar,
threads, and refusing to mix configs in one file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import envs
from agent.collect import CollectConfig, collect, config_path, failed_path
from agent.types import Decision
from distill.traces import read_traces

AGENTKD = str(Path(sys.executable).with_name("agentkd"))


def keys(path: Path) -> list[tuple[str, int]]:
    return [(e.env_id, e.seed) for e in read_traces(path, strict=True)]


def test_cli_collects_expert_episodes_with_config_and_summary(tmp_path):
    out = tmp_path / "t.jsonl"
    r = subprocess.run([AGENTKD, "collect", "--teacher", "expert", "--env", "frozenlake-4x4,tools-single",
                        "--episodes", "3", "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    eps = read_traces(out, strict=True)
    assert [(e.env_id, e.seed) for e in eps] == [("frozenlake-4x4", s) for s in (0, 2, 4)] + \
                                                [("tools-single", s) for s in (0, 2, 4)]
    assert all(e.success and e.teacher == "expert" and e.steps[0].raw.startswith("Thought: ") for e in eps)
    cfg = json.loads(config_path(out).read_text())
    assert cfg["teacher"] == "expert" and cfg["episodes"] == 3 and cfg["only_success"] is True
    assert "tools-single" in r.stdout and "total" in r.stdout
    bad = subprocess.run([AGENTKD, "collect", "--env", "nope", "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode == 1 and "unknown env id 'nope'" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_resume_after_sigkill_loses_and_duplicates_nothing(tmp_path):
    out = tmp_path / "t.jsonl"
    n = 300
    cmd = [AGENTKD, "collect", "--env", "taxi", "--episodes", str(n), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if out.exists() and out.read_bytes().count(b"\n") >= 10:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the collection finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    # The kill itself may leave a torn last line: Linux stops a write() of several pages at a
    # page boundary when a fatal signal is pending, so even one write per line can be cut short.
    data = out.read_bytes()
    complete = tmp_path / "complete.jsonl"
    complete.write_bytes(data[: data.rfind(b"\n") + 1])
    before = keys(complete)
    assert 10 <= len(before) < n
    with open(out, "a") as f:  # as if the kill had hit half-way through a write
        f.write('{"schema": 1, "env_id": "taxi", "seed": 99')
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "torn last line" in r.stderr
    after = keys(out)
    assert after[: len(before)] == before  # nothing rewritten
    assert sorted(after) == [("taxi", s) for s in envs.seeds("taxi", "train", n)]  # none lost, none twice


class Scripted:
    """A test policy: walks 'up' forever (fails frozenlake by truncation) or errors."""

    spec = "scripted"
    prompt_variant = "compact"

    def __init__(self, calls: list[tuple[str, int]], error_on: set[int] = frozenset()) -> None:
        self.calls, self.error_on, self.seed = calls, error_on, None

    def reset(self, env) -> None:
        self.seed = env.np_random_seed
        self.calls.append((env.env_id, self.seed))

    def act(self, context) -> Decision:
        if self.seed in self.error_on:
            return Decision(rationale="", action="", error="HTTP 500: boom")
        return Decision(rationale="up", action="up", raw="Thought: up\nAction: up")


def patch_policy(monkeypatch, factory) -> None:
    import agent.policies

    monkeypatch.setattr(agent.policies, "load_policy", lambda spec, **kw: factory())


def test_only_success_sends_failures_to_the_sidecar_and_a_resume_skips_them(tmp_path, monkeypatch):
    calls: list[tuple[str, int]] = []
    patch_policy(monkeypatch, lambda: Scripted(calls, error_on={2}))
    cfg = CollectConfig(teacher="scripted", env="frozenlake-4x4", episodes=3, out=str(tmp_path / "t.jsonl"),
                        progress=False)
    s = collect(cfg)
    assert sorted(calls) == [("frozenlake-4x4", s) for s in (0, 2, 4)]
    assert read_traces(cfg.out) == []  # nothing succeeded: nothing in the training file
    side = read_traces(failed_path(cfg.out))
    assert sorted(e.seed for e in side) == [0, 2, 4]
    assert [e.error for e in side if e.seed == 2] == ["HTTP 500: boom"]
    t = s.per_env["frozenlake-4x4"]
    assert (t.episodes, t.successes, t.errors, t.kept, s.new, s.resumed) == (3, 0, 1, 0, 3, 0)
    assert t.steps == 2 * envs.make("frozenlake-4x4").max_steps  # seeds 0 and 4 ran to truncation

    calls.clear()
    s2 = collect(cfg)  # failures are not re-run; the errored episode is retried
    assert calls == [("frozenlake-4x4", 2)]
    assert (s2.new, s2.resumed, s2.per_env["frozenlake-4x4"].episodes) == (1, 2, 3)


def test_keeping_failures_writes_them_to_the_trace_file(tmp_path, monkeypatch):
    calls: list[tuple[str, int]] = []
    patch_policy(monkeypatch, lambda: Scripted(calls))
    cfg = CollectConfig(teacher="scripted", env="frozenlake-4x4", episodes=2, out=str(tmp_path / "t.jsonl"),
                        only_success=False, progress=False)
    s = collect(cfg)
    assert keys(Path(cfg.out)) == [("frozenlake-4x4", 0), ("frozenlake-4x4", 2)]
    assert s.per_env["frozenlake-4x4"].kept == 2


def test_threads_each_get_their_own_policy_and_collect_every_seed(tmp_path, monkeypatch):
    made: list[int] = []
    from agent.policies.expert import ExpertPolicy

    def factory():
        made.append(threading.get_ident())
        return ExpertPolicy()

    patch_policy(monkeypatch, factory)
    cfg = CollectConfig(env="frozenlake-4x4,taxi", episodes=8, out=str(tmp_path / "t.jsonl"), concurrency=3,
                        progress=False)
    s = collect(cfg)
    got = keys(Path(cfg.out))
    assert sorted(got) == sorted((e, sd) for e in ("frozenlake-4x4", "taxi") for sd in envs.seeds(e, "train", 8))
    assert s.total.successes == 16 and len(set(made)) == len(made) >= 2  # one policy per thread


def test_refuses_to_mix_teachers_in_one_file(tmp_path):
    out = str(tmp_path / "t.jsonl")
    collect(CollectConfig(env="frozenlake-4x4", episodes=1, out=out, progress=False))
    with pytest.raises(ValueError, match="teacher: 'expert' on disk, 'openai:x' now"):
        collect(CollectConfig(teacher="openai:x", env="frozenlake-4x4", episodes=1, out=out, progress=False))
    assert len(read_traces(out)) == 1


# ---------------------------------------------------------------- --noise (DART-style)
MOVES = "turn left,turn right,go forward"


def _replay_expert_actions(label_lines, executed) -> list[str]:
    """The expert's action in each labelled state, recomputed by replaying the executed
    episode up to it (a line keeps only the history a prompt shows)."""
    env = envs.make("babyai-goto-local")
    got = []
    for ep in label_lines:
        env.reset(seed=ep.seed)
        for s in executed[ep.seed].steps[: int(ep.timings["dagger_step"])]:
            env.step(s.action)
        got.append(env.expert().act().action)
    return got


def test_noise_labels_every_state_the_noisy_episodes_visit(tmp_path):
    cfg = CollectConfig(env="babyai-goto-local", episodes=6, out=str(tmp_path / "n.jsonl"), noise=0.4,
                        noise_actions=MOVES, progress=False)
    s = collect(cfg)
    executed = read_traces(Path(cfg.out + ".executed.jsonl"), strict=True)
    labels = read_traces(cfg.out, strict=True)
    assert sorted(e.seed for e in executed) == envs.seeds("babyai-goto-local", "train", 6)
    assert all(e.teacher == "noise(0.4):expert" for e in executed)
    # One line per executed step, each with its history as context only and one target.
    assert len(labels) == sum(e.n_steps for e in executed) == s.total.kept
    for ep in labels:
        assert ep.teacher == "expert" and ep.steps[-1].valid and not any(x.valid for x in ep.steps[:-1])
        assert ep.steps[-1].rationale and ep.steps[-1].raw.startswith("Thought: ")
    # The targets are the expert's actions in the states the noisy episode reached ...
    by_seed = {e.seed: e for e in executed}
    assert [ep.steps[-1].action for ep in labels] == _replay_expert_actions(labels, by_seed)
    # ... and the noise really took the episodes off the expert's path, with moves only.
    off = [(ep.steps[-1].action, by_seed[ep.seed].steps[int(ep.timings["dagger_step"])].action) for ep in labels]
    assert sum(a != b for a, b in off) >= 3
    assert {b for _, b in off} <= set(MOVES.split(","))
    # Seeded: another --concurrency writes the same lines.
    cfg2 = CollectConfig(**{**cfg.__dict__, "out": str(tmp_path / "n2.jsonl"), "concurrency": 2})
    collect(cfg2)
    assert sorted(Path(cfg2.out).read_text().splitlines()) == sorted(Path(cfg.out).read_text().splitlines())


def test_noise_resume_drops_the_labels_of_an_unfinished_episode_and_writes_them_once(tmp_path, caplog):
    full = CollectConfig(env="babyai-goto-local", episodes=5, out=str(tmp_path / "full.jsonl"), noise=0.5,
                         progress=False)
    collect(full)
    cut = CollectConfig(**{**full.__dict__, "out": str(tmp_path / "cut.jsonl")})
    collect(cut)
    # As if killed after the last seed's labels were written but before its executed episode,
    # and then half-way through the labels of a next write.
    ex = Path(cut.out + ".executed.jsonl")
    ex.write_text("".join(ex.read_text().splitlines(keepends=True)[:-1]))
    with open(cut.out, "a") as f:
        f.write('{"schema": 1, "env_id": "babyai-goto-local", "seed": 9')
    with caplog.at_level("WARNING"):
        s = collect(cut)
    assert s.new == 1 and s.resumed == 4
    assert "dropping" in caplog.text
    assert Path(cut.out).read_text() == Path(full.out).read_text()


def test_noise_bad_settings_are_one_line_errors(tmp_path):
    out = str(tmp_path / "n.jsonl")
    for args, msg in ((["--noise", "1.5"], "--noise: expected a probability in [0, 1], got 1.5"),
                      (["--noise", "nan"], "--noise: expected a probability"),
                      (["--noise-actions", "up"], "--noise-actions: has no effect without --noise"),
                      (["--noise", "0.2", "--noise-actions", "up,jump"],
                       "--noise-actions: 'jump' not legal in frozenlake-4x4 (its legal actions: left, down, right, up)")):
        r = subprocess.run([AGENTKD, "collect", "--env", "frozenlake-4x4", "--episodes", "2", "--out", out, *args],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and msg in " ".join(r.stderr.split()) and "Traceback" not in r.stderr, r.stderr
    collect(CollectConfig(env="frozenlake-4x4", episodes=1, out=out, progress=False))
    with pytest.raises(ValueError, match="noise: 0.0 on disk, 0.2 now"):
        collect(CollectConfig(env="frozenlake-4x4", episodes=1, out=out, noise=0.2, progress=False))
