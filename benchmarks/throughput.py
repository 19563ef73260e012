"""Benchmark: prompt and generated tokens/s per size preset and quant, against a compute bound.

    .venv/bin/python benchmarks/throughput.py                                  # nano micro small
    .venv/bin/python benchmarks/throughput.py --presets nano --rounds 2 --gen-tokens 8

For each preset a randomly initialised student (tokenizer trained on expert traces) is run
on one recorded prompt of ``--env-id``: the prompt is evaluated in one batch (prompt
tokens/s), then ``--gen-tokens`` single-token steps follow on the KV cache (generated
tokens/s; raw model steps, no sampling). transformers fp32 (forward with ``past_key_values``)
and llama.cpp F32/Q8_0/Q4_K_M are interleaved round by round; medians are reported.

The bound: a token costs about 2 x N FLOPs, N the parameters that take part in matmuls
(all but the input embedding), so at the machine's measured fp32 matmul rate R (torch, best of
10 1024 x 1024 matmuls, ``--threads``) no backend can exceed R / 2N tokens/s. Batched prompts can come close;
single-token generation is bound by memory bandwidth, so it stays well below. One JSON line
per run goes to ``benchmarks/results/throughput.jsonl``.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
import time
from pathlib import Path
from typing import Any

import tyro
from rich.console import Console
from rich.table import Table

from common import append_result, interleaved, matmul_gflops, median, recorded_states, stamp, student_files


@dataclasses.dataclass(frozen=True)
class Config:
    """Prompt and generation tokens/s per preset and quant, against a compute bound."""

    presets: tuple[str, ...] = ("nano", "micro", "small")
    """Student size presets (distill.student.PRESETS)."""
    quants: tuple[str, ...] = ("f32", "q8_0", "q4_k_m")
    """llama.cpp files to time."""
    env_id: str = "frozenlake-8x8"
    """Env whose recorded (expert) state gives the prompt."""
    gen_tokens: int = 32
    """Single-token steps timed after the prompt."""
    rounds: int = 5
    """Interleaved rounds per preset (medians over them)."""
    threads: int = 2
    """CPU threads for torch, llama.cpp and the matmul rate."""
    workdir: Path = Path("/tmp/agentkd-bench")
    """Cache for the students and their GGUFs."""
    results_dir: Path | None = None
    """Where NAME.jsonl is appended (default benchmarks/results)."""


def matmul_params(student_dir: Path) -> int:
    """Parameters that take part in a token's matmuls: all but the input embedding."""
    meta = json.loads((student_dir / "agentkd.json").read_text())
    config = json.loads((student_dir / "config.json").read_text())
    return int(meta["n_parameters"]) - int(config["vocab_size"]) * int(config["hidden_size"])


def _hf_runner(student_dir: Path, ids: list[int], gen: int, out: dict[str, list[float]]) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    warnings.filterwarnings("ignore", message=".*past_key_values.*", category=FutureWarning)
    model = AutoModelForCausalLM.from_pretrained(student_dir, local_files_only=True).eval()
    x = torch.tensor([ids])

    @torch.no_grad()
    def run(r: int) -> None:
        t0 = time.perf_counter()
        past = model(input_ids=x, use_cache=True).past_key_values
        t1 = time.perf_counter()
        tok = torch.tensor([[ids[-1]]])
        for _ in range(gen):
            past = model(input_ids=tok, past_key_values=past, use_cache=True).past_key_values
        t2 = time.perf_counter()
        out["prompt"].append(t1 - t0)
        out["gen"].append(t2 - t1)
    return run


def _llama_runner(path: Path, ids: list[int], gen: int, threads: int, out: dict[str, list[float]]) -> Any:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=2048, n_threads=threads,
                          n_threads_batch=threads, verbose=False)

    def run(r: int) -> None:
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        t1 = time.perf_counter()
        for _ in range(gen):
            llm.eval([ids[-1]])
        t2 = time.perf_counter()
        out["prompt"].append(t1 - t0)
        out["gen"].append(t2 - t1)
    return run


def bench_preset(cfg: Config, preset: str, prompt: str, gflops: float) -> dict[str, Any]:
    """Interleaved prompt/generation timing of every backend of one preset."""
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(cfg.threads)
    files = student_files(preset, cfg.workdir, quants=[q for q in cfg.quants if q != "f32"])
    ids = AutoTokenizer.from_pretrained(files["hf"], local_files_only=True)(
        prompt, add_special_tokens=False)["input_ids"]
    n = matmul_params(files["hf"])
    bound = gflops * 1e9 / (2 * n)
    samples: dict[str, dict[str, list[float]]] = {}
    runners = {}
    samples["hf-fp32"] = {"prompt": [], "gen": []}
    runners["hf-fp32"] = _hf_runner(files["hf"], ids, cfg.gen_tokens, samples["hf-fp32"])
    for q in cfg.quants:
        samples[f"gguf-{q}"] = {"prompt": [], "gen": []}
        runners[f"gguf-{q}"] = _llama_runner(files[q], ids, cfg.gen_tokens, cfg.threads, samples[f"gguf-{q}"])
    for run in runners.values():  # warm-up
        run(-1)
    for s in samples.values():
        s["prompt"].clear()
        s["gen"].clear()
    interleaved(runners, cfg.rounds)
    rows = {}
    for name, s in samples.items():
        p_tps = len(ids) / median(s["prompt"])
        g_tps = cfg.gen_tokens / median(s["gen"])
        rows[name] = {"prompt_tok_s": round(p_tps, 1), "gen_tok_s": round(g_tps, 1),
                      "prompt_frac_of_bound": round(p_tps / bound, 3),
                      "gen_frac_of_bound": round(g_tps / bound, 3)}
    return {"preset": preset, "matmul_params": n, "prompt_tokens": len(ids),
            "bound_tok_s": round(bound, 1), "rows": rows}


def run(cfg: Config) -> dict[str, Any]:
    """Every preset in turn; the result line."""
    from agent.prompt import chat_text, render_messages

    if cfg.rounds < 1 or cfg.gen_tokens < 1:
        raise SystemExit(f"--rounds/--gen-tokens: expected >= 1, got {cfg.rounds}/{cfg.gen_tokens}")
    states = recorded_states(cfg.env_id, 1)
    ctx = states[len(states) // 2][0]
    prompt = chat_text(render_messages(ctx, "compact"))
    gflops = matmul_gflops(cfg.threads)
    presets = [bench_preset(cfg, p, prompt, gflops) for p in cfg.presets]
    return {**stamp(), "config": {**dataclasses.asdict(cfg), "workdir": str(cfg.workdir), "results_dir": None},
            "student": "random init (tokenizer trained on expert traces)",
            "matmul_gflops": round(gflops, 1), "presets": presets}


def main(cfg: Config) -> dict[str, Any]:
    line = run(cfg)
    append_result("throughput", line, cfg.results_dir)
    table = Table(title=f"Tokens/s, {cfg.threads} threads, fp32 matmul {line['matmul_gflops']} GFLOP/s "
                        f"(load {line['machine']['loadavg_1m']})")
    for col in ("preset", "backend", "prompt tok/s", "% bound", "gen tok/s", "% bound", "bound tok/s"):
        table.add_column(col, justify="left" if col in ("preset", "backend") else "right")
    for p in line["presets"]:
        for name, r in p["rows"].items():
            table.add_row(p["preset"], name, f"{r['prompt_tok_s']:.0f}", f"{100 * r['prompt_frac_of_bound']:.0f}%",
                          f"{r['gen_tok_s']:.0f}", f"{100 * r['gen_frac_of_bound']:.0f}%", f"{p['bound_tok_s']:.0f}")
    Console(width=120).print(table)
    return line


if __name__ == "__main__":
    main(tyro.cli(Config, prog="benchmarks/throughput.py"))
