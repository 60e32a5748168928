"""A VQ tokenizer: images → a small grid of integer codes → images (van den Oord et al. 2017).

This is the first half of the "language-model route" to images (DALL·E 1 2021, Parti 2022,
LlamaGen 2024): once an image is a short sequence of integers, a transformer can model it exactly
like text. Chapter 08 uses a 16×16 ``shapes`` image → an 8×8 grid of codes from a 64-entry codebook.

=======================  =====================================================================
``quantize``             z (N,D,H,W), codebook (K,D) → (z_q, idx): nearest code, straight-through
``vq_losses``            codebook loss ‖sg(z) − e‖² and commitment loss β‖z − sg(e)‖²
``codebook_usage``       fraction of the K codes that a batch of indices uses
``VQTokenizer``          encoder → quantize → decoder, with dead-code restarts during training
=======================  =====================================================================
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def quantize(z: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace every D-vector of ``z`` by its nearest codebook row (Euclidean distance).

    z: (N, D, H, W); codebook: (K, D). Returns ``z_q`` (N, D, H, W) and ``idx`` (N, H, W) int64.
    The forward value of ``z_q`` is the code; its gradient goes straight through to ``z``
    (``z + (e − z).detach()``), because argmin has no gradient of its own.
    """
    n, d, h, w = z.shape
    flat = z.permute(0, 2, 3, 1).reshape(-1, d)                      # (N·H·W, D)
    # ‖z − e‖² = ‖z‖² − 2 z·e + ‖e‖²: one matrix product instead of an (NHW, K, D) tensor
    dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codebook.t() + codebook.pow(2).sum(1)
    idx = dist.argmin(1)
    e = codebook[idx].view(n, h, w, d).permute(0, 3, 1, 2)
    z_q = z + (e - z).detach()
    return z_q, idx.view(n, h, w)


def lookup(idx: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """idx (N, H, W) → code vectors (N, D, H, W)."""
    return codebook[idx].permute(0, 3, 1, 2)


def vq_losses(z: torch.Tensor, idx: torch.Tensor, codebook: torch.Tensor,
              beta: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """(codebook loss, commitment loss) for encoder outputs z (N,D,H,W) assigned to codes idx.

    The codebook loss moves the chosen codes towards the (frozen) encoder outputs; the commitment
    loss β‖z − sg(e)‖² keeps the encoder from drifting away from its codes.
    """
    e = lookup(idx, codebook)
    return F.mse_loss(e, z.detach()), beta * F.mse_loss(z, e.detach())


def codebook_usage(idx: torch.Tensor, k: int) -> float:
    """Fraction of the ``k`` codes that occur at least once in ``idx``."""
    return torch.bincount(idx.reshape(-1), minlength=k).gt(0).float().mean().item()


class VQTokenizer(nn.Module):
    """x: (N, 3, 16, 16) in [-1, 1] ⇄ idx: (N, 8, 8) in {0, …, K−1}.

    Encoder: 3×3 conv, 4×4 stride-2 conv (16 → 8), 1×1 conv to D channels. Decoder mirrors it with
    a transposed convolution and ends in tanh. ``forward`` returns (reconstruction, vq loss, idx).
    """

    def __init__(self, k: int = 64, d: int = 16, ch: int = 48, beta: float = 0.25):
        super().__init__()
        self.k, self.d, self.beta = k, d, beta
        self.encoder = nn.Sequential(
            nn.Conv2d(3, ch, 3, padding=1), nn.ReLU(),
            nn.Conv2d(ch, ch, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(ch, d, 1))
        self.codebook = nn.Parameter(torch.randn(k, d) * 0.5)
        self.decoder = nn.Sequential(
            nn.Conv2d(d, ch, 3, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(ch, ch, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(ch, 3, 3, padding=1), nn.Tanh())
        self.register_buffer("usage", torch.full((k,), 1.0 / k))  # running share per code (restarts)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (N,3,16,16) → idx (N,8,8)."""
        return quantize(self.encoder(x), self.codebook)[1]

    def decode(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (N,8,8) → images (N,3,16,16) in [-1, 1]."""
        return self.decoder(lookup(idx, self.codebook))

    def forward(self, x: torch.Tensor):
        z = self.encoder(x)
        z_q, idx = quantize(z, self.codebook)
        cb, commit = vq_losses(z, idx, self.codebook, self.beta)
        if self.training:
            self._track(z, idx)
        return self.decoder(z_q), cb + commit, idx

    @torch.no_grad()
    def _track(self, z: torch.Tensor, idx: torch.Tensor, decay: float = 0.95,
               threshold: float = 0.01) -> int:
        """Dead-code restart: a code that has not been chosen for a while is moved onto a random
        encoder output of the current batch, so it starts winning assignments again. "Not chosen
        for a while": its running share of assignments (decay 0.95 per step) fell below
        ``threshold`` times the uniform share 1/K. Returns the number of codes restarted."""
        counts = torch.bincount(idx.reshape(-1), minlength=self.k).float()
        self.usage.mul_(decay).add_((1 - decay) * counts / counts.sum())
        dead = (self.usage < threshold / self.k).nonzero().view(-1)
        if len(dead):
            flat = z.permute(0, 2, 3, 1).reshape(-1, self.d)
            pick = torch.randint(len(flat), (len(dead),), device=z.device)
            self.codebook.data[dead] = flat[pick]
            self.usage[dead] = 1.0 / self.k
        return len(dead)
