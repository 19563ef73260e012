"""Each inference benchmark runs with a tiny budget and appends one well-formed result line.

No timing assertions: the numbers depend on the machine. What is checked is the shape a
reader of ``benchmarks/results/*.jsonl`` relies on: provenance (date, commit, machine,
versions), one row per backend/configuration, and counts that follow from the budget.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import envs
from distill.traces import read_traces

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"

pytestmark = pytest.mark.slow


def _script(name: str) -> Any:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of tiny students shared by every script here."""
    return tmp_path_factory.mktemp("bench_work")


def _only_line(results: Path, name: str) -> dict[str, Any]:
    lines = (results / f"{name}.jsonl").read_text().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert {"date", "commit", "machine", "versions", "config"} <= set(line)
    assert line["machine"]["cores"] >= 1 and line["machine"]["cpu"]
    assert line["versions"]["llama_cpp_python"] and line["versions"]["torch"]
    return line


def test_common_interleaves_and_rotates_the_order() -> None:
    common = _script("common")
    calls: list[tuple[str, int]] = []
    times = common.interleaved({n: (lambda r, n=n: calls.append((n, r))) for n in "abc"}, 3)
    assert calls == [("a", 0), ("b", 0), ("c", 0), ("b", 1), ("c", 1), ("a", 1),
                     ("c", 2), ("a", 2), ("b", 2)]
    assert {n: len(t) for n, t in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert common.quantile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0


def test_common_stamps_the_commit_and_a_dirty_tree(tmp_path: Path) -> None:
    import subprocess

    common = _script("common")
    assert common.git_commit(tmp_path) is None  # not a repository
    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                       check=True, capture_output=True)
    git("init", "-q")
    (tmp_path / "f").write_text("a")
    git("add", "f")
    git("commit", "-q", "-m", "one")
    clean = common.git_commit(tmp_path)
    assert clean and "+" not in clean
    (tmp_path / "f").write_text("b")
    assert common.git_commit(tmp_path) == clean + "+dirty"


def test_common_appends_lines(tmp_path: Path) -> None:
    common = _script("common")
    common.append_result("x", {"a": 1}, tmp_path)
    common.append_result("x", {"a": 2}, tmp_path)
    assert [json.loads(s)["a"] for s in (tmp_path / "x.jsonl").read_text().splitlines()] == [1, 2]


def test_decision_latency(workdir: Path, tmp_path: Path) -> None:
    m = _script("decision_latency")
    m.main(m.Config(preset="nano", n_states=2, max_tokens=4, workdir=workdir, results_dir=tmp_path))
    line = _only_line(tmp_path, "decision_latency")
    assert set(line["rows"]) == {"hf-fp32", "gguf-f32", "gguf-q8_0", "gguf-q4_k_m"}
    assert line["rows"]["hf-fp32"]["speedup_vs_hf"] == 1.0
    for row in line["rows"].values():
        assert row["mean_gen_tokens"] <= 4 and row["mean_prompt_tokens"] > 50
        assert 0 < row["p50_ms"] <= row["p95_ms"]
    assert isinstance(line["target_met"], bool)


def test_throughput(workdir: Path, tmp_path: Path) -> None:
    m = _script("throughput")
    m.main(m.Config(presets=("nano",), rounds=1, gen_tokens=2, workdir=workdir, results_dir=tmp_path))
    line = _only_line(tmp_path, "throughput")
    (preset,) = line["presets"]
    assert preset["preset"] == "nano" and preset["matmul_params"] > 0 and line["matmul_gflops"] > 0
    assert set(preset["rows"]) == {"hf-fp32", "gguf-f32", "gguf-q8_0", "gguf-q4_k_m"}
    for row in preset["rows"].values():
        assert row["prompt_tok_s"] > 0 and row["gen_tok_s"] > 0


def test_agent_steps(workdir: Path, tmp_path: Path) -> None:
    m = _script("agent_steps")
    m.main(m.Config(preset="nano", episodes=1, max_steps=2, max_tokens=4, workdir=workdir,
                    results_dir=tmp_path))
    line = _only_line(tmp_path, "agent_steps")
    assert set(line["rows"]) == set(m.CONFIGS)
    for name, row in line["rows"].items():
        assert 1 <= row["steps"] <= 2
        # Only the reusing configurations keep a prefix (after the first step).
        assert (row["reused_frac"] > 0) == name.startswith("reuse")
    assert line["rows"]["reuse+grammar"]["valid_frac"] == 1.0  # the grammar admits legal actions only
    assert set(line["reuse_speedup"]) == {"grammar", "no_grammar"}


def test_model_size(workdir: Path, tmp_path: Path) -> None:
    m = _script("model_size")
    m.main(m.Config(presets=("nano",), workdir=workdir, results_dir=tmp_path))
    line = _only_line(tmp_path, "model_size")
    rows = line["presets"][0]["rows"]
    assert line["teacher_bytes"] is None and rows["gguf-q8_0"]["vs_teacher"] is None
    assert rows["gguf-f32"]["bits_per_param"] == pytest.approx(32, abs=1)
    assert rows["gguf-q4_k_m"]["bytes"] < rows["gguf-q8_0"]["bytes"] < rows["gguf-f32"]["bytes"]
    with pytest.raises(SystemExit, match="--teacher"):
        m.run(m.Config(presets=("nano",), teacher="gguf:/nonexistent.gguf", workdir=workdir))


def test_train_throughput(tmp_path: Path) -> None:
    m = _script("train_throughput")
    line = m.main(m.Config(presets=("nano",), episodes=4, steps=2, batch_size=2,
                           precisions=("no", "bf16"), workdir=tmp_path / "work", results_dir=tmp_path))
    assert _only_line(tmp_path, "train_throughput") == json.loads(json.dumps(line))
    assert [(r["preset"], r["precision"]) for r in line["presets"]] == [("nano", "no"), ("nano", "bf16")]
    for row in line["presets"]:
        assert row["tokens_per_s"] > 0 and row["bound_tok_s"] > 0 and row["vs_first"] > 0
        assert 0 < row["matmul_params"] < row["n_parameters"]
    assert line["presets"][0]["vs_first"] == 1.0


def test_train_quality(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.episode

    played, real = [], agent.episode.run_episode

    def spy(env, policy, seed, **kw):  # noqa: ANN001, ANN202 - records how each episode was played
        played.append((policy.spec.split(":")[0], seed, kw.get("loop_temperature", 0.0)))
        return real(env, policy, seed, **kw)

    monkeypatch.setattr(agent.episode, "run_episode", spy)
    m = _script("train_quality")
    m.main(m.Config(env_ids=("frozenlake-4x4",), student="nano", train_episodes=6, test_episodes=2,
                    steps=4, eval_every=2, max_steps=8, noise_episodes=3, noise=0.5, loop_temperature=1.0,
                    workdir=str(tmp_path / "work"), results_dir=tmp_path))
    # the student trained on the plain episodes and on the noisy ones, which hold states off
    # the expert's path: one line per labelled state, the executed episodes beside them
    work = tmp_path / "work"
    noisy = work / "frozenlake-4x4.noisy.jsonl"
    config = json.loads((work / "frozenlake-4x4" / "train_config.json").read_text())
    assert config["traces"] == f"{work / 'frozenlake-4x4.jsonl'},{noisy}"
    executed = [json.loads(x) for x in (work / "frozenlake-4x4.noisy.jsonl.executed.jsonl").read_text().splitlines()]
    assert len(executed) == 3 and len(noisy.read_text().splitlines()) == sum(len(e["steps"]) for e in executed)
    line = _only_line(tmp_path, "train_quality")
    assert line["env_id"] == "frozenlake-4x4" and line["expert_success"] == 1.0
    assert line["student_success"] in (0.0, 0.5, 1.0) and line["student_ci95"][0] <= line["student_success"]
    # the same seeds again with loop escape, recorded beside the greedy figure
    assert line["loop_success"] in (0.0, 0.5, 1.0) and line["loop_ratio"] == line["loop_success"]
    assert line["loop_ci95"][0] <= line["loop_success"] <= line["loop_ci95"][1]
    test_seeds = envs.seeds("frozenlake-4x4", "test", 2)
    assert [(seed, t) for who, seed, t in played if who == "hf"] == [(s, 0.0) for s in test_seeds] + [
        (s, 1.0) for s in test_seeds]
    assert [p["step"] for p in line["curve"]] == [2, 4]
    assert 0 < line["train_steps_s"] <= line["train_s"] and line["tokens_per_s"] > 0


@pytest.mark.parametrize("flags,message", [
    ({"noise_episodes": -1}, "--noise-episodes: expected 0 or more, got -1"),
    ({"noise_episodes": 2, "noise": 0.0}, "--noise: expected a probability in (0, 1]"),
    ({"noise_actions": "left"}, "--noise-actions: has no effect without --noise-episodes"),
    ({"loop_temperature": -1.0}, "--loop-temperature: expected a temperature >= 0 (0: off), got -1.0"),
    ({"loop_temperature": float("nan")}, "--loop-temperature: expected a temperature >= 0 (0: off), got nan"),
    ({"loop_temperature": float("inf")}, "--loop-temperature: expected a temperature >= 0 (0: off), got inf"),
])
def test_train_quality_rejects_bad_flags_before_any_work(tmp_path: Path, flags: dict, message: str) -> None:
    m = _script("train_quality")
    with pytest.raises(ValueError, match=re.escape(message)):
        m.main(m.Config(env_ids=("frozenlake-4x4",), workdir=str(tmp_path / "work"), results_dir=tmp_path, **flags))
    assert not (tmp_path / "work").exists()  # nothing collected, nothing trained


def test_student_states(workdir: Path, tmp_path: Path) -> None:
    m = _script("student_states")
    files = _script("common").student_files("nano", workdir, quants=(), env_ids=("frozenlake-4x4",))
    line = m.main(m.Config(student=str(files["hf"]), env_id="frozenlake-4x4", episodes=2, every=1,
                           show=1, results_dir=tmp_path))
    assert _only_line(tmp_path, "student_states")["states"] == line["states"]
    # every state of the expert's 2 episodes, grouped by the expert's action
    expert_states = _script("common").recorded_states("frozenlake-4x4", 2)
    assert line["states"] == sum(g["states"] for g in line["by_action"].values()) == len(expert_states) >= 2
    assert {k: g["states"] for k, g in line["by_action"].items()} == Counter(d.action for _, d in expert_states)
    assert set(line["by_action"]) <= {"left", "down", "right", "up"}
    for g in line["by_action"].values():
        assert 0 <= g["rationale_right"] <= g["states"] and 0 <= g["action_right"] <= g["states"]


def _answer_state(seed: int) -> tuple[str, str, list[str]]:
    """The observation and the expert's answer at the last step of a tools-chain episode, and its names."""
    env = envs.make("tools-chain")
    obs, _ = env.reset(seed=seed)
    expert = env.unwrapped.expert()
    while not (step := expert.act()).action.startswith('{"answer"'):
        obs = env.step(step.action)[0]
    return obs, step.action, env.unwrapped.invented_names()


def test_tool_references(tmp_path: Path) -> None:
    m = _script("tool_references")
    # hide, then show: the env's names, dates and numbers come back as they were
    for seed in (0, 4):  # revenue per employee (numbers); the country of a person's city (names)
        obs, answer, names = _answer_state(seed)
        for results in (False, True):
            refs = m.References(obs, names, results)
            hidden = refs.hide(obs)
            assert re.search(r"\bE1\b", hidden) and not any(n in hidden for n in names)
            assert refs.show(hidden) == obs and refs.show(refs.hide(answer)) == answer
            if results or seed == 0:  # a number, or a country: a result no reference names without results
                assert re.fullmatch(r'\{"answer": "?[NR]\d+"?\}', refs.hide(answer)), refs.hide(answer)
            for number in re.findall(r"(?<![\w.])\d+(?!\w|\.)", obs):  # a number by its value
                assert refs.hide(f"{number}.0") == refs.hide(number) != number
    # held-out phrasings: never on a train seed, on some test seeds
    env = envs.make("tools-chain")

    def held_out(split: str) -> list[bool]:
        return [env.reset(seed=sd) and m.test_only(env.unwrapped) for sd in envs.seeds("tools-chain", split, 40)]

    assert not any(held_out("train")) and 0 < sum(held_out("test")) < 40
    line = m.main(m.Config(workdir=str(tmp_path / "work"), episodes=6, student="nano", steps=2, batch_size=4,
                           mixed_precision="no", test_episodes=2, max_tokens=16, results_dir=tmp_path))
    hidden = sorted((tmp_path / "work").glob("*-hidden.jsonl*"))
    assert [h.name for h in hidden] == ["tools-chain-6-names-hidden.jsonl"]  # renamed into place, no temp left
    source = read_traces(tmp_path / "work" / "tools-chain-6.jsonl")
    assert len(read_traces(hidden[0])) == len(source) == 6
    first = read_traces(hidden[0])[0].steps[0].observation
    assert re.search(r"\bE1\b", first) and first != source[0].steps[0].observation
    assert _only_line(tmp_path, "tool_references")["success"] == line["success"]
    train, test_only = line["train_templates"], line["test_only_templates"]
    assert train[1] + test_only[1] == 2 and line["success"] == train[0] + test_only[0]
    assert line["invalid_steps"][0] <= line["invalid_steps"][1]
    with pytest.raises(SystemExit, match="tool-use env"):
        m.main(m.Config(workdir=str(tmp_path / "x"), env_id="taxi", results_dir=tmp_path))
