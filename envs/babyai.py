"""BabyAI (minigrid) as text, with minigrid's ``BabyAIBot`` as the expert.

Description:
    The agent is in a grid room (8x8; two rooms joined by a locked door for ``open``
    missions) with keys, balls and boxes, and must carry out a mission in the baby
    language: "go to the red ball", "pick up a blue key", "open the yellow door",
    "put the grey ball next to the green box", "pick up the red ball, then go to the blue
    box". It sees only a 7x7 square in front of it, blocked by walls and closed doors.

Observation:
    Text (``envs.babyai_text.describe``): the heading (east/south/west/north),
    what the agent carries, the objects it knows one line per colour and type, the line
    named in one word, with each one's position relative to the agent ("Known RedBalls: 2
    ahead, 1 left; 3 ahead; remembered 1 behind."; those in view first, nearest first, then
    those it saw earlier in the episode and cannot see now, where they are now), the
    nearest wall straight ahead, left and right where it is in view ("Walls: 3 ahead, 1
    left."), the mission, what is right in front ("In front: nothing." / "wall" / an
    object, "target, red ball" for one the mission means) and right beside, the cells a turn
    would face ("To the left: red box.", "To the right: nothing."), and, for a mission about
    one object, that object named as its line and where the nearest one is, in view else
    remembered, as its line writes it ("Target: RedBalls: 2 ahead, 1 left."; "Target:
    RedBalls: not seen.", "not seen, looked around." after three left turns in a row).
    What a go-to rationale reads comes last, next to the answer.
    Usually under 700 characters.

Actions:
    ``turn left``, ``turn right``, ``go forward``, ``pick up``, ``drop``, ``toggle``
    (minigrid's actions without ``done``). All six are always legal; as in minigrid, one
    that has no effect (walking into a wall) still spends a step. Any other text is an
    invalid action: the world does not move.

Reward:
    minigrid's: ``1 - 0.9 * (steps / max_steps)`` when the mission is completed, else 0.

Termination:
    The mission is completed (``success``) or failed (minigrid's verifier); truncated at
    ``max_steps`` (minigrid's own limit for the level and mission, unless given).

Registered ids (task):
    ``babyai-goto-local`` (BabyAI-GoToLocal-v0), ``babyai-goto-redball``
    (BabyAI-GoToRedBall-v0: always the red ball, 7 distractors of any kind),
    ``babyai-pickup-loc`` (BabyAI-PickupLoc-v0),
    and the five mission kinds of BabyAI-MixedTrainLocal-v0 as separate envs:
    ``babyai-mixed-goto`` (mixed:goto), ``babyai-mixed-pickup`` (mixed:pickup),
    ``babyai-mixed-open`` (mixed:open), ``babyai-mixed-putnext`` (mixed:putnext),
    ``babyai-mixed-pickup-seq-goto`` (mixed:pick_up_seq_go_to).

Expert:
    "Go to" missions (``babyai-goto-local``, ``babyai-goto-redball``, ``babyai-mixed-goto``):
    ``GoToExpert`` (``envs.babyai_goto``), which acts only on what the observation and the last actions
    say: a look around (up to three left turns) until an object that fits is seen or
    remembered, then a shortest path to facing it. Other missions: ``BabyAIBot``
    (``BabyAIExpert``), told every action actually applied, so it keeps working when
    another policy chose earlier actions (DAgger).
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Any

import numpy as np

from minigrid.core.roomgrid import RoomGrid
from minigrid.envs.babyai import GoToLocal, GoToRedBall, PickupLoc
from minigrid.envs.babyai.core.roomgrid_level import RoomGridLevel
from minigrid.envs.babyai.core.verifier import (
    AfterInstr,
    BeforeInstr,
    GoToInstr,
    Instr,
    ObjDesc,
    OpenInstr,
    PickupInstr,
    PutNextInstr,
)
from minigrid.utils.baby_ai_bot import BabyAIBot, DropSubgoal, GoNextToSubgoal

from envs.babyai_goto import GoToExpert
from envs.babyai_text import describe, explain, looked_around, remember, visible_cells
from envs.base import ExpertStep, TextEnv

logger = logging.getLogger(__name__)

#: Our action vocabulary, in minigrid's action order (left, right, forward, pickup, drop,
#: toggle); minigrid's ``done`` is left out.
ACTIONS = ("turn left", "turn right", "go forward", "pick up", "drop", "toggle")
ACTION_IDS = {name: i for i, name in enumerate(ACTIONS)}

_LEVELS = {"BabyAI-GoToLocal-v0": GoToLocal, "BabyAI-GoToRedBall-v0": GoToRedBall,
           "BabyAI-PickupLoc-v0": PickupLoc}
#: Tasks whose missions are all "go to X": their expert is ``GoToExpert``.
_GOTO_TASKS = frozenset({"BabyAI-GoToLocal-v0", "BabyAI-GoToRedBall-v0", "mixed:goto"})

INSTRUCTIONS = """\
You are an agent in a BabyAI grid world. Carry out the mission given in each observation.
You see a 7x7 area in front of you; walls and closed doors block the view. Positions are
relative to you: "2 ahead, 1 left" is two steps forward and one step to your left.
"Known RedBalls: ..." lists the red balls you know, those in view first, nearest first,
then those out of view that you saw before ("remembered"); "Target" names the mission's
object the same way and says where the nearest one is ("not seen, looked around": not
seen after turning all the way round).
Objects: keys, balls and boxes (they block the way), and doors (open, closed or locked; a
locked door opens with the key of its color).
Actions:
- turn left / turn right: turn 90 degrees in place.
- go forward: move one step ahead (only onto an empty cell or an open door).
- pick up: pick up the object right in front of you (you carry at most one).
- drop: put what you carry on the empty cell in front of you.
- toggle: open or close the door in front of you (unlock it if you carry its key).
"Go to X" is done when you face X from the cell next to it. "Put X next to Y": drop X on
a cell beside Y. Finish in as few steps as you can."""


class MixedLocalLevel(RoomGridLevel):
    """BabyAI-MixedTrainLocal-v0's worlds and missions, restricted to one mission kind.

    As in the original level (BabyAI-Text, Carta et al. 2023): one 8x8 room with 9 random
    objects (10 for ``putnext`` and ``pick_up_seq_go_to``), or for ``open`` two rooms joined
    by a locked door whose key lies, with 8 more objects, in the agent's room. Every object
    is reachable without moving another, and a mission that names one of the pairs the
    original holds out for testing (yellow box, red key, red door, green ball, grey door)
    is drawn again.

    Args:
        kind: one of ``KINDS``.
        room_size: side of a room, walls included.
        num_dists: objects besides the extra ones a kind needs.
    """

    KINDS = ("goto", "pickup", "open", "putnext", "pick_up_seq_go_to")
    HELD_OUT = ("yellow box", "red key", "red door", "green ball", "grey door")
    DOOR_COLORS = ("yellow", "green", "blue", "purple")
    MAX_TRIES = 1000

    def __init__(self, kind: str, room_size: int = 8, num_dists: int = 8, **kwargs: Any) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"kind: expected one of {', '.join(self.KINDS)}, got {kind!r}")
        self.kind = kind
        self.num_dists = num_dists
        num_cols = 2 if kind == "open" else 1
        super().__init__(room_size=room_size, num_rows=1, num_cols=num_cols, **kwargs)

    def gen_mission(self) -> None:
        for attempt in range(self.MAX_TRIES):
            if attempt:
                RoomGrid._gen_grid(self, self.width, self.height)  # a fresh, empty layout
            instr = self._sample_open() if self.kind == "open" else self._sample_one_room()
            if (instr is not None and self.check_objs_reachable(raise_exc=False)
                    and not any(s in instr.surface(self) for s in self.HELD_OUT)):
                self.instrs = instr
                return
        raise RecursionError(f"mixed:{self.kind}: no valid mission in {self.MAX_TRIES} tries")

    def _sample_open(self) -> Instr:
        color = self._rand_elem(self.DOOR_COLORS)
        locked = self._rand_int(0, 2)
        free = 1 - locked
        # Door index of the wall between the two rooms, seen from the locked room.
        self.add_door(locked, 0, 2 if locked == 1 else 0, color=color, locked=True)
        self.add_object(free, 0, "key", color)
        self.add_distractors(free, 0, num_distractors=self.num_dists, all_unique=False)
        self.place_agent(free, 0)
        return OpenInstr(ObjDesc("door", self._rand_elem([None, color])))

    def _sample_one_room(self) -> Instr | None:
        self.place_agent(0, 0)
        two = self.kind in ("putnext", "pick_up_seq_go_to")
        objs = self.add_distractors(0, 0, num_distractors=self.num_dists + 1 + two, all_unique=False)
        a = self._rand_elem(objs)
        desc_a = ObjDesc(a.type, a.color)
        if self.kind == "goto":
            return GoToInstr(desc_a)
        if self.kind == "pickup":
            return PickupInstr(desc_a)
        b = self._rand_elem(objs)
        desc_b = ObjDesc(b.type, b.color)
        same = (a.type, a.color) == (b.type, b.color)
        if self.kind == "putnext":
            if same:  # "put a red ball next to a red ball" is refused by minigrid's validation
                return None
            instr = PutNextInstr(desc_a, desc_b)
            instr.reset_verifier(self)
            return None if instr.objs_next() else instr
        # Pick up A, then go to B; B may share A's description only if two such objects exist.
        if same and len(desc_a.find_matching_objs(self)[0]) < 2:
            return None
        if self._rand_elem(["before", "after"]) == "before":
            return BeforeInstr(PickupInstr(desc_a), GoToInstr(desc_b))
        return AfterInstr(GoToInstr(desc_b), PickupInstr(desc_a))


def make_level(task: str, max_steps: int | None = None) -> RoomGridLevel:
    """The minigrid level for ``task``: a BabyAI level id or ``"mixed:KIND"``."""
    if task.startswith("mixed:"):
        kind = task.removeprefix("mixed:")
        if kind not in MixedLocalLevel.KINDS:
            raise ValueError(
                f"task {task!r}: expected mixed:KIND with KIND one of "
                f"{', '.join(MixedLocalLevel.KINDS)}, got {kind!r}"
            )
        return MixedLocalLevel(kind, max_steps=max_steps)
    if task not in _LEVELS:
        valid = [*_LEVELS, *(f"mixed:{k}" for k in MixedLocalLevel.KINDS)]
        raise ValueError(f"task: expected one of {', '.join(valid)}, got {task!r}")
    return _LEVELS[task](max_steps=max_steps)


class BabyAITextEnv(TextEnv):
    """A BabyAI level as a ``TextEnv`` (the module docstring is the spec card).

    Args:
        task: ``"BabyAI-GoToLocal-v0"``, ``"BabyAI-GoToRedBall-v0"``, ``"BabyAI-PickupLoc-v0"``
            or ``"mixed:KIND"`` (KIND: goto, pickup, open, putnext, pick_up_seq_go_to).
        max_steps: step limit; None uses minigrid's own limit for the level and mission.
        render_mode: None or ``"ansi"`` (the observation text).
    """

    actions = ACTIONS
    instructions = INSTRUCTIONS

    def __init__(self, task: str, max_steps: int | None = None, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps: expected an int >= 1 or None, got {max_steps!r}")
        self.task = task
        self.level = make_level(task, max_steps)
        self._fixed_max_steps = max_steps
        self.env_id = f"babyai:{task}"
        self.episode = 0  # counts resets, so an expert can tell a new episode from the old
        self._success_flag = False
        self._expert: BabyAIExpert | GoToExpert | None = None
        #: This episode's memory: world cell -> the object last seen there (the text's
        #: "remembered"), every cell ever in view, and the actions applied.
        self.memory: dict[tuple[int, int], str] = {}
        self.seen: set[tuple[int, int]] = set()
        self.applied: list[str] = []
        self._view: dict[tuple[int, int], Any] = {}

    # ----------------------------------------------------------------- hooks
    def _reset(self, seed: int | None, options: dict[str, Any] | None) -> None:
        # A given seed goes to minigrid unchanged (same world as gym.make(task).reset(seed));
        # without one, draw it from our own generator so seeded sequences stay reproducible.
        inner_seed = seed if seed is not None else int(self.np_random.integers(2**31 - 1))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):  # minigrid prints rejected samples
            self.level.reset(seed=inner_seed)
        if out.getvalue():
            logger.debug("%s seed %s: minigrid said %s", self.env_id, inner_seed, out.getvalue().strip())
        self.max_steps = self._fixed_max_steps or int(self.level.max_steps)
        self.episode += 1
        self._success_flag = False
        self.memory, self.seen, self.applied = {}, set(), []
        self._look()
        if isinstance(self._expert, BabyAIExpert):
            self._expert.restart()

    def _look(self) -> None:
        """Add what is in view now to the episode's memory; keep the view for ``_render``,
        which follows every reset and step with the state unchanged."""
        self._view = visible_cells(self.level)
        remember(self.memory, self.level, self._view)
        self.seen.update(self._view)

    def _apply(self, action: str) -> tuple[float, bool, str]:
        _, reward, terminated, _, _ = self.level.step(ACTION_IDS[action])
        self._success_flag = bool(terminated and reward > 0)
        self.applied.append(action)
        self._look()
        if isinstance(self._expert, BabyAIExpert) and not terminated:
            self._expert.observe(ACTION_IDS[action])
        return float(reward), bool(terminated), ""

    def _render(self) -> str:
        return describe(self.level, self.memory, self._view, looked_around(self.applied))

    def _success(self) -> bool:
        return self._success_flag

    def expert(self) -> BabyAIExpert | GoToExpert:
        """The env's expert (one per env; it follows every reset): ``GoToExpert`` for "go
        to" tasks, else minigrid's BabyAIBot."""
        if self._expert is None:
            self._expert = GoToExpert(self) if self.task in _GOTO_TASKS else BabyAIExpert(self)
        return self._expert


def _remaining(instr: Instr) -> Instr:
    """The part of a (sequence) instruction that minigrid's verifier has not seen done."""
    if isinstance(instr, BeforeInstr) and getattr(instr, "a_done", None) == "success":
        return instr.instr_b
    if isinstance(instr, AfterInstr) and getattr(instr, "b_done", None) == "success":
        return instr.instr_a
    return instr


def _fresh_bot(level: RoomGridLevel, seen: np.ndarray | None) -> BabyAIBot:
    """A BabyAIBot for the level's current state.

    At the start of an episode this is the bot as minigrid builds it. Mid-episode (a first
    call after someone else acted, or a rebuild after the bot failed) it plans only what
    is left of the mission, first drops what the agent carries if the plan needs free
    hands, and remembers the cells ``seen`` so far.
    """
    bot = BabyAIBot(level)
    if seen is not None:
        bot.vis_mask |= seen
    if level.step_count == 0:
        return bot
    bot.stack = []
    todo = _remaining(level.instrs)
    carried = level.carrying
    if isinstance(todo, PutNextInstr) and any(carried is o for o in todo.desc_move.obj_set):
        bot.stack += [DropSubgoal(bot), GoNextToSubgoal(bot, todo.desc_fixed, reason="PutNext")]
        return bot
    bot._process_instr(todo)
    if carried is not None and isinstance(todo, (PickupInstr, PutNextInstr, BeforeInstr, AfterInstr)):
        bot._process_obs()  # a drop spot must be a cell the bot has seen
        drop_at = bot._find_drop_pos()
        if drop_at is not None:
            bot.stack += [DropSubgoal(bot), GoNextToSubgoal(bot, drop_at)]
    return bot


class BabyAIExpert:
    """minigrid's ``BabyAIBot``, kept in step with its env, explaining each action.

    The bot is stateful (a subgoal stack and a map of the cells seen so far) and must be
    told the action actually taken after every step (its ``replan(action_taken)``
    protocol). The env does that itself (``observe``, called from ``_apply`` for every
    applied action), so the bot follows the episode whoever acts, the bot or a student
    under DAgger, and whether or not ``act`` is called at every step. If the bot fails
    (it asserts on some states a student can cause), its plan is rebuilt from the current
    state, keeping what it has seen.

    Get it with ``env.expert()``; ``act()`` reads the env's current state.
    """

    def __init__(self, env: BabyAITextEnv) -> None:
        self.env = env
        self._bot: BabyAIBot | None = None
        self._suggestion: int | None = None
        #: How often the plan had to be rebuilt after the bot failed (for diagnostics).
        self.rebuilds = 0
        self._warned = -1
        self.restart()

    def restart(self) -> None:
        """Start a fresh plan for the env's current episode (called by ``env.reset``)."""
        self._bot = None
        if self.env.episode > 0:  # before the env's first reset there is no world to plan in
            self._plan()

    def _plan(self) -> None:
        """Build a bot for the current state and take its first suggestion."""
        seen = self._bot.vis_mask if self._bot is not None else None
        try:
            self._bot = _fresh_bot(self.env.level, seen)
            self._suggestion = self._bot.replan(None)
        except Exception as e:  # noqa: BLE001 - third-party planner; never crash the env
            # Once per episode: a state the bot cannot solve (a student toggled the target
            # box away, say) would otherwise log at every step.
            level = logging.WARNING if self._warned != self.env.episode else logging.DEBUG
            logger.log(level, "%s: BabyAIBot could not plan: %r", self.env.env_id, e)
            self._warned = self.env.episode
            self._suggestion = None

    def observe(self, action: int) -> None:
        """Tell the bot which minigrid action was just applied (called by the env)."""
        if self._bot is None:
            self._plan()
            return
        try:
            self._suggestion = self._bot.replan(action)
        except Exception as e:  # noqa: BLE001 - see _plan
            logger.debug("%s: BabyAIBot failed after action %d (%r); replanning", self.env.env_id, action, e)
            self.rebuilds += 1
            self._plan()

    def act(self) -> ExpertStep:
        """The bot's action for the current state, with a short reason in plain words."""
        if self.env.episode == 0:
            raise RuntimeError(f"{self.env.env_id}: call reset() before asking the expert to act")
        if self._suggestion is None or self._suggestion >= len(ACTIONS):
            # The bot believes it is done, or failed: plan afresh from what is left.
            self.rebuilds += 1
            self._plan()
        if self._bot is None or self._suggestion is None or self._suggestion >= len(ACTIONS):
            return ExpertStep("turn left", "I am not sure what to do now: look around, so turn left.")
        action = ACTIONS[self._suggestion]
        return ExpertStep(action, explain(self._bot, action))
