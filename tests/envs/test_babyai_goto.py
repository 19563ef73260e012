"""The expert of BabyAI's "go to" missions (``envs.babyai_goto``): what it does in small
rooms built by hand, and its rationale, which reads the observation's ``Target`` line."""

from __future__ import annotations

from minigrid.core.world_object import Ball, Key
from minigrid.envs.babyai.core.verifier import GoToInstr, ObjDesc

import envs
from envs.babyai import BabyAITextEnv
from envs.babyai_goto import GoToExpert, cell_word
from envs.babyai_text import line_name, read_out
from tests.envs.test_babyai import _empty_room, _set_mission


def _play(env: BabyAITextEnv) -> tuple[list[tuple[str, str]], dict]:
    expert, said, done, info = env.expert(), [], False, {}
    while not done:
        step = expert.act()
        assert expert.act() == step  # asking twice changes nothing
        said.append((step.action, step.rationale))
        _, _, terminated, truncated, info = env.step(step.action)
        done = terminated or truncated
    return said, info


def test_goto_expert_walks_to_what_it_sees() -> None:
    env = envs.make("babyai-goto-local")
    assert isinstance(env.expert(), GoToExpert)
    _empty_room(env)
    env.level.put_obj(Ball("red"), 2, 1)
    _set_mission(env, GoToInstr(ObjDesc("ball", "red")))
    said, info = _play(env)
    assert said == [
        ("go forward", "RedBalls: 2 ahead, 1 left; in front: nothing: go forward."),
        ("go forward", "RedBalls: 1 ahead, 1 left; in front: nothing: go forward."),
        ("turn left", "RedBalls: 1 left; in front: wall; to the left: target: "
                      "turn left."),
    ]
    assert info["success"]


def test_goto_expert_looks_around_then_goes_around_what_blocks_it() -> None:
    env = envs.make("babyai-goto-local")
    _empty_room(env)
    env.level.put_obj(Ball("red"), 3, 5)  # 2 behind: out of view
    _set_mission(env, GoToInstr(ObjDesc("ball", "red")))
    said, info = _play(env)
    assert said == [
        ("turn left", "RedBalls: not seen: turn left."),
        ("turn left", "RedBalls: 2 left; in front: nothing; to the left: nothing: "
                      "turn left."),
        ("go forward", "RedBalls: 2 ahead; in front: nothing: go forward."),
    ]
    assert info["success"]
    _empty_room(env)
    env.level.put_obj(Ball("red"), 3, 1)
    env.level.put_obj(Key("blue"), 3, 2)  # right in front: the straight way is blocked
    _set_mission(env, GoToInstr(ObjDesc("ball", "red")))
    said, info = _play(env)
    # The rationale copies the Target line's reading, then says what is in front (and what a
    # turn would face: the plain turn's side, or both sides when the way ahead is shut):
    # nothing, wall, the target, or blocked by another object; a move other than the plain
    # one is said to go around.
    assert said == [
        ("turn left", "RedBalls: 2 ahead; in front: blocked; to the left: nothing; to the right: nothing; "
                      "go around: turn left."),
        # the plain turn right would face the blue key: the side cell says why it goes around
        ("go forward", "RedBalls: 2 right; in front: nothing; to the right: blocked; "
                       "go around: go forward."),
        # Behind the agent now, out of view: where the observation remembers it.
        ("turn right", "RedBalls: remembered 1 behind, 2 right; "
                       "in front: nothing; to the right: nothing: turn right."),
        ("go forward", "RedBalls: 2 ahead, 1 right; in front: nothing: go forward."),
        ("go forward", "RedBalls: 1 ahead, 1 right; in front: nothing: go forward."),
        ("turn right", "RedBalls: 1 right; in front: wall; to the right: target: "
                       "turn right."),
    ]
    assert info["success"]


def test_goto_rationale_says_of_a_cell_whether_it_is_the_target_or_how_it_blocks() -> None:
    things = (None, "wall", "grey door (open)", "grey door (closed)", "red box", "target, red box")
    assert [cell_word(t) for t in things] == ["nothing", "wall", "open door", "blocked", "blocked", "target"]


def test_goto_rationale_copies_the_target_line_and_its_first_entry() -> None:
    """The reading is the observation's own text: the target's line, then its first entry."""
    seen = [("red ball", 1, 0), ("red ball", 2, -1)]
    remembered = [("red ball", -2, 0)]
    assert read_out(seen, remembered, "RedBalls") == ("RedBalls: 1 ahead", seen[0])
    assert read_out([], remembered, "RedBalls") == ("RedBalls: remembered 2 behind", remembered[0])
    assert read_out([], [], "RedBoxes") == ("RedBoxes: not seen", None)
    assert read_out([("red door (open)", 0, 2)], [], "RedDoors") == (
        "RedDoors: (open) 2 right", ("red door (open)", 0, 2))
    # A mission without a colour: the nearest of the type, in its own colour's line.
    assert read_out([("blue ball", 3, 0)], [], "Balls") == ("BlueBalls: 3 ahead", ("blue ball", 3, 0))
    assert read_out([], [], "Balls") == ("Balls: not seen", None)
    # On real episodes the reading follows from the observation text alone.
    env = envs.make("babyai-goto-local")
    cases = {"see": 0, "remember": 0, "none": 0}

    def said_of(cell: str) -> str:  # a cell line's text as the rationale says it
        return cell_word(None if cell == "nothing" else cell)

    for seed in envs.seeds("babyai-goto-local", "train", 20):
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            step = env.expert().act()
            lines = dict(line.rstrip(".").split(": ", 1) for line in obs.splitlines() if ": " in line)
            wanted = lines["Target"].split(": ")[0]  # GoToLocal's missions are all about one object
            desc = env.level.instrs.desc
            assert wanted == line_name(desc.color, desc.type)  # ... and name a colour and type
            first = lines.get(f"Known {wanted}", "").split("; ")[0]
            if first and not first.startswith("remembered "):
                case, expected = "see", f"{wanted}: {first}"
            elif first:
                case, expected = "remember", f"{wanted}: {first}"
            else:
                case, expected = "none", f"{wanted}: not seen"
                if env.applied[-3:] == ["turn left"] * 3:  # a full turn round (the test below, seed 112)
                    expected += ", looked around"
                    assert step.rationale == f"{expected}, explore: {step.action}.", obs
            cases[case] += 1
            assert lines["Target"] == expected, obs  # the Target line is the reading, written out
            if "not seen" not in expected:
                expected += f"; in front: {said_of(lines['In front'])}"
                # what a turn would face: the plain turn's side, or both when the way ahead is shut
                if " ahead" in lines["Target"]:
                    sides = ["To the left", "To the right"] if lines["In front"] != "nothing" else []
                else:
                    sides = ["To the right" if " right" in lines["Target"] else "To the left"]
                expected += "".join(f"; {side.lower()}: {said_of(lines[side])}" for side in sides)
            assert step.rationale.startswith(expected), (obs, step.rationale)
            obs, _, terminated, truncated, _ = env.step(step.action)
            done = terminated or truncated
    assert min(cases.values()) > 0, cases  # every branch of the reading was checked


def test_goto_target_line_says_when_the_agent_has_looked_around_and_the_expert_explores() -> None:
    """Three left turns in a row with the target still unseen: the Target line says so, and
    the expert's rationale copies it and explores; before that it turns left."""
    env = envs.make("babyai-goto-local")
    obs, _ = env.reset(seed=112)  # a train seed whose target is out of sight after a full turn round
    done, looked = False, 0
    while not done:
        target = next(line for line in obs.splitlines() if line.startswith("Target: "))
        step = env.expert().act()
        round_done = env.applied[-3:] == ["turn left"] * 3 and "not seen" in target
        assert target.endswith(", looked around.") == round_done, (env.applied[-3:], target)
        if "not seen" in target:
            said = target.removeprefix("Target: ").rstrip(".")
            assert step.rationale == (f"{said}, explore: {step.action}." if round_done else f"{said}: turn left."), obs
            looked += round_done
        obs, _, terminated, truncated, _ = env.step(step.action)
        done = terminated or truncated
    assert looked >= 1
