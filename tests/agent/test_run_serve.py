"""``agentkd run`` and ``agentkd serve`` through the CLI, on the tiny GGUF student."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from agent.cli import main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _needs_runtime() -> None:
    """agent.episode.run_episode and agent.policies.load_policy (the runtime issue)."""
    pytest.importorskip("agent.episode")
    if not hasattr(pytest.importorskip("agent.policies"), "load_policy"):
        pytest.skip("agent.policies.load_policy is not there yet")


@pytest.mark.slow
def test_run_gguf_through_the_cli(tiny_gguf, capsys):
    _needs_runtime()
    rc = main(["run", "--model", str(tiny_gguf), "--env", "frozenlake-4x4", "--seed", "1",
               "--max-tokens", "24"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "step 1" in out and "Thought:" in out and "Action:" in out  # streamed rationale + action
    assert "success 0/1" in out or "success 1/1" in out


@pytest.mark.slow
def test_run_shows_the_decisions_loop_escape_resampled(tiny_gguf, capsys):
    # seed 1: the tiny student walks into a wall and meets the same observation again
    rc = main(["run", "--model", str(tiny_gguf), "--env", "frozenlake-4x4", "--seed", "1",
               "--max-tokens", "24", "--loop-temperature", "1.0", "--no-render"])
    out = capsys.readouterr().out
    assert rc == 0 and "decision(s) resampled by loop escape" in out


def test_run_rejects_a_bad_model_file(tmp_path, capsys):
    _needs_runtime()
    bad = tmp_path / "x.gguf"
    bad.write_text("nope")
    assert main(["run", "--model", str(bad), "--env", "frozenlake-4x4"]) == 1
    assert "not a GGUF file" in capsys.readouterr().out


def test_serve_rejects_bad_files_in_one_line(tmp_path, capsys):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"GGUF\x03\x00")
    assert main(["serve", "--model", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "truncated or corrupt GGUF" in err and err.count("\n") == 1


@pytest.mark.slow
def test_serve_answers_an_openai_client(tiny_gguf):
    import openai

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "serve", "--model", str(tiny_gguf),
                             "--port", str(port), "--alias", "tiny"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        for _ in range(120):  # the server starts in a few seconds
            try:
                assert [m.id for m in client.models.list().data] == ["tiny"]
                break
            except openai.APIConnectionError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.5)
        reply = client.chat.completions.create(
            model="tiny", max_tokens=8, temperature=0,
            messages=[{"role": "system", "content": "Walk to G."}, {"role": "user", "content": "SFFF"}])
        assert reply.choices[0].message.role == "assistant"
        assert reply.usage.prompt_tokens > 5 and reply.usage.completion_tokens >= 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
