"""``agentkd export``: a student to GGUF, quantized by llama.cpp, verified before it is done.

    agentkd export runs/student/best --quant q8_0,q4_k_m --out runs/gguf

Steps: write the F32 GGUF (distill.gguf_writer) -> check token-id and logit parity against
the HF student (distill.verify; a failure is an error) -> quantize to each requested type
(distill.quantize) -> measure greedy-action agreement of every file with the HF student on
held-out states -> an Ollama ``Modelfile`` next to each GGUF -> ``export.json`` with every
number and the config. Everything is built in a temp directory inside ``--out`` and moved
into place only after all checks pass, so a failed or interrupted export leaves no file
that looks finished.

Held-out states: the validation episodes of the student's own training traces (its
``agentkd.json`` names the trace files, ``val_frac`` and ``seed``), or ``--traces``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tyro

from agent.prompt import END_TOKEN, EOS_TOKEN, parse_completion
from distill.quantize import check_qtype

log = logging.getLogger(__name__)

MODELFILE_TEMPLATE = '''FROM ./{gguf}
TEMPLATE """{{{{- range .Messages }}}}<|{{{{ .Role }}}}|>
{{{{ .Content }}}}<|end|>
{{{{ end }}}}<|assistant|>
"""
PARAMETER stop "{end}"
PARAMETER stop "{eos}"
PARAMETER temperature 0
PARAMETER num_ctx {n_ctx}
'''


@dataclass(frozen=True)
class ExportConfig:
    """Export a student to GGUF, quantize it with llama.cpp, and verify every file."""

    student: tyro.conf.Positional[str] = "runs/student/best"
    """Student directory (saved by agentkd train) to export."""
    quant: str = "q8_0,q4_k_m"
    """Quant types, comma-separated: q8_0, q6_k, q5_k_m, q4_k_m, q4_0, f16 (an F32 is always written)."""
    out: str = "runs/gguf"
    """Output directory for the GGUFs, Modelfiles and export.json."""
    name: str = "student"
    """File name stem: NAME-f32.gguf, NAME-q8_0.gguf, ..."""
    traces: str = ""
    """Trace file(s) for held-out states (default: the student's own validation episodes)."""
    n_states: int = 24
    """Held-out states for the action-agreement check."""
    max_new_tokens: int = 160
    """Tokens generated per state in the agreement check."""
    n_threads: int | None = None
    """llama.cpp threads (default: llama.cpp's choice)."""


@dataclass
class ExportedFile:
    """One GGUF of an export."""

    path: str
    qtype: str
    size_bytes: int
    action_agreement: float


@dataclass
class ExportResult:
    """What ``export`` wrote and measured (also saved as ``OUT/export.json``)."""

    out_dir: str
    files: list[ExportedFile] = field(default_factory=list)
    n_states: int = 0
    states_source: str = ""
    token_parity_texts: int = 0
    token_parity_tokens: int = 0
    logit_max_abs_diff: float = 0.0
    logit_scale: float = 0.0
    logit_tolerance: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)

    def file(self, qtype: str) -> ExportedFile:
        return next(f for f in self.files if f.qtype == qtype)


def held_out_texts(meta: dict[str, Any], variant: str, traces: str, n: int) -> tuple[list[tuple[str, str]], str]:
    """(prompt, completion) pairs of held-out states, and where they came from."""
    from distill import data

    tc = meta.get("train_config") or {}
    paths = [p for p in (traces or tc.get("traces") or "").split(",") if p.strip()]
    missing = [p for p in paths if not Path(p).is_file()]
    if not paths or missing:
        log.warning("export: no trace files for held-out states (%s); using probe prompts only",
                    ", ".join(missing) or "none named")
        return [], "probes only"
    episodes = data.load_episodes(paths)
    if traces:
        held = episodes
    else:
        held = data.split_episodes(episodes, float(tc.get("val_frac", 0.1)), int(tc.get("seed", 0)))[1]
        held = held or episodes
    examples = data.build_examples(held, variant)[:n]
    return [(e.prompt, e.completion) for e in examples], ",".join(paths)


def export(cfg: ExportConfig) -> ExportResult:
    """Run the export (see the module docstring). Returns what was written and measured.

    Raises:
        ValueError: a bad student directory, architecture or quant name (before any work).
        distill.verify.VerifyError: token or logit parity failed (nothing is left in OUT).
    """
    from agent.policies.gguf import GGUFPolicy
    from agent.types import Sampling
    from distill import verify
    from distill.gguf_writer import write_gguf
    from distill.quantize import quantize
    from distill.student import load_student

    qtypes = list(dict.fromkeys(check_qtype(q) for q in cfg.quant.split(",") if q.strip()))
    model, tokenizer, meta = load_student(cfg.student)
    variant = meta.get("prompt_variant", "full")
    states, source = held_out_texts(meta, variant, cfg.traces, cfg.n_states)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    result = ExportResult(out_dir=str(out), states_source=source, config=asdict(cfg))
    try:
        # ---- F32 and checks (1) + (2): a failure here raises and leaves nothing behind
        f32 = write_gguf(cfg.student, stage / f"{cfg.name}-f32.gguf", "f32")
        texts = [p + c for p, c in states]
        parity = verify.verify_f32(str(f32), model, tokenizer, texts, n_threads=cfg.n_threads)
        result.token_parity_texts, result.token_parity_tokens = parity.n_texts, parity.n_tokens
        result.logit_max_abs_diff, result.logit_scale = parity.logit_max_abs_diff, parity.logit_scale
        result.logit_tolerance = parity.logit_tolerance

        # ---- quantize, then check (3) for every file
        files = [("f32", f32)] + [(q, quantize(f32, stage / f"{cfg.name}-{q}.gguf", q, n_threads=cfg.n_threads or 0))
                                  for q in qtypes if q != "f32"]
        prompts = [p for p, _ in states] or [verify.PROBE_TEXTS[0]]
        hf_actions = [parse_completion(verify.hf_greedy_text(model, tokenizer, p, cfg.max_new_tokens))[1]
                      for p in prompts]
        result.n_states = len(prompts)
        n_ctx = int(getattr(model.config, "max_position_embeddings", 2048))
        for qtype, path in files:
            policy = GGUFPolicy(path, sampling=Sampling(max_tokens=cfg.max_new_tokens),
                                n_threads=cfg.n_threads, n_ctx=n_ctx, use_grammar=False)
            try:
                agree = verify.action_agreement(policy, hf_actions, prompts, cfg.max_new_tokens)
            finally:
                policy.close()
            (stage / f"{path.stem}.Modelfile").write_text(
                MODELFILE_TEMPLATE.format(gguf=path.name, end=END_TOKEN, eos=EOS_TOKEN, n_ctx=n_ctx),
                encoding="utf-8")
            result.files.append(ExportedFile(str(out / path.name), qtype, path.stat().st_size, agree))
            log.info("%s: %.1f MB, action agreement %.1f%%", path.name, path.stat().st_size / 1e6, 100 * agree)
        (stage / "export.json").write_text(json.dumps(asdict(result), indent=2) + "\n", encoding="utf-8")

        # ---- publish: every file was checked; move them into place
        for p in sorted(stage.iterdir()):
            os.replace(p, out / p.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return result


def cli(argv: list[str]) -> int:
    """``agentkd export STUDENT_DIR --quant q8_0,q4_k_m --out DIR``."""
    from rich.console import Console
    from rich.table import Table

    from distill.verify import VerifyError

    cfg = tyro.cli(ExportConfig, args=argv, prog="agentkd export")
    console = Console()
    try:
        result = export(cfg)
    except (ValueError, VerifyError, OSError) as e:
        console.print(f"agentkd export: {e}", style="red", markup=False, highlight=False, soft_wrap=True)
        return 1
    table = Table(title=f"agentkd export -> {result.out_dir}")
    for col in ("file", "type", "size (MB)", f"action agreement ({result.n_states} states)"):
        table.add_column(col)
    for f in result.files:
        table.add_row(Path(f.path).name, f.qtype, f"{f.size_bytes / 1e6:.2f}", f"{100 * f.action_agreement:.1f}%")
    console.print(table)
    console.print(f"token parity: {result.token_parity_texts} texts, {result.token_parity_tokens} tokens identical; "
                  f"logit max |diff| {result.logit_max_abs_diff:.2g} (tolerance {result.logit_tolerance:g} x "
                  f"scale {max(1.0, result.logit_scale):.3g}); states: {result.states_source}")
    return 0
