"""FrozenLake as text, with a new random map for every seed and a planning expert.

Description:
    Gymnasium's FrozenLake-v1 (``FrozenLakeEnv``): cross a frozen lake from the start S in
    the top-left corner to the goal G in the bottom-right corner without falling into a
    hole H. Every seed draws a new map (``generate_random_map``, each cell frozen with
    probability ``p_frozen``, always with a path from S to G), so a student has to read
    the map rather than remember one. Non-slippery by default; with ``slippery=True`` a
    move goes the intended way one time in three and otherwise to one side of it.

Observation:
    The map, one row a line headed by its number (``row 0: S F F F``), cells separated by
    spaces (``S`` start, ``F`` ice, ``H`` hole, ``G`` goal, ``A`` the agent), then the
    agent's and the goal's (row, col) coordinates (row 0 at the top, col 0 at the left) and
    what lies next to the agent. About 250 characters for 8x8. After a step, one line of
    feedback (bumped into the edge, fell into a hole, reached the goal).

Actions:
    ``left``, ``down``, ``right``, ``up`` (Gymnasium's action ids 0-3). Moving off the map
    leaves the agent in place. Any other text is an invalid action: the world does not move.

Reward:
    Gymnasium's: 1 for reaching the goal, else 0.

Termination:
    Reaching the goal (``success``) or falling into a hole; truncated after ``max_steps``
    (30 for 4x4, 100 for 8x8 unless given).

Registered ids:
    ``frozenlake-4x4`` (size=4), ``frozenlake-8x8`` (size=8). Options: ``slippery``,
    ``p_frozen``, ``max_steps``. Reset option ``map``: a list of row strings of S/F/H/G to
    play instead of a random map.

Expert:
    Shortest path on the map (value iteration on the chance of success when slippery),
    from the current position; of several shortest moves, the first in the order left,
    down, right, up. Its rationale, when the goal lies down and to the right and a path of
    down and right moves reaches it (every 4x4 map from its start, 98% of 8x8 maps): what
    lies below, then which cells a walk of down and right moves from there reaches, row by
    row (``o`` reached, ``x`` not, as are the rows down to the agent's and the cells left of
    it; ``H`` hole), and whether it reaches G: go down if it does, else right::

        down=ice. row 1: o H H x, row 2: o o o o, row 3: H o o G. G reached: go down.

    Elsewhere (a student wandered off, or the way needs an up or left move) it names each
    move's cell and steps to the goal (``left=edge, down=hole, right=ice 5, up=edge``) and
    picks the first of the shortest.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.envs.toy_text.frozen_lake import FrozenLakeEnv, generate_random_map

from envs.toytext import Plan, ToyTextEnv, fmt, neighbours_line, step_to

ACTIONS = ("left", "down", "right", "up")
DEFAULT_MAX_STEPS = {4: 30, 8: 100}
_CELL_NAMES = {"S": "start", "F": "ice", "H": "hole", "G": "goal"}


class FrozenLakeTextEnv(ToyTextEnv):
    """FrozenLake-v1 as text (see the module docstring for the spec card).

    Args:
        size: side of the square map (4 and 8 are registered).
        slippery: Gymnasium's ``is_slippery``.
        p_frozen: chance that a cell of a random map is ice rather than a hole.
        max_steps: step limit (default: 30 for 4x4, 100 for 8x8, 2*size*size otherwise).
        render_mode: None or "ansi".
    """

    actions = ACTIONS
    compact_history = 0  # the observation is the whole state

    def __init__(self, size: int = 4, slippery: bool = False, p_frozen: float = 0.8,
                 max_steps: int | None = None, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        if not isinstance(size, int) or not 2 <= size <= 16:
            raise ValueError(f"frozenlake: size must be an int in 2..16, got {size!r}")
        if not 0.0 < p_frozen <= 1.0:
            raise ValueError(f"frozenlake: p_frozen must be in (0, 1], got {p_frozen!r}")
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"frozenlake: max_steps must be >= 1, got {max_steps!r}")
        self.size, self.slippery, self.p_frozen = size, bool(slippery), float(p_frozen)
        self.max_steps = max_steps or DEFAULT_MAX_STEPS.get(size, 2 * size * size)
        self.env_id = f"frozenlake-{size}x{size}"
        self.goal = (size - 1, size - 1)
        self.map: list[str] = []
        slip = (
            " The ice is slippery: a move goes the way you chose only one time in three, "
            "otherwise to one side of it." if self.slippery else ""
        )
        self.instructions = (
            f"You walk on a frozen lake drawn as a {size}x{size} grid, one row per line. Cells: "
            "S start, F frozen ice (safe), H hole, G goal; A marks where you are. "
            "Positions are (row,col): row 0 is the top row and col 0 the left column; down "
            "adds 1 to the row, right adds 1 to the column. Reach G without stepping into a "
            "hole: falling into a hole ends the episode. Moving off the map leaves you in "
            f"place.{slip} Actions: left, down, right, up (one cell each). Reward: 1 for "
            f"reaching the goal, else 0. You have at most {self.max_steps} moves."
        )

    # ------------------------------------------------------------------ world
    def _reset(self, seed: int | None, options: dict[str, Any] | None) -> None:
        self._reject_options(options, ("map",))
        if options and "map" in options:
            desc = _check_map(options["map"])
        else:
            desc = generate_random_map(self.size, p=self.p_frozen,
                                       seed=int(self.np_random.integers(2**31 - 1)))
        self.map = list(desc)
        self.goal = next((r, c) for r, row in enumerate(desc) for c, ch in enumerate(row)
                         if ch == "G")
        self._new_game(FrozenLakeEnv(desc=self.map, is_slippery=self.slippery))
        self._seed_game()

    @property
    def pos(self) -> tuple[int, int]:
        """The agent's (row, col)."""
        return divmod(self.state, len(self.map[0]))

    def goal_states(self) -> np.ndarray:
        return np.array([ch == "G" for row in self.map for ch in row])

    def _success(self) -> bool:
        r, c = self.pos
        return self.map[r][c] == "G"

    def _holes(self) -> set[tuple[int, int]]:
        return {(r, c) for r, row in enumerate(self.map) for c, ch in enumerate(row) if ch == "H"}

    # ------------------------------------------------------------------- text
    def _render(self) -> str:
        pos = self.pos
        rows = []
        for r, row in enumerate(self.map):
            cells = " ".join("A" if (r, c) == pos else ch for c, ch in enumerate(row))
            rows.append(f"row {r}: {cells}")
        names = {(r, c): _CELL_NAMES[ch] for r, row in enumerate(self.map)
                 for c, ch in enumerate(row)}
        shape = (len(self.map), len(self.map[0]))
        return "\n".join(rows + [
            f"You are at {fmt(pos)}. Goal at {fmt(self.goal)}.",
            neighbours_line(pos, shape, names, ACTIONS, "ice", sep="="),
        ])

    def describe_step(self, action: str, before: int, after: int, reward: float,
                      terminated: bool) -> str:
        pos = self.pos
        cell = self.map[pos[0]][pos[1]]
        if cell == "G":
            return "You reached the goal!"
        if cell == "H":
            return f"You fell into the hole at {fmt(pos)}."
        if before == after:
            return "You did not move (edge of the map)."
        return ""

    def explain(self, plan: Plan) -> str:
        pos, action = self.pos, ACTIONS[plan.action]
        if not plan.reachable:
            return (f"The goal at {fmt(self.goal)} cannot be reached from {fmt(pos)}; "
                    f"go {action} to stay off the holes.")
        if plan.deterministic:
            assert plan.steps is not None
            return self._down_walk(pos, action) or self._lookahead(pos, action, plan.steps)
        holes = sorted(h for h in self._holes() if abs(h[0] - pos[0]) + abs(h[1] - pos[1]) == 1)
        near = f" Hole next to me at {fmt(holes[0])}." if holes else ""
        return (f"Goal at {fmt(self.goal)}. The ice is slippery.{near} Go {action}: the safest "
                f"way, about {round(100 * plan.success_prob)}% chance to reach the goal.")


    def _down_walk(self, pos: tuple[int, int], action: str) -> str | None:
        """The rationale of a state the goal lies down and right of: whether a walk of down
        and right moves from the cell below reaches G, computed row by row as the student
        can compute it (each cell from the map cell, the cell to its left and the one above,
        all already written). None when that rule would not give the planner's ``action``
        (the shortest way needs an up or left move), so the caller explains it otherwise.

        ``down=ice. row 1: o H H x, row 2: o o o o, row 3: H o o G. G reached: go down.``

        The walk is written whatever lies below (from a hole or the edge it reaches
        nothing), so every rationale has one form and the move is read off its end: with
        a shorter form for those cases a micro student wrote it after ``down=ice`` too.

        Every row but the first (the walk never reaches it) is written, those out of the
        walk's reach as ``x``, so each mark stands at the same distance in tokens from its
        map cell in the observation whatever the agent's position (one token a cell in
        both), and at fixed distances from the mark to its left and the one above:
        everything a mark depends on is a fixed number of tokens back, which a small
        transformer learns quickly. Written only from the walk's first row, the distance to
        the map varied and a micro student wrote ``o`` over holes; copying each map row
        first did not help (the copy of ``F F H F`` came out ``F F F F``). The former
        rationale gave each move's steps to the goal: a micro student learnt the Manhattan
        part and never the detours, and its 0.95 per decision was exactly the share of
        states where the first safe shortening move is on a shortest path.
        """
        size, (gr, gc) = len(self.map), self.goal
        r, c = pos
        if (gr, gc) != (size - 1, size - 1):
            return None  # a map given by hand may put the goal anywhere
        below = "edge" if r + 1 == size else _CELL_NAMES[self.map[r + 1][c]]
        reached: dict[tuple[int, int], bool] = {}
        rows = []
        for i in range(1, size):  # the walk starts below the agent: never in row 0
            marks = []
            for j in range(size):
                if i <= r or j < c:
                    marks.append("x")
                    continue
                ch = self.map[i][j]
                ok = ch != "H" and ((i, j) == (r + 1, c) or reached.get((i - 1, j), False)
                                    or reached.get((i, j - 1), False))
                reached[(i, j)] = ok
                marks.append("H" if ch == "H" else ("G" if ch == "G" and ok else "o" if ok else "x"))
            rows.append(f"row {i}: {' '.join(marks)}")
        done = reached.get((gr, gc), False)  # nothing is reached from a hole or the edge
        choice = "down" if done else "right"
        if action != choice:
            return None
        verdict = "G reached: go down." if done else "G not reached: go right."
        return f"down={below}. {', '.join(rows)}. {verdict}"

    def _lookahead(self, pos: tuple[int, int], action: str, steps: int) -> str:
        """The deterministic expert's reasoning, one move at a time, in the order of the
        ``Next to you`` line: the cell it leads to, copied from that line, and for a safe
        cell the steps to the goal by that move (every safe cell next to a cell that reaches
        the goal reaches it too), then the first of the shortest moves.

        ``Goal at (3,3). left=edge, down=hole, right=ice 5, up=edge. Go right; 5 steps left.``

        A small student learns this far better than the bare choice: each item starts with
        a copy of the observation, then a short distance, and the choice is the first
        minimum. (Copying the cell for every move, not only for holes, teaches the copy
        on every item; a student trained on the sparser form wrote distances over holes.
        ``down=`` occurs only in that line and here, while ``down`` alone also occurs in
        the action lists, which misled the copy.)
        """
        q = self.planner().q[self.state]
        size = len(self.map)
        parts = []
        for i, d in enumerate(ACTIONS):
            r, c = step_to(pos, d)
            if not (0 <= r < size and 0 <= c < size):
                parts.append(f"{d}=edge")
            elif self.map[r][c] == "H":
                parts.append(f"{d}=hole")
            else:
                parts.append(f"{d}={_CELL_NAMES[self.map[r][c]]} {int(q[i])}")
        left = f"{steps} step{'s' if steps != 1 else ''} left"
        return f"Goal at {fmt(self.goal)}. {', '.join(parts)}. Go {action}; {left}."


def _check_map(desc: Any) -> list[str]:
    """Validate a ``map`` reset option: equal-length rows of S/F/H/G with one S and one G."""
    ok = (isinstance(desc, (list, tuple)) and desc and all(isinstance(r, str) for r in desc)
          and len({len(r) for r in desc}) == 1 and all(set(r) <= set("SFHG") for r in desc))
    text = "".join(desc) if ok else ""
    if not ok or text.count("S") != 1 or text.count("G") != 1:
        raise ValueError(
            "frozenlake: reset option 'map' must be a list of equal-length strings of S, F, H "
            f"and G with exactly one S and one G, got {desc!r}"
        )
    return list(desc)
