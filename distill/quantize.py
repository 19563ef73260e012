"""Quantize a GGUF with llama.cpp itself (through llama-cpp-python's bindings).

    from distill.quantize import quantize
    quantize("student-f32.gguf", "student-q4_k_m.gguf", "q4_k_m")

The result is written under a temp name and renamed only when llama.cpp reports success
and the file reads back as a GGUF with the source's agentkd metadata.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

#: Quant name -> llama.cpp file type constant (the name in ``llama_cpp``).
QTYPES: dict[str, str] = {
    "f16": "LLAMA_FTYPE_MOSTLY_F16",
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
}


class QuantizeError(RuntimeError):
    """llama.cpp refused or failed to quantize a file."""


def check_qtype(qtype: str) -> str:
    """The normalised quant name; an unknown one is a ``ValueError`` listing the valid ones."""
    q = qtype.strip().lower()
    if q not in QTYPES:
        raise ValueError(f"quant type: expected one of {', '.join(QTYPES)}, got {qtype!r}")
    return q


def quantize(
    src_gguf: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    qtype: str,
    *,
    n_threads: int = 0,
) -> Path:
    """Quantize ``src_gguf`` (F32 or F16) to ``qtype`` with llama.cpp.

    Args:
        src_gguf: the source GGUF (normally the F32 export).
        out_path: where to write the quantized file (replaced atomically).
        qtype: one of ``QTYPES`` (case-insensitive).
        n_threads: llama.cpp's quantization threads (0: its default).

    Returns:
        ``out_path`` as a ``Path``.

    Raises:
        ValueError: unknown ``qtype``; ``src_gguf`` is not a readable GGUF.
        QuantizeError: llama.cpp failed (its return code is in the message).
    """
    import llama_cpp

    from distill.gguf_writer import read_gguf_info

    q = check_qtype(qtype)
    src = read_gguf_info(src_gguf).path
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QTYPES[q])
    params.nthread = n_threads
    try:
        rc = llama_cpp.llama_model_quantize(
            str(src).encode("utf-8"), str(tmp).encode("utf-8"), params
        )
        if rc != 0 or not tmp.is_file():
            raise QuantizeError(f"llama.cpp failed to quantize {src} to {q} (return code {rc})")
        read_gguf_info(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("quantized %s -> %s (%s, %.1f MB)", src.name, out, q, out.stat().st_size / 1e6)
    return out
