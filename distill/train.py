"""``agentkd train``: train a student LM on teacher traces.

    agentkd train --traces traces.jsonl --student micro --out runs/micro --epochs 3
    agentkd train --traces a.jsonl,b.jsonl --student ./my-llama --lora --out runs/lora
    agentkd train --traces t.jsonl --student nano --kd jsd --beta 0.5 --teacher hf:runs/big/best
    accelerate launch -m agent.cli train --traces t.jsonl --student small --out runs/small

The loop in ``train`` reads top to bottom: data, model, optimiser, (resume), steps with
validation and checkpoints. It runs under Hugging Face Accelerate (one CPU process here,
DDP under ``accelerate launch``). Next-action accuracy on held-out episodes is measured by
greedy decoding: the student writes its whole completion from the prompt and the parsed
action must equal the teacher's (``val_action_acc``); the teacher-forced variant (argmax
over the action tokens given the teacher's rationale) is logged beside it as
``val_tf_action_acc`` and is always at least as flattering (``distill.validate``). The
options and their checks, a resume's included, are ``distill.train_config``.

Output: ``OUT/best`` (lowest validation loss by default, ``--select-by``) and ``OUT/last``
(students with ``agentkd.json``; ``last`` also holds ``trainer_state.pt`` for ``--resume``),
``OUT/train_config.json`` and ``OUT/log.jsonl`` (one line per validation).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

import envs
from agent.prompt import CHAT_TEMPLATE, END_TOKEN, EOS_TOKEN, PROMPT_FORMAT, SPECIAL_TOKENS
from agent.types import Episode
from distill import data, losses
from distill.copy_warmup import copy_warmup
from distill.lora import adapter_state, apply_lora, load_adapter_state, merged_copy
from distill.rename import word_pieces
from distill.student import PRESETS, build_student, load_student, read_meta, save_student
from distill.tokenizer import check_round_trip, train_tokenizer
from distill.train_config import TrainConfig, check_config, check_resume
from distill.traces import file_sha256, write_json_atomic
from distill.validate import evaluate_batches, selection_key

log = logging.getLogger(__name__)
STATE_FILE = "trainer_state.pt"

__all__ = ["TrainConfig", "train", "cli"]


def train(cfg: TrainConfig) -> Path:
    """Train a student as ``cfg`` says; returns the best checkpoint's directory."""
    # ---- setup: process group, seeds, determinism
    acc = Accelerator()
    set_seed(cfg.seed)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    out = Path(cfg.out)
    last_dir, best_dir = out / "last", out / "best"
    check_config(cfg)
    resuming = cfg.resume and (last_dir / STATE_FILE).is_file()
    if cfg.resume and not resuming:
        log.warning("--resume: no %s in %s; starting from scratch", STATE_FILE, last_dir)

    # ---- data: episodes -> examples (one prompt renderer) -> token ids
    paths = [p.strip() for p in cfg.traces.split(",") if p.strip()]
    if not paths:
        raise data.DataError("--traces: expected one or more trace files, got none")
    episodes = data.load_episodes(paths, only_success=cfg.only_success)
    train_eps, val_eps = data.split_episodes(episodes, cfg.val_frac, cfg.seed)
    if cfg.student.startswith("prune:"):
        # Cut the student from the teacher's weights first (deterministic, so a resumed
        # run rebuilds the same one); then it trains like any checkpoint.
        from distill.prune import resolve_prune_spec

        cfg = replace(cfg, student=str(resolve_prune_spec(cfg.student, cfg)))
    hashes = {p: file_sha256(p) for p in paths}
    if resuming:
        check_resume(cfg, out, hashes)
    preset = cfg.student if cfg.student in PRESETS else None
    # A checkpoint keeps the variant it was trained on (agentkd.json); a foreign one gets full.
    variant = cfg.prompt_variant or (
        "compact" if preset else read_meta(cfg.student).get("prompt_variant", "full"))
    ex_kw = {"action_only": cfg.action_only}
    if cfg.rename_entities:
        _warn_nothing_to_rename(train_eps)
    # Renamed names in training only: validation reads the names the env writes.
    train_ex = data.build_examples(train_eps, variant, **ex_kw,
                                   rename_seed=cfg.seed if cfg.rename_entities else None)
    val_ex = data.build_examples(val_eps, variant, **ex_kw)
    if not train_ex:
        raise data.DataError(f"{cfg.traces}: no valid teacher steps to train on")

    # ---- model and tokenizer: a fresh preset, a checkpoint (+LoRA), or our own last/
    model, tok, base_meta = _student(cfg, preset, train_ex + val_ex, resuming, last_dir)
    if cfg.rename_entities and cfg.rename_from == "pieces":
        # The names once more, now from the student's own letter pieces (a fresh preset's
        # tokenizer was trained on the texts renamed from letters above).
        pieces = word_pieces(tok)
        if not pieces:
            raise data.DataError(f"--rename-from pieces: the tokenizer of {cfg.student} has no letter pieces "
                                 "to build names from; pass --rename-from letters")
        train_ex = data.build_examples(train_eps, variant, **ex_kw, rename_seed=cfg.seed, rename_pieces=pieces)
    if cfg.copy_warmup and preset and not resuming:  # a resumed run's weights had it before step 0
        base_meta["copy_warmup"] = copy_warmup(model, tok, (e.prompt + e.completion for e in train_ex + val_ex),
                                               cfg.copy_warmup, seed=cfg.seed,
                                               bf16=cfg.mixed_precision == "bf16")
    enc_kw = {"rationale_weight": cfg.rationale_weight, "action_weight": cfg.action_weight,
              "max_len": cfg.max_len}
    use_topk = cfg.kd != "none" and not cfg.teacher
    if use_topk and not any(e.top_logprobs for e in train_ex):
        raise data.DataError(f"--kd {cfg.kd} without --teacher needs top-k log-probabilities in "
                             "the traces; collect with --top-logprobs K or pass --teacher hf:PATH")
    train_enc = [data.encode(e, tok, **enc_kw) for e in train_ex]
    if cfg.recall_lines:  # seeded, so a resumed run rebuilds the same tails
        rng = random.Random(cfg.seed)
        train_enc = [data.with_recall(enc, e.prompt, tok, cfg.recall_lines, rng, cfg.max_len)
                     for e, enc in zip(train_ex, train_enc, strict=True)]
    val_enc = [data.encode(e, tok, **enc_kw) for e in val_ex]
    teacher = _teacher(cfg, tok) if cfg.kd != "none" and cfg.teacher else None

    # ---- optimiser and schedule
    lengths = [len(e) for e in train_enc]
    world, rank = acc.num_processes, acc.process_index
    steps_per_epoch = max(1, math.ceil(len(train_enc) / cfg.batch_size) // world)
    total = cfg.steps or cfg.epochs * steps_per_epoch
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup_cosine(cfg.warmup, total))
    model, opt = acc.prepare(model, opt)
    if teacher is not None:
        teacher = teacher.to(acc.device)

    # ---- resume: optimizer, schedule, RNG, data position (weights came with the model)
    step, best_key, seen_tokens = 0, None, 0
    if resuming:
        state = torch.load(last_dir / STATE_FILE, weights_only=True)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        step, seen_tokens = int(state["step"]), int(state["seen_tokens"])
        best_key = tuple(state["best_key"]) if state["best_key"] is not None else None
        log.info("resumed %s at step %d of %d", out, step, total)
    if acc.is_main_process:
        write_json_atomic(out / "train_config.json", asdict(cfg))
    meta = {**base_meta, "prompt_format": PROMPT_FORMAT, "prompt_variant": variant,
            "preset": preset or base_meta.get("preset"),
            "trace_hashes": hashes, "train_config": asdict(cfg)}

    # ---- training loop
    progress = _Progress(total, step, enabled=cfg.progress and acc.is_main_process)
    epoch_batches: dict[int, list[list[int]]] = {}
    # tokens/s counts training time only: validation and checkpoints are timed apart (val_s)
    t0, tokens_run, val_s = time.perf_counter(), 0, 0.0
    model.train()
    while step < total:
        epoch, idx = divmod(step, steps_per_epoch)
        if epoch not in epoch_batches:
            epoch_batches = {epoch: data.bucketed_batches(lengths, cfg.batch_size, cfg.seed, epoch)}
        batch = data.collate([train_enc[i] for i in epoch_batches[epoch][idx * world + rank]],
                             tok.pad_token_id, topk=use_topk)
        batch = {k: v.to(acc.device) for k, v in batch.items()}
        # bf16 autocast here rather than Accelerator(mixed_precision=...), whose state is
        # process-global: one process may train several students (demo, dagger, benchmarks).
        with torch.autocast(acc.device.type, dtype=torch.bfloat16, enabled=cfg.mixed_precision == "bf16"):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits = logits.float()
        logits, targets, w = logits[:, :-1], batch["input_ids"][:, 1:], batch["weights"][:, 1:]
        ce = losses.weighted_ce(logits, targets, w, cfg.focal_gamma)
        loss, kd = ce, None
        if teacher is not None:
            with torch.no_grad():
                t_logits = teacher(input_ids=batch["input_ids"],
                                   attention_mask=batch["attention_mask"]).logits[:, :-1]
            kd = losses.kd_loss(logits, t_logits, w, cfg.kd, beta=cfg.beta, temperature=cfg.temperature)
        elif use_topk:
            kd = losses.topk_kd_loss(logits, batch["topk_ids"][:, 1:], batch["topk_logprobs"][:, 1:],
                                     w * batch["topk_mask"][:, 1:], cfg.kd, beta=cfg.beta,
                                     temperature=cfg.temperature)
        if kd is not None:
            loss = (1 - cfg.alpha) * ce + cfg.alpha * kd
        if cfg.prompt_weight:  # the observation's own tokens, each predicted from those before it
            loss = loss + cfg.prompt_weight * losses.weighted_ce(logits, targets, batch["prompt_mask"][:, 1:].float())
        acc.backward(loss)
        if cfg.grad_clip > 0:
            acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        n_tok = int(batch["attention_mask"].sum()) * world
        seen_tokens += n_tok
        tokens_run += n_tok
        progress.update(step, loss=loss.item(), tok_s=tokens_run / (time.perf_counter() - t0 - val_s))

        # ---- validation and checkpoints
        stopping = step == total or (cfg.stop_after and step >= cfg.stop_after)
        if step % cfg.eval_every == 0 or stopping:
            t_val = time.perf_counter()
            metrics = (evaluate_batches(acc.unwrap_model(model), val_enc, tok.pad_token_id, cfg.batch_size, tok,
                                        greedy_max=cfg.val_greedy_max) if val_enc else {})
            metrics.update(step=step, train_loss=loss.item(), lr=sched.get_last_lr()[0],
                           tokens=seen_tokens, tokens_per_s=tokens_run / (t_val - t0 - val_s))
            key = selection_key(cfg.select_by, metrics, step)
            if acc.is_main_process:
                plain = merged_copy(acc.unwrap_model(model))
                if best_key is None or key > best_key:
                    best_key = key
                    save_student(plain, tok, best_dir, {**meta, "step": step, "metrics": metrics})
                state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                         "torch_rng": torch.get_rng_state(), "step": step,
                         "seen_tokens": seen_tokens, "best_key": list(best_key)}
                if cfg.lora:
                    state["adapter"] = adapter_state(acc.unwrap_model(model))
                save_student(plain, tok, last_dir, {**meta, "step": step, "metrics": metrics},
                             extra={STATE_FILE: lambda p, s=state: torch.save(s, p)})
                progress.note(metrics)
            acc.wait_for_everyone()
            val_s += time.perf_counter() - t_val
            metrics["val_s"] = val_s
            if acc.is_main_process:
                _append_log(out / "log.jsonl", metrics)
        if stopping:
            break
    progress.close()
    torch.use_deterministic_algorithms(was_deterministic)
    return best_dir


# --------------------------------------------------------------------------- helpers
def _warn_nothing_to_rename(episodes: list[Episode]) -> None:
    """--rename-entities on envs that make up no names (a probe of one episode per env id)
    changes nothing: say so rather than let the flag look as if it did something."""
    first: dict[str, Episode] = {}
    for ep in episodes:
        first.setdefault(ep.env_id, ep)
    bare = []
    for env_id, ep in first.items():
        env = envs.make(env_id, **ep.env_options)
        env.reset(seed=ep.seed)
        if not env.invented_names():
            bare.append(env_id)
    if bare:
        log.warning("--rename-entities: %s make up no names; their episodes train unchanged",
                    ", ".join(sorted(bare)))


def _student(cfg: TrainConfig, preset: str | None, examples: list[data.Example], resuming: bool,
             last_dir: Path) -> tuple[Any, Any, dict[str, Any]]:
    """(model, tokenizer, base metadata) to train."""
    if resuming and not cfg.lora:
        model, tok, last_meta = load_student(last_dir)
        kept = {k: last_meta[k] for k in ("copy_warmup",) if k in last_meta}  # done before step 0
        return model, tok, {"base": None if preset else cfg.student, **kept}
    if preset:
        tok = train_tokenizer((e.prompt + e.completion for e in examples), cfg.vocab_size)
        check_round_trip(tok, (e.prompt + e.completion for e in examples[:50]))
        model = build_student(preset, len(tok), seed=cfg.seed, tie=cfg.tie_embeddings)
        return model, tok, {}
    model, tok, _ = load_student(cfg.student)
    missing = [t for t in SPECIAL_TOKENS if t not in tok.get_vocab()]
    if missing:  # a foreign tokenizer: give it agentkd's chat tokens, as special tokens
        tok.add_special_tokens({"additional_special_tokens": missing})
        model.resize_token_embeddings(len(tok))
    tok.eos_token, tok.chat_template = END_TOKEN, CHAT_TEMPLATE
    if tok.pad_token is None:
        tok.pad_token = EOS_TOKEN
    model.train()
    if cfg.lora:
        model = apply_lora(model, cfg.lora_r, cfg.lora_alpha)
        if resuming:
            state = torch.load(last_dir / STATE_FILE, weights_only=True)
            load_adapter_state(model, state["adapter"])
    return model, tok, {"base": cfg.student, "base_meta": read_meta(cfg.student)}


def _teacher(cfg: TrainConfig, tok: Any) -> Any:
    """The online KD teacher; its vocabulary must be the student's, token for token."""
    path = cfg.teacher[len("hf:"):]
    teacher, t_tok, _ = load_student(path)
    if t_tok.get_vocab() != tok.get_vocab() or teacher.config.vocab_size != len(tok):
        raise ValueError(
            f"--teacher {cfg.teacher}: its vocabulary ({len(t_tok)} tokens) differs from the "
            f"student's ({len(tok)}); token-level KD needs one tokenizer: train the student from "
            "the teacher's checkpoint (--student PATH) or drop --kd"
        )
    teacher.eval().requires_grad_(False)
    return teacher


def _warmup_cosine(warmup: int, total: int, floor: float = 0.1):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        t = (step - warmup) / max(1, total - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    return f


def _append_log(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


class _Progress:
    """A rich progress bar with loss, tokens/s and ETA (a no-op when disabled)."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self._p = None
        if enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._p = Progress(TextColumn("train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                               TextColumn("loss {task.fields[loss]:.4f}"),
                               TextColumn("{task.fields[tok_s]:.0f} tok/s"), TimeRemainingColumn())
            self._p.start()
            self._task = self._p.add_task("train", total=total, completed=start, loss=float("nan"), tok_s=0.0)

    def update(self, step: int, **fields: float) -> None:
        if self._p is not None:
            self._p.update(self._task, completed=step, **fields)

    def note(self, metrics: dict[str, Any]) -> None:
        if self._p is not None:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float))
            self._p.console.print(f"step {metrics['step']}: {shown}")

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()


def cli(argv: list[str]) -> int:
    """``agentkd train``: parse TrainConfig and train."""
    import tyro
    from transformers.utils import logging as hf_logging

    cfg = tyro.cli(TrainConfig, args=argv, prog="agentkd train")
    hf_logging.disable_progress_bar()  # per-save shard bars would break the training bar
    try:
        best = train(cfg)
    except (data.DataError, ValueError) as e:
        print(f"agentkd train: {e}")
        return 2
    meta = read_meta(best)
    print(f"best student: {best} (step {meta.get('step')}, {meta.get('metrics', {})})")
    return 0

