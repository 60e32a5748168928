"""Checks for chapter 01 (generative models): fit, evaluate and sample a Gaussian."""
import math

import torch

from genlib.density import fit_gaussian, gaussian_log_prob, sample_gaussian
from genlib.exercises import CheckFailure, expect_close, expect_tensor, register


def _data(n=200, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ a.T + torch.arange(d) + 1.0


def _spd(d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return a @ a.T + 0.5 * torch.eye(d, dtype=torch.float64)


# ----------------------------------------------------------------------------- fit_gaussian
fit = register("basics.fit_gaussian", fit_gaussian,
               "maximum-likelihood mean and covariance of samples x: (N, D)")


@fit.case("returns (mean (D,), cov (D, D))")
def _(fn):
    x = _data(50, 3)
    out = fn(x)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise CheckFailure("return a pair (mean, cov)")
    mean, cov = out
    expect_tensor(mean, (3,), "mean")
    if tuple(cov.shape) == (50, 50):
        raise CheckFailure("cov is (N, N): you multiplied in the wrong order — use "
                           "centredᵀ @ centred, which is (D, D)")
    expect_tensor(cov, (3, 3), "cov")


@fit.case("mean is the average over samples")
def _(fn):
    x = _data(40, 3)
    mean, _ = fn(x)
    if tuple(mean.shape) == (40,):
        raise CheckFailure("mean has one entry per sample: average over dim 0 (samples), not dim 1")
    expect_close(mean, x.mean(0), "mean", "the MLE of μ is the sample average over dim 0")


@fit.case("cov is the MLE (divide by N)")
def _(fn):
    x = _data(10, 3)
    _, cov = fn(x)
    ref = fit_gaussian(x)[1]
    expect_tensor(cov, (3, 3), "cov")
    cov = cov.to(torch.float64)  # dtype has its own case below
    if torch.allclose(cov, ref * 10 / 9, rtol=1e-6):
        raise CheckFailure("you divided by N − 1 (the unbiased estimator, torch.cov's default); "
                           "the maximum-likelihood covariance divides by N")
    raw = x.T @ x / 10
    if torch.allclose(cov, raw, rtol=1e-6):
        raise CheckFailure("you forgot to subtract the mean before the outer product")
    if torch.allclose(cov, torch.diag(torch.diagonal(ref)), rtol=1e-6):
        raise CheckFailure("your covariance is diagonal (per-pixel variances only): the MLE keeps the "
                           "off-diagonal covariances too, (x − μ)ᵀ(x − μ) / N")
    expect_close(cov, ref, "cov", "cov = (x − μ)ᵀ(x − μ) / N")


@fit.case("maximises the likelihood")
def _(fn):
    x = _data(300, 2, seed=3)
    mean, cov = (torch.as_tensor(t, dtype=torch.float64) for t in fn(x))
    best = gaussian_log_prob(x, mean, cov).mean()
    for scale in (0.9, 1.1):
        if gaussian_log_prob(x, mean, cov * scale).mean() > best + 1e-9:
            raise CheckFailure("scaling your covariance raises the likelihood, so it is not the MLE")


@fit.case("keeps the input's dtype")
def _(fn):
    x = _data(20, 2)
    mean, cov = fn(x)
    for what, t in (("mean", mean), ("cov", cov)):
        if torch.is_tensor(t) and t.dtype != x.dtype:
            raise CheckFailure(f"{what} is {t.dtype} for {x.dtype} input: don't cast (e.g. .float()); "
                               "keep the precision the caller gave you")


# ----------------------------------------------------------------------------- gaussian_log_prob
lp = register("basics.gaussian_log_prob", gaussian_log_prob,
              "log N(x; mean, cov) per row of x: (N, D) → (N,)")


@lp.case("shape (N,)")
def _(fn):
    x = _data(7, 3)
    out = fn(x, torch.zeros(3, dtype=torch.float64), _spd())
    expect_tensor(out, (7,), "log-density")


@lp.case("standard normal in 1-D")
def _(fn):
    x = torch.tensor([[0.0], [1.0], [-2.0]], dtype=torch.float64)
    out = fn(x, torch.zeros(1, dtype=torch.float64), torch.eye(1, dtype=torch.float64))
    ref = -0.5 * (math.log(2 * math.pi) + x[:, 0] ** 2)
    expect_tensor(out, (3,), "log-density")
    if torch.allclose(out, -0.5 * x[:, 0] ** 2, atol=1e-6):
        raise CheckFailure("the normalising constant −(D/2)·log 2π is missing")
    if torch.allclose(out, -0.5 * math.log(2 * math.pi) - x[:, 0] ** 2, atol=1e-6):
        raise CheckFailure("the quadratic term needs a factor ½: −½ (x − μ)ᵀ Σ⁻¹ (x − μ)")
    expect_close(out, ref, "log N(x; 0, 1)", "log N(x; 0, 1) = −½ (log 2π + x²)")


@lp.case("scaled variance (log-determinant term)")
def _(fn):
    x = torch.tensor([[0.0, 0.0], [1.0, -1.0]], dtype=torch.float64)
    cov = 4.0 * torch.eye(2, dtype=torch.float64)
    out = fn(x, torch.zeros(2, dtype=torch.float64), cov)
    ref = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64), cov).log_prob(x)
    expect_tensor(out, (2,), "log-density")
    no_det = ref + 0.5 * torch.logdet(cov)
    if torch.allclose(out, no_det, atol=1e-6):
        raise CheckFailure("the −½ log det Σ term is missing: a wider Gaussian has lower density")
    wrong_quad = ref + 0.5 * (x @ torch.linalg.inv(cov) * x).sum(1) - 0.5 * (x @ cov * x).sum(1)
    if torch.allclose(out, wrong_quad, atol=1e-6):
        raise CheckFailure("the quadratic form uses Σ instead of Σ⁻¹")
    expect_close(out, ref, "log-density", "compare with torch.distributions.MultivariateNormal")


@lp.case("matches torch.distributions for a full covariance")
def _(fn):
    cov, mean = _spd(4, seed=5), torch.randn(4, dtype=torch.float64)
    x = _data(20, 4, seed=6)
    ref = torch.distributions.MultivariateNormal(mean, cov).log_prob(x)
    out = fn(x, mean, cov)
    expect_tensor(out, (20,), "log-density")
    chol = torch.linalg.cholesky(cov)
    half_logdet = torch.log(torch.diagonal(chol)).sum()
    if torch.allclose(out, ref + 0.5 * half_logdet, rtol=1e-6, atol=1e-6):
        raise CheckFailure("your log det Σ is half the right value: with Σ = L Lᵀ, log det Σ = "
                           "2·Σ log Lⱼⱼ (the diagonal of L holds square roots) — the factor 2 is missing")
    white_t = torch.linalg.solve_triangular(chol.T, (x - mean).T, upper=True).T
    wrong = ref + 0.5 * (torch.linalg.solve_triangular(chol, (x - mean).T, upper=False).T.pow(2).sum(-1)
                         - white_t.pow(2).sum(-1))
    if torch.allclose(out, wrong, rtol=1e-6, atol=1e-6):
        raise CheckFailure("the quadratic form solves with Lᵀ instead of L: (x−μ)ᵀΣ⁻¹(x−μ) = ‖L⁻¹(x−μ)‖² "
                           "with the lower-triangular L (solve_triangular(L, (x−μ)ᵀ, upper=False))")
    expect_close(out, ref, "log-density", "−½ [D log 2π + log det Σ + (x−μ)ᵀΣ⁻¹(x−μ)]",
                 rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- sample_gaussian
sg = register("basics.sample_gaussian", sample_gaussian,
              "n samples of N(mean, cov) via the Cholesky factor")


@sg.case("shape (n, D)")
def _(fn):
    out = fn(torch.zeros(3, dtype=torch.float64), _spd(), 5, torch.Generator().manual_seed(0))
    expect_tensor(out, (5, 3), "samples")


@sg.case("uses the generator (reproducible)")
def _(fn):
    mean, cov = torch.zeros(2, dtype=torch.float64), _spd(2)
    a = fn(mean, cov, 4, torch.Generator().manual_seed(7))
    b = fn(mean, cov, 4, torch.Generator().manual_seed(7))
    if not torch.isfinite(torch.as_tensor(a)).all():
        raise CheckFailure("your samples contain NaN or inf. torch.sqrt(cov) is elementwise and "
                           "fails on negative covariances: the matrix that plays the role of a "
                           "standard deviation is the Cholesky factor L (Σ = L Lᵀ)")
    if not torch.equal(a, b):
        raise CheckFailure("two calls with generators seeded alike gave different samples: pass "
                           "generator=generator to torch.randn")
    c = fn(mean, cov, 4, torch.Generator().manual_seed(8))
    if torch.equal(a, c):
        raise CheckFailure("generators seeded 7 and 8 gave the same samples: your function reseeds "
                           "internally (torch.manual_seed or a new Generator inside), so the caller's "
                           "generator is ignored. Draw ε with torch.randn(..., generator=generator)")


@sg.case("sample mean and covariance match")
def _(fn):
    mean = torch.tensor([3.0, -1.0], dtype=torch.float64)
    cov = torch.tensor([[2.0, 1.2], [1.2, 1.0]], dtype=torch.float64)
    x = fn(mean, cov, 40000, torch.Generator().manual_seed(1))
    expect_tensor(x, (40000, 2), "samples")
    m_hat, c_hat = fit_gaussian(x.double())
    if (m_hat - mean).abs().max() > 0.05:
        if (m_hat).abs().max() < 0.05:
            raise CheckFailure("the samples are centred at 0: add the mean")
        raise CheckFailure(f"sample mean {m_hat.tolist()} is far from {mean.tolist()}")
    if (c_hat - cov).abs().max() > 0.08:
        chol = torch.linalg.cholesky(cov)
        if (c_hat - chol.T @ chol).abs().max() < 0.08:
            raise CheckFailure("the covariance of your samples is LᵀL, not LLᵀ = Σ: with row vectors "
                               "use ε @ L.T, not ε @ L")
        root = cov.sqrt()
        if (c_hat - root.T @ root).abs().max() < 0.08:
            raise CheckFailure("torch.sqrt(cov) takes the square root of every entry, which is not "
                               "a matrix square root: use the Cholesky factor L (Σ = L Lᵀ)")
        if (c_hat - cov @ cov).abs().max() < 0.15:
            raise CheckFailure("you multiplied the noise by Σ itself; that gives covariance Σ²: "
                               "use the Cholesky factor L (Σ = L Lᵀ)")
        raise CheckFailure(f"sample covariance {c_hat.tolist()} is far from {cov.tolist()}")


# ----------------------------------------------------------------------------- as the chapter uses them
# Chapter 01 fits the dequantised digits, (N, 64) float64, checks that the log-likelihood's gradient
# vanishes at the MLE to 1e-9, adds a float64 ridge to the covariance, and samples 64-D digits from a
# diagonal and a full covariance with its own generators: these cases run the functions that way.
def _digits_like(n=300, d=64, seed=11):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(d, generator=g, dtype=torch.float64)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) / d ** 0.5
    return (base + 0.2 * torch.randn(n, d, generator=g, dtype=torch.float64) @ mix
            + 0.05 * torch.rand(n, d, generator=g, dtype=torch.float64))


@fit.case("as chapter 01 uses it: 64-D float64 digits, exact to double precision")
def _(fn):
    x = _digits_like()
    out = fn(x.clone())
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise CheckFailure("return a pair (mean, cov)")
    mean, cov = out
    ref_mean, ref_cov = fit_gaussian(x)
    expect_tensor(mean, (64,), "mean", dtype=torch.float64)
    expect_tensor(cov, (64, 64), "cov", dtype=torch.float64)
    if not (torch.allclose(mean, ref_mean, rtol=1e-10, atol=1e-12)
            and torch.allclose(cov, ref_cov, rtol=1e-9, atol=1e-12)):
        err = max((mean - ref_mean).abs().max().item(), (cov - ref_cov).abs().max().item())
        raise CheckFailure(f"on 64-D float64 data your estimates differ from the MLE by up to {err:.2g}: the "
                           "chapter checks that the likelihood's gradient vanishes at them to 1e-9, so they "
                           "must be exact in float64 — mean = x.mean(0), cov = (x − μ)ᵀ(x − μ) / N, no cast",
                           generic=True)


@lp.case("as chapter 01 uses it: float64, gradients w.r.t. mean and Cholesky factor match")
def _(fn):
    x = _digits_like(200, 6, seed=12)
    m0, c0 = fit_gaussian(x)
    m0, c0 = m0 + 0.1, c0 * 1.3  # away from the MLE, so the gradients are not zero
    grads = []
    for f in (fn, gaussian_log_prob):
        mu = m0.clone().requires_grad_(True)
        chol = torch.linalg.cholesky(c0).clone().requires_grad_(True)
        out = f(x, mu, chol @ chol.T)
        expect_tensor(out, (200,), "log-density", dtype=torch.float64)
        if not out.requires_grad:
            raise CheckFailure("your log-density carries no gradient w.r.t. the mean and covariance: the "
                               "chapter differentiates it (keep it in torch: no .item(), numpy or detach)")
        out.mean().backward()
        if mu.grad is None or chol.grad is None:
            raise CheckFailure("no gradient reaches the mean or the covariance: compute the log-density "
                               "from them with torch operations")
        grads.append((mu.grad, chol.grad))
    (gm, gl), (rm, rl) = grads
    if not (torch.allclose(gm, rm, rtol=1e-7, atol=1e-10) and torch.allclose(gl, rl, rtol=1e-7, atol=1e-10)):
        err = max((gm - rm).abs().max().item(), (gl - rl).abs().max().item())
        raise CheckFailure(f"the gradient of the mean log-density w.r.t. the mean or the Cholesky factor "
                           f"differs from the reference by up to {err:.2g}: the chapter uses it to show the "
                           "MLE is a stationary point (to 1e-9); compute in float64 without casting",
                           generic=True)


@sg.case("as chapter 01 uses it: 64-D float64 digits, diagonal and full covariances")
def _(fn):
    x = _digits_like(400, 64, seed=13)
    mean, cov = fit_gaussian(x)
    for name, c in (("diagonal", torch.diag(torch.diagonal(cov))),
                    ("full", cov + 1e-4 * torch.eye(64, dtype=torch.float64))):
        a = fn(mean, c, 32, torch.Generator().manual_seed(1))
        expect_tensor(a, (32, 64), f"samples from the {name} covariance", dtype=torch.float64)
        if not torch.isfinite(a).all():
            raise CheckFailure(f"samples from the {name} 64-D covariance contain NaN or inf: use the "
                               "Cholesky factor L (Σ = L Lᵀ), torch.linalg.cholesky(cov)")
        b = fn(mean, c, 32, torch.Generator().manual_seed(1))
        if not torch.equal(a, b):
            raise CheckFailure("two calls with generators seeded alike gave different samples: pass "
                               "generator=generator to torch.randn")
