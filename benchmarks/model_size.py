"""Benchmark: file size per preset and quant, and the student/teacher size ratio.

    .venv/bin/python benchmarks/model_size.py                       # nano micro small, expert teacher
    .venv/bin/python benchmarks/model_size.py --teacher gguf:models/teacher-q4_k_m.gguf

For each preset a student is built (random weights: size does not depend on them) and
exported: the HF checkpoint directory, the F32 GGUF and each quant. Prints bytes, MiB and
bits per parameter, and the ratio to the teacher's size on disk where the teacher has one
(``gguf:PATH`` or ``hf:PATH``; the built-in ``expert`` planner has none). Appends one JSON line
to ``benchmarks/results/model_size.jsonl``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import tyro
from rich.console import Console
from rich.table import Table

from common import append_result, stamp, student_files


@dataclasses.dataclass(frozen=True)
class Config:
    """File size per preset and quant; student/teacher ratio where the teacher has a size."""

    presets: tuple[str, ...] = ("nano", "micro", "small")
    """Student size presets (distill.student.PRESETS)."""
    quants: tuple[str, ...] = ("q8_0", "q4_k_m")
    """Quant types besides F32."""
    teacher: str = "expert"
    """Teacher spec; gguf:PATH or hf:PATH give a size on disk, expert and APIs do not."""
    workdir: Path = Path("/tmp/agentkd-bench")
    """Cache for the students and their GGUFs."""
    results_dir: Path | None = None
    """Where NAME.jsonl is appended (default benchmarks/results)."""


def run(cfg: Config) -> dict[str, Any]:
    """Sizes of every preset's files; the result line."""
    from eval.metrics import model_size_bytes

    teacher_bytes = model_size_bytes(cfg.teacher)
    if cfg.teacher.partition(":")[0] in ("gguf", "hf") and teacher_bytes is None:
        raise SystemExit(f"--teacher: expected an existing file or directory, got {cfg.teacher!r}")
    presets = []
    for preset in cfg.presets:
        files = student_files(preset, cfg.workdir, quants=cfg.quants)
        n = int(json.loads((files["hf"] / "agentkd.json").read_text())["n_parameters"])
        rows = {"hf-dir": model_size_bytes(f"hf:{files['hf']}")}
        rows.update({f"gguf-{k}": Path(p).stat().st_size for k, p in files.items() if k != "hf"})
        presets.append({"preset": preset, "n_parameters": n, "rows": {
            name: {"bytes": b, "bits_per_param": round(8 * b / n, 2),
                   "vs_f32": round(b / rows.get("gguf-f32", b) if "gguf-f32" in rows else 1.0, 3),
                   "vs_teacher": None if teacher_bytes is None else round(b / teacher_bytes, 5)}
            for name, b in rows.items()}})
    return {**stamp(), "config": {**dataclasses.asdict(cfg), "workdir": str(cfg.workdir), "results_dir": None},
            "teacher": cfg.teacher, "teacher_bytes": teacher_bytes, "presets": presets}


def main(cfg: Config) -> dict[str, Any]:
    line = run(cfg)
    append_result("model_size", line, cfg.results_dir)
    tb = line["teacher_bytes"]
    table = Table(title=f"Model size (teacher {cfg.teacher}: {'no size' if tb is None else f'{tb / 2**20:.1f} MiB'})")
    for col in ("preset", "file", "params", "MiB", "bits/param", "x F32", "x teacher"):
        table.add_column(col, justify="left" if col in ("preset", "file") else "right")
    for p in line["presets"]:
        for name, r in p["rows"].items():
            table.add_row(p["preset"], name, f"{p['n_parameters'] / 1e6:.2f}M", f"{r['bytes'] / 2**20:.2f}",
                          f"{r['bits_per_param']:.2f}", f"{r['vs_f32']:.3f}",
                          "-" if r["vs_teacher"] is None else f"{r['vs_teacher']:.4f}")
    Console(width=120).print(table)
    return line


if __name__ == "__main__":
    main(tyro.cli(Config, prog="benchmarks/model_size.py"))
