"""What the Gymnasium toy-text envs (FrozenLake, Taxi, CliffWalking) share as text envs.

Each of them is a small tabular MDP whose transition model ``P`` is public:
``P[state][action] -> [(probability, next_state, reward, terminated), ...]``. This module
holds the parts that do not depend on which game it is:

* ``ToyTextEnv``: a ``TextEnv`` that drives a toy-text env (its action ids are the indices
  of ``actions``) and gives it an expert that plans on ``P``;
* ``TabularPlanner``: shortest paths when ``P`` is deterministic, value iteration on the
  chance of success when it is not (slippery ice);
* helpers that grid games use to describe cells and explain a move;
* ``run_expert``: one episode of any ``TextEnv`` played by its own expert (benchmarks, tests).

The planner reads only the env's current state, so the expert also acts well from states
that another policy reached (DAgger relabels those).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.base import ExpertStep, TextEnv

# Outcome kinds of one transition in the planner's arrays.
_GO_ON, _SUCCESS, _DEAD = 0, 1, 2

#: Grid moves as (row change, col change); row 0 is the top row.
MOVES = {"left": (0, -1), "down": (1, 0), "right": (0, 1), "up": (-1, 0)}
#: How a rationale names the neighbour in a direction.
WHERE = {"left": "to the left", "down": "below", "right": "to the right", "up": "above"}

Pos = tuple[int, int]


@dataclass(frozen=True)
class Plan:
    """The planner's advice for one state.

    Attributes:
        action: index of the best action.
        reachable: whether success has a non-zero chance from this state.
        steps: steps to success along the plan (deterministic models), else None.
        success_prob: chance of success when following the plan without a step limit.
        deterministic: whether every transition of the model is certain.
    """

    action: int
    reachable: bool
    steps: int | None
    success_prob: float
    deterministic: bool


class TabularPlanner:
    """Optimal actions on a known tabular model ``P`` with success states ``goal``.

    A transition that terminates in a goal state is a success, one that terminates
    anywhere else (a hole) is a failure; others go on. Deterministic models are solved
    exactly for the fewest steps to success; stochastic ones by value iteration on the
    discounted chance of success (``gamma`` < 1 prefers the quicker of two equally safe
    routes), ties broken by action order.

    Args:
        P: the env's transition model.
        goal: boolean array, True for the success states.
        gamma: discount of the stochastic case.
    """

    def __init__(self, P: dict[int, dict[int, list[tuple]]], goal: np.ndarray,
                 gamma: float = 0.99) -> None:
        n_states, n_actions = len(P), len(P[0])
        k = max(len(outs) for sa in P.values() for outs in sa.values())
        self.prob = np.zeros((n_states, n_actions, k))
        self.next = np.zeros((n_states, n_actions, k), dtype=np.int64)
        self.kind = np.full((n_states, n_actions, k), _DEAD, dtype=np.int8)
        for s in range(n_states):
            for a in range(n_actions):
                for i, (p, s2, _r, done) in enumerate(P[s][a]):
                    self.prob[s, a, i] = p
                    self.next[s, a, i] = s2
                    self.kind[s, a, i] = (_SUCCESS if goal[s2] else _DEAD) if done else _GO_ON
        self.deterministic = bool(np.all((self.prob == 1.0) | (self.prob == 0.0)))
        self._policy: np.ndarray | None = None
        self._chance = np.zeros(n_states)
        if self.deterministic:
            self.q = self._fewest_steps()
        else:
            self.q = self._success_values(gamma)

    def _fewest_steps(self) -> np.ndarray:
        """Q[s, a] = steps to success taking ``a`` then the best actions (inf if never)."""
        n_states = self.prob.shape[0]
        first = self.prob.argmax(axis=2)[..., None]  # the one certain outcome
        nxt = np.take_along_axis(self.next, first, 2)[..., 0]
        kind = np.take_along_axis(self.kind, first, 2)[..., 0]
        dist = np.full(n_states, np.inf)
        for _ in range(n_states + 1):  # Bellman-Ford: at most one sweep per state
            q = np.where(kind == _SUCCESS, 1.0, np.where(kind == _DEAD, np.inf, 1.0 + dist[nxt]))
            new = q.min(axis=1)
            if np.array_equal(new, dist):
                break
            dist = new
        return q

    def _backup(self, v: np.ndarray, gamma: float) -> np.ndarray:
        cont = np.where(self.kind == _SUCCESS, 1.0, np.where(self.kind == _DEAD, 0.0, v[self.next]))
        return gamma * (self.prob * cont).sum(axis=2)

    def _success_values(self, gamma: float, tol: float = 1e-10, max_iter: int = 5000) -> np.ndarray:
        """Q[s, a] = discounted chance of success taking ``a`` then the best actions."""
        v = np.zeros(self.prob.shape[0])
        for _ in range(max_iter):
            q = self._backup(v, gamma)
            new = q.max(axis=1)
            if np.max(np.abs(new - v)) < tol:
                break
            v = new
        return q

    def _policy_success(self, policy: np.ndarray, max_iter: int = 5000) -> np.ndarray:
        """Undiscounted chance of success from every state following ``policy`` forever."""
        rows = np.arange(len(policy))
        v = np.zeros(len(policy))
        for _ in range(max_iter):
            new = self._backup(v, 1.0)[rows, policy]
            if np.max(np.abs(new - v)) < 1e-10:
                break
            v = new
        return v

    def plan(self, s: int) -> Plan:
        """The best action in state ``s`` and what following the plan promises."""
        q = self.q[s]
        if self.deterministic:
            best = float(q.min())
            if math.isinf(best):
                return Plan(self._safest(s), False, None, 0.0, True)
            return Plan(int(np.flatnonzero(q == best)[0]), True, int(best), 1.0, True)
        if float(q.max()) <= 0.0:
            return Plan(self._safest(s), False, None, 0.0, False)
        if self._policy is None:  # computed once per model, on first use
            # First action within rounding of the best: the same tie-break everywhere.
            self._policy = (self.q >= self.q.max(axis=1, keepdims=True) - 1e-12).argmax(axis=1)
            self._chance = self._policy_success(self._policy)
        return Plan(int(self._policy[s]), True, None, float(self._chance[s]), False)

    def _safest(self, s: int) -> int:
        """The action least likely to end the episode in failure right now."""
        dead = (self.prob[s] * (self.kind[s] == _DEAD)).sum(axis=1)
        return int(np.flatnonzero(dead == dead.min())[0])


class ToyTextExpert:
    """The expert of a ``ToyTextEnv``: plans on the env's model from its current state."""

    def __init__(self, env: ToyTextEnv) -> None:
        self.env = env

    def act(self) -> ExpertStep:
        plan = self.env.planner().plan(self.env.state)
        return ExpertStep(self.env.actions[plan.action], self.env.explain(plan))


class ToyTextEnv(TextEnv):
    """A ``TextEnv`` over a Gymnasium toy-text env (``self.game``, built by subclasses).

    Action ``i`` of the game is ``actions[i]``. Subclasses build ``self.game`` in
    ``_reset`` (calling ``_new_game`` when the model changes), and implement ``_render``,
    ``_success``, ``goal_states``, ``describe_step`` and ``explain``.
    """

    game: Any = None

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        self._planner: TabularPlanner | None = None

    def _new_game(self, game: Any) -> None:
        """Use ``game`` from now on (a new map means a new model and a new plan)."""
        self.game = game
        self._planner = None

    def _seed_game(self) -> None:
        """Reset the game with a seed drawn from this env's seeded generator, so that the
        whole episode (map, start, slips) follows from ``reset(seed=...)``."""
        self.game.reset(seed=int(self.np_random.integers(2**31 - 1)))

    @property
    def state(self) -> int:
        """The game's current state index."""
        return int(self.game.s)

    def goal_states(self) -> np.ndarray:
        """Boolean array over states: True where the task is solved."""
        raise NotImplementedError

    def planner(self) -> TabularPlanner:
        """The planner of the current game's model (built once per model)."""
        if self._planner is None:
            self._planner = TabularPlanner(self.game.P, self.goal_states())
        return self._planner

    def expert(self) -> ToyTextExpert:
        return ToyTextExpert(self)

    def explain(self, plan: Plan) -> str:
        """The expert's rationale for ``plan`` in the current state."""
        raise NotImplementedError

    def describe_step(self, action: str, before: int, after: int, reward: float,
                      terminated: bool) -> str:
        """One line of feedback on ``action`` taking the game from state ``before`` to
        ``after`` ("" when there is nothing to say)."""
        raise NotImplementedError

    def _reject_options(self, options: dict[str, Any] | None, valid: tuple[str, ...] = ()) -> None:
        unknown = sorted(set(options or {}) - set(valid))
        if unknown:
            raise ValueError(
                f"{self.env_id}: unknown reset option(s) {', '.join(unknown)}; "
                f"valid options: {', '.join(valid) or '(none)'}"
            )

    def _apply(self, action: str) -> tuple[float, bool, str]:
        before = self.state
        _, reward, terminated, _, _ = self.game.step(self.actions.index(action))
        feedback = self.describe_step(action, before, self.state, float(reward), bool(terminated))
        return float(reward), bool(terminated), feedback


# ---------------------------------------------------------------- grid helpers
def step_to(pos: Pos, direction: str) -> Pos:
    """The cell one move from ``pos`` in ``direction`` (may lie off the grid)."""
    dr, dc = MOVES[direction]
    return pos[0] + dr, pos[1] + dc


def fmt(pos: Pos) -> str:
    """Coordinates as the observations write them: ``(row,col)``."""
    return f"({pos[0]},{pos[1]})"


def neighbours_line(pos: Pos, shape: tuple[int, int], cell_name: dict[Pos, str],
                    order: tuple[str, ...], default: str, sep: str = " ") -> str:
    """``Next to you: left edge, down ice, ...`` in the env's action order (``sep`` between
    a direction and its cell: ``=`` makes ``down=`` a pair found only here)."""
    parts = []
    for d in order:
        r, c = step_to(pos, d)
        inside = 0 <= r < shape[0] and 0 <= c < shape[1]
        parts.append(f"{d}{sep}{cell_name.get((r, c), default) if inside else 'edge'}")
    return "Next to you: " + ", ".join(parts) + "."


def grid_rationale(pos: Pos, goal: Pos, action: str, steps: int, dangers: set[Pos],
                   danger_name: str) -> str:
    """Explain a shortest-path move on a grid in the same few phrasings every time.

    Says what is in the way when the move is not the obvious one: a ``danger_name``
    (hole, cliff) right next to us in a direction toward the goal that we do not take,
    or that the direct way is blocked when the move leads away from the goal.
    """
    toward = [d for d in ("down", "up", "right", "left")
              if (d == "down" and goal[0] > pos[0]) or (d == "up" and goal[0] < pos[0])
              or (d == "right" and goal[1] > pos[1]) or (d == "left" and goal[1] < pos[1])]
    reason = ""
    blocked = [d for d in toward if d != action and step_to(pos, d) in dangers]
    if blocked:
        d = blocked[0]
        reason = f"{danger_name.capitalize()} {WHERE[d]} at {fmt(step_to(pos, d))}, so "
    elif action not in toward:
        reason = "The direct way is blocked, so "
    left = f"{steps} step{'s' if steps != 1 else ''} left"
    move = f"go {action}" if reason else f"Go {action}"
    return f"Goal at {fmt(goal)}. {reason}{move}; {left}."


# ------------------------------------------------------------- expert rollouts
@dataclass(frozen=True)
class ExpertRun:
    """The outcome of one episode played by an env's own expert."""

    success: bool
    steps: int
    ret: float


def run_expert(env: TextEnv, seed: int, options: dict[str, Any] | None = None) -> ExpertRun:
    """Play one episode of any ``TextEnv`` with its own expert (benchmarks and tests).

    Args:
        env: the env; it is reset with ``seed`` and ``options``.
        seed: the episode's seed.
        options: reset options.
    """
    env.reset(seed=seed, options=options)
    expert = env.expert()
    ret, done, info = 0.0, False, {}
    while not done:
        _, reward, terminated, truncated, info = env.step(expert.act().action)
        ret += reward
        done = terminated or truncated
    return ExpertRun(bool(info.get("success")), int(info["step"]), ret)
