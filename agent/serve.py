"""``agentkd serve``: a GGUF student as an OpenAI-compatible endpoint (llama-cpp-python's server).

    agentkd serve --model runs/gguf/student-q8_0.gguf --port 8000
    # then: openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="x")
    #       .chat.completions.create(model="student-q8_0", messages=[...])

Binds to 127.0.0.1 unless ``--host`` says otherwise. The file is checked (GGUF header and,
unless ``--allow-foreign``, agentkd metadata) before the server starts, so a bad file is one
error line. Chat requests are rendered with the GGUF's own chat template, which for an
agentkd student is agent.prompt's ``CHAT_TEMPLATE``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import tyro

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeConfig:
    """Serve a GGUF model as an OpenAI-compatible endpoint."""

    model: str = ""
    """The .gguf file to serve."""
    host: str = "127.0.0.1"
    """Address to bind (127.0.0.1: this machine only; 0.0.0.0 exposes it to the network)."""
    port: int = 8000
    """TCP port."""
    alias: str = ""
    """Model name clients use (default: the file name without .gguf)."""
    n_ctx: int = 2048
    """Context window in tokens."""
    n_threads: int | None = None
    """llama.cpp threads (default: llama.cpp's choice)."""
    allow_foreign: bool = False
    """Serve a GGUF that was not exported by agentkd (no agentkd metadata)."""


def build_app(cfg: ServeConfig):  # -> fastapi.FastAPI
    """The llama-cpp-python server app for ``cfg`` (file checked first)."""
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    from distill.gguf_writer import read_gguf_info

    if not cfg.model:
        raise ValueError("expected --model PATH.gguf")
    info = read_gguf_info(cfg.model, require_agentkd=not cfg.allow_foreign)
    model_settings = ModelSettings(
        model=str(info.path), model_alias=cfg.alias or Path(cfg.model).stem, n_ctx=cfg.n_ctx,
        verbose=False, **({"n_threads": cfg.n_threads} if cfg.n_threads else {}),
    )
    return create_app(server_settings=ServerSettings(host=cfg.host, port=cfg.port),
                      model_settings=[model_settings])


def serve(cfg: ServeConfig) -> None:
    """Check the file, then serve until interrupted.

    Raises:
        ValueError: no model, or a file that is not a usable (agentkd) GGUF.
    """
    import uvicorn

    app = build_app(cfg)
    print(f"agentkd serve: http://{cfg.host}:{cfg.port}/v1 (model {cfg.alias or Path(cfg.model).stem})",
          flush=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")


def cli(argv: list[str]) -> int:
    """``agentkd serve --model X.gguf [--host 127.0.0.1] [--port 8000]``."""
    import sys

    cfg = tyro.cli(ServeConfig, args=argv, prog="agentkd serve")
    try:
        serve(cfg)
    except ValueError as e:  # a bad file: one line, before the server starts
        print(f"agentkd serve: {e}", file=sys.stderr)
        return 1
    return 0
