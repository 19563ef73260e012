from __future__ import annotations

import json

import pytest

import envs
from distill.traces import read_traces
from eval.evaluate import EvalConfig, RunOptions, cli, eval_seeds, evaluate, parse_env_list
from eval.metrics import PEAK_RSS_KEY, wilson_interval

ENV = "babyai-goto-local"


def _cfg(tmp_path, **kw):
    base = dict(policy="expert", env=ENV, episodes=4, out=tmp_path / "ev", workers=0,
                progress=False)
    return EvalConfig(**{**base, **kw})


def test_eval_writes_records_and_a_consistent_report(tmp_path):
    result = evaluate(_cfg(tmp_path))
    eps = read_traces(result.records)
    assert sorted(e.seed for e in eps) == envs.seeds(ENV, "test", 4) == [1, 3, 5, 7]
    assert all(e.teacher == "expert" and PEAK_RSS_KEY in e.timings for e in eps)
    data = json.loads(result.report.json.read_text())
    (row,) = data["rows"]
    assert row["episodes"] == 4 and row["seeds"] == [1, 3, 5, 7]
    assert row["successes"] == sum(e.success for e in eps) == 4  # the expert solves GoToLocal
    assert (row["success_low"], row["success_high"]) == pytest.approx(wilson_interval(4, 4))
    assert row["mean_steps"] == pytest.approx(sum(e.n_steps for e in eps) / 4)
    assert row["invalid_rate"] == 0.0 and row["tokens_per_s"] is None
    assert row["peak_rss_bytes"] == max(int(e.timings[PEAK_RSS_KEY]) for e in eps)
    assert result.report.chart.stat().st_size > 1000
    assert json.loads((tmp_path / "ev" / "eval_config.json").read_text())["episodes"] == 4


def test_eval_resumes_after_an_interruption_without_duplicates(tmp_path, monkeypatch):
    import agent.policies as policies

    real = policies.load_policy
    calls = {"n": 0}

    class Interrupting:
        def __init__(self, inner):
            self.inner, self.spec, self.prompt_variant = inner, inner.spec, inner.prompt_variant

        def reset(self, env):
            calls["n"] += 1
            if calls["n"] == 3:  # Ctrl-C during the third episode
                raise KeyboardInterrupt
            self.inner.reset(env)

        def act(self, ctx):
            return self.inner.act(ctx)

    monkeypatch.setattr(policies, "load_policy", lambda s, **kw: Interrupting(real(s, **kw)))
    with pytest.raises(KeyboardInterrupt):
        evaluate(_cfg(tmp_path))
    records = tmp_path / "ev" / "episodes.jsonl"
    assert [e.seed for e in read_traces(records)] == [1, 3]
    # a write killed half-way leaves a torn line; the resume drops it and redoes that seed
    with open(records, "a") as f:
        f.write('{"schema":1,"env_id":"babyai-goto-lo')
    monkeypatch.setattr(policies, "load_policy", real)
    evaluate(_cfg(tmp_path))
    assert sorted(e.seed for e in read_traces(records, strict=True)) == [1, 3, 5, 7]
    evaluate(_cfg(tmp_path))  # nothing left to do: nothing appended
    assert len(read_traces(records)) == 4


@pytest.mark.slow
def test_worker_processes_give_the_same_episodes(tmp_path):
    serial = read_traces(evaluate(_cfg(tmp_path, out=tmp_path / "a")).records)
    par = read_traces(evaluate(_cfg(tmp_path, out=tmp_path / "b", workers=2)).records)
    key = lambda e: e.seed  # noqa: E731
    assert [(e.seed, e.success, [s.action for s in e.steps]) for e in sorted(serial, key=key)] == \
        [(e.seed, e.success, [s.action for s in e.steps]) for e in sorted(par, key=key)]


def test_bad_input_names_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="no-such-env"):
        parse_env_list("frozenlake-4x4,no-such-env")
    with pytest.raises(ValueError, match="--env"):
        parse_env_list(" , ")
    with pytest.raises(ValueError, match="--episodes"):
        eval_seeds([ENV], 0)
    with pytest.raises(ValueError):
        evaluate(_cfg(tmp_path, policy="nonsense:spec"))
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="--loop-temperature: expected a temperature >= 0"):
            evaluate(_cfg(tmp_path, loop_temperature=bad, out=tmp_path / "hot"))
    assert not (tmp_path / "hot" / "episodes.jsonl").exists()  # refused before any episode ran


def test_cli_bad_input_is_one_line_not_a_traceback(tmp_path, capsys):
    rc = cli(["--policy", "expert", "--env", ENV, "--episodes", "2", "--out", str(tmp_path / "x"),
              "--loop-temperature", "-1", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and err.strip() == "agentkd eval: --loop-temperature: expected a temperature >= 0 (0: off), got -1.0"


def test_cli_prints_the_table_and_the_report_path(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = cli(["--policy", "expert", "--env", ENV, "--episodes", "2", "--out", str(out),
              "--workers", "0", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert ENV in text and "expert" in text and str(out / "report.md") in text
    assert (out / "report.md").exists() and (out / "chart.png").exists()


def test_max_steps_bounds_every_episode(tmp_path):
    result = evaluate(_cfg(tmp_path, max_steps=2))
    eps = read_traces(result.records)
    assert max(e.n_steps for e in eps) == 2
    assert all(e.truncated for e in eps if e.n_steps == 2 and not e.success)


def test_copy_args_reaches_only_the_grammar_backends():
    off = RunOptions(copy_args=False)
    assert off.load_kwargs("gguf:s.gguf")["copy_args"] is False
    assert off.load_kwargs("s.gguf")["copy_args"] is False
    assert "copy_args" not in off.load_kwargs("openai:m")  # no grammar sent: nothing to copy into
    assert RunOptions(copy_args=False, grammar=True).load_kwargs("openai:m")["copy_args"] is False
    assert "copy_args" not in off.load_kwargs("hf:dir") and "copy_args" not in off.load_kwargs("expert")
    assert "copy_args" not in RunOptions().load_kwargs("gguf:s.gguf")  # on: the backends' default


@pytest.mark.slow
def test_loop_escape_reaches_worker_processes_and_the_report(tiny_gguf, tmp_path):
    # the tiny student walks into frozenlake's walls: its greedy episodes meet the same
    # observation again (compact_history 0: the observation is the whole situation)
    def run(name, temperature):
        r = evaluate(_cfg(tmp_path, policy=f"gguf:{tiny_gguf}", env="frozenlake-4x4", out=tmp_path / name,
                          workers=1, max_steps=12, max_tokens=24, loop_temperature=temperature))
        return read_traces(r.records), json.loads(r.report.json.read_text())["rows"][0]

    greedy, row = run("greedy", 0.0)
    assert row["resampled"] == 0 and not any(s.resampled for e in greedy for s in e.steps)
    assert any(len({s.observation for s in e.steps}) < e.n_steps for e in greedy)  # repeats
    escaped, row = run("escape", 1.0)
    assert row["resampled"] == sum(s.resampled for e in escaped for s in e.steps) > 0
    for e in escaped:  # resampled exactly where the observation had been met before
        assert [s.resampled for s in e.steps] == [s.observation in {p.observation for p in e.steps[:i]}
                                                 for i, s in enumerate(e.steps)]
    assert "Loop escape resampled" in (tmp_path / "escape" / "report.md").read_text()
