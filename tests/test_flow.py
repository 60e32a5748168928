"""genlib.flow: the straight path, its velocity, the loss, Euler/Heun and straightness."""
import pytest
import torch

from genlib import flow as Fl
from genlib.diffusion import CountNFE, TinyUNet


def test_interpolate_and_velocity():
    x0, x1 = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    t = torch.tensor([0.0, 0.25, 1.0])
    xt = Fl.interpolate(x0, x1, t)
    assert torch.allclose(xt[0], x0[0]) and torch.allclose(xt[2], x1[2])
    assert torch.allclose(xt[1], 0.75 * x0[1] + 0.25 * x1[1])
    assert torch.equal(Fl.velocity_target(x0, x1), x1 - x0)
    # the velocity is the time derivative of the path
    h = 1e-3
    tt = torch.full((3,), 0.4)
    fd = (Fl.interpolate(x0, x1, tt + h) - Fl.interpolate(x0, x1, tt - h)) / (2 * h)
    assert torch.allclose(fd, Fl.velocity_target(x0, x1), atol=1e-3)


def test_flow_matching_loss():
    x0, x1, t = torch.randn(8, 2), torch.randn(8, 2), torch.rand(8)
    perfect = lambda x, t, y=None: x1 - x0  # noqa: E731
    assert Fl.flow_matching_loss(perfect, x0, x1, t).item() == 0
    zero = lambda x, t, y=None: torch.zeros_like(x)  # noqa: E731
    assert Fl.flow_matching_loss(zero, x0, x1, t).item() == pytest.approx(((x1 - x0) ** 2).mean().item())


def test_euler_is_exact_for_a_constant_velocity_and_first_order_otherwise():
    x0 = torch.randn(5, 2)
    assert torch.allclose(Fl.euler_sample(lambda x, t: torch.ones_like(x), x0, 7), x0 + 1, atol=1e-6)
    # dx/dt = x: exact x0·e; Euler gives x0·(1 + 1/n)^n
    for n in (1, 4, 16):
        out = Fl.euler_sample(lambda x, t: x, x0, n)
        assert torch.allclose(out, x0 * (1 + 1 / n) ** n, atol=1e-5)
    # time argument: t = k/n, shape (N,)
    seen = []
    Fl.euler_sample(lambda x, t: seen.append(t.clone()) or torch.zeros_like(x), x0, 4)
    assert [s.shape for s in seen] == [(5,)] * 4 and [s[0].item() for s in seen] == [0, .25, .5, .75]


class _Lin(torch.nn.Module):
    """v(x, t) = x (ignores t, y)."""
    null_class = 0

    def forward(self, x, t, y=None):
        return x


def test_heun_is_second_order_and_euler_first():
    x0 = torch.ones(1, 1)
    e = torch.exp(torch.tensor(1.0))
    err = {n: (Fl.sample_heun(_Lin(), x0, n) - e).abs().item() for n in (4, 8)}
    assert 3.5 < err[4] / err[8] < 4.5     # halving the step divides the error by ~4
    err_e = {n: (Fl.sample_euler(_Lin(), x0, n) - e).abs().item() for n in (4, 8)}
    assert 1.7 < err_e[4] / err_e[8] < 2.3
    assert err[8] < err_e[8] / 10


def test_straightness_and_path_length():
    x0 = torch.zeros(2, 2)
    line = torch.stack([x0 + k * torch.tensor([1.0, 0.0]) for k in range(4)])      # straight
    assert Fl.straightness(line) == pytest.approx(1.0)
    assert torch.allclose(Fl.path_length(line), torch.full((2,), 3.0))
    corner = torch.stack([torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]])])
    assert Fl.straightness(corner) == pytest.approx(2 ** 0.5 / 2)


def test_samplers_nfe_and_guidance_batching():
    net = TinyUNet(ch=8, emb=16, n_classes=3)
    x0, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    c = CountNFE(net, 4)
    Fl.sample_euler(c, x0, 6, y=y)
    assert c.nfe == 6
    c.nfe = 0
    out, traj = Fl.sample_heun(c, x0, 3, y=y, guidance=2.0, return_traj=True)
    assert c.nfe == 12 and traj.shape == (4, 4, 1, 8, 8) and torch.equal(traj[-1], out)


def test_training_learns_a_shifted_gaussian_and_reflow_pairs():
    """Flow matching from N(0, I) to N(3, 0.5²) in 2-D: samples land on the target's moments."""
    from genlib.diffusion import TimeMLP
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    data = 3 + 0.5 * torch.randn(4000, 2, generator=g)
    model, losses = Fl.train_flow(TimeMLP(dim=2, hidden=64), data, 600, lr=3e-3, progress=False)
    assert sum(losses[-50:]) / 50 < sum(losses[:50]) / 50
    x = Fl.sample_euler(model, torch.randn(4000, 2, generator=g), 16)
    assert x.mean(0).sub(3).abs().max().item() < 0.15
    assert (x.std(0) - 0.5).abs().max().item() < 0.15
    x0, x1 = Fl.reflow_pairs(model, 100, (2,), steps=8, generator=g)
    assert x0.shape == x1.shape == (100, 2)
    assert torch.allclose(x1, Fl.sample_heun(model, x0, 8))


def test_heun_last_euler_is_edms_variant():
    """last_euler: NFE = 2·steps − 1, the network is never called at t = 1, and the last step is
    Euler's; the result sits between Euler and full Heun on dx/dt = x."""
    net = TinyUNet(ch=8, emb=16, n_classes=3)
    x0, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    seen = []

    class Spy(torch.nn.Module):
        null_class = 3

        def forward(self, x, t, y=None):
            seen.append(t.clone())
            return net(x, t, y)

    c = CountNFE(Spy(), 4)
    Fl.sample_heun(c, x0, 3, y=y, last_euler=True)
    assert c.nfe == 5 and max(float(t.max()) for t in seen) < 1 - 1e-6
    one = torch.ones(1, 1)
    e = torch.exp(torch.tensor(1.0))
    edm = Fl.sample_heun(_Lin(), one, 4, last_euler=True).item()
    # by hand: three Heun steps (factor 1 + h + h²/2 each), then one Euler step (1 + h), h = 1/4
    h = 0.25
    assert edm == pytest.approx((1 + h + h * h / 2) ** 3 * (1 + h), rel=1e-6)
    assert Fl.sample_euler(_Lin(), one, 4).item() < edm < Fl.sample_heun(_Lin(), one, 4).item() < e.item()
