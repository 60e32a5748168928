"""Generators and discriminators for the GAN chapters, small enough to train on a laptop CPU.

==========================  ================================================================
``ToyGenerator``            z: (N, z_dim) → points (N, 2)                     (2-D ring, grid)
``ToyDiscriminator``        x: (N, 2) → logits (N,)
``MLPGenerator``            z: (N, z_dim) → images (N, 1, 8, 8) in [-1, 1]     (digits)
``MLPDiscriminator``        x: (N, 1, 8, 8) → logits (N,)
``DCGANGenerator``          z: (N, z_dim) → 4×4 feature map → transposed conv → 8×8, tanh
``DCGANDiscriminator``      x: (N, 1, 8, 8) → strided convs → logits (N,); optional spectral norm
``SelfAttention2d``         SAGAN's self-attention block for feature maps (N, C, H, W)
==========================  ================================================================

Conventions: generators end in tanh because the data are scaled to [-1, 1]; discriminators return
raw logits of shape (N,) — the loss applies the sigmoid (from logits, so it never overflows) and a
(N,) shape cannot broadcast against (N,) targets into an N×N matrix.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _sn


def _maybe_sn(layer: nn.Module, on: bool) -> nn.Module:
    return _sn(layer) if on else layer


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------- 2-D toys
class ToyGenerator(nn.Module):
    """z: (N, z_dim) → x: (N, 2). A plain ReLU MLP; no output nonlinearity (the data are unbounded).

    A 2-D noise input is enough for a 2-D target and makes training markedly more precise here.
    """

    def __init__(self, z_dim: int = 2, hidden: int = 128, depth: int = 3):
        super().__init__()
        self.z_dim = z_dim
        layers, d = [], z_dim
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.ReLU()]
            d = hidden
        self.net = nn.Sequential(*layers, nn.Linear(d, 2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class ToyDiscriminator(nn.Module):
    """x: (N, 2) → logits (N,)."""

    def __init__(self, hidden: int = 128, depth: int = 3):
        super().__init__()
        layers, d = [], 2
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.LeakyReLU(0.2)]
            d = hidden
        self.net = nn.Sequential(*layers, nn.Linear(d, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1)


# ----------------------------------------------------------------------------- 8×8 digits, MLP
class MLPGenerator(nn.Module):
    """z: (N, z_dim) → images (N, 1, 8, 8) in [-1, 1] (tanh, matching data scaled to [-1, 1])."""

    def __init__(self, z_dim: int = 32, hidden: int = 256):
        super().__init__()
        self.z_dim = z_dim
        self.net = nn.Sequential(
            nn.Linear(z_dim, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 64), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, 1, 8, 8)


class MLPDiscriminator(nn.Module):
    """x: (N, 1, 8, 8) → logits (N,). LeakyReLU keeps gradients alive for negative inputs."""

    def __init__(self, hidden: int = 256, spectral_norm: bool = False):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            _maybe_sn(nn.Linear(64, hidden), spectral_norm), nn.LeakyReLU(0.2),
            _maybe_sn(nn.Linear(hidden, hidden), spectral_norm), nn.LeakyReLU(0.2),
            _maybe_sn(nn.Linear(hidden, 1), spectral_norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1)


# ----------------------------------------------------------------------------- 8×8 digits, DCGAN
class DCGANGenerator(nn.Module):
    """z: (N, z_dim) → (N, 1, 8, 8) in [-1, 1].

    Linear to a (2·ch, 4, 4) map → BatchNorm, ReLU → ConvTranspose 4×4 stride 2 → (ch, 8, 8) →
    BatchNorm, ReLU → 3×3 conv to one channel → tanh. The DCGAN recipe (Radford et al. 2015) at 8×8:
    upsampling by transposed convolutions, batch norm in G, no pooling, tanh output.
    """

    def __init__(self, z_dim: int = 32, ch: int = 32):
        super().__init__()
        self.z_dim, self.ch = z_dim, ch
        self.project = nn.Sequential(nn.Linear(z_dim, 2 * ch * 16), nn.BatchNorm1d(2 * ch * 16),
                                     nn.ReLU())
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * ch, ch, 4, stride=2, padding=1),  # 4×4 → 8×8
            nn.BatchNorm2d(ch), nn.ReLU(),
            nn.Conv2d(ch, 1, 3, padding=1), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z).view(-1, 2 * self.ch, 4, 4)
        return self.up(h)


class DCGANDiscriminator(nn.Module):
    """x: (N, 1, 8, 8) → logits (N,).

    Strided 4×4 convolutions 8×8 → 4×4 → 2×2 with LeakyReLU(0.2), then a linear layer to one logit.
    No batch norm here, so every sample's logit depends on that sample alone and spectral norm
    (``spectral_norm=True``) can be switched on cleanly.
    """

    def __init__(self, ch: int = 32, spectral_norm: bool = False):
        super().__init__()
        sn = spectral_norm
        self.net = nn.Sequential(
            _maybe_sn(nn.Conv2d(1, ch, 4, stride=2, padding=1), sn), nn.LeakyReLU(0.2),       # → 4×4
            _maybe_sn(nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1), sn), nn.LeakyReLU(0.2),  # → 2×2
            nn.Flatten(),
            _maybe_sn(nn.Linear(2 * ch * 4, 1), sn),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1)


# ----------------------------------------------------------------------------- self-attention
class SelfAttention2d(nn.Module):
    """SAGAN's self-attention (Zhang et al. 2019) for a feature map x: (N, C, H, W) → same shape.

    Every position attends to every other: queries, keys and values are 1×1 convolutions,
    attention weights softmax(QᵀK/√k) over the H·W positions (the 1/√k scaling of Vaswani et al.
    2017; SAGAN itself uses softmax(QᵀK) unscaled — ``F.scaled_dot_product_attention`` is the
    fused equivalent of this scaled form), and the result is added back through a
    learned gate γ that starts at 0, so the block begins as the identity and the network decides
    how much long-range mixing to use. This — not a classifier applied to the noise — is what
    "attention in a GAN" means.
    """

    def __init__(self, channels: int, key_dim: int | None = None):
        super().__init__()
        k = key_dim or max(1, channels // 8)
        self.q = nn.Conv2d(channels, k, 1)
        self.k = nn.Conv2d(channels, k, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) → attention weights (N, H·W, H·W); each row sums to 1."""
        q = self.q(x).flatten(2)                        # (N, k, HW)
        k = self.k(x).flatten(2)                        # (N, k, HW)
        scores = q.transpose(1, 2) @ k / q.shape[1] ** 0.5  # (N, HW, HW)
        return scores.softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        attn = self.attention(x)                        # (N, HW, HW)
        v = self.v(x).flatten(2)                        # (N, C, HW)
        out = (v @ attn.transpose(1, 2)).view(n, c, h, w)  # position i mixes values by attn[i, :]
        return x + self.gamma * out
