"""Checks for chapter 06 (metrics): PSNR, SSIM and the Fréchet distance.

Each case compares the learner's function with genlib's reference on inputs chosen so that the
usual mistakes give clearly different numbers; when a result is wrong, ``_diagnose`` recomputes
the known wrong variants and names the one that matches.
"""
import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from genlib import metrics
from genlib.exercises import CheckFailure, expect_tensor, register


def _images(n, c, h, w, lo, hi, seed, noise=0.15):
    g = torch.Generator().manual_seed(seed)
    x = lo + (hi - lo) * torch.rand(n, c, h, w, generator=g)
    # y = a blurred, noisy x: correlated with x, as in a restoration task
    y = 0.5 * x + 0.5 * (lo + hi) / 2 + noise * (hi - lo) * torch.randn(n, c, h, w, generator=g)
    return x, y.clamp(lo, hi)


def _diagnose(out, expected, variants, what, default_hint, rtol=1e-4, atol=1e-6):
    """Fail with the message of the first wrong variant ``out`` matches, else a generic one."""
    out = torch.as_tensor(out, dtype=torch.float64).cpu()
    expected = torch.as_tensor(expected, dtype=torch.float64)
    if out.shape != expected.shape:
        raise CheckFailure(f"{what} has shape {tuple(out.shape)}, expected {tuple(expected.shape)}", generic=True)
    if torch.allclose(out, expected, rtol=rtol, atol=atol, equal_nan=False):
        return
    if not torch.isfinite(out).all():
        raise CheckFailure(f"{what} contains NaN or inf. {default_hint}", generic=True)
    loose = {"rtol": max(rtol, 1e-3), "atol": max(atol, 1e-4)}
    for wrong, message in variants:
        wrong = torch.as_tensor(wrong, dtype=torch.float64)
        if wrong.shape == expected.shape and torch.allclose(wrong, expected, rtol=rtol, atol=atol):
            continue  # on this input the mistake would pass: it cannot be the cause
        # looser than the pass test: a float32 version of a wrong variant still gets its name
        if wrong.shape == out.shape and torch.allclose(out, wrong, **loose):
            raise CheckFailure(message)
    err = (out - expected).abs().max().item()
    raise CheckFailure(f"{what} differs from the reference (max error {err:.3g}). {default_hint}", generic=True)


# ============================================================================ PSNR
spec = register("metrics.psnr", metrics.psnr,
                "PSNR per image in dB: 10·log10(data_range² / MSE), x, y: (N, C, H, W) → (N,)")


def _psnr_variants(x, y, L):
    x, y = x.double(), y.double()
    mse = (x - y).pow(2).flatten(1).mean(1)
    peak = torch.maximum(x.flatten(1).max(1).values, y.flatten(1).max(1).values)
    return [
        (10 * torch.log10(1 / mse), "you ignored data_range: the peak is the span of the pixel "
         "scale (2 for [-1, 1], 255 for bytes), so PSNR = 10·log10(data_range² / MSE)"),
        (10 * torch.log10(L / mse), "data_range must be squared: PSNR = 10·log10(data_range² / "
         "MSE) (or 20·log10(data_range) − 10·log10(MSE))"),
        (20 * torch.log10(L ** 2 / mse), "the factor is 10 for a ratio of powers: 10·log10(data_range²"
         " / MSE); 20 goes with amplitudes, 20·log10(data_range / √MSE)"),
        (10 * torch.log(L ** 2 / mse), "decibels use log10, not the natural log"),
        (10 * torch.log10(L ** 2 / mse.sqrt()), "divide by the mean *squared* error, not its square "
         "root (RMSE)"),
        (10 * torch.log10(L ** 2 / (x - y).pow(2).flatten(1).sum(1)), "use the *mean* squared "
         "error over pixels, not the sum"),
        (10 * torch.log10(peak ** 2 / mse), "the peak is data_range, the span of the pixel scale, "
         "not the brightest pixel of the image"),
        (10 * torch.log10(x.flatten(1).max(1).values ** 2 / mse), "you used each image's maximum as L: "
         "PSNR's L is the data_range argument, the span the pixels could take, not the brightest pixel"),
        (10 * torch.log10(y.flatten(1).max(1).values ** 2 / mse), "you used each image's maximum as L: "
         "PSNR's L is the data_range argument, the span the pixels could take, not the brightest pixel"),
        (10 * torch.log10((x.flatten(1).max(1).values - x.flatten(1).min(1).values) ** 2 / mse),
         "the peak is data_range, the span of the pixel *scale* (1 for [0, 1], 2 for [-1, 1], 255 for "
         "bytes), not the span of values this image happens to contain (max − min)"),
    ]


def _psnr_case(fn, lo, hi, seed):
    x, y = _images(3, 2, 6, 5, lo, hi, seed)
    L = hi - lo
    out = fn(x.clone(), y.clone(), data_range=L)
    expect_tensor(out, (3,), "psnr(x, y) for 3 images")
    _diagnose(out, metrics.psnr(x, y, L), _psnr_variants(x, y, L), "psnr(x, y)",
              "PSNR = 10·log10(data_range² / MSE) with the MSE of each image over all its pixels")


@spec.case("one value per image, shape (N,)")
def _(fn):
    x, y = _images(4, 3, 5, 5, 0.0, 1.0, 0)
    out = fn(x, y, data_range=1.0)
    if torch.is_tensor(out) and out.ndim == 0:
        raise CheckFailure("you returned one number for the whole batch: average the squared "
                           "error over each image's pixels only, e.g. .flatten(1).mean(1)")
    expect_tensor(out, (4,), "psnr(x, y) for 4 images")


@spec.case("[0, 1] images with data_range=1")
def _(fn):
    _psnr_case(fn, 0.0, 1.0, 1)


@spec.case("[-1, 1] images with data_range=2")
def _(fn):
    _psnr_case(fn, -1.0, 1.0, 2)


@spec.case("byte images with data_range=255")
def _(fn):
    _psnr_case(fn, 0.0, 255.0, 3)


@spec.case("as chapter 06 uses it: 297 digits in [-1, 1], float32, data_range 2 vs 1")
def _(fn):
    from genlib import data

    x, _ = data.digits("test", (-1, 1))
    noisy = x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    right, wrong = fn(noisy.clone(), x.clone(), data_range=2.0), fn(noisy.clone(), x.clone(), data_range=1.0)
    expect_tensor(right, (len(x),), "psnr of the 297 test digits")
    with warnings.catch_warnings():  # noisy digits leave [-1, 1], as in the chapter: genlib warns
        warnings.simplefilter("ignore")
        ref = metrics.psnr(noisy, x, 2.0)
    _diagnose(right, ref, _psnr_variants(noisy, x, 2.0), "psnr(noisy digits, digits)",
              "PSNR = 10·log10(data_range² / MSE) per image", rtol=1e-4, atol=1e-4)
    shift = (right.double() - torch.as_tensor(wrong).double()).mean().item()
    if abs(shift - 20 * math.log10(2)) > 1e-3:
        raise CheckFailure(f"doubling data_range moved your PSNR by {shift:.4f} dB; it must move it by "
                           f"20·log10(2) = {20 * math.log10(2):.4f} dB (the chapter asserts this): the peak "
                           "enters squared, 10·log10(data_range² / MSE)")


# ============================================================================ SSIM
spec = register("metrics.ssim", metrics.ssim,
                "SSIM per image (Wang et al. 2004): 11-tap Gaussian window σ=1.5, K1=0.01, K2=0.03, "
                "population statistics, valid region, mean over channels → (N,)")


def _ssim_variant(x, y, L, window="gauss", normalise=True, cov_factor=1.0, pad=0,
                  c_from_range=True, square_c=True, per_channel=True):
    """The reference computation with one knob turned the wrong way."""
    x, y = x.double(), y.double()
    if not per_channel:
        x, y = x.mean(1, keepdim=True), y.mean(1, keepdim=True)
    if window == "gauss":
        g = metrics.gaussian_window(11, 1.5)
        if not normalise:
            g = g / g.max()  # taps exp(-k²/2σ²) without dividing by their sum
    else:
        g = torch.full((11,), 1 / 11.0, dtype=torch.float64)

    def filt(t):
        return metrics.filter_valid(F.pad(t, (pad,) * 4) if pad else t, g)

    mx, my = filt(x), filt(y)
    vx, vy, cov = filt(x * x) - mx ** 2, filt(y * y) - my ** 2, filt(x * y) - mx * my
    vx, vy, cov = vx * cov_factor, vy * cov_factor, cov * cov_factor
    Lc = L if c_from_range else 1.0
    c1 = (0.01 * Lc) ** 2 if square_c else 0.01 * Lc
    c2 = (0.03 * Lc) ** 2 if square_c else 0.03 * Lc
    s = (2 * mx * my + c1) * (2 * cov + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3))


def _ssim_variants(x, y, L):
    return [
        (_ssim_variant(x, y, L, normalise=False), "your window does not sum to 1: divide the "
         "Gaussian taps by their sum, otherwise the local means are scaled up and SSIM is wrong"),
        (_ssim_variant(x, y, L, window="box"), "Wang et al. 2004 use an 11×11 Gaussian window "
         "with σ = 1.5, not a uniform (box) window"),
        (_ssim_variant(x, y, L, cov_factor=121 / 120), "you used the sample covariance (× n/(n−1)):"
         " SSIM's window statistics are population moments, E[x²] − E[x]² with the window weights"),
        (_ssim_variant(x, y, L, pad=5), "you zero-padded the image: compute the SSIM map only "
         "where the whole window fits (no padding), then average it"),
        (_ssim_variant(x, y, L, c_from_range=False), "C1 and C2 ignore data_range: use "
         "C1 = (0.01·data_range)², C2 = (0.03·data_range)²"),
        (_ssim_variant(x, y, L, square_c=False), "C1 and C2 must be squared: C1 = (K1·L)², "
         "C2 = (K2·L)²"),
        (_ssim_variant(x, y, L, per_channel=False), "compute SSIM per channel and average the "
         "results; do not average the channels into one grey image first"),
    ]


def _ssim_case(fn, lo, hi, seed, c=2, L=None):
    x, y = _images(2, c, 16, 14, lo, hi, seed)
    L = hi - lo if L is None else L
    out = fn(x.clone(), y.clone(), data_range=L)
    expect_tensor(out, (2,), "ssim(x, y) for 2 images")
    _diagnose(out, metrics.ssim(x, y, L), _ssim_variants(x, y, L), "ssim(x, y)",
              "follow Wang et al. 2004: Gaussian 11×11 window (σ = 1.5, weights sum to 1), "
              "population moments, C1 = (0.01·L)², C2 = (0.03·L)², valid region only",
              rtol=1e-4, atol=1e-5)


@spec.case("one value per image, shape (N,)")
def _(fn):
    x, y = _images(3, 1, 12, 12, 0.0, 1.0, 0)
    out = fn(x, y, data_range=1.0)
    if torch.is_tensor(out) and out.ndim == 0:
        raise CheckFailure("you returned one number for the batch: average the SSIM map over "
                           "each image (and its channels) separately → shape (N,)")
    expect_tensor(out, (3,), "ssim(x, y) for 3 images")


@spec.case("SSIM(x, x) = 1")
def _(fn):
    x, _ = _images(2, 1, 12, 12, 0.0, 1.0, 1)
    out = fn(x.clone(), x.clone(), data_range=1.0)
    expect_tensor(out, (2,), "ssim(x, x)")
    if not torch.allclose(out.double(), torch.ones(2, dtype=torch.float64), atol=1e-5):
        raise CheckFailure(f"an image compared with itself must score exactly 1, got "
                           f"{[round(v, 4) for v in out.tolist()]}: check the formula's numerator "
                           "(2μxμy + C1)(2σxy + C2) and denominator (μx² + μy² + C1)(σx² + σy² + C2)")


@spec.case("[0, 1] images with data_range=1")
def _(fn):
    _ssim_case(fn, 0.0, 1.0, 2, c=1)


@spec.case("[-1, 1] colour images with data_range=2")
def _(fn):
    _ssim_case(fn, -1.0, 1.0, 3, c=3)


@spec.case("low-contrast images, where C2 matters")
def _(fn):
    # local variances ≈ C2 here, so population vs sample moments (× 121/120) become visible
    _ssim_case(fn, 0.45, 0.55, 5, c=1, L=1.0)


@spec.case("as chapter 06 uses it: 64 float32 shape images in [0, 1], blurred and noised")
def _(fn):
    from genlib import data

    shp = data.shapes(8, seed=1, value_range=(0, 1)).images
    g = torch.Generator().manual_seed(2)
    noised = (shp + 0.1 * torch.randn(shp.shape, generator=g)).clamp(0, 1)
    out = fn(noised.clone(), shp.clone(), data_range=1.0)
    expect_tensor(out, (len(shp),), "ssim on the chapter's shape images")
    _diagnose(out, metrics.ssim(noised, shp, 1.0), _ssim_variants(noised, shp, 1.0), "ssim(noised, shapes)",
              "follow Wang et al. 2004 (Gaussian 11×11 window σ = 1.5, population moments, valid region)",
              rtol=1e-4, atol=1e-5)


# ============================================================================ Fréchet distance
spec = register("metrics.frechet_distance", metrics.frechet_distance,
                "‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2·tr √(Σ1^½ Σ2 Σ1^½), float64, real, ≥ 0")


def _gaussians(d, n1, n2, seed, shift=0.3):
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) / math.sqrt(d)
    a = rng.standard_normal((n1, d)) @ mix
    b = rng.standard_normal((n2, d)) @ (mix + 0.3 * np.eye(d)) + shift
    return (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def _as_real(out, what):
    if torch.is_tensor(out):
        if out.numel() != 1:
            raise CheckFailure(f"{what} should be one number, got a tensor of shape {tuple(out.shape)}")
        if out.is_complex():
            raise CheckFailure(f"{what} is complex ({out.item()}): sqrtm of the non-symmetric "
                               "Σ1·Σ2 can return complex round-off; use the symmetric form "
                               "Σ1^½ Σ2 Σ1^½ with eigh (real eigenvalues), clamped at 0")
        return float(out.item())
    arr = np.asarray(out)
    if arr.size != 1:
        raise CheckFailure(f"{what} should be one number, got an array of shape {arr.shape}")
    if np.iscomplexobj(arr):
        raise CheckFailure(f"{what} is complex ({arr.item()}): sqrtm of the non-symmetric Σ1·Σ2 "
                           "can return complex round-off; use the symmetric form Σ1^½ Σ2 Σ1^½ "
                           "with eigh (real eigenvalues), clamped at 0")
    return float(arr.item())


def _fid_variants(mu1, s1, mu2, s2):
    base = np.trace(s1) + np.trace(s2)
    sq = ((mu1 - mu2) ** 2).sum()
    tr_sqrt = metrics.trace_sqrt_product(s1, s2)
    fd = metrics.frechet_distance(mu1, s1, mu2, s2)
    return [
        (math.sqrt(fd) if fd > 1e-3 else float("nan"), "you returned the Fréchet distance itself (a final square root): FID is "
         "the *squared* distance ‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2·tr √(Σ1^½ Σ2 Σ1^½); drop the outer sqrt"),
        (sq + base, "you forgot the cross term: subtract 2·tr √(Σ1^½ Σ2 Σ1^½)"),
        (sq + base - tr_sqrt, "the cross term has a factor 2: − 2·tr √(Σ1^½ Σ2 Σ1^½)"),
        (sq + base - 2 * np.trace(s1 @ s2), "the cross term needs a matrix square root: "
         "tr √(Σ1^½ Σ2 Σ1^½), not tr(Σ1 Σ2)"),
        (sq + base - 2 * math.sqrt(max(np.trace(s1 @ s2), 0)), "the square root is of the matrix "
         "Σ1^½ Σ2 Σ1^½ (sum the square roots of its eigenvalues), not of its trace"),
        (math.sqrt(sq) + base - 2 * tr_sqrt, "the mean term is the *squared* distance ‖μ1 − μ2‖²"),
        (sq + base - 2 * np.trace(_sym_sqrt(s1) @ _sym_sqrt(s2)), "tr(Σ1^½ Σ2^½) is the cross term "
         "only when Σ1 and Σ2 commute (e.g. both diagonal); in general it is tr √(Σ1^½ Σ2 Σ1^½)"),
        (sq + base - 2 * np.sqrt(np.clip(np.linalg.eigvalsh(s1 @ s2), 0, None)).sum(), "eigvalsh "
         "assumes a symmetric matrix and reads only one triangle, but Σ1·Σ2 is not symmetric: take "
         "the eigenvalues of Σ1^½ Σ2 Σ1^½ instead"),
    ]


def _sym_sqrt(s):
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _fid_case(fn, mu1, s1, mu2, s2, what):
    args = [a.copy() for a in (mu1, s1, mu2, s2)]
    out = _as_real(fn(*args), what)
    _diagnose(torch.tensor(out), metrics.frechet_distance(mu1, s1, mu2, s2),
              [(torch.tensor(float(v)), m) for v, m in _fid_variants(mu1, s1, mu2, s2)], what,
              "√ here is a matrix square root (e.g. from eigh: V·diag(√λ)·Vᵀ), not elementwise "
              "np.sqrt; compute in float64", rtol=1e-6, atol=1e-8)


@spec.case("N(0, I) vs N(1, I) in d dimensions is d")
def _(fn):
    d = 5
    out = _as_real(fn(np.zeros(d), np.eye(d), np.ones(d), np.eye(d)), "frechet_distance(N(0,I), N(1,I))")
    if abs(out - math.sqrt(d)) < 1e-6:
        # here √FID and an unsquared mean term give the same number: name both
        raise CheckFailure(f"got √{d} = {out:.4f} instead of {d}: either the result went through a final "
                           "square root (FID is the *squared* distance) or the mean term is ‖μ1 − μ2‖ "
                           "instead of ‖μ1 − μ2‖²")
    _fid_case(fn, np.zeros(d), np.eye(d), np.ones(d), np.eye(d), "frechet_distance(N(0,I), N(1,I))")


@spec.case("identical Gaussians are at distance 0")
def _(fn):
    mu, s, _, _ = _gaussians(6, 200, 200, 0)
    _fid_case(fn, mu, s, mu, s, "frechet_distance(g, g)")


@spec.case("random full covariances")
def _(fn):
    _fid_case(fn, *_gaussians(8, 300, 250, 1), "frechet_distance on random Gaussians")


@spec.case("singular covariances (fewer samples than dimensions)")
def _(fn):
    mu1, s1, mu2, s2 = _gaussians(20, 8, 10, 2)  # rank 7 and 9 in 20 dimensions
    try:
        _fid_case(fn, mu1, s1, mu2, s2, "frechet_distance with singular covariances")
    except CheckFailure as e:
        if "NaN" in str(e):
            raise CheckFailure(str(e) + " — with n < d the covariances are singular: some "
                               "eigenvalues are 0 up to round-off (even −1e-17); clamp them at 0 "
                               "before the square root") from None
        raise


@spec.case("identical singular Gaussians are at distance 0, not below")
def _(fn):
    # 10 samples in 64 dimensions: Σ has rank 9, and 55 eigenvalues are 0 up to round-off (±1e-16).
    # Each √(1e-16) ≈ 1e-8 that survives into the cross term makes the result negative (≈ −1e-6 to
    # −1e-5): sqrtm(Σ1·Σ2).real, and the eigenvalue route clamped only at 0, both land here.
    mu, s, _, _ = _gaussians(64, 10, 10, 0)
    out = _as_real(fn(mu.copy(), s.copy(), mu.copy(), s.copy()), "frechet_distance(g, g), rank 9 in 64-d")
    if not math.isfinite(out):
        raise CheckFailure(f"frechet_distance(g, g) is {out} for a singular Σ: clamp round-off "
                           "eigenvalues (even −1e-17) at 0 before the square root")
    if out < -1e-4:
        raise CheckFailure(f"a squared distance of {out:.3g} < 0 for two identical Gaussians: far more than "
                           "float64 round-off (~1e-6 here) — compute in float64 (no .float() / float32 arrays), "
                           "with the symmetric form Σ1^½ Σ2 Σ1^½ and eigenvalues below d·ε·λ_max set to 0")
    if out < -1e-9:
        raise CheckFailure(f"a squared distance of {out:.3g} < 0 for two identical Gaussians with singular Σ "
                           "(n < d): round-off eigenvalues of size ~1e-16 in the null space each add √1e-16 "
                           "≈ 1e-8 to the cross term (sqrtm(Σ1·Σ2) or clamping only at 0 keeps them). "
                           "Set eigenvalues below d·ε·λ_max to 0 (ε = np.finfo(float).eps) before the "
                           "square root, and clip the result at 0")
    if abs(out) > 1e-8:
        raise CheckFailure(f"frechet_distance(g, g) = {out:.3g}, expected 0 for identical Gaussians", generic=True)


@spec.case("singular Gaussians a small distance apart (round-off not in the cross term)")
def _(fn):
    # identical singular Σ (rank 9 in 64-d) and means 0.03 apart: FID = 64·0.03² = 0.0576 exactly.
    # Round-off eigenvalues kept by sqrtm(Σ1·Σ2) or by a clamp at 0 add ~1e-6 to the cross term, a
    # relative error of ~1e-5, and clipping the result at 0 no longer hides it
    mu, s, _, _ = _gaussians(64, 10, 10, 0)
    what = "frechet_distance(g, g shifted by 0.03), rank 9 in 64-d"
    out = _as_real(fn(mu.copy(), s.copy(), mu + 0.03, s.copy()), what)
    ref = metrics.frechet_distance(mu, s, mu + 0.03, s)
    if math.isfinite(out) and ref - 1e-4 < out < ref - (1e-6 * ref + 1e-8):
        raise CheckFailure(f"{what} = {out:.9f}, expected {ref:.9f}: {ref - out:.2g} too small. Round-off "
                           "eigenvalues of size ~1e-16 in the null space each add √1e-16 ≈ 1e-8 to the cross "
                           "term (sqrtm(Σ1·Σ2), or eigenvalues clamped only at 0, keep them); clipping the "
                           "result at 0 hides this only when the true distance is 0. Set eigenvalues below "
                           "d·ε·λ_max to 0 (ε = np.finfo(float).eps) before the square root")
    _fid_case(fn, mu, s, mu + 0.03, s.copy(), what)


@spec.case("does not modify its inputs", inputs=True)
def _(fn):
    args = _gaussians(4, 50, 50, 3)
    before = [a.copy() for a in args]
    fn(*args)
    if not all(np.array_equal(a, b) for a, b in zip(args, before)):
        raise CheckFailure("your function changed its inputs in place (e.g. sigma += eps·I); "
                           "work on copies")
