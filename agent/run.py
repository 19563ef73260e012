"""``agentkd run``: watch one agent play an env, its rationale streamed as it is generated.

    agentkd run --model runs/gguf/student-q8_0.gguf --env frozenlake-4x4 --seed 1
    agentkd run --policy expert --env tools-single --seed 3 --episodes 2

Any policy spec works (``expert``, ``openai:MODEL``, ``gguf:PATH``, ``hf:PATH``); a GGUF
student runs with its grammar-constrained actions. Each step shows the env's state (the
observation), the rationale (streamed token by token where the backend streams), the action
and its reward; a table summarises the episodes at the end.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import tyro

from agent.types import Context, Decision, Episode, Sampling

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunConfig:
    """Run an agent (any policy spec) on an env and show what it does."""

    model: str = ""
    """A GGUF file to run (shorthand for --policy gguf:PATH)."""
    policy: str = ""
    """Policy spec: expert, openai:MODEL, gguf:PATH or hf:PATH (used when --model is not given)."""
    env: str = "frozenlake-4x4"
    """Env id (agentkd envs lists them)."""
    seed: int | None = None
    """First seed (default: the env's first test seed); episode i uses the i-th seed from it."""
    episodes: int = 1
    """Episodes to run."""
    render: bool = True
    """Show the env's state (its observation text) before every decision."""
    temperature: float = 0.0
    """Sampling temperature for LLM policies (0: greedy)."""
    max_tokens: int = 160
    """Token budget per decision for LLM policies."""
    loop_temperature: float = 0.0
    """Loop escape: back in a situation it has already acted in this episode, an LLM policy
    samples at this temperature instead of repeating itself (0: off)."""
    n_threads: int | None = None
    """llama.cpp threads for gguf: policies."""
    base_url: str | None = None
    """OpenAI-compatible endpoint for openai: policies."""
    api_key: str | None = None
    """API key for openai: policies (default: the OPENAI_API_KEY env var)."""


class _Shown:
    """A policy wrapper that prints the state, streams the rationale and prints the action."""

    def __init__(self, policy: Any, console: Any, render: bool) -> None:
        self.inner, self.console, self.render = policy, console, render
        self.spec, self.prompt_variant = policy.spec, policy.prompt_variant
        self.streams = hasattr(policy, "on_token")
        if self.streams:
            policy.on_token = self._token
        self.t = 0

    @property
    def sampling(self) -> Any:
        """The wrapped policy's sampling settings (None for the expert), so that loop escape
        can swap them."""
        return getattr(self.inner, "sampling", None)

    @sampling.setter
    def sampling(self, value: Any) -> None:
        self.inner.sampling = value

    def _token(self, piece: str) -> None:
        self.console.print(piece, end="", markup=False, highlight=False, soft_wrap=True)

    def reset(self, env: Any) -> None:
        self.t = 0
        self.inner.reset(env)

    def act(self, context: Context) -> Decision:
        self.t += 1
        self.console.rule(f"step {self.t}", style="dim")
        if self.render:
            self.console.print(context.observation, markup=False, highlight=False)
        if self.streams:
            self.console.print("[dim]model:[/dim] ", end="")
        decision = self.inner.act(context)
        if self.streams:  # the stream already showed "Thought: ...\nAction: ..."
            self.console.print()
        else:
            self.console.print(f"[dim]Thought:[/dim] {decision.rationale}", highlight=False)
            self.console.print(f"[bold]Action:[/bold] {decision.action!r}", highlight=False)
        return decision


def policy_spec(cfg: RunConfig) -> str:
    """The policy spec ``cfg`` asks for (``--model X`` means ``gguf:X``)."""
    if cfg.model and cfg.policy:
        raise ValueError("give --model or --policy, not both")
    if cfg.model:
        return f"gguf:{cfg.model}"
    if not cfg.policy:
        raise ValueError("expected --model PATH.gguf or --policy SPEC (expert, openai:MODEL, gguf:PATH, hf:PATH)")
    return cfg.policy


def run(cfg: RunConfig, console: Any | None = None) -> list[Episode]:
    """Run ``cfg.episodes`` episodes of ``cfg.env`` and show them on ``console``."""
    import envs
    from rich.console import Console
    from rich.table import Table

    from agent.episode import check_loop_temperature, run_episode
    from agent.policies import load_policy

    console = console or Console()
    if cfg.episodes < 1:
        raise ValueError(f"--episodes: expected >= 1, got {cfg.episodes}")
    envs.spec(cfg.env)  # unknown id -> error listing the valid ones, before loading a model
    check_loop_temperature(cfg.loop_temperature)
    sampling = Sampling(temperature=cfg.temperature, max_tokens=cfg.max_tokens)
    policy = load_policy(policy_spec(cfg), sampling=sampling, base_url=cfg.base_url,
                         api_key=cfg.api_key, n_threads=cfg.n_threads)
    shown = _Shown(policy, console, cfg.render)
    if cfg.seed is None:
        seeds = envs.seeds(cfg.env, "test", cfg.episodes)
    else:
        seeds = [cfg.seed + i for i in range(cfg.episodes)]
    episodes: list[Episode] = []
    for seed in seeds:
        env = envs.make(cfg.env)
        console.rule(f"[bold]{cfg.env}[/bold] seed {seed} ({policy.spec})")

        def on_step(t: int, obs: str, decision: Decision, info: dict[str, Any]) -> None:
            note = " [red](invalid)[/red]" if info.get("invalid_action") else ""
            console.print(f"[dim]-> step {info.get('step', t)}{note}[/dim]")

        ep = run_episode(env, shown, seed, on_step=on_step, loop_temperature=cfg.loop_temperature)
        if ep.error:
            console.print(f"[red]episode stopped: {ep.error}[/red]")
        escaped = sum(st.resampled for st in ep.steps)
        console.print(f"[bold]{'solved' if ep.success else 'not solved'}[/bold] in {ep.n_steps} steps, "
                      f"return {ep.total_return:g}"
                      + (f", {escaped} decision(s) resampled by loop escape" if escaped else ""))
        episodes.append(ep)

    table = Table(title=f"{cfg.env}: {policy.spec}")
    for col in ("seed", "success", "steps", "return", "invalid", "latency/decision (s)", "tokens out"):
        table.add_column(col)
    for ep in episodes:
        lat = sum(s.latency_s for s in ep.steps) / max(1, ep.n_steps)
        table.add_row(str(ep.seed), "yes" if ep.success else "no", str(ep.n_steps), f"{ep.total_return:g}",
                      str(sum(not s.valid for s in ep.steps)), f"{lat:.3f}",
                      str(sum(s.completion_tokens for s in ep.steps)))
    console.print(table)
    n_ok = sum(ep.success for ep in episodes)
    console.print(f"success {n_ok}/{len(episodes)}")
    return episodes


def cli(argv: list[str]) -> int:
    """``agentkd run --model X.gguf|--policy SPEC --env ID [--seed S] [--episodes N]``."""
    from rich.console import Console

    cfg = tyro.cli(RunConfig, args=argv, prog="agentkd run")
    console = Console()
    try:
        run(cfg, console)
    except ValueError as e:  # bad spec, env id, model file: one line, no traceback
        console.print(f"agentkd run: {e}", style="red", markup=False, highlight=False, soft_wrap=True)
        return 1
    return 0
