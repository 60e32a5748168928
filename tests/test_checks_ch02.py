"""Gallery for chapter 02's loss checks: references pass, each classic mistake is named."""
import pytest
import torch
import torch.nn.functional as F

from genlib import losses
from genlib.exercises import assert_first_failure

@pytest.fixture
def rejects():
    """Gallery assertion: the named case is the FIRST message the learner reads (one diagnosis per
    mistake), and it contains the fragment."""
    return assert_first_failure

sig = torch.sigmoid
BIG = "exact at logits of ±200, value and gradient (no overflow, no clamp)"
UNEQUAL = "real and fake batches of different sizes"


def test_references_accepted(accepts):
    accepts("gan.d_loss", losses.d_loss)
    accepts("gan.g_loss", losses.g_loss)
    accepts("gan.lsgan_d_loss", losses.lsgan_d_loss)
    accepts("gan.lsgan_g_loss", losses.lsgan_g_loss)
    accepts("gan.hinge_d_loss", losses.hinge_d_loss)
    accepts("gan.hinge_g_loss", losses.hinge_g_loss)


def test_other_correct_forms_accepted(accepts):
    def d_bce(r, f):  # the nn.functional way, shape-safe
        r, f = r.view(-1), f.view(-1)
        return (F.binary_cross_entropy_with_logits(r, torch.ones_like(r))
                + F.binary_cross_entropy_with_logits(f, torch.zeros_like(f)))

    def d_logsigmoid(r, f):
        return -F.logsigmoid(r).mean() - F.logsigmoid(-f).mean()

    accepts("gan.d_loss", d_bce)
    accepts("gan.d_loss", d_logsigmoid)
    accepts("gan.g_loss", lambda f: -F.logsigmoid(f).mean())
    accepts("gan.g_loss", lambda f: F.binary_cross_entropy_with_logits(f, torch.ones_like(f)))
    accepts("gan.hinge_d_loss", lambda r, f: torch.clamp(1 - r, min=0).mean() + torch.clamp(1 + f, min=0).mean())

    def d_module(r, f):  # nn.BCEWithLogitsLoss with targets built from the logits
        bce = torch.nn.BCEWithLogitsLoss()
        return bce(r, torch.ones_like(r)) + bce(f, torch.zeros_like(f))

    accepts("gan.d_loss", d_module)
    accepts("gan.lsgan_d_loss", lambda r, f: 0.5 * F.mse_loss(r, torch.ones_like(r)) + 0.5 * F.mse_loss(f, torch.zeros_like(f)))


# ----------------------------------------------------------------------------- d_loss
def d_probabilities(r, f):  # treats logits as probabilities
    return -(torch.log(r).mean() + torch.log(1 - f).mean())


def d_bce_on_logits(r, f):  # F.binary_cross_entropy wants probabilities
    return F.binary_cross_entropy(r, torch.ones_like(r)) + F.binary_cross_entropy(f, torch.zeros_like(f))


def d_sigmoid_log(r, f):  # right maths, overflows at ±100
    return -(torch.log(sig(r)).mean() + torch.log(1 - sig(f)).mean())


def d_clamped(r, f):  # "fixes" the overflow by clamping, which caps the loss
    p, q = sig(r).clamp(1e-7, 1 - 1e-7), sig(f).clamp(1e-7, 1 - 1e-7)
    return -(torch.log(p).mean() + torch.log(1 - q).mean())


def d_swapped(r, f):
    return F.softplus(r).mean() + F.softplus(-f).mean()


def d_sum(r, f):
    return F.softplus(-r).sum() + F.softplus(f).sum()


def d_broadcast(r, f):
    """Concatenate, then a hand-written BCE against (2N,) targets: silent N×N mean for (N,1) logits."""
    logits = torch.cat([r, f])
    y = torch.cat([torch.ones(len(r)), torch.zeros(len(f))])
    per = -(y * F.logsigmoid(logits) + (1 - y) * F.logsigmoid(-logits))
    return 2 * per.mean()


def d_bceloss_targets(r, f):  # nn.BCEWithLogitsLoss with (N,) targets: raises for (N, 1)
    bce = torch.nn.BCEWithLogitsLoss()
    return bce(r, torch.ones(len(r))) + bce(f, torch.zeros(len(f)))


def d_sigmoid_bceloss(r, f):  # H1: right value at ±100 thanks to BCELoss's −100 clamp
    return (F.binary_cross_entropy(sig(r), torch.ones_like(r))
            + F.binary_cross_entropy(sig(f), torch.zeros_like(f)))


def d_module_sigmoid_bceloss(r, f):  # the same with nn.Sigmoid + nn.BCELoss
    s, bce = torch.nn.Sigmoid(), torch.nn.BCELoss()
    return bce(s(r), torch.ones_like(r)) + bce(s(f), torch.zeros_like(f))


def d_clamped_logits(r, f):  # "avoid overflow" by clamping the logits: caps the loss at 100
    return F.softplus(-r.clamp(-100, 100)).mean() + F.softplus(f.clamp(-100, 100)).mean()


def d_detached_saturated(r, f):  # right values, but no gradient where D is confidently wrong
    r = torch.where(r.abs() > 50, r.detach(), r)
    f = torch.where(f.abs() > 50, f.detach(), f)
    return F.softplus(-r).mean() + F.softplus(f).mean()


def d_concat_times_two(r, f):  # H2: one mean over both batches, ×2: weights real : fake as N : M
    logits = torch.cat([r.view(-1), f.view(-1)])
    y = torch.cat([torch.ones(r.numel()), torch.zeros(f.numel())])
    return 2 * F.binary_cross_entropy_with_logits(logits, y)


def d_double_sigmoid(r, f):
    return losses.d_loss(sig(r), sig(f))


def d_no_fake(r, f):
    return F.softplus(-r).mean()


def d_per_sample(r, f):
    return F.softplus(-r) + F.softplus(f)


def d_item(r, f):
    return torch.tensor(losses.d_loss(r, f).item())


# second entries on an implementation already in a gallery: their case's own message, read after the
# first one is fixed (the first message is asserted by the first entry)
ALSO = {"sum not mean, batch doubled", "no gradient, random logits", "saturating, gradient at logit -8",
        "wrong label gradient", "sum, batch doubled"}

D_GALLERY = [
    ("probabilities", d_probabilities, "matches the reference on random logits", "probabilities"),
    ("BCE on logits", d_bce_on_logits, "returns a scalar", "expects probabilities"),
    ("log of sigmoid", d_sigmoid_log, BIG, "softplus"),
    ("clamped", d_clamped, BIG, "clamping"),
    ("labels swapped", d_swapped, "matches the reference on random logits", "swapped the labels"),
    ("sum not mean", d_sum, "matches the reference on random logits", "summed over the batch"),
    ("sum not mean, batch doubled", d_sum, "mean over the batch, not sum", "sums over the batch"),
    ("(N,1) silent broadcast", d_broadcast, "(N, 1) logits give the same scalar as (N,)", "N×N"),
    ("(N,1) BCE targets", d_bceloss_targets, "(N, 1) logits give the same scalar as (N,)", "ones_like"),
    ("sigmoid + BCELoss (H1)", d_sigmoid_bceloss, BIG, "BCELoss"),
    ("nn.Sigmoid + nn.BCELoss", d_module_sigmoid_bceloss, BIG, "clamps each log term at −100"),
    ("clamped logits", d_clamped_logits, BIG, "capped"),
    ("gradient blocked at large logits", d_detached_saturated, BIG, "no gradient where D is confidently wrong"),
    ("2 × BCE of concatenation (H2)", d_concat_times_two, UNEQUAL, "N : M"),
    ("double sigmoid", d_double_sigmoid, "matches the reference on random logits", "applies its own"),
    ("no fake term", d_no_fake, "matches the reference on random logits", "ignores the fake"),
    ("per-sample", d_per_sample, "returns a scalar", "0-dim"),
    ("no gradient", d_item, BIG, "no gradient"),
    ("no gradient, random logits", d_item, "gradient matches the reference", "no gradient"),
]


@pytest.mark.parametrize("label,fn,case,fragment", D_GALLERY, ids=[g[0] for g in D_GALLERY])
def test_d_loss_gallery(rejects, label, fn, case, fragment):
    rejects("gan.d_loss", fn, case, fragment, first=label not in ALSO)


# ----------------------------------------------------------------------------- g_loss
G_GALLERY = [
    ("saturating", lambda f: -F.softplus(f).mean(), "matches the reference on random logits", "saturating"),
    ("saturating, gradient at logit -8", lambda f: -F.softplus(f).mean(), "strong gradient when D rejects the fakes",
     "saturating"),
    ("saturating named", lambda f: torch.log(1 - sig(f)).mean(), "matches the reference on random logits",
     "saturating loss"),
    ("one minus mean (S1.7)", lambda f: 1 - sig(f).mean(), "matches the reference on random logits", "S1.7"),
    ("wrong label", lambda f: F.softplus(f).mean(), "matches the reference on random logits", "D's goal"),
    ("wrong label gradient", lambda f: F.softplus(f).mean(), "strong gradient when D rejects the fakes",
     "raise D(G(z))"),
    ("log of sigmoid", lambda f: -torch.log(sig(f)).mean(), BIG, "inf"),
    ("sum", lambda f: F.softplus(-f).sum(), "matches the reference on random logits", "summed over the batch"),
    ("sum, batch doubled", lambda f: F.softplus(-f).sum(), "mean over the batch, not sum", "sums"),
    ("sigmoid + BCELoss (H1)", lambda f: F.binary_cross_entropy(sig(f), torch.ones_like(f)), BIG, "BCELoss"),
    ("nn.Sigmoid + nn.BCELoss", lambda f: torch.nn.BCELoss()(torch.nn.Sigmoid()(f), torch.ones_like(f)), BIG,
     "capped at 100"),
    ("gradient blocked at large logits",
     lambda f: F.softplus(-torch.where(f.abs() > 50, f.detach(), f)).mean(), BIG, "gradient"),
    ("probabilities", lambda f: -torch.log(f).mean(), "matches the reference on random logits", "probabilities"),
]


@pytest.mark.parametrize("label,fn,case,fragment", G_GALLERY, ids=[g[0] for g in G_GALLERY])
def test_g_loss_gallery(rejects, label, fn, case, fragment):
    rejects("gan.g_loss", fn, case, fragment, first=label not in ALSO)


# ----------------------------------------------------------------------------- LSGAN and hinge
OTHER_GALLERY = [
    ("gan.lsgan_d_loss", "no half", lambda r, f: (r - 1).pow(2).mean() + f.pow(2).mean(),
     "matches the reference on random logits", "factor ½"),
    ("gan.lsgan_d_loss", "sigmoid first", lambda r, f: losses.lsgan_d_loss(sig(r), sig(f)),
     "matches the reference on random logits", "raw output"),
    ("gan.lsgan_d_loss", "swapped", lambda r, f: losses.lsgan_d_loss(f, r),
     "matches the reference on random logits", "swapped"),
    ("gan.lsgan_d_loss", "(N,1) broadcast, concatenated", lambda r, f: 2 * 0.5 * (
        (torch.cat([r, f]) - torch.cat([torch.ones(len(r)), torch.zeros(len(f))])) ** 2).mean(),
     "(N, 1) logits give the same scalar as (N,)", "broadcast"),
    ("gan.lsgan_d_loss", "concatenated, unequal batches", lambda r, f: 0.5 * 2 * (
        (torch.cat([r.view(-1), f.view(-1)]) - torch.cat([torch.ones(r.numel()), torch.zeros(f.numel())])) ** 2).mean(),
     UNEQUAL, "N : M"),
    ("gan.hinge_d_loss", "concatenated, unequal batches", lambda r, f: 2 * F.relu(
        1 - torch.cat([r.view(-1), -f.view(-1)])).mean(), UNEQUAL, "N : M"),
    ("gan.lsgan_g_loss", "target zero", lambda f: 0.5 * f.pow(2).mean(),
     "matches the reference on random logits", "D's goal"),
    ("gan.lsgan_g_loss", "sum", lambda f: 0.5 * (f - 1).pow(2).sum(), "matches the reference on random logits",
     "summed over the batch"),
    ("gan.hinge_d_loss", "no relu", lambda r, f: (1 - r).mean() + (1 + f).mean(),
     "matches the reference on random logits", "max(0, ·)"),
    ("gan.hinge_d_loss", "flipped signs", lambda r, f: F.relu(1 + r).mean() + F.relu(1 - f).mean(),
     "matches the reference on random logits", "swapped"),
    ("gan.hinge_g_loss", "margin on G", lambda f: F.relu(1 - f).mean(),
     "matches the reference on random logits", "no margin"),
    ("gan.hinge_g_loss", "wrong sign", lambda f: f.mean(), "matches the reference on random logits", "sign"),
]


@pytest.mark.parametrize("name,label,fn,case,fragment", OTHER_GALLERY,
                         ids=[f"{g[0]}-{g[1]}" for g in OTHER_GALLERY])
def test_other_losses_gallery(rejects, name, label, fn, case, fragment):
    rejects(name, fn, case, fragment)


def test_stub_falls_back_to_reference():
    from genlib.exercises import check

    def stub(r, f):
        raise NotImplementedError

    assert check("gan.d_loss", stub, quiet=True) is losses.d_loss


# ------------------------------------------------------------------ turn-3 reviews (issue 23): first messages
def d_cat_one_mean(r, f):  # learner A: one BCE-with-logits mean over cat(real, fake)
    logits = torch.cat([r.view(-1), f.view(-1)])
    return F.binary_cross_entropy_with_logits(logits, torch.cat([torch.ones_like(r.view(-1)),
                                                                  torch.zeros_like(f.view(-1))]))


@pytest.mark.parametrize("name,fn,frag,not_said", [
    ("gan.d_loss", d_cat_one_mean, "half the reference", "BCELoss"),
    ("gan.g_loss", lambda f: -F.softplus(f).mean(), "saturating", "clamping"),
], ids=["d_loss one mean over the concatenation (learner A)", "g_loss saturating (learner A)"])
def test_no_misleading_second_diagnosis(rejects, name, fn, frag, not_said):
    """Learner A: the ±200 case blamed a sigmoid + BCELoss clamp (or clamped probabilities) the code did not
    have. The first message names the real mistake; the ±200 case is listed as a consequence only."""
    report = rejects(name, fn, "matches the reference on random logits", frag)
    assert not_said not in report.text(), report.text()
    assert "also fails: exact at logits of ±200" in report.text(), report.text()
