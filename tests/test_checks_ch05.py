"""Gallery for chapter 05's checks: each reference passes, each classic VAE slip is named."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from genlib.losses import gaussian_kl, negative_elbo, reparameterize
from genlib.vae import iwae_bound
from genlib.exercises import assert_first_failure

@pytest.fixture
def rejects():
    """Gallery assertion: the named case is the FIRST message the learner reads (one diagnosis per
    mistake), and it contains the fragment."""
    return assert_first_failure

# ----------------------------------------------------------------------------- reparameterize
REP = "vae.reparameterize"


def test_reparameterize_reference_accepted(accepts):
    accepts(REP, reparameterize)
    accepts(REP, lambda mu, lv: Normal(mu, (0.5 * lv).exp()).rsample())  # rsample is the same trick
    accepts(REP, lambda mu, lv: mu + (lv.exp()).sqrt() * torch.randn_like(mu))


def _fixed_seed(mu, lv):
    g = torch.Generator().manual_seed(0)
    return mu + (0.5 * lv).exp() * torch.randn(mu.shape, generator=g)


REP_GALLERY = [
    ("no epsilon (S0.5)", lambda mu, lv: mu + torch.exp(0.5 * lv), "draws fresh noise", "no noise"),
    ("returns mu", lambda mu, lv: mu, "draws fresh noise", "nothing was sampled"),
    ("fixed seed inside", _fixed_seed, "draws fresh noise", "same z"),
    ("variance as std", lambda mu, lv: mu + lv.exp() * torch.randn_like(mu),
     "sample mean is mu and std is exp(logvar/2)", "variance"),
    ("logvar as std", lambda mu, lv: mu + lv * torch.randn_like(mu),
     "sample mean is mu and std is exp(logvar/2)", "logvar as σ"),
    ("sqrt of logvar", lambda mu, lv: mu + lv.sqrt() * torch.randn_like(mu),
     "sample mean is mu and std is exp(logvar/2)", "sqrt(logvar)"),
    ("relu on logvar (S4.8)", lambda mu, lv: mu + (0.5 * F.relu(lv)).exp() * torch.randn_like(mu),
     "sample mean is mu and std is exp(logvar/2)", "ReLU"),
    ("sqrt of sigma", lambda mu, lv: mu + (0.25 * lv).exp() * torch.randn_like(mu),
     "sample mean is mu and std is exp(logvar/2)", "square root of σ"),
    ("forgot mu", lambda mu, lv: (0.5 * lv).exp() * torch.randn_like(mu),
     "sample mean is mu and std is exp(logvar/2)", "add mu"),
    ("uniform noise", lambda mu, lv: mu + (0.5 * lv).exp() * torch.rand_like(mu),
     "sample mean is mu and std is exp(logvar/2)", "uniform"),
    ("one eps per batch", lambda mu, lv: mu + (0.5 * lv).exp() * torch.randn(mu.shape[1]),
     "independent ε for every sample and dimension", "every row"),
    ("one eps per sample", lambda mu, lv: mu + (0.5 * lv).exp() * torch.randn(mu.shape[0], 1),
     "independent ε for every sample and dimension", "all latent dimensions"),
    ("torch.normal", lambda mu, lv: torch.normal(mu, (0.5 * lv).exp()),
     "gradients reach mu and logvar", "torch.normal"),
    ("Normal.sample", lambda mu, lv: Normal(mu, (0.5 * lv).exp()).sample(),
     "gradients reach mu and logvar", "no gradient"),
    ("detached", lambda mu, lv: (mu + (0.5 * lv).exp() * torch.randn_like(mu)).detach(),
     "gradients reach mu and logvar", "no gradient"),
]


@pytest.mark.parametrize("label,fn,case,fragment", REP_GALLERY, ids=[g[0] for g in REP_GALLERY])
def test_reparameterize_gallery_rejected(rejects, label, fn, case, fragment):
    rejects(REP, fn, case, fragment)


def test_s05_bug_is_diagnosed_as_missing_noise_everywhere():
    """H3: mu + exp(logvar/2) must not be called a shared ε or a missing mu by the later cases."""
    from genlib.exercises import run_check

    report = run_check(REP, lambda mu, lv: mu + torch.exp(0.5 * lv))
    assert report.failed_cases, report.text()
    for case in report.failed_cases:
        msg = report.message_for(case)
        assert "no noise" in msg and "S0.5" in msg, (case, msg)
        assert "add mu" not in msg and "shared" not in msg, (case, msg)


# ----------------------------------------------------------------------------- gaussian_kl
KL = "vae.gaussian_kl"


def test_gaussian_kl_reference_accepted(accepts):
    accepts(KL, gaussian_kl)
    accepts(KL, lambda mu, lv: -0.5 * torch.sum(1 + lv - mu**2 - lv.exp(), dim=1))  # the usual form


def _ref_kl(mu, lv):
    return 0.5 * (mu**2 + lv.exp() - 1 - lv)


# second entries on an implementation already in the gallery: their case's own message, read after the
# first one is fixed (the first message is asserted by the first entry)
ALSO = {"sign error, seen on extremes"}

KL_GALLERY = [
    ("batch mean", lambda mu, lv: _ref_kl(mu, lv).sum(-1).mean(), "one KL per sample, shape (N,)",
     "single number"),
    ("no reduction", _ref_kl, "one KL per sample, shape (N,)", "per latent dimension"),
    ("sign error", lambda mu, lv: -_ref_kl(mu, lv).sum(-1), "matches torch.distributions", "wrong sign"),
    ("missing half", lambda mu, lv: 2 * _ref_kl(mu, lv).sum(-1), "matches torch.distributions", "½"),
    ("mean over dims", lambda mu, lv: _ref_kl(mu, lv).mean(-1), "matches torch.distributions",
     "averaged over latent dimensions"),
    ("logvar as log sigma", lambda mu, lv: _ref_kl(mu, 2 * lv).sum(-1), "matches torch.distributions",
     "log σ"),
    ("sigma for variance", lambda mu, lv: 0.5 * (mu**2 + (0.5 * lv).exp() - 1 - 0.5 * lv).sum(-1),
     "matches torch.distributions", "σ²"),
    ("forgot the -1", lambda mu, lv: 0.5 * (mu**2 + lv.exp() - lv).sum(-1), "zero when q is the prior",
     "−1"),
    ("via numpy", lambda mu, lv: torch.from_numpy(_ref_kl(mu, lv).sum(-1).detach().numpy()),
     "differentiable in mu and logvar", "no gradient"),
    ("reversed KL(p||q)", lambda mu, lv: 0.5 * ((1 + mu**2) / lv.exp() - 1 + lv).sum(-1),
     "matches torch.distributions", "reversed"),
    ("log of sigma squared underflows (H4)",
     lambda mu, lv: 0.5 * (mu**2 + (0.5 * lv).exp() ** 2 - 1 - torch.log((0.5 * lv).exp() ** 2)).sum(-1),
     "never negative, finite for extreme log-variances", "underflows"),
    ("torch.distributions KL, sigma underflows (H4)",
     lambda mu, lv: kl_divergence(Normal(mu, (0.5 * lv).exp()),
                                  Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1),
     "never negative, finite for extreme log-variances", "kl_divergence"),
    ("sign error, seen on extremes", lambda mu, lv: 0.5 * (-mu**2 - lv.exp() + 1 + lv).sum(-1),
     "never negative, finite for extreme log-variances", "negative KL"),
]


@pytest.mark.parametrize("label,fn,case,fragment", KL_GALLERY, ids=[g[0] for g in KL_GALLERY])
def test_gaussian_kl_gallery_rejected(rejects, label, fn, case, fragment):
    rejects(KL, fn, case, fragment, first=label not in ALSO)


def test_monte_carlo_case_catches_a_wrong_constant(rejects):
    # off by 0.1 nat: too small for the shape cases, caught by the sampling estimate
    rejects(KL, lambda mu, lv: gaussian_kl(mu, lv) + 0.1, "zero when q is the prior", "−1")
    rejects(KL, lambda mu, lv: gaussian_kl(mu, lv) + 0.1, "agrees with a Monte Carlo estimate", first=False,
            fragment="200,000")


# ----------------------------------------------------------------------------- negative ELBO
NE = "vae.negative_elbo"


def _bce(logits, x):
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1)


def test_negative_elbo_reference_accepted(accepts):
    accepts(NE, negative_elbo)
    # another correct form: −log p = softplus(−l)·x + softplus(l)·(1 − x)
    accepts(NE, lambda l, x, mu, lv: (x * F.softplus(-l) + (1 - x) * F.softplus(l)).sum((1, 2, 3))
            + gaussian_kl(mu, lv))


NE_GALLERY = [
    ("scalar batch loss", lambda l, x, mu, lv: F.binary_cross_entropy_with_logits(l, x) + gaussian_kl(mu, lv).mean(),
     "one value per image, shape (N,)", "one number"),
    ("per-pixel mean (S0.5)", lambda l, x, mu, lv: _bce(l, x).mean(1) + gaussian_kl(mu, lv),
     "reconstruction (summed over pixels) + KL", "per-pixel mean"),
    ("mean BCE + summed KL (S0.5)", lambda l, x, mu, lv: F.binary_cross_entropy_with_logits(l, x) + gaussian_kl(mu, lv),
     "reconstruction (summed over pixels) + KL", "64×"),
    ("no KL (S3.5, S4.8)", lambda l, x, mu, lv: _bce(l, x).sum(1),
     "reconstruction (summed over pixels) + KL", "no KL"),
    ("KL sign", lambda l, x, mu, lv: _bce(l, x).sum(1) - gaussian_kl(mu, lv),
     "reconstruction (summed over pixels) + KL", "wrong sign"),
    ("sigmoid then logits loss", lambda l, x, mu, lv: _bce(torch.sigmoid(l), x).sum(1) + gaussian_kl(mu, lv),
     "reconstruction (summed over pixels) + KL", "sigmoid"),
    ("MSE (S4.8)", lambda l, x, mu, lv: (torch.sigmoid(l) - x).pow(2).flatten(1).sum(1) + gaussian_kl(mu, lv),
     "reconstruction (summed over pixels) + KL", "squared error"),
    ("probabilities + BCELoss", lambda l, x, mu, lv: F.binary_cross_entropy(torch.sigmoid(l), x, reduction="none")
     .flatten(1).sum(1) + gaussian_kl(mu, lv),
     "exact for confident logits (computed from logits)", "clips log"),
    ("naive log sigmoid", lambda l, x, mu, lv: -(x * torch.sigmoid(l).log() + (1 - x) * (1 - torch.sigmoid(l)).log())
     .flatten(1).sum(1) + gaussian_kl(mu, lv),
     "exact for confident logits (computed from logits)", "inf/NaN"),
]


@pytest.mark.parametrize("label,fn,case,fragment", NE_GALLERY, ids=[g[0] for g in NE_GALLERY])
def test_negative_elbo_gallery_rejected(rejects, label, fn, case, fragment):
    rejects(NE, fn, case, fragment)


# ----------------------------------------------------------------------------- IWAE
IW = "vae.iwae"


def test_iwae_reference_accepted(accepts):
    accepts(IW, iwae_bound)
    accepts(IW, lambda lw: lw.max(0).values + ((lw - lw.max(0).values).exp().mean(0)).log())


IW_GALLERY = [
    ("wrong axis", lambda lw: torch.logsumexp(lw, 1) - math.log(lw.shape[1]),
     "one value per image, shape (N,)", "axis 0"),
    ("no minus log K", lambda lw: torch.logsumexp(lw, 0), "log of the average weight", "log K"),
    ("mean of log-weights", lambda lw: lw.mean(0), "log of the average weight", "ordinary ELBO"),
    ("max log-weight", lambda lw: lw.max(0).values, "log of the average weight", "largest"),
    ("naive exp", lambda lw: lw.exp().mean(0).log(), "stable for log-weights of ±1000", "logsumexp"),
]


@pytest.mark.parametrize("label,fn,case,fragment", IW_GALLERY, ids=[g[0] for g in IW_GALLERY])
def test_iwae_gallery_rejected(rejects, label, fn, case, fragment):
    rejects(IW, fn, case, fragment)


def test_stub_falls_back_to_reference(capsys):
    from genlib.exercises import check

    def stub(mu, logvar):
        raise NotImplementedError

    assert check(REP, stub) is reparameterize
    assert "not done yet" in capsys.readouterr().out


# ------------------------------------------------------------------ turn-3 reviews (issue 23): first messages
REVIEW = [
    # the S0.5 bug showcased in chapter 05 §… : one message ("no noise"), no "shared ε" / "add mu" advice
    (REP, "S0.5 showcase: one diagnosis", lambda mu, lv: mu + torch.exp(0.5 * lv), "draws fresh noise", "no noise"),
    (REP, "noise made on the CPU (no device=)", lambda mu, lv: mu + (0.5 * lv).exp() * torch.randn(mu.shape),
     "runs on the device and dtype of its inputs (the chapter trains on a GPU when there is one)",
     "device mismatch inside your function"),
    ("vae.negative_elbo", "KL averaged over latents (chapter's 16-D batch)",
     lambda l, x, mu, lv: _bce(l, x).sum(1) + 0.5 * (mu**2 + lv.exp() - 1 - lv).mean(-1),
     "reconstruction (summed over pixels) + KL", "averaged over the latent dimensions"),
    ("vae.iwae", "float64 result for float32 log-weights",
     lambda log_w: torch.logsumexp(log_w.double(), 0) - math.log(log_w.shape[0]),
     "log of the average weight", "your function returned a float64 tensor"),
]


@pytest.mark.parametrize("name,label,fn,case,frag", REVIEW, ids=[g[1] for g in REVIEW])
def test_review_holes_first_message(rejects, name, label, fn, case, frag):
    report = rejects(name, fn, case, frag)
    assert sum(" — " in line for line in report.text().splitlines()) == 1, report.text()
