"""Worlds as text: Gymnasium games and tool-use tasks behind one ``TextEnv`` contract.

    >>> import envs
    >>> env = envs.make("frozenlake-4x4")
    >>> obs, info = env.reset(seed=envs.seeds("frozenlake-4x4", "test", 1)[0])
"""

from __future__ import annotations

from envs.base import Expert, ExpertStep, InvalidAction, TextEnv, normalize_action_text
from envs.registry import EnvSpec, env_options, list_envs, make, register, seeds, spec, split_of

# Registered ids. Entry points are imported lazily by ``make``.
_BABYAI = "envs.babyai:BabyAITextEnv"
for _spec in (
    EnvSpec("frozenlake-4x4", "envs.frozenlake:FrozenLakeTextEnv", {"size": 4},
            "FrozenLake 4x4, a new random map per seed"),
    EnvSpec("frozenlake-8x8", "envs.frozenlake:FrozenLakeTextEnv", {"size": 8},
            "FrozenLake 8x8, a new random map per seed"),
    EnvSpec("taxi", "envs.taxi:TaxiTextEnv", {}, "Taxi-v3: pick up and drop off a passenger"),
    EnvSpec("cliffwalking", "envs.cliffwalking:CliffWalkingTextEnv", {},
            "CliffWalking: reach the goal without falling off the cliff"),
    EnvSpec("babyai-goto-local", _BABYAI, {"task": "BabyAI-GoToLocal-v0"},
            "BabyAI GoToLocal: go to an object in one room with distractors"),
    EnvSpec("babyai-goto-redball", _BABYAI, {"task": "BabyAI-GoToRedBall-v0"},
            "BabyAI GoToRedBall: go to the red ball in one room with distractors"),
    EnvSpec("babyai-pickup-loc", _BABYAI, {"task": "BabyAI-PickupLoc-v0"},
            "BabyAI PickupLoc: pick up an object described by its location"),
    EnvSpec("babyai-mixed-goto", _BABYAI, {"task": "mixed:goto"},
            "BabyAI MixedTrainLocal, goto missions"),
    EnvSpec("babyai-mixed-pickup", _BABYAI, {"task": "mixed:pickup"},
            "BabyAI MixedTrainLocal, pickup missions"),
    EnvSpec("babyai-mixed-open", _BABYAI, {"task": "mixed:open"},
            "BabyAI MixedTrainLocal, open missions"),
    EnvSpec("babyai-mixed-putnext", _BABYAI, {"task": "mixed:putnext"},
            "BabyAI MixedTrainLocal, putnext missions"),
    EnvSpec("babyai-mixed-pickup-seq-goto", _BABYAI, {"task": "mixed:pick_up_seq_go_to"},
            "BabyAI MixedTrainLocal, pick up then go to missions"),
    EnvSpec("tools-single", "envs.tools.env:ToolTaskEnv", {"family": "single"},
            "Tool use: one tool call then the answer"),
    EnvSpec("tools-chain", "envs.tools.env:ToolTaskEnv", {"family": "chain"},
            "Tool use: lookups chained into calculations and conversions"),
    EnvSpec("tools-compare", "envs.tools.env:ToolTaskEnv", {"family": "compare"},
            "Tool use: compare two looked-up entities"),
    EnvSpec("tools-stateful", "envs.tools.env:ToolTaskEnv", {"family": "stateful"},
            "Tool use: an orders API whose calls must come in order"),
    EnvSpec("tools-mixed", "envs.tools.env:ToolTaskEnv", {"family": "mixed"},
            "Tool use: every family"),
):
    register(_spec)

__all__ = [
    "EnvSpec", "Expert", "ExpertStep", "InvalidAction", "TextEnv", "env_options", "list_envs", "make",
    "normalize_action_text", "register", "seeds", "spec", "split_of",
]
