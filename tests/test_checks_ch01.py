"""Gallery for chapter 01: the Gaussian as a complete generative model."""
import math

import pytest
import torch

from genlib.density import fit_gaussian, gaussian_log_prob, sample_gaussian
from genlib.exercises import assert_first_failure

@pytest.fixture
def rejects():
    """Gallery assertion: the named case is the FIRST message the learner reads (one diagnosis per
    mistake), and it contains the fragment."""
    return assert_first_failure


def test_references_accepted(accepts):
    accepts("basics.fit_gaussian", fit_gaussian)
    accepts("basics.gaussian_log_prob", gaussian_log_prob)
    accepts("basics.sample_gaussian", sample_gaussian)


def test_alternative_correct_forms_accepted(accepts):
    accepts("basics.fit_gaussian", lambda x: (x.mean(0), torch.cov(x.T, correction=0)))
    accepts("basics.gaussian_log_prob",
            lambda x, m, c: torch.distributions.MultivariateNormal(m, c).log_prob(x))
    accepts("basics.sample_gaussian",
            lambda m, c, n, g=None: m + torch.randn(n, len(m), generator=g, dtype=m.dtype)
            @ torch.linalg.cholesky(c).T)


# ---------------------------------------------------------------- fit_gaussian
def fit_unbiased(x):
    return x.mean(0), torch.cov(x.T)


def fit_no_centre(x):
    return x.mean(0), x.T @ x / len(x)


def fit_wrong_order(x):
    c = x - x.mean(0)
    return x.mean(0), c @ c.T / len(x)


def fit_mean_dim1(x):
    c = x - x.mean(0)
    return x.mean(1), c.T @ c / len(x)


FIT = [
    ("unbiased N-1", fit_unbiased, "cov is the MLE (divide by N)", "N − 1"),
    ("not centred", fit_no_centre, "cov is the MLE (divide by N)", "subtract the mean"),
    ("N x N cov", fit_wrong_order, "returns (mean (D,), cov (D, D))", "wrong order"),
    ("mean over dim 1", fit_mean_dim1, "mean is the average over samples", "dim 0"),
    ("returns cov only", lambda x: torch.cov(x.T), "returns (mean (D,), cov (D, D))", "pair"),
    ("casts to float32", lambda x: fit_gaussian(x.float()), "keeps the input's dtype", "float32"),
    ("diagonal covariance only", lambda x: (x.mean(0), torch.diag(x.var(0, unbiased=False))),
     "cov is the MLE (divide by N)", "diagonal"),
]


@pytest.mark.parametrize("label,fn,case,frag", FIT, ids=[g[0] for g in FIT])
def test_fit_gallery(rejects, label, fn, case, frag):
    rejects("basics.fit_gaussian", fn, case, frag)


# ---------------------------------------------------------------- gaussian_log_prob
def _quad(x, m, c):
    d = x - m
    return (d @ torch.linalg.inv(c) * d).sum(-1)


def lp_no_const(x, m, c):
    return -0.5 * (torch.logdet(c) + _quad(x, m, c))


def lp_no_half(x, m, c):
    return -0.5 * (x.shape[1] * math.log(2 * math.pi) + torch.logdet(c)) - _quad(x, m, c)


def lp_no_logdet(x, m, c):
    return -0.5 * (x.shape[1] * math.log(2 * math.pi) + _quad(x, m, c))


def lp_cov_not_inverse(x, m, c):
    d = x - m
    return -0.5 * (x.shape[1] * math.log(2 * math.pi) + torch.logdet(c) + (d @ c * d).sum(-1))


def lp_summed(x, m, c):
    return gaussian_log_prob(x, m, c).sum()


def lp_chol_logdet_no_2(x, m, c):
    L = torch.linalg.cholesky(c)
    w = torch.linalg.solve_triangular(L, (x - m).T, upper=False).T
    return -0.5 * (x.shape[1] * math.log(2 * math.pi) + torch.log(torch.diagonal(L)).sum() + w.pow(2).sum(-1))


def lp_solve_with_LT(x, m, c):
    L = torch.linalg.cholesky(c)
    w = torch.linalg.solve_triangular(L.T, (x - m).T, upper=True).T
    return -0.5 * (x.shape[1] * math.log(2 * math.pi) + 2 * torch.log(torch.diagonal(L)).sum() + w.pow(2).sum(-1))


def lp_density(x, m, c):
    return gaussian_log_prob(x, m, c).exp()


LP = [
    ("no 2pi constant", lp_no_const, "standard normal in 1-D", "2π"),
    ("no half on quadratic", lp_no_half, "standard normal in 1-D", "½"),
    ("no log det", lp_no_logdet, "scaled variance (log-determinant term)", "log det"),
    ("cov not inverse", lp_cov_not_inverse, "scaled variance (log-determinant term)", "Σ⁻¹"),
    ("summed over batch", lp_summed, "shape (N,)", "shape"),
    ("density not log", lp_density, "standard normal in 1-D", "differs"),
    ("Cholesky log det without the 2", lp_chol_logdet_no_2, "matches torch.distributions for a full covariance",
     "factor 2"),
    ("solve with L transposed", lp_solve_with_LT, "matches torch.distributions for a full covariance", "instead of L"),
]


@pytest.mark.parametrize("label,fn,case,frag", LP, ids=[g[0] for g in LP])
def test_log_prob_gallery(rejects, label, fn, case, frag):
    rejects("basics.gaussian_log_prob", fn, case, frag)


# ---------------------------------------------------------------- sample_gaussian
def sg_cov_not_chol(m, c, n, g=None):
    return m + torch.randn(n, len(m), generator=g, dtype=m.dtype) @ c


def sg_L_not_LT(m, c, n, g=None):
    return m + torch.randn(n, len(m), generator=g, dtype=m.dtype) @ torch.linalg.cholesky(c)


def sg_no_mean(m, c, n, g=None):
    return torch.randn(n, len(m), generator=g, dtype=m.dtype) @ torch.linalg.cholesky(c).T


def sg_no_generator(m, c, n, g=None):
    return m + torch.randn(n, len(m), dtype=m.dtype) @ torch.linalg.cholesky(c).T


def sg_reseeds_global(m, c, n, g=None):
    torch.manual_seed(0)
    return m + torch.randn(n, len(m), dtype=m.dtype) @ torch.linalg.cholesky(c).T


def sg_reseeds_own_generator(m, c, n, g=None):
    own = torch.Generator().manual_seed(0)
    return m + torch.randn(n, len(m), generator=own, dtype=m.dtype) @ torch.linalg.cholesky(c).T


def sg_sqrt_elementwise(m, c, n, g=None):
    return m + torch.randn(n, len(m), generator=g, dtype=m.dtype) @ c.sqrt()


def sg_transposed(m, c, n, g=None):
    return sample_gaussian(m, c, n, g).T


# second entries on an implementation already in the gallery: their case's own message, read after
# the first one is fixed (the first message is asserted by the first entry)
ALSO = {"elementwise sqrt"}

SG = [
    ("cov instead of cholesky", sg_cov_not_chol, "sample mean and covariance match", "Σ²"),
    ("eps @ L", sg_L_not_LT, "sample mean and covariance match", "ε @ L.T"),
    ("mean forgotten", sg_no_mean, "sample mean and covariance match", "add the mean"),
    ("elementwise sqrt, negative entries", sg_sqrt_elementwise, "uses the generator (reproducible)",
     "NaN"),
    ("elementwise sqrt", sg_sqrt_elementwise, "sample mean and covariance match", "every entry"),
    ("generator ignored", sg_no_generator, "uses the generator (reproducible)", "generator"),
    ("reseeds torch inside (H2)", sg_reseeds_global, "uses the generator (reproducible)", "reseeds internally"),
    ("new seeded Generator inside (H2)", sg_reseeds_own_generator, "uses the generator (reproducible)",
     "reseeds internally"),
    ("transposed", sg_transposed, "shape (n, D)", "shape"),
]


@pytest.mark.parametrize("label,fn,case,frag", SG, ids=[g[0] for g in SG])
def test_sample_gallery(rejects, label, fn, case, frag):
    rejects("basics.sample_gaussian", fn, case, frag, first=label not in ALSO)


def test_density_module_facts():
    x = torch.randn(500, 2, dtype=torch.float64)
    m, c = fit_gaussian(x)
    ref = torch.distributions.MultivariateNormal(m, c).log_prob(x)
    assert torch.allclose(gaussian_log_prob(x, m, c), ref, atol=1e-9)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        fit_gaussian(torch.randn(5))


# ------------------------------------------------------------------ turn-3 reviews (issue 23): first messages
def sg_randn_float32(m, c, n, g=None):  # learner A: ε from torch.randn without dtype, inputs float64
    return m + torch.randn(n, len(m), generator=g) @ torch.linalg.cholesky(c).T


def fit_centres_in_place(x):  # x -= mean: the caller's data changes
    mean = x.mean(0)
    x -= mean
    return mean, x.T @ x / len(x)


def lp_float32(x, m, c):  # computed in float32: the chapter's 1e-9 gradient check cannot hold
    return gaussian_log_prob(x.float(), m.float(), c.float())


REVIEW = [
    ("basics.sample_gaussian", "float32 noise for float64 inputs (learner A)", sg_randn_float32, "shape (n, D)",
     "dtype mismatch inside your function: it mixes float32 and float64"),
    ("basics.fit_gaussian", "centres the data in place", fit_centres_in_place, "leaves its inputs unchanged",
     "changed its input x in place"),
    ("basics.gaussian_log_prob", "float32 log-density", lp_float32,
     "standard normal in 1-D", "your function returned a float32 tensor"),
]


@pytest.mark.parametrize("name,label,fn,case,frag", REVIEW, ids=[g[1] for g in REVIEW])
def test_review_holes_first_message(rejects, name, label, fn, case, frag):
    rejects(name, fn, case, frag)
