"""Gallery for chapter 07's checks: each reference and other correct forms pass, each classic
diffusion / flow matching slip is rejected in a named case with a message that names it."""
import math

import pytest
import torch
import torch.nn.functional as F

from genlib.checks.ch07_diffusion import alpha_bar_from_betas
from genlib.diffusion import Schedule, ddim_step, diffusion_loss, guided, q_sample
from genlib.flow import euler_sample, flow_matching_loss, interpolate, velocity_target

from genlib.exercises import assert_first_failure  # noqa: E402


def first_rejects(rejects, name, fn, case, fragment):
    """``case`` fails with ``fragment`` in its message, and it is the message the learner reads first."""
    return assert_first_failure(name, fn, case, fragment)



def col(v, x):
    return v.view(-1, *([1] * (x.dim() - 1)))


# ----------------------------------------------------------------------------- alpha_bar
AB = "diffusion.alpha_bar"


def test_alpha_bar_accepted(accepts):
    accepts(AB, alpha_bar_from_betas)
    accepts(AB, lambda b: torch.exp(torch.cumsum(torch.log1p(-b), 0)))     # in log space
    accepts(AB, lambda b: torch.tensor([math.prod((1 - b[: i + 1]).tolist()) for i in range(len(b))]))


def test_alpha_bar_agrees_with_schedule():
    s = Schedule.linear(100)
    assert torch.allclose(alpha_bar_from_betas(s.betas), s.alpha_bar, atol=1e-6)


AB_GALLERY = [
    ("alpha not alpha_bar", lambda b: 1 - b, "equals the cumulative product of 1 − β", "ᾱ vs α"),
    ("product of betas", lambda b: torch.cumprod(b, 0), "equals the cumulative product of 1 − β",
     "multiplied the betas"),
    ("off by one (exclusive product)", lambda b: torch.cat([torch.ones(1), torch.cumprod(1 - b, 0)[:-1]]),
     "one ᾱ per step, decreasing from just below 1", "shifted by one"),
    ("sqrt of alpha_bar", lambda b: torch.cumprod(1 - b, 0).sqrt(),
     "equals the cumulative product of 1 − β", "√ᾱ"),
    ("first-order sum", lambda b: 1 - torch.cumsum(b, 0), "equals the cumulative product of 1 − β",
     "first-order"),
    ("in place", lambda b: torch.cumprod(b.neg_().add_(1), 0), "one ᾱ per step, decreasing from just below 1",
     "in place"),
    # review turn 3 (ch07 §3, misdiagnosis 3): a non-decreasing output was told "cumprod of the betas?"
    ("returns 1 - alpha_bar (the noise variance)", lambda b: 1 - torch.cumprod(1 - b, 0),
     "one ᾱ per step, decreasing from just below 1", "noise variance"),
    ("flipped cumulative product", lambda b: torch.cumprod(1 - b, 0).flip(0),
     "one ᾱ per step, decreasing from just below 1", "backwards"),
    # learners C: a float64 ᾱ passed the check, then `torch.allclose(alpha_bar(s.betas), s.alpha_bar)` crashed
    ("float64 result for float32 betas", lambda b: torch.cumprod(1 - b.double(), 0),
     "one ᾱ per step, decreasing from just below 1", "dtype"),
    ("off by 2e-6 on long schedules", lambda b: torch.cumprod(1 - b, 0) + 2e-6 * (len(b) > 100),
     "the chapter's T = 1000 schedules, to 1e-6", "off by up to"),
]


@pytest.mark.parametrize("label,fn,case,fragment", AB_GALLERY, ids=[g[0] for g in AB_GALLERY])
def test_alpha_bar_gallery_rejected(rejects, label, fn, case, fragment):
    first_rejects(rejects, AB, fn, case, fragment)


# ----------------------------------------------------------------------------- q_sample
QS = "diffusion.q_sample"


def test_q_sample_accepted(accepts):
    accepts(QS, q_sample)
    accepts(QS, lambda x0, ab, n: (torch.einsum("n,n...->n...", ab.sqrt(), x0)
                                   + torch.einsum("n,n...->n...", (1 - ab).sqrt(), n)))
    accepts(QS, lambda x0, ab, n: ab.sqrt().reshape(-1, *[1] * (x0.ndim - 1)) * x0
            + (1 - ab).sqrt().reshape(-1, *[1] * (x0.ndim - 1)) * n)


def _q(x0, a, n, sa=lambda a: a.sqrt(), sn=lambda a: (1 - a).sqrt()):
    a = col(a, x0)
    return sa(a) * x0 + sn(a) * n


QS_GALLERY = [
    ("variances as coefficients (σ² for σ)", lambda x0, a, n: _q(x0, a, n, lambda a: a, lambda a: 1 - a),
     "√ᾱ·x0 + √(1 − ᾱ)·noise", "variances"),
    ("noise scaled by its variance", lambda x0, a, n: _q(x0, a, n, sn=lambda a: 1 - a),
     "√ᾱ·x0 + √(1 − ᾱ)·noise", "σ used where σ² belongs"),
    ("signal and noise swapped", lambda x0, a, n: _q(x0, a, n, lambda a: (1 - a).sqrt(), lambda a: a.sqrt()),
     "√ᾱ·x0 + √(1 − ᾱ)·noise", "swapped"),
    ("1 - sqrt(ab)", lambda x0, a, n: _q(x0, a, n, sn=lambda a: 1 - a.sqrt()),
     "√ᾱ·x0 + √(1 − ᾱ)·noise", "1 − √ᾱ"),
    ("own noise instead of the argument", lambda x0, a, n: _q(x0, a, torch.randn_like(x0)),
     "√ᾱ·x0 + √(1 − ᾱ)·noise", "own noise"),
    ("noise shared across the batch", lambda x0, a, n: _q(x0, a, n[:1].expand_as(n)),
     "√ᾱ·x0 + √(1 − ᾱ)·noise", "noise"),
    ("alpha_bar not broadcast (last axis)", lambda x0, a, n: a.sqrt() * x0 + (1 - a).sqrt() * n,
     "ᾱ broadcast over points (N, 2) and images (N, C, H, W)", "reshape it to (N, 1, ..., 1)"),
    ("alpha_bar[:, None] only fits 2-D", lambda x0, a, n: a[:, None].sqrt() * x0 + (1 - a[:, None]).sqrt() * n,
     "ᾱ broadcast over points (N, 2) and images (N, C, H, W)", "(N, 1, ..., 1)"),
    ("in-place on x0", lambda x0, a, n: x0.mul_(col(a, x0).sqrt()).add_(col(1 - a, x0).sqrt() * n),
     "ᾱ broadcast over points (N, 2) and images (N, C, H, W)", "in place"),
    # review turn 3 (ch07 H8): a broadcast hard-coded for 2-D and 4-D inputs fails on (N, L, D)
    ("hard-coded 2-D / 4-D broadcast", lambda x0, a, n: _q(x0, a, n) if x0.dim() in (2, 4) else
     a.view(-1, 1, 1, 1).sqrt() * x0 + (1 - a.view(-1, 1, 1, 1)).sqrt() * n,
     "ᾱ broadcast over points (N, 2) and images (N, C, H, W)", "fixed number of dimensions"),
    # learners C: view(-1, 1, 1, 1) was told only "x_t has shape (6, 1, 6, 2), expected (6, 2)"
    ("view(-1, 1, 1, 1) for every input", lambda x0, a, n: a.view(-1, 1, 1, 1).sqrt() * x0
     + (1 - a.view(-1, 1, 1, 1)).sqrt() * n,
     "ᾱ broadcast over points (N, 2) and images (N, C, H, W)", "view(-1, 1, 1, 1)"),
    ("float64 turned into float32", lambda x0, a, n: _q(x0.float(), a.float(), n.float()),
     "as the chapter calls it: one ᾱ expanded over the batch, float32 and float64 inputs", "dtype of the inputs"),
    # learners 07-10 (defect 5): the float64 upcast was told "the chapter runs q_sample in float64"
    ("float32 turned into float64", lambda x0, a, n: _q(x0.double(), a.double(), n.double()),
     "as the chapter calls it: one ᾱ expanded over the batch, float32 and float64 inputs",
     "came back as torch.float64 for torch.float32 inputs"),
]


@pytest.mark.parametrize("label,fn,case,fragment", QS_GALLERY, ids=[g[0] for g in QS_GALLERY])
def test_q_sample_gallery_rejected(rejects, label, fn, case, fragment):
    first_rejects(rejects, QS, fn, case, fragment)


# ----------------------------------------------------------------------------- simple loss
DL = "diffusion.loss"


def _loss(model, x0, s, pick=lambda s, t: s.alpha_bar[t], noise_fn=torch.randn_like, target="noise",
          t_fn=None, reduce=lambda e: e.mean(), x_fn=None, detach=False):
    n = len(x0)
    t = t_fn(n, s.T) if t_fn else torch.randint(0, s.T, (n,))
    noise = noise_fn(x0)
    a = col(pick(s, t), x0)
    x_t = x_fn(x0, a, noise) if x_fn else a.sqrt() * x0 + (1 - a).sqrt() * noise
    out = model(x_t, t)
    if detach:
        out = out.detach()
    return reduce((out - (noise if target == "noise" else x0)) ** 2)


def _loss_t2d(model, x0, s):
    t = torch.randint(0, s.T, (len(x0), 1))              # (N, 1), flattened for ᾱ only
    noise = torch.randn_like(x0)
    return F.mse_loss(model(q_sample(x0, s.alpha_bar[t].view(-1), noise), t), noise)


def _loss_tfloat(model, x0, s):
    t = torch.randint(0, s.T, (len(x0),))
    noise = torch.randn_like(x0)
    return F.mse_loss(model(q_sample(x0, s.alpha_bar[t], noise), t / s.T), noise)


def _loss_elbo(model, x0, s):
    t = torch.randint(0, s.T, (len(x0),))
    noise = torch.randn_like(x0)
    w = s.betas[t] / (2 * s.alphas[t] * (1 - s.alpha_bar[t]))      # the ELBO's per-step weight (σ² = β)
    err = ((model(q_sample(x0, s.alpha_bar[t], noise), t) - noise) ** 2).flatten(1).mean(1)
    return (w * err).mean()


def _loss_antithetic(model, x0, s):
    n = len(x0)
    t = torch.randint(0, s.T, (n,))
    h = torch.randn_like(x0[: (n + 1) // 2])
    noise = torch.cat([h, -h])[:n]                    # ε = [h, −h]: still N(0, I) per sample
    return F.mse_loss(model(q_sample(x0, s.alpha_bar[t], noise), t), noise)


def _loss_stratified(model, x0, s):
    n = len(x0)
    t = ((torch.arange(n) + torch.rand(n)) * s.T / n).long().clamp(max=s.T - 1)[torch.randperm(n)]
    noise = torch.randn_like(x0)
    return F.mse_loss(model(q_sample(x0, s.alpha_bar[t], noise), t), noise)


def test_diffusion_loss_accepted(accepts):
    accepts(DL, diffusion_loss)
    accepts(DL, lambda m, x0, s: _loss(m, x0, s))
    accepts(DL, lambda m, x0, s: F.mse_loss(m(q_sample(x0, s.alpha_bar[t := torch.randint(0, s.T, (len(x0),))],
                                                       e := torch.randn_like(x0)), t), e))
    # review turn 3 (ch07 §3): antithetic noise was rejected ("no gradient reaches the model")
    accepts(DL, _loss_antithetic)
    accepts(DL, _loss_stratified)                     # stratified t: uniform marginal, fine


DL_GALLERY = [
    ("schedule off by one (t+1)", lambda m, x0, s: _loss(m, x0, s, lambda s, t: s.alpha_bar[(t + 1).clamp(max=s.T - 1)]),
     "x_t built with ᾱ at the sampled t, target the noise", "off by one"),
    ("schedule off by one (t-1)", lambda m, x0, s: _loss(m, x0, s, lambda s, t: s.alpha_bar[(t - 1).clamp(min=0)]),
     "x_t built with ᾱ at the sampled t, target the noise", "off by one"),
    ("alpha for alpha_bar", lambda m, x0, s: _loss(m, x0, s, lambda s, t: s.alphas[t]),
     "x_t built with ᾱ at the sampled t, target the noise", "ᾱ vs α"),
    ("variances as coefficients", lambda m, x0, s: _loss(m, x0, s, x_fn=lambda x0, a, e: a * x0 + (1 - a) * e),
     "x_t built with ᾱ at the sampled t, target the noise", "σ² where σ belongs"),
    ("x0 as the target", lambda m, x0, s: _loss(m, x0, s, target="x0"),
     "x_t built with ᾱ at the sampled t, target the noise", "target is the noise"),
    ("noise shared across the batch", lambda m, x0, s: _loss(m, x0, s, noise_fn=lambda x: torch.randn_like(x[:1]).expand_as(x)),
     "one t and one noise draw per sample", "shared across the batch"),
    ("one t for the whole batch", lambda m, x0, s: _loss(m, x0, s, t_fn=lambda n, T: torch.randint(0, T, (1,)).expand(n)),
     "one t and one noise draw per sample", "same t"),
    ("t never reaches T-1", lambda m, x0, s: _loss(m, x0, s, t_fn=lambda n, T: torch.randint(0, T // 2, (n,))),
     "one t and one noise draw per sample", "never drawn"),
    # review turn 3 (ch07 H3, H4): only T − 2 distinct steps were required
    ("1-based t: randint(1, T)", lambda m, x0, s: _loss(m, x0, s, t_fn=lambda n, T: torch.randint(1, T, (n,))),
     "one t and one noise draw per sample", "t = 0 was never drawn"),
    ("randint(0, T - 1) never draws T - 1", lambda m, x0, s: _loss(m, x0, s, t_fn=lambda n, T: torch.randint(0, T - 1, (n,))),
     "one t and one noise draw per sample", "upper bound is exclusive"),
    # review turn 3 (ch07 H7): the distribution of t was never tested
    ("non-uniform t: (rand² · T)", lambda m, x0, s: _loss(m, x0, s, t_fn=lambda n, T: (torch.rand(n) ** 2 * T).long()),
     "one t and one noise draw per sample", "not uniform"),
    # review turn 3 (ch07 H5): t drawn as (N, 1) and passed on; TimeMLP crashes in cell 25
    ("t of shape (N, 1) passed to the model", lambda m, x0, s: _loss_t2d(m, x0, s),
     "x_t built with ᾱ at the sampled t, target the noise", "(N, 1) t"),
    # review turn 3 (ch07 misdiagnosis 5): was told "every sample of a batch gets the same t"
    ("model given t / T", lambda m, x0, s: _loss_tfloat(m, x0, s),
     "x_t built with ᾱ at the sampled t, target the noise", "integer step"),
    # review turn 3 (ch07 misdiagnosis 4): α for ᾱ was also told "the noise has std 0.83"
    ("alpha for alpha_bar (no second diagnosis)", lambda m, x0, s: _loss(m, x0, s, lambda s, t: s.alphas[t]),
     "x_t built with ᾱ at the sampled t, target the noise", "ᾱ vs α"),
    # learners C: passing √ᾱ to q_sample got a generic line
    ("sqrt(alpha_bar) passed to q_sample", lambda m, x0, s: _loss(m, x0, s, lambda s, t: s.alpha_bar[t].sqrt()),
     "x_t built with ᾱ at the sampled t, target the noise", "√ᾱ passed to q_sample"),
    # review turn 3 (ch07 misdiagnosis 7): the ELBO weighting got only "loss must be 0.25"
    ("ELBO-weighted loss", lambda m, x0, s: _loss_elbo(m, x0, s),
     "a mean over the batch and every dimension", "weighting"),
    ("fixed seed inside", lambda m, x0, s: (torch.manual_seed(0), _loss(m, x0, s))[1],
     "one t and one noise draw per sample", "same noise"),
    ("summed not meaned", lambda m, x0, s: _loss(m, x0, s, reduce=lambda e: e.sum()),
     "a mean over the batch and every dimension", "summed"),
    ("sum over pixels, mean over batch", lambda m, x0, s: _loss(m, x0, s, reduce=lambda e: e.flatten(1).sum(1).mean()),
     "a mean over the batch and every dimension", "summed the squared error over pixels"),
    ("detached prediction", lambda m, x0, s: _loss(m, x0, s, detach=True), "gradient reaches the model",
     "no gradient"),
    ("in place on x0", lambda m, x0, s: _loss(m, x0, s, x_fn=lambda x0, a, e: x0.mul_(a.sqrt()).add_((1 - a).sqrt() * e)),
     "x_t built with ᾱ at the sampled t, target the noise", "in place"),
    # learners 07-10 (issue 4): the 1-based draw got only torch's IndexError
    ("1-based t, randint(1, T + 1)", lambda m, x0, s: _loss(m, x0, s, t_fn=lambda n, T: torch.randint(1, T + 1, (n,))),
     "x_t built with ᾱ at the sampled t, target the noise", "t runs over 0 … T − 1"),
]


@pytest.mark.parametrize("label,fn,case,fragment", DL_GALLERY, ids=[g[0] for g in DL_GALLERY])
def test_diffusion_loss_gallery_rejected(rejects, label, fn, case, fragment):
    first_rejects(rejects, DL, fn, case, fragment)


# ----------------------------------------------------------------------------- DDIM
DD = "diffusion.ddim_step"


def _ddim(x_t, e, a, p, x0_fn=None, out_fn=None):
    a, p = col(a, x_t), col(p, x_t)
    x0 = x0_fn(x_t, e, a) if x0_fn else (x_t - (1 - a).sqrt() * e) / a.sqrt()
    return out_fn(x0, e, p, a, x_t) if out_fn else p.sqrt() * x0 + (1 - p).sqrt() * e


def _ddim_hard(x_t, e, a, p):
    r = (lambda v: v.view(-1, 1)) if x_t.dim() == 2 else (lambda v: v.view(-1, 1, 1, 1))
    x0 = (x_t - (1 - r(a)).sqrt() * e) / r(a).sqrt()
    return r(p).sqrt() * x0 + (1 - r(p)).sqrt() * e


def test_ddim_accepted(accepts):
    accepts(DD, ddim_step)
    # the same step written as x_t rescaled plus a noise correction
    accepts(DD, lambda x, e, a, p: (col(p, x) / col(a, x)).sqrt() * x
            + ((1 - col(p, x)).sqrt() - (col(p, x) * (1 - col(a, x)) / col(a, x)).sqrt()) * e)


DD_GALLERY = [
    ("alpha_bar_t and prev swapped", lambda x, e, a, p: _ddim(x, e, p, a),
     "x̂0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t, then re-noised to ᾱ_prev", "swapped"),
    ("sigma squared in x0 estimate", lambda x, e, a, p: _ddim(x, e, a, p, x0_fn=lambda x, e, a: (x - (1 - a) * e) / a.sqrt()),
     "x̂0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t, then re-noised to ᾱ_prev", "variance"),
    ("variances when re-noising", lambda x, e, a, p: _ddim(x, e, a, p, out_fn=lambda x0, e, p, a, xt: p * x0 + (1 - p) * e),
     "x̂0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t, then re-noised to ᾱ_prev", "square roots"),
    ("noise added back with a minus", lambda x, e, a, p: _ddim(x, e, a, p, out_fn=lambda x0, e, p, a, xt: p.sqrt() * x0 - (1 - p).sqrt() * e),
     "x̂0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t, then re-noised to ᾱ_prev", "wrong sign"),
    ("re-noised with alpha_bar_t", lambda x, e, a, p: _ddim(x, e, a, p, out_fn=lambda x0, e, p, a, xt: p.sqrt() * x0 + (1 - a).sqrt() * e),
     "x̂0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t, then re-noised to ᾱ_prev", "√(1 − ᾱ_prev)"),
    ("x_t instead of x0 estimate", lambda x, e, a, p: _ddim(x, e, a, p, out_fn=lambda x0, e, p, a, xt: p.sqrt() * xt + (1 - p).sqrt() * e),
     "x̂0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t, then re-noised to ᾱ_prev", "x_t was used"),
    ("no division by sqrt(ab_t)", lambda x, e, a, p: _ddim(x, e, a, p, x0_fn=lambda x, e, a: x - (1 - a).sqrt() * e),
     "x̂0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t, then re-noised to ᾱ_prev", "not divided"),
    ("eta = 1 style fresh noise", lambda x, e, a, p: _ddim(x, e, a, p) + 0.1 * torch.randn_like(x),
     "x̂0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t, then re-noised to ᾱ_prev", "no fresh noise"),
    ("alpha_bar not broadcast", lambda x, e, a, p: (p.sqrt() * (x - (1 - a).sqrt() * e) / a.sqrt() + (1 - p).sqrt() * e),
     "ᾱ broadcast over points and images", "(N, 1, ..., 1)"),
    ("[:, None] only fits 2-D", lambda x, e, a, p: _ddim(x, e, a, p) if x.dim() == 2 else
     (p[:, None].sqrt() * (x - (1 - a[:, None]).sqrt() * e) / a[:, None].sqrt() + (1 - p[:, None]).sqrt() * e),
     "ᾱ broadcast over points and images", "(N, 1, ..., 1)"),
    ("in place on x_t", lambda x, e, a, p: x.copy_(_ddim(x, e, a, p)),
     "ᾱ broadcast over points and images", "in place"),
    # review turn 3 (ch07 H8) and learners C (ch07 issue 2): named now, were generic
    ("hard-coded 2-D / 4-D broadcast", lambda x, e, a, p: _ddim_hard(x, e, a, p),
     "ᾱ broadcast over points and images", "fixed number of dimensions"),
    ("x0 estimate clipped to [-1, 1]", lambda x, e, a, p: _ddim(x, e, a, p, x0_fn=lambda x, e, a: ((x - (1 - a).sqrt() * e) / a.sqrt()).clamp(-1, 1)),
     "x̂0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t, then re-noised to ᾱ_prev", "clipped"),
    # learners 07-10 (issue 4): x̂0 without square roots was told the generic formula
    ("x0 estimate without square roots", lambda x, e, a, p: _ddim(x, e, a, p, x0_fn=lambda x, e, a: (x - (1 - a) * e) / a),
     "x̂0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t, then re-noised to ᾱ_prev", "no square roots"),
    ("no square roots anywhere", lambda x, e, a, p: _ddim(x, e, a, p, x0_fn=lambda x, e, a: (x - (1 - a) * e) / a,
                                                          out_fn=lambda x0, e, p, a, xt: p * x0 + (1 - p) * e),
     "x̂0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t, then re-noised to ᾱ_prev", "no square roots anywhere"),
    ("x0 estimate divided by alpha_bar", lambda x, e, a, p: _ddim(x, e, a, p, x0_fn=lambda x, e, a: (x - (1 - a).sqrt() * e) / a),
     "x̂0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t, then re-noised to ᾱ_prev", "divide by its square root"),
    ("returns the x0 estimate", lambda x, e, a, p: _ddim(x, e, a, p, out_fn=lambda x0, e, p, a, xt: x0),
     "x̂0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t, then re-noised to ᾱ_prev", "x0 estimate"),
    ("DDPM posterior mean", lambda x, e, a, p: _ddim(x, e, a, p, out_fn=lambda x0, e, p, a, xt:
                                                    p.sqrt() * (1 - a / p) / (1 - a) * x0 + (a / p).sqrt() * (1 - p) / (1 - a) * xt),
     "x̂0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t, then re-noised to ᾱ_prev", "posterior mean"),
    ("float64 result", lambda x, e, a, p: _ddim(x.double(), e.double(), a.double(), p.double()),
     "a whole DDIM loop as the chapter runs it (T = 100, 10 steps, ᾱ_prev = 1 at the end)", "dtype"),
]


@pytest.mark.parametrize("label,fn,case,fragment", DD_GALLERY, ids=[g[0] for g in DD_GALLERY])
def test_ddim_gallery_rejected(rejects, label, fn, case, fragment):
    first_rejects(rejects, DD, fn, case, fragment)


# ----------------------------------------------------------------------------- guidance
GD = "diffusion.guided"


def test_guided_accepted(accepts):
    accepts(GD, guided)
    accepts(GD, lambda c, u, s: s * c + (1 - s) * u)          # the same line, written as a blend
    accepts(GD, lambda c, u, s: torch.lerp(u, c, torch.as_tensor(s, dtype=c.dtype)))


GD_GALLERY = [
    ("sign reversed", lambda c, u, s: u + s * (u - c), "scale 0 is the unconditional, scale 1 the conditional prediction",
     "scale 1 must return the conditional"),
    ("sign reversed (seen at scale 3)", lambda c, u, s: u - s * (c - u) if s != 1 and not torch.is_tensor(s) else c,
     "extrapolates beyond the conditional for scale > 1", "sign is reversed"),
    ("starts from cond", lambda c, u, s: c + s * (c - u), "scale 0 is the unconditional, scale 1 the conditional prediction",
     "start from cond"),
    ("(1 + w) convention", lambda c, u, s: u + (1 + s) * (c - u), "scale 0 is the unconditional, scale 1 the conditional prediction",
     "(1 + w)"),
    ("cond and uncond swapped", lambda c, u, s: c + s * (u - c), "scale 0 is the unconditional, scale 1 the conditional prediction",
     "swapped"),
    ("no unconditional base", lambda c, u, s: s * (c - u), "scale 0 is the unconditional, scale 1 the conditional prediction",
     "zeros"),
    ("scale on the wrong term", lambda c, u, s: s * u + (c - u) if not (isinstance(s, float) and s in (0.0, 1.0)) else (u if s == 0 else c),
     "extrapolates beyond the conditional for scale > 1", "wrong term"),
    ("scale through float()", lambda c, u, s: u + float(s if not torch.is_tensor(s) else s.flatten()[0]) * (c - u),
     "works with a per-sample scale of shape (N, 1, ..., 1)", "tensor scale"),
    ("in place on uncond", lambda c, u, s: u.add_(s * (c - u)),
     "scale 0 is the unconditional, scale 1 the conditional prediction", "in place"),
]


@pytest.mark.parametrize("label,fn,case,fragment", GD_GALLERY, ids=[g[0] for g in GD_GALLERY])
def test_guided_gallery_rejected(rejects, label, fn, case, fragment):
    first_rejects(rejects, GD, fn, case, fragment)


# ----------------------------------------------------------------------------- interpolate
IP = "flow.interpolate"


def test_interpolate_accepted(accepts):
    accepts(IP, interpolate)
    accepts(IP, lambda x0, x1, t: x0 + col(t, x0) * (x1 - x0))
    accepts(IP, lambda x0, x1, t: torch.lerp(x0, x1, col(t, x0)))


IP_GALLERY = [
    ("x0 and x1 swapped", lambda x0, x1, t: (1 - col(t, x0)) * x1 + col(t, x0) * x0,
     "t = 0 is the noise x0, t = 1 the data x1", "swapped"),
    ("t not broadcast", lambda x0, x1, t: (1 - t) * x0 + t * x1,
     "t broadcast over points (N, 2) and images (N, C, H, W)", "(N, 1, ..., 1)"),
    ("t[:, None] only fits 2-D", lambda x0, x1, t: (1 - t[:, None]) * x0 + t[:, None] * x1,
     "t broadcast over points (N, 2) and images (N, C, H, W)", "(N, 1, ..., 1)"),
    ("variance-preserving path", lambda x0, x1, t: (1 - col(t, x0)).sqrt() * x0 + col(t, x0).sqrt() * x1,
     "linear in t: (1 − t)·x0 + t·x1", "straight line"),
    ("trigonometric path", lambda x0, x1, t: torch.cos(math.pi / 2 * col(t, x0)) * x0 + torch.sin(math.pi / 2 * col(t, x0)) * x1,
     "linear in t: (1 − t)·x0 + t·x1", "curved"),
    ("noise never removed", lambda x0, x1, t: x0 + col(t, x0) * x1, "t = 0 is the noise x0, t = 1 the data x1",
     "start at x0"),
    ("in place on x0", lambda x0, x1, t: x0.mul_(1 - col(t, x0)).add_(col(t, x0) * x1),
     "t broadcast over points (N, 2) and images (N, C, H, W)", "in place"),
    # review turn 3 (ch07 H8)
    ("hard-coded 2-D / 4-D broadcast", lambda x0, x1, t: torch.lerp(x0, x1, t.view(-1, 1) if x0.dim() == 2
                                                                      else t.view(-1, 1, 1, 1)),
     "t broadcast over points (N, 2) and images (N, C, H, W)", "fixed number of dimensions"),
]


@pytest.mark.parametrize("label,fn,case,fragment", IP_GALLERY, ids=[g[0] for g in IP_GALLERY])
def test_interpolate_gallery_rejected(rejects, label, fn, case, fragment):
    first_rejects(rejects, IP, fn, case, fragment)


# ----------------------------------------------------------------------------- velocity target
VT = "flow.velocity_target"


def test_velocity_target_accepted(accepts):
    accepts(VT, velocity_target)
    accepts(VT, lambda x0, x1: torch.sub(x1, x0))
    accepts(VT, lambda x0, x1: -(x0 - x1))


VT_GALLERY = [
    ("sign flipped", lambda x0, x1: x0 - x1, "x1 − x0 (points from noise to data)", "sign is flipped"),
    ("data only", lambda x0, x1: x1, "x1 − x0 (points from noise to data)", "data x1"),
    ("noise only", lambda x0, x1: -x0, "x1 − x0 (points from noise to data)", "noise"),
    ("sum", lambda x0, x1: x0 + x1, "x1 − x0 (points from noise to data)", "x1 + x0"),
    ("half", lambda x0, x1: 0.5 * (x1 - x0), "x1 − x0 (points from noise to data)", "scaled"),
    ("normalised", lambda x0, x1: (x1 - x0) / (x1 - x0).norm(dim=1, keepdim=True),
     "x1 − x0 (points from noise to data)", "normalised"),
    # review turn 3 (ch07 misdiagnosis 6): was told "you returned the data x1"
    ("in place on x1", lambda x0, x1: x1.sub_(x0), "x1 − x0 (points from noise to data)", "in place"),
]


@pytest.mark.parametrize("label,fn,case,fragment", VT_GALLERY, ids=[g[0] for g in VT_GALLERY])
def test_velocity_target_gallery_rejected(rejects, label, fn, case, fragment):
    first_rejects(rejects, VT, fn, case, fragment)


# ----------------------------------------------------------------------------- flow loss
FM = "flow.loss"


def _fm(m, x0, x1, t, y=None, path=None, target=None, reduce=lambda e: e.mean(), t_in=None, detach=False,
        pass_y=True):
    tt = col(t, x0)
    x_t = path(x0, x1, tt) if path else (1 - tt) * x0 + tt * x1
    out = m(x_t, t if t_in is None else t_in(t), y if pass_y else None)
    if detach:
        out = out.detach()
    return reduce((out - (target(x0, x1) if target else x1 - x0)) ** 2)


def test_flow_loss_accepted(accepts):
    accepts(FM, flow_matching_loss)
    accepts(FM, lambda m, x0, x1, t, y=None: _fm(m, x0, x1, t, y))
    accepts(FM, lambda m, x0, x1, t, y=None: F.mse_loss(m(interpolate(x0, x1, t), t, y), velocity_target(x0, x1)))


FM_GALLERY = [
    ("velocity sign flipped", lambda m, x0, x1, t, y=None: _fm(m, x0, x1, t, y, target=lambda a, b: a - b),
     "one number: the mean squared error of the velocity", "sign is flipped"),
    ("x0 and x1 swapped in the path", lambda m, x0, x1, t, y=None: _fm(m, x0, x1, t, y, path=lambda a, b, t: t * a + (1 - t) * b),
     "one number: the mean squared error of the velocity", "swapped"),
    ("x0 and x1 swapped everywhere", lambda m, x0, x1, t, y=None: _fm(m, x1, x0, t, y),
     "one number: the mean squared error of the velocity", "swapped"),
    ("data as target", lambda m, x0, x1, t, y=None: _fm(m, x0, x1, t, y, target=lambda a, b: b),
     "one number: the mean squared error of the velocity", "target is the data"),
    ("model at the noise", lambda m, x0, x1, t, y=None: _fm(m, x0, x1, t, y, path=lambda a, b, t: a),
     "one number: the mean squared error of the velocity", "evaluated at the noise"),
    ("model given 1 - t", lambda m, x0, x1, t, y=None: _fm(m, x0, x1, t, y, t_in=lambda t: 1 - t),
     "one number: the mean squared error of the velocity", "1 − t"),
    ("summed not meaned", lambda m, x0, x1, t, y=None: _fm(m, x0, x1, t, y, reduce=lambda e: e.sum()),
     "one number: the mean squared error of the velocity", "summed"),
    ("root mean square", lambda m, x0, x1, t, y=None: _fm(m, x0, x1, t, y, reduce=lambda e: e.mean().sqrt()),
     "one number: the mean squared error of the velocity", "root"),
    ("per-sample losses", lambda m, x0, x1, t, y=None: _fm(m, x0, x1, t, y, reduce=lambda e: e.flatten(1).mean(1)),
     "one number: the mean squared error of the velocity", "return one number"),
    ("t not broadcast", lambda m, x0, x1, t, y=None: ((m((1 - t) * x0 + t * x1, t, y) - (x1 - x0)) ** 2).mean(),
     "one number: the mean squared error of the velocity", "(N, 1, ..., 1)"),
    ("t[:, None] only fits 2-D", lambda m, x0, x1, t, y=None: ((m((1 - t[:, None]) * x0 + t[:, None] * x1, t, y) - (x1 - x0)) ** 2).mean(),
     "t broadcast over images (N, C, H, W)", "(N, 1, ..., 1)"),
    ("labels dropped", lambda m, x0, x1, t, y=None: _fm(m, x0, x1, t, y, pass_y=False),
     "passes x_t, t (N,) and the labels y to the model", "labels y were not passed"),
    ("gradient detached", lambda m, x0, x1, t, y=None: _fm(m, x0, x1, t, y, detach=True),
     "gradient reaches the model, inputs unchanged", "no gradient"),
    # review turn 3 (ch07 misdiagnosis 6): was told "the model was evaluated at the noise x0"
    ("in place on x0", lambda m, x0, x1, t, y=None: _fm(m, x0, x1, t, y, path=lambda a, b, t: a.mul_(1 - t).add_(t * b)),
     "one number: the mean squared error of the velocity", "in place"),
    # review turn 3 (ch07 H1): the broadcast t (N, 1, …) handed to the model; TimeMLP then crashes
    ("broadcast t passed to the model", lambda m, x0, x1, t, y=None: _fm_tcol(m, x0, x1, t, y),
     "one number: the mean squared error of the velocity", "(N, 1, ..., 1) t"),
    ("model given t[:, None]", lambda m, x0, x1, t, y=None: _fm(m, x0, x1, t, y, t_in=lambda t: t[:, None]),
     "one number: the mean squared error of the velocity", "shape (N,)"),
    # learners 07-10 (issue 4): a loss that draws its own t was told the generic formula
    ("own t drawn inside the loss", lambda m, x0, x1, t, y=None: _fm(m, x0, x1, torch.rand_like(t), y),
     "one number: the mean squared error of the velocity", "draws its own t"),
]


def _fm_tcol(m, x0, x1, t, y=None):
    t = t.view(-1, *[1] * (x0.dim() - 1))         # the solution's interpolate pattern, then passed on
    return F.mse_loss(m((1 - t) * x0 + t * x1, t, y), x1 - x0)


@pytest.mark.parametrize("label,fn,case,fragment", FM_GALLERY, ids=[g[0] for g in FM_GALLERY])
def test_flow_loss_gallery_rejected(rejects, label, fn, case, fragment):
    first_rejects(rejects, FM, fn, case, fragment)


# ----------------------------------------------------------------------------- Euler sampler
EU = "flow.euler_sample"


def _euler(v, x0, steps, times=None, dt=None, evals=None, clone=True, tensor_t=True, at_x0=False):
    x = x0.clone() if clone else x0
    dt = dt if dt is not None else 1 / steps
    times = times if times is not None else [k / steps for k in range(steps)]
    for tk in times:
        t = torch.full((len(x),), float(tk)) if tensor_t else tk
        if clone:
            x = x + dt * v(x0 if at_x0 else x, t)
        else:
            x += dt * v(x, t)
    return x


def test_euler_accepted(accepts):
    accepts(EU, euler_sample)
    accepts(EU, lambda v, x0, steps: _euler(v, x0, steps))
    # times from a linspace without its end point are the same times
    accepts(EU, lambda v, x0, steps: _euler(v, x0, steps, times=torch.linspace(0, 1, steps + 1)[:-1].tolist()))


EU_GALLERY = [
    ("step size 1/(steps-1)", lambda v, x0, s: _euler(v, x0, s, times=torch.linspace(0, 1, s).tolist(),
                                                      dt=1 / max(s - 1, 1)),
     "`steps` evaluations at t = 0, 1/steps, …, (steps − 1)/steps", "linspace(0, 1, steps)"),
    ("steps + 1 evaluations", lambda v, x0, s: _euler(v, x0, s, times=[k / s for k in range(s + 1)]),
     "`steps` evaluations at t = 0, 1/steps, …, (steps − 1)/steps", "5 evaluations"),
    ("t at the end of the step", lambda v, x0, s: _euler(v, x0, s, times=[(k + 1) / s for k in range(s)]),
     "`steps` evaluations at t = 0, 1/steps, …, (steps − 1)/steps", "end of each step"),
    ("time reversed", lambda v, x0, s: _euler(v, x0, s, times=[1 - k / s for k in range(s)]),
     "`steps` evaluations at t = 0, 1/steps, …, (steps − 1)/steps", "backwards"),
    ("t as a python float", lambda v, x0, s: _euler(v, x0, s, tensor_t=False),
     "`steps` evaluations at t = 0, 1/steps, …, (steps − 1)/steps", "shape (N,)"),
    ("step against the velocity", lambda v, x0, s: _euler(v, x0, s, dt=-1 / s), "exact for a constant velocity",
     "against the velocity"),
    ("dt forgotten", lambda v, x0, s: _euler(v, x0, s, dt=1.0), "exact for a constant velocity", "dt = 1/steps"),
    ("velocity at the start point", lambda v, x0, s: _euler(v, x0, s, at_x0=True),
     "follows a time-dependent velocity like Euler", "starting noise"),
    ("x += in place on x0", lambda v, x0, s: _euler(v, x0, s, clone=False), "leaves x0 unchanged", "in place"),
]


@pytest.mark.parametrize("label,fn,case,fragment", EU_GALLERY, ids=[g[0] for g in EU_GALLERY])
def test_euler_gallery_rejected(rejects, label, fn, case, fragment):
    first_rejects(rejects, EU, fn, case, fragment)


def test_a_wrong_formula_with_the_right_broadcast_is_not_reported_as_a_broadcast_error():
    """The broadcast cases diagnose 'multiplied along the last axis' only where that product exists;
    elsewhere a wrong formula must fall through to the case that names it, not crash the check."""
    from genlib.exercises import run_check

    report = run_check(QS, QS_GALLERY[0][1])  # variances as coefficients, broadcast right
    assert "ᾱ broadcast over points (N, 2) and images (N, C, H, W)" not in report.failed_cases
    assert "variances" in report.message_for("√ᾱ·x0 + √(1 − ᾱ)·noise")
    report = run_check(IP, lambda x0, x1, t: col(t, x0) * x0 + (1 - col(t, x0)) * x1)  # swapped
    assert "t broadcast over points (N, 2) and images (N, C, H, W)" not in report.failed_cases
    assert "swapped" in report.message_for("t = 0 is the noise x0, t = 1 the data x1")


# ------------------------------------------------------------------ session-2 learner
def test_integer_valued_float_t_is_accepted(accepts):
    """t.float() with the same integer steps gives the chapter's models the same output: accepted
    (it was rejected with 'not t/T', a cause the learner had not committed)."""
    def loss(model, x0, s):
        t = torch.randint(0, s.T, (len(x0),))
        noise = torch.randn_like(x0)
        return F.mse_loss(model(q_sample(x0, s.alpha_bar[t], noise), t.float()), noise)

    accepts("diffusion.loss", loss)


def test_flow_loss_in_float64_is_rejected_before_the_chapter_crashes(rejects):
    """A float64 loss passed 4/4, then cell 39's torch.allclose against genlib's raised a dtype error."""
    def loss(model, x0, x1, t, y=None):
        x0, x1, t = x0.double(), x1.double(), t.double()
        tt = t.view(-1, *[1] * (x0.dim() - 1))
        x_t = (1 - tt) * x0 + tt * x1
        v = model(x_t.float(), t.float(), y) if y is not None else model(x_t.float(), t.float())
        return ((v.double() - (x1 - x0)) ** 2).mean()

    rejects(FM, loss, "one number: the mean squared error of the velocity", "refuses mixed dtypes")
