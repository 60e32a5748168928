"""The shipped feature extractors: held-out accuracy, shapes, determinism, clear errors."""
import os

import pytest
import torch

from genlib import features
from genlib.data import digits, stacked


def test_weights_ship_and_are_small():
    assert os.path.exists(features.DIGITS_WEIGHTS)
    assert os.path.getsize(features.DIGITS_WEIGHTS) < 1_000_000


def test_digits_held_out_accuracy_at_least_97_percent():
    x, y = digits("test", (-1, 1))  # 297 images never seen in training
    labels, conf = features.classify_digits(x)
    acc = (labels == y).float().mean().item()
    assert acc >= 0.97, f"held-out accuracy {acc:.4f} < 0.97"
    assert conf.shape == (len(x),) and ((conf > 0.1) & (conf <= 1)).all()


def test_accuracy_survives_one_pixel_shifts():
    # generators rarely centre digits exactly; the classifier was trained with 1-pixel shifts
    x, y = digits("test", (-1, 1))
    shifted = torch.nn.functional.pad(x, (1, 0, 0, 0), value=-1.0)[..., :8]  # one pixel right
    acc = (features.classify_digits(shifted)[0] == y).float().mean().item()
    assert acc >= 0.95, f"accuracy on shifted digits {acc:.4f}"


def test_shapes_dtypes_and_no_grad():
    x, _ = digits("test", (-1, 1))
    x = x[:10].clone().requires_grad_(True)
    f = features.digits_features(x)
    assert f.shape == (10, features.FEATURE_DIM) and f.dtype == torch.float32
    assert not f.requires_grad
    logits = features.digits_classifier()(x.detach())
    assert logits.shape == (10, 10)
    p = features.digits_probs(x.detach())
    assert torch.allclose(p.sum(1), torch.ones(10), atol=1e-5)
    assert features.digits_classifier() is features.digits_classifier()  # cached


def test_deterministic():
    x, _ = digits("test", (-1, 1))
    assert torch.equal(features.digits_features(x), features.digits_features(x))


def test_batching_does_not_change_results():
    x, _ = digits("test", (-1, 1))
    full = features.digits_features(x)
    parts = torch.cat([features.digits_features(x[:100]), features.digits_features(x[100:])])
    assert torch.allclose(full, parts, atol=1e-5)


def test_stacked_labels_recover_the_three_digits():
    x, y = stacked(300, split="test", seed=1)
    got = features.stacked_labels(x)
    assert got.shape == (300, 3) and got.dtype == torch.int64
    per_channel = (got == y).float().mean().item()
    assert per_channel >= 0.97, f"per-channel accuracy {per_channel:.4f}"
    assert features.stacked_features(x).shape == (300, 3 * features.FEATURE_DIM)


def test_wrong_range_or_shape_is_a_clear_error():
    x, _ = digits("test", (0, 16))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        features.digits_features(x)
    with pytest.raises(ValueError, match="shape"):
        features.digits_features(torch.zeros(4, 8, 8))
    with pytest.raises(ValueError, match="3, 8, 8"):
        features.stacked_labels(torch.zeros(4, 1, 8, 8))


def test_inception_offline_error_is_clear(monkeypatch):
    # no test may need the internet: make torchvision unusable and expect advice, not a traceback
    import builtins

    real_import = builtins.__import__

    def no_torchvision(name, *a, **k):
        if name.startswith("torchvision"):
            raise ImportError("torchvision blocked in this test")
        return real_import(name, *a, **k)

    features._inception.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_torchvision)
    with pytest.raises(RuntimeError, match="offline extractors"):
        features.inception_features(torch.zeros(2, 3, 8, 8))
    features._inception.cache_clear()


def test_shapes_classifier_reads_every_caption_attribute():
    from genlib.data import shapes

    assert os.path.getsize(features.SHAPES_WEIGHTS) < 1_000_000
    held = shapes(600, seed=1)  # the CNN was trained on shapes(seed=0)
    pred = features.classify_shapes(held.images)
    for attr in ("shape", "color", "size"):
        acc = (pred[attr] == getattr(held, attr)).float().mean().item()
        assert acc >= 0.97, f"held-out {attr} accuracy {acc:.3f} < 0.97"
    f = features.shapes_features(held.images[:5])
    assert f.shape == (5, features.FEATURE_DIM) and not f.requires_grad
    with pytest.raises(ValueError, match="16, 16"):
        features.shapes_features(torch.zeros(2, 3, 8, 8))
