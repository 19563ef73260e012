from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from distill.traces import read_traces
from eval.demo import DEFAULT_ENVS, STAGES, DemoConfig, _config, _train, demo
from eval.metrics import cpu_count


def test_quick_budgets_and_explicit_overrides():
    b = DemoConfig(quick=True).budget()
    assert b["eval_episodes"] < DemoConfig().budget()["eval_episodes"]
    assert DemoConfig(quick=True, steps=7, max_steps=5).budget()["steps"] == 7
    assert DemoConfig().budget()["max_steps"] == 50  # the same cap for every policy
    assert DemoConfig(max_steps=200).budget()["max_steps"] == 200
    assert DemoConfig(quick=True).budget()["mixed_precision"] == "no"
    assert DEFAULT_ENVS.split(",") == ["frozenlake-4x4", "taxi", "babyai-goto-local",
                                       "tools-chain"]
    # compare runs on every core (at most 4) unless told; quick stays in one process
    assert DemoConfig().budget()["workers"] == min(cpu_count(), 4)
    assert DemoConfig(quick=True).budget()["workers"] == 1 and DemoConfig(workers=3).budget()["workers"] == 3
    assert DemoConfig().budget()["val_greedy_max"] == 64
    # the copy warm-up is off unless asked for
    assert DemoConfig().budget()["copy_warmup"] == 0 and DemoConfig(copy_warmup=5).budget()["copy_warmup"] == 5


def test_configs_of_other_stages_are_checked_by_name():
    @dataclass(frozen=True)
    class Cfg:
        a: int = 0
        b: int = 0

    assert _config(Cfg, {"a": 1}, {"b": 2, "c": 3, "d": None}) == Cfg(1, 2)
    with pytest.raises(TypeError, match="expected field.*z.*found a, b"):
        _config(Cfg, {"z": 1}, {})


def test_the_train_stage_passes_the_seed_warmup_and_renaming_to_agentkd_train(tmp_path, monkeypatch):
    import distill.train

    seen = []
    monkeypatch.setattr(distill.train, "train", lambda cfg: seen.append(cfg) or tmp_path / "best")
    cfg = DemoConfig(out=tmp_path, seed=3, copy_warmup=5, rename_entities=True, batch_size=16)
    assert _train(cfg, cfg.budget()) == str(tmp_path / "best")
    assert (seen[0].seed, seen[0].copy_warmup, seen[0].steps, seen[0].rename_entities) == (3, 5, 2000, True)
    assert seen[0].batch_size == 16  # --batch-size reaches agentkd train
    cfg = DemoConfig(out=tmp_path)
    _train(cfg, cfg.budget())
    assert (seen[1].seed, seen[1].copy_warmup, seen[1].rename_entities) == (0, 0, False)
    assert seen[1].batch_size == 8


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process from /proc, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], int(fields[1])


def _stage_processes(demo_pid: int) -> list[int]:
    """The demo's spawned stage processes (not multiprocessing's resource tracker)."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and (_proc_stat(int(d.name)) or ("", 0))[1] == demo_pid:
            try:
                if b"spawn_main" in (d / "cmdline").read_bytes():
                    found.append(int(d.name))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return found


def _within(seconds: float, check) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds processes through /proc")
def test_a_stage_process_ends_when_the_demo_is_killed():
    # SIGKILL leaves the demo no chance to stop its stage; the stage must notice on its own
    script = "import time\nfrom eval.demo import _run_stage\n_run_stage('wait', time.sleep, 300)"
    demo_proc = subprocess.Popen([sys.executable, "-c", script])
    stage: list[int] = []
    try:
        assert _within(120, lambda: stage.extend(_stage_processes(demo_proc.pid)) or stage)
        os.kill(demo_proc.pid, signal.SIGKILL)
        demo_proc.wait()
        assert _within(30, lambda: (_proc_stat(stage[0]) or ("Z",))[0] in "ZX"), "the stage outlived the demo"
    finally:
        demo_proc.kill()
        for pid in stage:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_typo_in_the_env_list_fails_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="frozenlake-4x5"):
        demo(DemoConfig(quick=True, env="frozenlake-4x5", out=tmp_path / "d"))
    assert not (tmp_path / "d" / "stages.json").exists()


@pytest.mark.parametrize("bad, flag", [({"batch_size": 0}, "--batch-size: expected > 0, got 0"),
                                       ({"steps": -1}, "--steps: expected > 0, got -1"),
                                       ({"eval_episodes": 0}, "--eval-episodes: expected > 0"),
                                       ({"copy_warmup": -2}, "--copy-warmup: expected >= 0 steps, got -2")])
def test_a_budget_no_stage_can_run_fails_before_any_work(tmp_path, bad, flag):
    with pytest.raises(ValueError, match=flag):
        demo(DemoConfig(quick=True, out=tmp_path / "d", **bad))
    assert not (tmp_path / "d").exists()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_demo_quick_end_to_end_then_resume(tmp_path):
    out = tmp_path / "demo"
    result = demo(DemoConfig(quick=True, out=out, progress=False))
    report = json.loads((result.report_dir / "report.json").read_text())
    envs = DEFAULT_ENVS.split(",")
    assert report["envs"] == envs and report["teacher"] == "expert"
    kinds = [p.split(":")[0] for p in report["policies"]]
    assert kinds == ["expert", "hf", "gguf", "gguf"]
    assert report["policies"][2].endswith("q8_0.gguf")
    assert report["policies"][3].endswith("q4_k_m.gguf")
    assert report["paired_seeds"] is True
    assert [s["stage"] for s in report["stages"]] == list(STAGES)
    assert all(s["wall_s"] > 0 and s["peak_rss_bytes"] > 0 for s in report["stages"])
    # every success rate is the one of the per-episode records
    eps = read_traces(result.report_dir / report["records"])
    for row in report["rows"]:
        mine = [e for e in eps if e.teacher == row["policy"] and e.env_id == row["env_id"]]
        assert row["episodes"] == len(mine) == DemoConfig(quick=True).budget()["eval_episodes"]
        assert row["successes"] == sum(e.success for e in mine)
    assert len(report["students"]) == 3 * len(envs)
    assert all(s["agreement_states"] > 0 for s in report["students"])
    for name in ("report.md", "chart.png"):
        assert (result.report_dir / name).stat().st_size > 0
    assert "## Pipeline stages" in (result.report_dir / "report.md").read_text()

    # a second run finds every stage done and only rewrites the report
    n_records = len(eps)
    again = demo(DemoConfig(quick=True, out=out, progress=False))
    assert [s["wall_s"] for s in again.stages] == [s["wall_s"] for s in report["stages"]]
    assert len(read_traces(result.report_dir / report["records"])) == n_records
