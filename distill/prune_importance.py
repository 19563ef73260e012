"""Importance scores for pruning: which heads and MLP channels of a Llama teacher matter.

* ``magnitude`` (no data): a head by ``||W_v[head]|| * ||W_o[:, head]||``, a channel by
  ``||gate|| * ||up|| * ||down[:, j]||``;
* ``activation`` (Minitron): the mean L2 norm of each head's output and the mean
  ``|down_proj input|`` per channel, over trace prompts rendered by the one prompt renderer.

Used by ``distill.prune``; kept apart so the pruning plan reads without the scoring code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import LlamaForCausalLM


def llama_shape(config: Any) -> tuple[int, int, int, int]:
    """(heads, kv heads, head_dim, intermediate) of a Llama config."""
    n_head = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_head
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    return n_head, n_kv, head_dim, config.intermediate_size



def magnitude_scores(model: LlamaForCausalLM, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-KV-group, per-MLP-channel) weight-magnitude importance of one layer."""
    n_head, n_kv, hd, _ = llama_shape(model.config)
    block = model.model.layers[layer]
    v = block.self_attn.v_proj.weight.detach().reshape(n_kv, hd, -1).norm(dim=(1, 2))
    o = block.self_attn.o_proj.weight.detach().reshape(-1, n_head, hd).norm(dim=(0, 2))
    heads = (o.reshape(n_kv, -1) * v[:, None]).sum(1)
    mlp = block.mlp
    ch = (mlp.gate_proj.weight.detach().norm(dim=1) * mlp.up_proj.weight.detach().norm(dim=1)
          * mlp.down_proj.weight.detach().norm(dim=0))
    return heads, ch


def activation_scores(model: LlamaForCausalLM, token_ids: Sequence[Sequence[int]]
                      ) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, (per-KV-group, per-MLP-channel) mean activation magnitude over the tokens
    of ``token_ids`` (one forward pass per sequence, so no padding enters the means)."""
    n_head, n_kv, hd, inter = llama_shape(model.config)
    n_layers = len(model.model.layers)
    head_sum = torch.zeros(n_layers, n_head, dtype=torch.float64)
    mlp_sum = torch.zeros(n_layers, inter, dtype=torch.float64)
    n_tok = 0
    hooks = []

    def on_o(i: int):
        def hook(_mod: Any, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0].detach().reshape(-1, n_head, hd)
            head_sum[i] += x.norm(dim=-1).sum(0).double().cpu()
        return hook

    def on_down(i: int):
        def hook(_mod: Any, args: tuple[torch.Tensor, ...]) -> None:
            mlp_sum[i] += args[0].detach().reshape(-1, inter).abs().sum(0).double().cpu()
        return hook

    for i, block in enumerate(model.model.layers):
        hooks.append(block.self_attn.o_proj.register_forward_pre_hook(on_o(i)))
        hooks.append(block.mlp.down_proj.register_forward_pre_hook(on_down(i)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for ids in token_ids:
                if len(ids):
                    model(input_ids=torch.tensor([list(ids)], device=model.device))
                    n_tok += len(ids)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if n_tok == 0:
        raise ValueError("--importance activation: the trace prompts gave no tokens to score")
    heads = (head_sum / n_tok).reshape(n_layers, n_kv, -1).sum(-1)
    mlp = mlp_sum / n_tok
    return {i: (heads[i], mlp[i]) for i in range(n_layers)}


def trace_token_ids(paths: str, tokenizer: Any, variant: str, n_samples: int, max_len: int) -> list[list[int]]:
    """Token ids of the first ``n_samples`` (prompt + completion) examples of trace files,
    rendered by the one prompt renderer in ``variant``; each keeps its last ``max_len`` tokens."""
    from distill import data

    files = [p.strip() for p in paths.split(",") if p.strip()]
    if not files:
        raise ValueError("--importance activation: expected --traces FILE[,FILE] (prompts to score), got none")
    examples = data.build_examples(data.load_episodes(files), variant)[:max(1, n_samples)]
    if not examples:
        raise ValueError(f"--traces {paths}: no valid teacher steps to score activations on")
    return [tokenizer.encode(e.prompt + e.completion, add_special_tokens=False)[-max_len:] for e in examples]
