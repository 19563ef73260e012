"""Session fixtures shared by every package's tests: one tiny student and its GGUF.

Both are built once per test session under ``tmp_path_factory`` (a few seconds on CPU):

* ``tiny_student_dir``: a ``nano`` student (hidden 256, 2 layers) with a byte-level BPE
  tokenizer, trained for a few dozen steps on expert traces of ``frozenlake-4x4`` with
  ``distill.train``, saved by ``distill.student.save_student`` (prompt variant ``compact``).
  While the pieces that collect and train are not importable, it falls back to a randomly
  initialised student whose tokenizer is trained on rendered prompts; every export and
  parity test works the same on it.
* ``tiny_gguf``: that student as an F32 GGUF written by ``distill.gguf_writer.write_gguf``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

log = logging.getLogger(__name__)

TINY_ENV = "frozenlake-4x4"
TINY_EPISODES = 8
TINY_STEPS = 12


def _trained_student(root: Path) -> Path:
    """Expert traces of frozenlake-4x4 -> ``agentkd train`` (nano, a few dozen steps)."""
    import envs
    from agent.episode import run_episode
    from agent.policies import load_policy
    from distill.traces import TraceWriter
    from distill.train import train
    from distill.train_config import TrainConfig

    traces = root / "traces.jsonl"
    policy = load_policy("expert")
    with TraceWriter(traces) as writer:
        for seed in envs.seeds(TINY_ENV, "train", TINY_EPISODES):
            env = envs.make(TINY_ENV)
            writer.write(run_episode(env, policy, seed))
    cfg = TrainConfig(traces=str(traces), student="nano", out=str(root / "run"), vocab_size=512,
                      steps=TINY_STEPS, batch_size=4, warmup=2, lr=3e-3, progress=False)
    return Path(train(cfg))


def _random_student(root: Path) -> Path:
    """A randomly initialised nano student; its tokenizer learns rendered prompts."""
    from agent.prompt import END_TOKEN, chat_text, render_completion, render_messages
    from agent.types import Context
    from distill.student import build_student, save_student
    from distill.tokenizer import train_tokenizer

    texts = []
    for i in range(64):
        ctx = Context(
            env_id=TINY_ENV,
            instructions="Walk on the frozen lake from S to G; never step into a hole H.",
            history=[],
            observation=f"Step {i}. Map:\nSFFF\nFHFH\nFFFH\nHFFG\nYou are at row {i % 4}, column {i % 3}.",
            legal_actions=["left", "down", "right", "up"],
        )
        action = ("left", "down", "right", "up")[i % 4]
        texts.append(chat_text(render_messages(ctx, "compact"))
                     + render_completion(f"The goal is {i % 5} steps away, so I go {action}.", action)
                     + END_TOKEN)
        texts.append('{"tool": "calculator", "args": {"expression": "12*3"}} {"answer": 36}')
    tok = train_tokenizer(texts, vocab_size=512)
    model = build_student("nano", len(tok), seed=0)
    return save_student(model, tok, root / "student", {"prompt_variant": "compact", "preset": "nano"})


@pytest.fixture(scope="session")
def tiny_student_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny student directory (HF checkpoint + tokenizer + agentkd.json)."""
    root = tmp_path_factory.mktemp("tiny_student")
    try:
        return _trained_student(root)
    except ImportError as e:  # collection/training code not there yet
        log.warning("tiny_student_dir: %s; using a randomly initialised student", e)
        return _random_student(root)


@pytest.fixture(scope="session")
def tiny_gguf(tiny_student_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny student as an F32 GGUF with agentkd metadata."""
    from distill.gguf_writer import write_gguf

    return write_gguf(tiny_student_dir, tmp_path_factory.mktemp("tiny_gguf") / "tiny-f32.gguf")
