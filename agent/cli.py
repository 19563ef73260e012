"""The ``agentkd`` console script: a thin dispatcher to one module per subcommand.

Each subcommand lives in the package that does the work and exposes ``cli(argv)``, which
parses a frozen config dataclass with tyro (so every field's docstring is its ``--help``)
and calls one function. Modules are imported only when their subcommand runs, so
``agentkd --help`` and ``agentkd envs`` start fast.

    agentkd --help
    agentkd envs
    agentkd collect --teacher expert --env frozenlake-4x4 --episodes 20 --out traces.jsonl
"""

from __future__ import annotations

import importlib
import logging
import sys

# name -> (module, one-line help). Order is the order of the pipeline.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "envs": ("agent.cli", "List the registered environments and their options."),
    "collect": ("agent.collect", "Run a teacher on env seeds and append episodes to a trace file."),
    "traces": ("agent.traces_cli", "Inspect (stats) or convert (export) a trace file."),
    "train": ("distill.train", "Train a student LM on trace files."),
    "dagger": ("distill.dagger", "On-policy distillation: the student acts, the teacher corrects."),
    "prune": ("distill.prune", "Cut a student from a teacher's weights (depth/width pruning)."),
    "export": ("distill.export", "Export a student to GGUF, quantize it, and verify it."),
    "run": ("agent.run", "Run an agent (any policy spec) on an env and show what it does."),
    "serve": ("agent.serve", "Serve a GGUF student as an OpenAI-compatible endpoint."),
    "eval": ("eval.evaluate", "Evaluate one policy on held-out test seeds."),
    "compare": ("eval.compare", "Compare policies on the same seeds; write a report."),
    "demo": ("eval.demo", "The whole pipeline on offline defaults: collect, train, export, compare."),
}


def _usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    lines = [
        "usage: agentkd COMMAND [options]   (agentkd COMMAND --help for its options)",
        "",
        "agentkd: distil an LLM agent into a small on-device student.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def cli(argv: list[str]) -> int:
    """``agentkd envs``: print the registered env ids with their options."""
    import envs

    if argv and argv[0] in ("-h", "--help"):
        print("usage: agentkd envs\n\nList the registered environments and their options.")
        return 0
    for env_id in envs.list_envs():
        s = envs.spec(env_id)
        try:
            opts = ", ".join(f"{k}={v!r}" for k, v in envs.env_options(env_id).items())
        except ImportError as e:  # an optional dependency of that family is missing
            opts = f"(unavailable: {e})"
        print(f"{env_id:<30} {s.description}" + (f"  [{opts}]" if opts else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"agentkd: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(SUBCOMMANDS[name][0])
    try:
        return int(module.cli(rest) or 0)
    except KeyboardInterrupt:
        print("\nagentkd: interrupted; re-run the same command to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
