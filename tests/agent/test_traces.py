"""Trace files (distill/traces.py) and agentkd traces stats|export."""

from __future__ import annotations

import json

import pytest

import envs
from agent.episode import run_episode
from agent.policies import load_policy
from agent.prompt import make_context, render_completion, render_messages
from agent.traces_cli import ExportConfig, chat_records, cli, export_chat, trace_stats
from distill.traces import (SCHEMA_VERSION, TraceError, TraceWriter, file_sha256, iter_traces, read_traces,
                            repair_torn_tail, write_json_atomic)


@pytest.fixture
def trace_file(tmp_path):
    path = tmp_path / "t.jsonl"
    expert = load_policy("expert")
    with TraceWriter(path) as w:
        for env_id in ("frozenlake-4x4", "tools-single"):
            for seed in (0, 2):
                w.write(run_episode(envs.make(env_id), expert, seed))
    return path


def test_round_trip_keeps_every_field(tmp_path):
    ep = run_episode(envs.make("tools-single"), load_policy("expert"), 4)
    ep.steps[0].top_logprobs = [{"Th": -0.1, "A": -2.0}]
    ep.error = "x"
    path = tmp_path / "t.jsonl"
    with TraceWriter(path) as w:
        w.write(ep)
    (back,) = read_traces(path, strict=True)
    assert back.to_dict() == ep.to_dict()
    assert json.loads(path.read_text())["schema"] == SCHEMA_VERSION


def test_corrupt_lines_are_skipped_with_their_number_or_fatal_when_strict(trace_file):
    lines = trace_file.read_text().splitlines(keepends=True)
    lines.insert(1, "{not json\n")
    lines.insert(3, json.dumps({"schema": SCHEMA_VERSION, "env_id": "taxi"}) + "\n")
    trace_file.write_text("".join(lines))
    errors: list[str] = []
    assert len(list(iter_traces(trace_file, errors=errors))) == 4
    assert errors[0].startswith(f"{trace_file}:2: not valid JSON")
    assert errors[1].startswith(f"{trace_file}:4: missing field(s) seed, teacher")
    with pytest.raises(TraceError, match=":2: not valid JSON"):
        read_traces(trace_file, strict=True)


def test_another_schema_version_is_a_clear_error(trace_file):
    with open(trace_file, "a") as f:
        f.write(json.dumps({"schema": 99, "env_id": "taxi"}) + "\n")
    with pytest.raises(TraceError, match="schema version 99, expected 1; re-collect"):
        read_traces(trace_file)
    rc = cli(["stats", str(trace_file)])
    assert rc == 1


def test_torn_tail_is_cut_before_appending(trace_file, caplog):
    whole = trace_file.read_bytes()
    trace_file.write_bytes(whole + b'{"schema": 1, "env_')
    assert repair_torn_tail(trace_file) and trace_file.read_bytes() == whole
    assert "torn last line" in caplog.text
    assert not repair_torn_tail(trace_file)
    sha = file_sha256(trace_file)
    write_json_atomic(trace_file.with_suffix(".json"), {"sha": sha})
    assert json.loads(trace_file.with_suffix(".json").read_text()) == {"sha": sha}


def test_stats(trace_file):
    s = trace_stats(trace_file)
    fl, tools = s["per_env"]["frozenlake-4x4"], s["per_env"]["tools-single"]
    eps = read_traces(trace_file)
    assert s["total"]["episodes"] == 4 and s["total"]["success_rate"] == 1.0
    assert fl["steps"] == sum(e.n_steps for e in eps if e.env_id == "frozenlake-4x4")
    assert tools["mean_steps"] == 2.0 and s["total"]["invalid_rate"] == 0.0 and s["corrupt_lines"] == []


def test_stats_cli_json(trace_file, capsys):
    assert cli(["stats", str(trace_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["episodes"] == 4


def test_export_chat_is_one_record_per_step_rendered_by_agent_prompt(trace_file, tmp_path):
    out = tmp_path / "chat.jsonl"
    assert cli(["export", str(trace_file), "--format", "chat", "--out", str(out)]) == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    eps = read_traces(trace_file)
    assert len(recs) == sum(e.n_steps for e in eps)
    tool_recs = [r for r in recs if "tools" in r]
    assert len(tool_recs) == sum(e.n_steps for e in eps if e.env_id == "tools-single")
    assert {t["function"]["name"] for t in tool_recs[0]["tools"]} >= {"calculator", "lookup"}
    # the second step of the first episode, rebuilt by hand
    ep = eps[0]
    env = envs.make(ep.env_id)
    ctx = make_context(env, ep.steps[1].observation, {"legal_actions": ep.steps[1].legal_actions},
                       [ep.steps[0].turn()], "full")
    want = render_messages(ctx, "full") + [
        {"role": "assistant", "content": render_completion(ep.steps[1].rationale, ep.steps[1].action)}]
    assert recs[1]["messages"] == want
    assert [m["role"] for m in recs[1]["messages"]] == ["system", "user", "assistant", "user", "assistant"]


def test_export_skips_invalid_steps_unless_asked(tmp_path):
    ep = run_episode(envs.make("frozenlake-4x4"), load_policy("expert"), 0)
    ep.steps[0].valid = False
    assert len(chat_records(ep)) == ep.n_steps - 1
    assert len(chat_records(ep, include_invalid=True)) == ep.n_steps
    path = tmp_path / "t.jsonl"
    with TraceWriter(path) as w:
        w.write(ep)
    n_eps, n_recs, errors = export_chat(ExportConfig(file=str(path), out=str(tmp_path / "c.jsonl"),
                                                     variant="compact"))
    assert (n_eps, n_recs, errors) == (1, ep.n_steps - 1, [])
    first = json.loads((tmp_path / "c.jsonl").read_text().splitlines()[0])
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"]  # compact: no system turn


def test_cli_usage_and_missing_file(tmp_path, capsys):
    assert cli([]) == 2
    assert cli(["stats", str(tmp_path / "absent.jsonl")]) == 1
    assert "does not exist" in capsys.readouterr().err
