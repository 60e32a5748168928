import math

import pytest
import torch

from genlib import data


def test_digits_split_shapes_and_ranges():
    xtr, ytr = data.digits("train")
    xte, yte = data.digits("test")
    xall, _ = data.digits("all")
    assert xtr.shape == (1500, 1, 8, 8) and xte.shape == (297, 1, 8, 8) and len(xall) == 1797
    assert xtr.dtype == torch.float32 and ytr.dtype == torch.int64
    assert xtr.min() == -1 and xtr.max() == 1
    assert set(ytr.unique().tolist()) == set(range(10))
    x01, _ = data.digits("test", (0, 1))
    assert torch.allclose(x01 * 2 - 1, xte)
    levels, _ = data.digits("train", (0, 16))
    assert torch.equal(levels, levels.round()) and levels.unique().numel() == 17


def test_digits_split_is_fixed_and_disjoint():
    a, _ = data.digits("train")
    b, _ = data.digits("train")
    assert torch.equal(a, b)
    tr = {tuple(v) for v in data.digits("train")[0].flatten(1).tolist()}
    te = [tuple(v) for v in data.digits("test")[0].flatten(1).tolist()]
    # the UCI set has a few exact duplicates; the split itself must not overlap by index
    assert sum(t in tr for t in te) < 10


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="split"):
        data.digits("validation")
    with pytest.raises(ValueError, match="value_range"):
        data.digits("train", (1, 0))
    with pytest.raises(ValueError, match="positive"):
        data.ring(0)


def test_ring_geometry_has_eight_distinct_modes():
    c = data.ring_centers()
    assert c.shape == (8, 2)
    assert torch.allclose(c.norm(dim=1), torch.ones(8), atol=1e-6)
    d = torch.cdist(c, c) + 10 * torch.eye(8)
    assert d.min() > 0.7  # neighbours are 2·sin(π/8) ≈ 0.765 apart: no repeated mode
    x, lab = data.ring(4000, return_labels=True)
    assert x.shape == (4000, 2)
    assert ((x - c[lab]).norm(dim=1) < 0.05).all()
    assert lab.bincount(minlength=8).min() > 400


def test_grid_geometry():
    c = data.grid_centers()
    assert c.shape == (25, 2) and set(c[:, 0].tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}
    x = data.grid(1000, seed=3)
    assert x.shape == (1000, 2) and torch.cdist(x, c).min(1).values.max() < 0.3
    assert not torch.equal(x, data.grid(1000, seed=4))


def test_stacked_modes_are_channel_labels():
    x, y = data.stacked(500)
    assert x.shape == (500, 3, 8, 8) and y.shape == (500, 3)
    xd, yd = data.digits("train")
    # every channel is one of the training digits with the label it claims
    i = 7
    for ch in range(3):
        match = (xd[:, 0] == x[i, ch]).flatten(1).all(1)
        assert match.any() and y[i, ch].item() in yd[match].tolist()
    modes = 100 * y[:, 0] + 10 * y[:, 1] + y[:, 2]
    assert modes.unique().numel() > 300


def test_shapes_captions_match_attributes():
    s = data.shapes(60, seed=1)
    assert s.images.shape == (60, 3, 16, 16) and len(s) == 60
    assert s.images.min() >= -1 and s.images.max() <= 1
    for i in range(60):
        cap = s.captions[i]
        assert data.SHAPE_NAMES[s.shape[i]] in cap and data.COLOR_NAMES[s.color[i]] in cap
        assert data.SIZE_NAMES[s.size[i]] in cap
    # large shapes cover more pixels than small ones
    area = (s.images > 0).any(1).flatten(1).sum(1).float()
    assert area[s.size == 1].mean() > 1.5 * area[s.size == 0].mean()
    # a red shape has only its red channel on
    red = (s.color == data.COLOR_NAMES.index("red")).nonzero()[0, 0]
    assert s.images[red, 1:].max() == -1 and s.images[red, 0].max() == 1


def test_online_datasets_fail_clearly_offline(tmp_path):
    with pytest.raises(ValueError, match="MNIST"):
        data.torchvision_dataset("SVHN")
    with pytest.raises(RuntimeError, match="offline datasets"):
        data.torchvision_dataset("MNIST", root=str(tmp_path), download=False)


def test_to_tanh_range():
    x = torch.tensor([0.0, 0.5, 1.0])
    assert torch.equal(data.to_tanh_range(x), torch.tensor([-1.0, 0.0, 1.0]))
