"""GAN theory helpers and the training machinery."""
import math

import torch

from genlib import gan, models
from genlib.losses import d_loss


def _grid():
    x = torch.linspace(-6, 6, 2401, dtype=torch.float64)
    return x, float(x[1] - x[0])


def test_value_at_optimal_discriminator_is_minus_log4_plus_2jsd():
    x, dx = _grid()
    p, q = gan.gaussian_pdf(x, 1.0, 0.6), gan.gaussian_pdf(x, -0.5, 1.0)
    d = gan.optimal_discriminator(p, q)
    v = gan.value_function(d, p, q, dx)
    assert abs(v - (-math.log(4) + 2 * gan.jsd(p, q, dx))) < 1e-6
    # any other D gives a smaller value
    assert gan.value_function((d * 0.9 + 0.05), p, q, dx) < v
    # identical densities: D* = ½, JSD = 0, V = −log 4
    assert torch.allclose(gan.optimal_discriminator(p, p), torch.full_like(p, 0.5))
    assert abs(gan.jsd(p, p, dx)) < 1e-9


def test_jsd_of_disjoint_densities_is_log2():
    x, dx = _grid()
    p = ((x > -3) & (x < -1)).double() / 2
    q = ((x > 1) & (x < 3)).double() / 2
    assert abs(gan.jsd(p, q, dx) - math.log(2)) < 1e-2


def test_fitted_discriminator_approaches_optimum():
    D = gan.fit_discriminator_1d(lambda n: 1.0 + 0.6 * torch.randn(n),
                                 lambda n: -0.5 + torch.randn(n), steps=400)
    x = torch.linspace(-3, 3, 301)
    p, q = gan.gaussian_pdf(x, 1.0, 0.6), gan.gaussian_pdf(x, -0.5, 1.0)
    with torch.no_grad():
        d = torch.sigmoid(D(x.view(-1, 1)))
    w = (p + q) / (p + q).sum()
    assert ((d - gan.optimal_discriminator(p, q)).abs() * w).sum() < 0.05


def test_bilinear_game_simultaneous_diverges_alternating_stays_bounded():
    sim = gan.bilinear_game(1.0, 1.0, lr=0.1, steps=200)
    alt = gan.bilinear_game(1.0, 1.0, lr=0.1, steps=200, alternating=True)
    r_sim, r_alt = sim.norm(dim=1), alt.norm(dim=1)
    assert abs(r_sim[-1] / r_sim[0] - (1 + 0.01) ** 100) < 1e-6  # √(1+lr²) per step
    assert r_alt.max() < 1.2 * r_alt[0] and r_alt.min() > 0.8 * r_alt[0]


def _tiny():
    torch.manual_seed(0)
    G, D = models.ToyGenerator(z_dim=2, hidden=16), models.ToyDiscriminator(hidden=16)
    return G, D, torch.optim.SGD(G.parameters(), lr=0.1), torch.optim.SGD(D.parameters(), lr=0.1)


def test_train_step_moves_both_models_and_logs():
    G, D, og, od = _tiny()
    g0 = [p.clone() for p in G.parameters()]
    d0 = [p.clone() for p in D.parameters()]
    out = gan.train_step(G, D, og, od, torch.randn(8, 2), torch.randn(8, 2))
    assert set(out) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert any(not torch.equal(a, b) for a, b in zip(g0, G.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, D.parameters()))


def test_d_step_does_not_touch_generator_grads():
    G, D, og, od = _tiny()
    real, z = torch.randn(8, 2), torch.randn(8, 2)
    seen = {}
    orig = od.step

    def spy(*a, **k):
        seen["g"] = [p.grad for p in G.parameters()]
        return orig(*a, **k)
    od.step = spy
    gan.train_step(G, D, og, od, real, z)
    assert all(g is None for g in seen["g"])


def test_ema_tracks_and_is_frozen():
    torch.manual_seed(0)
    G = models.MLPGenerator(z_dim=4, hidden=8)
    ema = gan.EMA(G, decay=0.5)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(1.0)
    for _ in range(30):
        ema.update(G)
    for pe, p in zip(ema.model.parameters(), G.parameters()):
        assert torch.allclose(pe, p, atol=1e-6) and not pe.requires_grad


def test_train_gan_learns_a_gaussian_mean():
    """A 2-D GAN should move its samples onto a shifted Gaussian within a few hundred steps."""
    torch.manual_seed(0)
    data = torch.randn(2000, 2) * 0.1 + torch.tensor([2.0, -1.0])
    G, D = models.ToyGenerator(z_dim=2, hidden=32), models.ToyDiscriminator(hidden=32)
    hist = gan.train_gan(G, D, data, steps=400, z_dim=2, batch_size=128, lr_g=2e-3, lr_d=2e-3)
    s = gan.sample(G, 500, 2)
    assert (s.mean(0) - torch.tensor([2.0, -1.0])).norm() < 0.3
    assert len(hist["d_loss"]) == 400
    assert G.training  # sample() restores the mode


def test_bilinear_game_averaging_and_extragradient_converge():
    """Chapter 02 §6: the running average of the alternating iterates and extragradient reach (0, 0);
    a decaying step size does not (simultaneous steps grow by ∏√(1 + η_t²) for any η_t > 0)."""
    alt = gan.bilinear_game(1.0, 1.0, lr=0.1, steps=2000, alternating=True)
    avg = alt.cumsum(0) / torch.arange(1, len(alt) + 1, dtype=alt.dtype).unsqueeze(1)
    assert alt[-200:].norm(dim=1).min() > 0.8 * alt[0].norm()      # the iterates keep cycling
    assert avg[-1].norm() < 0.02 * alt[0].norm()                    # their average converges
    eg = gan.bilinear_game(1.0, 1.0, lr=0.1, steps=2000, extragradient=True)
    r = eg.norm(dim=1)
    assert r[-1] < 1e-3 * r[0]
    assert abs(r[1] / r[0] - math.sqrt(1 - 0.01 + 1e-4)) < 1e-6    # √(1 − lr² + lr⁴) per step


def test_ema_averages_batchnorm_statistics():
    """E8: the averaged model's BN running stats follow the raw model's with the same decay, not a copy."""
    torch.manual_seed(0)
    G = models.DCGANGenerator(z_dim=4, ch=4)
    ema = gan.EMA(G, decay=0.5)
    before = [b.clone() for b in ema.model.buffers()]
    with torch.no_grad():
        for b in G.buffers():
            if b.is_floating_point():
                b.add_(1.0)
    ema.update(G)  # first update: d = min(0.5, 2/11) = 2/11
    d = 2 / 11
    for b0, be, b in zip(before, ema.model.buffers(), G.buffers()):
        if b.is_floating_point():
            assert torch.allclose(be, d * b0 + (1 - d) * b, atol=1e-6)
        else:
            assert torch.equal(be, b)
