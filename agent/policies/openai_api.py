"""The ``openai:MODEL`` policy: any OpenAI-compatible chat endpoint through LangChain.

    agentkd collect --teacher openai:gpt-4o-mini --env taxi --episodes 50 --concurrency 8
    agentkd collect --teacher openai:qwen --base-url http://127.0.0.1:8000/v1 --env tools-single

OpenAI, vLLM, Ollama and llama.cpp's server all speak this protocol. The policy:

* prompts with ``agent.prompt`` (variant ``full`` unless told otherwise) and parses the
  ``Thought:``/``Action:`` completion; in tool envs it also binds the env's tools plus an
  ``answer`` function (native tool calling) and maps a returned call back to the env's
  action JSON, falling back to the text when the server returns no tool call;
* requests top-k log-probabilities when ``sampling.top_logprobs > 0`` and records them
  when the endpoint returns them (llama.cpp's server and vLLM do);
* has an explicit timeout and its own bounded retry loop (exponential backoff) on 429,
  5xx, connection errors and timeouts; the client's own retries are off, so the counts
  are ours. When retries run out the Decision carries ``error`` and the episode is
  recorded as failed; the run goes on.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from agent.policies.base import backoff_delays, decision_from_text, topk_from_openai, with_retries
from agent.prompt import check_variant, parse_completion, render_completion, render_messages
from agent.types import Context, Decision, Sampling

log = logging.getLogger(__name__)

#: Tokens kept for a tool call's JSON when the grammar caps the rationale (see _thought_cap).
TOOL_ACTION_TOKENS = 96

#: The function a tool-calling model uses to give its final answer.
ANSWER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "answer",
        "description": "Give the final answer to the question and end the task.",
        "parameters": {
            "type": "object",
            "properties": {"answer": {"type": ["number", "string"], "description": "The final answer."}},
            "required": ["answer"],
        },
    },
}


def is_retriable(exc: BaseException) -> bool:
    """429, 5xx, connection errors and timeouts are worth retrying; other errors are not."""
    import openai

    if isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError)):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    return False


def describe_error(exc: BaseException) -> str:
    """One line naming an API failure: ``HTTP 500: message``, ``timeout: ...``,
    ``connection error: ...`` or the exception's type and message."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        return f"HTTP {exc.status_code}: {str(body.get('message') or exc.message)[:300]}"
    if isinstance(exc, openai.APITimeoutError):  # before its base class, APIConnectionError
        return f"timeout: {str(exc)[:300]}"
    if isinstance(exc, openai.APIConnectionError):
        return f"connection error: {str(exc)[:300]}"
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def _to_langchain(messages: list[dict[str, str]]) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    return [kinds[m["role"]](content=m["content"]) for m in messages]


def tool_call_action(call: dict[str, Any]) -> str:
    """A native tool call ``{name, args}`` as the env's action JSON."""
    name, args = call.get("name", ""), call.get("args") or {}
    if name == "answer":
        return json.dumps({"answer": args.get("answer")})
    return json.dumps({"tool": name, "args": args})


class OpenAIPolicy:
    """A policy backed by an OpenAI-compatible chat endpoint (see the module docstring).

    Args:
        model: the model name the endpoint serves.
        sampling: temperature, max tokens, seed, top log-probs.
        base_url: endpoint (default ``OPENAI_BASE_URL``, else OpenAI's).
        api_key: key (default ``OPENAI_API_KEY``; a placeholder for a local endpoint).
        prompt_variant: ``full`` (LLM teachers) or ``compact``.
        timeout_s: per-request timeout.
        max_retries: retries after the first attempt on retriable errors.
        backoff_s: first wait; doubled each retry, capped at ``max_backoff_s``.
        max_backoff_s: longest wait between retries.
        native_tools: in tool envs, bind the env's tools (native tool calling).
        grammar: send each decision's GBNF grammar (``agent.grammar``) in the request's
            ``grammar`` field, which llama.cpp's servers honour: only legal actions.
        copy_args: in that grammar, a tool argument marked ``x-copy`` may only be a span of
            the episode's text (as for ``gguf:``).
        spec: the spec string to record (default ``openai:MODEL``).
        sleep: how to wait between retries (tests pass a recorder).
    """

    def __init__(
        self,
        model: str,
        *,
        sampling: Sampling | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        prompt_variant: str = "full",
        timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        native_tools: bool = True,
        grammar: bool = False,
        copy_args: bool = True,
        spec: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        n_threads: int | None = None,
    ) -> None:
        from langchain_openai import ChatOpenAI

        if max_retries < 0 or timeout_s <= 0:
            raise ValueError(f"openai:{model}: expected max_retries >= 0 and timeout_s > 0, "
                             f"got {max_retries} and {timeout_s}")
        self.model = model
        self.sampling = sampling or Sampling()
        self.spec = spec or f"openai:{model}"
        self.prompt_variant = check_variant(prompt_variant)
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if not self.base_url:
                raise ValueError(f"{self.spec}: no API key; pass --api-key or set OPENAI_API_KEY "
                                 "(or --base-url for a local endpoint that needs none)")
            key = "not-needed"  # local servers (llama.cpp, vLLM, Ollama) ignore it
        self.native_tools = native_tools
        self.grammar = grammar
        self.copy_args = copy_args
        self.delays = backoff_delays(max_retries, backoff_s, max_backoff_s)
        self._sleep = sleep
        s = self.sampling
        extra: dict[str, Any] = {}
        if self.base_url:
            # ChatOpenAI sends max_completion_tokens, which some servers (llama.cpp's) ignore.
            extra["max_tokens"] = s.max_tokens
        self._extra = extra
        self.llm = ChatOpenAI(
            model=model, base_url=self.base_url, api_key=key, timeout=timeout_s, max_retries=0,
            temperature=s.temperature, max_tokens=s.max_tokens, seed=s.seed,
            logprobs=True if s.top_logprobs > 0 else None,
            top_logprobs=s.top_logprobs if s.top_logprobs > 0 else None,
            extra_body=extra or None, use_responses_api=False,
        )
        self.last_attempts = 0

    def reset(self, env: Any) -> None:
        """Nothing to do per episode (the endpoint holds no state of ours)."""

    def _runnable(self, context: Context) -> Any:
        if self.grammar:
            from agent.grammar import grammar_for

            body = {**self._extra, "grammar": grammar_for(context, self._thought_cap(context),
                                                          copy_args=self.copy_args)}
            return self.llm.bind(extra_body=body)
        if context.tools and self.native_tools:
            from agent.grammar import strip_copy_marks

            return self.llm.bind_tools([*strip_copy_marks(context.tools), ANSWER_TOOL])
        return self.llm

    def _thought_cap(self, context: Context) -> int:
        """Rationale characters the grammar allows, so that the action always fits the token
        budget: a token covers at least one character, so a thought of at most
        ``max_tokens - reserve`` characters leaves ``reserve`` tokens for the separator and
        the action. (A server cannot be asked to finish the action after its budget runs
        out, as the local gguf: policy does.)"""
        if context.tools or not context.legal_actions:
            reserve = 8 + TOOL_ACTION_TOKENS
        else:
            reserve = 8 + max(len(a) for a in context.legal_actions)
        return max(0, min(self.sampling.max_rationale_chars, self.sampling.max_tokens - reserve))

    def act(self, context: Context) -> Decision:
        messages = _to_langchain(render_messages(context, self.prompt_variant))
        runnable = self._runnable(context)
        t0 = time.perf_counter()
        msg, attempts, err = with_retries(lambda: runnable.invoke(messages), retriable=is_retriable,
                                          delays=self.delays, sleep=self._sleep, what=self.spec)
        latency = time.perf_counter() - t0
        self.last_attempts = attempts
        if err is not None:
            kind = "gave up after" if is_retriable(err) else "failed on"
            return Decision(rationale="", action="", latency_s=latency,
                            error=f"{self.spec}: {kind} {attempts} attempt(s): {describe_error(err)}")
        usage = getattr(msg, "usage_metadata", None) or {}
        meta = getattr(msg, "response_metadata", None) or {}
        logprobs = meta.get("logprobs") or {}
        tops = topk_from_openai(logprobs.get("content")) if self.sampling.top_logprobs > 0 else None
        text = msg.content if isinstance(msg.content, str) else str(msg.content)
        counts = {"prompt_tokens": int(usage.get("input_tokens", 0)),
                  "completion_tokens": int(usage.get("output_tokens", 0))}
        calls = getattr(msg, "tool_calls", None) or []
        if calls:
            if len(calls) > 1:
                log.info("%s: %d tool calls in one turn; the env takes one a step, using the first",
                         self.spec, len(calls))
            rationale = parse_completion(text)[0] if text.strip() else ""
            action = tool_call_action(calls[0])
            return Decision(rationale=rationale, action=action, raw=render_completion(rationale, action),
                            latency_s=latency, top_logprobs=tops, **counts)
        return decision_from_text(text, latency_s=latency, top_logprobs=tops, **counts)
