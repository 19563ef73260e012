"""The ``hf:PATH`` policy: a local transformers causal LM (CPU or CUDA).

    from agent.policies import load_policy
    policy = load_policy("hf:runs/student/best")

Loads with ``local_files_only=True`` (nothing is downloaded). The prompt variant comes from
the directory's ``agentkd.json`` (``distill.student.read_meta``): agentkd students are fed
``agent.prompt.chat_text``; a plain checkpoint without ``agentkd.json`` uses the ``full``
variant and its tokenizer's own chat template. Generation is greedy (temperature 0) or
sampled with a seed, stops at ``<|end|>``/EOS or once the ``Action:`` line is complete, and
records token counts, latency and (``sampling.top_logprobs > 0``) per-token top-k
log-probabilities. ``logits(prompt, completion)`` gives the full next-token logits, for
distillation.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from agent.policies.base import decision_from_text
from agent.prompt import END_TOKEN, EOS_TOKEN, chat_text, check_model_format, check_variant, render_messages
from agent.types import Context, Decision, Sampling, TopK

log = logging.getLogger(__name__)

_ACTION_SEP = "\nAction:"


def _read_meta(path: Path) -> dict[str, Any]:
    from distill.student import read_meta

    return read_meta(path)


class _StopAfterAction:
    """Stops generation once the decoded completion holds a finished ``Action:`` line."""

    def __init__(self, tokenizer: Any, prompt_len: int) -> None:
        self.tokenizer, self.prompt_len = tokenizer, prompt_len

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        text = self.tokenizer.decode(input_ids[0, self.prompt_len:], skip_special_tokens=False)
        i = text.find(_ACTION_SEP)
        done = i >= 0 and "\n" in text[i + len(_ACTION_SEP):]
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class HFPolicy:
    """A policy backed by a local transformers causal LM (see the module docstring).

    Args:
        path: a local model directory (config.json, weights, tokenizer).
        sampling: temperature, max tokens, seed, top log-probs.
        device: ``"cpu"``, ``"cuda"``... (default: CUDA when available).
        n_threads: torch CPU threads (None: leave torch's setting).
        spec: the spec string to record (default ``hf:PATH``).

    Raises:
        ValueError: ``path`` is not a directory holding a causal LM and its tokenizer.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sampling: Sampling | None = None,
        device: str | None = None,
        n_threads: int | None = None,
        spec: str | None = None,
    ) -> None:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        p = Path(path)
        self.path = p
        self.spec = spec or f"hf:{path}"
        self.sampling = sampling or Sampling()
        if not (p / "config.json").is_file():
            raise ValueError(f"{self.spec}: expected a model directory with config.json, "
                             f"found {'a directory without it' if p.is_dir() else 'no directory'}")
        try:
            config = AutoConfig.from_pretrained(p, local_files_only=True)
        except Exception as e:  # noqa: BLE001 - any failure means "not a checkpoint"
            raise ValueError(f"{self.spec}: cannot read config.json ({str(e).splitlines()[0]})") from None
        if n_threads:
            torch.set_num_threads(n_threads)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            self.model = AutoModelForCausalLM.from_pretrained(p, local_files_only=True)
        except ValueError:
            raise ValueError(f"{self.spec}: model type {config.model_type!r} is not a causal LM "
                             "(expected e.g. a Llama checkpoint)") from None
        except OSError as e:
            raise ValueError(f"{self.spec}: cannot load its weights ({str(e).splitlines()[0]})") from None
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(p, local_files_only=True)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{self.spec}: cannot load its tokenizer ({str(e).splitlines()[0]})") from None
        self.model.to(self.device).eval()
        self.meta = _read_meta(p)
        self.is_agentkd = bool(self.meta)
        self.prompt_variant = check_variant(self.meta.get("prompt_variant", "full"))
        check_model_format(self.meta.get("prompt_format"), self.spec, self.prompt_variant)
        if not self.is_agentkd and not getattr(self.tokenizer, "chat_template", None):
            log.warning("%s: no agentkd.json and no chat template; using agentkd's chat text", self.spec)
        self._stop_ids = sorted({i for i in (self.tokenizer.convert_tokens_to_ids(t) for t in (END_TOKEN, EOS_TOKEN))
                                 if isinstance(i, int) and i != self.tokenizer.unk_token_id}
                                | ({self.tokenizer.eos_token_id} if self.tokenizer.eos_token_id is not None else set()))
        self._calls = 0

    # ------------------------------------------------------------------ prompt
    def prompt_text(self, context: Context) -> str:
        """The exact text fed to the model for ``context``."""
        messages = render_messages(context, self.prompt_variant)
        if self.is_agentkd or not getattr(self.tokenizer, "chat_template", None):
            return chat_text(messages)
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _encode(self, text: str) -> torch.Tensor:
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        return ids.to(self.device)

    # ------------------------------------------------------------------ policy
    def reset(self, env: Any) -> None:
        """Restart the sampling seed sequence, so an episode is reproducible on its own."""
        self._calls = 0

    @torch.no_grad()
    def act(self, context: Context) -> Decision:
        from transformers import StoppingCriteriaList

        s = self.sampling
        t0 = time.perf_counter()
        ids = self._encode(self.prompt_text(context))
        n_prompt = ids.shape[1]
        kw: dict[str, Any] = {"do_sample": False}
        if s.temperature > 0:
            torch.manual_seed(s.seed + self._calls)
            kw = {"do_sample": True, "temperature": s.temperature, "top_k": 0, "top_p": 1.0}
        self._calls += 1
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else (self._stop_ids or [0])[0]
        out = self.model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=s.max_tokens,
            eos_token_id=self._stop_ids or None, pad_token_id=pad,
            stopping_criteria=StoppingCriteriaList([_StopAfterAction(self.tokenizer, n_prompt)]),
            return_dict_in_generate=True, output_logits=s.top_logprobs > 0, **kw,
        )
        new = out.sequences[0, n_prompt:].tolist()
        while new and new[-1] in self._stop_ids:
            new.pop()
        text = self.tokenizer.decode(new, skip_special_tokens=False)
        tops = self._top_logprobs(out.logits, len(new)) if s.top_logprobs > 0 else None
        return decision_from_text(text, prompt_tokens=n_prompt, completion_tokens=len(new),
                                  latency_s=time.perf_counter() - t0, top_logprobs=tops)

    def _top_logprobs(self, logits: tuple[torch.Tensor, ...], n: int) -> list[TopK]:
        k = self.sampling.top_logprobs
        tops: list[TopK] = []
        for step_logits in logits[:n]:
            lp = torch.log_softmax(step_logits[0].float(), dim=-1)
            values, idx = lp.topk(min(k, lp.shape[-1]))
            top: TopK = {}
            for v, i in zip(values.tolist(), idx.tolist()):
                # Byte pieces of one character decode alike; keep the likeliest of them.
                top.setdefault(self.tokenizer.decode([int(i)], skip_special_tokens=False), float(v))
            tops.append(top)
        return tops

    @torch.no_grad()
    def logits(self, prompt: str, completion: str = "") -> torch.Tensor:
        """Next-token logits at every position of ``prompt + completion``: a float tensor
        of shape (tokens, vocab) on the CPU (row t predicts token t+1)."""
        ids = self._encode(prompt + completion)
        return self.model(input_ids=ids).logits[0].float().cpu()
