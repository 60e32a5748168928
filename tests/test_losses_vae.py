"""The VAE section of genlib.losses: reparameterize, gaussian_kl, bernoulli_nll, negative_elbo."""
import math

import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from genlib.losses import bernoulli_nll, gaussian_kl, negative_elbo, reparameterize


def test_reparameterize_moments_and_gradient():
    torch.manual_seed(0)
    mu = torch.tensor([[1.0, -2.0]]).repeat(50000, 1).requires_grad_()
    logvar = torch.tensor([[-1.0, 2.0]]).repeat(50000, 1).requires_grad_()
    z = reparameterize(mu, logvar)
    assert torch.allclose(z.mean(0), mu[0].detach(), atol=0.05)
    assert torch.allclose(z.std(0), torch.exp(0.5 * logvar[0]).detach(), rtol=0.03)
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.ones_like(mu))
    assert torch.allclose(logvar.grad, 0.5 * (z - mu).detach(), atol=1e-5)


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(10, 5, generator=g), torch.randn(10, 5, generator=g)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    assert gaussian_kl(mu, logvar).shape == (10,)
    assert torch.allclose(gaussian_kl(mu, logvar), ref, atol=1e-5)
    assert torch.allclose(gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)), torch.zeros(3))


def test_bernoulli_nll_is_a_per_image_sum():
    x = torch.ones(3, 1, 8, 8)
    assert torch.allclose(bernoulli_nll(torch.zeros(3, 1, 8, 8), x), torch.full((3,), 64 * math.log(2)))
    # exact for confident, wrong logits (no clipping at 100 nats as with probabilities)
    assert torch.allclose(bernoulli_nll(torch.full((1, 1, 8, 8), -300.0), x[:1]), torch.tensor([64 * 300.0]))
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 1, 8, 8, generator=g)
    xb = (torch.rand(4, 1, 8, 8, generator=g) < 0.5).float()
    p = torch.sigmoid(logits)
    manual = -(xb * p.log() + (1 - xb) * (1 - p).log()).flatten(1).sum(1)
    assert torch.allclose(bernoulli_nll(logits, xb), manual, atol=1e-4)


def test_negative_elbo_is_reconstruction_plus_beta_kl():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(5, 1, 8, 8, generator=g)
    x = (torch.rand(5, 1, 8, 8, generator=g) < 0.3).float()
    mu, logvar = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
    kl = gaussian_kl(mu, logvar)
    assert torch.allclose(negative_elbo(logits, x, mu, logvar), rec + kl, atol=1e-4)
    assert torch.allclose(negative_elbo(logits, x, mu, logvar, beta=3.0), rec + 3 * kl, atol=1e-4)


def test_gaussian_nll_matches_torch_distributions():
    from genlib.losses import gaussian_nll

    g = torch.Generator().manual_seed(3)
    x, mean = torch.rand(4, 1, 8, 8, generator=g), torch.rand(4, 1, 8, 8, generator=g)
    logvar = torch.randn(4, 1, 8, 8, generator=g)
    ref = -Normal(mean, (0.5 * logvar).exp()).log_prob(x).sum((1, 2, 3))
    assert torch.allclose(gaussian_nll(x, mean, logvar), ref, atol=1e-4)
    # a fixed variance broadcasts; σ² = ½ turns it into the sum of squared errors plus a constant
    sse = (x - mean).pow(2).sum((1, 2, 3))
    assert torch.allclose(gaussian_nll(x, mean, math.log(0.5)), sse + 32 * math.log(math.pi), atol=1e-4)
