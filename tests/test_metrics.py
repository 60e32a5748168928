"""genlib.metrics against independent references: scikit-image, SciPy, closed forms, hand cases."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from genlib import metrics as M
from genlib.data import digits, grid, grid_centers, ring, ring_centers, stacked


def _pairs(n=4, c=3, h=32, w=28, lo=0.0, hi=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = lo + (hi - lo) * torch.rand(n, c, h, w, generator=g)
    noise = 0.1 * (hi - lo) * torch.randn(n, c, h, w, generator=g)
    y = (x + noise).clamp(lo, hi)
    return x.double(), y.double()


# ----------------------------------------------------------------------------- PSNR / SSIM
@pytest.mark.parametrize("lo,hi", [(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)])
def test_psnr_matches_skimage(lo, hi):
    x, y = _pairs(lo=lo, hi=hi)
    got = M.psnr(x, y, data_range=hi - lo)
    ref = [peak_signal_noise_ratio(a.numpy(), b.numpy(), data_range=hi - lo) for a, b in zip(x, y)]
    assert got.shape == (len(x),)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10)


def test_psnr_identical_is_inf_and_range_mistake_warns():
    x, _ = _pairs(lo=-1.0, hi=1.0)
    assert torch.isinf(M.psnr(x, x, 2.0)).all()
    with pytest.warns(UserWarning, match="data_range"):
        M.psnr(x * 100, x, data_range=1.0)


@pytest.mark.parametrize("lo,hi,shape", [(0.0, 1.0, (3, 3, 32, 28)), (-1.0, 1.0, (2, 1, 11, 11)),
                                         (0.0, 255.0, (2, 2, 20, 40))])
def test_ssim_matches_skimage_wang2004_settings(lo, hi, shape):
    x, y = _pairs(*shape, lo=lo, hi=hi, seed=3)
    got = M.ssim(x, y, data_range=hi - lo)
    ref = [structural_similarity(a.numpy(), b.numpy(), channel_axis=0, gaussian_weights=True,
                                 sigma=1.5, use_sample_covariance=False, data_range=hi - lo)
           for a, b in zip(x, y)]
    assert got.shape == (shape[0],)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-9, atol=1e-12)


def test_ssim_small_window_matches_skimage():
    # skimage derives the window from sigma (radius int(3.5σ + 0.5)): σ = 0.8 → 7 taps
    x, y = _pairs(2, 1, 8, 8, lo=-1, hi=1, seed=4)
    got = M.ssim(x, y, data_range=2.0, win_size=7, sigma=0.8)
    ref = [structural_similarity(a[0].numpy(), b[0].numpy(), gaussian_weights=True, sigma=0.8,
                                 use_sample_covariance=False, data_range=2.0) for a, b in zip(x, y)]
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-9)


def test_ssim_identity_symmetry_and_errors():
    x, y = _pairs(2, 1, 16, 16)
    np.testing.assert_allclose(M.ssim(x, x).numpy(), 1.0, atol=1e-12)
    np.testing.assert_allclose(M.ssim(x, y).numpy(), M.ssim(y, x).numpy(), rtol=1e-12)
    assert (M.ssim(x, y) < 1).all()
    assert M.ssim(x.float(), y.float()).dtype == torch.float32
    with pytest.raises(ValueError, match="smaller"):
        M.ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="same shape"):
        M.ssim(torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 15))


# ----------------------------------------------------------------------------- FID
def _scipy_fid(a, b):
    """The textbook float64 formula with scipy.linalg.sqrtm, as an independent reference."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2)
                 - 2 * np.trace(np.real(covmean)))


@pytest.mark.parametrize("d,n1,n2", [(8, 500, 400), (64, 1000, 800)])
def test_fid_matches_scipy_sqrtm(d, n1, n2):
    rng = np.random.default_rng(d)
    mix = rng.standard_normal((d, d)) / math.sqrt(d)
    a = rng.standard_normal((n1, d)) @ mix
    b = rng.standard_normal((n2, d)) @ (mix + 0.2 * np.eye(d)) + 0.3
    got = M.fid_from_features(a, b)
    assert isinstance(got, float)
    assert got == pytest.approx(_scipy_fid(a, b), rel=1e-8)
    assert M.fid_from_features(torch.from_numpy(a).float(), b) == pytest.approx(got, rel=1e-5)


@pytest.mark.parametrize("d", [1, 10, 256])
def test_frechet_closed_form_unit_shift_is_d(d):
    eye = np.eye(d)
    assert M.frechet_distance(np.zeros(d), eye, np.ones(d), eye) == pytest.approx(d, rel=1e-12)


def test_frechet_closed_form_commuting_covariances():
    # diagonal covariances commute: the distance is ‖Δμ‖² + Σ(√a − √b)²
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.1, 3, 20), rng.uniform(0.1, 3, 20)
    mu1, mu2 = rng.standard_normal(20), rng.standard_normal(20)
    q = np.linalg.qr(rng.standard_normal((20, 20)))[0]  # rotate both: still commuting
    want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = M.frechet_distance(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(want, rel=1e-10)


def test_fid_singular_covariances_n_below_d():
    # n < d: both covariances are singular. Reference: tr √(Σ1^½Σ2Σ1^½) is the nuclear norm of
    # A1·A2ᵀ / √((n1−1)(n2−1)) for centred feature matrices A (no matrix square root at all).
    rng = np.random.default_rng(2)
    d = 100
    f1, f2 = rng.standard_normal((30, d)), rng.standard_normal((40, d)) + 0.1
    a1, a2 = f1 - f1.mean(0), f2 - f2.mean(0)
    cross = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum() / math.sqrt(29 * 39)
    want = (((f1.mean(0) - f2.mean(0)) ** 2).sum() + (a1 ** 2).sum() / 29 + (a2 ** 2).sum() / 39
            - 2 * cross)
    got = M.fid_from_features(f1, f2)
    assert np.isfinite(got) and got == pytest.approx(want, rel=1e-9)
    assert M.fid_from_features(f1, f1) == pytest.approx(0, abs=1e-8 * d)
    assert M.fid_from_features(f2, f1) == pytest.approx(got, rel=1e-9)


def test_fid_rank_one_and_zero_covariance_never_nan():
    d = 16
    v = np.ones((d, 1))
    assert M.frechet_distance(np.zeros(d), np.zeros((d, d)), np.zeros(d), np.zeros((d, d))) == 0
    val = M.frechet_distance(np.zeros(d), v @ v.T, np.zeros(d), np.eye(d))
    assert np.isfinite(val) and val >= 0
    with pytest.raises(ValueError, match="NaN"):
        M.frechet_distance(np.full(d, np.nan), np.eye(d), np.zeros(d), np.eye(d))
    with pytest.raises(ValueError, match="shapes"):
        M.frechet_distance(np.zeros(d), np.eye(d), np.zeros(d + 1), np.eye(d + 1))


def test_fid_bench_helpers_agree_at_small_size():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "bench_fid.py"
    spec = importlib.util.spec_from_file_location("bench_fid", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    f1, f2 = bench.make_features(2000, 128, seed=0)
    ours, ref = M.fid_from_features(f1, f2), bench.fid_sqrtm(f1, f2)
    assert ours == pytest.approx(ref, rel=1e-6)


# ----------------------------------------------------------------------------- KID
def _kid_bruteforce(x, y):
    d, m = x.shape[1], len(x)
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return sxx + syy - 2 * sxy


def test_kid_whole_set_equals_bruteforce_unbiased_mmd():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((7, 3)), rng.standard_normal((7, 3)) + 0.5
    mean, std = M.kid_from_features(x, y, subsets=3, subset_size=7)
    assert mean == pytest.approx(_kid_bruteforce(x, y), rel=1e-12)
    assert std == pytest.approx(0, abs=1e-12)  # every subset is the whole set


def test_kid_unbiased_near_zero_same_distribution_positive_otherwise():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((600, 16)), rng.standard_normal((600, 16))
    same, same_std = M.kid_from_features(a, b, subsets=50, subset_size=200)
    diff, _ = M.kid_from_features(a, b + 0.5, subsets=50, subset_size=200)
    assert abs(same) < 3 * same_std + 1e-3 and diff > 10 * abs(same)
    assert M.kid_from_features(a, b, subsets=5, subset_size=100, seed=3) == \
        M.kid_from_features(a, b, subsets=5, subset_size=100, seed=3)


# ----------------------------------------------------------------------------- IS
def test_inception_score_hand_cases():
    assert M.inception_score(np.full((100, 10), 0.1), splits=10) == pytest.approx((1.0, 0.0))
    one_hot = np.eye(10)[np.tile(np.arange(10), 10)]  # every chunk of 10 is balanced
    mean, std = M.inception_score(one_hot, splits=10)
    assert mean == pytest.approx(10.0) and std == pytest.approx(0.0, abs=1e-12)
    # by hand: rows (½,½) and (1,0): p(y) = (¾,¼), mean KL = ¾·log(4/3)
    assert M.inception_score(np.array([[0.5, 0.5], [1.0, 0.0]]), splits=1)[0] == \
        pytest.approx((4 / 3) ** 0.75)
    # one class only: confident but no variety → 1
    assert M.inception_score(np.eye(10)[[3] * 50], splits=5)[0] == pytest.approx(1.0)


def test_inception_score_split_convention_contiguous():
    # sorted labels and 10 splits: every chunk holds one class → IS 1 per chunk (documented)
    sorted_hot = np.eye(10)[np.repeat(np.arange(10), 10)]
    assert M.inception_score(sorted_hot, splits=10)[0] == pytest.approx(1.0)
    assert M.inception_score(sorted_hot, splits=1)[0] == pytest.approx(10.0)
    with pytest.raises(ValueError, match="softmax"):
        M.inception_score(np.ones((4, 3)))


# ----------------------------------------------------------------------------- PR / DC
def _line(*xs):
    return np.array([[x, 0.0] for x in xs])


def test_precision_recall_hand_case():
    real = _line(0, 1, 2, 3)  # k=1 radii: 1, 1, 1, 1
    fake = _line(0.5, 10, 3.9, 20)  # k=1 radii: 3.4, 3.4, 6.1, 10
    p, r = M.precision_recall(real, fake, k=1)
    assert p == pytest.approx(0.5)  # 0.5 and 3.9 lie in real balls; 10 and 20 do not
    assert r == pytest.approx(1.0)  # every real point lies in the ball around 0.5 (radius 3.4)
    # k-th neighbour excludes the point itself: with k=3 the radius of 0 is 3
    assert M.precision_recall(real, _line(-3, -3.1, 50, 60), k=3)[0] == pytest.approx(0.25)


def test_density_coverage_hand_case():
    real = _line(0, 1, 2, 3, 4)  # k=1 radii: all 1
    fake = _line(0, 0.5, 10)
    density, coverage = M.density_coverage(real, fake, k=1)
    assert density == pytest.approx(4 / 3)  # 0 and 0.5 each sit in 2 real balls, 10 in none
    assert coverage == pytest.approx(2 / 5)  # only real 0 and 1 have a fake within radius


def _prdc_bruteforce(real, fake, k_pr, k_dc):
    d_rr = np.linalg.norm(real[:, None] - real[None], axis=2)
    d_ff = np.linalg.norm(fake[:, None] - fake[None], axis=2)
    d_rf = np.linalg.norm(real[:, None] - fake[None], axis=2)  # (n, m)
    r_real = np.sort(d_rr, axis=1)[:, k_pr]
    r_fake = np.sort(d_ff, axis=1)[:, k_pr]
    precision = (d_rf <= r_real[:, None]).any(0).mean()
    recall = (d_rf <= r_fake[None, :]).any(1).mean()
    r5 = np.sort(d_rr, axis=1)[:, k_dc]
    density = (d_rf <= r5[:, None]).sum() / (k_dc * len(fake))
    coverage = (d_rf.min(1) <= r5).mean()
    return precision, recall, density, coverage


def test_prdc_match_bruteforce_on_random_features():
    rng = np.random.default_rng(5)
    real = rng.standard_normal((300, 8))
    fake = 1.3 * rng.standard_normal((250, 8)) + 0.4
    want = _prdc_bruteforce(real, fake, 3, 5)
    got = (*M.precision_recall(real, fake), *M.density_coverage(real, fake))
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_prdc_behaviour_same_vs_collapsed():
    rng = np.random.default_rng(6)
    real, fake = rng.standard_normal((1000, 4)), rng.standard_normal((1000, 4))
    p, r = M.precision_recall(real, fake)
    d, c = M.density_coverage(real, fake)
    assert p > 0.6 and r > 0.6 and 0.8 < d < 1.2 and c > 0.9
    collapsed = 0.05 * rng.standard_normal((1000, 4))  # all fakes near the mean
    p2, r2 = M.precision_recall(real, collapsed)
    d2, c2 = M.density_coverage(real, collapsed)
    assert p2 > 0.95 and r2 < 0.1 and c2 < 0.2 and d2 > d


# ----------------------------------------------------------------------------- modes
def test_mode_stats_on_real_ring_and_grid():
    s = M.mode_stats(ring(4000), ring_centers(), 0.01)
    assert s["modes"] == 8 and s["high_quality"] > 0.98 and s["reverse_kl"] < 0.01
    assert s["counts"].shape == (8,) and int(s["counts"].sum()) == round(4000 * s["high_quality"])
    g = M.mode_stats(grid(5000), grid_centers(), 0.05)
    assert g["modes"] == 25 and g["high_quality"] > 0.98 and g["reverse_kl"] < 0.02


def test_mode_stats_collapse_and_nothing_high_quality():
    centers = ring_centers()
    one = M.mode_stats(centers[[2] * 50] + 0.001, centers, 0.01)
    assert one["modes"] == 1 and one["high_quality"] == 1.0
    assert one["reverse_kl"] == pytest.approx(math.log(8))
    two = M.mode_stats(centers[[0, 4] * 30], centers, 0.01)
    assert two["modes"] == 2 and two["reverse_kl"] == pytest.approx(math.log(4))
    off = M.mode_stats(torch.zeros(20, 2), centers, 0.01)  # centre of the ring: far from all modes
    assert off["modes"] == 0 and off["high_quality"] == 0 and off["reverse_kl"] == math.inf
    # exactly 3 std counts as high quality, a bit more does not
    edge = centers[[0, 0]] + torch.tensor([[0.03, 0.0], [0.0301, 0.0]])
    assert M.mode_stats(edge, centers, 0.01)["high_quality"] == 0.5
    assert M.mode_stats(centers[[1] * 10], centers, 0.01, min_count=20)["modes"] == 0


def test_mode_stats_labels():
    u = M.mode_stats_labels(torch.arange(1000).repeat(3), 1000)
    assert u["modes"] == 1000 and u["reverse_kl"] == pytest.approx(0, abs=1e-12)
    h = M.mode_stats_labels(torch.tensor([3, 7] * 50), 1000)
    assert h["modes"] == 2 and h["reverse_kl"] == pytest.approx(math.log(500))
    with pytest.raises(ValueError, match="mode ids"):
        M.mode_stats_labels(torch.tensor([1000]), 1000)


# ----------------------------------------------------------------------------- image wrappers
def test_digits_wrappers_order_real_vs_degraded():
    test, _ = digits("test", (-1, 1))
    g = torch.Generator().manual_seed(0)
    noisy = test + 0.5 * torch.randn(test.shape, generator=g)
    fid_real, fid_noisy = M.digits_fid(test), M.digits_fid(noisy)
    assert fid_noisy > 3 * fid_real, (fid_real, fid_noisy)
    kid_real, kid_noisy = M.digits_kid(test, subset_size=200)[0], M.digits_kid(noisy, subset_size=200)[0]
    assert kid_noisy > kid_real + 0.05
    is_mean, _ = M.digits_inception_score(test[torch.randperm(len(test), generator=g)], splits=3)
    assert 8 < is_mean <= 10
    p, r = M.digits_precision_recall(test)
    assert p > 0.8 and r > 0.8
    ones = test[digits("test")[1] == 1]
    c_all, c_ones = M.digits_density_coverage(test)[1], M.digits_density_coverage(ones)[1]
    assert c_ones < 0.5 * c_all  # dropping nine classes shows up as lost coverage


def test_stacked_mode_stats_on_real_stacked_digits():
    x, y = stacked(3000, split="test", seed=2)
    s = M.stacked_mode_stats(x)
    true = M.mode_stats_labels(100 * y[:, 0] + 10 * y[:, 1] + y[:, 2], 1000)
    assert abs(s["modes"] - true["modes"]) <= 30 and s["modes"] > 900
    assert M.stacked_fid(x[:1500], x[1500:]) < 1.0
