"""Datasets that work offline. Every function returns tensors ready for a DataLoader.

================  =====================================================  ==================
name              what                                                   shape, range
================  =====================================================  ==================
``digits``        scikit-learn's 1,797 real 8×8 handwritten digits       (N,1,8,8), chosen
``ring``          8 Gaussians on a circle of radius 1, std 0.01          (N,2)
``grid``          25 Gaussians on {−4,−2,0,2,4}², std 0.05               (N,2)
``stacked``       three digits as RGB channels → 1,000 modes             (N,3,8,8), chosen
``shapes``        coloured shapes drawn procedurally, with captions      (N,3,16,16), chosen
================  =====================================================  ==================

MNIST, Fashion-MNIST and CIFAR-10 are available through ``torchvision_dataset`` for people online.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

DIGITS_TEST_SIZE = 297  # fixed split: 1,500 train / 297 test


def _check_range(value_range) -> tuple[float, float]:
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
    return lo, hi


@lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    perm = np.random.RandomState(0).permutation(len(d.target))  # fixed for every learner
    return d.images[perm].astype(np.float32), d.target[perm].astype(np.int64)


def digits(split: str = "train", value_range=(-1.0, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """Real 8×8 handwritten digits (scikit-learn's copy of the UCI set), fixed split.

    Returns ``x: (N, 1, 8, 8) float32`` and ``y: (N,) int64``. Raw pixels are the integers 0…16
    (17 grey levels); they are mapped linearly onto ``value_range``: (-1, 1) for a tanh generator,
    (0, 1) for a sigmoid/Bernoulli decoder, (0, 16) for the raw levels.
    ``split``: "train" (1,500), "test" (297) or "all" (1,797).
    """
    lo, hi = _check_range(value_range)
    images, labels = _digits_raw()
    if split == "train":
        sl = slice(DIGITS_TEST_SIZE, None)
    elif split == "test":
        sl = slice(0, DIGITS_TEST_SIZE)
    elif split == "all":
        sl = slice(None)
    else:
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    x = torch.from_numpy(images[sl].copy()).unsqueeze(1)
    x = lo + (hi - lo) * x / 16.0
    return x, torch.from_numpy(labels[sl].copy())


def ring_centers(n_modes: int = 8, radius: float = 1.0) -> torch.Tensor:
    """(n_modes, 2) evenly spaced on a circle. Note: not ``linspace(0, 2π, n)``, which repeats 0."""
    angles = 2 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
    return torch.stack([radius * torch.cos(angles), radius * torch.sin(angles)], 1).float()


def grid_centers(values=(-4.0, -2.0, 0.0, 2.0, 4.0)) -> torch.Tensor:
    """(25, 2) the points of {−4,−2,0,2,4}²."""
    v = torch.tensor(values, dtype=torch.float32)
    gx, gy = torch.meshgrid(v, v, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)


def _mixture(centers: torch.Tensor, n: int, std: float, seed: int, return_labels: bool):
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(len(centers), (n,), generator=g)
    x = centers[labels] + std * torch.randn(n, 2, generator=g)
    return (x, labels) if return_labels else x


def ring(n: int = 2500, std: float = 0.01, seed: int = 0, return_labels: bool = False):
    """``n`` samples (n, 2) from the 8-Gaussian ring (radius 1, std 0.01), modes equally likely."""
    return _mixture(ring_centers(), n, std, seed, return_labels)


def grid(n: int = 2500, std: float = 0.05, seed: int = 0, return_labels: bool = False):
    """``n`` samples (n, 2) from the 25-Gaussian grid (std 0.05), modes equally likely."""
    return _mixture(grid_centers(), n, std, seed, return_labels)


def stacked(n: int = 10000, split: str = "train", value_range=(-1.0, 1.0), seed: int = 0):
    """Stacked digits: three random digit images as the R, G, B channels (1,000 modes).

    Returns ``x: (n, 3, 8, 8)`` and ``y: (n, 3) int64`` (the three digit labels); the mode of a
    sample is ``100*y[:,0] + 10*y[:,1] + y[:,2]``.
    """
    xd, yd = digits(split, value_range)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(yd), (n, 3), generator=g)
    x = xd[idx].squeeze(2)  # (n, 3, 1, 8, 8) -> (n, 3, 8, 8)
    return x, yd[idx]


# ----------------------------------------------------------------------------- shapes
SHAPE_NAMES = ("circle", "square", "triangle", "cross")
COLOR_NAMES = ("red", "green", "blue", "yellow", "magenta", "cyan")
_COLOR_RGB = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1),
              "yellow": (1, 1, 0), "magenta": (1, 0, 1), "cyan": (0, 1, 1)}
SIZE_NAMES = ("small", "large")


@dataclass
class Shapes:
    """Output of ``shapes``: images with their attributes and a caption each."""
    images: torch.Tensor  # (N, 3, S, S)
    shape: torch.Tensor   # (N,) index into SHAPE_NAMES
    color: torch.Tensor   # (N,) index into COLOR_NAMES
    size: torch.Tensor    # (N,) index into SIZE_NAMES
    captions: list[str]

    def __len__(self):
        return len(self.captions)


def _draw(shape: str, cx: float, cy: float, r: float, s: int) -> np.ndarray:
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return (dx**2 + dy**2 <= r**2)
    if shape == "square":
        return (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
    if shape == "triangle":  # apex up
        return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    if shape == "cross":
        w = max(r * 0.35, 0.8)
        return ((np.abs(dx) <= w) & (np.abs(dy) <= r)) | ((np.abs(dy) <= w) & (np.abs(dx) <= r))
    raise ValueError(shape)


def shapes(n: int = 2000, size: int = 16, seed: int = 0, value_range=(-1.0, 1.0)) -> Shapes:
    """Procedural coloured shapes on a black background with captions like "a large red circle".

    4 shapes × 6 colours × 2 sizes = 48 classes; position jitters a little. Images are
    ``(n, 3, size, size)`` mapped from [0, 1] onto ``value_range``.
    """
    if size < 8:
        raise ValueError("size must be at least 8 pixels")
    lo, hi = _check_range(value_range)
    rng = np.random.RandomState(seed)
    sh = rng.randint(len(SHAPE_NAMES), size=n)
    co = rng.randint(len(COLOR_NAMES), size=n)
    sz = rng.randint(len(SIZE_NAMES), size=n)
    imgs = np.zeros((n, 3, size, size), np.float32)
    caps = []
    for i in range(n):
        r = size * (0.22 if sz[i] == 0 else 0.38)
        jitter = size * 0.5 - r - 0.5
        cx = size / 2 + rng.uniform(-jitter, jitter) * 0.5
        cy = size / 2 + rng.uniform(-jitter, jitter) * 0.5
        mask = _draw(SHAPE_NAMES[sh[i]], cx, cy, r, size)
        rgb = np.array(_COLOR_RGB[COLOR_NAMES[co[i]]], np.float32)
        imgs[i] = mask[None] * rgb[:, None, None]
        caps.append(f"a {SIZE_NAMES[sz[i]]} {COLOR_NAMES[co[i]]} {SHAPE_NAMES[sh[i]]}")
    x = lo + (hi - lo) * torch.from_numpy(imgs)
    return Shapes(x, torch.from_numpy(sh), torch.from_numpy(co), torch.from_numpy(sz), caps)


# ----------------------------------------------------------------------------- online extras
ONLINE_DATASETS = ("MNIST", "FashionMNIST", "CIFAR10")


def torchvision_dataset(name: str, root: str = "~/.cache/genlib", train: bool = True,
                        download: bool = False, value_range=(-1.0, 1.0)):
    """MNIST, FashionMNIST or CIFAR10 through torchvision, as ``(x, y)`` tensors.

    Needs ``pip install torchvision`` (the ``online`` extra) and, the first time, ``download=True``
    with internet access. Offline, this raises a ``RuntimeError`` that says what to do instead.
    """
    import os

    if name not in ONLINE_DATASETS:
        raise ValueError(f"name must be one of {ONLINE_DATASETS}, got {name!r}")
    lo, hi = _check_range(value_range)
    try:
        import torchvision
    except Exception as e:  # ImportError, or a torchvision built for another torch
        raise RuntimeError(
            f"{name} needs torchvision, which is not usable here ({type(e).__name__}: {e}). "
            "Install it with `pip install -e .[online]`, or use the offline datasets "
            "(genlib.data.digits, stacked, shapes, ring, grid).") from None
    root = os.path.expanduser(root)
    cls = getattr(torchvision.datasets, name)
    try:
        ds = cls(root, train=train, download=download)
    except RuntimeError as e:
        if not download:
            raise RuntimeError(f"{name} is not in {root}. Call with download=True once while "
                               "online, or use the offline datasets (genlib.data.digits, …).") from None
        raise RuntimeError(f"could not download {name} ({e}). Are you offline? The offline "
                           "datasets (genlib.data.digits, stacked, shapes, ring, grid) need no "
                           "network.") from None
    except OSError as e:  # URLError and socket errors are OSErrors
        raise RuntimeError(f"could not download {name}: no network ({e}). Use the offline "
                           "datasets (genlib.data.digits, stacked, shapes, ring, grid).") from None
    data = torch.as_tensor(np.asarray(ds.data), dtype=torch.float32) / 255.0
    data = data.permute(0, 3, 1, 2) if data.ndim == 4 else data.unsqueeze(1)
    return lo + (hi - lo) * data, torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)


def to_tanh_range(x: torch.Tensor) -> torch.Tensor:
    """Map images from [0, 1] to [-1, 1], the range of a tanh generator: 0 → −1, ½ → 0, 1 → 1.

    A generator that ends in tanh can only output [-1, 1]; if the real images stay in [0, 1] the
    discriminator tells them apart by their range alone (the S0.4/S3.6 bug). Returns a new tensor.
    """
    return x * 2.0 - 1.0
