"""Properties of the distillation losses (pure tensor functions)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from distill.losses import divergence, kd_loss, topk_kd_loss, weighted_ce

torch.manual_seed(0)
S = torch.randn(2, 5, 11) * 2
T = torch.randn(2, 5, 11) * 2
W = torch.ones(2, 5)


def _kl_ref(p_logits, q_logits):
    p, q = F.softmax(p_logits, -1), F.softmax(q_logits, -1)
    return (p * (p.log() - q.log())).sum(-1).mean()


@pytest.mark.parametrize("kind", ["forward", "reverse", "jsd"])
def test_identical_distributions_give_zero(kind):
    assert kd_loss(S, S.clone(), W, kind).item() == pytest.approx(0.0, abs=1e-6)
    ids = torch.arange(11).expand(2, 5, 11)
    lp = F.log_softmax(S, -1)
    assert topk_kd_loss(S, ids, lp, W, kind).item() == pytest.approx(0.0, abs=1e-6)


def test_directions_of_the_kls():
    # forward = KL(teacher || student), reverse = KL(student || teacher).
    assert kd_loss(S, T, W, "forward").item() == pytest.approx(_kl_ref(T, S).item(), rel=1e-5)
    assert kd_loss(S, T, W, "reverse").item() == pytest.approx(_kl_ref(S, T).item(), rel=1e-5)
    assert kd_loss(S, T, W, "forward").item() != pytest.approx(kd_loss(S, T, W, "reverse").item())


def test_jsd_limits_are_the_kls():
    fwd, rev = kd_loss(S, T, W, "forward"), kd_loss(S, T, W, "reverse")
    # beta -> 0: forward KL(teacher || student); beta -> 1: reverse KL(student || teacher).
    # (The approach is slow where one distribution has mass the other nearly lacks, so the
    # gap must shrink as beta nears the limit and be small there.)
    gaps_f = [abs(kd_loss(S, T, W, "jsd", beta=b).item() - fwd.item()) for b in (1e-2, 1e-3, 1e-4)]
    gaps_r = [abs(kd_loss(S, T, W, "jsd", beta=1 - b).item() - rev.item()) for b in (1e-2, 1e-3, 1e-4)]
    assert gaps_f == sorted(gaps_f, reverse=True) and gaps_f[-1] < 0.02 * fwd.item()
    assert gaps_r == sorted(gaps_r, reverse=True) and gaps_r[-1] < 0.02 * rev.item()
    assert kd_loss(S, T, W, "jsd", beta=0.0).item() == pytest.approx(fwd.item(), rel=1e-6)
    assert kd_loss(S, T, W, "jsd", beta=1.0).item() == pytest.approx(rev.item(), rel=1e-6)
    # beta = 0.5 is 4 x the ordinary JSD, bounded by 4 ln 2.
    p, q = F.softmax(T, -1), F.softmax(S, -1)
    m = (p + q) / 2
    js = 0.5 * (p * (p / m).log()).sum(-1) + 0.5 * (q * (q / m).log()).sum(-1)
    got = kd_loss(S, T, W, "jsd", beta=0.5).item()
    assert got == pytest.approx(4 * js.mean().item(), rel=1e-5) and got < 4 * math.log(2)


@pytest.mark.parametrize("kind", ["forward", "reverse", "jsd"])
def test_temperature_scaling(kind):
    # Softening by tau then multiplying by tau^2: logits scaled by tau at temperature tau
    # give tau^2 times the loss at temperature 1.
    tau = 3.0
    base = kd_loss(S, T, W, kind, beta=0.3)
    scaled = kd_loss(S * tau, T * tau, W, kind, beta=0.3, temperature=tau)
    assert scaled.item() == pytest.approx(tau**2 * base.item(), rel=1e-4)
    # A higher temperature flattens both distributions: the raw KL shrinks.
    hot = kd_loss(S, T, W, kind, beta=0.3, temperature=10.0) / 100
    assert hot.item() < base.item()


@pytest.mark.parametrize("kind", ["forward", "reverse", "jsd"])
def test_topk_equals_full_when_k_covers_vocab(kind):
    perm = torch.stack([torch.stack([torch.randperm(11) for _ in range(5)]) for _ in range(2)])
    lp = F.log_softmax(T, -1).gather(-1, perm)  # any order of the vocab
    full = kd_loss(S, T, W, kind, beta=0.2, temperature=2.0)
    top = topk_kd_loss(S, perm, lp, W, kind, beta=0.2, temperature=2.0)
    assert top.item() == pytest.approx(full.item(), rel=1e-5)


def test_topk_renormalises_and_skips_positions_without_data():
    ids = torch.tensor([[[0, 1, 2], [0, 0, 0]]])
    lp = torch.tensor([[[-0.1, -2.5, -math.inf], [-math.inf] * 3]])
    logits = torch.randn(1, 2, 11, requires_grad=True)
    w = torch.ones(1, 2)
    loss = topk_kd_loss(logits, ids, lp, w, "jsd")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert logits.grad[0, 1].abs().sum() == 0  # no teacher data at position 1
    # Renormalised over the teacher's 2 tokens: equals a 2-way KL.
    p = F.softmax(torch.tensor([-0.1, -2.5]), -1)
    q = F.softmax(logits[0, 0, :2].detach(), -1)
    ref = (p * (p.log() - q.log())).sum()
    got = topk_kd_loss(logits.detach(), ids, lp, w, "forward")
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)


def test_ce_masks_prompt_tokens_and_weights():
    labels = torch.randint(0, 11, (2, 5))
    w = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]], dtype=torch.float)
    base = weighted_ce(S, labels, w)
    changed = S.clone()
    changed[0, 0] += 100.0  # prompt positions do not count
    changed[1, 0] -= 50.0
    assert weighted_ce(changed, labels, w).item() == pytest.approx(base.item())
    ce = F.cross_entropy(S.reshape(-1, 11), labels.reshape(-1), reduction="none").view(2, 5)
    assert base.item() == pytest.approx(ce[w > 0].mean().item(), rel=1e-6)
    w2 = w.clone()
    w2[0, 4] = 3.0  # an action token weighted 3x
    expect = (ce[w > 0].sum() + 2 * ce[0, 4]) / 7
    assert weighted_ce(S, labels, w2).item() == pytest.approx(expect.item(), rel=1e-6)


def test_focal_ce_is_ce_scaled_by_the_miss_probability():
    labels = torch.randint(0, 11, (2, 5))
    w = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]], dtype=torch.float)
    assert weighted_ce(S, labels, w, 0.0).item() == weighted_ce(S, labels, w).item()
    ce = F.cross_entropy(S.reshape(-1, 11), labels.reshape(-1), reduction="none").view(2, 5)
    p = F.softmax(S, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    for gamma in (0.5, 1.0, 2.0):
        expect = ((1 - p) ** gamma * ce)[w > 0].mean()
        got = weighted_ce(S, labels, w, gamma)
        assert got.item() == pytest.approx(expect.item(), rel=1e-5)
        assert got.item() < weighted_ce(S, labels, w).item()  # every factor is below 1
    # a token the student is sure of (p = 0.999) keeps ~1e-6 of its CE at gamma 2, all of it at 0
    sure = torch.log(torch.tensor([[[0.999, 0.001]]]))
    one, label = torch.ones(1, 1), torch.tensor([[0]])
    plain = weighted_ce(sure, label, one).item()
    assert plain > 1e-4
    assert weighted_ce(sure, label, one, 2.0).item() / plain == pytest.approx(1e-6, rel=1e-2)


def test_focal_ce_shifts_the_gradient_to_hard_tokens():
    """Two target tokens, one predicted at p=0.9 and one at p=0.1: focal loss gives the hard
    one a larger share of the gradient than cross-entropy does."""
    logits = torch.log(torch.tensor([[[0.9, 0.1], [0.1, 0.9]]])).requires_grad_(True)
    labels, w = torch.tensor([[0, 0]]), torch.ones(1, 2)

    def share(gamma):
        logits.grad = None
        weighted_ce(logits, labels, w, gamma).backward()
        g = logits.grad[0].abs().sum(-1)
        return (g[1] / g.sum()).item()

    assert share(2.0) > share(0.0) > 0.5


def test_bad_arguments():
    for gamma in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="focal gamma"):
            weighted_ce(S, torch.zeros(2, 5, dtype=torch.long), W, gamma)
    with pytest.raises(ValueError, match="vocabularies differ"):
        kd_loss(S, T[..., :10], W)
    with pytest.raises(ValueError, match="kd kind"):
        kd_loss(S, T, W, "sideways")
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(S, T, W, temperature=0)
