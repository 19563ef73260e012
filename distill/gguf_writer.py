"""A student checkpoint to a GGUF file that llama.cpp runs exactly as transformers does.

    agentkd export runs/student/best --quant q8_0 --out runs/gguf   # calls write_gguf first

What makes the file faithful (each point mirrors llama.cpp's ``convert_hf_to_gguf.py``):

* Llama architecture keys (context length, widths, heads, RoPE base and dimension, RMS eps)
  and the tensors under llama.cpp's names (``token_embd``, ``blk.N.attn_q`` ... ``output``);
* the Q and K projections permuted from Hugging Face's rotate-half RoPE layout to the
  interleaved pairs llama.cpp rotates;
* the byte-level BPE tokenizer as ``tokenizer.ggml.model = "gpt2"`` with the ``gpt2``
  pre-tokenizer (the same regex as ``ByteLevel(use_regex=True)``), tokens in id order,
  merges, and special tokens typed CONTROL so ``tokenize(..., special=True)`` keeps them whole;
* no BOS added, EOS = the tokenizer's end-of-turn token, the chat template;
* ``agentkd.*`` keys: the prompt format and variant the student was trained on and its
  provenance (trace hashes, training config), which ``GGUFPolicy`` reads back.

The file is written under a temp name, read back and checked, and only then renamed.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.prompt import CHAT_TEMPLATE, PROMPT_FORMAT

log = logging.getLogger(__name__)

DTYPES = ("f32", "f16")
#: GGUF metadata keys of agentkd's own.
KEY_PROMPT_FORMAT = "agentkd.prompt_format"
KEY_PROMPT_VARIANT = "agentkd.prompt_variant"
KEY_PROVENANCE = "agentkd.provenance"

_LAYER_MAP = {
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}
_TOP_MAP = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}


class ExportError(ValueError):
    """A checkpoint that cannot be exported faithfully (says which input and why)."""


def permute_qk(w: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """Reorder Q/K rows from HF's rotate-half RoPE layout to llama.cpp's interleaved pairs.

    The same transform as ``LlamaModel.permute`` in llama.cpp's converter.
    """
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _check_config(config: Any, where: str) -> None:
    arch = list(getattr(config, "architectures", None) or [])
    if config.model_type != "llama" or (arch and arch[0] != "LlamaForCausalLM"):
        raise ExportError(
            f"{where}: unsupported architecture {arch or config.model_type!r}; "
            "expected LlamaForCausalLM (model_type 'llama')"
        )
    problems = []
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        problems.append("attention/MLP bias")
    if getattr(config, "hidden_act", "silu") != "silu":
        problems.append(f"hidden_act {config.hidden_act!r}")
    scaling = getattr(config, "rope_scaling", None) or {}
    if scaling.get("rope_type", scaling.get("type", "default")) not in ("default", None):
        problems.append(f"rope_scaling {scaling!r}")
    if problems:
        raise ExportError(f"{where}: unsupported Llama options: {', '.join(problems)}")


def _rope_theta(config: Any) -> float:
    theta = getattr(config, "rope_theta", None)
    if theta is None:  # transformers 5 keeps it in rope_parameters
        theta = (getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
    return float(theta)


def tokenizer_vocab(tokenizer: Any, vocab_size: int, where: str) -> tuple[list[str], list[int], list[str]]:
    """(tokens in id order, GGUF token types, merges) of a byte-level BPE tokenizer.

    Raises:
        ExportError: the tokenizer is not a byte-level BPE, or has more tokens than the model.
    """
    import gguf

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ExportError(f"{where}: expected a fast (tokenizers) tokenizer, got {type(tokenizer).__name__}")
    spec = json.loads(backend.to_str())
    model, pre = spec.get("model") or {}, spec.get("pre_tokenizer") or {}
    pre_types = {pre.get("type")} | {p.get("type") for p in pre.get("pretokenizers", [])}
    if model.get("type") != "BPE" or "ByteLevel" not in pre_types:
        raise ExportError(
            f"{where}: unsupported tokenizer (model {model.get('type')!r}, pre-tokenizer "
            f"{sorted(t for t in pre_types if t)}); expected a byte-level BPE"
        )
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    if max(by_id) >= vocab_size:
        raise ExportError(
            f"{where}: tokenizer has token id {max(by_id)} but the model's vocab_size is {vocab_size}"
        )
    added = tokenizer.added_tokens_decoder  # id -> AddedToken
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:  # embedding rows the tokenizer never produces
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return tokens, [int(t) for t in types], merges


def write_gguf(
    student_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    dtype: str = "f32",
) -> Path:
    """Write a student (HF Llama checkpoint + byte-level BPE tokenizer) as one GGUF file.

    Args:
        student_dir: a directory saved by ``distill.student.save_student`` (or any local
            Llama checkpoint with a byte-level BPE tokenizer; its variant is then "full").
        out_path: the GGUF file to write (replaced atomically if it exists).
        dtype: "f32" (exact; what the parity checks use) or "f16" (matrices in half).

    Returns:
        ``out_path`` as a ``Path``.

    Raises:
        ExportError: unsupported architecture, tokenizer or dtype; a bad student directory.
    """
    import gguf
    import torch

    from distill.student import load_student

    if dtype not in DTYPES:
        raise ExportError(f"dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    where = f"student {str(student_dir)!r}"
    try:
        model, tokenizer, meta = load_student(student_dir)
    except ValueError as e:
        raise ExportError(str(e)) from None
    cfg = model.config
    _check_config(cfg, where)
    n_head = cfg.num_attention_heads
    n_kv = getattr(cfg, "num_key_value_heads", None) or n_head
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head
    tokens, types, merges = tokenizer_vocab(tokenizer, cfg.vocab_size, where)

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    ftype = gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16
    w = gguf.GGUFWriter(tmp, "llama")
    try:
        # -- architecture
        w.add_name(Path(student_dir).resolve().name)
        w.add_context_length(cfg.max_position_embeddings)
        w.add_embedding_length(cfg.hidden_size)
        w.add_block_count(cfg.num_hidden_layers)
        w.add_feed_forward_length(cfg.intermediate_size)
        w.add_head_count(n_head)
        w.add_head_count_kv(n_kv)
        w.add_rope_dimension_count(head_dim)
        if head_dim != cfg.hidden_size // n_head:
            w.add_key_length(head_dim)
            w.add_value_length(head_dim)
        w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
        w.add_rope_freq_base(_rope_theta(cfg))
        w.add_vocab_size(cfg.vocab_size)
        w.add_file_type(int(ftype))
        # -- tokenizer
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("gpt-2")  # llama.cpp's name for the GPT-2 regex
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(merges)
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ExportError(f"{where}: the tokenizer has no eos_token; generation could not stop")
        w.add_eos_token_id(eos)
        w.add_eot_token_id(eos)
        pad = tokenizer.pad_token_id
        bos = tokenizer.bos_token_id
        w.add_bos_token_id(bos if bos is not None else (pad if pad is not None else eos))
        if pad is not None:
            w.add_pad_token_id(pad)
        w.add_add_bos_token(False)
        w.add_add_eos_token(False)
        w.add_chat_template(getattr(tokenizer, "chat_template", None) or CHAT_TEMPLATE)
        # -- agentkd
        w.add_string(KEY_PROMPT_FORMAT, str(meta.get("prompt_format", PROMPT_FORMAT)))
        w.add_string(KEY_PROMPT_VARIANT, str(meta.get("prompt_variant", "full")))
        provenance = {k: meta.get(k) for k in ("preset", "trace_hashes", "train_config")}
        provenance["source"] = str(Path(student_dir).resolve())
        w.add_string(KEY_PROVENANCE, json.dumps(provenance, sort_keys=True, default=str))
        # -- tensors
        state = {k: v.detach().to(torch.float32).numpy() for k, v in model.state_dict().items()}
        for name, arr in _gguf_tensors(state, cfg.num_hidden_layers, n_head, n_kv, where):
            if dtype == "f16" and arr.ndim > 1:
                arr = arr.astype(np.float16)
            w.add_tensor(name, np.ascontiguousarray(arr))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        _check_written(tmp, expected_tensors=2 + 1 + 9 * cfg.num_hidden_layers)
        os.replace(tmp, out)
    except BaseException:
        w.close()
        tmp.unlink(missing_ok=True)
        raise
    log.info("wrote %s (%s, %.1f MB)", out, dtype, out.stat().st_size / 1e6)
    return out


def _gguf_tensors(
    state: dict[str, np.ndarray], n_layers: int, n_head: int, n_kv: int, where: str
) -> list[tuple[str, np.ndarray]]:
    out: list[tuple[str, np.ndarray]] = []
    for hf_name, arr in state.items():
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        if hf_name in _TOP_MAP:
            out.append((_TOP_MAP[hf_name], arr))
            continue
        parts = hf_name.split(".", 3)  # model, layers, N, rest
        if len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[3] in _LAYER_MAP:
            rest = parts[3]
            if rest == "self_attn.q_proj.weight":
                arr = permute_qk(arr, n_head, n_head)
            elif rest == "self_attn.k_proj.weight":
                arr = permute_qk(arr, n_head, n_kv)
            out.append((f"blk.{int(parts[2])}.{_LAYER_MAP[rest]}", arr))
            continue
        raise ExportError(f"{where}: unexpected tensor {hf_name!r}; not a plain Llama checkpoint")
    names = {n for n, _ in out}
    if "output.weight" not in names:  # tied embeddings: llama.cpp wants an output matrix too
        out.append(("output.weight", state["model.embed_tokens.weight"]))
    expected = 3 + 9 * n_layers
    if len(out) != expected:
        raise ExportError(f"{where}: expected {expected} tensors, found {len(out)}")
    return out


def _check_written(path: Path, expected_tensors: int) -> None:
    info = read_gguf_info(path, require_agentkd=True)
    if info.n_tensors != expected_tensors or info.arch != "llama":
        raise ExportError(
            f"{path}: read back {info.n_tensors} tensors of arch {info.arch!r}, "
            f"expected {expected_tensors} of 'llama'"
        )


class GGUFFileError(ValueError):
    """A file that is not a usable GGUF (one line: the path and what is wrong)."""


@dataclass(frozen=True)
class GGUFInfo:
    """What agentkd reads from a GGUF's header before llama.cpp ever sees the file."""

    path: Path
    arch: str
    n_tensors: int
    file_type: int | None
    prompt_format: str | None
    prompt_variant: str | None
    provenance: dict[str, Any]
    chat_template: str | None

    @property
    def is_agentkd(self) -> bool:
        return self.prompt_format is not None


def read_gguf_info(path: str | os.PathLike[str], *, require_agentkd: bool = False) -> GGUFInfo:
    """Read and check a GGUF header with ``gguf.GGUFReader``.

    Args:
        path: the file.
        require_agentkd: also require the ``agentkd.*`` metadata of an exported student.

    Raises:
        GGUFFileError: missing file, not GGUF (wrong magic), truncated or corrupt (the
            header or the tensor data runs past the end of the file), or, with
            ``require_agentkd``, no agentkd metadata.
    """
    from gguf import GGUFReader

    p = Path(path)
    if not p.is_file():
        raise GGUFFileError(f"{p}: no such file (expected a .gguf model file)")
    size = p.stat().st_size
    with p.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise GGUFFileError(f"{p}: not a GGUF file (expected magic b'GGUF', found {magic!r})")
    try:
        reader = GGUFReader(p)
        end = max((t.data_offset + t.n_bytes for t in reader.tensors), default=0)
    except Exception as e:  # noqa: BLE001 - any parse failure means a damaged file
        raise GGUFFileError(f"{p}: truncated or corrupt GGUF ({type(e).__name__}: {e})") from None
    if end > size:
        raise GGUFFileError(f"{p}: truncated GGUF (tensor data ends at byte {end}, file has {size})")

    def get(key: str) -> Any:
        field = reader.get_field(key)
        return None if field is None else field.contents()

    prompt_format = get(KEY_PROMPT_FORMAT)
    if require_agentkd and prompt_format is None:
        raise GGUFFileError(
            f"{p}: lacks agentkd metadata ({KEY_PROMPT_FORMAT}); export it with agentkd export"
        )
    try:
        provenance = json.loads(get(KEY_PROVENANCE) or "{}")
    except json.JSONDecodeError:
        raise GGUFFileError(f"{p}: {KEY_PROVENANCE} is not valid JSON") from None
    return GGUFInfo(
        path=p,
        arch=str(get("general.architecture")),
        n_tensors=len(reader.tensors),
        file_type=get("general.file_type"),
        prompt_format=prompt_format,
        prompt_variant=get(KEY_PROMPT_VARIANT),
        provenance=provenance,
        chat_template=get("tokenizer.chat_template"),
    )
