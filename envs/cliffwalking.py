"""CliffWalking as text, with a shortest-path expert.

Description:
    Gymnasium's CliffWalking-v1 (``CliffWalkingEnv``, Sutton & Barto's example 6.6): walk
    on a 4x12 grid from the start (3,0) to the goal (3,11) along the bottom edge, where a
    cliff fills (3,1)..(3,10). Stepping onto the cliff costs -100 and sends the walker back
    to the start; the episode goes on. Deterministic by default (every seed starts the
    same way); ``slippery=True`` is Gymnasium's slippery variant (a move goes the intended
    way one time in three, otherwise to one side of it).

Observation:
    The grid, one row a line, cells separated by spaces (``o`` ground, ``C`` cliff, ``G``
    goal, ``A`` the walker), then the walker's and the goal's (row, col) (row 0 at the
    top, col 0 at the left) and what lies next to the walker. About 200 characters. After
    a step, one line of feedback (fell off the cliff, bumped into the edge, reached the goal).

Actions:
    ``up``, ``right``, ``down``, ``left`` (Gymnasium's action ids 0-3). Moving off the grid
    leaves the walker in place. Any other text is an invalid action: the world does not move.

Reward:
    Gymnasium's: -1 per step, -100 for stepping onto the cliff.

Termination:
    Reaching the goal (``success``); truncated after ``max_steps`` (100 unless given).

Registered ids:
    ``cliffwalking``. Options: ``slippery``, ``max_steps``.

Expert:
    Shortest path on the grid (value iteration on the chance of reaching the goal when
    slippery), from the current position: up off the cliff edge, right along row 2, then
    down onto the goal, saying where the cliff is when it blocks the direct way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.envs.toy_text.cliffwalking import CliffWalkingEnv

from envs.toytext import Plan, ToyTextEnv, fmt, grid_rationale, neighbours_line

ACTIONS = ("up", "right", "down", "left")
SHAPE = (4, 12)
START, GOAL = (3, 0), (3, 11)
CLIFF = frozenset((3, c) for c in range(1, 11))


class CliffWalkingTextEnv(ToyTextEnv):
    """CliffWalking-v1 as text (see the module docstring for the spec card).

    Args:
        slippery: Gymnasium's ``is_slippery``.
        max_steps: step limit.
        render_mode: None or "ansi".
    """

    env_id = "cliffwalking"
    actions = ACTIONS
    compact_history = 0  # the observation is the whole state

    def __init__(self, slippery: bool = False, max_steps: int = 100,
                 render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        if max_steps < 1:
            raise ValueError(f"cliffwalking: max_steps must be >= 1, got {max_steps!r}")
        self.slippery, self.max_steps = bool(slippery), max_steps
        self._new_game(CliffWalkingEnv(is_slippery=self.slippery))
        slip = (
            " The ground is slippery: a move goes the way you chose only one time in three, "
            "otherwise to one side of it." if self.slippery else ""
        )
        self.instructions = (
            "You walk on a 4x12 grid drawn one row per line: o is ground, C is the cliff, G "
            "the goal, A marks where you are. Positions are (row,col): row 0 is the top row "
            "and col 0 the left column; down adds 1 to the row, right adds 1 to the column. "
            f"You start at {fmt(START)}; the goal is at {fmt(GOAL)}; the cliff fills row 3 "
            "between them. Stepping onto the cliff costs -100 and sends you back to the "
            f"start. Moving off the grid leaves you in place.{slip} Actions: up, right, down, "
            "left (one cell each). Reward: -1 per step. Reach the goal in as few steps as "
            f"you can; you have at most {max_steps} moves."
        )

    # ------------------------------------------------------------------ world
    def _reset(self, seed: int | None, options: dict[str, Any] | None) -> None:
        self._reject_options(options)
        self._seed_game()

    @property
    def pos(self) -> tuple[int, int]:
        """The walker's (row, col)."""
        return divmod(self.state, SHAPE[1])

    def goal_states(self) -> np.ndarray:
        goal = np.zeros(SHAPE[0] * SHAPE[1], dtype=bool)
        goal[GOAL[0] * SHAPE[1] + GOAL[1]] = True
        return goal

    def _success(self) -> bool:
        return self.pos == GOAL

    # ------------------------------------------------------------------- text
    def _cell(self, r: int, c: int) -> str:
        return "C" if (r, c) in CLIFF else "G" if (r, c) == GOAL else "o"

    def _render(self) -> str:
        pos = self.pos
        rows = [" ".join("A" if (r, c) == pos else self._cell(r, c) for c in range(SHAPE[1]))
                for r in range(SHAPE[0])]
        names = {**{cell: "cliff" for cell in CLIFF}, GOAL: "goal"}
        return "\n".join(rows + [
            f"You are at {fmt(pos)}. Goal at {fmt(GOAL)}.",
            neighbours_line(pos, SHAPE, names, ACTIONS, "ground"),
        ])

    def describe_step(self, action: str, before: int, after: int, reward: float,
                      terminated: bool) -> str:
        if terminated:
            return "You reached the goal!"
        if reward <= -100:
            return f"You fell off the cliff (-100) and are back at the start {fmt(START)}."
        if before == after:
            return "You did not move (edge of the grid)."
        return ""

    def explain(self, plan: Plan) -> str:
        pos, action = self.pos, ACTIONS[plan.action]
        if plan.deterministic:
            assert plan.reachable and plan.steps is not None, "the goal is always reachable"
            return grid_rationale(pos, GOAL, action, plan.steps, set(CLIFF), "cliff")
        # Falling only sends the walker back, so success is certain in the long run: the plan
        # (discounted) is the quickest way that keeps clear of the cliff.
        return (f"Goal at {fmt(GOAL)}. The ground is slippery: go {action}, the quickest way "
                "that keeps clear of the cliff.")
