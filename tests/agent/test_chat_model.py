"""The GGUF student as a LangChain chat model; the README example runs exactly as written."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage

README_EXAMPLE = '''
import envs
from agent.chat_model import AgentKDChat
from agent.prompt import make_context, parse_completion, render_messages

env = envs.make("tools-single")
llm = AgentKDChat(model_path=MODEL_PATH, max_tokens=48)
agent = llm.bind_tools(env.tool_schemas)          # the Action line is a legal tool call or an answer

obs, info = env.reset(seed=1)
history, done = [], False
while not done:
    ctx = make_context(env, obs, info, history, llm.prompt_variant)
    reply = agent.invoke(render_messages(ctx, llm.prompt_variant))   # an AIMessage
    thought, action = parse_completion(reply.content)
    print(thought, "->", action, reply.tool_calls)
    history.append((obs, action))
    obs, reward, terminated, truncated, info = env.step(action)
    done = terminated or truncated
print("success:", info["success"])
'''


@pytest.mark.slow
def test_readme_example_runs(tiny_gguf, capsys):
    exec(compile(README_EXAMPLE, "README example", "exec"), {"MODEL_PATH": str(tiny_gguf)})  # noqa: S102
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
