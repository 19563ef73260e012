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
    current state: it says where the passenger or the destination is, where the taxi is,
    for each move (south, north, east, west) a wall or the steps to the delivery that way,
    then the first of the shortest moves and the steps left.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.envs.toy_text.taxi import MAP, TaxiEnv

from envs.toytext import Plan, ToyTextEnv, fmt

ACTIONS = ("south", "north", "east", "west", "pickup", "dropoff")
STANDS = ("R", "G", "Y", "B")
IN_TAXI = 4


class TaxiTextEnv(ToyTextEnv):
    """Taxi as text (see the module docstring for the spec card).

    Args:
        max_steps: step limit (Taxi's own 200 by default).
        render_mode: None or "ansi".
    """

    env_id = "taxi"
    actions = ACTIONS

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
        self.compact_instructions = (
            "Taxi: drive to the passenger, pickup, drive to the destination, dropoff. '|' is "
            "a wall. (row,col), row 0 at the top. Actions: south, north, east, west, pickup, "
            "dropoff."
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
        r, c, p, d = self.decode()
        action = ACTIONS[plan.action]
        assert plan.reachable and plan.steps is not None, "every Taxi state can deliver"
        left = f"{plan.steps} step{'s' if plan.steps != 1 else ''} left"
        if action == "pickup":
            return f"The passenger waits here at {self._stand(p)}: pick up; {left}."
        if action == "dropoff":
            return f"The taxi is at the destination {self._stand(d)}: drop off; {left}."
        if p == IN_TAXI:
            where = f"Passenger in the taxi, destination {self._stand(d)}"
        else:
            where = f"Passenger at {self._stand(p)}"
        return f"{where}; taxi at {fmt((r, c))}. {self._lookahead()}. Go {action}; {left}."

    def _lookahead(self) -> str:
        """Each move in action order: ``wall`` when it leaves the taxi in place, else the
        steps to the delivery that way (``south 15, north 13, east wall, west wall``).

        A small student learns the choice far better with this than from the bare move:
        each item is a look-up on the fixed map, and the move is the first minimum.
        """
        s = self.state
        q = self.planner().q[s]
        parts = []
        for i, a in enumerate(ACTIONS[:4]):
            nxt = self.game.P[s][i][0][1]
            parts.append(f"{a} wall" if nxt == s else f"{a} {int(q[i])}")
        return ", ".join(parts)
