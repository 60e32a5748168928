"""genlib.diffusion: closed forms of the forward process, the posterior, DDPM/DDIM steps, guidance."""
import math

import pytest
import torch

from genlib import diffusion as D


@pytest.fixture
def sched():
    return D.Schedule.linear(50, 1e-3, 0.2)


def test_schedules_shapes_monotone_and_snr():
    for s in (D.Schedule.linear(100), D.Schedule.cosine(100)):
        assert s.T == 100 and s.betas.shape == s.alpha_bar.shape == (100,)
        assert s.betas.dtype == torch.float32
        assert (s.alpha_bar[1:] < s.alpha_bar[:-1]).all()
        assert torch.allclose(s.alphas, 1 - s.betas)
        assert torch.allclose(s.alpha_bar, torch.cumprod(s.alphas.double(), 0).float())
        assert (s.snr()[1:] < s.snr()[:-1]).all()
    lin = D.Schedule.linear(1000)
    assert lin.betas[0].item() == pytest.approx(1e-4) and lin.betas[-1].item() == pytest.approx(0.02)
    cos = D.Schedule.cosine(1000)
    assert cos.alpha_bar[-1] < 1e-4 < 0.999 < cos.alpha_bar[0]  # ends at (almost) pure noise


def test_q_sample_broadcasts_per_sample_and_matches_moments():
    x0 = torch.randn(3, 1, 4, 4)
    ab = torch.tensor([1.0, 0.25, 0.0])
    noise = torch.randn_like(x0)
    xt = D.q_sample(x0, ab, noise)
    assert torch.allclose(xt[0], x0[0]) and torch.allclose(xt[2], noise[2])
    assert torch.allclose(xt[1], 0.5 * x0[1] + math.sqrt(0.75) * noise[1])
    # moments: x0 = 2 fixed, ᾱ = 0.64 → mean 1.6, variance 0.36
    g = torch.Generator().manual_seed(0)
    x = D.q_sample(torch.full((200000, 1), 2.0), torch.full((200000,), 0.64),
                   torch.randn(200000, 1, generator=g))
    assert x.mean().item() == pytest.approx(1.6, abs=0.01)
    assert x.var().item() == pytest.approx(0.36, abs=0.01)


def test_posterior_is_the_gaussian_conditional(sched):
    """q(x_{t-1} | x_t, x0) ∝ q(x_t | x_{t-1}) q(x_{t-1} | x0): product of two Gaussians in x_{t-1}."""
    torch.manual_seed(0)
    n = 6
    t = torch.tensor([1, 5, 10, 20, 35, 49])
    x0, xt = torch.randn(n, 3).double(), torch.randn(n, 3).double()
    mean, var = D.posterior(x0, xt, t, sched)
    ab, a = sched.alpha_bar.double(), sched.alphas.double()
    for i, ti in enumerate(t.tolist()):
        # x_t | x_{t-1} ~ N(√α x_{t-1}, 1−α): precision in x_{t-1} is α/(1−α)
        # x_{t-1} | x0 ~ N(√ᾱ_{t-1} x0, 1−ᾱ_{t-1})
        p1, m1 = a[ti] / (1 - a[ti]), xt[i] / a[ti].sqrt()
        p2, m2 = 1 / (1 - ab[ti - 1]), ab[ti - 1].sqrt() * x0[i]
        v = 1 / (p1 + p2)
        assert var[i].item() == pytest.approx(v.item(), rel=1e-4)
        assert torch.allclose(mean[i], v * (p1 * m1 + p2 * m2), atol=1e-5)
    assert var.shape == (n, 1)


def test_posterior_at_t0_is_x0_without_variance(sched):
    x0, xt = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    mean, var = D.posterior(x0, xt, torch.zeros(2, dtype=torch.long), sched)
    assert torch.allclose(mean, x0, atol=1e-5) and (var == 0).all()  # float32 round-off only


def test_predict_x0_inverts_q_sample_and_ddim_with_true_eps_recovers_x0(sched):
    torch.manual_seed(1)
    x0, eps = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    ab = sched.alpha_bar[torch.tensor([0, 10, 30, 49])]
    xt = D.q_sample(x0, ab, eps)
    assert torch.allclose(D.predict_x0(xt, eps, ab), x0, atol=1e-4)
    # with the true ε, one DDIM step to ᾱ_prev lands exactly on q_sample(x0, ᾱ_prev, ε) ...
    ab_prev = sched.alpha_bar[torch.tensor([0, 2, 11, 20])]
    assert torch.allclose(D.ddim_step(xt, eps, ab, ab_prev), D.q_sample(x0, ab_prev, eps), atol=1e-4)
    # ... and a step to ᾱ = 1 returns x0 itself
    assert torch.allclose(D.ddim_step(xt, eps, ab, torch.ones(4)), x0, atol=1e-4)


def test_ddpm_step_equals_the_ho_et_al_mean_and_adds_beta_tilde_noise(sched):
    torch.manual_seed(2)
    xt, eps, noise = torch.randn(3, 2), torch.randn(3, 2), torch.randn(3, 2)
    t = torch.tensor([0, 7, 49])
    out = D.ddpm_step(xt, eps, t, sched, noise)
    a, ab, b = sched.alphas[t, None], sched.alpha_bar[t, None], sched.betas[t, None]
    mean = (xt - b / (1 - ab).sqrt() * eps) / a.sqrt()
    ab_prev = torch.cat([torch.ones(1), sched.alpha_bar])[t, None]
    var = b * (1 - ab_prev) / (1 - ab)
    assert torch.allclose(out, mean + var.sqrt() * noise, atol=1e-5)
    assert torch.allclose(out[0], mean[0], atol=1e-5)  # no noise at t = 0


def test_guided():
    c, u = torch.tensor([3.0, 1.0]), torch.tensor([1.0, 1.0])
    assert torch.equal(D.guided(c, u, 1.0), c) and torch.equal(D.guided(c, u, 0.0), u)
    assert torch.equal(D.guided(c, u, 3.0), torch.tensor([7.0, 1.0]))


def test_diffusion_loss_is_zero_for_the_oracle_and_positive_otherwise(sched):
    """An ε-model that knows x0 (a single data point) predicts ε exactly: loss 0."""
    x0 = torch.full((16, 2), 0.7)

    class Oracle(torch.nn.Module):
        def forward(self, xt, t, y=None):
            ab = sched.alpha_bar[t][:, None]
            return (xt - ab.sqrt() * 0.7) / (1 - ab).sqrt()

    g = torch.Generator().manual_seed(0)
    assert D.diffusion_loss(Oracle(), x0, sched, generator=g).item() < 1e-8
    zero = lambda xt, t, y=None: torch.zeros_like(xt)  # noqa: E731
    assert D.diffusion_loss(zero, x0, sched, generator=g).item() == pytest.approx(1.0, abs=0.4)


class _GaussOracle(torch.nn.Module):
    """Exact ε-predictor for data x0 ~ N(m, s²) (per coordinate): E[ε | x_t] in closed form."""
    null_class = 2

    def __init__(self, sched, m, s):
        super().__init__()
        self.sched, self.m, self.s = sched, m, s
        self.w = torch.nn.Parameter(torch.zeros(()))  # so that next(parameters()) works

    def forward(self, xt, t, y=None):
        ab = self.sched.alpha_bar[t].view(-1, *[1] * (xt.ndim - 1))
        var = ab * self.s ** 2 + 1 - ab                 # Var x_t
        return (1 - ab).sqrt() * (xt - ab.sqrt() * self.m) / var


def test_samplers_with_the_exact_denoiser_reproduce_the_data_distribution():
    """With the exact ε of Gaussian data N(0.5, 0.3²), DDPM at T = 1000 and DDIM over all
    T = 200 steps return that distribution; DDIM with 10 steps keeps the mean but under-disperses
    (its discretisation error shrinks the spread, measured std ≈ 0.23 here)."""
    g = torch.Generator().manual_seed(0)
    s = D.Schedule.cosine(1000)
    x = D.sample_ddpm(_GaussOracle(s, 0.5, 0.3), (20000, 1), s, generator=g, clip=False)
    assert x.mean().item() == pytest.approx(0.5, abs=0.01)
    assert x.std().item() == pytest.approx(0.3, abs=0.01)
    s = D.Schedule.cosine(200)
    x = D.sample_ddim(_GaussOracle(s, 0.5, 0.3), (20000, 1), s, 200, generator=g, clip=False)
    assert x.mean().item() == pytest.approx(0.5, abs=0.01)
    assert x.std().item() == pytest.approx(0.3, abs=0.01)
    x = D.sample_ddim(_GaussOracle(s, 0.5, 0.3), (20000, 1), s, 10, generator=g, clip=False)
    assert x.mean().item() == pytest.approx(0.5, abs=0.01)
    assert 0.2 < x.std().item() < 0.27


def test_ddim_timesteps():
    assert D.ddim_timesteps(100, 5).tolist() == [99, 74, 50, 25, 0]
    assert D.ddim_timesteps(10, 10).tolist() == list(range(9, -1, -1))
    assert D.ddim_timesteps(10, 1).tolist() == [9]
    with pytest.raises(ValueError):
        D.ddim_timesteps(10, 11)


def test_guidance_is_one_batched_call_and_nfe_counted():
    sched = D.Schedule.cosine(20)
    net = D.TinyUNet(ch=8, emb=16, n_classes=3, time_scale=1000 / 20)
    calls = []
    net.register_forward_hook(lambda m, a, o: calls.append(len(a[0])))
    counted = D.CountNFE(net, 5)
    y = torch.tensor([0, 1, 2, 0, 1])
    D.sample_ddim(counted, (5, 1, 8, 8), sched, 4, y=y, guidance=2.0, device="cpu")
    assert calls == [10] * 4 and counted.nfe == 8
    counted.nfe = 0
    D.sample_ddpm(counted, (5, 1, 8, 8), sched, y=y, device="cpu")
    assert counted.nfe == 20


def test_models_shapes_and_null_class():
    net = D.TinyUNet()
    assert 250_000 < sum(p.numel() for p in net.parameters()) < 350_000
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([0.0, 0.5, 1.0])
    assert net(x, t, torch.tensor([0, 9, 10])).shape == (3, 1, 8, 8)
    # y=None is the null label
    assert torch.equal(net(x, t), net(x, t, torch.full((3,), net.null_class)))
    mlp = D.TimeMLP(dim=2, n_classes=0)
    assert mlp(torch.randn(4, 2), torch.rand(4)).shape == (4, 2)


def test_load_pretrained_unknown_name():
    with pytest.raises(ValueError, match="unknown pretrained"):
        D.load_pretrained("nope")
