"""Chapter 08's shipped models and the measurements made on them.

``load(name)`` for "vq", "clip", "gpt", "maskgit" (trained by
``scripts/train_text_to_image.py``); ``attribute_accuracy``, ``generate_images`` and ``evaluate``
give the numbers the chapter asserts.
"""
from __future__ import annotations

import os
from functools import lru_cache

import torch

from genlib.features import WEIGHTS_DIR
from genlib.text import Tokenizer

NAMES = ("vq", "clip", "gpt", "maskgit")
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
    d = shapes(n, seed=1)
    imgs = generate_images(model, vq, d.captions)
    return attribute_accuracy(imgs, d.shape, d.color, d.size)
