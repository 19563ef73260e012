"""Proof that a GGUF export is faithful: token ids, logits and greedy actions.

Three checks, run by ``agentkd export`` before it reports success:

1. **Token parity** (``check_token_parity``): llama.cpp's tokenizer
   (``tokenize(text, add_bos=False, special=True)``) gives exactly the HF tokenizer's ids on
   every text: the validation prompts and completions plus probes with special tokens,
   digits, unicode, double spaces and JSON. Any difference is an error.
2. **Logit parity** (``check_logit_parity``): on the F32 GGUF, llama.cpp's logits equal
   the HF model's, relative to the logit scale ``S = max(1, max |l_hf|)``: at the median
   position of each text within ``LOGIT_RTOL * S``, and at every position within
   ``LOGIT_RTOL_MAX * S``. Float32 weights and an F32 KV cache on the llama.cpp side (its
   default F16 cache alone adds ~3e-4 relative), so the differences come only from
   summation order: ~3e-7 relative at the median position. A trained student whose
   residual stream carries activations of ~1.7e3 has single positions near 2e-4 (seen on
   a DAgger student: 0.0059 at one position of 172, the text's median 1e-5, at scale 33),
   hence the second, looser bound for one position. Beyond either is an error (a layout
   bug gives differences of order 1 at most positions).
3. **Action agreement** (``action_agreement``): for each quant, the fraction of held-out
   states on which the GGUF's greedy action (no grammar) equals the HF student's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.prompt import END_TOKEN, SPECIAL_TOKENS, parse_completion

log = logging.getLogger(__name__)

LOGIT_RTOL = 1e-4
LOGIT_RTOL_MAX = 1e-3
_GGML_TYPE_F32 = 0  # KV cache type for the parity run

#: Texts that catch tokenizer mismatches the traces may not contain.
PROBE_TEXTS: tuple[str, ...] = (
    "".join(SPECIAL_TOKENS) + "<|user|>\nhello<|end|>\n<|assistant|>\n",
    "digits 0 7 42 123 4567 89012 3.14159 -2e10 1,000,000",
    "unicode: café naïve Zürich 東京 😀 – — “quotes” ±½",
    "double  spaces,   triple   and\ttabs\n\nand  \n  newlines ",
    '{"tool": "calculator", "args": {"expression": "(12 * 3) / 4"}} {"answer": 9}',
    "Thought: I can't see the goal; it's right there.\nAction: move right",
    "   leading spaces and trailing   ",
)


class VerifyError(RuntimeError):
    """A check failed: the GGUF is not the student it was exported from."""


@dataclass
class ParityReport:
    """Numbers of checks (1) and (2)."""

    n_texts: int
    n_tokens: int
    logit_max_abs_diff: float
    logit_scale: float
    logit_tolerance: float
    """The bound on the max difference, relative to the logit scale (``LOGIT_RTOL_MAX``)."""


def check_token_parity(llm: Any, tokenizer: Any, texts: Sequence[str]) -> int:
    """Check (1). Returns the number of tokens compared.

    Raises:
        VerifyError: naming the first text whose ids differ and where.
    """
    n = 0
    for text in texts:
        hf = tokenizer.encode(text, add_special_tokens=False)
        ll = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if hf != ll:
            i = next((k for k, (a, b) in enumerate(zip(hf, ll)) if a != b), min(len(hf), len(ll)))
            raise VerifyError(
                f"token parity failed on {text[:60]!r}: ids differ at position {i} "
                f"(HF {hf[i:i + 5]}, llama.cpp {ll[i:i + 5]}; lengths {len(hf)} vs {len(ll)})"
            )
        n += len(hf)
    return n


def check_logit_parity(llm: Any, model: Any, tokenizer: Any, texts: Sequence[str],
                       rtol: float = LOGIT_RTOL, rtol_max: float = LOGIT_RTOL_MAX) -> tuple[float, float]:
    """Check (2) on a ``Llama(logits_all=True)`` of the F32 GGUF.

    Returns:
        (max abs difference, logit scale max |l_hf|) over all positions of all texts.

    Raises:
        VerifyError: a text's difference at its median position exceeds
        ``rtol * max(1, scale)``, or at any position ``rtol_max * max(1, scale)``.
    """
    import torch

    worst, scale = 0.0, 0.0
    limit = llm.n_ctx()
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False)[:limit]
        if not ids:
            continue
        llm.reset()
        llm.eval(ids)
        ll = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
        with torch.no_grad():
            hf = model(torch.tensor([ids])).logits[0].double().numpy()
        per_pos = np.abs(ll - hf).max(axis=1)
        diff, median = float(per_pos.max()), float(np.median(per_pos))
        s = float(np.abs(hf).max())
        for what, got, tol in (("median", median, rtol), ("max", diff, rtol_max)):
            if got > tol * max(1.0, s):
                raise VerifyError(
                    f"logit parity failed on {text[:60]!r}: {what} |diff| over positions {got:.3g} "
                    f"exceeds {tol:g} x logit scale {max(1.0, s):.3g}"
                )
        worst, scale = max(worst, diff), max(scale, s)
    llm.reset()
    return worst, scale


def hf_greedy_text(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int) -> str:
    """The HF student's greedy completion of ``prompt`` (stops at ``<|end|>``)."""
    import torch

    ids = tokenizer.encode(prompt, add_special_tokens=False)
    end = tokenizer.convert_tokens_to_ids(END_TOKEN)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=end, pad_token_id=tokenizer.pad_token_id or end)
    return tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)


def action_agreement(policy: Any, hf_actions: Sequence[str | None], prompts: Sequence[str],
                     max_new_tokens: int) -> float:
    """Check (3): fraction of ``prompts`` where ``policy.complete`` (a ``GGUFPolicy``) gives
    the same parsed action as the HF student did (``hf_actions``, None: unparseable)."""
    if not prompts:
        return float("nan")
    same = 0
    for prompt, hf_action in zip(prompts, hf_actions, strict=True):
        action = parse_completion(policy.complete(prompt, max_new_tokens))[1]
        same += int(action == hf_action)
    return same / len(prompts)


def verify_f32(gguf_path: str, model: Any, tokenizer: Any, texts: Sequence[str],
               *, n_logit_texts: int = 8, n_threads: int | None = None) -> ParityReport:
    """Checks (1) and (2) on the F32 export (probe texts are always included in (1))."""
    import llama_cpp

    from distill.gguf_writer import read_gguf_info

    read_gguf_info(gguf_path, require_agentkd=True)
    all_texts = [*PROBE_TEXTS, *texts]
    n_ctx = max(512, max(len(tokenizer.encode(t, add_special_tokens=False)) for t in all_texts) + 8)
    n_ctx = min(n_ctx, int(getattr(model.config, "max_position_embeddings", 2048)))
    llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=n_ctx, logits_all=True,
                          type_k=_GGML_TYPE_F32, type_v=_GGML_TYPE_F32,
                          n_threads=n_threads, verbose=False)
    try:
        n_tokens = check_token_parity(llm, tokenizer, all_texts)
        diff, scale = check_logit_parity(llm, model, tokenizer, list(texts[:n_logit_texts]) or list(PROBE_TEXTS))
    finally:
        llm.close()
    log.info("token parity on %d texts (%d tokens); logit max |diff| %.2g at scale %.3g",
             len(all_texts), n_tokens, diff, scale)
    return ParityReport(len(all_texts), n_tokens, diff, scale, LOGIT_RTOL_MAX)
