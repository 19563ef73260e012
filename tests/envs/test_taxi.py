"""Taxi as text: the map and words, Gymnasium's rewards, the shortest-plan expert."""

from __future__ import annotations

import re

import numpy as np
import pytest

import envs
from envs.base import ExpertStep
from envs.taxi import TaxiTextEnv
from envs.toytext import run_expert


def _at(env: TaxiTextEnv, row: int, col: int, passenger: int, dest: int) -> str:
    """Put the game in a chosen state (tests only) and return its observation."""
    env.reset(seed=1)
    env.game.s = env.game.encode(row, col, passenger, dest)
    return env._render()


def test_observation_draws_the_taxi_and_says_where_everyone_is() -> None:
    env = envs.make("taxi")
    obs = _at(env, 4, 2, 0, 1)
    assert obs == (
        "+---------+\n|R: | : :G|\n| : | : : |\n| : : : : |\n| | : | : |\n|Y| :T|B: |\n"
        "+---------+\n"
        "Taxi at (4,2). Passenger at R (0,0). Destination G (0,4).\n"
        "Walls next to the taxi: south, east."
    )
    assert "Passenger in the taxi." in _at(env, 2, 2, 4, 3)
    assert _at(env, 2, 2, 4, 3).endswith("Walls next to the taxi: none.")


def test_seeds_draw_varied_start_states() -> None:
    env = envs.make("taxi")
    starts = set()
    for seed in envs.seeds("taxi", "test", 200):
        env.reset(seed=seed)
        starts.add(env.state)
        r, c, p, d = env.decode()
        assert p != d and p < 4
    assert len(starts) >= 100


def test_pickup_dropoff_and_walls_follow_gymnasium() -> None:
    env = envs.make("taxi")
    _at(env, 1, 1, 0, 2)
    obs, reward, term, _, info = env.step("pickup")
    assert (reward, term, info["invalid_action"]) == (-10.0, False, False)
    assert obs.endswith("No passenger to pick up here (-10).")
    obs, reward, *_ = env.step("east")  # a wall east of (1,1)
    assert env.decode()[:2] == (1, 1) and reward == -1.0
    assert obs.endswith("A wall blocks the way east; the taxi did not move.")
    obs, reward, *_ = env.step("dropoff")
    assert reward == -10.0 and obs.endswith("Cannot drop off here (-10).")

    _at(env, 0, 0, 0, 2)
    obs, reward, *_ = env.step("pickup")
    assert reward == -1.0 and env.decode()[2] == 4 and obs.endswith("Passenger picked up.")
    obs, reward, term, *_ = env.step("south")
    assert env.decode()[:2] == (1, 0)


def test_dropping_at_the_wrong_stand_leaves_the_passenger_there() -> None:
    env = envs.make("taxi")
    _at(env, 0, 4, 4, 2)  # at G with the passenger, destination Y
    obs, reward, term, *_ = env.step("dropoff")
    assert (reward, term, env.decode()[2]) == (-1.0, False, 1)
    assert obs.endswith("Passenger dropped off at G, which is not the destination.")


def test_delivery_pays_twenty_and_succeeds() -> None:
    env = envs.make("taxi")
    _at(env, 4, 3, 4, 3)
    obs, reward, term, trunc, info = env.step("dropoff")
    assert (reward, term, trunc, info["success"]) == (20.0, True, False, True)
    assert obs.endswith("Passenger delivered to the destination!")


def test_expert_delivers_on_every_test_seed_with_the_promised_steps() -> None:
    env = envs.make("taxi")
    for seed in envs.seeds("taxi", "test", 200):
        env.reset(seed=seed)
        promised = int(env.planner().q[env.state].min())
        run = run_expert(env, seed)
        assert run.success and run.steps == promised
        assert run.ret == 21 - run.steps  # -1 a step, +20 for the delivery: no -10 on the way


def test_expert_rationales_name_the_phase_and_the_target() -> None:
    env = envs.make("taxi")
    _at(env, 4, 2, 0, 1)
    assert env.expert().act() == ExpertStep(
        "north", "Passenger at R (0,0), top left; taxi at (4,2), bottom middle. Go north.")
    _at(env, 0, 0, 0, 1)
    assert env.expert().act() == ExpertStep(
        "pickup", "Passenger at R (0,0), top left; taxi at (0,0), top left. Pick up.")
    _at(env, 0, 0, 4, 1)  # the wall east of (0,1): east is no shorter, the tie goes to south
    assert env.expert().act() == ExpertStep(
        "south", "Destination G (0,4), top right; taxi at (0,0), top left. Go south.")
    _at(env, 2, 1, 2, 1)
    assert env.expert().act() == ExpertStep(
        "west", "Passenger at Y (4,0), bottom left; taxi at (2,1), middle row over bottom middle. Go west.")
    _at(env, 0, 4, 4, 1)
    assert env.expert().act() == ExpertStep(
        "dropoff", "Destination G (0,4), top right; taxi at (0,4), top right. Drop off.")


def _move_from_rationale(text: str) -> str:
    """The move the rationale's words give, by the rule the module docstring states."""
    m = re.fullmatch(r"(?:Passenger at|Destination) [RGYB] \((\d),(\d)\), ([a-z ]+); taxi at \((\d),(\d)\), "
                     r"([a-z ]+)\. .*", text)
    tr, tc, target_part, r, c, taxi_part = m.groups()
    tr, tc, r, c = int(tr), int(tc), int(r), int(c)
    if (r, c) == (tr, tc):
        return "here"
    if taxi_part == target_part or taxi_part.endswith(target_part):  # same part, or right over it
        return "south" if tr > r else "north" if tr < r else "east" if tc > c else "west"
    if taxi_part.startswith("middle row"):
        return "east" if tc > c else "west"
    return "south" if r < 2 else "north"


def test_the_rule_the_rationale_states_gives_the_planners_move_in_every_state() -> None:
    env = envs.make("taxi")
    env.reset(seed=0)
    for s in range(500):
        r, c, p, d = env.game.decode(s)
        if p == d:  # delivered: the episode is over
            continue
        env.game.s = s
        step = env.expert().act()
        move = _move_from_rationale(step.rationale)
        assert step.action == ({"here": "dropoff" if p == 4 else "pickup"}.get(move, move)), step


@pytest.mark.parametrize("seed", [1, 3, 5])
def test_expert_recovers_after_random_driving(seed: int) -> None:
    env = envs.make("taxi")
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    for _ in range(30):  # includes illegal pickups/dropoffs and wrong-stand dropoffs
        env.step(str(rng.choice(env.actions)))
        if env._success():
            return
    expert = env.expert()
    done = False
    while not done:
        *_, term, trunc, info = env.step(expert.act().action)
        done = term or trunc
    assert info["success"] and info["step"] <= 30 + 18  # no plan in Taxi is longer than 18
