"""GGUF export of a student: metadata, exact tokenizer and logits, and the errors for bad input."""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import torch

from agent.prompt import PROMPT_FORMAT
from distill.gguf_writer import ExportError, GGUFFileError, permute_qk, read_gguf_info, write_gguf
from distill.student import load_student
from distill.verify import PROBE_TEXTS, VerifyError, check_logit_parity, check_token_parity, verify_f32


def test_metadata_round_trip(tiny_gguf, tiny_student_dir):
    info = read_gguf_info(tiny_gguf, require_agentkd=True)
    _, tok, meta = load_student(tiny_student_dir)
    assert info.arch == "llama"
    assert info.n_tensors == 3 + 9 * 2  # nano: 2 layers
    assert info.prompt_format == PROMPT_FORMAT
    assert info.prompt_variant == meta["prompt_variant"] == "compact"
    assert info.provenance["preset"] == "nano"
    assert info.chat_template == tok.chat_template
    reader = gguf.GGUFReader(tiny_gguf)
    assert reader.get_field("tokenizer.ggml.pre").contents() == "gpt-2"
    assert reader.get_field("tokenizer.ggml.add_bos_token").contents() is False
    types = reader.get_field("tokenizer.ggml.token_type").contents()
    assert types[tok.convert_tokens_to_ids("<|user|>")] == gguf.TokenType.CONTROL
    assert reader.get_field("tokenizer.ggml.eos_token_id").contents() == tok.convert_tokens_to_ids("<|end|>")


def test_f32_token_and_logit_parity(tiny_gguf, tiny_student_dir):
    model, tok, _ = load_student(tiny_student_dir)
    report = verify_f32(str(tiny_gguf), model, tok, ["<|user|>\nRow 3:  SFFH  {\"a\": [1, 22]} é\n"])
    assert report.n_tokens > 100
    assert report.logit_max_abs_diff <= 1e-4 * max(1.0, report.logit_scale)


def test_f16_is_close_but_smaller(tiny_student_dir, tiny_gguf, tmp_path):
    import llama_cpp

    f16 = write_gguf(tiny_student_dir, tmp_path / "s-f16.gguf", "f16")
    assert read_gguf_info(f16).file_type == gguf.LlamaFileType.MOSTLY_F16
    assert f16.stat().st_size < 0.6 * tiny_gguf.stat().st_size
    model, tok, _ = load_student(tiny_student_dir)
    llm = llama_cpp.Llama(str(f16), n_ctx=256, logits_all=True, verbose=False)
    check_token_parity(llm, tok, PROBE_TEXTS)
    diff, _ = check_logit_parity(llm, model, tok, PROBE_TEXTS[:2], rtol=0.05)
    assert diff > 0


def test_without_the_qk_permutation_logits_differ(tiny_student_dir, tmp_path, monkeypatch):
    import llama_cpp

    import distill.gguf_writer as gw

    monkeypatch.setattr(gw, "permute_qk", lambda w, n_head, n_kv=None: w)
    bad = write_gguf(tiny_student_dir, tmp_path / "bad.gguf")
    model, tok, _ = load_student(tiny_student_dir)
    llm = llama_cpp.Llama(str(bad), n_ctx=256, logits_all=True, verbose=False)
    with pytest.raises(VerifyError, match="logit parity failed"):
        check_logit_parity(llm, model, tok, PROBE_TEXTS[:3])


class _ShiftedLlama:
    """A stand-in for ``llama_cpp.Llama``: the HF model's logits plus ``shift(n_positions)``."""

    def __init__(self, model, shift):
        self.model, self.shift, self.scores = model, shift, None

    def n_ctx(self):
        return 256

    def reset(self):
        self.scores = None

    def eval(self, ids):
        with torch.no_grad():
            hf = self.model(torch.tensor([ids])).logits[0].double().numpy()
        self.scores = hf + self.shift(len(ids))[:, None]


def test_logit_parity_bounds_the_median_position_tightly_and_one_position_loosely(tiny_student_dir):
    """A single position 5e-4 off (summation order near a large activation) passes; 2e-4 off
    at every position (a systematic error, like an F16 cache) or 2e-3 at one position fails."""
    model, tok, _ = load_student(tiny_student_dir)
    text = [PROBE_TEXTS[0]]
    with torch.no_grad():
        scale = max(1.0, float(model(torch.tensor([tok.encode(text[0], add_special_tokens=False)])).logits.abs().max()))

    def spike(size):
        return lambda n: np.eye(n)[n // 2] * size * scale

    diff, _ = check_logit_parity(_ShiftedLlama(model, spike(5e-4)), model, tok, text)
    assert diff == pytest.approx(5e-4 * scale, rel=1e-3)
    with pytest.raises(VerifyError, match="median"):
        check_logit_parity(_ShiftedLlama(model, lambda n: np.full(n, 2e-4 * scale)), model, tok, text)
    with pytest.raises(VerifyError, match="max"):
        check_logit_parity(_ShiftedLlama(model, spike(2e-3)), model, tok, text)


def test_permute_qk_pairs_rotary_halves():
    # one head of dim 4: HF rows (x0, x1 | y0, y1) -> llama.cpp rows (x0, y0, x1, y1)
    w = np.arange(4)[:, None] * np.ones((4, 2))
    assert permute_qk(w, 1)[:, 0].tolist() == [0, 2, 1, 3]


def test_bad_inputs(tmp_path, tiny_student_dir):
    with pytest.raises(ExportError, match="config.json"):
        write_gguf(tmp_path, tmp_path / "x.gguf")
    with pytest.raises(ExportError, match="dtype"):
        write_gguf(tiny_student_dir, tmp_path / "x.gguf", "q4")
    # an unsupported architecture
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=300)).save_pretrained(tmp_path / "gpt2")
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(tiny_student_dir).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ExportError, match="unsupported architecture"):
        write_gguf(tmp_path / "gpt2", tmp_path / "x.gguf")
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".x.gguf*"))


def test_bad_files_give_one_line_errors(tmp_path, tiny_gguf):
    with pytest.raises(GGUFFileError, match="no such file"):
        read_gguf_info(tmp_path / "missing.gguf")
    text = tmp_path / "notes.gguf"
    text.write_text("hello, not a model")
    with pytest.raises(GGUFFileError, match="not a GGUF file"):
        read_gguf_info(text)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size // 2])
    with pytest.raises(GGUFFileError, match="truncated"):
        read_gguf_info(cut)
    foreign = tmp_path / "foreign.gguf"
    w = gguf.GGUFWriter(foreign, "llama")
    w.add_tensor("t", np.zeros(4, dtype=np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    assert read_gguf_info(foreign).is_agentkd is False
    with pytest.raises(GGUFFileError, match="lacks agentkd metadata") as e:
        read_gguf_info(foreign, require_agentkd=True)
    assert "\n" not in str(e.value)


def test_provenance_is_json(tiny_gguf):
    prov = read_gguf_info(tiny_gguf).provenance
    assert set(prov) >= {"preset", "trace_hashes", "train_config", "source"}
    json.dumps(prov)


def test_a_tied_student_exports_exactly(tiny_student_dir, tmp_path):
    """``--tie-embeddings`` saves no lm_head; the writer gives llama.cpp the embedding as
    the output matrix, and the logits still match transformers."""
    import torch

    from distill.student import build_student, save_student

    _, tok, meta = load_student(tiny_student_dir)
    tied = build_student("nano", len(tok), seed=3, tie=True)
    with torch.no_grad():  # a trained-looking head: the shared matrix off its init scale
        tied.model.embed_tokens.weight.mul_(5.0)
    student = save_student(tied, tok, tmp_path / "tied", {"prompt_variant": "compact", "preset": "nano"})
    path = write_gguf(student, tmp_path / "tied.gguf")
    assert read_gguf_info(path).n_tensors == 3 + 9 * 2  # token_embd, output_norm and output
    model, tok, _ = load_student(student)
    assert model.config.tie_word_embeddings
    report = verify_f32(str(path), model, tok, ["<|user|>\nRow 3:  SFFH  {\"a\": [1, 22]} é\n"])
    assert report.logit_max_abs_diff <= 1e-4 * max(1.0, report.logit_scale)
