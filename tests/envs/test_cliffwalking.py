"""CliffWalking as text: the grid, the cliff's -100 and return to start, the expert."""

from __future__ import annotations

import pytest

import envs
from envs.toytext import run_expert


def test_observation_draws_grid_position_goal_and_neighbours() -> None:
    env = envs.make("cliffwalking")
    obs, _ = env.reset(seed=1)
    ground = " ".join(["o"] * 12)
    assert obs == "\n".join([ground, ground, ground, "A C C C C C C C C C C G",
                             "You are at (3,0). Goal at (3,11).",
                             "Next to you: up ground, right cliff, down edge, left edge."])


def test_cliff_costs_100_and_sends_back_to_start_without_ending() -> None:
    env = envs.make("cliffwalking")
    env.reset(seed=1)
    env.step("up")
    env.step("right")
    obs, reward, term, trunc, info = env.step("down")
    assert (reward, term, trunc, env.pos) == (-100.0, False, False, (3, 0))
    assert obs.endswith("You fell off the cliff (-100) and are back at the start (3,0).")
    assert info["invalid_action"] is False
    obs, reward, *_ = env.step("left")
    assert reward == -1.0 and obs.endswith("You did not move (edge of the grid).")


def test_expert_walks_the_13_step_path_on_every_test_seed() -> None:
    env = envs.make("cliffwalking")
    for seed in envs.seeds("cliffwalking", "test", 200):
        run = run_expert(env, seed)
        assert (run.success, run.steps, run.ret) == (True, 13, -13.0)


def test_expert_rationales() -> None:
    env = envs.make("cliffwalking")
    env.reset(seed=1)
    expert = env.expert()
    said = []
    for _ in range(13):
        step = expert.act()
        said.append(step.rationale)
        env.step(step.action)
    assert said[0] == "Goal at (3,11). Cliff to the right at (3,1), so go up; 13 steps left."
    assert said[1] == "Goal at (3,11). Go right; 12 steps left."
    assert said[5] == "Goal at (3,11). Cliff below at (3,4), so go right; 8 steps left."
    assert said[12] == "Goal at (3,11). Go down; 1 step left."


@pytest.mark.parametrize(("detour", "total"), [(["up", "up", "up", "left"], 4 + 14),
                                               (["up", "right", "down"], 3 + 13)])
def test_expert_continues_from_where_another_policy_left_it(detour: list[str],
                                                            total: int) -> None:
    env = envs.make("cliffwalking")
    env.reset(seed=1)
    for action in detour:
        env.step(action)
    expert = env.expert()
    done = False
    while not done:
        *_, term, trunc, info = env.step(expert.act().action)
        done = term or trunc
    assert info["success"] and info["step"] == total


def test_slippery_option_is_random_and_the_expert_keeps_clear_of_the_cliff() -> None:
    env = envs.make("cliffwalking", slippery=True)
    assert "slippery" in env.instructions
    step = (env.reset(seed=1), env.expert().act())[1]
    assert step.action == "up" and "slippery" in step.rationale
    runs = [run_expert(env, s) for s in envs.seeds("cliffwalking", "test", 40)]
    assert sum(r.success for r in runs) >= 36  # measured 98% on 50 seeds
    assert len({r.steps for r in runs}) > 1
