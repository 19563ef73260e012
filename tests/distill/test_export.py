"""``agentkd export`` end to end: F32 + every quant, parity checks, Modelfiles, atomic output."""

from __future__ import annotations

import json

import pytest

from agent.cli import main
from distill import verify
from distill.export import ExportConfig, export
from distill.quantize import QTYPES

pytestmark = pytest.mark.slow


def test_round_trip_every_quant(tiny_student_dir, tmp_path):
    out = tmp_path / "gguf"
    res = export(ExportConfig(student=str(tiny_student_dir), quant=",".join(QTYPES), out=str(out),
                              n_states=4, max_new_tokens=24))
    assert {f.qtype for f in res.files} == {"f32", *QTYPES}
    assert res.token_parity_tokens > 100
    assert res.logit_max_abs_diff <= res.logit_tolerance * max(1.0, res.logit_scale)
    assert res.file("f32").action_agreement == 1.0  # exact weights: the same greedy action
    for f in res.files:
        assert 0.0 <= f.action_agreement <= 1.0
        gguf = out / f"student-{f.qtype}.gguf"
        assert gguf.stat().st_size == f.size_bytes
        modelfile = (out / f"student-{f.qtype}.Modelfile").read_text()
        assert modelfile.startswith(f"FROM ./{gguf.name}\n") and 'PARAMETER stop "<|end|>"' in modelfile
    saved = json.loads((out / "export.json").read_text())
    assert saved["config"]["quant"] == ",".join(QTYPES) and len(saved["files"]) == 7
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_failed_parity_leaves_no_finished_file(tiny_student_dir, tmp_path, monkeypatch):
    def broken(*a, **k):
        raise verify.VerifyError("logit parity failed on 'x': max |diff| 1 exceeds 0.0001")

    monkeypatch.setattr(verify, "check_logit_parity", broken)
    out = tmp_path / "gguf"
    with pytest.raises(verify.VerifyError):
        export(ExportConfig(student=str(tiny_student_dir), quant="q8_0", out=str(out)))
    assert list(out.iterdir()) == []


def test_cli_errors_are_one_line(tiny_student_dir, tmp_path, capsys):
    assert main(["export", str(tiny_student_dir), "--quant", "q3_weird", "--out", str(tmp_path)]) == 1
    assert "quant type: expected one of f16, q8_0" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 1
    assert "config.json" in capsys.readouterr().out
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_cli_prints_the_table(tiny_student_dir, tmp_path, capsys):
    assert main(["export", str(tiny_student_dir), "--quant", "q4_k_m", "--out", str(tmp_path),
                 "--n-states", "2", "--max-new-tokens", "16"]) == 0
    text = capsys.readouterr().out
    assert "student-q4_k_m.gguf" in text and "token parity" in text
