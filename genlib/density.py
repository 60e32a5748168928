"""Explicit density models for chapter 01: a full-covariance Gaussian, fitted, evaluated, sampled.

The three exercises of the chapter are here: ``fit_gaussian`` (maximum likelihood),
``gaussian_log_prob`` (evaluate log p(x)) and ``sample_gaussian`` (draw x ~ p). Together they are a
complete generative model: learn p(x) from data, then sample from it.
"""
from __future__ import annotations

import math

import torch


def fit_gaussian(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximum-likelihood Gaussian for samples ``x: (N, D)`` → ``mean (D,)``, ``cov (D, D)``.

    The MLE covariance divides by N (population covariance), not N − 1: it is the Σ that maximises
    Σ_i log N(x_i; μ, Σ). (The N − 1 version is the unbiased estimator, a different question.)
    """
    if x.ndim != 2:
        raise ValueError(f"x must be (N, D), got shape {tuple(x.shape)}")
    mean = x.mean(0)
    centred = x - mean
    return mean, centred.T @ centred / x.shape[0]


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, cov) for every row of ``x: (N, D)`` → ``(N,)``.

    −½ [ D log 2π + log det Σ + (x − μ)ᵀ Σ⁻¹ (x − μ) ], computed through the Cholesky factor
    Σ = L Lᵀ: log det Σ = 2 Σ log L_ii and the quadratic form is ‖L⁻¹(x − μ)‖².
    """
    d = x.shape[-1]
    chol = torch.linalg.cholesky(cov)
    white = torch.linalg.solve_triangular(chol, (x - mean).T, upper=False).T  # L⁻¹(x − μ)
    log_det = 2.0 * torch.log(torch.diagonal(chol)).sum()
    return -0.5 * (d * math.log(2 * math.pi) + log_det + white.pow(2).sum(-1))


def sample_gaussian(mean: torch.Tensor, cov: torch.Tensor, n: int,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` samples ``(n, D)`` of N(mean, cov): x = μ + L ε with Σ = L Lᵀ and ε ~ N(0, I).

    Row-vector form: x = μ + ε Lᵀ. (ε L would have covariance LᵀL ≠ Σ in general.)
    """
    chol = torch.linalg.cholesky(cov)
    eps = torch.randn(n, mean.shape[0], generator=generator, dtype=mean.dtype)
    return mean + eps @ chol.T


def dequantize(levels: torch.Tensor, n_levels: int, generator: torch.Generator | None = None):
    """Integer pixels in {0, …, n_levels−1} → continuous values in [0, 1) by adding U(0, 1) noise.

    A continuous density on discrete data can put infinite density on the grid points, so its
    log-likelihood means nothing. After uniform dequantisation, log p(x) of a continuous model is
    a lower bound on the log-probability of the discrete data (Theis et al. 2016).
    """
    u = torch.rand(levels.shape, generator=generator)
    return (levels + u) / n_levels
