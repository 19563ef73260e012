"""The TextEnv contract: parsing, invalid actions, the step limit, ``success``, Gym checks.

The bookkeeping is tested on a tiny counter env defined here, and the parts every env must
honour (``check_env``, seeded determinism, invalid actions, truncation) on the toy-text envs.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.base import ExpertStep, InvalidAction, TextEnv, normalize_action_text

TOY_IDS = ("frozenlake-4x4", "frozenlake-8x8", "taxi", "cliffwalking")


class CounterEnv(TextEnv):
    """Count up to 3. ``fail`` parses but is refused by ``_apply`` (like a failing tool)."""

    env_id = "counter"
    actions = ("inc", "dec", "fail", "go forward")
    max_steps = 5

    def _reset(self, seed: int | None, options: dict[str, Any] | None) -> None:
        self.n = 0

    def _apply(self, action: str) -> tuple[float, bool, str]:
        if action == "fail":
            raise InvalidAction("fail: the tool refused")
        self.n += {"inc": 1, "dec": -1, "go forward": 0}[action]
        return float(self.n == 3), self.n == 3, f"now {self.n}"

    def _render(self) -> str:
        return f"count={self.n}"

    def _success(self) -> bool:
        return self.n == 3

    def expert(self):  # noqa: ANN201 - a one-line stand-in
        return type("E", (), {"act": lambda _self: ExpertStep("inc", "count up")})()


@pytest.mark.parametrize("text", ["LEFT", "  left ", "Action: left", "'left'", '"left"',
                                  "action:LEFT", "`left`", "ACTION :  'Left' "])
def test_normalize_accepts_case_space_prefix_and_quotes(text: str) -> None:
    assert normalize_action_text(text) == "left"


def test_normalize_collapses_inner_whitespace_only() -> None:
    assert normalize_action_text("go   Forward") == "go forward"
    assert normalize_action_text("'left") == "'left"  # unbalanced quote is kept: not an action


@pytest.mark.parametrize("text", ["lef", "left right", "go left", "", "   ", "left.",
                                  "Action:", "'left'\"", "Thought: left"])
def test_parser_rejects_everything_else(text: str) -> None:
    env = envs.make("frozenlake-4x4")
    env.reset(seed=1)
    assert env.parse_action(text) is None


@pytest.mark.parametrize("text", ["LEFT", "  left ", "Action: left", "'left'", '"up"'])
def test_parser_accepts_forgiving_forms(text: str) -> None:
    env = envs.make("frozenlake-4x4")
    env.reset(seed=1)
    assert env.parse_action(text) == normalize_action_text(text)


def test_valid_step_applies_and_reports() -> None:
    env = CounterEnv()
    obs, info = env.reset(seed=0)
    assert obs == "count=0"
    assert info == {"legal_actions": ["inc", "dec", "fail", "go forward"],
                    "invalid_action": False, "step": 0}
    obs, reward, term, trunc, info = env.step("Action: INC")
    assert (obs, reward, term, trunc) == ("count=1\nnow 1", 0.0, False, False)
    assert info["invalid_action"] is False and "success" not in info


def test_unparseable_action_leaves_world_and_lists_legal_actions() -> None:
    env = CounterEnv()
    env.reset(seed=0)
    obs, reward, term, trunc, info = env.step("increment please")
    assert env.n == 0 and reward == 0.0 and not term and not trunc
    assert obs.startswith("count=0\nInvalid action 'increment please': nothing happened.")
    assert obs.endswith("Legal actions: inc, dec, fail, go forward.")
    assert info["invalid_action"] is True and info["step"] == 1


def test_refused_action_is_invalid_and_shows_its_reason() -> None:
    env = CounterEnv()
    env.reset(seed=0)
    obs, _, _, _, info = env.step("fail")
    assert env.n == 0 and info["invalid_action"] is True
    assert obs == "count=0\nfail: the tool refused"


def test_invalid_feedback_shortens_long_actions_and_hides_newlines() -> None:
    line = CounterEnv().invalid_feedback("x" * 200 + "\nmore")
    assert "\n" not in line and "x" * 77 + "..." in line and "x" * 78 not in line


def test_truncation_at_step_limit_then_step_refused() -> None:
    env = CounterEnv()
    env.reset(seed=0)
    for i in range(1, 6):
        _, _, term, trunc, info = env.step("nonsense")
        assert term is False and trunc is (i == 5)
    assert info["success"] is False
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step("inc")
    env.reset(seed=0)  # a reset starts over
    assert env.elapsed_steps == 0


def test_termination_reports_success() -> None:
    env = CounterEnv()
    env.reset(seed=0)
    for _ in range(3):
        _, reward, term, trunc, info = env.step("inc")
    assert (reward, term, trunc, info["success"]) == (1.0, True, False, True)


def test_bad_inputs_name_what_was_expected() -> None:
    with pytest.raises(ValueError, match="render_mode: expected one of"):
        CounterEnv(render_mode="human")
    env = CounterEnv()
    env.reset(seed=0)
    with pytest.raises(TypeError, match="action must be str, got int"):
        env.step(1)  # type: ignore[arg-type]


def test_ansi_render_returns_last_observation() -> None:
    env = CounterEnv(render_mode="ansi")
    env.reset(seed=0)
    obs, *_ = env.step("inc")
    assert env.render() == obs
    assert CounterEnv().render() is None


# ------------------------------------------------ contract checks on the toy-text envs
@pytest.mark.parametrize("env_id", TOY_IDS)
def test_gymnasium_check_env_passes(env_id: str) -> None:
    for render_mode in (None, "ansi"):
        with warnings.catch_warnings():
            # check_env warns that an env built without gym.make has no spec; that is not
            # a failure, everything else it checks must pass.
            warnings.simplefilter("ignore", UserWarning)
            check_env(envs.make(env_id, render_mode=render_mode))


@pytest.mark.parametrize("env_id", TOY_IDS)
def test_same_seed_same_episode(env_id: str) -> None:
    def play(env: TextEnv, seed: int) -> list[Any]:
        obs, info = env.reset(seed=seed)
        out: list[Any] = [obs, info]
        for action in (env.actions * 4)[:12]:
            out.append(env.step(action))
            if out[-1][2] or out[-1][3]:
                break
        return out

    a = play(envs.make(env_id), 7)
    assert play(envs.make(env_id), 7) == a
    env = envs.make(env_id)
    play(env, 9)
    assert play(env, 7) == a  # a reused instance forgets the previous episode


@pytest.mark.parametrize("env_id", TOY_IDS)
def test_invalid_actions_until_truncation(env_id: str) -> None:
    env = envs.make(env_id)
    obs0, info0 = env.reset(seed=3)
    for i in range(1, env.max_steps + 1):
        obs, reward, term, trunc, info = env.step("fly away")
        assert obs.startswith(obs0 + "\nInvalid action 'fly away': nothing happened.")
        assert f"Legal actions: {', '.join(env.actions)}." in obs
        assert info["invalid_action"] is True and reward == 0.0 and term is False
        assert trunc is (i == env.max_steps)
    assert info["success"] is False and info["step"] == env.max_steps


@pytest.mark.parametrize("env_id", TOY_IDS)
def test_observations_are_short_printable_text(env_id: str) -> None:
    env = envs.make(env_id)
    for seed in envs.seeds(env_id, "test", 5):
        obs, _ = env.reset(seed=seed)
        assert len(obs) <= 300 and obs in env.observation_space
        assert len(env.instructions) > 200
