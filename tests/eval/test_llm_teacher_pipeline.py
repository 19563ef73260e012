"""The LLM-teacher path end to end, over HTTP on 127.0.0.1.

A small "teacher" LM trained on expert traces (the session's ``tiny_gguf``) is served by
``python -m llama_cpp.server``; ``collect --teacher openai:teacher`` records its episodes;
a smaller student is distilled from them, exported and quantized; ``compare`` runs teacher
and student on the same test seeds. The report's numbers must be those of the records.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.llama_server import serve_gguf

ENV = "frozenlake-4x4"


@pytest.fixture
def served_teacher(tiny_gguf: Path, tmp_path: Path):
    with serve_gguf(tiny_gguf, "teacher", tmp_path / "server.log") as url:
        yield url


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_llm_teacher_collect_distill_export_compare(served_teacher, tmp_path):
    from agent.collect import CollectConfig, collect
    from distill.export import ExportConfig, export
    from distill.traces import read_traces
    from distill.train import train
    from distill.train_config import TrainConfig
    from eval.compare import CompareConfig, compare

    teacher = "openai:teacher"
    traces = tmp_path / "traces.jsonl"
    # grammar: the served teacher is tiny and barely trained; llama.cpp's server keeps its
    # actions legal, as it would for a real deployment of a small teacher
    collect(CollectConfig(teacher=teacher, env=ENV, episodes=3, split="train", out=str(traces),
                          base_url=served_teacher, api_key="unused", prompt_variant="compact",
                          grammar=True, only_success=False, progress=False))
    collected = read_traces(traces)
    assert len(collected) == 3 and all(e.teacher.startswith("openai:") for e in collected)
    assert all(e.steps and e.steps[0].raw for e in collected)  # real completions, over HTTP
    assert sum(s.valid for e in collected for s in e.steps) > 0

    student = train(TrainConfig(traces=str(traces), student="nano", out=str(tmp_path / "st"),
                                vocab_size=512, steps=20, batch_size=8, warmup=2, lr=3e-3,
                                progress=False))
    exported = export(ExportConfig(student=str(student), quant="q8_0", out=str(tmp_path / "gguf"),
                                   n_states=4, max_new_tokens=48))
    q8 = exported.file("q8_0").path

    out = tmp_path / "cmp"
    result = compare(CompareConfig(
        policy=(teacher, f"gguf:{q8}"), env=ENV, episodes=2, out=out, base_url=served_teacher,
        api_key="unused", prompt_variant="compact", grammar=True, max_steps=6,
        workers=0,
        agreement_states=6, progress=False))

    report = json.loads(result.paths.json.read_text())
    assert report["teacher"] == teacher and report["policies"] == [teacher, f"gguf:{q8}"]
    assert report["paired_seeds"] is True and report["seeds"] == {ENV: [1, 3]}
    eps = read_traces(out / report["records"])
    for row in report["rows"]:
        mine = [e for e in eps if e.teacher == row["policy"]]
        assert sorted(e.seed for e in mine) == [1, 3] == row["seeds"]
        assert row["successes"] == sum(e.success for e in mine)
        assert row["decisions"] == sum(e.n_steps for e in mine) > 0
        assert row["completion_tokens"] == sum(s.completion_tokens for e in mine for s in e.steps)
        assert row["completion_tokens"] > 0 and row["latency_p50_s"] > 0
    (student_row,) = report["students"]
    assert student_row["agreement_states"] > 0
    assert 0.0 <= student_row["agreement"] <= 1.0
    assert (out / "chart.png").stat().st_size > 0 and (out / "report.md").exists()
