"""How a condition enters a generator, and what a text encoder has to understand.

* A conditional GAN (cGAN = *conditional* GAN, Mirza & Osindero 2014 — nothing in it is
  pretrained) with the projection discriminator of Miyato & Koyama (2018):
  D(x, y) = ψ(φ(x)) + ⟨V[y], φ(x)⟩.
* FiLM (Perez et al. 2018): the condition scales and shifts feature maps.
* ``two_shapes``: two objects side by side, captions such as "a red circle left of a blue square".
  A bag of words cannot tell which colour belongs to which shape, or which object is on the left;
  ``TextMaskGIT`` is one token generator conditioned through either encoder, and
  ``binding_accuracy`` scores generated images with the shipped shapes classifier on each half.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genlib.data import _COLOR_RGB, COLOR_NAMES, SHAPE_NAMES, _draw
from genlib.transformer import MaskGIT


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


class TextMaskGIT(MaskGIT):
    """A MaskGIT over the VQ tokens of a two-object image (8×16 = 128 tokens), conditioned on one
    vector: the output of a text encoder, ``BagOfWords`` (``encoder="bow"``) or ``TextTransformer``
    (``encoder="transformer"``), placed in front of the image tokens. Only the encoder differs
    between the two variants, and each is trained from scratch together with the generator.

    ``forward(ids, img)``: caption ids (N, L), image tokens (N, 128) → logits (N, 128, K).
    ``draw(captions, vq)`` samples images (N, 3, 16, 32).
    """

    def __init__(self, encoder: str = "transformer", k: int = 64, n_img: int = 128, dim: int = 96,
                 layers: int = 3, heads: int = 4):
        from genlib.text import BagOfWords, TextTransformer, Tokenizer

        super().__init__(k, n_img, cond_vocab=1, n_cond=1, dim=dim, layers=layers, heads=heads)
        self.tokenizer = Tokenizer()
        self.kind = encoder
        if encoder == "transformer":
            self.text = TextTransformer(len(self.tokenizer), out=dim)
        elif encoder == "bow":
            self.text = BagOfWords(len(self.tokenizer), out=dim)
        else:
            raise ValueError(f"encoder must be 'transformer' or 'bow', got {encoder!r}")

    def ids(self, captions) -> torch.Tensor:
        return self.tokenizer.encode(captions, 10)

    def forward(self, ids: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.text(ids).unsqueeze(1), self.img_embed(img)], 1) + self.pos
        return self._run(h, causal=False)[:, 1:]

    @torch.no_grad()
    def draw(self, captions, vq, steps: int = 8, seed: int = 0) -> torch.Tensor:
        tokens = self.generate(self.ids(captions), steps=steps,
                               generator=torch.Generator().manual_seed(seed))
        return vq.decode(tokens.view(-1, 8, self.n_img // 8))


def train_cgan(G: ConditionalGenerator, D: ProjectionDiscriminator, x: torch.Tensor,
               y: torch.Tensor, steps: int, batch: int = 64, lr: float = 2e-4, seed: int = 0,
               progress: bool = False) -> dict:
    """Hinge-loss training of a class-conditional GAN: D sees (image, label) pairs, real pairs
    from the data and fake pairs (G(z, y), y) with labels drawn from the data. Returns the loss
    history {"d": [...], "g": [...]}."""
    from genlib.losses import hinge_d_loss, hinge_g_loss
    from genlib.train import progress as bar

    g = torch.Generator().manual_seed(seed)
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), lr=2 * lr, betas=(0.0, 0.9))
    hist = {"d": [], "g": []}
    for _ in (bar(range(steps), desc="cGAN") if progress else range(steps)):
        idx = torch.randint(len(x), (batch,), generator=g)
        real, labels = x[idx], y[idx]
        z = torch.randn(batch, G.z_dim, generator=g)
        fake = G(z, labels)
        d_loss = hinge_d_loss(D(real, labels), D(fake.detach(), labels))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        g_loss = hinge_g_loss(D(fake, labels))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        hist["d"].append(d_loss.item())
        hist["g"].append(g_loss.item())
    return hist
