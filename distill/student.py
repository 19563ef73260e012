"""Student models: Llama-architecture causal LMs from size presets, saved with their metadata.

A student is a plain ``transformers.LlamaForCausalLM`` so that GGUF export is exact. A
student directory holds ``save_pretrained`` output, the tokenizer, and ``agentkd.json``: the
prompt format and variant it was trained on, its preset, the hashes of the trace files and
the full training config, so every checkpoint says how it was made.

Presets (parameter counts at the default 2048-token vocabulary, embeddings untied; with
``tie=True`` (``agentkd train --tie-embeddings``) the output head is the input embedding,
2048 x hidden fewer):

=======  ======  ======  =====  ============  ==================  ======
preset   hidden  layers  heads  intermediate  non-embedding       total
=======  ======  ======  =====  ============  ==================  ======
nano     256     2       4      256           ~0.9M               ~2.0M
micro    256     4       4      768           ~3.4M               ~4.5M
small    512     8       8      1280          ~24.2M              ~26.3M
=======  ======  ======  =====  ============  ==================  ======

Hidden and intermediate sizes are multiples of 256 (llama.cpp's K-quant block), head_dim is
64, no attention/MLP bias, RoPE theta 10000, 2048 positions.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from agent.prompt import PROMPT_FORMAT, check_variant

log = logging.getLogger(__name__)

META_FILE = "agentkd.json"
#: Keys every student's ``agentkd.json`` holds.
META_KEYS = ("prompt_format", "prompt_variant", "preset", "trace_hashes", "train_config")


@dataclass(frozen=True)
class Preset:
    """The shape of a from-scratch student."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 2048


PRESETS: dict[str, Preset] = {
    "nano": Preset(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256),
    "micro": Preset(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=768),
    "small": Preset(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, intermediate_size=1280),
}


def preset_config(preset: str, vocab_size: int, *, tie: bool = False) -> LlamaConfig:
    """The ``LlamaConfig`` of a preset for a tokenizer of ``vocab_size`` tokens (``tie``: the
    output head is the input embedding)."""
    if preset not in PRESETS:
        raise ValueError(f"student preset: expected one of {', '.join(PRESETS)}, got {preset!r}")
    if vocab_size <= 0:
        raise ValueError(f"vocab_size: expected a positive number, got {vocab_size}")
    p = PRESETS[preset]
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=p.hidden_size,
        intermediate_size=p.intermediate_size,
        num_hidden_layers=p.num_hidden_layers,
        num_attention_heads=p.num_attention_heads,
        num_key_value_heads=p.num_attention_heads,
        head_dim=p.hidden_size // p.num_attention_heads,
        max_position_embeddings=p.max_position_embeddings,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=tie,
        attention_bias=False,
        mlp_bias=False,
        hidden_act="silu",
        initializer_range=0.02,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )


def build_student(preset: str, vocab_size: int, *, seed: int = 0, tie: bool = False) -> LlamaForCausalLM:
    """A freshly initialised student of ``preset`` (seeded: same seed, same weights)."""
    config = preset_config(preset, vocab_size, tie=tie)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.float()
    n, n_emb = count_parameters(model)
    log.info("built %s student: %.2fM parameters (%.2fM without embeddings)",
             preset, n / 1e6, (n - n_emb) / 1e6)
    return model


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(all parameters, embedding + output-head parameters) of a model."""
    total = sum(p.numel() for p in model.parameters())
    emb = 0
    for mod in (model.get_input_embeddings(), model.get_output_embeddings()):
        if mod is not None:
            emb += mod.weight.numel()
    if getattr(model.config, "tie_word_embeddings", False):
        emb = model.get_input_embeddings().weight.numel()
    return total, emb


def save_student(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: str | os.PathLike[str],
    meta: dict[str, Any],
    *,
    extra: dict[str, Callable[[Path], None]] | None = None,
) -> Path:
    """Save a student (weights, config, tokenizer, ``agentkd.json``) atomically.

    Everything is written to a temp directory next to ``out_dir`` and renamed into place,
    so ``out_dir`` is always either the old complete checkpoint or the new one.

    Args:
        model: the causal LM.
        tokenizer: its tokenizer (saved alongside).
        out_dir: the student directory (replaced if it exists).
        meta: metadata; must hold ``prompt_variant``. ``prompt_format`` defaults to the
            current ``PROMPT_FORMAT``, ``preset`` to None, ``trace_hashes`` and
            ``train_config`` to empty dicts.
        extra: more files to write inside the same atomic save: file name -> a function
            that writes it to the path it is given (the trainer's state for ``--resume``).

    Returns:
        ``out_dir`` as a ``Path``.
    """
    if "prompt_variant" not in meta:
        raise ValueError("save_student: meta must hold 'prompt_variant' ('full' or 'compact')")
    check_variant(meta["prompt_variant"])
    full_meta = {"prompt_format": PROMPT_FORMAT, "preset": None, "trace_hashes": {},
                 "train_config": {}, **meta}
    n, n_emb = count_parameters(model)
    full_meta.setdefault("n_parameters", n)
    full_meta.setdefault("n_embedding_parameters", n_emb)

    # Generation stops at the end-of-turn token; no BOS is ever added.
    for cfg in (model.config, getattr(model, "generation_config", None)):
        if cfg is not None:
            cfg.eos_token_id = tokenizer.eos_token_id
            cfg.pad_token_id = tokenizer.pad_token_id
            cfg.bos_token_id = tokenizer.bos_token_id

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / META_FILE).write_text(
            json.dumps(full_meta, indent=2, ensure_ascii=False, default=_jsonable) + "\n",
            encoding="utf-8",
        )
        for name, write in (extra or {}).items():
            write(tmp / name)
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``agentkd.json`` of a student directory; ``{}`` for a plain HF checkpoint."""
    p = Path(path) / META_FILE
    if not p.is_file():
        return {}
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON ({e.msg}); re-train or delete the file") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{p}: expected a JSON object, got {type(meta).__name__}")
    return meta


def load_student(
    path: str | os.PathLike[str],
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict[str, Any]]:
    """Load a student directory (or any local causal-LM checkpoint) on CPU in float32.

    Returns:
        ``(model, tokenizer, meta)``; ``meta`` is ``{}`` for a checkpoint without
        ``agentkd.json``.

    Raises:
        ValueError: ``path`` is not a directory holding a causal LM and its tokenizer.
    """
    p = Path(path)
    if not (p / "config.json").is_file():
        raise ValueError(
            f"student {str(p)!r}: expected a model directory with config.json "
            "(a student saved by agentkd train, or a local Hugging Face checkpoint)"
        )
    try:
        config = AutoConfig.from_pretrained(p)
    except Exception as e:  # noqa: BLE001 - any failure here means "not a checkpoint"
        raise ValueError(f"student {str(p)!r}: cannot read config.json: {e}") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32)
    except ValueError:
        raise ValueError(
            f"student {str(p)!r}: model type {config.model_type!r} is not a causal LM; "
            "use a Llama-architecture checkpoint"
        ) from None
    except OSError as e:
        raise ValueError(f"student {str(p)!r}: cannot load its weights: {e}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(p)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"student {str(p)!r}: cannot load its tokenizer: {e}") from None
    model.eval()
    return model, tokenizer, read_meta(p)
