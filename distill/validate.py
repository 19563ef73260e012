"""Validation of a student on held-out examples, and which checkpoint is best.

``evaluate_batches`` gives the metrics ``agentkd train`` logs at every validation: the
weighted loss, the teacher-forced action accuracy, and the honest one, greedy decoding of
the whole completion from the prompt (``greedy_actions``). ``selection_key`` ranks
validations for ``OUT/best`` (``--select-by``).
"""

from __future__ import annotations

from typing import Any

import torch

from agent.prompt import parse_completion
from distill import data, losses


def selection_key(select_by: str, metrics: dict[str, float], step: int) -> tuple[float, float]:
    """Larger is better. Without validation examples the latest checkpoint wins."""
    if "val_loss" not in metrics:
        return (float(step), 0.0)
    loss, acc = -metrics["val_loss"], metrics.get("val_action_acc", 0.0)
    return (loss, acc) if select_by == "loss" else (acc, loss)


def evaluate_batches(model: Any, examples: list[data.Encoded], pad_id: int, batch_size: int,
                     tokenizer: Any | None = None, greedy_max: int = 0) -> dict[str, float]:
    """Validation metrics of ``examples``.

    ``val_loss``: the weighted CE. ``val_tf_action_acc``: teacher-forced, the argmax token at
    every position of ``Action: ...`` and the end token (given the prompt and the teacher's
    rationale) equals the teacher's. ``val_action_acc`` (with ``tokenizer``): greedy decoding
    of the whole completion from the prompt alone, parsed with ``parse_completion``, names
    the teacher's action; the honest figure, as a rationale the student gets wrong usually
    leads to the wrong action. ``greedy_max`` > 0 decodes only an evenly spaced subset of
    that many examples (the same subset at every validation).
    """
    model.eval()
    loss_sum, n_tok, tf_correct = 0.0, 0, 0
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            chunk = examples[i:i + batch_size]
            b = data.collate(chunk, pad_id)
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1]
            targets, w = b["input_ids"][:, 1:], b["weights"][:, 1:]
            n = int((w > 0).sum())
            loss_sum += losses.weighted_ce(logits, targets, w).item() * n
            n_tok += n
            pred = logits.argmax(-1)
            for j, e in enumerate(chunk):
                span = slice(e.action_pos - 1, len(e) - 1)
                tf_correct += bool(torch.equal(pred[j, span], targets[j, span]))
    metrics = {"val_loss": loss_sum / max(n_tok, 1), "val_tf_action_acc": tf_correct / max(len(examples), 1)}
    if tokenizer is not None:
        subset = examples
        if 0 < greedy_max < len(examples):
            subset = [examples[i * len(examples) // greedy_max] for i in range(greedy_max)]
        actions = greedy_actions(model, tokenizer, subset, batch_size)
        metrics["val_action_acc"] = sum(a == e.action for a, e in zip(actions, subset)) / max(len(subset), 1)
    model.train()
    return metrics


def greedy_actions(model: Any, tokenizer: Any, examples: list[data.Encoded], batch_size: int) -> list[str | None]:
    """Greedy-decode each example's completion from its prompt; the parsed actions."""
    max_new = max((len(e) - e.n_prompt for e in examples), default=0) + 8
    out: list[str | None] = []
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            chunk = examples[i:i + batch_size]
            width = max(e.n_prompt for e in chunk)
            ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for j, e in enumerate(chunk):  # left padding, so every prompt ends at the same column
                ids[j, width - e.n_prompt:] = torch.tensor(e.input_ids[:e.n_prompt])
                mask[j, width - e.n_prompt:] = 1
            gen = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                                 max_new_tokens=max_new, do_sample=False,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
            for row in gen[:, width:]:
                out.append(parse_completion(tokenizer.decode(row, skip_special_tokens=True))[1])
    return out
