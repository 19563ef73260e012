"""Policies: who decides. ``load_policy(spec)`` builds one from a spec string.

    from agent.policies import load_policy
    load_policy("expert")                                   # the env's planner
    load_policy("openai:gpt-4o-mini", base_url="http://127.0.0.1:8000/v1")
    load_policy("gguf:runs/export/student-q8_0.gguf")       # llama.cpp
    load_policy("hf:runs/student/best")                     # transformers

A bare path ending in ``.gguf`` means ``gguf:PATH`` and a bare directory ``hf:PATH``.
Backends are imported only when asked for, so ``expert`` needs no model libraries.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from agent.types import Policy, Sampling

log = logging.getLogger(__name__)

SPEC_FORMS = ("expert", "openai:MODEL", "gguf:PATH", "hf:PATH")


def _bad_spec(spec: str, why: str) -> ValueError:
    return ValueError(f"policy spec {spec!r}: {why}; expected one of: {', '.join(SPEC_FORMS)} "
                      "(or a bare path to a .gguf file or a model directory)")


def normalize_spec(spec: str) -> str:
    """``spec`` in its canonical ``kind:arg`` form (bare paths resolved to gguf:/hf:)."""
    s = spec.strip()
    if s == "expert":
        return s
    kind, sep, arg = s.partition(":")
    if sep and kind in ("openai", "gguf", "hf"):
        if not arg.strip():
            raise _bad_spec(spec, f"'{kind}:' needs a {'model name' if kind == 'openai' else 'path'}")
        return f"{kind}:{arg.strip()}"
    if s.endswith(".gguf"):
        return f"gguf:{s}"
    if s and Path(s).is_dir():
        return f"hf:{s}"
    raise _bad_spec(spec, "not a known form")


def load_policy(
    spec: str,
    *,
    sampling: Sampling | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    n_threads: int | None = None,
    **kw: Any,
) -> Policy:
    """Build the policy named by ``spec``.

    Args:
        spec: ``expert`` | ``openai:MODEL`` | ``gguf:PATH`` | ``hf:PATH``.
        sampling: temperature, max tokens, seed, top log-probs (LLM policies).
        base_url: OpenAI-compatible endpoint (``openai:``; default ``OPENAI_BASE_URL``).
        api_key: its key (``openai:``; default ``OPENAI_API_KEY``).
        n_threads: CPU threads of local models (``gguf:``; ``hf:`` sets torch's threads).
        **kw: backend options (e.g. ``prompt_variant``/``timeout_s`` for ``openai:``,
            ``use_grammar``/``n_ctx`` for ``gguf:``, ``device`` for ``hf:``).
            ``prompt_variant`` is ignored by the other backends, whose variant comes from
            their own metadata.

    Raises:
        ValueError: a spec of no known form (the message lists the valid forms), or a
            model path that does not hold a model.
    """
    canonical = normalize_spec(spec)
    kind, _, arg = canonical.partition(":")
    if kind != "openai" and kw.pop("prompt_variant", None) is not None:
        log.debug("%s: prompt_variant ignored (it comes from the model's metadata)", canonical)
    if kind == "expert":
        from agent.policies.expert import ExpertPolicy

        return ExpertPolicy()
    if kind == "openai":
        from agent.policies.openai_api import OpenAIPolicy

        return OpenAIPolicy(arg, sampling=sampling, base_url=base_url, api_key=api_key, spec=canonical, **kw)
    path = os.path.expanduser(arg)
    if kind == "gguf":
        from agent.policies.gguf import GGUFPolicy

        if not Path(path).is_file():
            raise ValueError(f"policy spec {spec!r}: no GGUF file at {path!r}")
        return GGUFPolicy(path, sampling=sampling, n_threads=n_threads, spec=canonical, **kw)
    from agent.policies.hf import HFPolicy

    return HFPolicy(path, sampling=sampling, n_threads=n_threads, spec=canonical, **kw)


__all__ = ["SPEC_FORMS", "load_policy", "normalize_spec"]
