"""Losses for GANs and VAEs, all computed from logits / log-variances for numerical stability.

Sections: GAN losses (chapter 02) · VAE pieces (chapter 05). Shapes are in the docstrings.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# ============================================================================ GAN losses (ch. 02)


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss: mean BCE(real → 1) + mean BCE(fake → 0), from logits. Scalar.

    ``real_logits: (N,)`` or ``(N, 1)``, ``fake_logits: (M,)`` or ``(M, 1)``. Equals
    −E[log D(x)] − E[log(1 − D(G(z)))] with D = sigmoid(logit), but never overflows:
    softplus(−l) = −log σ(l) and softplus(l) = −log(1 − σ(l)).
    """
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss −E[log D(G(z))] from logits. Scalar.

    Its gradient stays large when D confidently rejects the fakes (early training), unlike the
    saturating E[log(1 − D(G(z)))] of the original minimax game.
    """
    return F.softplus(-fake_logits).mean()


def saturating_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's side of the original minimax game, E[log(1 − D(G(z)))], to *minimise*. Scalar.

    log(1 − σ(l)) = −softplus(l). Its gradient w.r.t. the logit is −σ(l) = −D(G(z)), which
    vanishes when D confidently rejects the fakes — exactly the situation early in training.
    Shown for comparison only; train with ``g_loss``.
    """
    return -F.softplus(fake_logits).mean()


def smoothed_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                    real_target: float = 0.9) -> torch.Tensor:
    """``d_loss`` with one-sided label smoothing: real targets ``real_target`` (< 1), fakes stay 0.

    BCE(l, t) = t·softplus(−l) + (1 − t)·softplus(l). Smoothing only the real side keeps D from
    becoming over-confident without rewarding fakes (Salimans et al. 2016).
    """
    t = real_target
    real = t * F.softplus(-real_logits) + (1 - t) * F.softplus(real_logits)
    return real.mean() + F.softplus(fake_logits).mean()


def lsgan_d_loss(real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN discriminator loss (Mao et al. 2017, targets a=0, b=1). Scalar.

    ½·E[(D(x) − 1)²] + ½·E[D(G(z))²] on the raw outputs (no sigmoid). ``(N,)`` or ``(N, 1)``.
    """
    return 0.5 * (real_out - 1).pow(2).mean() + 0.5 * fake_out.pow(2).mean()


def lsgan_g_loss(fake_out: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN generator loss ½·E[(D(G(z)) − 1)²] on raw outputs. Scalar."""
    return 0.5 * (fake_out - 1).pow(2).mean()


def hinge_d_loss(real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
    """Hinge discriminator loss E[max(0, 1 − D(x))] + E[max(0, 1 + D(G(z)))] (SAGAN, BigGAN). Scalar.

    The max(0, ·) stops rewarding D once a sample is beyond the margin, so D spends its capacity
    on the samples it still gets wrong.
    """
    return F.relu(1 - real_out).mean() + F.relu(1 + fake_out).mean()


def hinge_g_loss(fake_out: torch.Tensor) -> torch.Tensor:
    """Hinge generator loss −E[D(G(z))] (no margin on the generator's side). Scalar."""
    return -fake_out.mean()


# ============================================================================ VAE pieces (ch. 05)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = mu + exp(logvar / 2) · ε with ε ~ N(0, I): a sample of N(mu, diag(e^logvar)).

    The noise is drawn outside the graph, so gradients flow to ``mu`` and ``logvar``.
    ``mu, logvar: (N, D)`` → ``z: (N, D)``.
    """
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(e^logvar)) ‖ N(0, I)) per sample, summed over latent dims: ``(N, D) → (N,)``.

    Closed form: ½ Σ_j (mu_j² + e^{logvar_j} − 1 − logvar_j).
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """−log p(x | z) for independent Bernoulli pixels, from logits, summed per image: ``(N, ...) → (N,)``.

    ``x`` holds 0/1 pixels. The log-likelihood of an image is the *sum* over its pixels (they are
    independent given z); a per-pixel mean is 1/D of it and silently re-weights the KL (S0.5).
    ``binary_cross_entropy_with_logits`` = softplus form: exact for logits of any size.
    """
    nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return nll.flatten(1).sum(dim=1)


def negative_elbo(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                  beta: float = 1.0) -> torch.Tensor:
    """−ELBO per image in nats, Bernoulli decoder, Gaussian encoder, N(0, I) prior: ``(N,)``.

    −ELBO = −E_q[log p(x|z)] + β·KL(q(z|x) ‖ p(z)), with the expectation estimated by the one z
    that produced ``logits``. ``logits, x: (N, C, H, W)``; ``mu, logvar: (N, D)``. β = 1 is the
    true bound on −log p(x). β > 1 still bounds it, more loosely (the objective is the −ELBO plus
    (β − 1)·KL ≥ 0); β < 1 is no bound at all. Report the β = 1 value (or IWAE) whatever β trained.
    """
    return bernoulli_nll(logits, x) + beta * gaussian_kl(mu, logvar)


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """−log N(x; mean, e^logvar) summed per image: ``(N, ...) → (N,)`` nats (a density, for continuous x).

    With a fixed variance σ² this is Σ(x − mean)²/(2σ²) + const: the *summed* squared error is the
    case σ² = ½, a per-pixel mean (``F.mse_loss``'s default) over D pixels is σ² = D/2, and the
    choice of σ silently sets how much the KL weighs against the reconstruction (β = 2σ²).
    """
    logvar = torch.as_tensor(logvar, dtype=x.dtype, device=x.device).expand_as(x)
    nll = 0.5 * (math.log(2 * math.pi) + logvar + (x - mean).pow(2) / logvar.exp())
    return nll.flatten(1).sum(dim=1)
