"""Benchmark: the whole ``agentkd demo`` pipeline, timed, against its targets.

    .venv/bin/python benchmarks/demo_pipeline.py --out runs/bench-demo           # full
    .venv/bin/python benchmarks/demo_pipeline.py --quick --out runs/bench-quick  # < 3 min

Targets (issue 7): the full demo in under 20 minutes on 2 CPU cores, with the Q8_0 student
at 90% or more of the teacher's success on every default env; ``--quick`` in under 3
minutes. Runs the demo (resuming whatever an earlier run left in ``--out``: use a fresh
directory for a timing) and appends one JSON line to
``benchmarks/results/demo_pipeline.jsonl``: per-stage wall time and peak memory, success
per (policy, env), the Q8_0 retention per env, and whether the targets were met.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import Any

import tyro

from eval.demo import DemoConfig, demo
from eval.metrics import cpu_count
from common import RUN_COMMIT

RESULTS = Path(__file__).resolve().parent / "results" / "demo_pipeline.jsonl"
TARGET_S = {"quick": 180.0, "full": 1200.0}
TARGET_RETENTION = 0.9


def summarize(report: dict[str, Any], quick: bool) -> dict[str, Any]:
    """The benchmark line of one demo report."""
    q8 = next((p for p in report["policies"] if p.startswith("gguf:") and "q8_0" in p), None)
    retention = {s["env_id"]: s["retention"] for s in report["students"] if s["policy"] == q8}
    total = report["total_wall_s"]
    mode = "quick" if quick else "full"
    return {
        "mode": mode,
        "total_wall_s": round(total, 1),
        "stages": {s["stage"]: {"wall_s": round(s["wall_s"], 1),
                                "peak_rss_mib": round(s["peak_rss_bytes"] / 2**20, 1)}
                   for s in report["stages"]},
        "success": {f"{r['policy']}|{r['env_id']}": [r["successes"], r["episodes"]]
                    for r in report["rows"]},
        "q8_retention": retention,
        "time_target_met": total < TARGET_S[mode],
        "retention_target_met": bool(retention) and all(
            r is not None and r >= TARGET_RETENTION for r in retention.values()),
    }


def main(cfg: DemoConfig) -> dict[str, Any]:
    result = demo(cfg)
    line = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": RUN_COMMIT,
        "cpus": cpu_count(),
        "machine": platform.machine(),
        "out": str(cfg.out),
        "budget": cfg.budget(),
        **summarize(result.report, cfg.quick),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
        f.flush()
        os.fsync(f.fileno())
    print(json.dumps(line, indent=2))
    return line


if __name__ == "__main__":
    main(tyro.cli(DemoConfig, prog="benchmarks/demo_pipeline.py",
                  default=dataclasses.replace(DemoConfig(), out=Path("runs/bench-demo"))))
