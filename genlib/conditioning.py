"""How a condition enters a generator, and what a text encoder has to understand.

* A conditional GAN (cGAN = *conditional* GAN, Mirza & Osindero 2014 — nothing in it is
  pretrained) with the projection discriminator of Miyato & Koyama (2018):
  D(x, y) = ψ(φ(x)) + ⟨V[y], φ(x)⟩.
* FiLM (Perez et al. 2018): the condition scales and shifts feature maps.
* ``two_shapes``: two objects side by side, captions such as "a red circle left of a blue square".
  A bag of words cannot tell which colour belongs to which shape, or which object is on the left;
  ``TextToSlots`` reads a caption through either encoder into a condition per slot, ``draw_two``
  draws each slot with the same token generator, and ``binding_accuracy`` scores the images with
  the shipped shapes classifier on each half.
* ``CaptionToImage``: the same caption encoders feeding a per-slot decoder (``SlotDecoder``)
  trained end to end from pixels alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genlib.data import _COLOR_RGB, COLOR_NAMES, SHAPE_NAMES, _draw
from genlib.models import SelfAttention2d


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


class TextToSlots(nn.Module):
    """A text encoder (``BagOfWords`` or ``TextTransformer``) with four linear heads that read a
    two-object caption into a structured condition: left shape, left colour, right shape, right
    colour. ``predict(captions)`` → (shape (N, 2), color (N, 2)), [left, right] each.

    Everything a generator can be told about the caption passes through the encoder's one vector,
    so whatever the encoder cannot represent (which colour goes with which shape, which object is
    on the left) no generator downstream can draw.
    """

    def __init__(self, encoder: str = "transformer", dim: int = 64):
        from genlib.text import BagOfWords, TextTransformer, Tokenizer

        super().__init__()
        self.tokenizer = Tokenizer()
        self.kind = encoder
        if encoder == "transformer":
            self.text = TextTransformer(len(self.tokenizer), out=dim)
        elif encoder == "bow":
            self.text = BagOfWords(len(self.tokenizer), out=dim)
        else:
            raise ValueError(f"encoder must be 'transformer' or 'bow', got {encoder!r}")
        n_s, n_c = len(SHAPE_NAMES), len(COLOR_NAMES)
        self.heads = nn.ModuleDict({"left_shape": nn.Linear(dim, n_s), "left_color": nn.Linear(dim, n_c),
                                    "right_shape": nn.Linear(dim, n_s), "right_color": nn.Linear(dim, n_c)})

    def forward(self, captions) -> dict:
        h = self.text(self.tokenizer.encode(captions, 10))
        return {k: head(h) for k, head in self.heads.items()}

    def loss(self, captions, shape, color):
        out = self(captions)
        return (F.cross_entropy(out["left_shape"], shape[:, 0]) + F.cross_entropy(out["left_color"], color[:, 0])
                + F.cross_entropy(out["right_shape"], shape[:, 1])
                + F.cross_entropy(out["right_color"], color[:, 1]))

    @torch.no_grad()
    def predict(self, captions):
        out = self(captions)
        shape = torch.stack([out["left_shape"].argmax(1), out["right_shape"].argmax(1)], 1)
        color = torch.stack([out["left_color"].argmax(1), out["right_color"].argmax(1)], 1)
        return shape, color


def train_text_to_slots(model: TextToSlots, data: TwoShapes, steps: int, batch: int = 64,
                        lr: float = 3e-3, seed: int = 0, progress: bool = False) -> list:
    """Cross-entropy training of the encoder and its four heads; returns the loss history."""
    from genlib.train import progress as bar

    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    hist = []
    for _ in (bar(range(steps), desc=f"text → slots ({model.kind})") if progress else range(steps)):
        idx = torch.randint(len(data), (batch,), generator=g)
        loss = model.loss([data.captions[i] for i in idx.tolist()], data.shape[idx], data.color[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        hist.append(loss.item())
    model.eval()
    return hist


class SlotDecoder(nn.Module):
    """A per-slot image decoder fed from a text encoder's caption vector: c (N, cond) → (N, 3, 16, 32).

    The same weights draw both halves; the slot enters only as a learned vector added to c (slot
    0 = left, 1 = right). Whatever the caption vector does not say about which object is where,
    the decoder cannot draw.
    """

    def __init__(self, cond: int = 64, ch: int = 32):
        super().__init__()
        self.ch = ch
        self.slot = nn.Embedding(2, cond)
        self.fc = nn.Sequential(nn.Linear(cond, 128), nn.ReLU(), nn.Linear(128, 2 * ch * 16), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * ch, ch, 4, stride=2, padding=1), nn.ReLU(),      # 4 → 8
            nn.ConvTranspose2d(ch, ch, 4, stride=2, padding=1), nn.ReLU(),          # 8 → 16
            nn.Conv2d(ch, 3, 3, padding=1), nn.Tanh())

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        n = len(c)
        h = self.fc(torch.cat([c + self.slot.weight[0], c + self.slot.weight[1]]))
        x = self.net(h.view(2 * n, 2 * self.ch, 4, 4))
        return torch.cat([x[:n], x[n:]], dim=-1)


class CaptionToImage(nn.Module):
    """Text encoder (``"bow"`` or ``"transformer"``) → ``SlotDecoder``: caption → (N, 3, 16, 32).

    Trained end to end on (caption, image) pairs with a pixel loss only — no attribute labels — so
    what the encoder learns to extract is whatever the images need.
    """

    def __init__(self, encoder: str = "transformer", dim: int = 64):
        from genlib.text import BagOfWords, TextTransformer, Tokenizer

        super().__init__()
        self.tokenizer, self.kind = Tokenizer(), encoder
        if encoder == "transformer":
            self.text = TextTransformer(len(self.tokenizer), out=dim)
        elif encoder == "bow":
            self.text = BagOfWords(len(self.tokenizer), out=dim)
        else:
            raise ValueError(f"encoder must be 'transformer' or 'bow', got {encoder!r}")
        self.decoder = SlotDecoder(dim)

    def forward(self, captions) -> torch.Tensor:
        ids = self.tokenizer.encode(captions, 10).to(self.decoder.slot.weight.device)
        return self.decoder(self.text(ids))


def train_caption_to_image(model: CaptionToImage, data: TwoShapes, steps: int, batch: int = 64,
                           lr: float = 2e-3, seed: int = 0, progress: bool = False) -> list:
    """Mean-squared pixel error between ``model(caption)`` and the image; returns the loss history.

    A deterministic decoder trained this way outputs the *average* of the images a caption vector
    is consistent with: for a bag of words that is a blend of the four bindings of its words."""
    from genlib.train import progress as bar

    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    hist = []
    for _ in (bar(range(steps), desc=f"caption → image ({model.kind})") if progress else range(steps)):
        idx = torch.randint(len(data), (batch,), generator=g)
        loss = F.mse_loss(model([data.captions[i] for i in idx.tolist()]), data.images[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        hist.append(loss.item())
    model.eval()
    return hist


@torch.no_grad()
def draw_two(slots: TextToSlots, gpt, vq, captions, guidance: float = 1.0, seed: int = 0):
    """Two-object captions → images (N, 3, 16, 32): the encoder reads each caption into
    (shape, colour) per slot, then the same single-object token generator draws
    "a large <colour> <shape>" in each slot."""
    from genlib.t2i import generate_images

    shape, color = slots.predict(captions)
    per_slot = [f"a large {COLOR_NAMES[c]} {SHAPE_NAMES[s]}"
                for j in range(2) for s, c in zip(shape[:, j].tolist(), color[:, j].tolist())]
    imgs = generate_images(gpt, vq, per_slot, seed=seed, guidance=guidance)
    n = len(captions)
    return torch.cat([imgs[:n], imgs[n:]], dim=-1)


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


# ----------------------------------------------------------------------------- self-attention GAN
class SAGANAttention(SelfAttention2d):
    """SAGAN's self-attention block (Zhang et al. 2019) as the paper writes it: attention weights
    softmax(QᵀK) with *no* 1/√k scaling (``genlib.models.SelfAttention2d``, its parent, scales by
    1/√k as Vaswani et al. 2017 do); queries and keys have C/8 channels, values C, and the output
    is added back through a gate γ that starts at 0."""

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        q, k = self.q(x).flatten(2), self.k(x).flatten(2)            # (N, C/8, HW) each
        return (q.transpose(1, 2) @ k).softmax(dim=-1)               # (N, HW, HW), unscaled


class ShapesGenerator(nn.Module):
    """z (N, z_dim) → (N, 3, 16, 16): 4×4 → 8×8 → 16×16 by upsample + conv + batch norm, with an
    optional SAGAN self-attention block on the 8×8 feature map (``attention=True``)."""

    def __init__(self, z_dim: int = 32, ch: int = 64, attention: bool = False):
        super().__init__()
        self.z_dim, self.ch = z_dim, ch
        self.fc = nn.Sequential(nn.Linear(z_dim, ch * 16), nn.BatchNorm1d(ch * 16), nn.ReLU())
        self.up1 = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(ch, ch, 3, padding=1),
                                 nn.BatchNorm2d(ch), nn.ReLU())                     # 8×8
        self.attn = SAGANAttention(ch) if attention else nn.Identity()
        self.up2 = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(ch, ch // 2, 3, padding=1),
                                 nn.BatchNorm2d(ch // 2), nn.ReLU())                # 16×16
        self.out = nn.Sequential(nn.Conv2d(ch // 2, 3, 3, padding=1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.up1(self.fc(z).view(-1, self.ch, 4, 4))
        return self.out(self.up2(self.attn(h)))


class ShapesDiscriminator(nn.Module):
    """(N, 3, 16, 16) → logits (N,): spectral-normalised convolutions 16 → 8 → 4, with an optional
    SAGAN self-attention block at 8×8 (SAGAN puts one in both networks)."""

    def __init__(self, ch: int = 64, attention: bool = False):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        self.a = nn.Sequential(sn(nn.Conv2d(3, ch // 2, 4, stride=2, padding=1)), nn.LeakyReLU(0.2))
        self.attn = SAGANAttention(ch // 2) if attention else nn.Identity()
        self.b = nn.Sequential(sn(nn.Conv2d(ch // 2, ch, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),
                               nn.Flatten(), sn(nn.Linear(ch * 16, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.attn(self.a(x))).view(-1)


def train_gan(G: nn.Module, D: nn.Module, x: torch.Tensor, steps: int, batch: int = 64,
              lr_g: float = 1e-4, lr_d: float = 4e-4, seed: int = 0, progress: bool = False) -> dict:
    """Unconditional hinge-loss GAN training with SAGAN's two time-scale learning rates
    (G 1e-4, D 4e-4, Adam β = (0, 0.9)). Returns the loss history {"d": [...], "g": [...]}."""
    from genlib.losses import hinge_d_loss, hinge_g_loss
    from genlib.train import progress as bar

    g = torch.Generator().manual_seed(seed)
    opt_g = torch.optim.Adam(G.parameters(), lr=lr_g, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr_d, betas=(0.0, 0.9))
    hist = {"d": [], "g": []}
    G.train(), D.train()
    for _ in (bar(range(steps), desc="GAN") if progress else range(steps)):
        real = x[torch.randint(len(x), (batch,), generator=g)]
        fake = G(torch.randn(batch, G.z_dim, generator=g))
        d_loss = hinge_d_loss(D(real), D(fake.detach()))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        g_loss = hinge_g_loss(D(fake))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        hist["d"].append(d_loss.item())
        hist["g"].append(g_loss.item())
    G.eval(), D.eval()
    return hist
