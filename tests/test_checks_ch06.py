"""Gallery for chapter 06's checks: correct PSNR/SSIM/Fréchet implementations pass, the usual
mistakes are each rejected in a named case with a message that names the mistake."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from genlib import metrics
from genlib.exercises import assert_first_failure

@pytest.fixture
def rejects():
    """Gallery assertion: the named case is the FIRST message the learner reads (one diagnosis per
    mistake), and it contains the fragment."""
    return assert_first_failure


# ----------------------------------------------------------------------------- PSNR
def psnr_ok(x, y, data_range=1.0):
    mse = ((x - y) ** 2).mean(dim=(1, 2, 3))
    return 20 * torch.log10(data_range / mse.sqrt())  # amplitude form: also correct


def _mse(x, y):
    return ((x - y) ** 2).flatten(1).mean(1)


PSNR_GALLERY = [
    ("batch mean", lambda x, y, data_range=1.0: 10 * torch.log10(data_range ** 2 / ((x - y) ** 2).mean()),
     "one value per image, shape (N,)", "whole batch"),
    ("ignores data_range", lambda x, y, data_range=1.0: 10 * torch.log10(1 / _mse(x, y)),
     "[-1, 1] images with data_range=2", "ignored data_range"),
    ("range not squared", lambda x, y, data_range=1.0: 10 * torch.log10(data_range / _mse(x, y)),
     "[-1, 1] images with data_range=2", "squared"),
    ("20 with a power ratio", lambda x, y, data_range=1.0: 20 * torch.log10(data_range ** 2 / _mse(x, y)),
     "[0, 1] images with data_range=1", "factor is 10"),
    ("natural log", lambda x, y, data_range=1.0: 10 * torch.log(data_range ** 2 / _mse(x, y)),
     "[0, 1] images with data_range=1", "log10"),
    ("rmse", lambda x, y, data_range=1.0: 10 * torch.log10(data_range ** 2 / _mse(x, y).sqrt()),
     "[0, 1] images with data_range=1", "root"),
    ("sum of squares", lambda x, y, data_range=1.0:
        10 * torch.log10(data_range ** 2 / ((x - y) ** 2).flatten(1).sum(1)),
     "[0, 1] images with data_range=1", "mean"),
    ("image max as peak", lambda x, y, data_range=1.0:
        10 * torch.log10(torch.maximum(x.flatten(1).max(1).values, y.flatten(1).max(1).values) ** 2
                         / _mse(x, y)),
     "[0, 1] images with data_range=1", "brightest pixel"),
]


def test_psnr_reference_and_other_forms_accepted(accepts):
    accepts("metrics.psnr", metrics.psnr)
    accepts("metrics.psnr", psnr_ok)


@pytest.mark.parametrize("label,fn,case,fragment", PSNR_GALLERY, ids=[g[0] for g in PSNR_GALLERY])
def test_psnr_gallery_rejected(rejects, label, fn, case, fragment):
    rejects("metrics.psnr", fn, case, fragment)


# ----------------------------------------------------------------------------- SSIM
def make_ssim(normalise=True, box=False, sample_cov=False, pad=0, c_range=True, c_squared=True,
              mean_channels=False, global_stats=False):
    """A learner-style SSIM with one mistake switched on."""
    def ssim(x, y, data_range=1.0):
        if mean_channels:
            x, y = x.mean(1, keepdim=True), y.mean(1, keepdim=True)
        c = x.shape[1]
        if box:
            w = torch.ones(11) / 11
        else:
            w = torch.exp(-(torch.arange(11.0) - 5) ** 2 / (2 * 1.5 ** 2))
            if normalise:
                w = w / w.sum()
        k = torch.outer(w, w).expand(c, 1, 11, 11).to(x.dtype)

        def filt(t):
            if global_stats:
                return t.mean(dim=(2, 3), keepdim=True)
            return F.conv2d(F.pad(t, (pad,) * 4) if pad else t, k, groups=c)

        mx, my = filt(x), filt(y)
        vx, vy, cxy = filt(x * x) - mx ** 2, filt(y * y) - my ** 2, filt(x * y) - mx * my
        if sample_cov:
            vx, vy, cxy = (t * 121 / 120 for t in (vx, vy, cxy))
        L = data_range if c_range else 1.0
        c1, c2 = ((0.01 * L) ** 2, (0.03 * L) ** 2) if c_squared else (0.01 * L, 0.03 * L)
        s = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
        return s.mean(dim=(1, 2, 3))
    return ssim


def ssim_batch_scalar(x, y, data_range=1.0):
    return metrics.ssim(x, y, data_range).mean()


SSIM_GALLERY = [
    ("window not normalised", make_ssim(normalise=False), "[0, 1] images with data_range=1",
     "sum to 1"),
    ("box window", make_ssim(box=True), "[0, 1] images with data_range=1", "gaussian"),
    ("sample covariance", make_ssim(sample_cov=True), "low-contrast images, where C2 matters",
     "sample covariance"),
    ("zero padding", make_ssim(pad=5), "[0, 1] images with data_range=1", "padd"),
    ("constants ignore data_range", make_ssim(c_range=False), "[-1, 1] colour images with data_range=2",
     "data_range"),
    ("constants not squared", make_ssim(c_squared=False), "[0, 1] images with data_range=1",
     "squared"),
    ("channels averaged first", make_ssim(mean_channels=True),
     "[-1, 1] colour images with data_range=2", "per channel"),
    ("global statistics", make_ssim(global_stats=True), "[0, 1] images with data_range=1",
     "differs from the reference"),
    ("batch scalar", ssim_batch_scalar, "one value per image, shape (N,)", "one number"),
]


def test_ssim_reference_and_learner_form_accepted(accepts):
    accepts("metrics.ssim", metrics.ssim)
    accepts("metrics.ssim", make_ssim())


@pytest.mark.parametrize("label,fn,case,fragment", SSIM_GALLERY, ids=[g[0] for g in SSIM_GALLERY])
def test_ssim_gallery_rejected(rejects, label, fn, case, fragment):
    rejects("metrics.ssim", fn, case, fragment)


# ----------------------------------------------------------------------------- Fréchet distance
def _drop_roundoff(lam):
    """Eigenvalues below d·ε·max are round-off of a zero eigenvalue: set them to 0."""
    lam = np.asarray(lam)
    return np.where(lam > len(lam) * np.finfo(float).eps * np.abs(lam).max(), lam, 0.0)


def fd_eigh(mu1, s1, mu2, s2):
    """A correct learner version: symmetric form with eigh, round-off eigenvalues set to 0."""
    w, v = np.linalg.eigh(s1)
    r = (v * np.sqrt(_drop_roundoff(w))) @ v.T
    lam = np.linalg.eigvalsh(r @ s2 @ r)
    return max(0.0, float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2)
                          - 2 * np.sqrt(_drop_roundoff(lam)).sum()))


def fd_eigh_clip_zero_only(mu1, s1, mu2, s2):
    """The symmetric form with eigenvalues clamped only at 0: √(1e-16) round-off survives (negative FID)."""
    w, v = np.linalg.eigh(s1)
    r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    lam = np.linalg.eigvalsh(r @ s2 @ r)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2)
                 - 2 * np.sqrt(np.clip(lam, 0, None)).sum())


def fd_torch(mu1, s1, mu2, s2):
    """Also correct: torch float64, with a rank tolerance and the result clipped at 0."""
    mu1, s1, mu2, s2 = (torch.as_tensor(a, dtype=torch.float64) for a in (mu1, s1, mu2, s2))
    w, v = torch.linalg.eigh(s1)
    r = (v * w.clamp(min=0).sqrt()) @ v.T
    lam = torch.linalg.eigvalsh(r @ s2 @ r)
    lam = torch.where(lam > len(lam) * torch.finfo(lam.dtype).eps * lam.abs().max(), lam, torch.zeros_like(lam))
    return (((mu1 - mu2) ** 2).sum() + s1.trace() + s2.trace() - 2 * lam.sqrt().sum()).clamp(min=0)


def fd_sqrtm_float(mu1, s1, mu2, s2):
    """The pytorch-fid pattern: sqrtm of the non-symmetric product, float() drops the imaginary part."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def fd_sqrtm_real(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def fd_sqrtm_real_clipped(mu1, s1, mu2, s2):
    """sqrtm + .real, clipped at 0: accurate on well-conditioned inputs, and clipping hides the round-off
    when the true distance is 0; on singular Σ a small distance apart it is ~1e-4 (relative) too small."""
    return max(0.0, fd_sqrtm_real(mu1, s1, mu2, s2))


def fd_clip_result_only(mu1, s1, mu2, s2):
    """Learner A's lenient form: symmetric form, eigenvalues clamped at 0 (no rank tolerance), the
    result clipped at 0 — step 2's d·ε·λ_max tolerance skipped."""
    return max(0.0, fd_eigh_clip_zero_only(mu1, s1, mu2, s2))


def fd_eigvals_product(mu1, s1, mu2, s2):
    """torchmetrics' route: eigenvalues of the non-symmetric product, √, real part."""
    lam = torch.linalg.eigvals(torch.as_tensor(s1 @ s2))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * lam.sqrt().real.sum())


def fd_sqrt_of_fid(mu1, s1, mu2, s2):
    return math.sqrt(metrics.frechet_distance(mu1, s1, mu2, s2))


def _parts(mu1, s1, mu2, s2):
    return ((mu1 - mu2) ** 2).sum(), np.trace(s1) + np.trace(s2), fd_eigh


def fd_no_cross(mu1, s1, mu2, s2):
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2))


def fd_cross_no_two(mu1, s1, mu2, s2):
    sq, tr, _ = _parts(mu1, s1, mu2, s2)
    return fd_eigh(mu1, s1, mu2, s2) / 2 + (sq + tr) / 2  # = sq + tr − tr√(…)


def fd_no_sqrt(mu1, s1, mu2, s2):
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(s1 @ s2))


def fd_unsquared_mean(mu1, s1, mu2, s2):
    return fd_eigh(mu1, s1, mu2, s2) - ((mu1 - mu2) ** 2).sum() + np.linalg.norm(mu1 - mu2)


def fd_elementwise_sqrt(mu1, s1, mu2, s2):
    r = np.sqrt(np.abs(s1))  # elementwise "square root" of a matrix
    lam = np.linalg.eigvalsh(r @ s2 @ r)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2)
                 - 2 * np.sqrt(np.clip(lam, 0, None)).sum())


def fd_sqrtm_complex(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean) + 0j


def fd_no_clamp(mu1, s1, mu2, s2):
    w, v = np.linalg.eigh(s1)
    with np.errstate(invalid="ignore"):
        r = (v * np.sqrt(w)) @ v.T  # NaN for the −1e-17 eigenvalues of a singular Σ1
        lam = np.linalg.eigvalsh(np.nan_to_num(r, nan=np.nan) @ s2 @ r) if np.isfinite(r).all() \
            else np.full(len(w), np.nan)
        return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(lam).sum())


def _root(s):
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def fd_commuting_formula(mu1, s1, mu2, s2):
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2)
                 - 2 * np.trace(_root(s1) @ _root(s2)))


def fd_eigvalsh_of_product(mu1, s1, mu2, s2):
    lam = np.linalg.eigvalsh(s1 @ s2)  # reads one triangle of a non-symmetric matrix
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2)
                 - 2 * np.sqrt(np.clip(lam, 0, None)).sum())


def fd_float32(mu1, s1, mu2, s2):
    mu1, s1, mu2, s2 = (a.astype(np.float32) for a in (mu1, s1, mu2, s2))
    lam = np.linalg.eigvalsh(_root(s1) @ s2 @ _root(s1))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2)
                 - 2 * np.sqrt(np.clip(lam, 0, None)).sum())


def fd_inplace(mu1, s1, mu2, s2):
    s1 += 1e-6 * np.eye(len(s1))
    return fd_eigh(mu1, s1, mu2, s2)


FD_GALLERY = [
    ("no cross term", fd_no_cross, "N(0, I) vs N(1, I) in d dimensions is d", "forgot the cross term"),
    ("cross term without 2", fd_cross_no_two, "N(0, I) vs N(1, I) in d dimensions is d", "factor 2"),
    ("no matrix sqrt", fd_no_sqrt, "identical Gaussians are at distance 0", "matrix square root"),
    ("unsquared mean distance", fd_unsquared_mean, "N(0, I) vs N(1, I) in d dimensions is d", "squared"),
    ("elementwise sqrt", fd_elementwise_sqrt, "identical Gaussians are at distance 0", "elementwise"),
    ("complex sqrtm result", fd_sqrtm_complex, "N(0, I) vs N(1, I) in d dimensions is d", "complex"),
    ("no clamp at zero", fd_no_clamp, "singular covariances (fewer samples than dimensions)", "clamp"),
    ("commuting-case formula", fd_commuting_formula, "random full covariances", "commute"),
    ("eigvalsh of the product", fd_eigvalsh_of_product, "random full covariances", "eigvalsh"),
    # identical Gaussians: the unsquared-mean variant also gives 0 there and must not be named
    ("float32", fd_float32, "identical singular Gaussians are at distance 0, not below", "float64"),
    ("modifies inputs", fd_inplace, "does not modify its inputs", "in place"),
    # H1: the patterns the chapter warns against give a negative squared distance on singular Σ
    ("sqrtm wrapped in float() (H1)", fd_sqrtm_float, "identical singular Gaussians are at distance 0, not below",
     "sqrtm"),
    ("sqrtm .real (H1)", fd_sqrtm_real, "identical singular Gaussians are at distance 0, not below", "< 0"),
    ("eigenvalues clamped only at 0", fd_eigh_clip_zero_only,
     "identical singular Gaussians are at distance 0, not below", "round-off"),
    ("eigvals of the product", fd_eigvals_product,
     "identical singular Gaussians are at distance 0, not below", "round-off"),
    # √FID: on N(0,I) vs N(1,I) it equals the unsquared-mean mistake, so both are named there …
    ("square root of FID, case 1", fd_sqrt_of_fid, "N(0, I) vs N(1, I) in d dimensions is d", "final square root"),
    # … and on random covariances only the final square root is named
    ("square root of FID, random", fd_sqrt_of_fid, "random full covariances", "drop the outer sqrt"),
    # learner A (turn 3): clipping only the result at 0, without step 2's rank tolerance, passed every case;
    # so did sqrtm + .real clipped at 0. On singular Σ a small distance apart both are ~1e-5 (relative) low
    ("result clipped, no rank tolerance (learner A)", fd_clip_result_only,
     "singular Gaussians a small distance apart (round-off not in the cross term)", "d·ε·λ_max"),
    ("sqrtm .real clipped at 0", fd_sqrtm_real_clipped,
     "singular Gaussians a small distance apart (round-off not in the cross term)", "too small"),
]

# second entries on an implementation already in the gallery: their case's own message, read after the
# first one is fixed (the first message is asserted by the first entry)
ALSO = {"square root of FID, random"}


def test_frechet_reference_and_learner_forms_accepted(accepts):
    accepts("metrics.frechet_distance", metrics.frechet_distance)
    accepts("metrics.frechet_distance", fd_eigh)
    accepts("metrics.frechet_distance", fd_torch)


@pytest.mark.parametrize("label,fn,case,fragment", FD_GALLERY, ids=[g[0] for g in FD_GALLERY])
def test_frechet_gallery_rejected(rejects, label, fn, case, fragment):
    rejects("metrics.frechet_distance", fn, case, fragment, first=label not in ALSO)


def test_not_implemented_falls_back_to_reference(capsys):
    from genlib.exercises import check

    def stub(x, y, data_range=1.0):
        raise NotImplementedError

    assert check("metrics.ssim", stub) is metrics.ssim
    assert "not done yet" in capsys.readouterr().out


# ------------------------------------------------------------------ turn-3 reviews (issue 23): first messages
def ssim_float64_window(x, y, data_range=1.0):  # learner A: gaussian_window is float64, images float32
    c = x.shape[1]
    g = metrics.gaussian_window(11, 1.5)
    w = torch.outer(g, g).expand(c, 1, 11, 11)

    def m(t):
        return F.conv2d(t, w, groups=c)
    mx, my = m(x), m(y)
    vx, vy, cxy = m(x * x) - mx ** 2, m(y * y) - my ** 2, m(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return (((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))).mean((1, 2, 3))


def psnr_image_span(x, y, data_range=1.0):  # learner A: the image's own span as the peak
    span = x.flatten(1).max(1).values - x.flatten(1).min(1).values
    return 10 * torch.log10(span ** 2 / (x - y).pow(2).flatten(1).mean(1))


REVIEW = [
    ("metrics.ssim", "float64 window on float32 images (learner A)", ssim_float64_window,
     "one value per image, shape (N,)", "dtype mismatch inside your function: it mixes float32 and float64"),
    ("metrics.psnr", "per-image span as the peak (learner A)", psnr_image_span, "[0, 1] images with data_range=1",
     "not the span of values this image happens to contain"),
]


@pytest.mark.parametrize("name,label,fn,case,frag", REVIEW, ids=[g[1] for g in REVIEW])
def test_review_holes_first_message(rejects, name, label, fn, case, frag):
    rejects(name, fn, case, frag)


def test_torchs_own_not_implemented_error_is_a_mistake_not_an_unsolved_stub():
    """Session-2 verification (N1): F.interpolate(x, mode="linear") on a 4-D tensor raises torch's
    NotImplementedError, which read as "not done yet"; only the stub's bare raise means that."""
    import torch.nn.functional as F

    from genlib.exercises import run_check

    def psnr(x, y, data_range=2.0):
        F.interpolate(x, mode="linear", scale_factor=2)
        return x

    def stub(x, y, data_range=2.0):
        raise NotImplementedError

    r = run_check("metrics.psnr", psnr)
    assert not r.not_implemented and not r.passed and "linear mode" in r.text()
    assert run_check("metrics.psnr", stub).not_implemented


def test_psnr_with_each_images_maximum_as_peak_is_named(rejects):
    """Session-2 verification (A9): a per-image maximum as L got only the generic formula."""
    def psnr(x, y, data_range=2.0):
        mse = (x - y).pow(2).flatten(1).mean(1)
        return 10 * torch.log10(x.flatten(1).max(1).values ** 2 / mse)

    rejects("metrics.psnr", psnr, "[0, 1] images with data_range=1", "each image's maximum as L")
