"""LoRA adapters (peft) for fine-tuning a pretrained checkpoint, merged before saving so that
export always sees a plain Llama."""

from __future__ import annotations

import copy
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from transformers import PreTrainedModel

#: Every linear layer of a Llama block.
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def apply_lora(model: PreTrainedModel, r: int = 8, alpha: int = 16, dropout: float = 0.0) -> PeftModel:
    """Wrap ``model`` with LoRA adapters on every linear layer; only adapters train."""
    if r <= 0:
        raise ValueError(f"lora_r: expected a positive rank, got {r}")
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(TARGET_MODULES),
                     bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, cfg)


def merged_copy(model: torch.nn.Module) -> PreTrainedModel:
    """A plain model with the adapters folded into the weights (``model`` is left as is)."""
    if not isinstance(model, PeftModel):
        return model  # type: ignore[return-value]
    return copy.deepcopy(model).merge_and_unload()


def adapter_state(model: PeftModel) -> dict[str, Any]:
    """The adapter weights (what ``--resume`` needs besides the base checkpoint)."""
    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


def load_adapter_state(model: PeftModel, state: dict[str, Any]) -> None:
    set_peft_model_state_dict(model, state)
