"""Chapter 08's shipped models and the measurements made on them.

``load(name)`` for "vq", "clip", "gpt", "maskgit", the two-object caption→image models
"bind_bow" and "bind_transformer", and the text-conditioned flow model "flow" (all trained by
``scripts/train_text_to_image.py``); ``attribute_accuracy``, ``generate_images`` and ``evaluate``
give the numbers the chapter asserts.
"""
from __future__ import annotations

import os
from functools import lru_cache

import torch

from genlib.features import WEIGHTS_DIR
from genlib.text import Tokenizer

NAMES = ("vq", "clip", "gpt", "maskgit", "bind_bow", "bind_transformer", "flow")
N_COND = 4  # "a large red circle": four caption tokens


def weight_path(name: str) -> str:
    if name not in NAMES:
        raise ValueError(f"name must be one of {NAMES}, got {name!r}")
    return os.path.join(WEIGHTS_DIR, f"t2i_{name}.pt")


def caption_tokens(captions) -> torch.Tensor:
    """Single-object captions → (N, 4) condition tokens for the token transformers."""
    return Tokenizer().encode(captions, N_COND)


def new_token_model(kind: str):
    from genlib.transformer import MaskGIT, TokenGPT

    cls = {"gpt": TokenGPT, "maskgit": MaskGIT}[kind]
    return cls(k=64, n_img=64, cond_vocab=len(Tokenizer()), n_cond=N_COND, dim=96, layers=3, heads=4)


def new_model(name: str):
    from genlib.text import ShapeCLIP
    from genlib.tokens import VQTokenizer

    if name == "vq":
        return VQTokenizer()
    if name == "clip":
        return ShapeCLIP()
    if name.startswith("bind_"):
        from genlib.conditioning import CaptionToImage

        return CaptionToImage(name[len("bind_"):])
    if name == "flow":
        return CaptionFlowNet()
    return new_token_model(name)


@lru_cache(maxsize=None)
def load(name: str):
    """A shipped chapter-08 model in eval mode, frozen (cached)."""
    path = weight_path(name)
    if not os.path.exists(path):
        raise RuntimeError(f"{path} is missing; rebuild it with "
                           f"`python scripts/train_text_to_image.py --only {name}`")
    model = new_model(name)
    state = torch.load(path, map_location="cpu", weights_only=True)   # float16 on disk
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


@torch.no_grad()
def attribute_accuracy(images: torch.Tensor, shape, color, size) -> dict:
    """Shipped-classifier accuracy of (N,3,16,16) images against requested attributes: per
    attribute and "all" (all three right)."""
    from genlib.features import classify_shapes

    pred = classify_shapes(images.clamp(-1, 1))
    ok = {"shape": pred["shape"] == shape, "color": pred["color"] == color,
          "size": pred["size"] == size}
    out = {k: v.float().mean().item() for k, v in ok.items()}
    out["all"] = (ok["shape"] & ok["color"] & ok["size"]).float().mean().item()
    return out


@torch.no_grad()
def generate_images(model, vq, captions, seed: int = 0, **kw) -> torch.Tensor:
    """Caption list → decoded images (N,3,16,16) from a token model (``TokenGPT`` or ``MaskGIT``)."""
    g = torch.Generator().manual_seed(seed)
    tokens = model.generate(caption_tokens(captions), generator=g, **kw)
    return vq.decode(tokens.view(-1, 8, 8))


def diversity(images: torch.Tensor) -> float:
    """Mean pairwise L2 distance between images of the same caption batch (higher = more varied)."""
    flat = images.flatten(1)
    return torch.cdist(flat, flat).sum().item() / max(1, len(flat) * (len(flat) - 1))


@torch.no_grad()
def evaluate(name: str, model, vq=None, n: int = 300) -> dict:
    """The headline number(s) of a chapter-08 model on held-out data (seed 1)."""
    import torch.nn.functional as F

    from genlib.data import shapes
    from genlib.tokens import codebook_usage

    if name == "vq":
        x = shapes(2000, seed=1).images
        recon, _, idx = model(x)
        return {"usage": codebook_usage(idx, model.k), "mse": F.mse_loss(recon, x).item()}
    if name == "clip":
        d = shapes(2000, seed=1)
        pred = model.zero_shot(d.images)
        return {k: (pred[k] == getattr(d, k)).float().mean().item() for k in pred}
    if name.startswith("bind_"):
        from genlib.conditioning import binding_accuracy, two_shapes

        pairs = two_shapes(n, seed=1)
        return binding_accuracy(model(pairs.captions), pairs.shape, pairs.color)
    d = shapes(n, seed=1)
    if name == "flow":
        imgs = sample_flow(model, d.captions, seed=0)
    else:
        imgs = generate_images(model, vq, d.captions)
    return attribute_accuracy(imgs, d.shape, d.color, d.size)


@torch.no_grad()
def sample_flow(model, captions, seed: int = 0, steps: int = 16, guidance: float = 1.0):
    """Captions → (N, 3, 16, 16) images from ``CaptionFlowNet`` by Euler steps from noise (seeded)."""
    from genlib.flow import sample_euler

    x0 = torch.randn(len(captions), 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    return sample_euler(model, x0, steps, y=caption_tokens(captions), guidance=guidance).clamp(-1, 1)


# ----------------------------------------------------------------------------- a text-conditioned flow
class CaptionFlowNet(torch.nn.Module):
    """A small U-Net velocity model v(x, t, caption) for (N, 3, 16, 16) ``shapes`` images.

    16×16 (ch) → 8×8 (2ch) → 4×4 (2ch) and back with skip connections; every ``ResBlock`` of
    chapter 07 receives time + caption. The caption (N, 4) token ids enters as the sum of its word
    embeddings (a bag of words is enough for one object: section 2); the id ``null_class`` (= the
    vocabulary size) in every position is the empty caption of classifier-free guidance, so
    ``genlib.flow.sample_euler(model, x0, steps, y=tokens, guidance=s)`` guides it.
    """

    def __init__(self, ch: int = 32, emb: int = 128, time_scale: float = 1000.0):
        from torch import nn

        from genlib.diffusion import ResBlock

        super().__init__()
        vocab = len(Tokenizer())
        self.null_class, self.time_scale, self.emb_dim = vocab, time_scale, emb
        self.time = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.words = nn.Embedding(vocab + 1, emb)
        self.inp = nn.Conv2d(3, ch, 3, padding=1)
        self.down1 = ResBlock(ch, ch, emb)                                     # 16×16
        self.pool1 = nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1)             # → 8×8
        self.down2 = ResBlock(2 * ch, 2 * ch, emb)
        self.pool2 = nn.Conv2d(2 * ch, 2 * ch, 3, stride=2, padding=1)         # → 4×4
        self.mid = ResBlock(2 * ch, 2 * ch, emb)
        self.up2 = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(2 * ch, 2 * ch, 3, padding=1))
        self.dec2 = ResBlock(4 * ch, 2 * ch, emb)                              # 8×8 after skip
        self.up1 = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(2 * ch, ch, 3, padding=1))
        self.dec1 = ResBlock(2 * ch, ch, emb)                                  # 16×16 after skip
        self.out = nn.Sequential(nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv2d(ch, 3, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y=None) -> torch.Tensor:
        from genlib.diffusion import timestep_embedding

        if y is None:
            y = torch.full((len(x), N_COND), self.null_class, dtype=torch.long, device=x.device)
        e = self.time(timestep_embedding(t * self.time_scale, self.emb_dim)) + self.words(y).sum(1)
        h1 = self.down1(self.inp(x), e)
        h2 = self.down2(self.pool1(h1), e)
        h = self.mid(self.pool2(h2), e)
        h = self.dec2(torch.cat([self.up2(h), h2], 1), e)
        h = self.dec1(torch.cat([self.up1(h), h1], 1), e)
        return self.out(h)
