"""Trace episodes to training examples, token ids and length-bucketed batches.

Every example is rebuilt with the one prompt renderer (``agent.prompt``): the prompt is the
chat text of the context the teacher saw (history = the earlier steps of the episode as
turns, instructions from the env), and the target is the teacher's
``Thought: ...`` / ``Action: ...`` completion followed by the end-of-turn token. The prompt
is masked out of the loss; the rationale and the action part of the target carry separate
weights (distilling step-by-step).
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

import envs
from agent.prompt import (
    END_TOKEN,
    PROMPT_FORMAT,
    ROLE_TOKENS,
    chat_text,
    make_context,
    render_completion,
    render_messages,
)
from agent.types import Episode, TopK, Turn
from distill.rename import Renamer, episode_rng, fresh_names
from distill.traces import iter_traces

log = logging.getLogger(__name__)


@dataclass
class Example:
    """One decision of an episode as a (prompt, completion) pair.

    ``action_start`` is the character offset in ``completion`` where the ``Action:`` line
    begins; everything before it is the rationale part.
    """

    prompt: str
    completion: str
    action: str
    action_start: int
    env_id: str = ""
    seed: int = 0
    step: int = 0
    top_logprobs: list[TopK] | None = None


@dataclass
class Encoded:
    """An example as token ids with per-token loss weights (0 on the prompt)."""

    input_ids: list[int]
    weights: list[float]
    n_prompt: int
    action_pos: int  # index of the first action-part token in input_ids
    action: str
    topk: list[dict[int, float]] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.input_ids)


class DataError(ValueError):
    """Trace data that cannot be trained on; the message says what to do."""


def episode_examples(
    episode: Episode,
    variant: str,
    *,
    action_only: bool = False,
    skip_invalid: bool = True,
    env: Any | None = None,
    rename_seed: int | None = None,
    rename_pieces: Sequence[str] | None = None,
) -> list[Example]:
    """The training examples of one episode.

    Args:
        episode: a trace episode.
        variant: the prompt variant (``"compact"`` or ``"full"``).
        action_only: drop the rationale (the target is ``Thought: `` + the action).
        skip_invalid: leave out steps whose action the env refused (the teacher's mistakes
            still appear in the history of later steps, as the teacher saw them).
        env: an env of ``episode.env_id`` to take the instructions from (built if None).
        rename_seed: give the names the episode's world made up (``env.invented_names()``)
            fresh made-up ones, the same in every step (``distill.rename``), drawn from this
            seed and the episode. Steps with stored top-k log-probabilities keep their names
            (the teacher's tokens were of the old ones). None: no renaming.
        rename_pieces: with ``rename_seed``, string the fresh names from these letter pieces
            (``distill.rename.word_pieces``); None: from consonant and vowel groups.
    """
    if env is None:
        env = envs.make(episode.env_id, **episode.env_options)
    env.reset(seed=episode.seed)
    rename = None
    if rename_seed is not None and (names := env.invented_names()):
        rename = Renamer(fresh_names(names, episode_rng(rename_seed, episode.env_id, episode.seed),
                                     rename_pieces))
    examples: list[Example] = []
    history: list[Turn] = []
    for t, step in enumerate(episode.steps):
        if step.valid or not skip_invalid:
            info = {"legal_actions": step.legal_actions}
            ctx = make_context(env, step.observation, info, history, variant)
            prompt = chat_text(render_messages(ctx, variant))
            completion = render_completion("" if action_only else step.rationale, step.action)
            action = step.action
            if rename is not None and not step.top_logprobs:
                prompt, completion, action = rename(prompt), rename(completion), rename(action)
            examples.append(Example(
                prompt=prompt,
                completion=completion + END_TOKEN,
                action=action,
                action_start=completion.rindex("\nAction: ") + 1,
                env_id=episode.env_id,
                seed=episode.seed,
                step=t,
                top_logprobs=None if action_only else step.top_logprobs,
            ))
        history.append(step.turn(rationale=not action_only))
    return examples


def load_episodes(paths: Sequence[str | os.PathLike[str]], *, only_success: bool = False) -> list[Episode]:
    """Read trace files and check they can be trained on (one-line errors otherwise)."""
    episodes: list[Episode] = []
    for path in paths:
        eps = list(iter_traces(path))
        for ep in eps:
            if ep.prompt_format != PROMPT_FORMAT:
                raise DataError(
                    f"{path}: episode {ep.env_id} seed {ep.seed} has prompt format "
                    f"{ep.prompt_format!r}, expected {PROMPT_FORMAT!r}; re-collect the traces "
                    "with this version of agentkd (agentkd collect)"
                )
        if not eps:
            raise DataError(f"{path}: no episodes in the trace file; collect some first (agentkd collect)")
        episodes += eps
    if only_success:
        kept = [ep for ep in episodes if ep.success]
        if not kept:
            raise DataError(
                f"{', '.join(map(str, paths))}: all {len(episodes)} episodes failed; collect "
                "with a better teacher or train without --only-success"
            )
        episodes = kept
    if not any(ep.steps for ep in episodes):
        raise DataError(f"{', '.join(map(str, paths))}: the episodes hold no steps")
    return episodes


def split_episodes(episodes: list[Episode], val_frac: float, seed: int) -> tuple[list[Episode], list[Episode]]:
    """Hold out ``val_frac`` of the episodes (at least one if > 0 and there are two or more)."""
    if not 0.0 <= val_frac < 1.0:
        raise ValueError(f"val_frac: expected a number in [0, 1), got {val_frac}")
    order = list(range(len(episodes)))
    random.Random(seed).shuffle(order)
    n_val = math.ceil(val_frac * len(episodes)) if val_frac > 0 and len(episodes) > 1 else 0
    val_idx = set(order[:n_val])
    return ([e for i, e in enumerate(episodes) if i not in val_idx],
            [e for i, e in enumerate(episodes) if i in val_idx])


def build_examples(episodes: Iterable[Episode], variant: str, **kw: Any) -> list[Example]:
    """``episode_examples`` over many episodes, with one env per (id, options)."""
    cache: dict[str, Any] = {}
    out: list[Example] = []
    for ep in episodes:
        key = f"{ep.env_id}:{sorted(ep.env_options.items())!r}"
        if key not in cache:
            cache[key] = envs.make(ep.env_id, **ep.env_options)
        out += episode_examples(ep, variant, env=cache[key], **kw)
    return out


def encode(
    example: Example,
    tokenizer: Any,
    *,
    rationale_weight: float = 1.0,
    action_weight: float = 1.0,
    max_len: int = 2048,
) -> Encoded:
    """Token ids of prompt + completion (tokenized separately, as the runtime does) and the
    loss weight of each token: 0 on the prompt, ``rationale_weight`` on ``Thought: ...``,
    ``action_weight`` on ``Action: ...`` and the end token. A prompt longer than
    ``max_len`` is cut from the left."""
    p_ids = tokenizer.encode(example.prompt, add_special_tokens=False)
    enc = tokenizer(example.completion, add_special_tokens=False, return_offsets_mapping=True)
    c_ids, offsets = enc["input_ids"], enc["offset_mapping"]
    n_rationale = sum(1 for start, _ in offsets if start < example.action_start)
    keep = max_len - len(c_ids)
    if keep < 1:
        raise DataError(f"a completion of {len(c_ids)} tokens does not fit max_len={max_len}")
    p_ids = p_ids[-keep:]
    weights = [0.0] * len(p_ids) + [rationale_weight] * n_rationale + [action_weight] * (len(c_ids) - n_rationale)
    topk = _topk_ids(example, tokenizer, c_ids) if example.top_logprobs else None
    return Encoded(p_ids + c_ids, weights, len(p_ids), len(p_ids) + n_rationale, example.action, topk)


#: A line of an observation that recall can ask for: ``CUE: VALUE`` (``Known RedBalls: 1
#: ahead``, ``In front: nothing``, ``row 2: F F H G``); chat markers are not lines.
_RECALL_LINE = re.compile(r"^([^<>:\n]{1,40}:)( [^\n]+?)(?=<\||$)", re.MULTILINE)


def with_recall(enc: Encoded, prompt: str, tokenizer: Any, lines: int, rng: random.Random,
                max_len: int = 2048) -> Encoded:
    """``enc`` with a recall tail after its end token: up to ``lines`` of the ``CUE: VALUE``
    lines of the prompt's last user turn (the observation) whose cue the turn holds once,
    in random order, each as a newline and its cue (no loss) and its value (loss weight 1),
    the value keeping its leading space so that agentkd's byte-level tokenizer writes it
    as the prompt has it (another tokenizer may split a line's edges otherwise).
    A student never reads past its end token, so the tail changes nothing it is asked at
    run time; in training it is several more lookups of the observation by name, each a
    copy from a place that moves, for a few more tokens of the same forward pass. A line
    that would pass ``max_len`` is left out."""
    found = _RECALL_LINE.findall(prompt[max(prompt.rfind(ROLE_TOKENS["user"]), 0):])  # the last user turn
    counts = Counter(cue for cue, _ in found)
    found = [(cue, value) for cue, value in found if counts[cue] == 1]  # a cue must say which line
    ids, weights = list(enc.input_ids), list(enc.weights)
    for cue, value in rng.sample(found, min(lines, len(found))):
        c = tokenizer.encode("\n" + cue, add_special_tokens=False)
        v = tokenizer.encode(value, add_special_tokens=False)
        if len(ids) + len(c) + len(v) > max_len:
            continue
        ids += c + v
        weights += [0.0] * len(c) + [1.0] * len(v)
    return Encoded(ids, weights, enc.n_prompt, enc.action_pos, enc.action, enc.topk)


def _topk_ids(example: Example, tokenizer: Any, c_ids: list[int]) -> list[dict[int, float]]:
    """Map the teacher's per-token top-k (token text -> logprob) onto student token ids.

    The teacher must share the student's tokenizer: each position's texts must be single
    student tokens and the teacher's tokens must be the student's completion tokens;
    anything else is an error, never a silent misalignment."""
    tops = example.top_logprobs or []
    if len(tops) not in (len(c_ids), len(c_ids) - 1):  # the end token may be absent
        raise DataError(
            f"{example.env_id} seed {example.seed} step {example.step}: the trace holds top-k "
            f"log-probabilities for {len(tops)} tokens but the student tokenizer makes "
            f"{len(c_ids)}; the teacher used another tokenizer: train without --kd, or with "
            "the teacher's own tokenizer"
        )
    out: list[dict[int, float]] = []
    for pos, top in enumerate(tops):
        ids: dict[int, float] = {}
        for text, lp in top.items():
            tid = tokenizer.encode(text, add_special_tokens=False)
            if len(tid) == 1:
                ids[tid[0]] = float(lp)
        if c_ids[pos] not in ids:
            raise DataError(
                f"{example.env_id} seed {example.seed} step {example.step}: token {pos} of the "
                "completion is not among the teacher's top-k; the teacher's tokenizer differs "
                "from the student's: train without --kd or with the teacher's tokenizer"
            )
        out.append(ids)
    return out


def bucketed_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """One epoch of batches: shuffled, then sorted by length within windows of 50 batches
    (so a batch holds similar lengths and little padding), then the batches shuffled.
    Deterministic in (seed, epoch), which is what lets ``--resume`` find its place."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 50
    batches: list[list[int]] = []
    for w in range(0, len(order), window):
        chunk = sorted(order[w:w + window], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(batch: Sequence[Encoded], pad_id: int, topk: bool = False) -> dict[str, torch.Tensor]:
    """Right-padded tensors: ``input_ids``, ``attention_mask``, ``weights``, ``prompt_mask``
    (True on the prompt's tokens) and, with
    ``topk``, ``topk_ids``/``topk_logprobs``/``topk_mask`` aligned with ``input_ids``."""
    width = max(len(e) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    w = torch.zeros((len(batch), width), dtype=torch.float32)
    prompt = torch.zeros((len(batch), width), dtype=torch.bool)
    for i, e in enumerate(batch):
        n = len(e)
        ids[i, :n] = torch.tensor(e.input_ids)
        mask[i, :n] = 1
        w[i, :n] = torch.tensor(e.weights)
        prompt[i, :e.n_prompt] = True
    out = {"input_ids": ids, "attention_mask": mask, "weights": w, "prompt_mask": prompt}
    if topk:
        k = max((len(d) for e in batch for d in (e.topk or [])), default=1)
        t_ids = torch.zeros((len(batch), width, k), dtype=torch.long)
        t_lp = torch.full((len(batch), width, k), -math.inf)
        t_mask = torch.zeros((len(batch), width), dtype=torch.bool)
        for i, e in enumerate(batch):
            n_prompt = e.n_prompt
            for pos, d in enumerate(e.topk or []):
                t_ids[i, n_prompt + pos, :len(d)] = torch.tensor(list(d.keys()))
                t_lp[i, n_prompt + pos, :len(d)] = torch.tensor(list(d.values()))
                t_mask[i, n_prompt + pos] = True
        out.update(topk_ids=t_ids, topk_logprobs=t_lp, topk_mask=t_mask)
    return out
