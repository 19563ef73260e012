"""Taxi as text, with a shortest-path expert.

Description:
    Gymnasium's Taxi (``TaxiEnv``; Taxi-v3 in Dietterich's form, registered as Taxi-v4 in
    Gymnasium 1.4, which only changed the optional rain and fickle passenger, both off
    here). A taxi on a 5x5 grid with walls must drive to the passenger, waiting at one of
    four stands R (0,0), G (0,4), Y (4,0), B (4,3), pick them up, drive to their
    destination (another stand) and drop them off. The seed draws the taxi's cell, the
    passenger's stand and the destination (300 start states).

Observation:
    Gymnasium's text map (``|`` a wall between two cells, ``:`` no wall, letters the
    stands) with the taxi drawn as ``T``; then the taxi's (row, col) (row 0 at the top,
    col 0 at the left), where the passenger is (a stand, or in the taxi), the destination,
    and the walls around the taxi. About 230 characters. After a step, one line of
    feedback (picked up, dropped off, blocked by a wall, an illegal pickup/dropoff).

Actions:
    ``south``, ``north``, ``east``, ``west``, ``pickup``, ``dropoff`` (Gymnasium's action
    ids 0-5). Driving into a wall leaves the taxi in place. Any other text is an invalid
    action: the world does not move.

Reward:
    Gymnasium's: -1 per step, +20 for delivering the passenger, -10 for an illegal pickup
    or dropoff. (Dropping the passenger at a stand that is not the destination leaves them
    there, -1, as in Gymnasium.)

Termination:
    The passenger is dropped off at the destination (``success``); truncated after
    ``max_steps`` (200, Taxi's own limit, unless given).

Registered ids:
    ``taxi``. Option: ``max_steps``.

Expert:
    Shortest plan over the full state (taxi cell, passenger, destination), from the
    current state; of several shortest moves, the first in the order south, north, east,
    west. The walls cut the map into parts: top left (rows 0-1, cols 0-1, stand R), top
    right (rows 0-1, cols 2-4, G), bottom left (rows 3-4, col 0, Y), bottom middle (rows
    3-4, cols 1-2), bottom right (rows 3-4, cols 3-4, B), joined by the open middle row 2.
    Its rationale names where the taxi is headed now (the passenger's stand, or the
    destination once the passenger is in the taxi) and its part, then where the taxi is
    and its part (in the middle row: the part above or below it, on the side it is headed
    to), then the move::

        Passenger at Y (4,0), bottom left; taxi at (2,1), middle row over bottom middle. Go west.

    The move follows from that: the same part: straight at the target, rows first; in the
    middle row over another part: along the row toward the target; elsewhere: to the
    middle row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.envs.toy_text.taxi import MAP, TaxiEnv

from envs.toytext import Plan, ToyTextEnv, fmt

ACTIONS = ("south", "north", "east", "west", "pickup", "dropoff")
STANDS = ("R", "G", "Y", "B")
IN_TAXI = 4
MIDDLE_ROW = 2


def part(r: int, c: int) -> str:
    """The part of the map a cell lies in (the walls of rows 0-1 and 3-4 cut it up)."""
    if r == MIDDLE_ROW:
        return "middle row"
    if r < MIDDLE_ROW:
        return "top left" if c <= 1 else "top right"
    return "bottom left" if c == 0 else "bottom middle" if c <= 2 else "bottom right"


class TaxiTextEnv(ToyTextEnv):
    """Taxi as text (see the module docstring for the spec card).

    Args:
        max_steps: step limit (Taxi's own 200 by default).
        render_mode: None or "ansi".
    """

    env_id = "taxi"
    actions = ACTIONS
    compact_history = 0  # the observation is the whole state

    def __init__(self, max_steps: int = 200, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        if max_steps < 1:
            raise ValueError(f"taxi: max_steps must be >= 1, got {max_steps!r}")
        self.max_steps = max_steps
        self._new_game(TaxiEnv())
        self.locs: list[tuple[int, int]] = [tuple(loc) for loc in self.game.locs]
        self.instructions = (
            "You drive a taxi on a 5x5 grid drawn as a text map: '|' is a wall between two "
            "cells (you cannot drive through it), ':' means no wall, T is the taxi, and R, G, "
            "Y, B are the four stands where passengers wait and get off. Positions are "
            "(row,col): row 0 is the top row and col 0 the left column; south adds 1 to the "
            "row, east adds 1 to the column. Drive to the passenger, pick them up, drive to "
            "their destination and drop them off. Actions: south, north, east, west (one "
            "cell), pickup, dropoff. Reward: -1 per step, +20 for the delivery, -10 for a "
            f"pickup or dropoff where it is not allowed. You have at most {max_steps} steps."
        )

    # ------------------------------------------------------------------ world
    def _reset(self, seed: int | None, options: dict[str, Any] | None) -> None:
        self._reject_options(options)
        self._seed_game()

    def decode(self, state: int | None = None) -> tuple[int, int, int, int]:
        """(taxi row, taxi col, passenger stand index or 4 = in the taxi, destination index)."""
        return tuple(int(x) for x in self.game.decode(self.state if state is None else state))

    def goal_states(self) -> np.ndarray:
        # The passenger is at the destination only once delivered: Taxi never starts so.
        n = self.game.observation_space.n
        return np.array([self.decode(s)[2] == self.decode(s)[3] for s in range(n)])

    def _success(self) -> bool:
        _, _, p, d = self.decode()
        return p == d

    def _walls(self, r: int, c: int) -> list[str]:
        row = MAP[1 + r]
        blocked = {"north": r == 0, "south": r == 4, "east": row[2 * c + 2] != ":",
                   "west": row[2 * c] != ":"}
        return [d for d in ("north", "south", "east", "west") if blocked[d]]

    def _stand(self, i: int) -> str:
        return f"{STANDS[i]} {fmt(self.locs[i])}"

    # ------------------------------------------------------------------- text
    def _render(self) -> str:
        r, c, p, d = self.decode()
        lines = list(MAP)
        row = lines[1 + r]
        lines[1 + r] = row[: 2 * c + 1] + "T" + row[2 * c + 2:]
        passenger = "in the taxi" if p == IN_TAXI else f"at {self._stand(p)}"
        walls = ", ".join(self._walls(r, c)) or "none"
        return "\n".join(lines + [
            f"Taxi at {fmt((r, c))}. Passenger {passenger}. Destination {self._stand(d)}.",
            f"Walls next to the taxi: {walls}.",
        ])

    def describe_step(self, action: str, before: int, after: int, reward: float,
                      terminated: bool) -> str:
        r0, c0, p0, _ = self.decode(before)
        r1, c1, p1, _ = self.decode(after)
        if terminated:
            return "Passenger delivered to the destination!"
        if action == "pickup":
            return "Passenger picked up." if p1 == IN_TAXI and p0 != IN_TAXI else (
                "No passenger to pick up here (-10).")
        if action == "dropoff":
            if p0 == IN_TAXI and p1 != IN_TAXI:
                return f"Passenger dropped off at {STANDS[p1]}, which is not the destination."
            return "Cannot drop off here (-10)."
        if (r0, c0) == (r1, c1):
            return f"A wall blocks the way {action}; the taxi did not move."
        return ""

    def explain(self, plan: Plan) -> str:
        """Where the taxi is headed and its part of the map, where the taxi is and its
        part, then the move (see the module docstring).

        The parts turn the move into a few comparisons of coordinates. Given only the
        target and the taxi's cell, a micro student had to learn the move for each of the
        200 (cell, target) pairs; after 2,000 steps it still took the straight line where
        a wall makes the way go round (south from (2,1) toward Y), 7% of its decisions.
        """
        r, c, p, d = self.decode()
        action = ACTIONS[plan.action]
        assert plan.reachable and plan.steps is not None, "every Taxi state can deliver"
        target = self.locs[d] if p == IN_TAXI else self.locs[p]
        heading = f"Destination {self._stand(d)}" if p == IN_TAXI else f"Passenger at {self._stand(p)}"
        where = part(r, c)
        if where == "middle row":
            side = MIDDLE_ROW + (1 if target[0] > MIDDLE_ROW else -1)
            where = f"middle row {'over' if side > MIDDLE_ROW else 'under'} {part(side, c)}"
        move = {"pickup": "Pick up.", "dropoff": "Drop off."}.get(action, f"Go {action}.")
        return f"{heading}, {part(*target)}; taxi at {fmt((r, c))}, {where}. {move}"
