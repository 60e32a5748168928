"""genlib.translate: paired shapes data, the scorer, the networks, pix2pix / CycleGAN training steps and
the shipped CycleGANs (they must still show what chapter 10 claims about them)."""
import os

import pytest
import torch

from genlib import translate as T
from genlib.data import COLOR_NAMES, SHAPE_NAMES

CIRCLE, SQUARE = SHAPE_NAMES.index("circle"), SHAPE_NAMES.index("square")


def test_paired_shapes_share_colour_size_and_centre():
    p = T.paired_shapes(64, "circle", "square", seed=7)
    assert p.a.shape == p.b.shape == (64, 3, 16, 16)
    assert p.a.min() >= -1 and p.a.max() <= 1
    assert (p.shape_a == CIRCLE).all() and (p.shape_b == SQUARE).all()
    # the same colour in both images: the channels that are on agree
    on_a = (p.a.amax(dim=(2, 3)) > 0)
    on_b = (p.b.amax(dim=(2, 3)) > 0)
    assert torch.equal(on_a, on_b)
    ca, cb = T.centroid(T.shape_mask(p.a)), T.centroid(T.shape_mask(p.b))
    # pixels are whole: a drawn shape's centroid lies within a pixel of the centre it was drawn around
    assert (ca - p.center).norm(dim=1).max() < 0.75 and (cb - p.center).norm(dim=1).max() < 0.75
    assert (ca - cb).norm(dim=1).max() < 1.0
    assert not torch.equal(p.a, p.b)
    again = T.paired_shapes(64, "circle", "square", seed=7)
    assert torch.equal(again.a, p.a) and torch.equal(again.color, p.color)


def test_paired_shapes_grey_and_random_shapes():
    p = T.paired_shapes(50, None, None, color_b="grey", seed=1)
    assert torch.equal(p.shape_a, p.shape_b) and len(set(p.shape_a.tolist())) > 1
    assert torch.equal(T.shape_mask(p.a), T.shape_mask(p.b))
    drawn = p.b.permute(0, 2, 3, 1)[T.shape_mask(p.b)]
    assert torch.allclose(drawn, torch.zeros_like(drawn))          # mid-grey: 0 in [-1, 1]
    assert len(set(p.color.tolist())) == len(COLOR_NAMES)
    with pytest.raises(ValueError):
        T.paired_shapes(4, "hexagon")
    with pytest.raises(ValueError):
        T.paired_shapes(4, color_b="purple")


def test_centroid_and_iou_by_hand():
    m = torch.zeros(2, 4, 4, dtype=torch.bool)
    m[0, 1, 2] = True                       # one pixel at row 1, column 2 → centre (2.5, 1.5)
    c = T.centroid(m)
    assert torch.allclose(c[0], torch.tensor([2.5, 1.5])) and torch.isnan(c[1]).all()
    m2 = m.clone()
    m2[0, 0, 0] = True
    assert T.mask_iou(m, m2)[0].item() == pytest.approx(0.5)
    assert T.mask_iou(m, m)[1].item() == 1.0


def test_scorer_on_truth_identity_and_shift():
    t = T.paired_shapes(300, "circle", "square", seed=100)
    ca = T.centroid(T.shape_mask(t.a))
    truth = T.score_translation(t.b, SQUARE, t.color, t.size, ca, truth=t.b)
    assert truth["both"] > 0.99 and truth["iou"] == 1.0
    nothing = T.score_translation(t.a, SQUARE, t.color, t.size, ca, truth=t.b)
    assert nothing["right"] < 0.05 and nothing["kept"] > 0.99
    shifted = T.score_translation(torch.roll(t.b, 2, dims=3), SQUARE, t.color, t.size, ca)
    assert shifted["position"] < 0.05 and shifted["kept"] < 0.05
    recoloured = T.score_translation(t.b[:, [1, 2, 0]], SQUARE, t.color, t.size, ca)
    assert recoloured["color"] < 0.05
    assert set(truth["per_image"]) >= {"right", "kept", "both"}


def test_networks_shapes_and_range():
    x = torch.rand(5, 3, 16, 16) * 2 - 1
    G, D6, D3 = T.UNet(), T.PatchD(6), T.PatchD(3)
    y = G(x)
    assert y.shape == x.shape and y.abs().max() <= 1
    assert D6(torch.cat([x, y], 1)).shape == (5, 4, 4) and D3(x).shape == (5, 4, 4)


def test_cycle_loss_reference():
    x, y = torch.zeros(2, 3, 4, 4), torch.zeros(3, 3, 4, 4)
    xr = torch.full_like(x, 0.5).requires_grad_(True)
    yr = torch.full_like(y, -0.25).requires_grad_(True)
    loss = T.cycle_loss(x, xr, y, yr)
    assert loss.item() == pytest.approx(10 * (0.5 + 0.25))
    loss.backward()
    assert torch.allclose(xr.grad, torch.full_like(x, 10 / x.numel()))
    assert torch.allclose(yr.grad, torch.full_like(y, -10 / y.numel()))


def test_pix2pix_learns_a_little():
    p = T.paired_shapes(256, "circle", "square", seed=1)
    G, hist = T.train_pix2pix(p.a, p.b, 40, batch_size=16, seed=0)
    assert not G.training and len(hist["g_l1"]) == 40
    assert sum(hist["g_l1"][-5:]) / 5 < 0.7 * sum(hist["g_l1"][:5]) / 5


def test_cyclegan_step_uses_the_given_loss():
    a, b = T.cyclegan_data("shape", n=64)
    calls = []

    def spy(x, xr, y, yr, lam):
        calls.append((x.shape, xr.requires_grad, yr.requires_grad, lam))
        return T.cycle_loss(x, xr, y, yr, lam)

    G, F_net, hist = T.train_cyclegan(a, b, 6, batch_size=8, lam_identity=5.0, loss_fn=spy)
    assert len(calls) == 6 and all(c[1] and c[2] and c[3] == 10.0 for c in calls)
    assert calls[0][0] == (8, 3, 16, 16)
    assert set(hist) == {"d_a", "d_b", "g_gan", "cycle", "identity"}
    assert hist["identity"][0] > 0
    assert not G.training and not F_net.training


# ----------------------------------------------------------------------------- shipped weights
def test_cyclegan_weights_are_small_and_load():
    assert os.path.getsize(T.CYCLEGAN_WEIGHTS) < 2_000_000
    for name in T.CYCLEGAN_CONFIGS:
        G, F_net = T.load_cyclegan(name)
        assert not G.training and not any(p.requires_grad for p in G.parameters())
    with pytest.raises(ValueError):
        T.load_cyclegan("horse2zebra")


def test_shipped_cyclegans_show_what_chapter_10_claims():
    """Deterministic (fixed weights, fixed test draw): the figures chapter 10 asserts, with the same bars."""
    shape = T.cyclegan_scores("shape", *T.load_cyclegan("shape"))
    assert min(shape["ab_kept"], shape["ba_kept"]) >= 0.95, shape
    assert shape["ab_right"] >= 0.7 and shape["ba_right"] >= 0.85, shape
    noid = T.cyclegan_scores("no_identity", *T.load_cyclegan("no_identity"))
    assert noid["ab_color"] <= 0.2 and noid["cycle_l1"] < 0.05, noid    # colours permuted, cycle fine
    grey = T.cyclegan_scores("grey", *T.load_cyclegan("grey"))
    assert grey["grey_l1"] < 0.1 and grey["from_cycle"] >= 0.9 and grey["from_real_grey"] <= 0.3, grey
