"""Quantization with llama.cpp: every listed type loads and runs; bad names and files fail clearly."""

from __future__ import annotations

import gguf
import llama_cpp
import pytest

from distill.gguf_writer import GGUFFileError, read_gguf_info
from distill.quantize import QTYPES, check_qtype, quantize

FILE_TYPES = {
    "f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    "q6_k": gguf.LlamaFileType.MOSTLY_Q6_K, "q5_k_m": gguf.LlamaFileType.MOSTLY_Q5_K_M,
    "q4_k_m": gguf.LlamaFileType.MOSTLY_Q4_K_M, "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
}


@pytest.mark.parametrize("qtype", list(QTYPES))
def test_every_type_loads_and_runs(qtype, tiny_gguf, tmp_path):
    out = quantize(tiny_gguf, tmp_path / f"s-{qtype}.gguf", qtype.upper())
    info = read_gguf_info(out, require_agentkd=True)  # agentkd metadata survives
    assert info.file_type == FILE_TYPES[qtype]
    assert info.prompt_variant == "compact"
    assert out.stat().st_size < tiny_gguf.stat().st_size
    llm = llama_cpp.Llama(str(out), n_ctx=128, verbose=False)
    result = llm("<|user|>\nhi<|end|>\n<|assistant|>\n", max_tokens=4, temperature=0.0)
    assert result["usage"]["completion_tokens"] >= 1
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp file left


def test_unknown_type_lists_valid_ones(tiny_gguf, tmp_path):
    with pytest.raises(ValueError, match="q8_0, q6_k, q5_k_m, q4_k_m, q4_0"):
        check_qtype("q3_xs")
    with pytest.raises(ValueError, match="quant type"):
        quantize(tiny_gguf, tmp_path / "x.gguf", "int4")
    assert not list(tmp_path.iterdir())


def test_source_must_be_gguf(tmp_path):
    src = tmp_path / "src.gguf"
    src.write_text("not a model")
    with pytest.raises(GGUFFileError, match="not a GGUF file"):
        quantize(src, tmp_path / "out.gguf", "q8_0")
