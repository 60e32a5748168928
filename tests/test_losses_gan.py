"""GAN losses: closed forms, stability from logits, and the gradients that chapter 02 plots."""
import torch
import torch.nn.functional as F

from genlib import losses


def _probs_bce(r, f):
    return -(torch.log(torch.sigmoid(r)).mean() + torch.log(1 - torch.sigmoid(f)).mean())


def test_d_loss_matches_probability_form_on_moderate_logits():
    r, f = torch.randn(32, dtype=torch.float64), torch.randn(32, dtype=torch.float64)
    assert torch.allclose(losses.d_loss(r, f), _probs_bce(r, f))


def test_d_loss_finite_at_extreme_logits():
    big = torch.tensor([100.0, -100.0])
    out = losses.d_loss(big, -big)
    assert torch.isfinite(out) and abs(out.item() - 100.0) < 1e-3  # mean(0, 100) + mean(100, 0)


def test_d_loss_at_chance_is_log4():
    z = torch.zeros(10)
    assert abs(losses.d_loss(z, z).item() - 2 * torch.log(torch.tensor(2.0)).item()) < 1e-6


def test_nonsaturating_vs_saturating_gradients():
    """d/dl of −log σ(l) is σ(l) − 1 (≈ −1 when D rejects); of log(1 − σ(l)) it is −σ(l) (≈ 0)."""
    l = torch.tensor([-8.0], requires_grad=True)
    losses.g_loss(l).backward()
    ns = l.grad.item()
    l.grad = None
    losses.saturating_g_loss(l).backward()
    sat = l.grad.item()
    assert abs(ns - (torch.sigmoid(torch.tensor(-8.0)).item() - 1)) < 1e-6
    assert abs(sat + torch.sigmoid(torch.tensor(-8.0)).item()) < 1e-6
    assert abs(ns) > 1000 * abs(sat)


def test_smoothed_d_loss_reduces_to_d_loss_at_target_one():
    r, f = torch.randn(16), torch.randn(16)
    assert torch.allclose(losses.smoothed_d_loss(r, f, 1.0), losses.d_loss(r, f))
    t = 0.9
    want = F.binary_cross_entropy_with_logits(r, torch.full_like(r, t)) + F.softplus(f).mean()
    assert torch.allclose(losses.smoothed_d_loss(r, f, t), want, atol=1e-6)


def test_lsgan_and_hinge_closed_forms():
    r, f = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    assert abs(losses.lsgan_d_loss(r, f).item() - (0.5 * 0.5 + 0.5 * 2.0)) < 1e-6
    assert abs(losses.lsgan_g_loss(f).item() - 0.5 * (1 + 1) / 2) < 1e-6
    assert abs(losses.hinge_d_loss(r, f).item() - ((0 + 1) / 2 + (1 + 3) / 2)) < 1e-6
    assert abs(losses.hinge_g_loss(f).item() + 1.0) < 1e-6
    # beyond the margin D gets no more reward
    assert losses.hinge_d_loss(torch.tensor([5.0]), torch.tensor([-5.0])).item() == 0.0
