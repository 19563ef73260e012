"""BabyAI in words: the agent's egocentric view as short text, and the bot's plan explained.

Two pure functions of a minigrid state, kept apart from the env class so that each can be
read (and tested) on its own:

* ``describe(env)``: the observation text a policy reads (mission, heading, what is carried,
  the objects in the 7x7 view with their position relative to the agent, adjacent walls);
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


def visible_objects(env: Any) -> list[tuple[str, int, int]]:
    """Objects in the agent's view as (name, ahead, right), nearest first, then by name.

    Uses minigrid's own partial view (``gen_obs_grid``: 7x7, occluded by walls and closed
    doors), so the text shows exactly what the pixel/grid observation would show.
    """
    grid, vis_mask = env.gen_obs_grid()
    size = grid.width
    me = (size // 2, size - 1)
    seen = []
    for i in range(size):
        for j in range(grid.height):
            if (i, j) == me or not vis_mask[i, j]:
                continue
            cell = grid.get(i, j)
            if cell is None or cell.type in _SCENERY:
                continue
            seen.append((object_name(cell), size - 1 - j, i - size // 2))
    seen.sort(key=lambda o: (abs(o[1]) + abs(o[2]), o[0], -o[1], o[2]))
    return seen


def adjacent_walls(env: Any) -> list[str]:
    """Which of ahead/left/right is a wall cell right next to the agent."""
    pos, fwd, right = np.asarray(env.agent_pos), env.dir_vec, env.right_vec
    out = []
    for word, cell_pos in (("ahead", pos + fwd), ("left", pos - right), ("right", pos + right)):
        cell = env.grid.get(*cell_pos)
        if cell is not None and cell.type == "wall":
            out.append(word)
    return out


def describe(env: Any) -> str:
    """The observation text of a BabyAI state (about 100-350 characters).

    Example::

        Mission: go to the red ball.
        You face east and carry nothing.
        You see: red ball 2 ahead, 1 left; grey door (closed) 3 ahead.
        Walls next to you: left.
    """
    carrying = f"a {object_name(env.carrying)}" if env.carrying else "nothing"
    lines = [
        f"Mission: {env.mission}.",
        f"You face {HEADINGS[env.agent_dir]} and carry {carrying}.",
    ]
    objs = visible_objects(env)
    if objs:
        lines.append("You see: " + "; ".join(
            f"{name} {relative_words(a, r)}" for name, a, r in objs) + ".")
    else:
        lines.append("You see: no objects.")
    walls = adjacent_walls(env)
    if walls:
        lines.append("Walls next to you: " + ", ".join(walls) + ".")
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
