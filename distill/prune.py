"""``agentkd prune``: cut a student from a teacher's own weights (depth and width pruning).

    agentkd prune --teacher runs/small/best --keep-layers 0,2,4,6 --heads 4 --intermediate 512 --out runs/pruned
    agentkd prune --teacher runs/small/best --keep-layers 0,3,5,7 --heads 4 --intermediate 512 \\
        --importance activation --traces traces.jsonl --out runs/pruned
    agentkd train --student runs/pruned --prompt-variant compact --kd forward \\
        --teacher hf:runs/small/best --traces traces.jsonl --out runs/pruned-kd

As DistilBERT (every other layer of BERT) and Minitron (depth and width pruning, then
distillation): the student starts from the teacher's parameters, keeps its tokenizer (so
token-level KD against the same ``hf:`` teacher needs no vocabulary mapping) and is then
trained with ``agentkd train --kd ...`` like any checkpoint.

What is cut:

* **Depth**: ``--keep-layers 0,2,4`` keeps those decoder layers, in order (empty: all).
  Indices must be in range, unique and ascending.
* **Attention heads**: ``--heads N`` keeps N query heads per layer (0: all). Whole heads go:
  their rows of q/k/v and their columns of o_proj. ``head_dim`` never changes, so the
  attention width becomes ``N * head_dim`` (``LlamaConfig.head_dim`` and GGUF
  ``attention.key_length`` carry it). With grouped-query attention whole KV groups are kept
  (a KV head and all the query heads that read it), so N must be a multiple of
  ``num_attention_heads / num_key_value_heads``.
* **MLP channels**: ``--intermediate N`` keeps N channels per layer (0: all): rows of
  gate_proj and up_proj, columns of down_proj.

Which heads and channels stay is decided per layer by an importance score, highest first
(ties to the lower index), and the kept ones keep their original order:

* ``magnitude`` (no data): a head's value path, ``||W_v[head]|| * ||W_o[:, head]||``
  (summed over a KV group's query heads); a channel's
  ``||W_gate[j]|| * ||W_up[j]|| * ||W_down[:, j]||`` (Frobenius / L2 norms).
* ``activation`` (``--traces``): Minitron's score on trace prompts rendered with the
  teacher's prompt variant: a head's mean L2 norm of its attention output (the o_proj
  input slice), a channel's mean ``|act(gate) * up|`` (the down_proj input), over tokens.

Shapes that are refused (``--block``, default 256): every matrix the export quantizes is
quantized along its input dimension, in blocks of 256 values for the K-quants (q4_k_m,
q5_k_m, q6_k) and 32 for q8_0/q4_0. llama.cpp falls back to another type (a log line,
no error) for a matrix whose input width does not divide, so the student's three input
widths must be multiples of ``--block``: ``hidden_size`` (q/k/v, gate/up, lm_head; never pruned here, the
teacher's must already divide), ``heads * head_dim`` (o_proj) and ``intermediate``
(down_proj). Use ``--block 32`` only for students that will be exported to q8_0/q4_0/f16.

The student directory is a normal student (``distill.student.save_student``): model, the
teacher's tokenizer unchanged, and ``agentkd.json`` with the teacher's ``prompt_variant``
and what was kept: ``pruned_from``, ``keep_layers``, ``kept_heads`` and ``kept_mlp``
(teacher layer index -> kept query heads / MLP channels, teacher numbering), ``importance``.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import LlamaForCausalLM

from distill.prune_importance import activation_scores, llama_shape, magnitude_scores, trace_token_ids

log = logging.getLogger(__name__)

__all__ = ["PruneConfig", "PrunePlan", "prune_student", "plan_pruning", "prune_model",
           "parse_layers", "resolve_prune_spec", "cli"]

IMPORTANCE = ("magnitude", "activation")


@dataclass(frozen=True)
class PruneConfig:
    """Cut a student from a teacher's weights: keep some layers, heads and MLP channels."""

    teacher: str = ""
    """Teacher directory (a Llama-architecture student or checkpoint; 'hf:PATH' also accepted)."""
    keep_layers: str = ""
    """Decoder layers to keep, comma-separated ascending indices, e.g. 0,2,4 (empty: all)."""
    heads: int = 0
    """Attention (query) heads kept per layer (0: all)."""
    intermediate: int = 0
    """MLP channels kept per layer (0: all); a multiple of --block."""
    importance: Literal["magnitude", "activation"] = "magnitude"
    """Which heads/channels stay: weight magnitude, or activation magnitude on --traces prompts."""
    traces: str = ""
    """Trace file(s), comma-separated, whose prompts score activations (--importance activation)."""
    n_samples: int = 64
    """Trace examples (prompt + completion) run through the teacher for activation importance."""
    max_len: int = 1024
    """Longest scoring sequence in tokens (longer ones keep their last tokens)."""
    block: Literal[256, 32] = 256
    """Quantization block the input widths must divide: 256 (K-quants) or 32 (q8_0/q4_0 only)."""
    out: str = "runs/pruned"
    """Output student directory."""


@dataclass(frozen=True)
class PrunePlan:
    """What to keep of a teacher: layer indices and, per kept teacher layer, heads and channels."""

    keep_layers: list[int]
    kept_heads: dict[int, list[int]]
    kept_mlp: dict[int, list[int]]


# --------------------------------------------------------------------------- checks
def parse_layers(spec: str | Sequence[int] | None, n_layers: int) -> list[int]:
    """Layer indices to keep, checked against a teacher of ``n_layers`` layers.

    Args:
        spec: ``"0,2,4"``, a sequence of ints, or empty/None for all layers.
        n_layers: the teacher's layer count.

    Raises:
        ValueError: a non-integer, out-of-range, duplicate or descending index.
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return list(range(n_layers))
    if isinstance(spec, str):
        try:
            layers = [int(s) for s in spec.split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"--keep-layers: expected comma-separated integers like 0,2,4, got {spec!r}") from None
    else:
        layers = [int(i) for i in spec]
    if not layers:
        raise ValueError(f"--keep-layers: expected at least one layer index, got {spec!r}")
    bad = [i for i in layers if not 0 <= i < n_layers]
    if bad:
        raise ValueError(f"--keep-layers: layer index {bad[0]} is out of range; the teacher has "
                         f"{n_layers} layers (0..{n_layers - 1})")
    dup = sorted({i for i in layers if layers.count(i) > 1})
    if dup:
        raise ValueError(f"--keep-layers: layer {dup[0]} is listed twice in {layers}")
    if layers != sorted(layers):
        raise ValueError(f"--keep-layers: expected ascending indices (layers keep their order), got {layers}")
    return layers


def check_widths(config: Any, n_heads: int, intermediate: int, block: int) -> None:
    """Refuse head / MLP widths that the teacher cannot give or that break quantization blocks.

    Raises:
        ValueError: naming the option, what was expected and what was given.
    """
    if block not in (256, 32):
        raise ValueError(f"--block: expected 256 (K-quants) or 32 (q8_0/q4_0), got {block}")
    n_head, n_kv, head_dim, inter = llama_shape(config)
    why = "256 for K-quants such as q4_k_m" if block == 256 else "32 for q8_0/q4_0"
    if not 1 <= n_heads <= n_head:
        raise ValueError(f"--heads: expected 1..{n_head} (the teacher's heads per layer), got {n_heads}")
    if n_head % n_kv:
        raise ValueError(f"teacher: {n_head} attention heads do not divide into {n_kv} KV heads")
    group = n_head // n_kv
    if n_heads % group:
        raise ValueError(f"--heads {n_heads}: the teacher groups {group} query heads per KV head "
                         f"({n_head} heads, {n_kv} KV heads); expected a multiple of {group}")
    if config.hidden_size % block:
        raise ValueError(f"teacher: hidden size {config.hidden_size} is not a multiple of {block} "
                         f"({why}); it cannot be exported without fallback whatever is pruned")
    if (n_heads * head_dim) % block:
        ok = [h for h in range(group, n_head + 1, group) if (h * head_dim) % block == 0]
        raise ValueError(f"--heads {n_heads}: the attention width heads*head_dim = {n_heads}*{head_dim} = "
                         f"{n_heads * head_dim} is not a multiple of {block} ({why}); "
                         f"expected one of {ok or 'none (use --block 32)'}")
    if not 1 <= intermediate <= inter:
        raise ValueError(f"--intermediate: expected 1..{inter} (the teacher's MLP width), got {intermediate}")
    if intermediate % block:
        raise ValueError(f"--intermediate {intermediate}: expected a multiple of {block} ({why}), "
                         f"e.g. {max(block, intermediate // block * block)}")


# --------------------------------------------------------------------------- importance
def _top(scores: torch.Tensor, k: int) -> list[int]:
    """Indices of the ``k`` highest scores (ties to the lower index), ascending."""
    order = torch.sort(-scores.double(), stable=True).indices[:k]
    return sorted(int(i) for i in order)


def plan_pruning(model: LlamaForCausalLM, keep_layers: list[int], n_heads: int, intermediate: int,
                 scores: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None) -> PrunePlan:
    """Choose, per kept layer, the heads and channels to keep (by ``scores``; magnitude if None)."""
    n_head, n_kv, _, _ = llama_shape(model.config)
    group = n_head // n_kv
    kept_heads: dict[int, list[int]] = {}
    kept_mlp: dict[int, list[int]] = {}
    for layer in keep_layers:
        head_s, mlp_s = scores[layer] if scores is not None else magnitude_scores(model, layer)
        groups = _top(head_s, n_heads // group)
        kept_heads[layer] = [g * group + r for g in groups for r in range(group)]
        kept_mlp[layer] = _top(mlp_s, intermediate)
    return PrunePlan(list(keep_layers), kept_heads, kept_mlp)


# --------------------------------------------------------------------------- surgery
def prune_model(model: LlamaForCausalLM, plan: PrunePlan) -> LlamaForCausalLM:
    """A new ``LlamaForCausalLM`` holding exactly the kept slices of ``model``'s weights."""
    n_head, n_kv, hd, _ = llama_shape(model.config)
    group = n_head // n_kv
    first = plan.keep_layers[0]
    n_heads_kept, inter_kept = len(plan.kept_heads[first]), len(plan.kept_mlp[first])
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = len(plan.keep_layers)
    config.num_attention_heads = n_heads_kept
    config.num_key_value_heads = n_heads_kept // group
    config.head_dim = hd
    config.intermediate_size = inter_kept
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = [config.layer_types[i] for i in plan.keep_layers]

    src = model.state_dict()
    state: dict[str, torch.Tensor] = {k: v for k, v in src.items() if not k.startswith("model.layers.")}
    for new, old in enumerate(plan.keep_layers):
        q_rows = _rows(plan.kept_heads[old], hd)
        kv_rows = _rows(sorted({h // group for h in plan.kept_heads[old]}), hd)
        mlp_rows = torch.tensor(plan.kept_mlp[old], dtype=torch.long)
        pre = f"model.layers.{old}."
        for key, t in src.items():
            if not key.startswith(pre):
                continue
            name = key[len(pre):]
            if name.startswith("self_attn.q_proj."):
                t = t.index_select(0, q_rows)
            elif name.startswith(("self_attn.k_proj.", "self_attn.v_proj.")):
                t = t.index_select(0, kv_rows)
            elif name == "self_attn.o_proj.weight":
                t = t.index_select(1, q_rows)
            elif name.startswith(("mlp.gate_proj.", "mlp.up_proj.")):
                t = t.index_select(0, mlp_rows)
            elif name == "mlp.down_proj.weight":
                t = t.index_select(1, mlp_rows)
            state[f"model.layers.{new}.{name}"] = t.detach().clone()
    with torch.random.fork_rng(devices=[]):  # the random init is overwritten; leave the caller's RNG alone
        student = LlamaForCausalLM(config)
    student.to(next(model.parameters()).dtype)
    student.load_state_dict(state, strict=True)
    student.eval()
    return student


def _rows(heads: Sequence[int], head_dim: int) -> torch.Tensor:
    return torch.tensor([h * head_dim + j for h in heads for j in range(head_dim)], dtype=torch.long)


# --------------------------------------------------------------------------- entry points
def prune_student(
    teacher_dir: str | os.PathLike[str],
    *,
    keep_layers: str | Sequence[int] | None = None,
    n_heads: int | None = None,
    intermediate: int | None = None,
    importance: str = "magnitude",
    traces: str = "",
    out_dir: str | os.PathLike[str],
    block: int = 256,
    n_samples: int = 64,
    max_len: int = 1024,
) -> Path:
    """Prune a teacher into a student directory (see the module docstring).

    Args:
        teacher_dir: a Llama-architecture checkpoint directory (``hf:`` prefix allowed).
        keep_layers: layers to keep (``"0,2,4"`` or ints; None/empty: all).
        n_heads: query heads kept per layer (None/0: all).
        intermediate: MLP channels kept per layer (None/0: all).
        importance: ``"magnitude"`` or ``"activation"`` (needs ``traces``).
        traces: trace file(s), comma-separated, for activation importance.
        out_dir: the student directory to write (replaced atomically).
        block: quantization block the input widths must divide (256 or 32).
        n_samples: trace examples scored for activation importance.
        max_len: longest scored sequence in tokens.

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        ValueError: a teacher that is not a Llama causal LM, or options it cannot satisfy.
    """
    from distill.student import count_parameters, load_student, save_student

    path = str(teacher_dir)
    path = path[len("hf:"):] if path.startswith("hf:") else path
    if importance not in IMPORTANCE:
        raise ValueError(f"--importance: expected one of {', '.join(IMPORTANCE)}, got {importance!r}")
    teacher, tok, t_meta = load_student(path)
    if teacher.config.model_type != "llama" or not isinstance(teacher, LlamaForCausalLM):
        raise ValueError(f"teacher {path!r}: expected a Llama-architecture causal LM, got model type "
                         f"{teacher.config.model_type!r}")
    n_head, _, _, inter = llama_shape(teacher.config)
    layers = parse_layers(keep_layers, teacher.config.num_hidden_layers)
    heads, width = n_heads or n_head, intermediate or inter
    check_widths(teacher.config, heads, width, block)
    variant = t_meta.get("prompt_variant", "full")

    scores = None
    if importance == "activation":
        ids = trace_token_ids(traces, tok, variant, n_samples, max_len)
        scores = activation_scores(teacher, ids)
        log.info("activation importance from %d sequences (%d tokens)", len(ids), sum(map(len, ids)))
    plan = plan_pruning(teacher, layers, heads, width, scores)
    student = prune_model(teacher, plan)

    n_t, _ = count_parameters(teacher)
    n_s, _ = count_parameters(student)
    meta = {
        "prompt_variant": variant,
        "preset": None,
        "pruned_from": os.path.abspath(path),
        "teacher_preset": t_meta.get("preset"),
        "keep_layers": plan.keep_layers,
        "kept_heads": {str(k): v for k, v in plan.kept_heads.items()},
        "kept_mlp": {str(k): v for k, v in plan.kept_mlp.items()},
        "importance": importance,
        "importance_traces": traces if importance == "activation" else "",
        "teacher_parameters": n_t,
        "prune_config": {"keep_layers": layers, "heads": heads, "intermediate": width,
                         "importance": importance, "traces": traces, "block": block,
                         "n_samples": n_samples, "max_len": max_len},
    }
    out = save_student(student, tok, out_dir, meta)
    log.info("pruned %s -> %s: %d -> %d layers, %d -> %d heads, MLP %d -> %d; %.2fM -> %.2fM parameters (%.0f%%)",
             path, out, teacher.config.num_hidden_layers, len(layers), n_head, heads, inter, width,
             n_t / 1e6, n_s / 1e6, 100 * n_s / n_t)
    return out


def resolve_prune_spec(spec: str, cfg_like: Any) -> Path:
    """Build the student a ``prune:PATH`` spec names, as ``agentkd train --student prune:PATH``.

    Pruning options are read from ``cfg_like`` where it has them (``keep_layers``, ``heads``,
    ``intermediate``, ``importance``, ``prune_traces`` or else ``traces``, ``block``,
    ``n_samples``) and default to keeping everything by weight magnitude. The student is
    written to ``cfg_like.out/pruned`` (deterministic, so a resumed run rebuilds the same one).

    Returns:
        the pruned student's directory.
    """
    if not spec.startswith("prune:") or not spec[len("prune:"):].strip():
        raise ValueError(f"--student: expected 'prune:PATH' (a teacher checkpoint directory), got {spec!r}")
    def get(name: str, default: Any) -> Any:
        return getattr(cfg_like, name, default) or default

    keep = get("keep_layers", "")
    return prune_student(
        spec[len("prune:"):].strip(),
        keep_layers=keep if isinstance(keep, str) else list(keep),
        n_heads=get("heads", 0),
        intermediate=get("intermediate", 0),
        importance=get("importance", "magnitude"),
        traces=get("prune_traces", "") or get("traces", ""),
        out_dir=Path(get("out", "runs/student")) / "pruned",
        block=get("block", 256),
        n_samples=get("n_samples", 64),
    )


def cli(argv: list[str]) -> int:
    """``agentkd prune``: parse PruneConfig and prune."""
    import tyro

    cfg = tyro.cli(PruneConfig, args=argv, prog="agentkd prune")
    if not cfg.teacher:
        print("agentkd prune: expected --teacher DIR (the checkpoint to cut the student from)")
        return 2
    try:
        out = prune_student(cfg.teacher, keep_layers=cfg.keep_layers, n_heads=cfg.heads,
                            intermediate=cfg.intermediate, importance=cfg.importance, traces=cfg.traces,
                            out_dir=cfg.out, block=cfg.block, n_samples=cfg.n_samples, max_len=cfg.max_len)
    except ValueError as e:
        print(f"agentkd prune: {e}")
        return 2
    from distill.student import read_meta

    meta = read_meta(out)
    n_s, n_t = meta.get("n_parameters", 0), meta.get("teacher_parameters", 1)
    print(f"pruned student: {out} ({n_s / 1e6:.2f}M parameters, {100 * n_s / n_t:.0f}% of the teacher; "
          f"layers {meta['keep_layers']})")
    print(f"next: agentkd train --student {out} --prompt-variant {meta['prompt_variant']} --kd forward "
          f"--teacher hf:{meta['pruned_from']} --traces TRACES --out RUN")
    return 0

