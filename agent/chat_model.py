"""The GGUF student as a LangChain chat model, so it can drive tasks inside LangChain programs.

    from agent.chat_model import AgentKDChat
    llm = AgentKDChat(model_path="runs/gguf/student-q8_0.gguf")
    reply = llm.invoke([("system", "..."), ("user", "...")])   # AIMessage "Thought: ...\\nAction: ..."

``bind_tools(tools)`` (LangChain tools or OpenAI tool dicts) constrains the ``Action:`` line
with agent.grammar to a JSON call of one of the tools or a final answer, and returns the call
as ``AIMessage.tool_calls`` (the ``{"tool": ..., "args": ...}`` JSON stays in ``content``, so
``agent.prompt.parse_completion(reply.content)`` gives the env action either way).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import PrivateAttr

from agent.prompt import parse_completion
from agent.types import Context, Sampling

_ROLES = {"system": "system", "human": "user", "ai": "assistant", "tool": "user"}


class AgentKDChat(BaseChatModel):
    """A chat model over ``agent.policies.gguf.GGUFPolicy`` (llama.cpp)."""

    model_path: str
    """The .gguf file."""
    temperature: float = 0.0
    max_tokens: int = 160
    max_rationale_chars: int = 400
    n_ctx: int = 2048
    n_threads: int | None = None
    seed: int = 0

    _policy: Any = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "agentkd-gguf"

    @property
    def policy(self) -> Any:
        """The underlying ``GGUFPolicy`` (loaded on first use)."""
        if self._policy is None:
            from agent.policies.gguf import GGUFPolicy

            sampling = Sampling(temperature=self.temperature, max_tokens=self.max_tokens,
                                seed=self.seed, max_rationale_chars=self.max_rationale_chars)
            self._policy = GGUFPolicy(self.model_path, sampling=sampling, n_ctx=self.n_ctx,
                                      n_threads=self.n_threads, spec=f"langchain:gguf:{self.model_path}")
        return self._policy

    @property
    def prompt_variant(self) -> str:
        """The prompt variant the model was trained on (from its GGUF metadata)."""
        return self.policy.prompt_variant

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        """Constrain replies to a call of one of ``tools`` or a final answer."""
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        tools: list[dict[str, Any]] | None = None,
        legal_actions: list[str] | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        policy = self.policy
        chat = [{"role": _ROLES.get(m.type, "user"), "content": str(m.content)} for m in messages]
        prompt = policy.format_messages(chat)
        if tools or legal_actions:
            # A grammar-constrained decision: reuse the policy's act() on a context whose
            # prompt is exactly these messages.
            names = [t["function"]["name"] for t in tools or []]
            ctx = Context(env_id="langchain", instructions="", history=[], observation="",
                          legal_actions=legal_actions or [*names, "answer"], tools=tools)
            decision = policy.act_on_prompt(ctx, prompt)
            text = decision.raw
        else:
            text = policy.complete(prompt)
        if stop:
            for s in stop:
                text = text.split(s, 1)[0]
        message = AIMessage(content=text, tool_calls=_tool_calls(text) if tools else [])
        return ChatResult(generations=[ChatGeneration(message=message)])


def _tool_calls(text: str) -> list[dict[str, Any]]:
    action = parse_completion(text)[1]
    try:
        obj = json.loads(action or "")
    except json.JSONDecodeError:
        return []
    if isinstance(obj, dict) and isinstance(obj.get("tool"), str) and isinstance(obj.get("args"), dict):
        return [{"name": obj["tool"], "args": obj["args"], "id": f"call_{uuid.uuid4().hex[:12]}",
                 "type": "tool_call"}]
    return []
