"""The config of ``agentkd train`` (one frozen dataclass; every field is a ``--flag``) and its
checks: options that cannot go together (``check_config``), and a ``--resume`` that is not
the interrupted run continued (``check_resume``)."""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class TrainConfig:
    """Train a student LM on trace files (the whole config is saved with every checkpoint)."""

    traces: str = ""
    """Trace file(s) to learn from, comma-separated (JSONL written by agentkd collect)."""
    student: str = "micro"
    """A size preset (nano, micro, small), a local causal-LM checkpoint directory to fine-tune,
    or prune:PATH to cut the student from a teacher checkpoint (see --keep-layers, --heads,
    --intermediate)."""
    out: str = "runs/student"
    """Output directory: best/ and last/ checkpoints, train_config.json, log.jsonl."""
    prompt_variant: Literal["compact", "full"] | None = None
    """Prompt variant to train on (default: compact for presets; a checkpoint's own variant
    from its agentkd.json, else full)."""
    keep_layers: str = ""
    """With --student prune:PATH: the teacher's layers to keep, e.g. 0,2 (empty: all)."""
    heads: int = 0
    """With --student prune:PATH: attention heads kept per layer (0: all)."""
    intermediate: int = 0
    """With --student prune:PATH: MLP width kept (0: all; a multiple of 256 for K-quants)."""
    importance: Literal["magnitude", "activation"] = "magnitude"
    """With --student prune:PATH: how heads and MLP channels are ranked (activation uses
    the trace prompts)."""
    vocab_size: int = 2048
    """Tokenizer vocabulary size for a preset student (trained on the traces)."""
    copy_warmup: int = 0
    """Steps of copy warm-up for a preset student before distillation (0: off): it learns to
    repeat random runs of the traces' words, the copying its rationales need (distill/copy_warmup.py)."""
    tie_embeddings: bool = False
    """A preset student shares its input embedding with its output head (a token it has only
    read, such as a name in a held-out question, gets a trained output row too)."""
    lora: bool = False
    """Fine-tune a checkpoint with LoRA adapters (merged into the weights before saving)."""
    lora_r: int = 8
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_r)."""
    kd: Literal["none", "forward", "reverse", "jsd"] = "none"
    """Token-level distillation: none (sequence-level CE only), forward KL, reverse KL or JSD."""
    teacher: str = ""
    """Online KD teacher 'hf:PATH' (same tokenizer required); empty: top-k log-probs in the traces."""
    alpha: float = 0.5
    """Weight of the KD term: loss = (1 - alpha) * CE + alpha * KD."""
    temperature: float = 1.0
    """KD softening temperature (the KD term is multiplied by temperature**2)."""
    beta: float = 0.5
    """JSD mixture weight: 0 gives forward KL, 1 reverse KL."""
    epochs: int = 3
    """Passes over the training examples (ignored when --steps is set)."""
    steps: int = 0
    """Optimizer steps to train for (0: use --epochs)."""
    batch_size: int = 16
    """Examples per optimizer step (per process under accelerate launch)."""
    lr: float = 1e-3
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.01
    """AdamW weight decay (matrices only)."""
    warmup: int = 20
    """Linear warmup steps before the cosine decay (to 10% of --lr)."""
    grad_clip: float = 1.0
    """Gradient norm clipping (0: off)."""
    mixed_precision: Literal["no", "bf16"] = "no"
    """bf16: the student's forward runs under torch.autocast (weights, optimizer and loss stay
    fp32); about 1.4x the tokens/s of fp32 on CPUs with AVX512-BF16
    (benchmarks/train_throughput.py)."""
    only_success: bool = False
    """Keep only episodes the teacher solved."""
    rename_entities: bool = False
    """Give the made-up names of each training episode (tool-use worlds) fresh made-up ones,
    so the student copies names instead of memorising them (distill/rename.py)."""
    rename_from: Literal["letters", "pieces"] = "pieces"
    """With --rename-entities: build the fresh names from the student tokenizer's letter pieces,
    each as likely (pieces), or from consonant and vowel groups (letters; distill/rename.py)."""
    action_only: bool = False
    """Drop the rationales: the target is 'Thought: ' + the action."""
    rationale_weight: float = 1.0
    """Loss weight of the rationale tokens (Thought: ...)."""
    action_weight: float = 1.0
    """Loss weight of the action tokens (Action: ... and the end token)."""
    prompt_weight: float = 0.0
    """Weight of a second next-token loss on the prompt's own tokens, averaged over them apart
    from the completion's loss and added to it (and to the logged train loss): the student
    also learns to predict its prompts (a compact prompt is the observation), most of each
    example's tokens, at no extra compute (0: off)."""
    recall_lines: int = 0
    """After each training example's end token, recall up to this many of its prompt's
    ``CUE: VALUE`` lines by their cue, in random order, with the loss on the values: more
    lookups of the observation by name for a few more tokens (``distill.data.with_recall``;
    0: off)."""
    focal_gamma: float = 0.0
    """Focal cross-entropy: each target token's loss times (1 - p)^gamma, p the student's
    probability of it, so tokens it already predicts count less than the hard ones (0: plain
    cross-entropy; validation loss is always plain)."""
    val_frac: float = 0.1
    """Fraction of episodes held out for validation."""
    eval_every: int = 100
    """Validate and save the last checkpoint every N steps (and at the end)."""
    val_greedy_max: int = 256
    """Greedy-decode at most this many validation examples for val_action_acc (0: all);
    decoding is the costly part of a validation."""
    select_by: Literal["loss", "action_acc"] = "loss"
    """What makes OUT/best: the lowest validation loss (all validation tokens; ties go to the
    higher accuracy), or the highest greedy next-action accuracy (ties: lower loss). Accuracy on
    a subset can crown a degenerate checkpoint that answers the commonest action everywhere."""
    max_len: int = 1024
    """Longest training sequence in tokens (longer prompts are cut from the left)."""
    resume: bool = False
    """Continue a killed run from OUT/last (model, optimizer, schedule, RNG, data position)."""
    seed: int = 0
    """Seed of the initialisation, the data order and the validation split."""
    stop_after: int = 0
    """Stop after this many steps as if killed, keeping the schedule of the full run (0: off)."""
    progress: bool = True
    """Show a progress bar."""


def check_config(cfg: TrainConfig) -> None:
    """Options that cannot work together, or values out of range: a one-line error each."""
    from distill.student import PRESETS

    if cfg.teacher and not cfg.teacher.startswith("hf:"):
        raise ValueError(f"--teacher: expected 'hf:PATH' (or empty for trace top-k), got {cfg.teacher!r}")
    if cfg.teacher and cfg.kd == "none":
        raise ValueError("--teacher is only used with --kd forward|reverse|jsd")
    if cfg.lora and cfg.student in PRESETS:
        raise ValueError(f"--lora needs a pretrained checkpoint directory, got preset {cfg.student!r}")
    if cfg.copy_warmup < 0:
        raise ValueError(f"--copy-warmup: expected >= 0 steps, got {cfg.copy_warmup}")
    if cfg.copy_warmup and cfg.student not in PRESETS:
        raise ValueError(f"--copy-warmup trains a fresh preset student; got --student {cfg.student!r}, "
                         "which has its own weights (drop --copy-warmup)")
    for name in ("batch_size", "eval_every"):
        if getattr(cfg, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')}: expected > 0, got {getattr(cfg, name)}")
    if not 0 <= cfg.prompt_weight < math.inf:
        raise ValueError(f"--prompt-weight: expected a finite number >= 0, got {cfg.prompt_weight}")
    if cfg.recall_lines < 0:
        raise ValueError(f"--recall-lines: expected an int >= 0 (0: off), got {cfg.recall_lines}")
    if cfg.recall_lines and cfg.kd != "none":
        raise ValueError("--recall-lines with --kd: the teacher never saw recall tails; use one of them")
    if not 0 <= cfg.focal_gamma < math.inf:
        raise ValueError(f"--focal-gamma: expected a finite number >= 0 (0: plain cross-entropy), "
                         f"got {cfg.focal_gamma}")
    if not 0.0 <= cfg.alpha <= 1.0:
        raise ValueError(f"--alpha: expected a number in [0, 1], got {cfg.alpha}")
    if cfg.mixed_precision not in ("no", "bf16"):
        raise ValueError(f"--mixed-precision: expected 'no' or 'bf16', got {cfg.mixed_precision!r}")


#: Options a resumed run may give other values than the interrupted one: none of them
#: changes the weights the run ends with.
RESUME_FREE = ("resume", "stop_after", "progress", "eval_every", "val_greedy_max")


def check_resume(cfg: TrainConfig, out: Path, hashes: dict[str, str]) -> None:
    """A resumed run must be the interrupted run continued: the same options (but
    ``RESUME_FREE``) and the same trace files, byte for byte. Anything else would train the
    saved weights on other texts or another schedule without a word."""
    from distill.student import read_meta

    saved_file = out / "train_config.json"
    if not saved_file.is_file():
        return
    try:
        saved = json.loads(saved_file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"--resume: {saved_file} is not the JSON a run writes ({e}); "
                         "train into a fresh --out") from None
    if not isinstance(saved, dict):
        raise ValueError(f"--resume: {saved_file} is not the JSON a run writes (expected an object of "
                         f"options, got {type(saved).__name__}); train into a fresh --out")
    if saved.get("rename_entities") and "rename_from" not in saved:
        saved["rename_from"] = "letters"  # renamed before --rename-from existed: from letters
    # An option the saved run does not name was added after it: compare it at its default.
    saved = {**{f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}, **saved}
    now = asdict(cfg)
    free = RESUME_FREE if saved.get("rename_entities") or cfg.rename_entities else (*RESUME_FREE, "rename_from")
    changed = [k for k in now if k not in free and saved.get(k, now[k]) != now[k]]
    if changed:
        was = ", ".join(f"--{k.replace('_', '-')} {saved[k]!r}" for k in changed)
        is_ = ", ".join(f"--{k.replace('_', '-')} {now[k]!r}" for k in changed)
        raise ValueError(f"--resume: {out} was trained with {was}, this call gives {is_}; resume with "
                         "the interrupted run's options, or train into a fresh --out")
    before = read_meta(out / "last").get("trace_hashes", {})
    moved = [p for p, h in hashes.items() if p in before and before[p] != h]
    if moved:
        raise ValueError(f"--resume: trace file(s) {', '.join(moved)} changed since the interrupted run "
                         f"in {out} (sha256 differs); resume with the files it trained on, or train into "
                         "a fresh --out")
