"""Distillation losses as pure tensor functions.

Shapes: logits ``[..., V]``; per-token tensors (labels, weights, masks) ``[...]``. The caller
aligns positions (logits at position t predict token t+1); these functions do no shifting.

* ``weighted_ce``: cross-entropy on target tokens, each weighted (0 masks the prompt);
  the sum is divided by the number of target tokens (weight > 0), so weights are relative
  emphasis (rationale vs action), not a change of scale when all are 1. With ``gamma`` > 0
  each token's term is the focal loss ``(1 - p)^gamma * CE`` (Lin et al., 2017; p the
  student's probability of the label): tokens it already predicts count less, the few hard
  ones (a copied colour, a verdict) more; ``gamma = 0`` is plain cross-entropy.
* ``divergence``: forward KL ``KL(p_T || p_S)`` (mean-seeking), reverse KL
  ``KL(p_S || p_T)`` (mode-seeking) or the generalised JSD of GKD (Agarwal et al., 2024),
  between two log-distributions over the same support.
* ``kd_loss`` (full teacher logits) and ``topk_kd_loss`` (teacher's top-k log-probabilities
  from a trace): softened by temperature τ and multiplied by τ² (Hinton et al., 2015) so that
  gradients keep their scale as τ changes. The top-k path renormalises *both* the teacher
  and the student over the teacher's k tokens; with k = V it equals the full path.

Generalised JSD with mixture ``M = β p_T + (1 − β) p_S``:
``JSD_β = [β KL(p_T || M) + (1 − β) KL(p_S || M)] / (β (1 − β))``. The division makes the
limits the KLs: β → 0 gives the forward KL ``KL(p_T || p_S)``, β → 1 the reverse KL
``KL(p_S || p_T)`` (as in TRL's convention); β = 0 and β = 1 are computed as those KLs
exactly. At β = 0.5 it is 4 × the ordinary Jensen-Shannon divergence.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

KINDS = ("forward", "reverse", "jsd")


def weighted_ce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
                gamma: float = 0.0) -> torch.Tensor:
    """Mean over target tokens (weight > 0) of ``weight * (1 - p)^gamma * CE(logits, label)``."""
    if not 0 <= gamma < math.inf:  # NaN fails too: it would silently train on plain CE
        raise ValueError(f"focal gamma: expected a finite number >= 0, got {gamma}")
    ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1),
                         reduction="none").view_as(weights)
    if gamma > 0:
        # p = exp(-CE) is the label's probability; the factor keeps its gradient (Lin et al.)
        ce = (-torch.expm1(-ce)).clamp(min=0).pow(gamma) * ce
    n = (weights > 0).sum().clamp(min=1)
    return (ce * weights).sum() / n


def _kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) over the last dim; 0 where p is 0 (also when q is 0 there)."""
    p = logp.exp()
    # The inner where keeps -inf - -inf (NaN) out of the backward pass, not only the forward.
    diff = torch.where(p > 0, logp - logq, torch.zeros_like(p))
    return (p * diff).sum(-1)


def divergence(student_logp: torch.Tensor, teacher_logp: torch.Tensor, kind: str,
               beta: float = 0.5) -> torch.Tensor:
    """Per-position divergence between log-distributions (last dim), see module docstring."""
    if kind == "forward":
        return _kl(teacher_logp, student_logp)
    if kind == "reverse":
        return _kl(student_logp, teacher_logp)
    if kind != "jsd":
        raise ValueError(f"kd kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta: expected a number in [0, 1], got {beta}")
    if beta == 0.0:
        return _kl(teacher_logp, student_logp)
    if beta == 1.0:
        return _kl(student_logp, teacher_logp)
    mix_p = beta * teacher_logp.exp() + (1 - beta) * student_logp.exp()
    # log(0) only on slots outside both supports (top-k padding); guarded for the gradient.
    pos = mix_p > 0
    mix = torch.where(pos, torch.log(torch.where(pos, mix_p, torch.ones_like(mix_p))),
                      torch.full_like(mix_p, -math.inf))
    jsd = beta * _kl(teacher_logp, mix) + (1 - beta) * _kl(student_logp, mix)
    return jsd / (beta * (1 - beta))


def _reduce(per_token: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    n = (weights > 0).sum().clamp(min=1)
    return (per_token * weights).sum() / n


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, weights: torch.Tensor,
            kind: str = "forward", *, beta: float = 0.5, temperature: float = 1.0) -> torch.Tensor:
    """Token-level distillation from full teacher logits, weighted like ``weighted_ce``."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"teacher logits: expected shape {tuple(student_logits.shape)}, "
                         f"got {tuple(teacher_logits.shape)} (the vocabularies differ)")
    if temperature <= 0:
        raise ValueError(f"temperature: expected > 0, got {temperature}")
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return _reduce(divergence(s, t, kind, beta), weights) * temperature**2


def topk_kd_loss(student_logits: torch.Tensor, topk_ids: torch.Tensor, topk_logprobs: torch.Tensor,
                 weights: torch.Tensor, kind: str = "forward", *, beta: float = 0.5,
                 temperature: float = 1.0) -> torch.Tensor:
    """Token-level distillation from the teacher's top-k log-probabilities.

    Args:
        student_logits: ``[..., V]``.
        topk_ids: ``[..., k]`` the teacher's k token ids per position.
        topk_logprobs: ``[..., k]`` their log-probabilities (``-inf`` marks unused slots).
        weights: ``[...]``; positions without teacher data (all slots -inf) are left out.
    """
    if temperature <= 0:
        raise ValueError(f"temperature: expected > 0, got {temperature}")
    valid = torch.isfinite(topk_logprobs)
    has = valid.any(-1)
    pad = ~valid & has.unsqueeze(-1)
    # Rows without teacher data stay finite (no NaN anywhere, even in the backward pass);
    # their weight is zeroed below.
    gathered = student_logits.float().gather(-1, topk_ids) / temperature
    s = F.log_softmax(gathered.masked_fill(pad, -math.inf), dim=-1)
    t_in = topk_logprobs.float().masked_fill(~has.unsqueeze(-1), 0.0) / temperature
    t = F.log_softmax(t_in, dim=-1)
    per = divergence(s, t, kind, beta)
    return _reduce(per, weights * has) * temperature**2
