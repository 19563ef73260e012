"""DAgger: the beta schedule and mixture, relabelling through the cache, aggregation over
iterations, interrupt + resume, and ``agentkd dagger`` end to end on a nano student."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

import envs
from agent.prompt import FULL_WINDOW, chat_text, history_start, make_context, render_messages
from agent.types import Decision
from distill import dagger as dg
from distill import data
from distill.relabel import LabelCache, Relabeler
from distill.traces import read_traces

ENV = "frozenlake-4x4"
ROOT = Path(__file__).resolve().parents[2]


class ScriptedStudent:
    """A student that always answers ``action`` (and can be told to die on its n-th call)."""

    prompt_variant = "compact"

    def __init__(self, action: str = "up", die_at: int = 0, spec: str = "hf:scripted") -> None:
        self.spec, self.action, self.die_at, self.calls = spec, action, die_at, 0

    def reset(self, env) -> None:
        pass

    def act(self, context) -> Decision:
        self.calls += 1
        if self.die_at and self.calls >= self.die_at:
            raise KeyboardInterrupt  # like Ctrl-C in the middle of an episode
        return Decision("student says so", self.action, f"Thought: student says so\nAction: {self.action}")


class CountingTeacher:
    """A prompt-reading teacher: its answer depends on the prompt only; counts its calls."""

    spec = "counting"
    prompt_variant = "compact"

    def __init__(self, prompts: list[str], fail: list[int] | None = None) -> None:
        self.prompts, self.fail = prompts, fail if fail is not None else [0]  # shared by threads

    def reset(self, env) -> None:
        pass

    def act(self, context) -> Decision:
        self.prompts.append(chat_text(render_messages(context, "compact")))
        if self.fail[0]:
            self.fail[0] -= 1
            return Decision("", "", error="HTTP 500 after 3 retries")
        return Decision("go down", "down", "Thought: go down\nAction: down")


def expert_relabeler(**kw) -> Relabeler:
    from agent.policies import load_policy

    return Relabeler("expert", lambda spec: load_policy(spec), **kw)


# ------------------------------------------------------------------ beta schedule and mixture
def test_beta_schedule_decays_from_one():
    assert [dg.beta_schedule(i, 0.5) for i in range(4)] == [1.0, 0.5, 0.25, 0.125]
    assert [dg.beta_schedule(i, 0.0) for i in range(3)] == [1.0, 0.0, 0.0]  # pure DAgger after SFT
    with pytest.raises(ValueError, match="decay in"):
        dg.beta_schedule(1, 1.5)


def test_a_small_share_of_new_states_is_warned_about():
    w = dg.small_share_warning(1, 330, 17455)  # the 40-rollout BabyAI run of BENCHMARKS.md
    assert w is not None and "330 new labelled states are 1.9% of the 17455" in w and "--episodes" in w
    assert dg.small_share_warning(1, 3119, 20244) is None  # its 400-rollout run: 15%
    assert dg.small_share_warning(2, 0, 0) is None


def test_beta_one_executes_the_teacher_and_beta_zero_the_student():
    env, student = envs.make(ENV), ScriptedStudent("up")
    teacher_run = dg.rollout(env, 0, expert_relabeler(), student, 1.0, random.Random(0))
    assert teacher_run.executed.success and student.calls == 0
    assert [s.action for s in teacher_run.executed.steps] == [ep.steps[-1].action for ep in teacher_run.labelled]

    student_run = dg.rollout(env, 0, expert_relabeler(), student, 0.0, random.Random(0), max_steps=6)
    assert [s.action for s in student_run.executed.steps] == ["up"] * 6 and student.calls == 6
    assert not student_run.executed.success and student_run.teacher_steps == 0
    labels = [ep.steps[-1] for ep in student_run.labelled]
    assert len(labels) == 6 and all(s.valid and s.action in ("down", "right") for s in labels)
    # The labelled state's history is what the student did; only the label is a target.
    last = student_run.labelled[-1]
    assert [s.action for s in last.steps[:-1]] == ["up"] * 5 and not any(s.valid for s in last.steps[:-1])
    (example,) = data.episode_examples(last, "compact")
    assert example.action == labels[-1].action
    assert example.prompt.count(last.steps[-1].observation) == 1


def test_mixture_is_seeded_and_mixes_both():
    def run(seed):
        return dg.rollout(envs.make(ENV), 2, expert_relabeler(), ScriptedStudent("left"), 0.5,
                          dg.episode_rng(0, 1, ENV, seed), max_steps=12)

    a, b = run(2), run(2)
    acts = [s.action for s in a.executed.steps]
    assert acts == [s.action for s in b.executed.steps]
    assert 0 < a.teacher_steps < len(acts) and "left" in acts and set(acts) - {"left"}


def test_a_labelled_state_keeps_the_steps_its_prompt_shows():
    env = envs.make("babyai-goto-local")  # compact prompts with recent actions too
    run = dg.rollout(env, 0, expert_relabeler(), ScriptedStudent("turn left"), 0.0, random.Random(0),
                     max_steps=15)
    executed = run.executed.steps
    assert len(run.labelled) == len(executed) == 15
    for t, line in enumerate(run.labelled):
        assert len(line.steps) == t - history_start(t, FULL_WINDOW) + 1 <= FULL_WINDOW + 1
        # the line's prompts are the prompts of that state in the run, in both variants
        history = [s.turn() for s in executed[:t]]
        for variant in ("full", "compact"):
            ctx = make_context(env, executed[t].observation, {"legal_actions": executed[t].legal_actions},
                               history, variant)
            (example,) = data.episode_examples(line, variant)
            assert example.prompt == chat_text(render_messages(ctx, variant)), (t, variant)
    assert run.labelled[-1].timings["dagger_step"] == 14.0


# ------------------------------------------------------------------ relabelling and the cache
def test_relabel_asks_the_teacher_once_per_distinct_state(tmp_path):
    prompts: list[str] = []
    cache = LabelCache(tmp_path / "cache.jsonl")
    relabeler = Relabeler("counting", lambda spec: CountingTeacher(prompts), cache=cache)
    assert not relabeler.reads_state
    env = envs.make(ENV)
    run = dg.rollout(env, 0, relabeler, ScriptedStudent("up"), 0.0, random.Random(0), max_steps=10)
    # FrozenLake's compact prompt is the observation alone: the start, then nine times the
    # same bump into the top edge.
    assert len(run.labelled) == 10 and len(prompts) == len(set(prompts)) == 2
    assert relabeler.stats.calls == 2 and relabeler.stats.cache_hits == 8
    dg.rollout(env, 0, relabeler, ScriptedStudent("up"), 0.0, random.Random(0), max_steps=10)
    assert len(prompts) == 2  # the same episode again is free
    cache.close()
    # ...and so is a resumed run, which reads the cache file.
    again = Relabeler("counting", lambda spec: CountingTeacher(prompts), cache=LabelCache(tmp_path / "cache.jsonl"),
                      concurrency=2)
    run2 = dg.rollout(env, 0, again, ScriptedStudent("up"), 0.0, random.Random(0), max_steps=10)
    assert len(prompts) == 2 and again.stats.cache_hits == 10
    assert [e.steps[-1].action for e in run2.labelled] == ["down"] * 10


def test_failed_teacher_call_leaves_the_state_unlabelled_and_uncached():
    prompts: list[str] = []
    fail = [1]
    relabeler = Relabeler("counting", lambda spec: CountingTeacher(prompts, fail), concurrency=3)
    # Two distinct prompts (the start, then the bump into the top edge, twice): asked once
    # each, although the three states are labelled in parallel; one call fails.
    run = dg.rollout(envs.make(ENV), 0, relabeler, ScriptedStudent("up"), 0.0, random.Random(0), max_steps=3)
    assert relabeler.stats.calls == len(set(prompts)) == 2 and relabeler.stats.errors == 1
    assert len(run.labelled) in (1, 2)  # the start alone, or both bump states
    run = dg.rollout(envs.make(ENV), 0, relabeler, ScriptedStudent("up"), 0.0, random.Random(0), max_steps=3)
    # Only the failed prompt was asked again; the other came from the cache.
    assert len(run.labelled) == 3 and relabeler.stats.calls == 3 and relabeler.stats.errors == 1


# ------------------------------------------------------------------ the run: aggregation, resume
@pytest.fixture
def fake_training(monkeypatch):
    """Training and evaluation replaced by records of their calls; hf: students scripted."""
    calls = {"train": [], "success": [], "students": []}

    def fake_train(cfg, i, files, student_dir, it):
        calls["train"].append((i, list(files), student_dir))
        return f"students/{i}"

    def fake_success(cfg, spec, env_ids, out):
        calls["success"].append(spec)
        return {"success": 1.0 if spec == "expert" else 0.25 * len(calls["success"]), "ci95": [0.0, 1.0],
                "n": cfg.test_episodes, "per_env": {}}

    def fake_load_policy(spec, **kw):
        student = calls["make_student"](spec)
        calls["students"].append(student)
        return student

    calls["make_student"] = lambda spec: ScriptedStudent("up", spec=spec)
    import agent.policies

    monkeypatch.setattr(dg, "_train", fake_train)
    monkeypatch.setattr(dg, "_success", fake_success)
    monkeypatch.setattr(agent.policies, "load_policy", fake_load_policy)
    return calls


def _cfg(out, **kw):
    base = dict(env=ENV, student="nano", out=str(out), iterations=2, episodes=3, sft_episodes=2,
                test_episodes=4, max_steps=5, progress=False)
    return dg.DaggerConfig(**{**base, **kw})


def test_aggregate_grows_and_keeps_every_iteration(tmp_path, fake_training):
    from agent.policies.expert import ExpertPolicy

    report = dg.dagger(_cfg(tmp_path), teacher_factory=lambda spec: ExpertPolicy())
    label_files = [str(tmp_path / f"iter_{i}" / "labels.jsonl") for i in range(3)]
    assert fake_training["train"] == [(0, label_files[:1], None), (1, label_files[:2], "students/0"),
                                      (2, label_files[:3], "students/1")]
    counts = [len(read_traces(f)) for f in label_files]
    rows = report["iterations"]
    assert [r["states_total"] for r in rows] == [counts[0], counts[0] + counts[1], sum(counts)]
    assert [r["beta"] for r in rows] == [1.0, 0.5, 0.25] and counts[1] > 0
    # Iteration 0 is the teacher alone on 2 seeds; later ones use fresh train seeds.
    seeds = [sorted({e.seed for e in read_traces(f)}) for f in label_files]
    assert seeds == [[0, 2], [4, 6, 8], [10, 12, 14]]
    assert all(e.teacher == "expert" and e.steps[-1].valid for e in read_traces(label_files[1]))
    assert report["teacher"]["success"] == 1.0 and rows[0]["gap_closed"] == 0.0
    assert rows[2]["gap_closed"] == pytest.approx((0.75 - 0.25) / (1.0 - 0.25))
    assert (tmp_path / "report.md").read_text().count("DAgger iteration") == 2
    assert (tmp_path / "report.png").stat().st_size > 0


class UnparseableTeacher(CountingTeacher):
    """Answers that parse to no action (an LLM teacher gone wrong)."""

    def act(self, context) -> Decision:
        self.prompts.append(chat_text(render_messages(context, "compact")))
        return Decision("", "", "I am not sure.")


def test_a_teacher_with_no_usable_label_adds_nothing_and_is_an_error_only_with_nothing_else(tmp_path, fake_training):
    with pytest.raises(ValueError, match=r"--teacher counting: no usable label in iteration 0 and no --traces"):
        dg.dagger(_cfg(tmp_path, teacher="counting"), teacher_factory=lambda spec: UnparseableTeacher([]))
    assert fake_training["train"] == []
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["results"]["0:collect"]["states_new"] == 0 and state["results"]["0:collect"]["labels_invalid"] > 0
    # with --traces to train on, the iteration's empty labels file is left out and the run goes on
    fake_training["train"].clear()
    dg.dagger(_cfg(tmp_path / "with_traces", teacher="counting", traces="sft.jsonl", iterations=1),
              teacher_factory=lambda spec: UnparseableTeacher([]))
    assert fake_training["train"] == [(0, ["sft.jsonl"], None), (1, ["sft.jsonl"], "students/0")]


def test_interrupted_iteration_resumes_where_it_stopped(tmp_path, fake_training):
    from agent.policies.expert import ExpertPolicy

    def factory(spec):
        return ExpertPolicy()

    dg.dagger(_cfg(tmp_path / "whole"), teacher_factory=factory)
    # Die in iteration 1 (beta 0.5: the student acts in about half of the steps).
    fake_training["make_student"] = lambda spec: ScriptedStudent("up", die_at=7, spec=spec)
    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        dg.dagger(_cfg(out), teacher_factory=factory)
    state = json.loads((out / "state.json").read_text())
    assert state["done"] == ["0:collect", "0:train", "0:eval"]
    done = [e.seed for e in read_traces(out / "iter_1" / "rollouts.jsonl")]
    assert done in ([4], [4, 6])
    # A torn write: labels of an episode whose rollout line never came.
    stray = read_traces(out / "iter_1" / "labels.jsonl")[0]
    stray.seed = 8
    from distill.traces import TraceWriter

    with TraceWriter(out / "iter_1" / "labels.jsonl") as w:
        w.write(stray)
    fake_training["make_student"] = lambda spec: ScriptedStudent("up", spec=spec)
    fake_training["train"].clear()
    dg.dagger(_cfg(out), teacher_factory=factory)
    assert [t[0] for t in fake_training["train"]] == [1, 2]  # iteration 0 was not trained again
    for i in range(3):
        whole = (tmp_path / "whole" / f"iter_{i}" / "labels.jsonl").read_text()
        assert (out / f"iter_{i}" / "labels.jsonl").read_text() == whole
    with pytest.raises(ValueError, match="another config"):
        dg.dagger(_cfg(out, episodes=4), teacher_factory=factory)


# ------------------------------------------------------------------ the CLI, a real nano student
def _tiny_dagger_args(out):
    """``agentkd dagger`` with a nano student and budgets of seconds (first 6: up to --student)."""
    return [sys.executable, "-m", "agent.cli", "dagger", "--env", ENV, "--student", "nano", "--iterations", "1",
            "--sft-episodes", "3", "--episodes", "1", "--sft-steps", "3", "--steps", "2", "--batch-size", "4",
            "--warmup", "1", "--vocab-size", "400", "--test-episodes", "1", "--max-steps", "8",
            "--max-tokens", "8", "--out", str(out), "--no-progress"]


@pytest.mark.slow
def test_agentkd_dagger_cli_end_to_end(tmp_path):
    out = tmp_path / "run"
    args = _tiny_dagger_args(out)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "DAgger iteration 1" in done.stdout
    report = json.loads((out / "report.json").read_text())
    assert [r["iteration"] for r in report["iterations"]] == [0, 1]
    assert report["teacher"]["success"] == 1.0 and report["teacher"]["n"] == 1
    assert (Path(report["iterations"][1]["student"]) / "config.json").is_file()
    state = json.loads((out / "state.json").read_text())
    assert state["done"][-1] == "teacher:eval" and len(state["done"]) == 7
    # Run again: everything is on disk, nothing is redone.
    again = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and json.loads((out / "report.json").read_text())["iterations"] == \
        report["iterations"]
    bad = subprocess.run([*args[:6], "--student", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--student: expected a preset" in bad.stdout


@pytest.mark.slow
def test_dagger_students_play_through_llama_cpp(tmp_path):
    out = tmp_path / "run"
    args = [*_tiny_dagger_args(out), "--mixed-precision", "bf16",
            "--rollout-backend", "gguf", "--rollout-quant", "q8_0", "--n-threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    for row in report["iterations"]:
        kind, path = row["policy"].split(":", 1)
        assert kind == "gguf" and path.endswith("student-q8_0.gguf") and Path(path).is_file()
        assert Path(path).parent == Path(row["student"]).parent.parent / "gguf"
    state = json.loads((out / "state.json").read_text())
    assert {"0:export", "1:export"} <= set(state["done"])
    # every training run of the iterations was told the precision
    for i in (0, 1):
        assert json.loads((out / f"iter_{i}" / "student" / "train_config.json").read_text())[
            "mixed_precision"] == "bf16"
    # the iteration-1 rollouts were played by the iteration-0 GGUF: its states were labelled
    assert report["iterations"][1]["states_new"] > 0
    bad = subprocess.run([*args[:-4], "--rollout-quant", "q3", "--out", str(tmp_path / "x")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "quant type: expected one of" in bad.stdout + bad.stderr


def test_rename_entities_reaches_every_training_run(tmp_path, monkeypatch):
    import distill.train

    seen = []
    monkeypatch.setattr(distill.train, "train", lambda tc: seen.append(tc) or tmp_path / "best")
    for rename in (True, False):
        cfg = dg.DaggerConfig(env="tools-chain", student="micro", out=str(tmp_path), rename_entities=rename)
        dg._train(cfg, 0, ["a.jsonl"], None, tmp_path / "iter_0")
    assert [tc.rename_entities for tc in seen] == [True, False]


def test_a_run_from_before_a_new_field_resumes_at_its_default(tmp_path):
    cfg = dg.DaggerConfig(env=ENV, student="nano", out=str(tmp_path))
    state = {"config": {k: getattr(cfg, k) for k in dg._FIXED if k != "rename_entities"}, "done": []}
    (tmp_path / dg.STATE_FILE).write_text(json.dumps(state))
    dg._load_state(cfg, tmp_path)  # no error: it ran without renaming
    with pytest.raises(ValueError, match="rename_entities: False on disk, True now"):
        dg._load_state(dg.DaggerConfig(env=ENV, student="nano", out=str(tmp_path), rename_entities=True), tmp_path)


def test_loop_temperature_reaches_the_held_out_evaluation_and_is_fixed_on_resume(tmp_path, monkeypatch):
    import eval.evaluate

    seen = []
    monkeypatch.setattr(eval.evaluate, "run_policies", lambda specs, seeds, out, opts: seen.append(opts) or [])
    for t in (0.0, 1.0):
        dg._success(dg.DaggerConfig(env=ENV, out=str(tmp_path), loop_temperature=t), "expert", [ENV], tmp_path)
    assert [o.loop_temperature for o in seen] == [0.0, 1.0]
    with pytest.raises(ValueError, match="--loop-temperature: expected a temperature >= 0"):
        dg._validate(dg.DaggerConfig(env=ENV, loop_temperature=-1.0))
    # a run from before the field ran greedy: it resumes greedy, not with loop escape
    cfg = dg.DaggerConfig(env=ENV, student="nano", out=str(tmp_path))
    state = {"config": {k: getattr(cfg, k) for k in dg._FIXED if k != "loop_temperature"}, "done": []}
    (tmp_path / dg.STATE_FILE).write_text(json.dumps(state))
    dg._load_state(cfg, tmp_path)
    with pytest.raises(ValueError, match="loop_temperature: 0.0 on disk, 1.0 now"):
        dg._load_state(dg.DaggerConfig(env=ENV, student="nano", out=str(tmp_path), loop_temperature=1.0), tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("grammar", [True, False], ids=["grammar", "free"])
def test_agentkd_dagger_relabels_through_a_real_openai_server(tiny_student_dir, tiny_gguf, tmp_path, grammar):
    """An ``openai:`` teacher served by ``llama_cpp.server`` on 127.0.0.1: the student's
    states are labelled over HTTP on two threads, each distinct prompt once, and cached.
    Under ``--grammar`` the tiny teacher's every answer is a legal action and becomes a
    label; free, none parses, and the iteration adds nothing while the run goes on."""
    from tests.llama_server import serve_gguf

    sft_traces = tiny_student_dir.parent.parent / "traces.jsonl"
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with serve_gguf(tiny_gguf, "tiny", tmp_path / "server.log") as url:
        args = [sys.executable, "-m", "agent.cli", "dagger", "--env", ENV, "--teacher", "openai:tiny",
                "--base-url", url, "--api-key", "unused", "--student", str(tiny_student_dir),
                "--traces", str(sft_traces), "--iterations", "1", "--episodes", "2", "--steps", "2",
                "--batch-size", "4", "--warmup", "1", "--test-episodes", "1", "--max-steps", "6",
                "--max-tokens", "8", "--concurrency", "2", "--out", str(out), "--no-progress",
                "--grammar" if grammar else "--no-grammar"]
        done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        labels = list(read_traces(out / "iter_1" / "labels.jsonl"))
        assert all(e.teacher == "openai:tiny" for e in labels)
        collected = json.loads((out / "state.json").read_text())["results"]["1:collect"]
        # every state the student visited was put to the teacher: labelled, or its answer unparseable
        visited = sum(e.n_steps for e in read_traces(out / "iter_1" / "rollouts.jsonl"))
        assert collected["states_new"] == len(labels)
        assert collected["states_new"] + collected["labels_invalid"] == visited > 0
        # each distinct prompt was asked once: the cache holds one line per prompt
        cache = (out / "label_cache.jsonl").read_text().splitlines()
        keys = [json.loads(line)["key"] for line in cache]
        assert 0 < collected["teacher_calls"] == len(keys) == len(set(keys)) <= visited
        if grammar:
            assert len(labels) == visited
            assert all(e.steps[-1].valid and e.steps[-1].action in e.steps[-1].legal_actions for e in labels)
        else:
            assert not labels
            assert "gave no usable label (%d unparseable answers)" % visited in done.stderr + done.stdout
        trained_on = json.loads((out / "iter_1" / "student" / "train_config.json").read_text())["traces"]
        assert trained_on.split(",") == [str(sft_traces)] + [str(out / "iter_1" / "labels.jsonl")] * grammar
        report = json.loads((out / "report.json").read_text())
        assert report["teacher"]["n"] == 1 and report["teacher"]["spec"] == "openai:tiny"
        # a rerun finds everything on disk and asks the server nothing
        again = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
        assert (out / "label_cache.jsonl").read_text().splitlines() == cache
