"""The openai: policy over HTTP on 127.0.0.1: a scripted server for errors, retries,
timeouts, tool calls and log-probabilities, and llama.cpp's real OpenAI-compatible server."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import envs
from agent.episode import run_episode
from agent.policies import load_policy
from agent.policies.openai_api import OpenAIPolicy
from agent.prompt import make_context
from agent.types import Sampling
from tests.llama_server import free_port, serve_gguf


def completion(content: str = "", *, tool_calls: list | None = None, logprobs: list | None = None) -> dict:
    message: dict = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = [
            {"id": f"call_{i}", "type": "function",
             "function": {"name": name, "arguments": json.dumps(args)}}
            for i, (name, args) in enumerate(tool_calls)]
    choice = {"index": 0, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}
    if logprobs is not None:
        choice["logprobs"] = {"content": logprobs}
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [choice], "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}


class Scripted:
    """An OpenAI-like server that answers from a script of (status, body | sleep seconds)."""

    def __init__(self, script: list[tuple]) -> None:
        self.script, self.requests = list(script), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((time.monotonic(), body))
                step = outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                if step[0] == "sleep":
                    time.sleep(step[1])
                    step = (200, completion("Thought: late\nAction: right"))
                status, payload = step
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    servers: list[Scripted] = []

    def start(*script: tuple) -> Scripted:
        servers.append(Scripted(list(script)))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


ERROR_500 = (500, {"error": {"message": "boom", "type": "server_error"}})
ERROR_429 = (429, {"error": {"message": "slow down", "type": "rate_limit"}})


def frozenlake_context(variant: str = "full"):
    env = envs.make("frozenlake-4x4")
    obs, info = env.reset(seed=0)
    return make_context(env, obs, info, [], variant)


def policy(url: str, **kw) -> tuple[OpenAIPolicy, list[float]]:
    waits: list[float] = []
    kw.setdefault("sampling", Sampling(max_tokens=32))
    p = OpenAIPolicy("m", base_url=url, api_key="k", backoff_s=0.5, max_backoff_s=1.5, sleep=waits.append, **kw)
    return p, waits


def test_retries_500s_with_exponential_backoff_then_succeeds(server):
    s = server(ERROR_500, ERROR_500, ERROR_500, (200, completion("Thought: the goal is right of me\nAction: right")))
    p, waits = policy(s.url, max_retries=4)
    d = p.act(frozenlake_context())
    assert d.error is None and d.action == "right" and d.rationale == "the goal is right of me"
    assert len(s.requests) == 4 and p.last_attempts == 4
    assert waits == [0.5, 1.0, 1.5]  # doubled each time, capped at max_backoff_s
    assert (d.prompt_tokens, d.completion_tokens) == (11, 7)
    body = s.requests[-1][1]
    assert body["max_tokens"] == 32 and body["temperature"] == 0.0 and body["messages"][0]["role"] == "system"
    assert "logprobs" not in body  # not asked for unless sampling.top_logprobs > 0


def test_gives_up_after_max_retries_and_the_episode_is_recorded_as_failed(server):
    s = server(ERROR_500)
    p, waits = policy(s.url, max_retries=2)
    ep = run_episode(envs.make("frozenlake-4x4"), p, seed=0)
    assert len(s.requests) == 3 and waits == [0.5, 1.0]
    assert not ep.success and ep.steps == [] and ep.teacher == "openai:m"
    assert ep.error == "openai:m: gave up after 3 attempt(s): HTTP 500: boom"
    assert ep.sampling["max_tokens"] == 32


def test_429_is_retried_but_400_is_not(server):
    s = server(ERROR_429, (200, completion("Thought: t\nAction: down")))
    p, waits = policy(s.url, max_retries=3)
    assert p.act(frozenlake_context()).action == "down" and waits == [0.5]
    s2 = server((400, {"error": {"message": "bad request", "type": "invalid_request_error"}}))
    p2, waits2 = policy(s2.url, max_retries=3)
    d = p2.act(frozenlake_context())
    assert len(s2.requests) == 1 and waits2 == [] and d.error == "openai:m: failed on 1 attempt(s): HTTP 400: bad request"


def test_a_server_slower_than_the_timeout_is_retried_then_fails(server):
    s = server(("sleep", 2.0))
    p, waits = policy(s.url, max_retries=1, timeout_s=0.3)
    d = p.act(frozenlake_context())
    assert len(s.requests) == 2 and waits == [0.5]
    assert d.error.startswith("openai:m: gave up after 2 attempt(s): timeout:")


def test_connection_refused_is_an_error_not_a_crash():
    p, waits = policy(f"http://127.0.0.1:{free_port()}/v1", max_retries=1)
    d = p.act(frozenlake_context())
    assert waits == [0.5] and d.error.startswith("openai:m: gave up after 2 attempt(s): connection error:")


def test_top_logprobs_are_requested_and_stored(server):
    lp = [{"token": "Thought", "logprob": -0.01, "top_logprobs": [{"token": "Thought", "logprob": -0.01},
                                                                   {"token": "Action", "logprob": -4.6}]},
          {"token": ":", "logprob": -0.2, "top_logprobs": [{"token": ":", "logprob": -0.2}]}]
    s = server((200, completion("Thought: x\nAction: up", logprobs=lp)))
    p, _ = policy(s.url, sampling=Sampling(top_logprobs=2))
    d = p.act(frozenlake_context())
    assert s.requests[0][1]["logprobs"] is True and s.requests[0][1]["top_logprobs"] == 2
    assert d.top_logprobs == [{"Thought": -0.01, "Action": -4.6}, {":": -0.2}]


def test_unparseable_completion_is_an_invalid_step_not_an_error(server):
    s = server((200, completion("I would rather not say.")))
    p, _ = policy(s.url)
    env = envs.make("frozenlake-4x4")
    env.max_steps = 3
    ep = run_episode(env, p, seed=0)
    assert ep.error is None and ep.n_steps == 3 and ep.truncated
    assert all(not st.valid and st.action == "" and st.raw == "I would rather not say." for st in ep.steps)


def test_tool_env_native_tool_calls_map_to_env_actions(server):
    env = envs.make("tools-single")
    obs, info = env.reset(seed=0)
    expert = env.expert().act()
    call = json.loads(expert.action)
    s = server((200, completion("Thought: use the calculator", tool_calls=[(call["tool"], call["args"])])),
               (200, completion("", tool_calls=[("answer", {"answer": 4323})])))
    p, _ = policy(s.url)
    ep = run_episode(env, p, seed=0)
    assert [st.action for st in ep.steps] == [expert.action, '{"answer": 4323}']
    assert ep.steps[0].valid and ep.steps[0].rationale == "use the calculator"
    assert ep.success  # (93 + 38) * 33 = 4323
    tools = {t["function"]["name"] for t in s.requests[0][1]["tools"]}
    assert tools == set(info["legal_actions"])  # the env's tools plus "answer"


def test_tool_env_falls_back_to_text_when_the_server_makes_no_tool_call(server):
    s = server((200, completion('Thought: compute\nAction: {"tool": "calculator", "args": {"expression": "2*3"}}')))
    p, _ = policy(s.url)
    env = envs.make("tools-single")
    obs, info = env.reset(seed=0)
    d = p.act(make_context(env, obs, info, [], "full"))
    assert d.action == '{"tool": "calculator", "args": {"expression": "2*3"}}'


def test_grammar_is_sent_for_llama_cpp_servers(server):
    s = server((200, completion("Thought: x\nAction: up")))
    p, _ = policy(s.url, grammar=True)
    assert p.act(frozenlake_context()).action == "up"
    body = s.requests[0][1]
    assert '"left"' in body["grammar"] and "root" in body["grammar"] and body["max_tokens"] == 32
    # the thought is capped so that the action fits the budget: 32 - (8 + len("right"))
    assert "thought-char{0,19}" in body["grammar"]


def test_missing_key_without_a_local_endpoint_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="no API key"):
        load_policy("openai:gpt-x")


# ------------------------------------------------------------------ real llama.cpp server
@pytest.fixture(scope="module")
def llama_server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory):
    with serve_gguf(tiny_gguf, "tiny", tmp_path_factory.mktemp("llama_server") / "server.log") as url:
        yield url


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_real_llama_cpp_server_plays_an_episode_with_logprobs(llama_server):
    p = load_policy("openai:tiny", base_url=llama_server, api_key="unused", prompt_variant="compact",
                    sampling=Sampling(max_tokens=24, top_logprobs=3))
    env = envs.make("frozenlake-4x4")
    env.max_steps = 3
    ep = run_episode(env, p, seed=1)
    assert ep.error is None and 1 <= ep.n_steps <= 3
    for st in ep.steps:
        assert st.raw and st.prompt_tokens > 0 and 0 < st.completion_tokens <= 24 and st.latency_s > 0
        assert st.top_logprobs is not None and len(st.top_logprobs) == st.completion_tokens
        assert all(1 <= len(top) <= 3 and all(lp <= 0.0 for lp in top.values()) for top in st.top_logprobs)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_real_llama_cpp_server_with_grammar_emits_only_legal_actions(llama_server):
    p = load_policy("openai:tiny", base_url=llama_server, api_key="unused", prompt_variant="compact",
                    grammar=True, sampling=Sampling(max_tokens=64, max_rationale_chars=40))
    env = envs.make("frozenlake-4x4")
    env.max_steps = 4
    ep = run_episode(env, p, seed=3)
    assert ep.error is None and ep.n_steps >= 1
    assert all(st.valid and st.action in st.legal_actions for st in ep.steps), [st.raw for st in ep.steps]
