"""Plots for the chapters: image grids, training curves, 2-D samples over the data."""
from __future__ import annotations

import math

import matplotlib
import numpy as np
import torch


def _plt():
    import matplotlib.pyplot as plt
    return plt


def make_grid(images, nrow: int = 8, value_range=(-1.0, 1.0), pad: int = 1) -> np.ndarray:
    """Tile ``images: (N, C, H, W)`` into one (rows·H, nrow·W, C) array in [0, 1] for ``imshow``."""
    x = torch.as_tensor(images).detach().float().cpu()
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(x.shape)}")
    lo, hi = value_range
    x = ((x - lo) / (hi - lo)).clamp(0, 1)
    n, c, h, w = x.shape
    if c not in (1, 3):
        raise ValueError(f"images need 1 or 3 channels, got {c}")
    ncol = min(nrow, n)
    nrows = math.ceil(n / ncol)
    out = np.ones((nrows * (h + pad) + pad, ncol * (w + pad) + pad, c), np.float32)
    for i in range(n):
        r, col = divmod(i, ncol)
        y0, x0 = pad + r * (h + pad), pad + col * (w + pad)
        out[y0:y0 + h, x0:x0 + w] = x[i].permute(1, 2, 0).numpy()
    return out


def show_images(images, nrow: int = 8, value_range=(-1.0, 1.0), title: str | None = None,
                ax=None, scale: float = 0.6):
    """Show a grid of images ``(N, C, H, W)`` whose pixels lie in ``value_range``."""
    plt = _plt()
    grid = make_grid(images, nrow, value_range)
    if ax is None:
        h, w = grid.shape[:2]
        _, ax = plt.subplots(figsize=(max(2.0, scale * w / 9), max(2.0, scale * h / 9)))
    if grid.shape[2] == 1:
        ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def plot_history(history: dict, keys=None, ax=None, title: str | None = None,
                 xlabel: str = "step", ylabel: str = "value", smooth: int = 1):
    """Line plot of ``history[key]`` lists (e.g. losses per step), optionally moving-averaged."""
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for k in keys or list(history):
        v = np.asarray(history[k], dtype=float)
        if smooth > 1 and len(v) >= smooth:
            v = np.convolve(v, np.ones(smooth) / smooth, mode="valid")
        ax.plot(v, label=k)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    if title:
        ax.set_title(title)
    return ax


def plot_samples_2d(samples, data=None, centers=None, ax=None, title: str | None = None,
                    lim: float | None = None, label: str = "samples", legend: bool = True):
    """Generated 2-D ``samples`` (N, 2) as dots over the real ``data`` and mode ``centers``.

    ``label`` names the red points in the legend ("samples" by default; pass e.g. "data points"
    when they are real data). The legend explains grey (data), black × (modes) and red.
    """
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    if data is not None:
        d = torch.as_tensor(data).detach().cpu().numpy()
        ax.scatter(d[:, 0], d[:, 1], s=2, c="lightgray", label="data")
    if centers is not None:
        c = torch.as_tensor(centers).detach().cpu().numpy()
        ax.scatter(c[:, 0], c[:, 1], s=60, marker="x", c="black", label="modes")
    s = torch.as_tensor(samples).detach().cpu().numpy()
    size = 3 if len(s) > 200 else 25  # a few points must stay visible
    ax.scatter(s[:, 0], s[:, 1], s=size, c="tab:red", alpha=0.6, label=label)
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if legend:
        ax.legend(loc="upper right", fontsize="small", markerscale=2, framealpha=0.8)
    if title:
        ax.set_title(title)
    return ax


def subplots(n: int, ncols: int = 4, size: float = 3.0):
    """A row-major grid of ``n`` axes (extra axes hidden), for snapshot strips."""
    plt = _plt()
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    flat = axes.ravel()
    for a in flat[n:]:
        a.set_axis_off()
    return fig, list(flat[:n])
