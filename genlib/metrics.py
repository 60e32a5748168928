"""Evaluation metrics for generative models: what each one measures, computed carefully.

Which question does each metric answer?

* **Paired reference** (restoration, reconstruction, compression: there is one right image) —
  ``psnr`` and ``ssim`` compare an output with *its own* target, pixel by pixel / window by window.
  They say nothing about an unconditional generator, whose samples have no target.
* **Distribution level** (generation: are the samples like the data, as a set?) — computed on
  features of a fixed network (``genlib.features``):
  ``fid_from_features`` / ``frechet_distance`` (Gaussian fit of the features; biased upwards at small
  n), ``kid_from_features`` (unbiased MMD², usable at small n), ``precision_recall`` (fidelity vs
  coverage, separately), ``density_coverage`` (the same questions, robust to outliers),
  ``inception_score`` (confident and varied class predictions — never looks at real data).
* **Known modes** (toy benchmarks ring / grid / stacked) — ``mode_stats``, ``mode_stats_labels``.

All distribution metrics compute in float64 and return Python floats. Image wrappers
(``digits_fid``, ``digits_kid``, …) take images in [-1, 1].
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from genlib.runtime import GenlibWarning

__all__ = [
    "psnr", "ssim", "gaussian_window",
    "frechet_distance", "fid_from_features", "kid_from_features", "inception_score",
    "precision_recall", "density_coverage", "mode_stats", "mode_stats_labels",
    "fid", "kid", "digits_fid", "digits_kid", "digits_inception_score",
    "digits_precision_recall", "digits_density_coverage", "stacked_fid", "stacked_mode_stats",
]


# ============================================================================ paired: PSNR, SSIM
def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, in dB: 10·log10(data_range² / MSE).

    x, y: (N, C, H, W) on the same scale; ``data_range`` is the span of that scale (1 for [0, 1],
    2 for [-1, 1], 255 for bytes) — not the observed max − min of one image. Returns (N,) in x's
    float dtype; identical images give +inf.
    """
    x, y = _paired(x, y, "psnr")
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    span = float(torch.maximum(x.max(), y.max()) - torch.minimum(x.min(), y.min()))
    if span > 1.5 * data_range:
        warnings.warn(f"psnr: pixel values span {span:.3g} but data_range={data_range}; "
                      "pass the range of the pixel scale (2 for [-1, 1], 255 for bytes)", GenlibWarning)
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(data_range ** 2 / mse)).to(_float_dtype(x))


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float64) -> torch.Tensor:
    """(size,) Gaussian taps normalised to sum 1 (the 1-D factor of SSIM's 2-D window)."""
    k = torch.arange(size, dtype=dtype) - (size - 1) / 2
    w = torch.exp(-k ** 2 / (2 * sigma ** 2))
    return w / w.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, win_size: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity per image (Wang, Bovik, Sheikh & Simoncelli 2004), shape (N,).

    x, y: (N, C, H, W) with H, W ≥ ``win_size``. Local statistics use an 11-tap Gaussian window
    (σ = 1.5, weights sum to 1); variances and covariance are the window-weighted *population*
    moments (E[x²] − E[x]², no n/(n−1)); C1 = (k1·L)², C2 = (k2·L)², L = ``data_range``. The SSIM
    map is computed only where the window fits (no padding) and averaged, then averaged over
    channels. This equals scikit-image's ``structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=L)``. For 8×8 digits pass e.g. win_size=7.
    """
    x, y = _paired(x, y, "ssim")
    if win_size % 2 == 0 or win_size < 3:
        raise ValueError(f"win_size must be odd and ≥ 3, got {win_size}")
    if min(x.shape[-2:]) < win_size:
        raise ValueError(f"images of {tuple(x.shape[-2:])} are smaller than the {win_size}×"
                         f"{win_size} window; pass a smaller odd win_size (e.g. 7 for 8×8)")
    c = x.shape[1]
    xd, yd = x.double(), y.double()
    g = gaussian_window(win_size, sigma).to(x.device)
    # one separable 'valid' filter pass over the five maps we need, every channel separately
    maps = torch.cat([xd, yd, xd * xd, yd * yd, xd * yd], dim=1)            # (N, 5C, H, W)
    mu_x, mu_y, e_xx, e_yy, e_xy = filter_valid(maps, g).split(c, dim=1)
    var_x, var_y = e_xx - mu_x ** 2, e_yy - mu_y ** 2
    cov = e_xy - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / \
        ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return s.mean(dim=(1, 2, 3)).to(_float_dtype(x))


def filter_valid(t: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' filtering of t: (..., H, W) with the 1-D taps g: (k,) along H then W
    → (..., H−k+1, W−k+1). (Sliding windows times the taps: fast in float64, unlike conv2d.)"""
    k = len(g)
    t = t.unfold(-2, k, 1) @ g                                             # (..., H−k+1, W)
    return t.unfold(-1, k, 1) @ g                                          # (..., H−k+1, W−k+1)


def _paired(x, y, name):
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"{name} needs two (N, C, H, W) tensors of the same shape, "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")
    return x, y.to(x.device)


def _float_dtype(x):
    return x.dtype if x.is_floating_point() else torch.float32


# ============================================================================ features → numbers
def _as_f64(a, name: str, ndim: int) -> np.ndarray:
    if torch.is_tensor(a):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _psd_factor(sigma: np.ndarray) -> np.ndarray:
    """L with L·Lᵀ = sigma for a symmetric PSD matrix: Cholesky if it is positive definite,
    otherwise the symmetric square root from eigh with eigenvalues clamped at 0 (singular σ)."""
    t = torch.from_numpy(sigma)
    chol, info = torch.linalg.cholesky_ex(t)
    if int(info) == 0:
        return chol.numpy()
    w, v = torch.linalg.eigh(t)
    return (v * _clamp_eigenvalues(w).sqrt()).numpy()  # V·diag(√w): V·diag(w)·Vᵀ = sigma


def _clamp_eigenvalues(w: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of a PSD matrix with round-off removed: those below d·ε·max (the usual rank
    tolerance) are set to 0. Clamping only negatives would leave √(1e-16) ≈ 1e-8 of noise per
    null direction, which adds up to ~1e-6 in the trace when n < d."""
    tol = len(w) * torch.finfo(w.dtype).eps * w.abs().max().clamp(min=1e-300)
    return torch.where(w > tol, w, torch.zeros_like(w))


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr √(Σ1^½ Σ2 Σ1^½), the cross term of the Fréchet distance, for symmetric PSD Σ1, Σ2.

    Σ1^½Σ2Σ1^½ is symmetric PSD, so its eigenvalues are real and ≥ 0 and ``eigvalsh`` finds them
    stably (no complex parts, unlike sqrtm of the non-symmetric Σ1Σ2). Any factor Σ1 = L·Lᵀ gives
    the same eigenvalues, since LᵀΣ2L and Σ1^½Σ2Σ1^½ are both similar to Σ1Σ2 — so a Cholesky factor
    (fast) serves when Σ1 is positive definite, the eigh square root when it is singular (n ≤ d).
    Round-off makes zero eigenvalues tiny (even negative) numbers; they are clamped at 0.
    """
    s1 = np.asarray(sigma1, dtype=np.float64)
    s2 = torch.from_numpy(np.asarray(sigma2, dtype=np.float64))
    L = torch.from_numpy(_psd_factor((s1 + s1.T) / 2))
    m = L.T @ s2 @ L
    eig = torch.linalg.eigvalsh((m + m.T) / 2)
    return float(_clamp_eigenvalues(eig).sqrt().sum())


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet (2-Wasserstein²) distance between N(mu1, sigma1) and N(mu2, sigma2), float64:

        ‖mu1 − mu2‖² + tr Σ1 + tr Σ2 − 2·tr √(Σ1^½ Σ2 Σ1^½).

    mu: (d,), sigma: (d, d) symmetric PSD (may be singular). Never complex, never NaN for valid
    input; clipped at 0 against round-off. N(0, I) vs N(1·𝟙, I) in d dimensions gives exactly d.
    """
    mu1, mu2 = _as_f64(mu1, "mu1", 1), _as_f64(mu2, "mu2", 1)
    s1, s2 = _as_f64(sigma1, "sigma1", 2), _as_f64(sigma2, "sigma2", 2)
    d = len(mu1)
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"shapes do not match: mu1 {mu1.shape}, sigma1 {s1.shape}, "
                         f"mu2 {mu2.shape}, sigma2 {s2.shape}")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt_product(s1, s2)
    return float(max(value, 0.0))


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """features: (n, d) → (mean (d,), covariance (d, d)) in float64, covariance with n − 1
    (``np.cov``'s convention, used by every public FID implementation)."""
    f = _as_f64(features, "features", 2)
    if len(f) < 2:
        raise ValueError("need at least 2 feature vectors for a covariance")
    from scipy.linalg.blas import dsyrk

    mu = f.mean(0)
    centred = f - mu
    # Aᵀ·A with the symmetric rank-k update: half the work of a general matmul (upper triangle)
    upper = dsyrk(1.0 / (len(f) - 1), centred.T, trans=0, lower=0)
    return mu, np.triu(upper) + np.triu(upper, 1).T


def fid_from_features(f1, f2) -> float:
    """FID between two sets of features f1: (n1, d), f2: (n2, d) (numpy or torch), float64.

    Biased upwards at small n (the covariance estimates are noisy and noise only adds distance):
    compare FIDs only at equal sample sizes, and prefer KID when n is a few hundred.
    """
    mu1, s1 = gaussian_stats(f1)
    mu2, s2 = gaussian_stats(f2)
    return frechet_distance(mu1, s1, mu2, s2)


def kid_from_features(f1, f2, subsets: int = 100, subset_size: int = 1000,
                      seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with the cubic kernel
    k(a, b) = (a·b / d + 1)³, averaged over ``subsets`` random subsets → (mean, std).

    Each subset draws m = min(subset_size, n1, n2) rows of each set without replacement from a
    NumPy ``RandomState(seed)``; std is over subsets (ddof=0). Unbiased: E[KID] = 0 when both sets
    come from the same distribution, so single values may be slightly negative.
    """
    x, y = _as_f64(f1, "f1", 2), _as_f64(f2, "f2", 2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    d = x.shape[1]
    m = min(subset_size, len(x), len(y))
    if m < 2:
        raise ValueError("KID needs at least 2 samples per set")
    rng = np.random.RandomState(seed)
    mmds = np.empty(subsets)
    for i in range(subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        kxx, kyy, kxy = [_cubic_kernel(p, q) for p, q in ((a, a), (b, b), (a, b))]
        off = m * (m - 1)  # diagonal terms k(a_i, a_i) are dropped: that is what makes it unbiased
        mmds[i] = ((kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off
                   - 2 * kxy.sum() / (m * m))
    return float(mmds.mean()), float(mmds.std())


def _cubic_kernel(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(a·b / d + 1)³ for all pairs of rows: (m, d), (m', d) → (m, m')."""
    k = p @ q.T
    k /= p.shape[1]
    k += 1
    return k * k * k  # much faster than ** 3, which goes through pow()


def inception_score(probs, splits: int = 10) -> tuple[float, float]:
    """Inception Score exp(E_x KL(p(y|x) ‖ p(y))) from class probabilities probs: (N, K) → (mean, std).

    Split convention (Salimans et al. 2016's code): the rows are cut, *in the given order*, into
    ``splits`` contiguous chunks of ⌊N/splits⌋-based boundaries; within each chunk p(y) is the
    chunk's mean prediction and the score is exp(mean KL); we return the mean and std (ddof=0)
    over chunks. Shuffle first if rows are sorted by class. Range [1, K]: 1 when every prediction
    equals p(y) (e.g. uniform), K when predictions are one-hot and classes balanced in each chunk.
    IS never sees real data: a model that outputs one perfect image per class scores K.
    """
    p = _as_f64(probs, "probs", 2)
    if (p < 0).any() or not np.allclose(p.sum(1), 1, atol=1e-4):
        raise ValueError("probs must be probabilities (rows ≥ 0 summing to 1): apply softmax "
                         "to logits first")
    n = len(p)
    if not 1 <= splits <= n:
        raise ValueError(f"splits must be in [1, N={n}], got {splits}")
    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        py = part.mean(0, keepdims=True)
        # Σ p log(p/py) with 0·log 0 = 0 (xlogy), so one-hot rows are fine
        kl = (_xlogy(part, part) - _xlogy(part, np.broadcast_to(py, part.shape))).sum(1)
        scores.append(math.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def _xlogy(a, b):
    from scipy.special import xlogy
    return xlogy(a, b)


# ----------------------------------------------------------------------------- k-NN based
def _pairwise_dist(a: torch.Tensor, b: torch.Tensor, chunk: int = 2048):
    """Yields (start, (rows, len(b)) Euclidean distances) chunk by chunk, float64."""
    for i in range(0, len(a), chunk):
        yield i, torch.cdist(a[i:i + chunk], b)


def _kth_nn_radius(a: torch.Tensor, k: int) -> torch.Tensor:
    """(n,) distance from each row of a to its k-th nearest *other* row of a."""
    if len(a) <= k:
        raise ValueError(f"need more than k={k} samples, got {len(a)}")
    out = torch.empty(len(a), dtype=a.dtype)
    for i, d in _pairwise_dist(a, a):
        # the row itself sits at distance 0 and takes the first slot: hence k + 1
        out[i:i + len(d)] = d.topk(k + 1, dim=1, largest=False).values[:, k]
    return out


def _in_balls(points: torch.Tensor, centers: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """(len(points),) how many balls B(centers_i, radii_i) (closed) contain each point."""
    count = torch.empty(len(points), dtype=torch.int64)
    for i, d in _pairwise_dist(points, centers):
        count[i:i + len(d)] = (d <= radii[None, :]).sum(1)
    return count


def _feat64(a, name):
    return torch.from_numpy(_as_f64(a, name, 2))


def precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of features real: (n, d), fake: (m, d).

    The real manifold is the union of balls around each real sample with radius its distance to
    its k-th nearest real neighbour (k = 3 in the paper); the fake manifold likewise.
    precision = fraction of fake samples inside the real manifold (fidelity);
    recall    = fraction of real samples inside the fake manifold (coverage of the data).
    Balls are closed (≤). → (precision, recall) in [0, 1].
    """
    r, f = _feat64(real, "real"), _feat64(fake, "fake")
    precision = (_in_balls(f, r, _kth_nn_radius(r, k)) > 0).double().mean()
    recall = (_in_balls(r, f, _kth_nn_radius(f, k)) > 0).double().mean()
    return float(precision), float(recall)


def density_coverage(real, fake, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020) of features real: (n, d), fake: (m, d).

    Only real-sample balls are used (radius = distance to the k-th nearest real neighbour, k = 5),
    so an outlier fake sample cannot inflate anything:
    density  = (1 / (k·m)) Σ_fake #{real balls containing it}   (≈ 1 for matching distributions,
               can exceed 1 when fakes crowd dense real regions);
    coverage = fraction of real samples whose ball contains at least one fake sample, in [0, 1].
    Balls are closed (≤; the authors' code uses <, which differs only on exact ties).
    """
    r, f = _feat64(real, "real"), _feat64(fake, "fake")
    radii = _kth_nn_radius(r, k)
    density = _in_balls(f, r, radii).double().sum() / (k * len(f))
    nearest_fake = torch.cat([d.min(dim=1).values for _, d in _pairwise_dist(r, f)])
    coverage = (nearest_fake <= radii).double().mean()
    return float(density), float(coverage)


# ============================================================================ known modes
def _histogram_stats(counts: torch.Tensor, min_count: int) -> dict:
    counts = counts.to(torch.int64)
    total = int(counts.sum())
    if total == 0:
        kl = math.inf
    else:
        p = counts.double() / total
        nz = p > 0  # empty modes contribute 0·log 0 = 0
        kl = float((p[nz] * torch.log(p[nz] * len(counts))).sum())
    return {"modes": int((counts >= min_count).sum()), "reverse_kl": kl, "counts": counts}


def mode_stats(samples, centers, std: float, min_count: int = 1) -> dict:
    """Mode coverage of 2-D samples on a known mixture (ring / grid benchmarks).

    samples: (N, 2), centers: (K, 2), std: the mixture's standard deviation. Each sample is
    assigned to its nearest center; it is *high quality* when within 3·std of it. Returns

    * ``counts``: (K,) int64, high-quality samples per mode;
    * ``modes``: number of modes with at least ``min_count`` high-quality samples ("captured");
    * ``high_quality``: fraction of all N samples that are high quality;
    * ``reverse_kl``: KL(p̂ ‖ U) = Σ_k p̂_k·log(K·p̂_k), where p̂ = counts / counts.sum() is the
      generator's histogram over modes and U the uniform data histogram. It is "reverse" because
      the generator's distribution comes first (maximum likelihood minimises KL(data ‖ model)).
      Empty modes contribute 0 (0·log 0 = 0): missing modes are punished only through the mass
      piled on the others. 0 = perfectly balanced; log K = everything in one mode; +inf when no
      sample is high quality (there is no histogram to compare).
    """
    x = torch.as_tensor(samples, dtype=torch.float64).reshape(-1, 2)
    c = torch.as_tensor(centers, dtype=torch.float64).reshape(-1, 2)
    if len(x) == 0:
        raise ValueError("mode_stats needs at least one sample")
    if not torch.isfinite(x).all():
        raise ValueError("samples contain NaN or inf (did training diverge?)")
    dist, nearest = torch.cdist(x, c).min(dim=1)
    good = dist <= 3 * std
    counts = torch.bincount(nearest[good], minlength=len(c))
    out = _histogram_stats(counts, min_count)
    out["high_quality"] = float(good.double().mean())
    return out


def mode_stats_labels(mode_ids, n_modes: int, min_count: int = 1) -> dict:
    """Mode coverage from predicted mode ids (e.g. stacked digits: 100·a + 10·b + c, 1,000 modes).

    mode_ids: (N,) ints in [0, n_modes). Returns ``counts`` (n_modes,), ``modes`` (modes with at
    least ``min_count`` samples) and ``reverse_kl`` = KL(p_gen ‖ uniform) with the same
    conventions as ``mode_stats`` (empty modes contribute 0; +inf for no samples).
    """
    ids = torch.as_tensor(mode_ids, dtype=torch.int64).reshape(-1)
    if len(ids) and (ids.min() < 0 or ids.max() >= n_modes):
        raise ValueError(f"mode ids must lie in [0, {n_modes})")
    return _histogram_stats(torch.bincount(ids, minlength=n_modes), min_count)


# ============================================================================ image wrappers
def _features(fn, x) -> torch.Tensor:
    with torch.no_grad():
        return fn(torch.as_tensor(x)).double().cpu()


def fid(fake, real, features) -> float:
    """FID of image sets through ``features`` (a function images → (N, d))."""
    return fid_from_features(_features(features, fake), _features(features, real))


def kid(fake, real, features, **kw) -> tuple[float, float]:
    """KID (mean, std) of image sets through ``features``; ``kw`` go to kid_from_features."""
    return kid_from_features(_features(features, fake), _features(features, real), **kw)


def _real_digits(real):
    if real is None:
        from genlib.data import digits
        real = digits("train", (-1.0, 1.0))[0]
    return real


def digits_fid(fake, real=None) -> float:
    """FID of digit images fake: (N,1,8,8) in [-1,1] against ``real`` (default: the 1,500 train
    digits) through the shipped CNN's 64-d features. Compare values only at equal N."""
    from genlib.features import digits_features
    return fid(fake, _real_digits(real), digits_features)


def digits_kid(fake, real=None, **kw) -> tuple[float, float]:
    """KID (mean, std) of digit images in [-1,1] against ``real`` (default: train digits)."""
    from genlib.features import digits_features
    return kid(fake, _real_digits(real), digits_features, **kw)


def digits_precision_recall(fake, real=None, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of digit images in [-1,1] in the shipped CNN's feature space."""
    from genlib.features import digits_features
    return precision_recall(_features(digits_features, _real_digits(real)),
                            _features(digits_features, fake), k)


def digits_density_coverage(fake, real=None, k: int = 5) -> tuple[float, float]:
    """(density, coverage) of digit images in [-1,1] in the shipped CNN's feature space."""
    from genlib.features import digits_features
    return density_coverage(_features(digits_features, _real_digits(real)),
                            _features(digits_features, fake), k)


def digits_inception_score(fake, splits: int = 10) -> tuple[float, float]:
    """The Inception Score of digit images in [-1,1], with the shipped digits CNN as classifier
    (so the maximum is 10). It never looks at real digits."""
    from genlib.features import digits_probs
    return inception_score(digits_probs(torch.as_tensor(fake)), splits)


def stacked_fid(fake, real) -> float:
    """FID of stacked-digit images (N,3,8,8) in [-1,1] on the per-channel features (192-d)."""
    from genlib.features import stacked_features
    return fid(fake, real, stacked_features)


def stacked_mode_stats(fake, min_count: int = 1) -> dict:
    """Stacked-digits protocol: classify each channel of fake: (N,3,8,8) in [-1,1] with the
    shipped CNN, mode id = 100·a + 10·b + c; → ``mode_stats_labels`` over 1,000 modes."""
    from genlib.features import stacked_labels
    y = stacked_labels(torch.as_tensor(fake))
    return mode_stats_labels(100 * y[:, 0] + 10 * y[:, 1] + y[:, 2], 1000, min_count)
