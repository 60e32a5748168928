"""genlib.style: Gram matrices, feature nets, the Gatys loss and optimisation, the feed-forward net."""
import os

import torch

from genlib import style
from genlib.data import shapes


def test_gram_matrix_per_image_and_blind_to_position():
    f = torch.rand(3, 4, 5, 6, dtype=torch.float64)
    g = style.gram_matrix(f)
    assert g.shape == (3, 4, 4)
    for n in range(3):
        m = f[n].reshape(4, -1)
        assert torch.allclose(g[n], m @ m.T / f[n].numel())
    perm = torch.randperm(30)
    shuffled = f.flatten(2)[:, :, perm].view_as(f)          # same features, other places
    assert torch.allclose(style.gram_matrix(shuffled), g)
    assert torch.allclose(g, g.transpose(1, 2))


def test_feature_nets_shapes_frozen_and_seeded():
    x = shapes(2, size=32, seed=0).images
    sh = style.FeatureNet.from_shapes_cnn()
    f1, f2 = sh(x)
    assert f1.shape == (2, 16, 32, 32) and f2.shape == (2, 32, 16, 16)
    assert not any(p.requires_grad for p in sh.parameters())
    from genlib.features import shapes_classifier
    assert sh.blocks[0][0] is not shapes_classifier("cpu").body[0]     # a copy, not the classifier
    r1, r2 = style.FeatureNet.random(0), style.FeatureNet.random(0)
    a, b = r1(x), r2(x)
    assert [t.shape[1:] for t in a] == [(32, 32, 32), (64, 16, 16), (64, 8, 8)]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(style.FeatureNet.random(1)(x)[0], a[0])


def test_style_loss_zero_at_its_targets():
    loss = style.default_loss()
    content = shapes(2, size=32, seed=1).images
    _, parts = loss(content, loss.content_targets(content))
    assert parts["content"] == 0 and parts["style"] > 0
    s = style.style_image()
    _, parts = loss(s, loss.content_targets(s))
    assert parts["style"] < 1e-12


def test_style_loss_uses_the_given_gram():
    calls = []

    def my_gram(f):
        calls.append(f.shape)
        return style.gram_matrix(f)

    style.StyleLoss(style.FeatureNet.random(0), style.style_image(), gram=my_gram)
    assert len(calls) == 3


def test_gatys_lowers_the_style_loss_and_keeps_range():
    torch.manual_seed(0)
    loss = style.default_loss()
    content = shapes(1, size=32, seed=5).images
    out, hist = style.gatys_transfer(content, loss, steps=40, show_progress=False)
    assert hist["style"][-1] < 0.5 * hist["style"][0]
    assert out.min() >= -1 and out.max() <= 1 and out.shape == content.shape


def test_diagonal_anisotropy():
    assert style.diagonal_anisotropy(style.style_image()) > 5
    plain = shapes(64, size=32, seed=0).images
    assert style.diagonal_anisotropy(plain).mean().abs() < 0.3
    assert style.diagonal_anisotropy(style.style_image().transpose(-1, -2).flip(-1)) < -5


def test_transform_net_starts_as_identity():
    x = shapes(2, size=32, seed=0).images
    assert torch.allclose(style.TransformNet()(x), x)


def test_time_per_image_positive():
    assert style.time_per_image(lambda x: x * 2, torch.zeros(4, 3, 8, 8), repeats=3) > 0


def test_shipped_feedforward_net_styles_unseen_images():
    from genlib.features import WEIGHTS_DIR
    assert os.path.getsize(os.path.join(WEIGHTS_DIR, style.FF_WEIGHTS)) < 400_000
    net = style.load_feedforward()
    loss = style.default_loss()
    content = shapes(32, size=32, seed=7).images                # trained on seed 6
    with torch.no_grad():
        out = net(content)
        _, before = loss(content, loss.content_targets(content))
        _, after = loss(out, loss.content_targets(content))
    assert after["style"] < 0.3 * before["style"]
    assert style.diagonal_anisotropy(out).mean() > 0.3           # the stripes' direction comes through
