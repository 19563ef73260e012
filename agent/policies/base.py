"""Helpers shared by the LLM policies: completions to Decisions, top-k conversion, retries."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from agent.prompt import END_TOKEN, EOS_TOKEN, parse_completion
from agent.types import Decision, TopK

log = logging.getLogger(__name__)

T = TypeVar("T")


def decision_from_text(
    text: str,
    *,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    latency_s: float = 0.0,
    top_logprobs: list[TopK] | None = None,
) -> Decision:
    """Parse a completion with ``agent.prompt.parse_completion`` into a Decision.

    An unparseable completion gives ``action=""`` (the env records an invalid step);
    it is never an error of the backend.
    """
    raw = text
    for stop in (END_TOKEN, EOS_TOKEN):
        raw = raw.split(stop, 1)[0]
    rationale, action = parse_completion(raw)
    return Decision(
        rationale=rationale, action=action or "", raw=raw, prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens, latency_s=latency_s, top_logprobs=top_logprobs,
    )


def topk_from_openai(content: Any) -> list[TopK] | None:
    """OpenAI ``logprobs.content`` (a list of {token, logprob, top_logprobs: [...]}) as one
    {token text: log-probability} dict per generated token; None if there are none."""
    if not isinstance(content, list) or not content:
        return None
    out: list[TopK] = []
    for entry in content:
        if not isinstance(entry, dict):
            return None
        top = {str(t["token"]): float(t["logprob"]) for t in entry.get("top_logprobs") or []
               if isinstance(t, dict) and "token" in t and "logprob" in t}
        if "token" in entry and "logprob" in entry:
            top.setdefault(str(entry["token"]), float(entry["logprob"]))
        out.append(top)
    return out


def backoff_delays(max_retries: int, base_s: float, max_s: float) -> list[float]:
    """The waits before retries 1..max_retries: base, 2*base, 4*base, ... capped at max_s."""
    return [min(max_s, base_s * 2**i) for i in range(max_retries)]


def with_retries(
    call: Callable[[], T],
    *,
    retriable: Callable[[BaseException], bool],
    delays: list[float],
    sleep: Callable[[float], None] = time.sleep,
    what: str = "request",
) -> tuple[T | None, int, BaseException | None]:
    """Run ``call``; on a retriable exception wait the next delay and try again.

    Returns:
        ``(result, attempts, None)`` on success, ``(None, attempts, last_error)`` when a
        non-retriable error came or the delays ran out.
    """
    attempts = 0
    while True:
        attempts += 1
        try:
            return call(), attempts, None
        except Exception as e:  # noqa: BLE001 - classified below, never swallowed silently
            if not retriable(e) or attempts > len(delays):
                return None, attempts, e
            wait = delays[attempts - 1]
            log.warning("%s failed (%s: %s); retry %d/%d in %.1f s", what, type(e).__name__,
                        str(e)[:200], attempts, len(delays), wait)
            sleep(wait)
