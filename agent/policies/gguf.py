"""The ``gguf:PATH`` policy: a local GGUF model run by llama.cpp (llama-cpp-python).

    from agent.policies.gguf import GGUFPolicy
    policy = GGUFPolicy("runs/gguf/student-q8_0.gguf", on_token=lambda t: print(t, end=""))

* The file's header is checked with ``gguf.GGUFReader`` before llama.cpp opens it: a file
  that is not GGUF or is truncated gives one clear error line (``GGUFFileError``).
* The prompt is agent.prompt's: ``chat_text`` for agentkd students (GGUF key
  ``agentkd.prompt_variant`` gives the variant), the GGUF's own chat template (jinja2) with
  the ``full`` variant for any other model.
* A GBNF grammar (agent.grammar) lets the model emit only ``Thought: <capped one-line
  rationale>`` then ``Action: <a legal action>``; grammars are cached by their legal-action
  set / tool schemas. Greedy decisions outside tool-use envs are decoded without
  it and checked after (``agent.grammar.in_grammar``): the same completion at a fraction of
  the cost per token, with a constrained second pass only for a completion outside it.
  While most of the last checked decisions fell outside the grammar (a weak student), each
  check costs two decodes, so decisions are decoded under the grammar at once, with one in
  ``RECHECK_EVERY`` still checked to notice when that changes. When the token budget runs
  out inside the rationale, the action is completed under the action-only grammar, so
  every action emitted is legal.
* Consecutive decisions reuse llama.cpp's KV cache for their shared prompt prefix
  (``Llama.generate`` keeps its evaluated tokens and decodes only the new suffix);
  ``last_reused_tokens`` says how many prompt tokens the last decision did not re-evaluate.
* Tokens are streamed to ``on_token``; top-k log-probabilities of the raw model (before
  grammar and temperature) are recorded when ``sampling.top_logprobs > 0``.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agent.grammar import copy_source, grammar_for, in_grammar
from agent.prompt import chat_text, check_model_format, parse_completion, render_messages
from agent.types import Context, Decision, Sampling, TopK
from distill.gguf_writer import GGUFFileError, read_gguf_info

log = logging.getLogger(__name__)

#: Checked decisions remembered to judge whether checking pays (see the module docstring).
CHECK_WINDOW = 16
#: While checking does not pay, one decision in this many is still checked.
RECHECK_EVERY = 8

#: Compiled grammars kept (oldest dropped first): tool contexts with copied arguments have
#: one a decision.
MAX_CACHED_GRAMMARS = 64

#: Token budget for finishing an action after the rationale used up ``max_tokens``.
ACTION_TOKENS = 256
_ACTION_SEP = "\nAction: "
#: First buffer size for a token's bytes (grown to what llama.cpp asks for).
_PIECE_BYTES = 64


class GGUFPolicy:
    """A policy backed by a GGUF model (see the module docstring).

    Args:
        path: the .gguf file.
        sampling: temperature, max tokens, seed, top log-probs, rationale cap.
        n_threads: llama.cpp threads (None: its default).
        n_ctx: context window in tokens.
        use_grammar: constrain completions with the GBNF grammar of each context.
        reuse_prefix: keep the KV cache between decisions (off: re-evaluate every prompt).
        check_grammar: greedy decisions outside tool-use envs are decoded without
            the grammar and checked against it afterwards (the same completion; a second,
            constrained pass only where the check fails, counted in ``grammar_fallbacks``);
            off: every decision is decoded under the grammar. While more than half of the
            last ``CHECK_WINDOW`` checked decisions (at least 8) fell outside it, only one
            in ``RECHECK_EVERY`` is checked; the others are decoded under it at once (the
            same decision, without the wasted first pass).
        copy_args: under the grammar, a tool argument marked ``x-copy`` (a name, a date, an
            amount) may only be a span of the episode's text, a number only as the text
            spells it (``agent.grammar.copy_spans``); off: anything its schema allows.
        spec: the spec string to record (default ``gguf:PATH``).
        on_token: called with each piece of generated text as it is produced.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sampling: Sampling | None = None,
        n_threads: int | None = None,
        n_ctx: int = 2048,
        use_grammar: bool = True,
        reuse_prefix: bool = True,
        check_grammar: bool = True,
        copy_args: bool = True,
        spec: str | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> None:
        import llama_cpp

        self.info = read_gguf_info(path)
        self.spec = spec or f"gguf:{path}"
        self.prompt_variant = self.info.prompt_variant or "full"
        check_model_format(self.info.prompt_format, self.spec, self.prompt_variant)
        self.path = self.info.path
        self.sampling = sampling or Sampling()
        self.use_grammar = use_grammar
        self.reuse_prefix = reuse_prefix
        self.check_grammar = check_grammar
        self.copy_args = copy_args
        self.grammar_fallbacks = 0
        self._checked_outside: deque[bool] = deque(maxlen=CHECK_WINDOW)  # last checked decisions
        self._greedy_decisions = 0
        self.on_token = on_token
        self.last_reused_tokens = 0
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(self.path), n_ctx=n_ctx, n_threads=n_threads,
                # Prompts are decoded as batches: without this llama-cpp-python gives them
                # every core whatever n_threads says, and that idle second pool also slows
                # the single-token steps on a busy machine (~100x at n_threads=1, 2 cores).
                n_threads_batch=n_threads,
                seed=self.sampling.seed, verbose=False,
            )
        except (ValueError, RuntimeError) as e:
            raise GGUFFileError(f"{self.path}: llama.cpp could not load it ({e})") from None
        self._vocab = self.llm._model.vocab
        self._grammars: dict[tuple[Any, ...], Any] = {}
        self._pieces: dict[int, bytes] = {}
        self._last_text_exact = True
        self._formatter = None if self.info.is_agentkd else self._chat_formatter()

    # ------------------------------------------------------------------ prompt
    def _chat_formatter(self) -> Any:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.info.chat_template
        if not template:
            return None
        def piece(tok: int) -> str:
            return self.llm.detokenize([tok], special=True).decode("utf-8", "replace") if tok >= 0 else ""
        return Jinja2ChatFormatter(template=template, eos_token=piece(self.llm.token_eos()),
                                   bos_token=piece(self.llm.token_bos()))

    def prompt_text(self, context: Context) -> str:
        """The exact text fed to the model for ``context``."""
        return self.format_messages(render_messages(context, self.prompt_variant))

    def format_messages(self, messages: list[dict[str, str]]) -> str:
        """Chat messages as model text: ``chat_text`` for agentkd students, else the GGUF's
        chat template (jinja2)."""
        if self._formatter is None:
            return chat_text(messages)
        return self._formatter(messages=messages).prompt

    def _grammar(self, context: Context, action_only: bool) -> Any:
        import llama_cpp

        tools = json.dumps(context.tools, sort_keys=True) if context.tools else None
        # the copied spans follow from the episode's text: key by it, split it only on a miss
        source = copy_source(context) if self.copy_args else None
        key = (tuple(context.legal_actions), tools, self.sampling.max_rationale_chars, action_only, source)
        if key not in self._grammars:
            if len(self._grammars) >= MAX_CACHED_GRAMMARS:  # copied spans differ every episode
                self._grammars.pop(next(iter(self._grammars)))
            gbnf = grammar_for(context, self.sampling.max_rationale_chars, action_only=action_only,
                               copy_args=self.copy_args)
            self._grammars[key] = llama_cpp.LlamaGrammar.from_string(gbnf, verbose=False)
        return self._grammars[key]

    # ------------------------------------------------------------------ policy
    def reset(self, env: Any) -> None:
        """Start an episode; the KV cache is kept (its prefix is reused) unless told not to."""
        if not self.reuse_prefix:
            self.llm.reset()

    def act(self, context: Context) -> Decision:
        return self.act_on_prompt(context, self.prompt_text(context))

    def act_on_prompt(self, context: Context, prompt: str) -> Decision:
        """Decide on ``prompt`` text (normally ``prompt_text(context)``) under the grammar of
        ``context``'s legal actions / tools."""
        t0 = time.perf_counter()
        tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=self._add_bos(prompt), special=True)
        budget = self.sampling.max_tokens
        if len(tokens) + budget + (ACTION_TOKENS if self.use_grammar else 0) > self.llm.n_ctx():
            return Decision(rationale="", action="", prompt_tokens=len(tokens),
                            latency_s=time.perf_counter() - t0,
                            error=f"prompt of {len(tokens)} tokens + {budget} to generate does not "
                                  f"fit n_ctx={self.llm.n_ctx()} of {self.path.name}")
        if not self.reuse_prefix:
            self.llm.reset()
        self.last_reused_tokens = _common_prefix(self.llm._input_ids[: self.llm.n_tokens], tokens)
        if self.use_grammar and self.check_grammar and self.sampling.temperature == 0 and not context.tools \
                and self._check_first():
            # Greedy: decode without the grammar and check the result against it. A sentence
            # of the grammar is what the constrained decoder would have written (every argmax
            # was allowed), so only a completion outside it pays for a second, constrained pass.
            text, n_gen, tops, _, stop = self._generate(tokens, budget, None)
            inside = (stop in ("eog", "line") and self._last_text_exact
                      and in_grammar(text, context, self.sampling.max_rationale_chars, at_end_token=stop == "eog"))
            self._checked_outside.append(not inside)
            if inside:
                return self._decision(text, tokens, n_gen, tops, t0)
            self.grammar_fallbacks += 1
            self._stream("\n[outside the grammar: decoding again under it]\n")
            # Back to the state an eager decision starts from: the prompt's suffix is then
            # evaluated as one batch again (a cached prompt re-evaluates its last token alone,
            # whose logits can differ in the last bits).
            # (never the whole prompt: llama-cpp-python would then sample from stale logits)
            self.llm.n_tokens = min(self.last_reused_tokens, len(tokens) - 1)
        grammar = self._grammar(context, False) if self.use_grammar else None
        text, n_gen, tops, done, _ = self._generate(tokens, budget, grammar)
        if self.use_grammar and not done:
            # The budget ran out before the grammar was complete: keep the rationale and
            # finish with a legal action (bounded by ACTION_TOKENS).
            # The grammar keeps the thought on one line, so its first line break starts
            # the separator; cut there so a half-written "\nAction:" is not kept.
            thought = text.split("\n", 1)[0]
            streamed = text[len(thought):]  # a prefix of the separator, by the grammar
            if self.on_token is not None and _ACTION_SEP.startswith(streamed):
                self.on_token(_ACTION_SEP[len(streamed):])
            text = thought + _ACTION_SEP
            more = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
            tail, n2, tops2, _, _ = self._generate(tokens + more, ACTION_TOKENS,
                                                   self._grammar(context, True))
            text, n_gen, tops = text + tail, n_gen + n2, tops + tops2
        return self._decision(text, tokens, n_gen, tops, t0)

    def _check_first(self) -> bool:
        """Whether this greedy decision is decoded without the grammar and checked after:
        yes unless most recent checks failed (then one in ``RECHECK_EVERY``)."""
        self._greedy_decisions += 1
        recent = self._checked_outside
        if len(recent) >= RECHECK_EVERY and 2 * sum(recent) > len(recent):
            return self._greedy_decisions % RECHECK_EVERY == 0
        return True

    def _decision(self, text: str, tokens: list[int], n_gen: int, tops: list[TopK], t0: float) -> Decision:
        rationale, action = parse_completion(text)
        return Decision(
            rationale=rationale,
            action=action or "",
            raw=text,
            prompt_tokens=len(tokens),
            completion_tokens=n_gen,
            latency_s=time.perf_counter() - t0,
            top_logprobs=tops if self.sampling.top_logprobs > 0 else None,
        )

    def complete(self, prompt: str, max_tokens: int | None = None) -> str:
        """Greedy/sampled completion of raw ``prompt`` text without a grammar, ending at the
        end-of-turn token or after the ``Action:`` line (the export's agreement check)."""
        tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=self._add_bos(prompt), special=True)
        return self._generate(tokens, max_tokens or self.sampling.max_tokens, None)[0]

    def _add_bos(self, prompt: str) -> bool:
        if self._formatter is None:
            return False  # agentkd students never take a BOS
        bos = self._formatter.bos_token
        return not (bos and prompt.startswith(bos))

    def _generate(self, tokens: list[int], max_tokens: int, grammar: Any) -> tuple[str, int, list[TopK], bool, str]:
        """Sample up to ``max_tokens``; returns (text, n generated, top-k, ended at EOG or after
        the action line, how it stopped: ``eog``, ``line`` (a token that starts with the line
        break after the action, not kept), ``cut`` (a token with the line break inside) or
        ``budget``)."""
        import llama_cpp

        s = self.sampling
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        strict = codecs.getincrementaldecoder("utf-8")()
        self._last_text_exact = True  # every piece non-empty, NUL-free at its start, valid UTF-8
        pieces: list[str] = []
        tops: list[TopK] = []
        n, stop, so_far = 0, "budget", ""  # so_far: the pieces joined (kept, not re-joined per token)
        if s.temperature > 0:  # each decision's sampler starts from the seed it is given
            self.llm.set_seed(s.seed)
        gen = self.llm.generate(tokens, temp=s.temperature, top_k=0, top_p=1.0, min_p=0.0,
                                repeat_penalty=1.0, grammar=grammar)
        for tok in gen:
            if llama_cpp.llama_vocab_is_eog(self._vocab, tok):
                stop = "eog"
                break
            n += 1
            if s.top_logprobs > 0:
                tops.append(self._top_logprobs(s.top_logprobs))
            raw = self._piece(tok)
            piece = decoder.decode(raw)
            self._check_bytes(strict, raw)
            before, so_far = so_far, so_far + piece
            pieces.append(piece)
            if grammar is None and _finished_action_line(so_far):
                stop = "line" if _finished_action_line(before + "\n") and piece.startswith("\n") else "cut"
                if stop == "line":  # the line break's token is not part of the decision
                    n, tops, pieces = n - 1, tops[:n - 1], pieces[:-1]
                else:
                    self._stream(piece)
                break
            self._stream(piece)
            if n >= max_tokens:
                break
        gen.close()
        # an unfinished UTF-8 sequence (not kept when it came with the dropped line break)
        tail = "" if stop == "line" else decoder.decode(b"", final=True)
        if stop != "line":
            self._check_bytes(strict, b"", final=True)
        self._stream(tail)
        text = "".join(pieces) + tail
        if grammar is None and _finished_action_line(text):
            text = text[: text.index("\n", text.index(_ACTION_SEP) + len(_ACTION_SEP))]
        return text, n, tops, stop in ("eog", "line", "cut"), stop

    def _piece(self, tok: int) -> bytes:
        """The bytes of ``tok`` (special tokens as their text), cached; a piece longer than
        llama-cpp-python's 32-byte buffer is read whole (its ``detokenize`` drops it)."""
        piece = self._pieces.get(tok)
        if piece is None:
            import ctypes

            import llama_cpp

            size = _PIECE_BYTES
            while True:
                buf = ctypes.create_string_buffer(size)
                n = llama_cpp.llama_token_to_piece(self._vocab, tok, buf, size, 0, True)
                if n >= 0:
                    piece = buf.raw[:n]
                    break
                size = -n
            self._pieces[tok] = piece
        return piece

    def _check_bytes(self, strict: Any, raw: bytes, final: bool = False) -> None:
        """Clear ``_last_text_exact`` where llama.cpp's grammar would see other text than the
        decoded one: an empty piece, one that starts with NUL, or bytes that are not UTF-8."""
        if not final and (not raw or raw[:1] == b"\0"):
            self._last_text_exact = False
        try:
            strict.decode(raw, final=final)
        except UnicodeDecodeError:
            self._last_text_exact = False
            strict.reset()

    def _stream(self, piece: str) -> None:
        if piece and self.on_token is not None:
            self.on_token(piece)

    def _top_logprobs(self, k: int) -> TopK:
        """Top-k log-probabilities of the raw next-token distribution just sampled from."""
        logits = np.ctypeslib.as_array(self.llm._ctx.get_logits_ith(-1), shape=(self.llm.n_vocab(),))
        logits = logits.astype(np.float64)
        lse = float(np.log(np.exp(logits - logits.max()).sum()) + logits.max())
        top = np.argpartition(-logits, min(k, len(logits) - 1))[:k]
        top = top[np.argsort(-logits[top])]
        return {self.llm.detokenize([int(i)], special=True).decode("utf-8", "replace"):
                float(logits[i] - lse) for i in top}

    def close(self) -> None:
        """Free llama.cpp's model and context now (also done when garbage-collected)."""
        self.llm.close()


def _common_prefix(a: Any, b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _finished_action_line(text: str) -> bool:
    i = text.find(_ACTION_SEP)
    return i >= 0 and "\n" in text[i + len(_ACTION_SEP):]


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Header facts of a GGUF (for ``agentkd run`` and reports): variant, format, size."""
    info = read_gguf_info(path)
    return {"path": str(info.path), "prompt_variant": info.prompt_variant or "full",
            "prompt_format": info.prompt_format, "file_type": info.file_type,
            "size_bytes": Path(info.path).stat().st_size, "provenance": info.provenance}
