"""The env registry: ids, options, and disjoint train/test seeds."""

from __future__ import annotations

import pytest

import envs
from envs.registry import EnvSpec, env_options, register, split_of

TOY_IDS = ("frozenlake-4x4", "frozenlake-8x8", "taxi", "cliffwalking")


def test_toy_text_ids_are_registered_and_build() -> None:
    assert set(TOY_IDS) <= set(envs.list_envs())
    assert envs.list_envs() == sorted(envs.list_envs())
    for env_id in TOY_IDS:
        env = envs.make(env_id)
        assert env.env_id == env_id
        assert env.reset(seed=1)[1]["legal_actions"] == list(env.actions)


def test_ids_fix_their_own_options() -> None:
    assert envs.make("frozenlake-8x8").size == 8
    assert env_options("frozenlake-4x4") == {"slippery": False, "p_frozen": 0.8,
                                             "max_steps": None, "render_mode": None}
    assert env_options("taxi") == {"max_steps": 200, "render_mode": None}
    assert env_options("cliffwalking") == {"slippery": False, "max_steps": 100,
                                           "render_mode": None}


def test_unknown_id_lists_valid_ids() -> None:
    with pytest.raises(ValueError, match="unknown env id 'frozenlake'") as e:
        envs.make("frozenlake")
    for env_id in TOY_IDS:
        assert env_id in str(e.value)
    with pytest.raises(ValueError, match="unknown env id"):
        envs.seeds("taxii", "test", 3)


def test_unknown_option_lists_valid_options() -> None:
    with pytest.raises(ValueError, match="taxi: unknown option.*slippery") as e:
        envs.make("taxi", slippery=True)
    assert "max_steps=200" in str(e.value)
    # The size belongs to the id: it cannot be overridden.
    with pytest.raises(ValueError, match="unknown option.*size.*valid options: slippery=False"):
        envs.make("frozenlake-4x4", size=8)


@pytest.mark.parametrize(("env_id", "kwargs", "match"), [
    ("frozenlake-4x4", {"p_frozen": 0.0}, "p_frozen must be in"),
    ("frozenlake-4x4", {"max_steps": 0}, "max_steps must be >= 1"),
    ("taxi", {"max_steps": -1}, "max_steps must be >= 1"),
    ("cliffwalking", {"max_steps": 0}, "max_steps must be >= 1"),
])
def test_bad_option_values_are_refused(env_id: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        envs.make(env_id, **kwargs)


@pytest.mark.parametrize("env_id", TOY_IDS)
def test_unknown_reset_option_is_refused(env_id: str) -> None:
    with pytest.raises(ValueError, match="unknown reset option.*bogus.*valid options"):
        envs.make(env_id).reset(seed=1, options={"bogus": 1})


def test_register_refuses_a_duplicate_id() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(EnvSpec("taxi", "envs.taxi:TaxiTextEnv"))


def test_train_and_test_seeds_never_overlap() -> None:
    train = envs.seeds("taxi", "train", 500)
    test = envs.seeds("taxi", "test", 500)
    assert len(set(train)) == len(set(test)) == 500
    assert not set(train) & set(test)
    assert {split_of(s) for s in train} == {"train"} and {split_of(s) for s in test} == {"test"}
    # Seeds are the same for every id, and ``start`` continues without repeating.
    assert envs.seeds("cliffwalking", "test", 500) == test
    assert envs.seeds("taxi", "test", 3, start=2) == test[2:5]


def test_seed_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="split: expected one of train, test, got 'val'"):
        envs.seeds("taxi", "val", 3)
    with pytest.raises(ValueError, match="n and start must be >= 0"):
        envs.seeds("taxi", "test", -1)
