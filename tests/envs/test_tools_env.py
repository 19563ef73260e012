"""ToolTaskEnv: the TextEnv contract, the expert, hold-out, and bad actions."""

from __future__ import annotations

import json
import random
import warnings
from typing import Any

import pytest
from gymnasium.utils.env_checker import check_env

import envs
from agent.prompt import make_context, render_messages
from envs.tools.env import ToolTaskEnv
from envs.tools.tasks import TEST_ONLY
from envs.tools.info_tasks import CHAIN, COMPARE, SINGLE
from envs.tools.order_tasks import STATEFUL
from envs.tools.actions import answers_match

IDS = ["tools-single", "tools-chain", "tools-compare", "tools-stateful", "tools-mixed"]


def run_expert(env: ToolTaskEnv) -> tuple[str, dict[str, Any], list[Any]]:
    expert, steps = env.expert(), []
    while True:
        step = expert.act()
        obs, reward, term, trunc, info = env.step(step.action)
        steps.append((step, obs, reward, info["invalid_action"]))
        if term or trunc:
            return obs, info, steps


def call(tool: str, **args: Any) -> str:
    return json.dumps({"tool": tool, "args": args})


# ------------------------------------------------------------ contract
@pytest.mark.parametrize("env_id", IDS)
def test_gymnasium_check_env_passes(env_id: str) -> None:
    for render_mode in (None, "ansi"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            check_env(envs.make(env_id, render_mode=render_mode))


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_episode(env_id: str) -> None:
    def play(env: ToolTaskEnv, seed: int) -> list[Any]:
        out: list[Any] = list(env.reset(seed=seed))
        out.append(env.step('{"tool": "nope"}'))
        out.extend(s[:2] for s in run_expert(env)[2])
        return out

    a = play(envs.make(env_id), 5)
    assert play(envs.make(env_id), 5) == a
    env = envs.make(env_id)
    play(env, 6)
    assert play(env, 5) == a  # a reused instance forgets the previous episode
    assert play(envs.make(env_id), 7)[0] != a[0]


@pytest.mark.parametrize("env_id", IDS)
def test_expert_solves_200_test_seeds(env_id: str) -> None:
    env = envs.make(env_id)
    solved = 0
    for seed in envs.seeds(env_id, "test", 200):
        env.reset(seed=seed)
        obs, info, steps = run_expert(env)
        assert not any(invalid for *_, invalid in steps), (seed, obs)
        assert all(s.rationale.strip() for s, *_ in steps)
        assert len(steps) <= 5
        solved += info["success"]
        assert steps[-1][2] == (1.0 if info["success"] else 0.0)
    assert solved / 200 >= 0.99


def test_info_tools_and_legal_actions() -> None:
    env = envs.make("tools-stateful")
    obs, info = env.reset(seed=1)
    names = ["add_item", "remove_item", "list_items", "order_total"]
    assert info["legal_actions"] == [*names, "answer"]
    assert [s["function"]["name"] for s in env.tool_schemas] == names
    assert list(env.tools) == names
    assert obs.startswith("Question: ") and "\n" not in obs
    ctx = make_context(env, obs, info, [], "full")
    assert ctx.tools == env.tool_schemas == make_context(env, obs, info, [], "compact").tools
    system = render_messages(ctx, "full")[0]["content"]
    assert "- add_item:" in system and '"quantity"' in system
    full = envs.make("tools-mixed").instructions
    assert all(n in full for n in ("calculator", "convert_units", "date_calc", "lookup", "order_total"))
    assert '"expression"' in full and "0.01" in full and "YYYY-MM-DD" in full
    assert "lookup" in envs.make("tools-single").instructions


def test_observation_lists_calls_and_results() -> None:
    env = envs.make("tools-chain")
    env.reset(seed=3)
    obs, info, steps = run_expert(env)
    lines = obs.splitlines()
    assert lines[0] == f"Question: {env.task.question}"
    assert len(lines) == 1 + len(env.task.plan) + 1  # question, each call, the verdict
    for line, planned in zip(lines[1:], env.task.plan):
        assert line.startswith(f"{planned.tool}(") and line.endswith(f" -> {planned.result}")
    assert lines[-1].endswith(": correct.")
    assert info["success"] and len(obs) < 1000


# ------------------------------------------------------------- parsing
def test_parse_action_canonicalises_and_forgives_wrapping() -> None:
    env = envs.make("tools-single")
    env.reset(seed=0)
    canonical = '{"tool": "convert_units", "args": {"value": 5, "from_unit": "km", "to_unit": "m"}}'
    for text in (
        canonical,
        '{"args":{"to_unit":"m","value":5.0,"from_unit":"km"},"tool":"convert_units"}',
        '  Action: {"tool": "convert_units", "args": {"value": 5, "from_unit": "km", "to_unit": "m"}}  ',
        '```json\n{"tool": "convert_units", "args": {"value": 5, "from_unit": "km", "to_unit": "m"}}\n```',
    ):
        assert env.parse_action(text) == canonical
    assert env.parse_action('{"answer": 4.0}') == '{"answer": 4}'
    assert env.parse_action('{"answer": "Vell"}') == '{"answer": "Vell"}'
    assert env.parse_action('{"tool": "calculator", "args": {"expression": "1+1"}} extra') is None
    assert env.parse_action('{"tool": "calculator", "args": {"expression": "1+1"}, "why": 1}') is None
    assert env.parse_action('{"answer": 1, "tool": "calculator"}') is None
    assert env.parse_action('{"answer": NaN}') is None
    # an overflowing literal parses to inf, which the env could not write back as JSON
    assert env.parse_action('{"answer": 1e999}') is None
    assert env.parse_action('{"answer": null}') is None
    assert env.parse_action("calculator") is None


@pytest.mark.parametrize(
    ("action", "feedback"),
    [
        ('{"tool": "teleport", "args": {}}',
         'unknown tool "teleport"; available tools: calculator, convert_units, date_calc, lookup'),
        ('{"tool": "calculator", "args": {"expression": "1+1"', "malformed JSON"),
        ("not json at all", "malformed JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"tool": "lookup", "args": {"entity": "Vell"}}',
         'lookup: bad args (attribute: Field required); expected {"entity": string, "attribute": population|'),
        ('{"tool": "convert_units", "args": {"value": "5", "from_unit": "km", "to_unit": "m"}}',
         "convert_units: bad args (value: Input should be a valid number)"),
        ('{"tool": "calculator", "args": {"expression": "1", "x": 2}}', "x: Extra inputs are not permitted"),
        ('{"tool": "calculator", "args": {"expression": "2**99999999"}}', "calculator failed: exponent"),
        ('{"tool": "calculator", "args": {"expression": "__import__(\'os\')"}}', "calculator failed: character"),
        ('{"tool": "calculator", "args": {"expression": "1/0"}}', "calculator failed: division by zero"),
        ('{"tool": "lookup", "args": {"entity": "Atlantis", "attribute": "population"}}',
         "lookup failed: unknown entity 'Atlantis'; known entities:"),
        ('{"tool": "convert_units", "args": {"value": 1, "from_unit": "kg", "to_unit": "m"}}',
         "convert_units failed: cannot convert kg (mass) to m (length)"),
        ("[" * 1500 + "]" * 1500, "malformed JSON"),
        ('{"answer": "' + "x" * 500 + '"}', "answer too long"),
        ('{"answer": [1]}', "answer: expected a number or a string"),
    ],
)
def test_bad_actions_give_one_line_and_the_episode_goes_on(action: str, feedback: str) -> None:
    env = envs.make("tools-single")
    obs0, _ = env.reset(seed=1)
    obs, reward, term, trunc, info = env.step(action)
    assert info["invalid_action"] and not term and not trunc and reward == 0.0
    question, message = obs.split("\n")
    assert question == obs0
    assert feedback in message
    assert env.calls == []
    _, info, _ = run_expert(env)  # and the task can still be solved
    assert info["success"]


def test_failed_stateful_call_changes_nothing() -> None:
    env = envs.make("tools-stateful")
    env.reset(seed=3)
    item = next(iter(env.world.items.values()))
    env.step(call("add_item", item=item.name, quantity=1))
    state = (dict(env.order.quantities), dict(env.order.stock), list(env.calls))
    obs, _, _, _, info = env.step(call("remove_item", item=item.name, quantity=5))
    assert info["invalid_action"] and obs.endswith(f"remove_item failed: the order has 1 {item.name}, cannot remove 5")
    obs, _, _, _, info = env.step(call("add_item", item=item.name, quantity=100))
    assert info["invalid_action"] and "left in stock" in obs
    assert (env.order.quantities, env.order.stock, env.calls) == state


def test_truncated_without_an_answer_is_a_failure() -> None:
    env = envs.make("tools-single", max_steps=3)
    env.reset(seed=1)
    for _ in range(3):
        obs, reward, term, trunc, info = env.step('{"tool": "calculator", "args": {"expression": "1+1"}}')
    assert trunc and not term and info["success"] is False and reward == 0.0


# --------------------------------------------------------------- answers
def test_answer_tolerance_and_normalisation() -> None:
    assert answers_match(100.005, 100) and answers_match("100.009", 100)
    assert not answers_match(100.02, 100)
    assert answers_match(1_000_050, 1_000_000) and not answers_match(1_000_200, 1_000_000)
    assert answers_match(" bomel  BUMDOR. ", "Bomel Bumdor")
    assert answers_match("2020-01-26", "2020-01-26") and not answers_match("2020-01-27", "2020-01-26")
    assert not answers_match("Vell", 12) and not answers_match(True, 1) and not answers_match(None, "x")


def test_a_wrong_answer_ends_the_episode_as_a_failure() -> None:
    env = envs.make("tools-single")
    env.reset(seed=9)
    obs, reward, term, trunc, info = env.step('{"answer": "certainly not this"}')
    assert term and reward == 0.0 and info["success"] is False and not info["invalid_action"]
    assert obs.endswith("Final answer certainly not this: wrong.")


def test_stateful_needs_the_order_as_asked_not_just_the_number() -> None:
    env = envs.make("tools-stateful")
    env.reset(seed=11)
    obs, reward, term, _, info = env.step(json.dumps({"answer": env.task.answer}))
    assert term and not info["success"]  # the right number, but the order was never built


# ------------------------------------------------------------ DAgger states
@pytest.mark.parametrize("env_id", ["tools-chain", "tools-compare", "tools-mixed"])
def test_expert_recovers_after_other_calls(env_id: str) -> None:
    env = envs.make(env_id, max_steps=20)
    rng = random.Random(0)
    for seed in envs.seeds(env_id, "test", 40):
        env.reset(seed=seed)
        someone = [s for s in env.task.plan]
        rng.shuffle(someone)
        for s in someone[: rng.randint(0, len(someone))]:  # plan calls out of order
            env.step(json.dumps({"tool": s.tool, "args": s.args}))
        env.step(call("calculator", expression="2 + 2"))  # and an unrelated one
        _, info, _ = run_expert(env)
        assert info["success"], (seed, env.task.question)


def test_expert_repairs_an_order_that_went_off_plan() -> None:
    env = envs.make("tools-stateful", max_steps=20)  # room for the others' calls and the repair
    rng = random.Random(1)
    for seed in envs.seeds("tools-stateful", "test", 60):
        env.reset(seed=seed)
        expert = env.expert()
        for _ in range(rng.randint(0, 2)):  # some expert steps first
            env.step(expert.act().action)
        items = sorted(env.world.items.values(), key=lambda it: it.name)
        for _ in range(rng.randint(1, 3)):  # then someone else's calls
            it = rng.choice(items)
            env.step(call(rng.choice(["add_item", "remove_item"]), item=it.name, quantity=rng.randint(1, 3)))
        env.step(call("order_total"))
        obs, info, steps = run_expert(env)
        assert info["success"], (seed, env.task.question, obs)
        assert env.order.quantities == env.task.target_order


# ------------------------------------------------------------- hold-out
def _template_ids(env_id: str, split: str, n: int) -> set[str]:
    env = envs.make(env_id)
    out = set()
    for seed in envs.seeds(env_id, split, n):
        env.reset(seed=seed)
        out.add(env.task.template)
    return out


def test_test_only_templates_never_reach_train_seeds() -> None:
    held_out = {f"{k.name}/{i}" for k in (*SINGLE, *CHAIN, *COMPARE, *STATEFUL)
                for i, (_, tag) in enumerate(k.templates) if tag == TEST_ONLY}
    assert len(held_out) >= 15  # every kind holds one out
    train = _template_ids("tools-mixed", "train", 600)
    test = _template_ids("tools-mixed", "test", 600)
    assert not train & held_out
    assert len(test & held_out) >= 0.8 * len(held_out)
    assert len(train) >= 25  # the train templates are all used too


def test_entity_names_of_train_and_test_episodes_are_disjoint() -> None:
    env = envs.make("tools-mixed")

    def names(split: str) -> set[str]:
        out: set[str] = set()
        for seed in envs.seeds("tools-mixed", split, 100):
            env.reset(seed=seed)
            out |= {n.lower() for n in env.world.names()}
        return out

    train, test = names("train"), names("test")
    assert train and test and not train & test
