"""The expert of BabyAI's "go to" missions: look around first, then a shortest path.

minigrid's ``BabyAIBot`` explores toward the nearest cell it has not seen, a choice that
depends on its memory of every cell and that no policy of the observation text can
predict: about a fifth of its GoToLocal actions. This expert acts only on what the text
says (the objects in view, the objects remembered, the walls, the last actions), so a
student can learn every one of its decisions:

1. The target is the nearest object that fits the mission in view (the first entry of the
   mission's line, ``Known RedBalls: 2 ahead``), else the nearest remembered (the line's
   first entry marked ``remembered``). The move is the first action of a shortest path
   (turns count) to facing it, over the cells the agent knows: remembered objects and walls
   block, cells never seen are taken to be free. Of several shortest first actions it
   takes the plain one (forward while the target is ahead, else a turn toward the target's
   side), else the turn toward the target's side, else forward, turn left, turn right.
2. No such object known yet: turn left, up to three times in a row (a full look around).
3. Still nothing after that (the Target line says ``not seen, looked around``): walk to the
   nearest state that faces a cell never seen.

Rationales copy the observation's ``Target`` line (the target's line name and its first
entry, word for word), then say what is in front (``cell_word``: nothing, wall, target,
blocked by another object, or an open door), what a turn would face (the plain turn's side;
both sides when the way ahead is shut) and the move: ``BlueBalls: 2 ahead, 1 left; in
front: nothing: go forward.``; with the target out of view, ``BlueBalls: remembered 1
behind; ...``; when the plain action is a turn, ``...; in front: nothing; to the left:
target: turn left.``, or ``...; to the left: blocked; go around: go forward.`` when another
object is there; with the way ahead shut, ``...; in front: blocked; to the left: wall; to
the right: nothing; go around: turn right.``; with no target known, ``BlueBalls: not seen:
turn left.``, or, after three left turns in a row (the Target line then says so), ``BlueBalls:
not seen, looked around, explore: go forward.`` Of two equally short ways around it turns
toward the target's side (left when the target is straight ahead).

So the reading is a copy from a fixed place, the ``Target`` line, last in the
observation, and the class of a cell whose line is named once (``In front``, ``To the
left``). Earlier layouts made the student find the target's line by its name among the
object lines and copy what followed it (an induction copy), or copy the colour and type
of what blocks the way; a micro student learnt neither within the bar's budget
(BENCHMARKS.md, Training quality): it learns lookups at fixed distances, and which of a
few words a named line calls for, not copies by name. The object lines stay, for the way
around what blocks the path.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from minigrid.envs.babyai.core.verifier import GoToInstr

from envs.babyai_text import (front_thing, looked_around, remembered_objects, side_thing, target_reading,
                              visible_cells, visible_objects)
from envs.base import ExpertStep

#: minigrid's agent_dir (0 east, 1 south, 2 west, 3 north) as a step (dx, dy).
_STEP = ((1, 0), (0, 1), (-1, 0), (0, -1))
_ORDER = ("go forward", "turn left", "turn right")

State = tuple[int, int, int]


def _successor(s: State, action: str, free: Callable[[int, int], bool]) -> State:
    x, y, d = s
    if action == "turn left":
        return x, y, (d - 1) % 4
    if action == "turn right":
        return x, y, (d + 1) % 4
    fx, fy = x + _STEP[d][0], y + _STEP[d][1]
    return (fx, fy, d) if free(fx, fy) else s


def steps_to_face(start: State, goal: Callable[[State], bool], free: Callable[[int, int], bool],
                  limit: int = 4096) -> int | None:
    """Fewest actions from ``start`` to a state where ``goal`` holds (None if none)."""
    seen, queue = {start: 0}, deque([start])
    while queue:
        s = queue.popleft()
        if goal(s):
            return seen[s]
        if len(seen) > limit:
            break
        for a in _ORDER:
            n = _successor(s, a, free)
            if n not in seen:
                seen[n] = seen[s] + 1
                queue.append(n)
    return None


def cell_word(thing: str | None) -> str:
    """What a rationale says of the cell in front or beside (``thing``: ``front_thing``,
    ``side_thing``): ``nothing``, ``wall``, ``target`` (an object the mission means: a turn
    there ends the mission), ``open door`` (a way through), or ``blocked`` (any other
    object: which one never changes the move)."""
    if thing is None:
        return "nothing"
    if thing == "wall" or thing.startswith("target, "):
        return thing.split(",")[0]
    return "open door" if thing.endswith("door (open)") else "blocked"


class GoToExpert:
    """The expert of a ``BabyAITextEnv`` whose missions are "go to X" (module docstring).

    It reads the env's current state, its memory of objects and its applied actions, and
    keeps no state of its own, so it acts from any state whoever reached it (DAgger).
    """

    def __init__(self, env: Any) -> None:
        self.env = env

    def act(self) -> ExpertStep:
        env = self.env
        if env.episode == 0:
            raise RuntimeError(f"{env.env_id}: call reset() before asking the expert to act")
        level = env.level
        instr = level.instrs
        if not isinstance(instr, GoToInstr):
            raise TypeError(f"{env.env_id}: GoToExpert needs a 'go to' mission, got {level.mission!r}")
        view = visible_cells(level)  # one view for the whole decision (gen_obs_grid is the cost)
        reading = target_reading(level, visible_objects(level, view), remembered_objects(level, env.memory, view))
        if reading is None:
            raise TypeError(f"{env.env_id}: GoToExpert needs a mission about one object, got {level.mission!r}")
        where, target = reading
        if target is not None:
            return self._go_to(where, *target[1:], view)
        if not looked_around(env.applied):
            return ExpertStep("turn left", f"{where}: turn left.")
        action = self._explore(view)  # the Target line says so too
        return ExpertStep(action, f"{where}, looked around, explore: {action}.")

    # ----------------------------------------------------------------- planning
    def _state(self) -> State:
        level = self.env.level
        return int(level.agent_pos[0]), int(level.agent_pos[1]), int(level.agent_dir)

    def _free(self, in_view: dict[Any, Any]) -> Callable[[int, int], bool]:
        """A cell is free unless a wall, a closed door, or an object in view (``in_view``:
        ``visible_cells``) or remembered is there (a cell never seen is taken to be free)."""
        level, memory = self.env.level, self.env.memory

        def free(x: int, y: int) -> bool:
            if not (0 <= x < level.grid.width and 0 <= y < level.grid.height):
                return False
            cell = level.grid.get(x, y)
            if cell is not None and cell.type in ("wall", "door") and not cell.can_overlap():
                return False
            known = in_view[(x, y)] if (x, y) in in_view else ("?" if (x, y) in memory else None)
            return known is None or (cell is not None and cell.can_overlap())
        return free

    def _go_to(self, where: str, ahead: int, right: int, view: dict[Any, Any]) -> ExpertStep:
        level = self.env.level
        fwd, rvec = level.dir_vec, level.right_vec
        target = (int(level.agent_pos[0] + ahead * fwd[0] + right * rvec[0]),
                  int(level.agent_pos[1] + ahead * fwd[1] + right * rvec[1]))
        free = self._free(view)
        start = self._state()

        def facing(s: State) -> bool:
            return (s[0] + _STEP[s[2]][0], s[1] + _STEP[s[2]][1]) == target

        toward = "turn right" if right > 0 else "turn left"
        plain = "go forward" if ahead > 0 else toward
        costs = {a: steps_to_face(_successor(start, a, free), facing, free) for a in _ORDER}
        options = [a for a in (plain, toward, *_ORDER) if costs[a] is not None]
        front = cell_word(front_thing(level))
        where = f"{where}; in front: {front}"
        # What a turn would face: the plain turn's side, or both sides when the way ahead is shut.
        sides = [plain.split()[1]] if plain != "go forward" else ["left", "right"] if front != "nothing" else []
        for side in sides:
            where = f"{where}; to the {side}: {cell_word(side_thing(level, side))}"
        if not options:  # boxed in: nothing known leads there; look around
            return ExpertStep("turn left", f"{where}; no way there: turn left.")
        best = min(costs[a] for a in options)
        action = next(a for a in options if costs[a] == best)
        if action == plain:
            return ExpertStep(action, f"{where}: {action}.")
        return ExpertStep(action, f"{where}; go around: {action}.")

    def _explore(self, view: dict[Any, Any]) -> str:
        """The first action toward the nearest state facing a cell never seen."""
        free, seen = self._free(view), self.env.seen
        level = self.env.level

        def faces_unseen(s: State) -> bool:
            front = (s[0] + _STEP[s[2]][0], s[1] + _STEP[s[2]][1])
            inside = 0 < front[0] < level.grid.width - 1 and 0 < front[1] < level.grid.height - 1
            return inside and front not in seen

        start = self._state()
        costs = {a: steps_to_face(_successor(start, a, free), faces_unseen, free) for a in _ORDER}
        options = [a for a in _ORDER if costs[a] is not None]
        if not options:
            return "turn left"
        best = min(costs[a] for a in options)
        return next(a for a in options if costs[a] == best)
