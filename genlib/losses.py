"""Losses for GANs and VAEs, all computed from logits / log-variances for numerical stability.

Sections: GAN losses (chapter 02) · VAE pieces (chapter 05). Shapes are in the docstrings.
"""
from __future__ import annotations

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
