"""Feature extractors behind the metrics: small classifiers whose weights ship with genlib.

FID, KID, precision/recall and IS compare images through a network's eyes. The papers use
Inception-v3 on 299×299 ImageNet-style photos; for the offline 8×8 digits that network is both
unavailable and meaningless, so genlib ships a small CNN trained on the digits' train split
(``scripts/train_features.py`` rebuilds ``weights/digits_cnn.pt``: bit for bit only on some CPUs;
its ``--check`` verifies held-out accuracy within 0.02). Every learner gets the same shipped network and
therefore the same metric values.

=====================  ===========================================================
``digits_classifier``  the CNN (eval mode): (N,1,8,8) in [-1,1] → logits (N,10)
``digits_features``    its penultimate layer: (N,1,8,8) → (N, 64) float32
``classify_digits``    (labels (N,), confidence (N,)) from the softmax
``digits_probs``       softmax probabilities (N,10), the input of the Inception Score
``stacked_labels``     per-channel digit labels of stacked digits: (N,3,8,8) → (N,3)
``stacked_features``   per-channel features, concatenated: (N,3,8,8) → (N,192)
``inception_features`` optional Inception-v3 pool features (needs torchvision + internet once)
``classify_shapes``    shape/colour/size labels of ``genlib.data.shapes`` images; ``shapes_features``
=====================  ===========================================================

Inputs may live on any device; outputs come back on the input's device. No gradients flow.
"""
from __future__ import annotations

import os
import warnings
from functools import lru_cache

import torch
from torch import nn

from genlib.runtime import GenlibWarning

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
DIGITS_WEIGHTS = os.path.join(WEIGHTS_DIR, "digits_cnn.pt")
FEATURE_DIM = 64


class DigitsCNN(nn.Module):
    """Three 3×3 conv layers and two linear layers for 8×8 digits (~75k parameters).

    ``features(x)``: (N,1,8,8) in [-1,1] → (N,64), the ReLU output of the first linear layer
    times a fixed ``feature_scale`` (so that features have unit mean square on the train digits);
    ``forward(x)``: → logits (N,10).
    """

    def __init__(self, width: int = 32, feature_dim: int = FEATURE_DIM, n_classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),                                   # 8×8 → 4×4
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),                                   # 4×4 → 2×2
            nn.Flatten(),
            nn.Linear(2 * width * 4, feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, n_classes)
        # set once after training so that E‖f‖²/d = 1 on the train digits: KID's cubic kernel
        # (a·b/d + 1)³ then sees O(1) inner products, as with Inception features
        self.register_buffer("feature_scale", torch.ones(()))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * self.feature_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _check_images(x: torch.Tensor, channels: int, what: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim != 4 or x.shape[1] != channels or tuple(x.shape[2:]) != (8, 8):
        raise ValueError(f"{what} expects images of shape (N, {channels}, 8, 8) in [-1, 1], "
                         f"got {tuple(x.shape)}")
    # noise experiments push pixels a little outside [-1, 1]; raw levels (0…16, 0…255) are an error
    if x.numel() and (x.min() < -4 or x.max() > 4):
        raise ValueError(f"{what} expects pixels in [-1, 1], got [{x.min():.2f}, {x.max():.2f}]; "
                         "map raw levels onto [-1, 1] first (digits(split, (-1, 1)))")
    if x.numel() > 64 * 8 and x.min() >= -0.05:
        warnings.warn(f"{what}: no pixel is below 0 — are these [0, 1] images? The classifier "
                      "expects [-1, 1] (background −1); map them with 2·x − 1", GenlibWarning)
    return x.float()


def _load_frozen(model: nn.Module, path: str, rebuild: str, device: str) -> nn.Module:
    """Load shipped weights into ``model``, freeze it, eval mode, on ``device``."""
    if not os.path.exists(path):
        raise RuntimeError(f"{path} is missing; rebuild it with `python {rebuild}`")
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval().to(device)


@lru_cache(maxsize=4)
def _digits_model(device: str) -> DigitsCNN:
    return _load_frozen(DigitsCNN(), DIGITS_WEIGHTS, "scripts/train_features.py", device)


def digits_classifier(device: str | torch.device = "cpu") -> DigitsCNN:
    """The shipped digits CNN in eval mode (cached): (N,1,8,8) in [-1,1] → logits (N,10)."""
    return _digits_model(str(torch.device(device)))


@torch.no_grad()
def _batched(fn, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]) \
        if len(x) else fn(x)


def digits_logits(x: torch.Tensor) -> torch.Tensor:
    """x: (N,1,8,8) in [-1,1] → logits (N,10) float32 on x's device."""
    x = _check_images(x, 1, "digits_logits")
    return _batched(digits_classifier(x.device), x)


def digits_features(x: torch.Tensor) -> torch.Tensor:
    """x: (N,1,8,8) in [-1,1] → (N,64) float32 penultimate features (no grad)."""
    x = _check_images(x, 1, "digits_features")
    return _batched(digits_classifier(x.device).features, x)


def digits_probs(x: torch.Tensor) -> torch.Tensor:
    """x: (N,1,8,8) in [-1,1] → class probabilities (N,10), rows sum to 1."""
    return digits_logits(x).softmax(dim=1)


def classify_digits(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (N,1,8,8) in [-1,1] → (labels (N,) int64, confidence (N,) = max softmax prob)."""
    conf, labels = digits_probs(x).max(dim=1)
    return labels, conf


def stacked_labels(x: torch.Tensor) -> torch.Tensor:
    """Stacked digits x: (N,3,8,8) in [-1,1] → (N,3) int64, the digit in each channel.

    The mode id of the Stacked-MNIST protocol is ``100*y[:,0] + 10*y[:,1] + y[:,2]``.
    """
    x = _check_images(x, 3, "stacked_labels")
    n = len(x)
    labels, _ = classify_digits(x.reshape(n * 3, 1, 8, 8))
    return labels.reshape(n, 3)


def stacked_features(x: torch.Tensor) -> torch.Tensor:
    """Stacked digits x: (N,3,8,8) in [-1,1] → (N,192): the three channels' features side by side."""
    x = _check_images(x, 3, "stacked_features")
    n = len(x)
    return digits_features(x.reshape(n * 3, 1, 8, 8)).reshape(n, 3 * FEATURE_DIM)


# ----------------------------------------------------------------------------- Inception-v3 (online)
@lru_cache(maxsize=1)
def _inception(device: str):
    try:
        from torchvision.models import Inception_V3_Weights, inception_v3
    except Exception as e:  # ImportError, or a torchvision built for another torch
        raise RuntimeError(
            f"Inception features need torchvision, which is not usable here ({type(e).__name__}: "
            f"{e}). Install it with `pip install -e .[online]`, or use the offline extractors "
            "(genlib.features.digits_features, stacked_features).") from None
    try:
        model = inception_v3(weights=Inception_V3_Weights.IMAGENET1K_V1, aux_logits=True)
    except Exception as e:  # URLError, OSError, RuntimeError from a failed download
        raise RuntimeError(
            f"could not load the Inception-v3 weights ({type(e).__name__}: {e}). They are "
            "downloaded once (~100 MB) and need internet; offline, use "
            "genlib.features.digits_features or stacked_features instead.") from None
    model.fc = nn.Identity()  # keep the 2,048-d pool features
    return model.eval().to(device)


@torch.no_grad()
def inception_features(x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Optional: torchvision's Inception-v3 pool features (N, 2048) for x: (N,C,H,W) in [-1,1].

    Grey images are repeated to 3 channels and resized to 299×299 bilinearly. Values are close to,
    but not identical with, the TF-Inception features of the original FID code, so compare numbers
    only with numbers computed the same way. Raises ``RuntimeError`` with advice when offline.
    """
    import torch.nn.functional as F

    x = torch.as_tensor(x).float()
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"inception_features expects (N, 1 or 3, H, W), got {tuple(x.shape)}")
    model = _inception(str(x.device))
    mean = torch.tensor([0.485, 0.456, 0.406], device=x.device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=x.device).view(1, 3, 1, 1)
    out = []
    for i in range(0, len(x), batch_size):
        b = x[i:i + batch_size]
        b = b.expand(-1, 3, -1, -1) if b.shape[1] == 1 else b
        # antialias: a no-op when upsampling small images, but without it images larger than 299 px
        # are downsampled with aliasing, which shifts FID (the clean-fid pitfall, Parmar et al. 2022)
        b = F.interpolate((b + 1) / 2, size=(299, 299), mode="bilinear", align_corners=False, antialias=True)
        out.append(model((b - mean) / std))
    return torch.cat(out)


# ----------------------------------------------------------------------------- shapes (conditioning)
SHAPES_WEIGHTS = os.path.join(WEIGHTS_DIR, "shapes_cnn.pt")


class ShapesCNN(nn.Module):
    """Two conv blocks and three heads for ``genlib.data.shapes`` images (N,3,16,16) in [-1,1].

    ``features(x)`` → (N,64); ``forward(x)`` → dict of logits: ``shape`` (N,4), ``color`` (N,6),
    ``size`` (N,2) — one head per attribute of the caption, so a conditional generator can be scored
    on whether it drew what the caption asked for.
    """

    def __init__(self, width: int = 16, feature_dim: int = FEATURE_DIM):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),            # 16 → 8
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),    # 8 → 4
            nn.Flatten(), nn.Linear(2 * width * 16, feature_dim), nn.ReLU(),
        )
        self.heads = nn.ModuleDict({"shape": nn.Linear(feature_dim, 4),
                                    "color": nn.Linear(feature_dim, 6),
                                    "size": nn.Linear(feature_dim, 2)})

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> dict:
        f = self.body(x)
        return {k: head(f) for k, head in self.heads.items()}


@lru_cache(maxsize=4)
def _shapes_model(device: str) -> ShapesCNN:
    return _load_frozen(ShapesCNN(), SHAPES_WEIGHTS, "scripts/train_features.py --shapes", device)


def shapes_classifier(device: str | torch.device = "cpu") -> ShapesCNN:
    """The shipped shapes CNN in eval mode (cached)."""
    return _shapes_model(str(torch.device(device)))


def _check_shapes(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != (16, 16):
        raise ValueError(f"expects shapes images (N, 3, 16, 16) in [-1, 1], got {tuple(x.shape)}")
    return x.float()


@torch.no_grad()
def shapes_features(x: torch.Tensor) -> torch.Tensor:
    """x: (N,3,16,16) in [-1,1] → (N,64) features (for FID/precision/recall on shapes)."""
    x = _check_shapes(x)
    return _batched(shapes_classifier(x.device).features, x)


@torch.no_grad()
def classify_shapes(x: torch.Tensor) -> dict:
    """x: (N,3,16,16) in [-1,1] → {"shape", "color", "size"}: (N,) int64 labels each, indexing
    ``genlib.data.SHAPE_NAMES``, ``COLOR_NAMES`` and ``SIZE_NAMES``."""
    x = _check_shapes(x)
    out = shapes_classifier(x.device)(x)
    return {k: v.argmax(1) for k, v in out.items()}
