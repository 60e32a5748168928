"""genlib.restore: super-resolution data, bicubic, the SR nets, the measures, the shipped weights."""
import os

import pytest
import torch
import torch.nn.functional as F

from genlib import restore
from genlib.data import shapes
from genlib.features import shapes_features


def test_downsample_is_the_block_mean():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    lo = restore.downsample(x, 2)
    assert lo.shape == (1, 1, 2, 2)
    assert lo[0, 0, 0, 0] == (0 + 1 + 4 + 5) / 4
    with pytest.raises(ValueError):
        restore.downsample(torch.zeros(1, 1, 6, 6), 4)


def test_sr_data_pairs_and_labels():
    lr, hr, labels = restore.sr_data(10, 4, seed=3)
    assert lr.shape == (10, 3, 4, 4) and hr.shape == (10, 3, 16, 16)
    assert torch.allclose(lr, F.avg_pool2d(hr, 4))
    s = shapes(10, size=16, seed=3)
    assert torch.equal(hr, s.images) and torch.equal(labels["shape"], s.shape)


def test_bicubic_shape_and_range():
    lr, hr, _ = restore.sr_data(8, 4)
    up = restore.bicubic(lr, 4)
    assert up.shape == hr.shape and up.min() >= -1 and up.max() <= 1


def test_untrained_srnet_is_bicubic_and_noise_starts_ignored():
    lr, _, _ = restore.sr_data(4, 4)
    net = restore.SRNet(4)
    up = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
    assert torch.allclose(net(lr), up)
    with torch.no_grad():
        net.body[-1].weight.normal_()               # pretend it was trained
    g = restore.SRNet(4, noise_channels=1).load_regression(net)
    a, b = g(lr, torch.zeros(4, 1, 16, 16)), g(lr, torch.randn(4, 1, 16, 16))
    assert torch.allclose(a, net(lr), atol=1e-6) and torch.allclose(a, b, atol=1e-6)


def test_high_frequency_energy_orders_blur_and_sharp():
    hr = shapes(16, seed=0).images
    blurred = F.avg_pool2d(hr, 3, 1, 1)
    assert torch.all(restore.high_frequency_energy(torch.zeros(2, 3, 8, 8)) == 0)
    assert restore.high_frequency_energy(blurred).mean() < 0.7 * restore.high_frequency_energy(hr).mean()


def test_evaluate_on_the_truth():
    _, hr, labels = restore.sr_data(500, 4, seed=2)
    real = shapes_features(shapes(1000, seed=3).images)   # FID is biased upwards at small n
    r = restore.evaluate(hr, hr, labels, real)
    assert r["psnr"] == float("inf") and abs(r["ssim"] - 1) < 1e-6
    assert r["accuracy"] >= 0.95 and abs(r["sharpness"] - 1) < 1e-6 and r["fid"] < 25


def test_short_training_beats_bicubic_and_gan_step_runs():
    torch.manual_seed(0)
    lr, hr, _ = restore.sr_data(512, 4, seed=1)
    tlr, thr, _ = restore.sr_data(128, 4, seed=2)
    net, hist = restore.train_regression(lr, hr, 4, steps=80, batch_size=32)
    mse_net = F.mse_loss(restore.upscale(net, tlr), thr)
    mse_bic = F.mse_loss(restore.bicubic(tlr, 4), thr)
    assert mse_net < 0.8 * mse_bic
    gan, gh = restore.train_gan_sr(lr, hr, 4, steps=3, batch_size=16, init=net, noise_channels=1)
    assert all(torch.isfinite(torch.tensor(gh[k])).all() for k in ("d_loss", "g_adv", "l1"))
    assert restore.upscale(gan, tlr).shape == thr.shape


# ----------------------------------------------------------------------------- shipped weights
def test_shipped_weights_are_small_and_load():
    from genlib.features import WEIGHTS_DIR
    for f in restore.WEIGHT_FILES.values():
        assert os.path.getsize(os.path.join(WEIGHTS_DIR, f)) < 400_000
    with pytest.raises(ValueError):
        restore.load_shipped("bicubic")


@pytest.fixture(scope="module")
def shipped_results():
    tlr, thr, labels = restore.sr_data(600, 4, seed=2)      # the chapter's test seed; trained on seed 1
    real = shapes_features(shapes(1000, seed=3).images)
    torch.manual_seed(0)
    outs = {"bicubic": restore.bicubic(tlr, 4),
            "regression": restore.upscale(restore.load_shipped("regression"), tlr),
            "gan": restore.upscale(restore.load_shipped("gan"), tlr)}
    return {k: restore.evaluate(v, thr, labels, real) for k, v in outs.items()}


def test_shipped_regression_beats_bicubic_on_distortion(shipped_results):
    r, b = shipped_results["regression"], shipped_results["bicubic"]
    assert r["psnr"] > b["psnr"] + 3.0 and r["ssim_structure"] > b["ssim_structure"] + 0.05


def test_standard_ssim_ranks_bicubic_first_through_its_luminance_factor(shipped_results):
    # SSIM on [0, 1] (the standard form): bicubic keeps each window's mean brightness (its input is
    # the block means), the learned nets do not, and on a mostly black image SSIM's relative
    # luminance term punishes that; their structure factor is better than bicubic's
    b, r, g = (shipped_results[k] for k in ("bicubic", "regression", "gan"))
    assert b["ssim"] > max(r["ssim"], g["ssim"]) + 0.05
    assert b["ssim_luminance"] > max(r["ssim_luminance"], g["ssim_luminance"]) + 0.1
    assert min(r["ssim_structure"], g["ssim_structure"]) > b["ssim_structure"]


def test_ssim_factors_multiply_to_ssim_on_constant_factor_and_shift_cs():
    from genlib.metrics import ssim
    g = torch.Generator().manual_seed(0)
    x, y = (torch.rand(4, 3, 16, 16, generator=g, dtype=torch.float64) for _ in range(2))
    lum, cs = restore.ssim_factors(x, y)
    assert 0 < lum <= 1 and -1 <= cs <= 1
    # the structure factor ignores a constant shift of both images, the luminance factor does not
    lum2, cs2 = restore.ssim_factors(x + 0.5, y + 0.5)
    assert abs(cs2 - cs) < 1e-9 and abs(lum2 - lum) > 1e-3
    # identical images: both factors are 1 and so is SSIM
    assert restore.ssim_factors(x, x) == pytest.approx((1.0, 1.0)) and float(ssim(x, x).mean()) == pytest.approx(1.0)


def test_shipped_nets_trade_distortion_for_sharpness(shipped_results):
    # both nets had 4,500 training steps; the L2 net is the better estimator pixel by pixel, the cGAN
    # gives sharper images (Blau & Michaeli 2018); both are far closer to real shapes than bicubic
    b, r, g = (shipped_results[k] for k in ("bicubic", "regression", "gan"))
    assert r["psnr"] > g["psnr"] + 0.3 and r["ssim"] > g["ssim"] + 0.02
    assert g["sharpness"] > r["sharpness"] + 0.05
    assert max(r["fid"], g["fid"]) < 0.15 * b["fid"]
    assert min(r["accuracy"], g["accuracy"]) > b["accuracy"] + 0.3
