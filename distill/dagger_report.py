"""The report of an ``agentkd dagger`` run: ``OUT/report.json``, ``report.md``, ``report.png``.

The teacher, the SFT-only student and every DAgger iteration on the same held-out test
seeds, with the share of the start's gap to the teacher that each iteration closed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def build_report(config: dict[str, Any], rows: list[dict[str, Any]], teacher: dict[str, Any],
                 teacher_spec: str, label_cache_entries: int) -> dict[str, Any]:
    """The report dict; sets each row's ``gap_closed`` (None when the start is as good as the teacher)."""
    s0, st = rows[0]["success"], teacher["success"]
    for r in rows:
        r["gap_closed"] = (r["success"] - s0) / (st - s0) if st > s0 else None
    return {"config": config, "teacher": {"spec": teacher_spec, **teacher},
            "iterations": rows, "label_cache_entries": label_cache_entries}


def report_table(report: dict[str, Any]) -> str:
    """The report as a markdown table: teacher, SFT start, every iteration."""
    lines = ["| policy | beta | success | 95% CI | gap closed | labelled states |", "|---|---|---|---|---|---|"]
    t = report["teacher"]
    lines.append(f"| teacher {t['spec']} | | {t['success']:.1%} | {t['ci95'][0]:.2f}-{t['ci95'][1]:.2f} | | |")
    for r in report["iterations"]:
        name = "SFT start" if r["iteration"] == 0 else f"DAgger iteration {r['iteration']}"
        gap = "" if r.get("gap_closed") is None else f"{r['gap_closed']:.0%}"
        lines.append(f"| {name} | {r['beta']:.3g} | {r['success']:.1%} | {r['ci95'][0]:.2f}-{r['ci95'][1]:.2f} "
                     f"| {gap} | {r['states_total']} |")
    return "\n".join(lines)


def write_markdown(report: dict[str, Any], out: Path) -> None:
    """``out/report.md`` (atomically) and, where matplotlib is installed, ``out/report.png``."""
    cfg = report["config"]
    text = (f"# DAgger on {cfg['env']} (teacher {cfg['teacher']}, student {cfg['student']})\n\n"
            f"Success on {report['iterations'][0]['n']} held-out test episodes.\n\n{report_table(report)}\n")
    tmp = out / "report.md.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out / "report.md")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    xs = [r["iteration"] for r in report["iterations"]]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(xs, [r["success"] for r in report["iterations"]], "o-", label="student")
    ax.fill_between(xs, [r["ci95"][0] for r in report["iterations"]],
                    [r["ci95"][1] for r in report["iterations"]], alpha=0.2)
    ax.axhline(report["teacher"]["success"], color="k", ls="--", label="teacher")
    ax.set(xlabel="DAgger iteration (0: SFT only)", ylabel="test success", ylim=(-0.02, 1.02), xticks=xs)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "report.png", dpi=100)
    plt.close(fig)


__all__ = ["build_report", "report_table", "write_markdown"]
