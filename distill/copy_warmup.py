"""Copy warm-up: teach a from-scratch student to copy text from its context first.

    agentkd train --traces t.jsonl --student micro --copy-warmup 1000 --out runs/micro

Agent rationales copy from the prompt: the objects a BabyAI observation lists, the names a
tool-use question holds. A copy from a place that moves from one prompt to the next is done
by induction: attend to where the current word stood before and write the word that came
after it. A micro student trained on traces alone does not form that circuit within a
CPU budget: on BabyAI it writes list entries that are not in the list (BENCHMARKS.md,
Training quality).

Before distillation, the warm-up trains a fresh preset student on a synthetic task that
holds nothing but induction: a random run of words drawn from the trace texts, the
assistant marker, and the same run again, with the loss on the repeat only. The words are
the traces' own, so the tokens whose copies matter later are the ones copied here; their
order is random, so only a copy predicts the repeat. The loop is plain (AdamW, linear
warm-up, constant rate, gradient clipping) and draws from its own seeded generator, never
torch's, so the main run's data order is the same with or without it. It runs where the
fresh model is, on the CPU, before Accelerate places the model (a few minutes for micro).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from typing import Any

import torch

from agent.prompt import ROLE_TOKENS

log = logging.getLogger(__name__)

#: Words in one copy example (a random count in this range), and examples per step.
WORDS = (4, 30)
BATCH = 16
LR = 1e-3
WARMUP = 20


def vocabulary(texts: Iterable[str]) -> list[str]:
    """The distinct whitespace-separated words of ``texts``, sorted (a stable draw order);
    chat-template markers (``<|user|>``) are not words."""
    return sorted({w for t in texts for w in t.split() if "<|" not in w})


def copy_example(words: list[str], tok: Any, rng: random.Random) -> tuple[list[int], list[int]]:
    """One example: ``ids`` = run + assistant marker + run, ``labels`` = -100 over the first
    run and the marker, the run's ids over the repeat."""
    n = rng.randint(*WORDS)
    run = tok(" ".join(rng.choice(words) for _ in range(n)), add_special_tokens=False)["input_ids"]
    sep = tok.convert_tokens_to_ids(ROLE_TOKENS["assistant"])
    return run + [sep] + run, [-100] * (len(run) + 1) + run


def copy_warmup(model: Any, tok: Any, texts: Iterable[str], steps: int, *, seed: int = 0,
                bf16: bool = False) -> dict[str, float]:
    """Train ``model`` in place on ``steps`` batches of copy examples.

    Returns:
        ``{"copy_loss": ..., "copy_acc": ...}`` of the last step: the cross-entropy and the
        next-token accuracy over the repeated runs (1.0: the student copies exactly).
    """
    words = vocabulary(texts)
    if not words:
        raise ValueError("copy warm-up: the trace texts hold no words to copy")
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / (WARMUP + 1)))
    pad = tok.pad_token_id
    model.train()
    out = {"copy_loss": float("nan"), "copy_acc": 0.0}
    for step in range(steps):
        batch = [copy_example(words, tok, rng) for _ in range(BATCH)]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in batch])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=ids, attention_mask=mask).logits
        logits, targets = logits.float()[:, :-1], labels[:, 1:]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step == steps - 1 or step % 200 == 0:
            with torch.no_grad():
                scored = targets != -100
                right = (logits.argmax(-1) == targets) & scored
                out = {"copy_loss": loss.item(), "copy_acc": (right.sum() / scored.sum()).item()}
            log.info("copy warm-up step %d/%d: loss %.4f, copy accuracy %.3f",
                     step + 1, steps, out["copy_loss"], out["copy_acc"])
    return out
