"""Shapes, ranges and sizes of the GAN models; the self-attention block."""
import torch

from genlib import models


def test_toy_models_shapes():
    G, D = models.ToyGenerator(z_dim=2), models.ToyDiscriminator()
    x = G(torch.randn(7, 2))
    assert x.shape == (7, 2) and D(x).shape == (7,)


def test_digit_generators_shape_range_and_size():
    for cls, lo, hi in [(models.MLPGenerator, 10_000, 200_000), (models.DCGANGenerator, 20_000, 300_000)]:
        G = cls(z_dim=16)
        out = G(torch.randn(9, 16))
        assert out.shape == (9, 1, 8, 8)
        assert out.abs().max() <= 1
        assert lo <= models.count_params(G) <= hi, (cls.__name__, models.count_params(G))


def test_digit_discriminators_return_flat_logits():
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    for D in (models.MLPDiscriminator(), models.DCGANDiscriminator(),
              models.DCGANDiscriminator(spectral_norm=True), models.MLPDiscriminator(spectral_norm=True)):
        assert D(x).shape == (6,)


def test_spectral_norm_bounds_each_layer():
    D = models.DCGANDiscriminator(spectral_norm=True)
    for _ in range(20):  # power iteration converges over forward passes in train mode
        D(torch.randn(8, 1, 8, 8))
    W = D.net[-1].weight  # the normalised weight of the last linear layer
    assert torch.linalg.matrix_norm(W, ord=2).item() < 1.05


def test_self_attention_starts_as_identity_and_mixes_positions():
    torch.manual_seed(0)
    block = models.SelfAttention2d(16)
    x = torch.randn(2, 16, 4, 4)
    assert torch.allclose(block(x), x)  # gamma = 0 at init
    attn = block.attention(x)
    assert attn.shape == (2, 16, 16) and torch.allclose(attn.sum(-1), torch.ones(2, 16), atol=1e-5)
    with torch.no_grad():
        block.gamma.fill_(1.0)
    y = block(x)
    x2 = x.clone()
    x2[:, :, 3, 3] += 5.0  # change one far corner ...
    y2 = block(x2)
    assert (y2 - y)[:, :, 0, 0].abs().max() > 1e-4  # ... and the opposite corner responds
