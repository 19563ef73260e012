"""BabyAI in words: the agent's egocentric view as short text, and the bot's plan explained.

Two pure functions of a minigrid state, kept apart from the env class so that each can be
read (and tested) on its own:

* ``describe(env, memory)``: the observation text a policy reads (heading, what is carried,
  the objects in the 7x7 view with their position relative to the agent, the objects seen
  earlier in the episode that are out of view now, the nearest walls straight ahead, left
  and right, the mission, the cells in front and beside, and where the mission's object
  is);
* ``explain(bot, action)``: one or two plain sentences that say why ``BabyAIBot`` chose
  ``action``, built from its subgoal stack and the scene.

Positions are always relative to the agent: "2 ahead, 1 left" means two steps forward and
one step to the left of the agent's current cell and heading.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from minigrid.core.world_object import WorldObj
from minigrid.envs.babyai.core.verifier import ObjDesc, PutNextInstr
from minigrid.utils.baby_ai_bot import (
    CloseSubgoal,
    DropSubgoal,
    GoNextToSubgoal,
    OpenSubgoal,
    PickupSubgoal,
)

#: minigrid's agent_dir (0..3) as a compass heading.
HEADINGS = ("east", "south", "west", "north")
#: Left turns in a row after which the agent has faced every way from its cell: the
#: ``Target`` line then says ``not seen, looked around`` (``describe``).
LOOK_AROUND = 3
#: Cell types that are not worth mentioning as objects.
_SCENERY = frozenset({"wall", "empty", "floor"})


def object_name(obj: WorldObj) -> str:
    """``"red ball"``, or ``"yellow door (locked)"`` for doors, with their state."""
    name = f"{obj.color} {obj.type}"
    if obj.type == "door":
        state = "locked" if obj.is_locked else "open" if obj.is_open else "closed"
        name += f" ({state})"
    return name


def relative_words(ahead: int, right: int) -> str:
    """Words for an offset in the agent's frame: ``"2 ahead, 1 left"``, ``"3 right"``."""
    parts = []
    if ahead > 0:
        parts.append(f"{ahead} ahead")
    elif ahead < 0:
        parts.append(f"{-ahead} behind")
    if right > 0:
        parts.append(f"{right} right")
    elif right < 0:
        parts.append(f"{-right} left")
    return ", ".join(parts) if parts else "here"


def relative_offset(env: Any, pos: Any) -> tuple[int, int]:
    """(steps ahead, steps right) of world cell ``pos`` seen from the agent."""
    d = np.asarray(pos) - np.asarray(env.agent_pos)
    return int(np.dot(d, env.dir_vec)), int(np.dot(d, env.right_vec))


Pos = tuple[int, int]
#: An object where the agent sees or remembers it: (name, steps ahead, steps right).
Obj = tuple[str, int, int]


def visible_cells(env: Any) -> dict[Pos, WorldObj | None]:
    """Every cell in the agent's view (world position -> what is there, None if empty),
    the agent's own cell excluded.

    Uses minigrid's own partial view (``gen_obs_grid``: 7x7, occluded by walls and closed
    doors), so the text shows exactly what the pixel/grid observation would show.
    """
    grid, vis_mask = env.gen_obs_grid()
    size = grid.width
    me = (size // 2, size - 1)
    pos, fwd, right = np.asarray(env.agent_pos), env.dir_vec, env.right_vec
    cells: dict[Pos, WorldObj | None] = {}
    for i in range(size):
        for j in range(grid.height):
            if (i, j) == me or not vis_mask[i, j]:
                continue
            world = pos + (size - 1 - j) * fwd + (i - size // 2) * right
            cells[(int(world[0]), int(world[1]))] = grid.get(i, j)
    return cells


def _nearest_first(objs: list[Obj]) -> list[Obj]:
    return sorted(objs, key=lambda o: (abs(o[1]) + abs(o[2]), o[0], -o[1], o[2]))


def visible_objects(env: Any, cells: dict[Pos, WorldObj | None]) -> list[Obj]:
    """Objects in the agent's view (``cells``: ``visible_cells(env)``, built once by the
    caller) as (name, ahead, right), nearest first, then by name."""
    return _nearest_first([(object_name(obj), *relative_offset(env, pos))
                           for pos, obj in cells.items()
                           if obj is not None and obj.type not in _SCENERY])


def remember(memory: dict[Pos, str], env: Any, cells: dict[Pos, WorldObj | None]) -> None:
    """Update ``memory`` (world cell -> object name, what the agent saw there last) with the
    current view ``cells``: objects seen now are written, cells seen empty now are forgotten."""
    for pos, obj in cells.items():
        if obj is not None and obj.type not in _SCENERY:
            memory[pos] = object_name(obj)
        else:
            memory.pop(pos, None)


def remembered_objects(env: Any, memory: dict[Pos, str],
                       cells: dict[Pos, WorldObj | None]) -> list[Obj]:
    """Objects of ``memory`` out of the view ``cells`` now, as (name, ahead, right), nearest first."""
    return _nearest_first([(name, *relative_offset(env, pos)) for pos, name in memory.items()
                           if pos not in cells and tuple(env.agent_pos) != pos])


def wall_distances(env: Any, cells: dict[Pos, WorldObj | None]) -> list[tuple[str, int]]:
    """(direction, cells) of the nearest wall straight ahead, left and right, where it is in
    the view ``cells``; 1 is the cell next to the agent."""
    pos, fwd, right = np.asarray(env.agent_pos), env.dir_vec, env.right_vec
    out = []
    for word, step in (("ahead", fwd), ("left", -right), ("right", right)):
        for k in range(1, env.agent_view_size):
            at = pos + k * step
            key = (int(at[0]), int(at[1]))
            if key not in cells:
                break
            if cells[key] is not None and cells[key].type == "wall":
                out.append((word, k))
                break
    return out


#: Object types in the order their lines are written, and each one's plural.
TYPES = ("key", "ball", "box", "door")
PLURAL = {"key": "keys", "ball": "balls", "box": "boxes", "door": "doors"}


def object_type(name: str) -> str:
    """The type word of an object name: ``"red ball"`` -> ``"ball"``, ``"grey door (open)"`` -> ``"door"``."""
    return name.split(" (")[0].split(" ", 1)[1]


def line_name(color: str | None, kind: str) -> str:
    """The one word that names a colour and type's line: ``("red", "ball")`` -> ``"RedBalls"``,
    ``(None, "ball")`` -> ``"Balls"`` (a mission without a colour). One word is one token of a
    student's byte-level BPE, so finding the mission's line is matching one token."""
    return f"{(color or '').capitalize()}{PLURAL[kind].capitalize()}"


def kind_name(name: str) -> str:
    """The line an object is listed in (``line_name``): ``"red ball"`` -> ``"RedBalls"``,
    ``"grey door (open)"`` -> ``"GreyDoors"``."""
    return line_name(name.split(" ", 1)[0], object_type(name))


def entry(name: str, ahead: int, right: int, remembered: bool = False) -> str:
    """One object of its line: where it is, after a door's state and, for an object out of
    view, ``remembered`` (``"2 ahead, 1 left"``, ``"(locked) 3 right"``, ``"remembered 1
    behind"``). The line itself names the colour and the type."""
    state = name.split(" (", 1)[1:]
    mark = ["remembered"] if remembered else []
    return " ".join([*mark, *(f"({s}" for s in state), relative_words(ahead, right)])


#: An object of a line: (name, ahead, right), and whether it is remembered (out of view).
Known = tuple[str, int, int, bool]


def listing(objs: list[Known]) -> str:
    """Objects of one line as it lists them: ``"2 ahead, 1 left; remembered 3 right"``."""
    return "; ".join(entry(*o) for o in objs)


def by_kind(objs: list[Known]) -> dict[str, list[Known]]:
    """``objs`` grouped by line (``kind_name``): types in ``TYPES`` order, the colours of a
    type in the order of their first object in ``objs``, each group in the order given."""
    groups: dict[str, list[Known]] = {}
    for kind in TYPES:
        for o in objs:
            if object_type(o[0]) == kind:
                groups.setdefault(kind_name(o[0]), []).append(o)
    return groups


def fits(env: Any, obj: Obj, desc: Any) -> bool:
    """Whether an object (name, ahead, right) seen or remembered from ``env``'s agent fits
    the mission's ``ObjDesc``: its type, its colour where the mission names one, and, for a
    mission that says where ("the key on your left"), one of the objects minigrid resolved
    at the mission's start (``desc.obj_poss``)."""
    name, ahead, right = obj
    if object_type(name) != desc.type or desc.color not in (None, name.split(" ", 1)[0]):
        return False
    if getattr(desc, "loc", None) is None:
        return True
    at = np.asarray(env.agent_pos) + ahead * np.asarray(env.dir_vec) + right * np.asarray(env.right_vec)
    return (int(at[0]), int(at[1])) in {(int(x), int(y)) for x, y in desc.obj_poss}


def read_out(seen: list[Obj], remembered: list[Obj], wanted: str) -> tuple[str, Obj | None]:
    """Where the mission's object is, as the ``Target`` line writes it, and that object.

    ``seen`` and ``remembered``: the objects in view and remembered that fit the mission,
    nearest first; ``wanted``: the mission's line (``"RedBalls"``, or ``"Balls"`` for a
    mission without a colour). The target is the nearest object in view, else the nearest
    remembered; the reading is its line's name and its entry as that line writes it:
    ``RedBalls: 2 ahead``; ``RedBalls: remembered 1 behind``; with none known,
    ``RedBalls: not seen`` (target None).
    """
    if seen:
        return f"{kind_name(seen[0][0])}: {entry(*seen[0])}", seen[0]
    if remembered:
        return f"{kind_name(remembered[0][0])}: {entry(*remembered[0], remembered=True)}", remembered[0]
    return f"{wanted}: not seen", None


def mission_object(instr: Any) -> ObjDesc | None:
    """The object of a mission about one object (go to, pick up, open), None for the others
    (put next to, sequences)."""
    desc = getattr(instr, "desc", None)
    return desc if isinstance(desc, ObjDesc) and desc.type in PLURAL else None


def target_reading(env: Any, seen: list[Obj], remembered: list[Obj]) -> tuple[str, Obj | None] | None:
    """``read_out`` of the state, ``seen`` and ``remembered`` its objects in view and
    remembered (``visible_objects``, ``remembered_objects``): the mission's object where
    the agent sees or remembers it, or None for a mission not about one object."""
    desc = mission_object(getattr(env, "instrs", None))
    if desc is None:
        return None
    return read_out([o for o in seen if fits(env, o, desc)], [o for o in remembered if fits(env, o, desc)],
                    line_name(desc.color, desc.type))


def front_thing(env: Any) -> str | None:
    """What is on the cell right in front of the agent, or None when it is empty: ``wall``,
    an object's name, or ``target, <name>`` for an object that fits the mission's object
    (``fits``; missions about one object), which the mission is then about to reach. That
    cell is always in view, so it is read off the grid."""
    return _near(env, 1, 0)


def side_thing(env: Any, side: str) -> str | None:
    """What is on the cell right beside the agent, ``side`` ``"left"`` or ``"right"`` (the
    cell a turn that way would face), as ``front_thing`` says it. Both are in the 7x7 view."""
    return _near(env, 0, 1 if side == "right" else -1)


def _near(env: Any, ahead: int, right: int) -> str | None:
    at = np.asarray(env.agent_pos) + ahead * np.asarray(env.dir_vec) + right * np.asarray(env.right_vec)
    obj = env.grid.get(int(at[0]), int(at[1]))
    if obj is None or obj.type in ("empty", "floor"):
        return None
    if obj.type == "wall":
        return "wall"
    name = object_name(obj)
    desc = mission_object(getattr(env, "instrs", None))
    return f"target, {name}" if desc is not None and fits(env, (name, ahead, right), desc) else name


def looked_around(applied: list[str]) -> bool:
    """Whether the last ``LOOK_AROUND`` actions (``applied``: the env's actions so far) were
    all left turns: the agent has faced every way from its cell. The ``Target`` line says so
    (``describe``) and the go-to expert then explores, from this one test."""
    return applied[-LOOK_AROUND:] == ["turn left"] * LOOK_AROUND


def describe(env: Any, memory: dict[Pos, str] | None = None,
             view: dict[Pos, WorldObj | None] | None = None, has_looked_around: bool = False) -> str:
    """The observation text of a BabyAI state (about 100-690 characters).

    Example::

        You face east and carry nothing.
        Known BlueKeys: remembered 2 behind, 3 right.
        Known RedBalls: 1 ahead, 1 left; 4 ahead; remembered 2 behind.
        Known BlueBalls: 3 ahead.
        Known GreyDoors: (closed) 3 ahead, 2 right.
        Walls: 4 ahead, 1 left.
        Mission: go to the red ball.
        In front: nothing.
        To the left: wall.
        To the right: nothing.
        Target: RedBalls: 1 ahead, 1 left.

    Objects come one line per colour and type, named in one word (``line_name``; the types
    in the order keys, balls, boxes, doors, the colours of a type in the order of their
    first object below): first the objects in view, nearest first, then those seen earlier
    in the episode that are out of view now (``memory``, see ``remember``), marked
    ``remembered``, where they are now relative to the agent, nearest first. ``Target``
    (missions about one object) names the mission's object as its line is named and says
    where the nearest one is, that line's first entry (``target_reading``), or ``not
    seen``, and ``not seen, looked around`` once the agent has turned left ``LOOK_AROUND``
    times in a row (``has_looked_around``, which the env sets from ``looked_around``: it has
    faced every way from where it stands, so turning on finds nothing new). "In front" names what blocks the cell ahead (an object, a wall) or says
    ``nothing``; "To the left" and "To the right" say the same of the cells beside, the
    ones a turn would face. An object there that the mission means is named ``target, red
    ball``: whether a turn reaches the target or needs a way around is then one word at a
    fixed place, not a comparison of the Target line's numbers. These four lines, which a
    go-to rationale reads, come last, at nearly fixed distances before the answer, because
    that is where a micro student reads: it learns lookups at fixed places, not to find a
    line by its name among lines of varying number (BENCHMARKS.md, Training quality). ``view``: the state's
    ``visible_cells``, where the caller has it already (built here if None).
    """
    carrying = f"a {object_name(env.carrying)}" if env.carrying else "nothing"
    lines = [f"You face {HEADINGS[env.agent_dir]} and carry {carrying}."]
    if view is None:  # one view for every line below (gen_obs_grid is the cost)
        view = visible_cells(env)
    seen = visible_objects(env, view)
    remembered = remembered_objects(env, memory, view) if memory else []
    known: list[Known] = [(*o, False) for o in seen] + [(*o, True) for o in remembered]
    lines += [f"Known {k}: {listing(objs)}." for k, objs in by_kind(known).items()] or ["Known: no objects."]
    walls = wall_distances(env, view)
    if walls:
        lines.append("Walls: " + ", ".join(f"{k} {word}" for word, k in walls) + ".")
    lines.append(f"Mission: {env.mission}.")
    # What a rationale reads comes last, at nearly fixed distances from the answer.
    lines.append(f"In front: {front_thing(env) or 'nothing'}.")
    lines += [f"To the {side}: {side_thing(env, side) or 'nothing'}." for side in ("left", "right")]
    target = target_reading(env, seen, remembered)
    if target is not None:
        looked = ", looked around" if has_looked_around and target[1] is None else ""
        lines.append(f"Target: {target[0]}{looked}.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- rationale
def _the(obj: WorldObj | None) -> str:
    return f"the {obj.color} {obj.type}" if obj is not None else "the target"


def _desc_words(desc: ObjDesc) -> str:
    words = " ".join(w for w in (desc.color, desc.type or "object") if w)
    return f"a {words}"


def _next_to(a: Any, b: Any) -> bool:
    return abs(int(a[0]) - int(b[0])) + abs(int(a[1]) - int(b[1])) == 1


def _target(bot: Any, goal: GoNextToSubgoal) -> tuple[WorldObj | None, Any]:
    """The object (if any) and the cell a GoNextTo subgoal is heading for, or (None, None)
    when its object has not been seen yet."""
    if isinstance(goal.datum, ObjDesc):
        return bot._find_obj_pos(goal.datum, goal.reason == "PutNext")
    if isinstance(goal.datum, WorldObj):
        return goal.datum, goal.datum.cur_pos
    return None, tuple(goal.datum)


def _purpose(bot: Any, index: int) -> str:
    """What the GoNextTo subgoal at ``stack[index]`` is for, as a phrase ("pick it up")."""
    goal = bot.stack[index]
    below = bot.stack[index - 1] if index > 0 else None
    carried = bot.mission.unwrapped.carrying
    if goal.reason == "PutNext":
        return f"put {_the(carried)} next to it"
    if goal.reason == "Open" or isinstance(below, OpenSubgoal):
        return "open it"
    if isinstance(below, PickupSubgoal):
        return "pick it up"
    if isinstance(below, DropSubgoal):
        return f"drop {_the(carried)} there"
    return ""


def _explain_goto(bot: Any, action: str) -> str:
    stack = bot.stack
    index = len(stack) - 1
    if stack[index].reason == "Explore":
        # Exploring on behalf of the nearest real goal below: say what is being searched for.
        wanted = next((g for g in reversed(stack[:index])
                       if isinstance(g, GoNextToSubgoal) and not g.is_exploratory()), None)
        if wanted is not None and isinstance(wanted.datum, ObjDesc):
            obj, _ = _target(bot, wanted)
            if obj is None:
                return f"I have not seen {_desc_words(wanted.datum)} yet: explore, so {action}."
        return f"I explore the unseen part of the room, so {action}."
    obj, pos = _target(bot, stack[index])
    purpose = _purpose(bot, index)
    env = bot.mission.unwrapped
    if pos is None:
        return f"I have not seen {_desc_words(stack[index].datum)} yet: explore, so {action}."
    ahead, right = relative_offset(env, pos)
    name = _the(obj) if obj is not None else "the free cell"
    goal = f"Go to {name}" + (f" to {purpose}" if purpose else "")
    if ahead == right == 0:  # the bot steps off a cell it must face (a door it stands in)
        return f"{goal}. I stand on it and must face it, so {action}."
    if _heads_for(action, ahead, right):
        return f"{goal}. It is {relative_words(ahead, right)}, so {action}."
    return f"{goal}. It is {relative_words(ahead, right)}; the way is blocked, so {action}."


def _heads_for(action: str, ahead: int, right: int) -> bool:
    """Whether ``action`` visibly heads for a target at (ahead, right); when it does not,
    the bot's path goes around something and the rationale says so."""
    if action == "go forward":
        return ahead > 0
    if action in ("turn left", "turn right"):
        side = -1 if action == "turn left" else 1
        return right * side > 0 or (right == 0 and ahead <= 0)
    return True


def explain(bot: Any, action: str) -> str:
    """Why ``bot`` suggested ``action`` (a vocabulary string), from its top subgoal.

    Call right after ``bot.replan`` (the top of the stack is the subgoal that chose it).
    """
    if not bot.stack:
        return f"The mission should be complete; I look around, so {action}."
    env = bot.mission.unwrapped
    top = bot.stack[-1]
    front = env.grid.get(*env.front_pos)
    if isinstance(top, GoNextToSubgoal):
        return _explain_goto(bot, action)
    if isinstance(top, PickupSubgoal):
        return f"{_the(front).capitalize()} is in front of me: pick it up."
    if isinstance(top, DropSubgoal):
        instr = env.instrs
        if isinstance(instr, PutNextInstr) and any(env.carrying is o for o in instr.desc_move.obj_set):
            fixed = next((o for o in instr.desc_fixed.obj_set
                          if o.cur_pos is not None and _next_to(o.cur_pos, env.front_pos)), None)
            return f"The cell in front of me is next to {_the(fixed)}: drop {_the(env.carrying)}."
        return f"I do not need {_the(env.carrying)} now: drop it here."
    if isinstance(top, OpenSubgoal) and front is not None and front.type == "door":
        if front.is_locked:
            return f"I carry the {front.color} key: toggle to unlock the {front.color} door."
        return f"The {front.color} door in front of me is closed: toggle to open it."
    if isinstance(top, CloseSubgoal):
        return "The door in front of me should be closed again: toggle it."
    return f"I follow my plan, so {action}."
