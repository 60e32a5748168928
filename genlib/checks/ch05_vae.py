"""Checks for chapter 05 (VAE): reparameterisation, Gaussian KL, the negative ELBO, the IWAE bound."""
import math
import re

import torch
import torch.nn.functional as F

from genlib.exercises import CheckFailure, expect_close, expect_tensor, register
from genlib.losses import gaussian_kl, negative_elbo, reparameterize
from genlib.vae import iwae_bound


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-3, atol: float = 1e-4) -> bool:
    return a.shape == b.shape and bool(torch.isfinite(a).all()) and torch.allclose(a, b, rtol=rtol, atol=atol)


_NO_EPS = ("no noise: you returned mu + σ without multiplying σ by ε ~ N(0, I) (the S0.5 bug). "
           "Use z = mu + exp(0.5·logvar) * torch.randn_like(mu)")


def _no_noise(z, mu, logvar):
    """The S0.5 bug, z = mu + σ with no ε: later cases defer to the "no noise" diagnosis."""
    return torch.is_tensor(z) and z.shape == mu.shape and torch.allclose(z, mu + torch.exp(0.5 * logvar),
                                                                        rtol=1e-4, atol=1e-5)


# ============================================================================ reparameterize
rep = register("vae.reparameterize", reparameterize,
               "z = mu + exp(logvar/2)·ε, ε ~ N(0, I): a differentiable sample of q(z|x)")


@rep.case("returns z shaped like mu")
def _(fn):
    mu, logvar = torch.zeros(8, 4), torch.zeros(8, 4)
    expect_tensor(fn(mu, logvar), (8, 4), "z")


@rep.case("draws fresh noise")
def _(fn):
    torch.manual_seed(0)
    mu = torch.full((500, 3), 0.5)
    # logvar 0.5, not 0: at 0, "logvar used as σ" and "sqrt(logvar)" give σ = 0 and would read as
    # "nothing was sampled"; the std case names those mistakes
    logvar = torch.full((500, 3), 0.5)
    z1, z2 = fn(mu, logvar), fn(mu, logvar)
    expect_tensor(z1, mu.shape, "z")
    if torch.allclose(z1, mu):
        raise CheckFailure("z equals mu: nothing was sampled. Add the noise term exp(logvar/2)·ε")
    if _no_noise(z1, mu, logvar):
        raise CheckFailure(_NO_EPS)
    if z1.std() < 1e-3:
        raise CheckFailure("z does not vary: every entry is the same number. Draw ε with "
                           "torch.randn_like(mu)")
    if torch.equal(z1, z2):
        raise CheckFailure("two calls returned the same z: draw a new ε every call "
                           "(torch.randn_like inside the function, no fixed seed)")


@rep.case("independent ε for every sample and dimension")
def _(fn):
    torch.manual_seed(1)
    z = fn(torch.zeros(400, 5), torch.full((400, 5), 0.5))
    expect_tensor(z, (400, 5), "z")
    if _no_noise(z, torch.zeros(400, 5), torch.full((400, 5), 0.5)):
        raise CheckFailure(_NO_EPS)
    if torch.allclose(z, z[:1].expand_as(z)):
        raise CheckFailure("every row of z is the same: one ε was shared by the whole batch "
                           "(torch.randn(D) broadcast). Draw ε with the shape of mu: torch.randn_like(mu)")
    if torch.allclose(z, z[:, :1].expand_as(z)):
        raise CheckFailure("all latent dimensions of a sample are equal: one ε per sample was "
                           "broadcast over dimensions. Draw ε with the shape of mu: torch.randn_like(mu)")
    c = torch.corrcoef(z.T)
    off = (c - torch.eye(5)).abs().max().item()
    if off > 0.3:
        raise CheckFailure(f"the latent dimensions of z are correlated (|r| up to {off:.2f}); "
                           "the entries of ε must be independent N(0, 1) draws")


@rep.case("sample mean is mu and std is exp(logvar/2)")
def _(fn):
    torch.manual_seed(2)
    n = 20000
    mu = torch.tensor([1.0, -2.0, 0.5]).expand(n, 3).contiguous()
    logvar = torch.tensor([-1.0, 1.0, 2.0]).expand(n, 3).contiguous()
    z = fn(mu, logvar)
    expect_tensor(z, (n, 3), "z")
    if not torch.isfinite(z).all():
        raise CheckFailure("z contains NaN for logvar = -1: did you take sqrt(logvar)? logvar = "
                           "log σ² is any real number; σ = exp(logvar / 2)")
    if _no_noise(z, mu, logvar):
        raise CheckFailure(_NO_EPS)
    m, s = z.mean(0), z.std(0)
    want_s = torch.exp(0.5 * logvar[0])
    # uniform noise (torch.rand_like): mean mu + σ/2, std σ/√12
    if torch.allclose(m, mu[0] + 0.5 * want_s, atol=0.05) and torch.allclose(s, want_s / math.sqrt(12), rtol=0.05):
        raise CheckFailure("ε is uniform on [0, 1) (torch.rand_like): z is shifted by σ/2 and too narrow "
                           "(std σ/√12). ε must be standard normal: torch.randn_like(mu)")
    if ((m - mu[0]).abs() > 5 * s / math.sqrt(n) + 0.02).any():  # 5 standard errors
        raise CheckFailure(f"the sample mean is {[round(v, 2) for v in m.tolist()]}, expected "
                           f"mu = [1.0, -2.0, 0.5]: add mu to the scaled noise")
    if torch.allclose(s, want_s, rtol=0.05):
        return
    got = [round(v, 2) for v in s.tolist()]
    if torch.allclose(s, torch.exp(logvar[0]), rtol=0.05):
        raise CheckFailure(f"sample std {got} equals exp(logvar) = σ²: you scaled ε by the variance. "
                           "The standard deviation is exp(logvar / 2)")
    if torch.allclose(s, logvar[0].abs(), rtol=0.05):
        raise CheckFailure(f"sample std {got} equals |logvar|: you used logvar as σ. It is log σ², "
                           "so σ = exp(logvar / 2)")
    if torch.allclose(s, torch.exp(0.5 * logvar[0]).clamp(min=1.0), rtol=0.05):
        raise CheckFailure(f"sample std {got}: σ ≥ 1 even where logvar < 0 — is logvar going through a "
                           "ReLU (the S4.8 bug)? log σ² must be free to be negative")
    if torch.allclose(s, torch.exp(0.25 * logvar[0]), rtol=0.05):
        raise CheckFailure(f"sample std {got} equals exp(logvar/4): you took the square root of σ. "
                           "σ = exp(logvar / 2)")
    raise CheckFailure(f"sample std {got}, expected exp(logvar/2) = "
                       f"{[round(v, 2) for v in want_s.tolist()]}")


@rep.case("gradients reach mu and logvar")
def _(fn):
    torch.manual_seed(3)
    mu = torch.randn(64, 3, requires_grad=True)
    logvar = (0.5 * torch.randn(64, 3)).requires_grad_()
    z = fn(mu, logvar)
    expect_tensor(z, (64, 3), "z")
    if not z.requires_grad:
        raise CheckFailure("z has no gradient: it was sampled outside the graph (Normal(...).sample(), "
                           "torch.no_grad or .detach()). The trick is z = mu + σ·ε, with only ε random")
    z.sum().backward()
    gm, gl = mu.grad, logvar.grad
    if gm is None or gl is None or gm.abs().max() == 0 or gl.abs().max() == 0:
        raise CheckFailure("no gradient reaches mu or logvar (torch.normal(mu, σ) is not "
                           "differentiable). Write z = mu + exp(0.5·logvar) * ε with ε = torch.randn_like(mu)")
    expect_close(gm, torch.ones_like(gm), "dz/dmu", "z should depend on mu as mu + (noise)")
    expect_close(gl, 0.5 * (z - mu).detach(), "dz/dlogvar",
                 "with z = mu + exp(logvar/2)·ε, dz/dlogvar = ½·(z − mu)", rtol=1e-3, atol=1e-4)


@rep.case("runs on the device and dtype of its inputs (the chapter trains on a GPU when there is one)")
def _(fn):
    # the meta device stands in for a GPU: noise made without device= lands on the CPU and clashes
    try:
        z = fn(torch.zeros(4, 3, device="meta"), torch.zeros(4, 3, device="meta"))
    except Exception as e:  # noqa: BLE001
        if re.search(r"same device|expected device|on device|different devices", str(e)):
            raise  # a device mismatch: the mechanism names it
        z = None  # the meta stand-in cannot run this code (e.g. argument validation): not judged here
    if z is not None:
        expect_tensor(z, (4, 3), "z for inputs on another device", device="meta")
    z = fn(torch.zeros(64, 16, dtype=torch.float64), torch.full((64, 16), -1.0, dtype=torch.float64))
    expect_tensor(z, (64, 16), "z for float64 inputs", dtype=torch.float64)


# ============================================================================ gaussian_kl
kl = register("vae.gaussian_kl", gaussian_kl,
              "KL(N(mu, e^logvar) ‖ N(0, I)) per sample, summed over latent dims: (N, D) → (N,)")


def _kl_ref(mu, logvar):
    from torch.distributions import Normal, kl_divergence

    q = Normal(mu.double(), (0.5 * logvar.double()).exp())
    p = Normal(torch.zeros_like(mu, dtype=torch.float64), torch.ones_like(mu, dtype=torch.float64))
    return kl_divergence(q, p).sum(-1).to(mu.dtype)


@kl.case("one KL per sample, shape (N,)")
def _(fn):
    mu, logvar = torch.randn(5, 3, generator=_gen(0)), torch.randn(5, 3, generator=_gen(1))
    out = fn(mu, logvar)
    if torch.is_tensor(out) and out.ndim == 0:
        raise CheckFailure("you returned a single number: sum over the latent dimension only "
                           "(dim=-1), one KL per sample; average over the batch in the training loss")
    if torch.is_tensor(out) and tuple(out.shape) == (5, 3):
        raise CheckFailure("you returned one KL per latent dimension: sum over dim=-1 to get (N,)")
    expect_tensor(out, (5,), "the KL")


@kl.case("zero when q is the prior")
def _(fn):
    out = fn(torch.zeros(4, 6), torch.zeros(4, 6))
    expect_close(out, torch.zeros(4), "KL(N(0, I) ‖ N(0, I))",
                 "the KL of a distribution with itself is 0: check the −1 and the −logvar terms")


@kl.case("matches torch.distributions")
def _(fn):
    d = 8
    mu = torch.randn(64, d, generator=_gen(2))
    logvar = torch.randn(64, d, generator=_gen(3))
    out = fn(mu, logvar)
    ref = _kl_ref(mu, logvar)
    expect_tensor(out, ref.shape, "the KL")
    if _close(out, ref):
        return
    if _close(out, -ref):
        raise CheckFailure("your KL has the wrong sign: it is ½Σ(mu² + e^logvar − 1 − logvar) ≥ 0")
    if _close(out, 2 * ref):
        raise CheckFailure("your KL is twice the right value: you forgot the ½")
    if _close(out, ref / d):
        raise CheckFailure("your KL is 1/D of the right value: you averaged over latent dimensions. "
                           "Sum them — the KL of independent dimensions adds up")
    as_log_sigma = _kl_ref(mu, 2 * logvar)
    if _close(out, as_log_sigma):
        raise CheckFailure("you treated logvar as log σ (used e^{2·logvar} as the variance). "
                           "logvar = log σ², so the variance is e^logvar")
    sigma_as_var = 0.5 * (mu.pow(2) + (0.5 * logvar).exp() - 1 - 0.5 * logvar).sum(-1)
    if _close(out, sigma_as_var):
        raise CheckFailure("you used σ where the formula needs σ² = e^logvar")
    var = logvar.exp()
    reversed_kl = 0.5 * ((1 + mu.pow(2)) / var - 1 + logvar).sum(-1)
    if _close(out, reversed_kl):
        raise CheckFailure("you computed the reversed KL(p ‖ q) = ½Σ((1 + mu²)/σ² − 1 + logvar). The VAE's "
                           "term is KL(q ‖ p) from the encoder's q to the prior: ½Σ(mu² + σ² − 1 − logvar)")
    expect_close(out, ref, "your KL", "closed form: ½ Σ_j (mu_j² + e^{logvar_j} − 1 − logvar_j)",
                 rtol=1e-3, atol=1e-4)


@kl.case("agrees with a Monte Carlo estimate")
def _(fn):
    g = _gen(4)
    mu, logvar = torch.tensor([[0.7, -1.2, 0.1]]), torch.tensor([[-0.8, 0.4, 1.1]])
    z = mu + (0.5 * logvar).exp() * torch.randn(200_000, 3, generator=g, dtype=torch.float64)
    log_q = -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) / logvar.exp()).sum(-1)
    log_p = -0.5 * (math.log(2 * math.pi) + z.pow(2)).sum(-1)
    w = log_q - log_p
    est, se = w.mean().item(), w.std().item() / math.sqrt(len(w))
    out = fn(mu, logvar)
    expect_tensor(out, (1,), "the KL")
    if abs(out.item() - est) > 5 * se + 1e-3:
        raise CheckFailure(f"KL = {out.item():.4f}, but E_q[log q(z) − log p(z)] estimated from 200,000 "
                           f"samples is {est:.4f} ± {se:.4f}", generic=True)


@kl.case("never negative, finite for extreme log-variances")
def _(fn):
    # float32: e^-120 ≈ 8e-53 is below the smallest float32 (1.4e-45), so σ² = e^logvar is 0 there
    mu = torch.randn(32, 4, generator=_gen(5)) * 3
    logvar = torch.linspace(-120, 10, 128).view(32, 4)
    out = fn(mu, logvar)
    expect_tensor(out, (32,), "the KL")
    if not torch.isfinite(out).all():
        raise CheckFailure("NaN or inf for logvar in [-120, 10]: below logvar ≈ −104, σ² underflows to 0 "
                           "in float32, so anything that takes the log of σ² — log(σ**2) by hand, or "
                           "torch.distributions.kl_divergence on Normal(mu, σ) — gives inf. Use logvar "
                           "itself where the formula has log σ²: ½Σ(mu² + e^logvar − 1 − logvar)")
    if (out < -1e-4).any():
        raise CheckFailure(f"negative KL ({out.min().item():.3g}): a KL divergence is ≥ 0 — check the signs")


@kl.case("differentiable in mu and logvar")
def _(fn):
    mu = torch.randn(6, 3, generator=_gen(6)).requires_grad_()
    logvar = torch.randn(6, 3, generator=_gen(7)).requires_grad_()
    out = fn(mu, logvar)
    expect_tensor(out, (6,), "the KL")
    if not out.requires_grad:
        raise CheckFailure("the KL carries no gradient: keep it in torch (no .item(), numpy or detach)")
    out.sum().backward()
    expect_close(mu.grad, mu.detach(), "dKL/dmu", "the gradient of ½mu² is mu")
    expect_close(logvar.grad, 0.5 * (logvar.detach().exp() - 1), "dKL/dlogvar",
                 "the gradient of ½(e^logvar − logvar) is ½(e^logvar − 1)")


# ============================================================================ negative ELBO
nelbo = register("vae.negative_elbo", negative_elbo,
                 "−ELBO per image: Bernoulli NLL from logits, summed over pixels, + KL: (N,)")


def _elbo_inputs(seed: int = 0, n: int = 6, d: int = 4):
    g = _gen(seed)
    logits = 2 * torch.randn(n, 1, 8, 8, generator=g)
    x = (torch.rand(n, 1, 8, 8, generator=g) < 0.4).float()
    mu, logvar = torch.randn(n, d, generator=g), 0.5 * torch.randn(n, d, generator=g)
    return logits, x, mu, logvar


@nelbo.case("one value per image, shape (N,)")
def _(fn):
    out = fn(*_elbo_inputs())
    if torch.is_tensor(out) and out.ndim == 0:
        raise CheckFailure("you returned one number for the batch: return −ELBO per image (N,), "
                           "summed over that image's pixels; average over the batch in the training loop")
    expect_tensor(out, (6,), "−ELBO")


@nelbo.case("reconstruction (summed over pixels) + KL")
def _(fn):
    logits, x, mu, logvar = _elbo_inputs(1)
    out = fn(logits, x, mu, logvar)
    expect_tensor(out, (6,), "−ELBO")
    klv = gaussian_kl(mu, logvar)
    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1)
    if _close(out, rec.sum(1) + klv):
        return
    if _close(out, rec.mean(1) + klv) or _close(out, rec.mean() + klv):
        raise CheckFailure("your reconstruction term is a per-pixel mean: the log-likelihood of an image "
                           "is the sum over its 64 pixels. With a mean the KL weighs 64× too much "
                           "(the S0.5 scale bug) — use reduction='none' then .sum over pixels")
    if _close(out, rec.sum(1)):
        raise CheckFailure("no KL term: that is a plain autoencoder's loss, not the ELBO (S3.5, S4.8). "
                           "Add gaussian_kl(mu, logvar)")
    if _close(out, rec.sum(1) - klv):
        raise CheckFailure("the KL has the wrong sign: −ELBO = reconstruction NLL + KL")
    twice = F.binary_cross_entropy_with_logits(torch.sigmoid(logits), x, reduction="none").flatten(1).sum(1)
    if _close(out, twice + klv) or _close(out, twice.mean() + klv):
        raise CheckFailure("you applied sigmoid and then a loss that expects logits: the decoder's "
                           "outputs are logits — pass them straight to binary_cross_entropy_with_logits")
    mse = (torch.sigmoid(logits) - x).pow(2).flatten(1).sum(1)
    if _close(out, mse + klv) or _close(out, (logits - x).pow(2).flatten(1).sum(1) + klv):
        raise CheckFailure("squared error is not the Bernoulli log-likelihood of 0/1 pixels (S4.8 compiled "
                           "its VAE with MSE): use binary cross-entropy from logits")
    if _close(out, rec.sum(1) + klv / mu.shape[1]):
        raise CheckFailure("your KL is averaged over the latent dimensions: the KL of independent "
                           "dimensions adds up, so sum it over dim=-1 (as gaussian_kl does)")
    if _close(out, rec.sum(1) + 0.5 * klv) or _close(out, rec.sum(1) + 2 * klv):
        raise CheckFailure("the KL is off by a factor of 2: check gaussian_kl's ½")
    expect_close(out, rec.sum(1) + klv, "−ELBO",
                 "−ELBO = Σ_pixels BCE_with_logits(logits, x) + ½Σ(mu² + e^logvar − 1 − logvar)",
                 rtol=1e-3, atol=1e-3)


@nelbo.case("exact for confident logits (computed from logits)")
def _(fn):
    n, d = 2, 3
    x = torch.ones(n, 1, 8, 8)
    x[1] = 0.0
    logits = torch.full((n, 1, 8, 8), 200.0)
    logits[0] = -200.0                       # confidently wrong everywhere: 200 nats per pixel
    logits.requires_grad_()
    mu, logvar = torch.zeros(n, d), torch.zeros(n, d)
    out = fn(logits, x, mu, logvar)
    expect_tensor(out, (n,), "−ELBO")
    want = torch.tensor([64 * 200.0, 64 * 200.0])
    if not torch.isfinite(out).all():
        raise CheckFailure("−ELBO is inf/NaN for logits of ±200: log(sigmoid(·)) underflows. Compute "
                           "the Bernoulli NLL from logits (F.binary_cross_entropy_with_logits)")
    if not torch.allclose(out, want, rtol=1e-4):
        got = f"−ELBO = {[round(v, 1) for v in out.detach().tolist()]} for logits of ±200 that are wrong on " \
              "every pixel; the exact value is 64·200 = 12800 per image."
        if torch.allclose(out, want / 2, rtol=1e-3):
            raise CheckFailure(f"{got} You got 64·100: going through sigmoid and binary_cross_entropy clips "
                               "log at −100. Compute from logits (F.binary_cross_entropy_with_logits)")
        if torch.allclose(out, want / 64, rtol=1e-3):
            raise CheckFailure(f"{got} You got 200, one pixel's worth: sum over the pixels, not a mean")
        raise CheckFailure(f"{got} Compute the Bernoulli NLL from logits (F.binary_cross_entropy_with_logits), "
                           "summed over the pixels of each image")
    out.sum().backward()
    g = logits.grad
    if g is None or g.abs().min() < 0.5:
        raise CheckFailure("no gradient reaches confidently wrong logits (the sigmoid saturates): "
                           "compute the loss from logits with binary_cross_entropy_with_logits")


@nelbo.case("as chapter 05 uses it: a batch of 64 from a trained VAE, logits up to ±30, float32")
def _(fn):
    # the chapter asserts allclose(yours, genlib's, atol=1e-3) on a trained model's outputs, no grad
    g = _gen(9)
    logits = (10 * torch.randn(64, 1, 8, 8, generator=g)).clamp(-30, 30)
    x = (torch.rand(64, 1, 8, 8, generator=g) < 0.3).float()
    mu, logvar = 2 * torch.randn(64, 16, generator=g), torch.linspace(-9, 1, 64 * 16).view(64, 16)
    with torch.no_grad():
        out = fn(logits.clone(), x.clone(), mu.clone(), logvar.clone())
    ref = negative_elbo(logits, x, mu, logvar)
    expect_tensor(out, (64,), "−ELBO of 64 images", dtype=torch.float32)
    if not (torch.isfinite(out).all() and torch.allclose(out, ref, atol=1e-3, rtol=1e-5)):
        err = (out - ref).abs().max().item() if torch.isfinite(out).all() else float("nan")
        raise CheckFailure(f"on a trained model's outputs (logits up to ±30, 16 latents) your −ELBO differs "
                           f"from genlib's by up to {err:.3g} nats (the chapter asserts ≤ 1e-3): compute the "
                           "reconstruction from logits (F.binary_cross_entropy_with_logits, summed over "
                           "pixels) and add the KL summed over the latents", generic=True)


# ============================================================================ IWAE
iw = register("vae.iwae", iwae_bound,
              "IWAE bound log(1/K Σ_k e^{log_w_k}) from log-weights (K, N) → (N,), stably")


@iw.case("one value per image, shape (N,)")
def _(fn):
    log_w = torch.randn(5, 3, generator=_gen(0))
    out = fn(log_w)
    if torch.is_tensor(out) and tuple(out.shape) == (5,):
        raise CheckFailure("you reduced over the images: the K samples are on axis 0 of log_w (K, N)")
    expect_tensor(out, (3,), "the IWAE bound")


@iw.case("K = 1 gives the single log-weight back")
def _(fn):
    log_w = torch.randn(1, 7, generator=_gen(1))
    expect_close(fn(log_w), log_w[0], "the bound for K = 1",
                 "with one sample the average weight is that weight: log(w) = log_w")


@iw.case("log of the average weight")
def _(fn):
    k = 10
    log_w = 3 * torch.randn(k, 50, generator=_gen(2))
    out = fn(log_w)
    expect_tensor(out, (50,), "the IWAE bound")
    ref = torch.logsumexp(log_w, 0) - math.log(k)
    if _close(out, ref, rtol=1e-4):
        return
    if _close(out, ref + math.log(k), rtol=1e-4):
        raise CheckFailure("your bound is log K too high: logsumexp sums the weights, IWAE averages "
                           "them — subtract log K")
    if _close(out, log_w.mean(0), rtol=1e-4):
        raise CheckFailure("you averaged the log-weights: that is the ordinary ELBO (Jensen's bound). "
                           "IWAE takes the log of the averaged weights: logsumexp(log_w, 0) − log K")
    if _close(out, log_w.max(0).values, rtol=1e-4):
        raise CheckFailure("you took the largest log-weight: IWAE averages all K weights")
    expect_close(out, ref, "the IWAE bound", "log (1/K Σ_k exp(log_w_k))", rtol=1e-4)


@iw.case("stable for log-weights of ±1000")
def _(fn):
    log_w = torch.tensor([[-1000.0, 1000.0], [-1001.0, 999.0], [-1002.0, 998.0]])
    out = fn(log_w)
    expect_tensor(out, (2,), "the IWAE bound")
    ref = torch.logsumexp(log_w, 0) - math.log(3)
    if not torch.isfinite(out).all():
        raise CheckFailure("inf/NaN for log-weights of ±1000 (real images give log p(x, z) in the "
                           "hundreds or thousands): exp under/overflows. Use torch.logsumexp(log_w, 0) − log K")
    expect_close(out, ref, "the bound for log-weights of ±1000", "use torch.logsumexp(log_w, 0) − log K",
                 rtol=1e-5)


@iw.case("as chapter 05 uses it: K up to 1,000 log-weights of a VAE, float32")
def _(fn):
    # vae.iwae_log_px hands bound() (K, N) float32 log p(x, z) − log q(z|x), tens of nats below 0
    g = _gen(10)
    for k in (1, 10, 1000):
        log_w = -40 + 6 * torch.randn(k, 64, generator=g)
        out = fn(log_w.clone())
        expect_tensor(out, (64,), f"the bound for K = {k}", dtype=torch.float32)
        ref = iwae_bound(log_w)
        if not (torch.isfinite(out).all() and torch.allclose(out, ref, rtol=1e-5, atol=1e-4)):
            raise CheckFailure(f"for K = {k} log-weights around −40 (as the chapter's VAE gives) your bound "
                               f"differs from logsumexp(log_w, 0) − log K: use torch.logsumexp, which is "
                               "exact where exp(log_w) underflows", generic=True)
