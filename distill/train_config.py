"""The config of ``agentkd train`` (one frozen dataclass; every field is a ``--flag``)."""

from __future__ import annotations

from dataclasses import dataclass
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
    action_only: bool = False
    """Drop the rationales: the target is 'Thought: ' + the action."""
    rationale_weight: float = 1.0
    """Loss weight of the rationale tokens (Thought: ...)."""
    action_weight: float = 1.0
    """Loss weight of the action tokens (Action: ... and the end token)."""
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
