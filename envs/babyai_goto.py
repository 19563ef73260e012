"""The expert of BabyAI's "go to" missions: look around first, then a shortest path.

minigrid's ``BabyAIBot`` explores toward the nearest cell it has not seen, a choice that
depends on its memory of every cell and that no policy of the observation text can
predict: about a fifth of its GoToLocal actions. This expert acts only on what the text
says (the objects in view, the objects remembered, the walls, the last actions), so a
student can learn every one of its decisions:

1. The target is the first object in the "You see" list that fits the mission, else the
   first in "You remember". The move is the first action of a shortest path (turns count)
   to facing it, over the cells the agent knows: remembered objects and walls block,
   cells never seen are taken to be free. Of several shortest first actions it takes the
   plain one (forward while the target is ahead, else a turn toward the target's side),
   else forward, turn left, turn right.
2. No such object known yet: turn left, up to three times in a row (a full look around).
3. Still nothing after that: walk to the nearest state that faces a cell never seen.

Rationales repeat the mission, then check the known objects one by one, in the order the
observation lists them ("You see", then "You remember"), up to the target. Each check is
a unit of one shape: the mission's object, ``|``, the entry word for word as the
observation writes it, and a verdict, ``yes`` or ``no``; then the move:
``go to the blue ball: blue ball | 0 ahead 1 left red key: no; blue ball | 2 ahead 1 left
blue ball: yes: go forward.``; when the plain action is not the one taken,
``...: yes; blocked: turn right.``; with no target known, every entry checked ``no``, then
``not seen``: ``...: blue ball | 2 behind 0 right grey box: no: not seen: turn left.``
(``none`` when no object is known), or ``...: not seen, explore: go forward.``

Why this shape (BENCHMARKS.md, Training quality): a micro student learns copies far
sooner than it learns to find one entry among many. Reading the lists out gives it a run
of word-for-word copies; writing each entry after its position (always "A ahead|behind B
right|left") and repeating the mission's object before it puts the two names to compare
at the same distance from the verdict in every unit, so the verdict is one learnable
test of equality. With the lists read out as ``red key 1 left; blue ball 2 ahead, 1
left``, a micro student trained 1500 steps copied the entries right but read on past the
target; with these units and 3000 steps it took the expert's action in 40 of 44 held-out
expert states.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from minigrid.envs.babyai.core.verifier import GoToInstr

from envs.babyai_text import entry, remembered_objects, visible_cells, visible_objects
from envs.base import ExpertStep

#: minigrid's agent_dir (0 east, 1 south, 2 west, 3 north) as a step (dx, dy).
_STEP = ((1, 0), (0, 1), (-1, 0), (0, -1))
_ORDER = ("go forward", "turn left", "turn right")
_SCAN_TURNS = 3

State = tuple[int, int, int]
Obj = tuple[str, int, int]


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


def _fits(name: str, desc: Any) -> bool:
    """Whether an object name (``"red ball"``, ``"grey door (open)"``) fits ``desc``."""
    color, kind = name.split(" (")[0].split(" ", 1)
    return kind == desc.type and desc.color in (None, color)


def mission_object(mission: str) -> str:
    """The object a "go to" mission names: ``"go to the red ball"`` -> ``"red ball"``."""
    return mission.split(" the ")[-1].split(" a ")[-1]


def check_units(wanted: str, known: list[Obj], verdicts: list[bool]) -> str:
    """The rationale's checks of the known objects: ``"{wanted} | {entry}: yes|no"`` per
    object (``entry``, the observation's own text), joined by ``; `` (``none`` when no
    object is known)."""
    units = [f"{wanted} | {entry(*o)}: {'yes' if v else 'no'}" for o, v in zip(known, verdicts)]
    return "; ".join(units) or "none"


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
        desc = instr.desc
        seen, remembered = visible_objects(level), remembered_objects(level, env.memory)
        known = [*seen, *remembered]
        index = next((i for i, o in enumerate(known) if _fits(o[0], desc)), None)
        wanted = mission_object(level.mission)
        if index is not None:
            checks = check_units(wanted, known[:index + 1], [False] * index + [True])
            return self._go_to(f"{level.mission}: {checks}", *known[index][1:])
        where = f"{level.mission}: {check_units(wanted, known, [False] * len(known))}"
        if env.applied[-_SCAN_TURNS:] != ["turn left"] * _SCAN_TURNS:
            return ExpertStep("turn left", f"{where}: not seen: turn left.")
        action = self._explore()
        return ExpertStep(action, f"{where}: not seen, explore: {action}.")

    # ----------------------------------------------------------------- planning
    def _state(self) -> State:
        level = self.env.level
        return int(level.agent_pos[0]), int(level.agent_pos[1]), int(level.agent_dir)

    def _free(self) -> Callable[[int, int], bool]:
        """A cell is free unless a wall, a closed door, or an object in view or remembered
        is there (a cell never seen is taken to be free)."""
        level, memory = self.env.level, self.env.memory
        in_view = visible_cells(level)

        def free(x: int, y: int) -> bool:
            if not (0 <= x < level.grid.width and 0 <= y < level.grid.height):
                return False
            cell = level.grid.get(x, y)
            if cell is not None and cell.type in ("wall", "door") and not cell.can_overlap():
                return False
            known = in_view[(x, y)] if (x, y) in in_view else ("?" if (x, y) in memory else None)
            return known is None or (cell is not None and cell.can_overlap())
        return free

    def _go_to(self, where: str, ahead: int, right: int) -> ExpertStep:
        level = self.env.level
        fwd, rvec = level.dir_vec, level.right_vec
        target = (int(level.agent_pos[0] + ahead * fwd[0] + right * rvec[0]),
                  int(level.agent_pos[1] + ahead * fwd[1] + right * rvec[1]))
        free = self._free()
        start = self._state()

        def facing(s: State) -> bool:
            return (s[0] + _STEP[s[2]][0], s[1] + _STEP[s[2]][1]) == target

        plain = "go forward" if ahead > 0 else "turn right" if right > 0 else "turn left"
        costs = {a: steps_to_face(_successor(start, a, free), facing, free) for a in _ORDER}
        options = [a for a in (plain, *_ORDER) if costs[a] is not None]
        if not options:  # boxed in: nothing known leads there; look around
            return ExpertStep("turn left", f"{where}; no way there: turn left.")
        best = min(costs[a] for a in options)
        action = next(a for a in options if costs[a] == best)
        if action == plain:
            return ExpertStep(action, f"{where}: {action}.")
        return ExpertStep(action, f"{where}; blocked: {action}.")

    def _explore(self) -> str:
        """The first action toward the nearest state facing a cell never seen."""
        free, seen = self._free(), self.env.seen
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
