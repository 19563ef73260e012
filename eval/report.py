"""Reports of an evaluation: ``report.json`` (the numbers), ``report.md`` (for people) and
``chart.png`` (success with 95% intervals per env and policy; latency and model size beside).

A report is a plain dict built by ``build_report`` from ``EnvMetrics`` rows, so the JSON,
the Markdown, the chart and the table printed by the CLI all show the same numbers. Every
file is written atomically.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.traces import write_json_atomic
from eval.metrics import EnvMetrics, human_bytes, retention

REPORT_SCHEMA = 1
CHART_TITLES = (
    "Task success (95% Wilson interval)",
    "Latency per decision (p50 bar, p95 tick)",
    "Model size on disk",
)


@dataclass(frozen=True)
class ReportPaths:
    """Where a report was written."""

    json: Path
    markdown: Path
    chart: Path


def build_report(
    rows: Sequence[EnvMetrics],
    *,
    policies: Sequence[str],
    env_ids: Sequence[str],
    teacher: str | None = None,
    agreement: dict[tuple[str, str], tuple[int, int]] | None = None,
    records: str = "episodes.jsonl",
    config: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the report dict.

    Args:
        rows: one ``EnvMetrics`` per (policy, env).
        policies: policy specs in report order.
        env_ids: env ids in report order.
        teacher: the reference policy for retention and agreement (None: no comparison).
        agreement: (student, env) -> (agreeing states, states replayed) from the teacher's
            own episodes.
        records: the per-episode records file the rows were computed from (relative path).
        config: the configuration that produced the report (stored verbatim).
        extra: more top-level sections (for example the demo's per-stage timings).
    """
    by_key = {(r.policy, r.env_id): r for r in rows}
    seeds = {env: by_key[(policies[0], env)].seeds if (policies[0], env) in by_key else []
             for env in env_ids}
    paired = all(by_key.get((p, env)) is not None and by_key[(p, env)].seeds == seeds[env]
                 for p in policies for env in env_ids)
    students = []
    if teacher is not None:
        for p in policies:
            if p == teacher:
                continue
            for env in env_ids:
                t, s = by_key.get((teacher, env)), by_key.get((p, env))
                agree, n = (agreement or {}).get((p, env), (0, 0))
                students.append({
                    "policy": p,
                    "env_id": env,
                    "retention": retention(s.success_rate if s else None,
                                           t.success_rate if t else None),
                    "agreement": agree / n if n else None,
                    "agreement_states": n,
                })
    report: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "teacher": teacher,
        "policies": list(policies),
        "envs": list(env_ids),
        "seeds": seeds,
        "paired_seeds": paired,
        "records": records,
        "rows": [r.to_dict() for r in rows],
        "students": students,
        "config": config or {},
    }
    report.update(extra or {})
    return report


def _fmt(x: float | None, spec: str, scale: float = 1.0) -> str:
    return "-" if x is None else format(x * scale, spec)


def _student_index(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(s["policy"], s["env_id"]): s for s in report.get("students", [])}


TABLE_COLUMNS = ("env", "policy", "success (95% CI)", "return", "steps", "invalid",
                 "p50 ms", "p95 ms", "tok/s", "size", "peak mem", "retention", "agreement")


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    """The report as rows of text cells (``TABLE_COLUMNS``), env-major."""
    students = _student_index(report)
    out = []
    for env in report["envs"]:
        for r in (r for r in report["rows"] if r["env_id"] == env):
            s = students.get((r["policy"], env), {})
            out.append([
                env,
                r["policy"],
                f"{r['success_rate']:.0%} [{r['success_low']:.0%}, {r['success_high']:.0%}]"
                f" n={r['episodes']}",
                f"{r['mean_return']:.2f}",
                f"{r['mean_steps']:.1f}",
                f"{r['invalid_rate']:.1%}",
                _fmt(r["latency_p50_s"], ".1f", 1000),
                _fmt(r["latency_p95_s"], ".1f", 1000),
                _fmt(r["tokens_per_s"], ".0f"),
                human_bytes(r["model_size_bytes"]),
                human_bytes(r["peak_rss_bytes"]),
                _fmt(s.get("retention"), ".0%"),
                _fmt(s.get("agreement"), ".0%"),
            ])
    return out


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown (a results table, then how it was made)."""
    lines = ["# agentkd evaluation report", ""]
    if report.get("teacher"):
        lines.append(f"Teacher (reference for retention and agreement): `{report['teacher']}`")
    lines += [
        f"Seeds: {'identical for every policy' if report['paired_seeds'] else 'NOT paired'}"
        f" ({', '.join(f'{e}: {len(s)}' for e, s in report['seeds'].items())} test seeds).",
        f"Per-episode records: `{report['records']}`. Created {report['created']}.",
        "",
        "| " + " | ".join(TABLE_COLUMNS) + " |",
        "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
              for row in table_rows(report)]
    lines += [
        "",
        "Success intervals are 95% Wilson score intervals. Retention = student success / "
        "teacher success on the same seeds. Agreement = share of the teacher's own states "
        "(replayed from its episodes) where the student picks the teacher's action. "
        "Invalid = invalid actions per decision. Peak mem = resident-set high-water mark "
        "of the process that ran the policy.",
    ]
    escaped = [r for r in report["rows"] if r.get("resampled")]
    if escaped:
        lines += ["", "Loop escape resampled " + "; ".join(
            f"{r['resampled']} of {r['decisions']} decisions of `{r['policy']}` on {r['env_id']}"
            for r in escaped) + " (situations met before in the episode, sampled at "
            f"temperature {report['config'].get('loop_temperature', '?')})."]
    stages = report.get("stages")
    if stages:
        lines += ["", "## Pipeline stages", "", "| stage | wall s | peak mem | status |",
                  "|---|---|---|---|"]
        lines += [f"| {s['stage']} | {s['wall_s']:.1f} | {human_bytes(s.get('peak_rss_bytes'))}"
                  f" | {s.get('status', '')} |" for s in stages]
    lines += ["", "![chart](chart.png)", ""]
    return "\n".join(lines)


def make_chart(report: dict[str, Any]) -> Any:
    """The report's figure: three panels titled ``CHART_TITLES`` (a matplotlib Figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    policies, envs = report["policies"], report["envs"]
    rows = {(r["policy"], r["env_id"]): r for r in report["rows"]}
    fig, (ax_s, ax_l, ax_m) = plt.subplots(
        1, 3, figsize=(max(11.0, 4 + 0.8 * len(envs) * len(policies)), 4.8),
        gridspec_kw={"width_ratios": [2, 2, 1]})
    x = np.arange(len(envs))
    width = 0.8 / max(1, len(policies))
    for i, p in enumerate(policies):
        rs = [rows.get((p, e)) for e in envs]
        rate = np.array([r["success_rate"] if r else 0.0 for r in rs])
        low = np.array([r["success_low"] if r else 0.0 for r in rs])
        high = np.array([r["success_high"] if r else 0.0 for r in rs])
        xs = x - 0.4 + width * (i + 0.5)
        ax_s.bar(xs, rate, width, label=_short(p), yerr=[rate - low, high - rate], capsize=3)
        p50 = np.array([(r["latency_p50_s"] or 0.0) * 1000 if r else 0.0 for r in rs])
        p95 = np.array([(r["latency_p95_s"] or 0.0) * 1000 if r else 0.0 for r in rs])
        ax_l.bar(xs, p50, width, label=_short(p))
        ax_l.scatter(xs, p95, marker="_", s=120, color="black", zorder=3)
    for ax in (ax_s, ax_l):
        ax.set_xticks(x, envs, rotation=20, ha="right")
    ax_s.set_ylim(0, 1.05)
    ax_s.set_ylabel("success rate")
    ax_s.legend(fontsize="small", loc="lower left")
    ax_l.set_ylabel("ms per decision")
    sizes = [next((rows[(p, e)]["model_size_bytes"] for e in envs if (p, e) in rows), None)
             for p in policies]
    ax_m.bar(range(len(policies)), [(s or 0) / 2**20 for s in sizes],
             color=[f"C{i}" for i in range(len(policies))])
    for i, s in enumerate(sizes):
        if s is None:
            ax_m.text(i, 0, "n/a", ha="center", va="bottom", fontsize="small")
    ax_m.set_xticks(range(len(policies)), [_short(p) for p in policies], rotation=30, ha="right")
    ax_m.set_ylabel("MiB")
    ax_m.set_ylim(bottom=0)
    for ax, title in zip((ax_s, ax_l, ax_m), CHART_TITLES):
        ax.set_title(title, fontsize="medium")
    fig.tight_layout()
    return fig


def _short(spec: str) -> str:
    kind, _, rest = spec.partition(":")
    return f"{kind}:{Path(rest).name}" if rest and kind in ("gguf", "hf") else spec


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(report: dict[str, Any], out_dir: str | os.PathLike[str]) -> ReportPaths:
    """Write ``report.json``, ``report.md`` and ``chart.png`` into ``out_dir``."""
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = ReportPaths(out / "report.json", out / "report.md", out / "chart.png")
    fig = make_chart(report)
    tmp = paths.chart.with_name("chart.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, paths.chart)
    write_json_atomic(paths.json, report)
    _write_text_atomic(paths.markdown, render_markdown(report))
    return paths


def rich_table(report: dict[str, Any]) -> Any:
    """The report as a ``rich.table.Table`` (what the CLI prints)."""
    from rich.table import Table

    t = Table(title="agentkd: " + ("teacher " + report["teacher"] if report.get("teacher")
                                   else "evaluation"))
    for c in TABLE_COLUMNS:
        t.add_column(c, justify="left" if c in ("env", "policy") else "right")
    for row in table_rows(report):
        t.add_row(*row)
    return t
