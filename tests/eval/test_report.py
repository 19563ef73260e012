from __future__ import annotations

import json

import pytest

from agent.types import Episode, Step
from distill.traces import TraceWriter, read_traces
from eval.metrics import all_metrics
from eval.report import CHART_TITLES, TABLE_COLUMNS, build_report, make_chart, table_rows, write_report

POLICIES = ["expert", "gguf:student-q8_0.gguf"]
ENVS = ["frozenlake-4x4", "taxi"]


def _episodes() -> list[Episode]:
    out = []
    for p_i, p in enumerate(POLICIES):
        for env in ENVS:
            for seed in (1, 3, 5, 7):
                ok = not (p_i == 1 and seed == 3)  # the student fails one seed per env
                steps = [Step(observation="o", legal_actions=["a"], rationale="", action="a",
                              raw="", valid=(seed != 5 or p_i == 0), reward=0.0,
                              latency_s=0.001 * (seed + p_i * 10), completion_tokens=4 * p_i,
                              resampled=p_i == 1 and seed == 7 and i < 2)  # loop escape
                         for i in range(seed)]
                out.append(Episode(env_id=env, seed=seed, teacher=p, prompt_format="v",
                                   steps=steps, total_return=1.0 if ok else 0.0, success=ok))
    return out


@pytest.fixture
def written(tmp_path):
    records = tmp_path / "episodes.jsonl"
    with TraceWriter(records) as w:
        for e in _episodes():
            w.write(e)
    rows = all_metrics(read_traces(records), POLICIES, ENVS)
    report = build_report(rows, policies=POLICIES, env_ids=ENVS, teacher="expert",
                          agreement={(POLICIES[1], "taxi"): (9, 12)},
                          config={"episodes": 4, "loop_temperature": 1.0})
    return tmp_path, records, report, write_report(report, tmp_path)


def test_report_files_are_written_and_parseable(written):
    out, records, report, paths = written
    data = json.loads(paths.json.read_text())
    assert data["policies"] == POLICIES and data["envs"] == ENVS
    assert data["paired_seeds"] is True
    assert data["seeds"] == {"frozenlake-4x4": [1, 3, 5, 7], "taxi": [1, 3, 5, 7]}
    assert not list(out.glob("*.tmp*"))
    md = paths.markdown.read_text()
    assert "| " + " | ".join(TABLE_COLUMNS) + " |" in md
    assert md.count("\n| frozenlake-4x4 |") == 2 and md.count("\n| taxi |") == 2
    assert "75% [30%, 95%] n=4" in md  # 3/4 with its Wilson interval
    assert ("Loop escape resampled 2 of 16 decisions of `gguf:student-q8_0.gguf` on frozenlake-4x4; "
            "2 of 16 decisions of `gguf:student-q8_0.gguf` on taxi") in md and "temperature 1.0" in md


def test_every_number_matches_the_episode_records(written):
    out, records, report, paths = written
    data = json.loads(paths.json.read_text())
    eps = read_traces(out / data["records"])
    for row in data["rows"]:
        mine = [e for e in eps if e.teacher == row["policy"] and e.env_id == row["env_id"]]
        assert row["episodes"] == len(mine) == 4
        assert row["successes"] == sum(e.success for e in mine)
        assert row["mean_steps"] == pytest.approx(sum(len(e.steps) for e in mine) / 4)
        invalid = sum(not s.valid for e in mine for s in e.steps)
        assert row["invalid_actions"] == invalid
        assert row["resampled"] == sum(s.resampled for e in mine for s in e.steps)
    students = {(s["policy"], s["env_id"]): s for s in data["students"]}
    assert set(students) == {(POLICIES[1], e) for e in ENVS}
    assert students[(POLICIES[1], "taxi")]["retention"] == pytest.approx(0.75)
    assert students[(POLICIES[1], "taxi")]["agreement"] == pytest.approx(0.75)
    assert students[(POLICIES[1], "frozenlake-4x4")]["agreement"] is None


def test_chart_has_the_three_panels_and_a_real_png(written):
    out, records, report, paths = written
    fig = make_chart(report)
    assert [ax.get_title() for ax in fig.axes] == list(CHART_TITLES)
    success_ax = fig.axes[0]
    # one bar per (policy, env), each with an error bar
    assert len(success_ax.patches) == len(POLICIES) * len(ENVS)
    assert [t.get_text() for t in success_ax.get_legend().get_texts()] == POLICIES
    import matplotlib.image

    img = matplotlib.image.imread(paths.chart)
    assert paths.chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert img.shape[0] >= 400 and img.shape[1] >= 800


def test_unpaired_seeds_are_flagged():
    eps = _episodes()
    eps = [e for e in eps if not (e.teacher == POLICIES[1] and e.seed == 7)]
    report = build_report(all_metrics(eps, POLICIES, ENVS), policies=POLICIES, env_ids=ENVS)
    assert report["paired_seeds"] is False
    assert report["students"] == []  # no teacher given: no retention
    assert len(table_rows(report)) == 4
