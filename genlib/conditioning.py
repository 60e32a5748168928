"""How a condition enters a generator, and what a text encoder has to understand.

* A conditional GAN (cGAN = *conditional* GAN, Mirza & Osindero 2014 — nothing in it is
  pretrained) with the projection discriminator of Miyato & Koyama (2018):
  D(x, y) = ψ(φ(x)) + ⟨V[y], φ(x)⟩.
* FiLM (Perez et al. 2018): the condition scales and shifts feature maps.
* ``two_shapes``: two objects side by side, captions such as "a red circle left of a blue square".
  A bag of words cannot tell which colour belongs to which shape, or which object is on the left;
  ``binding_accuracy`` scores generated images with the shipped shapes classifier on each half.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genlib.data import _COLOR_RGB, COLOR_NAMES, SHAPE_NAMES, _draw


# ----------------------------------------------------------------------------- projection cGAN
def projection_logit(phi: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                     embed: torch.Tensor) -> torch.Tensor:
    """The projection discriminator's logit for features phi (N, F) and labels y (N,).

    w (F,), b () : the unconditional linear head ψ; embed (n_classes, F): one vector per class.
    Returns (N,) = phi·w + b + ⟨embed[y], phi⟩ — the class enters as an inner product with the
    features, not concatenated to the input.
    """
    return phi @ w + b + (embed[y] * phi).sum(1)


class ProjectionDiscriminator(nn.Module):
    """x: (N, C, S, S) in [-1, 1], y: (N,) → logits (N,). Spectral norm on every layer."""

    def __init__(self, n_classes: int, in_ch: int = 1, ch: int = 32, size: int = 8):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        self.phi = nn.Sequential(
            sn(nn.Conv2d(in_ch, ch, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),
            nn.Flatten(), sn(nn.Linear(2 * ch * (size // 4) ** 2, 128)), nn.LeakyReLU(0.2))
        self.psi = sn(nn.Linear(128, 1))
        self.embed = sn(nn.Embedding(n_classes, 128))

    def forward(self, x, y):
        return projection_logit(self.phi(x), y, self.psi.weight[0], self.psi.bias[0],
                                self.embed.weight)


class FiLM(nn.Module):
    """Feature-wise linear modulation: h (N, C, H, W), c (N, E) → h·(1 + γ(c)) + β(c)."""

    def __init__(self, cond_dim: int, channels: int):
        super().__init__()
        self.to_gb = nn.Linear(cond_dim, 2 * channels)

    def forward(self, h, c):
        g, b = self.to_gb(c).chunk(2, dim=1)
        return h * (1 + g[..., None, None]) + b[..., None, None]


class ConditionalGenerator(nn.Module):
    """z (N, z_dim), y (N,) → (N, 1, 8, 8): the label enters twice, as an embedding concatenated
    to z and through FiLM on the hidden feature map."""

    def __init__(self, n_classes: int = 10, z_dim: int = 32, ch: int = 32, emb: int = 32):
        super().__init__()
        self.z_dim, self.ch = z_dim, ch
        self.embed = nn.Embedding(n_classes, emb)
        self.project = nn.Sequential(nn.Linear(z_dim + emb, 2 * ch * 16), nn.ReLU())
        self.up = nn.ConvTranspose2d(2 * ch, ch, 4, stride=2, padding=1)
        self.film = FiLM(emb, ch)
        self.out = nn.Conv2d(ch, 1, 3, padding=1)

    def forward(self, z, y):
        e = self.embed(y)
        h = self.project(torch.cat([z, e], 1)).view(-1, 2 * self.ch, 4, 4)
        h = F.relu(self.film(self.up(h), e))
        return torch.tanh(self.out(h))


# ----------------------------------------------------------------------------- two objects
@dataclass
class TwoShapes:
    images: torch.Tensor   # (N, 3, 16, 32): left object in columns 0-15, right in 16-31
    shape: torch.Tensor    # (N, 2) [left, right] index into SHAPE_NAMES
    color: torch.Tensor    # (N, 2) [left, right] index into COLOR_NAMES
    captions: list[str]

    def __len__(self):
        return len(self.captions)


def two_shapes(n: int = 4000, seed: int = 0) -> TwoShapes:
    """Two large objects with different shapes and different colours, one per 16×16 half.

    Captions name them in either order: "a red circle left of a blue square" or, for the same
    image, "a blue square right of a red circle". Both captions and their swapped-attribute twin
    ("a blue circle left of a red square") have the same bag of words.
    """
    rng = np.random.RandomState(seed)
    imgs = np.zeros((n, 3, 16, 32), np.float32)
    sh = np.zeros((n, 2), np.int64)
    co = np.zeros((n, 2), np.int64)
    caps = []
    for i in range(n):
        sh[i] = rng.choice(len(SHAPE_NAMES), 2, replace=False)
        co[i] = rng.choice(len(COLOR_NAMES), 2, replace=False)
        for j in range(2):
            r = 16 * 0.38
            jit = 16 * 0.5 - r - 0.5
            cx, cy = 8 + rng.uniform(-jit, jit) * 0.5, 8 + rng.uniform(-jit, jit) * 0.5
            mask = _draw(SHAPE_NAMES[sh[i, j]], cx, cy, r, 16)
            rgb = np.array(_COLOR_RGB[COLOR_NAMES[co[i, j]]], np.float32)
            imgs[i, :, :, 16 * j:16 * j + 16] = mask[None] * rgb[:, None, None]
        left = f"{COLOR_NAMES[co[i, 0]]} {SHAPE_NAMES[sh[i, 0]]}"
        right = f"{COLOR_NAMES[co[i, 1]]} {SHAPE_NAMES[sh[i, 1]]}"
        caps.append(f"a {left} left of a {right}" if rng.rand() < 0.5 else
                    f"a {right} right of a {left}")
    x = torch.from_numpy(imgs) * 2 - 1
    return TwoShapes(x, torch.from_numpy(sh), torch.from_numpy(co), caps)


@torch.no_grad()
def binding_accuracy(images: torch.Tensor, shape: torch.Tensor, color: torch.Tensor) -> dict:
    """Score (N, 3, 16, 32) images against the requested [left, right] shapes and colours (N, 2)
    with the shipped shapes classifier on each half. Returns {"binding": fraction with both
    objects' shape and colour right, "slot": fraction of the 2N objects right}."""
    from genlib.features import classify_shapes

    n = len(images)
    halves = torch.cat([images[..., :16], images[..., 16:]])          # (2N, 3, 16, 16)
    pred = classify_shapes(halves.clamp(-1, 1))
    ok = (pred["shape"] == torch.cat([shape[:, 0], shape[:, 1]])) & \
         (pred["color"] == torch.cat([color[:, 0], color[:, 1]]))
    ok = ok.view(2, n)
    return {"binding": ok.all(0).float().mean().item(), "slot": ok.float().mean().item()}


class TextToImageDecoder(nn.Module):
    """text vector (N, E) + noise (N, z_dim) → (N, 3, 16, 32) in [-1, 1].

    The same decoder is paired with either text encoder. Trained by regression (mean squared
    error), it learns the average image for a caption: the simplest conditional generator, enough
    to show what the encoder passes on. FiLM injects the text at every resolution.
    """

    def __init__(self, text_dim: int = 64, z_dim: int = 8, ch: int = 48):
        super().__init__()
        self.z_dim, self.ch = z_dim, ch
        self.project = nn.Linear(text_dim + z_dim, ch * 4 * 8)
        self.up1 = nn.ConvTranspose2d(ch, ch, 4, stride=2, padding=1)       # 4×8 → 8×16
        self.film1 = FiLM(text_dim, ch)
        self.up2 = nn.ConvTranspose2d(ch, ch, 4, stride=2, padding=1)       # → 16×32
        self.film2 = FiLM(text_dim, ch)
        self.out = nn.Conv2d(ch, 3, 3, padding=1)

    def forward(self, t, z=None):
        if z is None:
            z = torch.zeros(len(t), self.z_dim, device=t.device)
        h = F.relu(self.project(torch.cat([t, z], 1))).view(-1, self.ch, 4, 8)
        h = F.relu(self.film1(self.up1(h), t))
        h = F.relu(self.film2(self.up2(h), t))
        return torch.tanh(self.out(h))


class TextConditionedDecoder(nn.Module):
    """A text encoder (``BagOfWords`` or ``TextTransformer``) + ``TextToImageDecoder``."""

    def __init__(self, encoder: str = "transformer", dim: int = 64):
        super().__init__()
        from genlib.text import BagOfWords, TextTransformer, Tokenizer

        self.tokenizer = Tokenizer()
        self.kind = encoder
        if encoder == "transformer":
            self.encoder = TextTransformer(len(self.tokenizer), out=dim)
        elif encoder == "bow":
            self.encoder = BagOfWords(len(self.tokenizer), out=dim)
        else:
            raise ValueError(f"encoder must be 'transformer' or 'bow', got {encoder!r}")
        self.decoder = TextToImageDecoder(dim)

    def forward(self, captions, z=None):
        ids = self.tokenizer.encode(captions, 10).to(self.decoder.out.weight.device)
        return self.decoder(self.encoder(ids), z)


def train_text_decoder(model: TextConditionedDecoder, data: TwoShapes, steps: int,
                       batch: int = 64, lr: float = 2e-3, seed: int = 0, progress: bool = False):
    """Mean-squared-error training of encoder and decoder together. Returns the loss history."""
    from genlib.train import progress as bar

    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    hist = []
    for _ in (bar(range(steps), desc=f"decoder ({model.kind})") if progress else range(steps)):
        idx = torch.randint(len(data), (batch,), generator=g)
        out = model([data.captions[i] for i in idx.tolist()])
        loss = F.mse_loss(out, data.images[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        hist.append(loss.item())
    return model.eval(), hist
