"""The GGUF student as a LangChain chat model; the README example runs exactly as written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    """The python block of the README's LangChain section, as a user would copy it."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The student inside a LangChain program"):]
    block = section[section.index("```python\n") + len("```python\n"):]
    return block[: block.index("```")]


@pytest.mark.slow
def test_readme_example_runs(tiny_gguf, capsys):
    code = readme_example()
    assert code.count("MODEL_PATH = ") == 1  # the one line a user edits
    code = code.replace("MODEL_PATH = ", f"MODEL_PATH = {str(tiny_gguf)!r} or ", 1)
    exec(compile(code, "README example", "exec"), {})  # noqa: S102
    out = capsys.readouterr().out
    assert "success:" in out


def test_plain_invoke_and_tool_calls(tiny_gguf):
    from agent.chat_model import AgentKDChat

    llm = AgentKDChat(model_path=str(tiny_gguf), max_tokens=12)
    reply = llm.invoke([("system", "Walk to G."), ("human", "SFFF")])
    assert isinstance(reply, AIMessage) and isinstance(reply.content, str)
    calc = {"type": "function", "function": {"name": "calculator", "description": "Evaluate.",
            "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                           "required": ["expression"]}}}
    agent = llm.bind_tools([calc])
    for _ in range(3):
        reply = agent.invoke([("human", "What is 12*3?")])
        action = json.loads(reply.content.split("\nAction: ", 1)[1])
        if "tool" in action:
            assert reply.tool_calls[0]["name"] == "calculator"
            assert reply.tool_calls[0]["args"] == action["args"]
        else:
            assert reply.tool_calls == [] and set(action) == {"answer"}
