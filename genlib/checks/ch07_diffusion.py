"""Checks for chapter 07 (diffusion and flow matching).

Diffusion: the cumulative schedule ᾱ, the closed-form forward process q(x_t | x_0), the simple
ε-loss, a DDIM step, classifier-free guidance. Flow matching: the linear path, its velocity target,
the training loss and the Euler sampler.

Every check compares against formulas written out here (not against genlib's own functions), and
when the learner's numbers equal a known wrong formula it names that mistake.
"""
import math
import re

import torch

from genlib.diffusion import Schedule, ddim_step, diffusion_loss, guided, q_sample
from genlib.exercises import CheckFailure, expect_tensor, probe, register
from genlib.flow import euler_sample, flow_matching_loss, interpolate, velocity_target
from genlib.probes import ch07 as P


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _close(a, b, tol: float = 1e-4) -> bool:
    return (torch.is_tensor(a) and a.shape == b.shape and bool(torch.isfinite(a).all())
            and torch.allclose(a.double(), b.double(), rtol=tol, atol=tol))


def _col(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(N,) → (N, 1, ..., 1) so that it multiplies one number per sample of ``like``."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def _untouched(fn, args, what):
    """Call fn on clones and fail when it wrote into any of its tensor arguments."""
    before = [a.clone() if torch.is_tensor(a) else a for a in args]
    out = fn(*args)
    _inputs_untouched(before, args, what)
    return out


def _inputs_untouched(before, after, what):
    """Fail when a tensor argument differs after the call from its copy taken before."""
    for name, a, b in zip(what, after, before):
        if torch.is_tensor(a) and not torch.equal(a, b):
            raise CheckFailure(f"your function changed its input {name} in place (an in-place op such "
                               f"as +=, .mul_() or .add_() on it): the caller still needs {name}. "
                               "Compute a new tensor instead (x = x + ..., not x += ...)")


def _extra_dims(out, x, what):
    """Name a reshape that fits only one rank: the output gained dimensions that x does not have."""
    if torch.is_tensor(out) and out.dim() > x.dim():
        raise CheckFailure(f"for inputs of shape {tuple(x.shape)} your result has shape {tuple(out.shape)}: "
                           f"{what} was reshaped for a fixed number of dimensions (e.g. view(-1, 1, 1, 1), "
                           "which fits only images). " + _broadcast_hint(what))


def _broadcast_hint(what: str) -> str:
    return (f"{what} has one number per sample, shape (N,): reshape it to (N, 1, ..., 1) before "
            f"multiplying, e.g. {what}.view(-1, *[1] * (x.dim() - 1)), so it works for (N, D) points "
            "and (N, C, H, W) images alike")


def _call_broadcast(fn, args, what, names=None):
    try:
        return _untouched(fn, args, names) if names else fn(*args)
    except RuntimeError as e:
        if "size of tensor" in str(e) or "must match" in str(e) or "shape" in str(e):
            raise CheckFailure(f"shapes do not broadcast ({e}). {_broadcast_hint(what)}")
        raise


# ============================================================================ alpha_bar
def alpha_bar_from_betas(betas: torch.Tensor) -> torch.Tensor:
    """ᾱ_t = Π_{s ≤ t} (1 − β_s): betas (T,) → (T,), index t = 0 is the first (least noisy) step."""
    return torch.cumprod(1 - betas, dim=0)


ab_spec = register("diffusion.alpha_bar", alpha_bar_from_betas,
                   "ᾱ_t = Π_{s≤t} (1 − β_s) from the betas (T,) → (T,)")


def _betas(T=50):
    return torch.linspace(1e-3, 0.2, T)


@ab_spec.case("one ᾱ per step, decreasing from just below 1")
def _(fn):
    betas = _betas()
    out = _untouched(fn, (betas.clone(),), ("betas",))
    expect_tensor(out, (50,), "ᾱ")
    if out.dtype != betas.dtype:
        raise CheckFailure(f"ᾱ has dtype {out.dtype} but the betas are {betas.dtype}: return ᾱ in the "
                           "betas' dtype (the chapter compares it with schedule.alpha_bar, and torch "
                           "refuses to compare float64 with float32). Compute in float64 if you like, "
                           "then .to(betas.dtype)")
    if not torch.isfinite(out).all():
        raise CheckFailure("ᾱ contains NaN or inf")
    want = torch.cumprod(1 - betas.double(), 0)
    if (out[1:] > out[:-1] + 1e-7).any():
        if _close(out, 1 - want):
            raise CheckFailure("you returned 1 − ᾱ_t, the noise variance: ᾱ_t itself is the signal's "
                               "share Π(1 − β_s), which decreases with t")
        if _close(out, want.flip(0)) or _close(out, torch.cumprod((1 - betas.double()).flip(0), 0)):
            raise CheckFailure("your ᾱ runs backwards in t (a flipped product): index t = 0 is the first, "
                               "least noisy step, so ᾱ_0 = 1 − β_0 and ᾱ decreases from there")
        raise CheckFailure("ᾱ must decrease with t (more noise at every step): each ᾱ_t is the previous "
                           "one times 1 − β_t < 1, torch.cumprod(1 - betas, 0)")
    if out[0] >= 1 - 1e-7:
        raise CheckFailure("ᾱ_0 = 1: your schedule is shifted by one step (an exclusive product that "
                           "starts at 1). ᾱ_0 = 1 − β_0 already includes the first step's noise")


@ab_spec.case("equals the cumulative product of 1 − β")
def _(fn):
    betas = _betas()
    out = _untouched(fn, (betas.clone(),), ("betas",))
    want = torch.cumprod(1 - betas, 0)
    expect_tensor(out, want.shape, "ᾱ")
    if _close(out, want, 1e-5):
        return
    alphas = 1 - betas
    if _close(out, alphas):
        raise CheckFailure("you returned α_t = 1 − β_t, one step's signal share; ᾱ_t is their product "
                           "over every step up to t (torch.cumprod(1 - betas, 0)): ᾱ vs α confused")
    if _close(out, torch.cumprod(betas, 0)):
        raise CheckFailure("you multiplied the betas: ᾱ is the product of the alphas 1 − β_s")
    if _close(out, torch.cat([torch.ones(1), want[:-1]])):
        raise CheckFailure("your ᾱ is shifted by one step (index t holds ᾱ_{t−1}): the schedule is "
                           "indexed off by one. Use torch.cumprod(1 - betas, 0), no leading 1")
    if _close(out, want.sqrt()):
        raise CheckFailure("you returned √ᾱ (the signal's standard deviation): ᾱ itself is the "
                           "variance-like product Π(1 − β_s); take the square root in q_sample")
    if _close(out, 1 - torch.cumsum(betas, 0)):
        raise CheckFailure("1 − Σβ is only the first-order approximation of Π(1 − β) (and turns "
                           "negative for long schedules): use torch.cumprod(1 - betas, 0)")
    raise CheckFailure("ᾱ differs from Π_{s≤t} (1 − β_s); use torch.cumprod(1 - betas, 0)")


@ab_spec.case("leaves the betas unchanged")
def _(fn):
    _untouched(fn, (_betas(),), ("betas",))


@ab_spec.case("the chapter's T = 1000 schedules, to 1e-6")
def _(fn):
    # what the chapter does next: compare with Schedule.linear/cosine(1000).alpha_bar at atol 1e-6
    for name, sch in (("linear", Schedule.linear(1000)), ("cosine", Schedule.cosine(1000))):
        out = _untouched(fn, (sch.betas.clone(),), ("betas",))
        expect_tensor(out, (1000,), f"ᾱ of the {name} schedule")
        want = torch.cumprod(1 - sch.betas.double(), 0)
        if not _close(out, want, 1e-6):
            err = (out.double() - want).abs().max().item() if torch.isfinite(out).all() else float("nan")
            raise CheckFailure(f"over the {name} schedule with T = 1000 your ᾱ is off by up to {err:.2g} "
                               "(the chapter asserts 1e-6): accumulate the product in one go "
                               "(torch.cumprod(1 - betas, 0)) rather than an approximation")


# ============================================================================ q_sample
qs = register("diffusion.q_sample", q_sample,
              "x_t = √ᾱ·x0 + √(1 − ᾱ)·noise with ᾱ: (N,) broadcast over the other dimensions")


def _q_inputs(shape, seed):
    g = _gen(seed)
    x0 = torch.randn(*shape, generator=g)
    ab = torch.rand(shape[0], generator=g) * 0.9 + 0.05
    noise = torch.randn(*shape, generator=g)
    return x0, ab, noise


def _q_ref(x0, ab, noise):
    return _col(ab, x0).sqrt() * x0 + (1 - _col(ab, x0)).sqrt() * noise


@qs.case("ᾱ broadcast over points (N, 2) and images (N, C, H, W)")
def _(fn):
    # (N, L, D) sequences too: a reshape hard-coded for 2-D or 4-D inputs fails there
    for shape in [(6, 2), (5, 1, 8, 8), (8, 3, 4, 8), (4, 5, 3)]:   # (8, 3, 4, 8) has N = W = 8
        x0, ab, noise = _q_inputs(shape, 0)
        out = _call_broadcast(fn, (x0, ab, noise), "alpha_bar", ("x0", "alpha_bar", "noise"))
        _extra_dims(out, x0, "alpha_bar")
        expect_tensor(out, shape, "x_t")
        if not _close(out, _q_ref(x0, ab, noise)):
            # ᾱ multiplied along the last axis: only computable when that axis has the batch size
            if shape[-1] == shape[0] and _close(out, ab.sqrt() * x0 + (1 - ab).sqrt() * noise):
                raise CheckFailure(f"for inputs {shape} ᾱ was multiplied along the last axis (it happens "
                                   "to have the batch size), not per sample. " + _broadcast_hint("alpha_bar"))
            if len(shape) == 2:
                return  # the formula itself is diagnosed by the next case
            raise CheckFailure(f"right for points but wrong for inputs of shape {shape}: "
                               + _broadcast_hint("alpha_bar"))


@qs.case("√ᾱ·x0 + √(1 − ᾱ)·noise")
def _(fn):
    x0, ab, noise = _q_inputs((64, 3), 1)
    out = _call_broadcast(fn, (x0, ab, noise), "alpha_bar", ("x0", "alpha_bar", "noise"))
    _extra_dims(out, x0, "alpha_bar")
    expect_tensor(out, x0.shape, "x_t")
    a = ab[:, None]
    if _close(out, _q_ref(x0, ab, noise)):
        return
    if _close(out, a * x0 + (1 - a) * noise):
        raise CheckFailure("you scaled x0 by ᾱ and the noise by 1 − ᾱ: those are variances (σ²). "
                           "Scale by their square roots (standard deviations): √ᾱ and √(1 − ᾱ)")
    if _close(out, a.sqrt() * x0 + (1 - a) * noise):
        raise CheckFailure("the noise is scaled by 1 − ᾱ, its variance: the standard deviation √(1 − ᾱ) "
                           "belongs there (σ used where σ² belongs, or the other way round)")
    if _close(out, a * x0 + (1 - a).sqrt() * noise):
        raise CheckFailure("x0 is scaled by ᾱ: the signal's coefficient is √ᾱ (so that the variance "
                           "ᾱ + (1 − ᾱ) = 1 is preserved)")
    if _close(out, (1 - a).sqrt() * x0 + a.sqrt() * noise):
        raise CheckFailure("signal and noise coefficients are swapped: x0 gets √ᾱ (ᾱ near 1 means "
                           "little noise), the noise gets √(1 − ᾱ)")
    if _close(out, a.sqrt() * x0 + (1 - a.sqrt()) * noise):
        raise CheckFailure("the noise coefficient is 1 − √ᾱ: it must be √(1 − ᾱ) so that the two "
                           "variances add up to 1")
    if _close(out, a.sqrt() * x0):
        raise CheckFailure("no noise was added: x_t = √ᾱ·x0 + √(1 − ᾱ)·noise")
    resid = (out - a.sqrt() * x0) / (1 - a).sqrt()
    if _close(resid.std(), torch.tensor(1.0), 0.25) and not _close(resid, noise, 1e-3):
        raise CheckFailure("you drew your own noise instead of using the `noise` argument: the training "
                           "loss compares the network's prediction with exactly that noise")
    raise CheckFailure("x_t differs from √ᾱ·x0 + √(1 − ᾱ)·noise")


@qs.case("ᾱ = 1 gives x0, ᾱ = 0 gives the noise")
def _(fn):
    x0, _, noise = _q_inputs((4, 1, 8, 8), 2)
    ab = torch.tensor([1.0, 0.0, 1.0, 0.0])
    out = _untouched(fn, (x0, ab, noise), ("x0", "alpha_bar", "noise"))
    expect_tensor(out, x0.shape, "x_t")
    want = torch.stack([x0[0], noise[1], x0[2], noise[3]])
    if not _close(out, want):
        raise CheckFailure("at ᾱ = 1 x_t must be x0 exactly and at ᾱ = 0 pure noise; check the "
                           "coefficients (and that nothing like an eps inside the sqrt is added)")


@qs.case("leaves its inputs unchanged")
def _(fn):
    _untouched(fn, _q_inputs((4, 1, 8, 8), 3), ("x0", "alpha_bar", "noise"))


@qs.case("as the chapter calls it: one ᾱ expanded over the batch, float32 and float64 inputs")
def _(fn):
    # the chapter's calls: q_sample(x0_f64, ab64[t].expand(N), noise_f64) and a float32 ring with
    # schedule.alpha_bar[t].expand(N); an expanded ᾱ has stride 0, and float64 must stay float64
    g = _gen(5)
    sch = Schedule.cosine(100)
    for dtype, t in ((torch.float64, 30), (torch.float32, 99), (torch.float32, 0)):
        x0 = torch.randn(500, 2, generator=g, dtype=dtype)
        noise = torch.randn(500, 2, generator=g, dtype=dtype)
        ab = sch.alpha_bar.to(dtype)[t].expand(500)
        out = _call_broadcast(fn, (x0, ab, noise), "alpha_bar", ("x0", "alpha_bar", "noise"))
        _extra_dims(out, x0, "alpha_bar")
        expect_tensor(out, x0.shape, "x_t")
        if out.dtype != dtype:
            raise CheckFailure(f"x_t came back as {out.dtype} for {dtype} inputs: return x_t in the dtype of "
                               "the inputs. The chapter calls q_sample both with float32 tensors (for its "
                               "float32 networks) and with float64 tensors; a float64 result for float32 inputs "
                               "crashes the float32 network it is fed to. Do not convert inside (no .float(), .double() or "
                               "torch.tensor(...) around ᾱ), or convert the result back with .to(x0.dtype)")
        if not _close(out, _q_ref(x0.double(), ab.double(), noise.double()), 1e-5):
            raise CheckFailure(f"with ᾱ = schedule.alpha_bar[{t}].expand(N) (a 0-d value broadcast over the "
                               "batch, as the chapter passes it) x_t differs from √ᾱ·x0 + √(1 − ᾱ)·noise")


# ============================================================================ simple ε-loss
dl = register("diffusion.loss", diffusion_loss,
              "the simple loss: t ~ U{0..T−1} per sample, fresh noise, mean ‖ε − ε_θ(x_t, t)‖²")


_EpsProbe = P.EpsProbe  # the instrumented ε-model lives in genlib.probes.ch07


def _eps_loss(fn, x0, sch, mode="ab", **kw):
    """The learner's loss on an _EpsProbe, run where the learner's function lives (a probe)."""
    try:
        return probe(fn, P.eps_loss, x0, sch.betas, mode, **kw)
    except IndexError as e:
        m = re.search(r"index (-?\d+) is out of bounds for dimension 0 with size (\d+)", str(e))
        if not m or int(m.group(2)) != sch.T:
            raise
        i, T = int(m.group(1)), sch.T
        raise CheckFailure(f"your loss indexed the schedule at {i}, outside 0 … T − 1 = 0 … {T - 1} (torch: "
                           f"\"{str(e).splitlines()[0][:80]}\"). Here the steps are 0-based, t runs over 0 … T − 1 "
                           "(the papers' 1 … T shifted down by one), and schedule.alpha_bar[t] has T entries: "
                           "draw t = torch.randint(0, schedule.T, (N,)) — randint's upper bound is exclusive — "
                           "and use that same t for ᾱ and for the model") from None


def _loss_inputs(seed=0, shape=(256, 2)):
    g = _gen(seed)
    return torch.randn(*shape, generator=g), Schedule.linear(20, beta_start=0.05, beta_end=0.5)


def _scalar(out, what="your loss"):
    expect_tensor(out, what=what)
    if out.dim() != 0:
        raise CheckFailure(f"{what} has shape {tuple(out.shape)}: return one number, the mean over "
                           "the batch and every dimension")
    return out


def _t_given(seen, n):
    """Fail when the model was not given one integer step per sample as a (N,) tensor — the form
    TimeMLP and TinyUNet take (anything else crashes or silently mis-scales in the chapter)."""
    if not seen:
        raise CheckFailure("the model was never called: the loss is mean((eps_model(x_t, t) − ε)²)")
    for _, t in seen:
        if not torch.is_tensor(t):
            raise CheckFailure(f"the model got t as {type(t).__name__}: pass a tensor of shape (N,) with one "
                               "integer step per sample, e.g. torch.randint(0, schedule.T, (N,))")
        if t.dim() != 1 or t.shape[0] != n:
            raise CheckFailure(f"the model got t of shape {tuple(t.shape)}: pass one step per sample as a 1-D "
                               f"tensor of shape (N,) = ({n},). Reshape only the copy of ᾱ_t you broadcast "
                               "over x0; the chapter's TimeMLP and TinyUNet crash on a (N, 1) t")
        if t.is_floating_point() and not (torch.equal(t, t.round()) and float(t.max()) >= 1):
            raise CheckFailure(f"the model got a {t.dtype} t: pass the integer step t (a long tensor in "
                               "0 … T − 1), not t/T — the chapter's models scale it themselves "
                               "(TimeMLP(time_scale=...)) and index the schedule with the same t")


def _formula_first(fn, x0, sch, why):
    """A consequence, not a new diagnosis: fail pointing at the first case when x_t or the target is wrong."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        out = _scalar(_eps_loss(fn, x0, sch, "ab", model_x0=x0.clone())["out"])
    if not (torch.isfinite(out) and out.item() < 1e-6):
        raise CheckFailure(f"(follows from the first ✗: x_t is not √ᾱ_t·x0 + √(1 − ᾱ_t)·ε for the t the model "
                           f"gets, or the target is not that ε, so {why}; fix that first)")


@dl.case("x_t built with ᾱ at the sampled t, target the noise")
def _(fn):
    torch.manual_seed(0)
    x0, sch = _loss_inputs()
    keep = x0.clone()
    obs = _eps_loss(fn, x0, sch, "ab", model_x0=x0.clone())
    _inputs_untouched([keep], [obs["x0_after"]], ["x0"])
    _t_given(obs["seen"], x0.shape[0])
    out = _scalar(obs["out"])
    if out.item() < 1e-6:
        return
    for mode, msg in [
        ("ab+1", "x_t was noised with ᾱ_{t+1} but the model is told t: the schedule is indexed off by "
                 "one. Use schedule.alpha_bar[t] with the same t you pass to the model"),
        ("ab-1", "x_t was noised with ᾱ_{t−1} but the model is told t: the schedule is indexed off by "
                 "one. Use schedule.alpha_bar[t] with the same t you pass to the model"),
        ("alpha", "x_t was noised with α_t = 1 − β_t (one step) instead of ᾱ_t (the product over all "
                  "steps up to t): ᾱ vs α confused. q(x_t | x0) uses schedule.alpha_bar[t]"),
        ("var", "x_t = ᾱ·x0 + (1 − ᾱ)·noise uses variances as coefficients: σ² where σ belongs. Use "
                "√ᾱ and √(1 − ᾱ) (q_sample)"),
        ("x0", "your loss regresses the model's output on x0: in the ε-parameterisation the target "
               "is the noise that was added"),
    ]:
        torch.manual_seed(0)
        if _scalar(_eps_loss(fn, x0, sch, mode)["out"]).item() < 1e-6:
            raise CheckFailure(msg)
    # √ᾱ handed to q_sample as its ᾱ: then (x_t − ᾱ^¼·x0)/√(1 − √ᾱ) is pure noise, uncorrelated with x0
    x_t, t = obs["seen"][-1]
    a = _col(sch.alpha_bar[torch.as_tensor(t).long().reshape(-1)], x_t)
    eps_h = (x_t - a.sqrt().sqrt() * x0) / (1 - a.sqrt()).sqrt()
    corr = torch.corrcoef(torch.stack([eps_h.flatten(), x0.flatten()]))[0, 1]
    # 512 values: the correlation's standard error is about 0.04
    if torch.isfinite(corr) and abs(corr) < 0.15 and abs(eps_h.std().item() - 1) < 0.15:
        raise CheckFailure("x_t was built with √ᾱ_t where ᾱ_t belongs (√ᾱ passed to q_sample, which takes "
                           "the square roots itself): q_sample(x0, schedule.alpha_bar[t], ε)")
    raise CheckFailure("the model's input is not √ᾱ_t·x0 + √(1 − ᾱ_t)·ε for the t it receives, or the "
                       "target is not that ε. Draw t (N,) and ε, build x_t with q_sample(x0, "
                       "schedule.alpha_bar[t], ε), return mean((model(x_t, t) − ε)²)")


@dl.case("one t and one noise draw per sample")
def _(fn):
    torch.manual_seed(1)
    x0, sch = _loss_inputs(1)
    seen = _eps_loss(fn, x0, sch, calls=3)["seen"]
    _t_given(seen, x0.shape[0])
    _formula_first(fn, x0, sch, "the t and noise it used cannot be read back")
    ts, epss = [], []
    for x_t, t in seen:
        t = torch.as_tensor(t).long().reshape(-1)
        ts.append(t)
        a = _col(sch.alpha_bar[t], x_t)
        epss.append((x_t - a.sqrt() * x0) / (1 - a).sqrt())
    t = torch.cat(ts)
    if t.min() < 0 or t.max() > sch.T - 1:
        raise CheckFailure(f"t ranged over [{t.min().item()}, {t.max().item()}]: draw t from 0 … T − 1")
    if all(bool((tt == tt[0]).all()) for tt in ts):
        raise CheckFailure("every sample of a batch gets the same t: draw one t per sample")
    # over 768 draws from 20 steps, missing an end by chance has probability about 2·0.95^768 ≈ 1e-17
    if t.min() > 0:
        raise CheckFailure("t = 0 was never drawn (768 samples): step 0 is the last step of every DDPM and "
                           "DDIM sample, so it must be trained. t runs over 0 … T − 1 (0-based, unlike the "
                           "papers' 1 … T): torch.randint(0, schedule.T, (N,))")
    if t.max() < sch.T - 1:
        raise CheckFailure(f"t = T − 1 = {sch.T - 1} was never drawn (768 samples): the noisiest step, where "
                           "sampling starts, is never trained. torch.randint's upper bound is exclusive: "
                           "torch.randint(0, schedule.T, (N,))")
    if t.unique().numel() < sch.T - 2:
        raise CheckFailure(f"only {t.unique().numel()} of the {sch.T} time steps were drawn in 768 "
                           "samples: draw t uniformly from all of 0 … T − 1 (torch.randint(0, T, (N,)))")
    # uniform over the T steps: Pearson's χ² with T − 1 = 19 degrees of freedom exceeds 70 with
    # probability about 1e-7 for a uniform draw (a stratified draw is even closer to uniform)
    counts = torch.bincount(t, minlength=sch.T).double()
    expected = len(t) / sch.T
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    if chi2 > 70:
        raise CheckFailure(f"t is not uniform over 0 … T − 1 (χ² = {chi2:.0f} over 19 degrees of freedom; "
                           f"step 0 drawn {int(counts[0])} times, step {sch.T - 1} {int(counts[-1])} times, "
                           f"about {expected:.0f} each expected): the simple loss draws t ~ U{{0 … T − 1}}, "
                           "torch.randint(0, schedule.T, (N,))")
    eps = epss[0]
    if torch.allclose(eps, eps[:1].expand_as(eps), atol=1e-4):
        raise CheckFailure("every sample got the same noise: the noise is shared across the batch. "
                           "Draw it with the shape of x0: torch.randn_like(x0)")
    if torch.allclose(epss[0], epss[1], atol=1e-4):
        raise CheckFailure("two calls used the same noise: draw fresh noise every call")
    if abs(eps.std().item() - 1) > 0.15:
        raise CheckFailure(f"the noise has std {eps.std().item():.2f}: draw it from N(0, I) (torch.randn_like)")


@dl.case("a mean over the batch and every dimension")
def _(fn):
    torch.manual_seed(2)
    x0, sch = _loss_inputs(2, (32, 1, 4, 4))
    out = _scalar(_eps_loss(fn, x0, sch, offset=0.5)["out"])
    if _close(out, torch.tensor(0.25)):
        return
    _formula_first(fn, x0, sch, "the reduction cannot be read off")
    if _close(out, torch.tensor(0.25 * 16)):
        raise CheckFailure("you summed the squared error over pixels and averaged over the batch: "
                           "the simple loss is a mean over every element (F.mse_loss)")
    if _close(out, torch.tensor(0.25 * 32 * 16)) or _close(out, torch.tensor(0.25 * 32)):
        raise CheckFailure("you summed the squared errors: take the mean (F.mse_loss), so the learning "
                           "rate does not depend on the batch size")
    if _close(out, torch.tensor(0.5)):
        raise CheckFailure("you returned the mean absolute (or root-mean-squared) error: the simple "
                           "loss is the mean *squared* error")
    raise CheckFailure(f"with a prediction off by 0.5 everywhere the loss must be 0.25, got {out.item():.4g}: "
                       "the simple loss is the unweighted mean of (ε_θ − ε)² (a per-step weighting, such as "
                       "the ELBO's, is a different loss)")


@dl.case("gradient reaches the model")
def _(fn):
    torch.manual_seed(3)
    x0, sch = _loss_inputs(3)
    obs = _eps_loss(fn, x0, sch, offset=0.5, backward=True)
    _scalar(obs["out"])
    if not obs["requires_grad"]:
        raise CheckFailure("the loss carries no gradient: the model's output was detached (.detach(), "
                           ".item(), torch.no_grad or numpy) — training would not move it")
    if obs["scale_grad"] is None:
        raise CheckFailure("no gradient reaches the model's parameters")
    _formula_first(fn, x0, sch, "the gradient cannot be compared")
    if not _close(obs["out"], torch.tensor(0.25)):
        raise CheckFailure("(follows from the ✗ on the loss's value: the gradient of a differently reduced "
                           "loss differs too)")
    # the probe's output is scale·ε + 0.5 with ε the noise used, so d loss / d scale = mean(ε) exactly
    eps = []
    for x_t, t in obs["seen"]:
        a = _col(sch.alpha_bar[torch.as_tensor(t).long().reshape(-1)], x_t)
        eps.append((x_t - a.sqrt() * x0) / (1 - a).sqrt())
    want = eps[-1].mean()
    got = obs["scale_grad"].reshape(())
    if not torch.isfinite(got) or abs(got - want) > 1e-4 + 1e-3 * abs(want):
        raise CheckFailure(f"the gradient reaching the model is {got.item():.4g}, the simple loss gives "
                           f"{want.item():.4g}: backpropagate through mean((eps_model(x_t, t) − ε)²) itself")


@dl.case("leaves x0 unchanged")
def _(fn):
    x0, sch = _loss_inputs(4)
    keep = x0.clone()
    after = _eps_loss(fn, x0, sch, model_x0=x0.clone())["x0_after"]
    if not torch.equal(keep, after):
        raise CheckFailure("your loss changed x0 in place: build x_t as a new tensor")


# ============================================================================ DDIM step
dd = register("diffusion.ddim_step", ddim_step,
              "deterministic DDIM (η = 0): x̂0 from ε, then x_prev = √ᾱ_prev·x̂0 + √(1 − ᾱ_prev)·ε")


def _ddim_inputs(shape, seed):
    g = _gen(seed)
    x_t = torch.randn(*shape, generator=g)
    eps = torch.randn(*shape, generator=g)
    ab_t = torch.rand(shape[0], generator=g) * 0.5 + 0.05
    ab_prev = (ab_t + torch.rand(shape[0], generator=g) * 0.4).clamp(max=0.99)
    return x_t, eps, ab_t, ab_prev


_DDN = ("x_t", "eps", "alpha_bar_t", "alpha_bar_prev")


def _ddim_ref(x_t, eps, ab_t, ab_prev):
    a, p = _col(ab_t, x_t), _col(ab_prev, x_t)
    x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
    return p.sqrt() * x0 + (1 - p).sqrt() * eps


@dd.case("ᾱ broadcast over points and images")
def _(fn):
    for shape in [(6, 2), (5, 1, 8, 8), (8, 3, 4, 8), (4, 5, 3)]:
        args = _ddim_inputs(shape, 0)
        out = _call_broadcast(fn, args, "alpha_bar_t", _DDN)
        _extra_dims(out, args[0], "alpha_bar_t")
        expect_tensor(out, shape, "x_prev")
        if len(shape) > 2 and not _close(out, _ddim_ref(*args)):
            pts = _ddim_inputs((6, 2), 0)
            if _close(fn(*pts), _ddim_ref(*pts)):
                raise CheckFailure(f"right for points but wrong for inputs of shape {shape}: "
                                   + _broadcast_hint("alpha_bar_t"))


@dd.case("x̂0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t, then re-noised to ᾱ_prev")
def _(fn):
    x_t, eps, ab_t, ab_prev = _ddim_inputs((64, 3), 1)
    out = _call_broadcast(fn, (x_t, eps, ab_t, ab_prev), "alpha_bar_t", _DDN)
    _extra_dims(out, x_t, "alpha_bar_t")
    expect_tensor(out, x_t.shape, "x_prev")
    if _close(out, _ddim_ref(x_t, eps, ab_t, ab_prev)):
        return
    a, p = ab_t[:, None], ab_prev[:, None]
    x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
    wrong = [
        (_ddim_ref(x_t, eps, ab_prev, ab_t), "ᾱ_t and ᾱ_prev are swapped: the step goes the wrong way "
         "(towards more noise). x̂0 uses ᾱ_t; the result is re-noised to the earlier, larger ᾱ_prev"),
        (p.sqrt() * (x_t - (1 - a) * eps) / a + (1 - p).sqrt() * eps,
         "x̂0 = (x_t − (1 − ᾱ_t)·ε)/ᾱ_t has no square roots: ᾱ_t and 1 − ᾱ_t are variances, the "
         "coefficients are their square roots, x̂0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t"),
        (p * (x_t - (1 - a) * eps) / a + (1 - p) * eps,
         "no square roots anywhere: ᾱ and 1 − ᾱ are variances, the coefficients are their square roots, "
         "x̂0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t and x_prev = √ᾱ_prev·x̂0 + √(1 − ᾱ_prev)·ε"),
        (p.sqrt() * (x_t - (1 - a).sqrt() * eps) / a + (1 - p).sqrt() * eps,
         "x̂0 is divided by ᾱ_t: divide by its square root, x̂0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t"),
        (p.sqrt() * (x_t - (1 - a) * eps) / a.sqrt() + (1 - p).sqrt() * eps,
         "x̂0 subtracts (1 − ᾱ_t)·ε: the noise's standard deviation √(1 − ᾱ_t) belongs there, not its "
         "variance (σ² used where σ belongs)"),
        (p * x0 + (1 - p) * eps, "x_prev = ᾱ_prev·x̂0 + (1 − ᾱ_prev)·ε uses variances as coefficients: "
         "take square roots, √ᾱ_prev and √(1 − ᾱ_prev)"),
        ((p / a).sqrt() * x_t, "only x_t is rescaled: after predicting x̂0 the same ε must be added back "
         "at the earlier noise level, √(1 − ᾱ_prev)·ε"),
        (p.sqrt() * x0 - (1 - p).sqrt() * eps, "the noise is added back with the wrong sign: "
         "x_prev = √ᾱ_prev·x̂0 + √(1 − ᾱ_prev)·ε"),
        (p.sqrt() * x0 + (1 - a).sqrt() * eps, "the re-noising uses √(1 − ᾱ_t): at the earlier step the "
         "noise share is √(1 − ᾱ_prev)"),
        (p.sqrt() * (x_t - (1 - a).sqrt() * eps) + (1 - p).sqrt() * eps,
         "x̂0 was not divided by √ᾱ_t: x̂0 = (x_t − √(1 − ᾱ_t)·ε) / √ᾱ_t"),
        (p.sqrt() * x_t + (1 - p).sqrt() * eps, "x_t was used where the x0 estimate belongs: first "
         "x̂0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t, then x_prev = √ᾱ_prev·x̂0 + √(1 − ᾱ_prev)·ε"),
        (p.sqrt() * x0.clamp(-1, 1) + (1 - p).sqrt() * eps,
         "you clipped x̂0 to [−1, 1]: the step here is the plain DDIM update (the chapter compares it with "
         "sample_ddim(..., clip=False)); clipping is an option of a sampler for images, not part of the step"),
        (x0, "you returned the x0 estimate x̂0: the step goes on to x_prev = √ᾱ_prev·x̂0 + √(1 − ᾱ_prev)·ε"),
        ((p.sqrt() * (1 - a / p) / (1 - a)) * x0 + ((a / p).sqrt() * (1 - p) / (1 - a)) * x_t,
         "that is the DDPM posterior mean μ̃(x_t, x̂0) (the η = 1 step without its noise): DDIM with η = 0 "
         "re-noises x̂0 with the same ε, x_prev = √ᾱ_prev·x̂0 + √(1 − ᾱ_prev)·ε"),
    ]
    for w, msg in wrong:
        if _close(out, w):
            raise CheckFailure(msg)
    if not _close(fn(x_t, eps, ab_t, ab_prev), out, 1e-6):
        raise CheckFailure("two calls on the same inputs differ: DDIM with η = 0 adds no fresh noise")
    raise CheckFailure("x_prev differs from √ᾱ_prev·x̂0 + √(1 − ᾱ_prev)·ε with x̂0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t")


@dd.case("exact when ε is the true noise")
def _(fn):
    g = _gen(2)
    x0, eps = torch.randn(16, 1, 4, 4, generator=g), torch.randn(16, 1, 4, 4, generator=g)
    ab_t, ab_prev = torch.full((16,), 0.2), torch.full((16,), 0.7)
    x_t = 0.2 ** 0.5 * x0 + 0.8 ** 0.5 * eps
    out = _untouched(fn, (x_t, eps, ab_t, ab_prev), _DDN)
    want = 0.7 ** 0.5 * x0 + 0.3 ** 0.5 * eps
    if not _close(out, want, 1e-4):
        raise CheckFailure("with the exact noise, a DDIM step from ᾱ = 0.2 to 0.7 must land on "
                           "√0.7·x0 + √0.3·ε, the same trajectory point one would get by noising x0 to 0.7")
    out1 = fn(x_t, eps, ab_t, torch.ones(16))
    if not _close(out1, x0, 1e-4):
        raise CheckFailure("with ᾱ_prev = 1 (the last step) the result must be the x0 estimate itself")


@dd.case("deterministic and leaves its inputs unchanged")
def _(fn):
    args = _ddim_inputs((8, 1, 4, 4), 3)
    a = _untouched(fn, args, ("x_t", "eps", "alpha_bar_t", "alpha_bar_prev"))
    b = fn(*args)
    if not torch.equal(a, b):
        raise CheckFailure("two calls on the same inputs differ: DDIM with η = 0 adds no fresh noise")


def _eps_closed_form(x, t):
    """A stand-in ε-model for the sampling loop: smooth in x, different at every step."""
    return torch.tanh(x) * (0.5 + t.to(x.dtype)[:, None] / 200)


@dd.case("a whole DDIM loop as the chapter runs it (T = 100, 10 steps, ᾱ_prev = 1 at the end)")
def _(fn):
    from genlib.diffusion import ddim_timesteps
    sch = Schedule.cosine(100)
    z = torch.randn(64, 2, generator=_gen(4))
    ts = ddim_timesteps(sch.T, 10).tolist()
    x, want = z.clone(), z.clone()
    for i, j in zip(ts, ts[1:] + [-1]):
        t = torch.full((64,), i, dtype=torch.long)
        ab_t = sch.alpha_bar[t]
        ab_prev = sch.alpha_bar[torch.full_like(t, j)] if j >= 0 else torch.ones_like(ab_t)
        x = _untouched(fn, (x, _eps_closed_form(x, t), ab_t, ab_prev), _DDN)
        expect_tensor(x, z.shape, f"x_prev at step {i}")
        if x.dtype != z.dtype:
            raise CheckFailure(f"x_prev has dtype {x.dtype} for float32 inputs: keep the inputs' dtype, the "
                               "sampler feeds it back into the model")
        want = _ddim_ref(want, _eps_closed_form(want, t), ab_t, ab_prev)
        if not torch.isfinite(x).all():
            raise CheckFailure(f"x_prev contains NaN or inf at step t = {i} (ᾱ_t = {ab_t[0].item():.2g}): "
                               "divide by √ᾱ_t, and take no square root of a negative number")
    if not _close(x, want, 1e-4):
        raise CheckFailure("over a whole 10-step DDIM loop from t = 99 (ᾱ ≈ 2e-5) down to ᾱ_prev = 1 your "
                           "steps drift from the reference: check the step at the extremes of ᾱ")


# ============================================================================ guidance
gd = register("diffusion.guided", guided,
              "classifier-free guidance: uncond + scale·(cond − uncond)")


_GN = ("cond", "uncond", "scale")


def _g_inputs(seed=0, shape=(8, 1, 4, 4)):
    g = _gen(seed)
    return torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)


@gd.case("scale 0 is the unconditional, scale 1 the conditional prediction")
def _(fn):
    cond, uncond = _g_inputs(0)
    o0, o1 = _untouched(fn, (cond, uncond, 0.0), _GN), _untouched(fn, (cond, uncond, 1.0), _GN)
    expect_tensor(o0, cond.shape, "the guided prediction")
    if _close(o1, uncond) and _close(o0, cond):
        raise CheckFailure("scale 1 returned the unconditional and scale 0 the conditional prediction: "
                           "the roles of cond and uncond are swapped (uncond + s·(cond − uncond))")
    if _close(o0, cond):
        raise CheckFailure("scale 0 returned the conditional prediction: you start from cond, "
                           "cond + s·(cond − uncond) — the (1 + w) convention of Ho & Salimans 2022. Here "
                           "scale 1 means the conditional prediction alone: uncond + s·(cond − uncond)")
    if _close(o1, 2 * cond - uncond):
        raise CheckFailure("scale 1 gave 2·cond − uncond: that is the (1 + w) convention. Here scale 1 "
                           "must give cond alone: uncond + s·(cond − uncond)")
    if _close(o0, torch.zeros_like(o0)):
        raise CheckFailure("scale 0 gave zeros: the guided prediction is uncond + s·(cond − uncond), "
                           "the unconditional term is not scaled")
    if not _close(o0, uncond):
        raise CheckFailure("scale 0 must return the unconditional prediction")
    if not _close(o1, cond):
        raise CheckFailure("scale 1 must return the conditional prediction")


@gd.case("extrapolates beyond the conditional for scale > 1")
def _(fn):
    cond, uncond = _g_inputs(1)
    out = _untouched(fn, (cond, uncond, 3.0), _GN)
    expect_tensor(out, cond.shape, "the guided prediction")
    if _close(out, uncond + 3 * (cond - uncond)):
        return
    if _close(out, uncond + 3 * (uncond - cond)) or _close(out, cond + 3 * (uncond - cond)):
        raise CheckFailure("the guidance sign is reversed: you push away from the conditional "
                           "prediction. uncond + s·(cond − uncond) moves towards the class")
    if _close(out, 3 * cond + uncond) or _close(out, 3 * cond - 2 * uncond * 0 + uncond):
        raise CheckFailure("you added s·cond to uncond: the scale multiplies the difference cond − uncond")
    if _close(out, cond + 3 * (cond - uncond)):
        raise CheckFailure("you start from cond: uncond + s·(cond − uncond)")
    if _close(out, uncond + 3 * cond - uncond * 1) or _close(out, 3 * (cond - uncond)):
        raise CheckFailure("the unconditional base is missing or scaled: uncond + s·(cond − uncond)")
    if _close(out, 3 * uncond + (cond - uncond)):
        raise CheckFailure("the scale is applied to the wrong term (uncond): it multiplies cond − uncond")
    raise CheckFailure("for scale 3 the result must be uncond + 3·(cond − uncond)")


@gd.case("works with a per-sample scale of shape (N, 1, ..., 1)")
def _(fn):
    cond, uncond = _g_inputs(2)
    s = torch.linspace(0, 4, 8).view(8, 1, 1, 1)
    out = _untouched(fn, (cond, uncond, s), _GN)
    if _close(out, uncond + s * (cond - uncond)):
        return
    if not all(_close(_untouched(fn, (cond, uncond, v), _GN), uncond + v * (cond - uncond))
               for v in (0.0, 1.0, 2.5)):
        raise CheckFailure("(follows from the ✗ above: the formula is already wrong for a float scale)")
    raise CheckFailure("right for a float scale but wrong for a tensor scale of shape (N, 1, 1, 1): use "
                       "plain arithmetic, uncond + scale * (cond - uncond), no .item() or float(scale)")


@gd.case("leaves cond and uncond unchanged")
def _(fn):
    cond, uncond = _g_inputs(3)
    _untouched(fn, (cond, uncond, 2.5), ("cond", "uncond", "scale"))


# ============================================================================ flow: interpolate
ip = register("flow.interpolate", interpolate,
              "the linear path x_t = (1 − t)·x0 + t·x1, x0 noise, x1 data, t: (N,) in [0, 1]")


_IPN = ("x0", "x1", "t")


def _path_inputs(shape, seed):
    g = _gen(seed)
    return (torch.randn(*shape, generator=g), torch.randn(*shape, generator=g) + 2,
            torch.rand(shape[0], generator=g))


@ip.case("t broadcast over points (N, 2) and images (N, C, H, W)")
def _(fn):
    for shape in [(6, 2), (5, 1, 8, 8), (8, 3, 4, 8), (4, 5, 3)]:
        x0, x1, t = _path_inputs(shape, 0)
        out = _call_broadcast(fn, (x0, x1, t), "t", _IPN)
        _extra_dims(out, x0, "t")
        expect_tensor(out, shape, "x_t")
        tt = _col(t, x0)
        if len(shape) > 2 and not _close(out, (1 - tt) * x0 + tt * x1):
            if shape[-1] == shape[0] and _close(out, (1 - t) * x0 + t * x1):
                raise CheckFailure(f"for inputs {shape} t was multiplied along the last axis (it happens to "
                                   "have the batch size), not per sample. " + _broadcast_hint("t"))
            pts = _path_inputs((6, 2), 0)
            tp = pts[2][:, None]
            if _close(fn(*pts), (1 - tp) * pts[0] + tp * pts[1]):
                raise CheckFailure(f"right for points but wrong for inputs of shape {shape} (a t[:, None] "
                                   "only fits 2-D inputs). " + _broadcast_hint("t"))


@ip.case("t = 0 is the noise x0, t = 1 the data x1")
def _(fn):
    x0, x1, _ = _path_inputs((4, 2), 1)
    t = torch.tensor([0.0, 1.0, 0.0, 1.0])
    out = _call_broadcast(fn, (x0, x1, t), "t", _IPN)
    _extra_dims(out, x0, "t")
    expect_tensor(out, x0.shape, "x_t")
    want = torch.stack([x0[0], x1[1], x0[2], x1[3]])
    if _close(out, want):
        return
    if _close(out, torch.stack([x1[0], x0[1], x1[2], x0[3]])):
        raise CheckFailure("x0 and x1 are swapped: at t = 0 the path is at the noise x0 and at t = 1 at "
                           "the data x1, so x_t = (1 − t)·x0 + t·x1")
    raise CheckFailure("the path must start at x0 (t = 0) and end at x1 (t = 1)")


@ip.case("linear in t: (1 − t)·x0 + t·x1")
def _(fn):
    x0, x1, t = _path_inputs((64, 3), 2)
    out = _call_broadcast(fn, (x0, x1, t), "t", _IPN)
    _extra_dims(out, x0, "t")
    expect_tensor(out, x0.shape, "x_t")
    tt = t[:, None]
    if _close(out, (1 - tt) * x0 + tt * x1):
        return
    if _close(out, tt * x0 + (1 - tt) * x1):
        raise CheckFailure("x0 and x1 are swapped: x_t = (1 − t)·x0 + t·x1 (t = 1 is data)")
    if _close(out, (1 - tt).sqrt() * x0 + tt.sqrt() * x1) or \
            _close(out, torch.cos(math.pi / 2 * tt) * x0 + torch.sin(math.pi / 2 * tt) * x1):
        raise CheckFailure("that is a curved (variance-preserving) path: flow matching here uses the "
                           "straight line (1 − t)·x0 + t·x1")
    if _close(out, x0 + tt * x1):
        raise CheckFailure("x0 is not scaled by (1 − t): the noise must vanish at t = 1")
    raise CheckFailure("x_t differs from (1 − t)·x0 + t·x1")


@ip.case("leaves its inputs unchanged")
def _(fn):
    _untouched(fn, _path_inputs((4, 1, 4, 4), 3), ("x0", "x1", "t"))


@ip.case("as the chapter calls it: one time expanded over the batch")
def _(fn):
    # the chapter draws paths with interpolate(z, data, t_k.expand(N)): a 0-d time broadcast (stride 0)
    x0, x1, _ = _path_inputs((500, 2), 4)
    for tk in torch.linspace(0, 1, 5):
        t = tk.expand(500)
        out = _call_broadcast(fn, (x0, x1, t), "t", _IPN)
        _extra_dims(out, x0, "t")
        expect_tensor(out, x0.shape, "x_t")
        if not _close(out, (1 - tk) * x0 + tk * x1):
            raise CheckFailure(f"with t = torch.tensor({tk.item():g}).expand(N), as the chapter passes it, x_t "
                               "differs from (1 − t)·x0 + t·x1")


# ============================================================================ flow: velocity target
vt = register("flow.velocity_target", velocity_target,
              "the velocity of the straight path from noise x0 to data x1: x1 − x0")


@vt.case("x1 − x0 (points from noise to data)")
def _(fn):
    g = _gen(0)
    x0, x1 = torch.randn(32, 2, generator=g), torch.randn(32, 2, generator=g) + 3
    out = _untouched(fn, (x0, x1), ("x0", "x1"))
    expect_tensor(out, x0.shape, "the velocity")
    if _close(out, x1 - x0):
        return
    if _close(out, x0 - x1):
        raise CheckFailure("the velocity's sign is flipped: it points from the noise x0 to the data x1, "
                           "x1 − x0 (Euler then moves x0 towards the data)")
    if _close(out, x1):
        raise CheckFailure("you returned the data x1: the velocity of (1 − t)·x0 + t·x1 is d/dt = x1 − x0")
    if _close(out, -x0) or _close(out, x0):
        raise CheckFailure("you returned (±) the noise: the velocity is x1 − x0")
    if _close(out, x1 + x0):
        raise CheckFailure("x1 + x0: the derivative of (1 − t)·x0 is −x0, so the velocity is x1 − x0")
    if _close(out, 0.5 * (x1 - x0)) or _close(out, 2 * (x1 - x0)):
        raise CheckFailure("the velocity is scaled: over t ∈ [0, 1] the path covers x1 − x0 exactly once")
    d = (x1 - x0)
    if _close(out, d / d.norm(dim=1, keepdim=True)):
        raise CheckFailure("you normalised the direction: the velocity keeps its length |x1 − x0|, so "
                           "that one unit of time takes x0 to x1")
    raise CheckFailure("the velocity differs from x1 − x0")


@vt.case("works for image batches and leaves its inputs unchanged")
def _(fn):
    g = _gen(1)
    x0, x1 = torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g)
    out = _untouched(fn, (x0, x1), ("x0", "x1"))
    if not _close(out, x1 - x0):
        raise CheckFailure("for (N, 1, 8, 8) images the velocity must be x1 − x0 elementwise")


@vt.case("the time derivative of interpolate")
def _(fn):
    g = _gen(2)
    x0, x1 = torch.randn(16, 3, generator=g), torch.randn(16, 3, generator=g)
    t, h = torch.full((16,), 0.3), 1e-3
    fd = (interpolate(x0, x1, t + h) - interpolate(x0, x1, t - h)) / (2 * h)
    if not _close(_untouched(fn, (x0, x1), ("x0", "x1")), fd, 1e-2):
        raise CheckFailure("the target must equal d x_t / dt of the path (1 − t)·x0 + t·x1")


# ============================================================================ flow: training loss
fm = register("flow.loss", flow_matching_loss,
              "flow matching: mean ‖v_θ((1 − t)·x0 + t·x1, t, y) − (x1 − x0)‖² over every element")


_VProbe = P.VProbe  # the instrumented velocity model lives in genlib.probes.ch07


def _fm_ref(model, x0, x1, t, y=None):
    tt = _col(t, x0)
    x_t = (1 - tt) * x0 + tt * x1
    return ((model(x_t, t, y) - (x1 - x0)) ** 2).mean()


def _fm_inputs(shape, seed):
    g = _gen(seed)
    return (torch.randn(*shape, generator=g), torch.randn(*shape, generator=g) * 0.5 + 1,
            torch.rand(shape[0], generator=g))


def _fm_call(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except RuntimeError as e:
        if "size of tensor" in str(e) or "must match" in str(e):
            raise CheckFailure(f"shapes do not broadcast ({e}). {_broadcast_hint('t')}")
        raise


def _fm_obs(fn, x0, x1, t, y=None, **kw):
    """The learner's loss on a VProbe; in-place writes and a t the chapter's models cannot take are
    named before any value is compared."""
    before = [x0.clone(), x1.clone(), t.clone()]
    obs = _fm_call(probe, fn, P.flow_loss, x0, x1, t, *(() if y is None else (y,)), **kw)
    _inputs_untouched(before, obs["inputs_after"], ("x0", "x1", "t"))
    if not obs["calls"]:
        raise CheckFailure("the model was never called: the loss is mean((v_model(x_t, t, y) − (x1 − x0))²)")
    for _, t_in, _ in obs["calls"]:
        if not torch.is_tensor(t_in):
            raise CheckFailure(f"the model got t as {type(t_in).__name__}: pass the tensor t of shape (N,)")
        if tuple(t_in.shape) != (x0.shape[0],):
            raise CheckFailure(f"the model got t of shape {tuple(t_in.shape)}: pass it the original t of shape "
                               f"(N,) = ({x0.shape[0]},). Reshape only the copy you use to broadcast over x0 "
                               "(the chapter's TimeMLP and TinyUNet crash on a (N, 1, ..., 1) t)")
    return obs


@fm.case("one number: the mean squared error of the velocity")
def _(fn):
    x0, x1, t = _fm_inputs((64, 2), 0)
    obs = _fm_obs(fn, x0, x1, t)
    out = _scalar(obs["out"])
    if out.dtype != x0.dtype:
        raise CheckFailure(f"for {x0.dtype} inputs your loss is {out.dtype}: the chapter compares it with "
                           "genlib's by torch.allclose, which refuses mixed dtypes — compute in the inputs' "
                           "dtype (no .double() inside the loss)")
    with torch.no_grad():
        want = _fm_ref(_VProbe(), x0, x1, t)
    if _close(out, want):
        return
    t_in = obs["calls"][-1][1]
    if not (_close(t_in, t, 1e-6) or _close(t_in, 1 - t, 1e-6)):
        raise CheckFailure("the model got a t that is not the t passed in: your loss draws its own t (e.g. "
                           "torch.rand inside the loss) or changes it. Use the argument t as it is, for x_t = "
                           "(1 − t)·x0 + t·x1 and for the model: the caller draws t, so that the check, the "
                           "chapter's training loop and the sampler agree on it")
    m = _VProbe()
    with torch.no_grad():
        tt = t[:, None]
        x_t = (1 - tt) * x0 + tt * x1
        x_sw = tt * x0 + (1 - tt) * x1
        checks = [
            (((m(x_t, t) - (x0 - x1)) ** 2).mean(), "the target's sign is flipped: the velocity points "
             "from noise to data, x1 − x0"),
            (((m(x_sw, t) - (x1 - x0)) ** 2).mean(), "x0 and x1 are swapped in the interpolation: x_t = "
             "(1 − t)·x0 + t·x1 with x0 the noise"),
            (((m(x_sw, t) - (x0 - x1)) ** 2).mean(), "x0 and x1 are swapped (in the path and the target): "
             "x0 is the noise, x1 the data; x_t = (1 − t)·x0 + t·x1, target x1 − x0"),
            (((m(x_t, t) - x1) ** 2).mean(), "the target is the data x1: flow matching regresses the "
             "velocity x1 − x0"),
            (((m(x0, t) - (x1 - x0)) ** 2).mean(), "the model was evaluated at the noise x0: evaluate it at "
             "the point on the path, x_t = (1 − t)·x0 + t·x1"),
            (((m(x_t, 1 - t) - (x1 - x0)) ** 2).mean(), "the model got 1 − t: pass the same t that built x_t "
             "(t = 0 noise, t = 1 data)"),
            (((m(x_t, t) - (x1 - x0)) ** 2).sum(), "you summed the squared errors: take the mean over every "
             "element (F.mse_loss), so the step size does not depend on the batch size"),
            (((m(x_t, t) - (x1 - x0)) ** 2).sum(1).mean(), "you summed over dimensions and averaged over the "
             "batch: the loss here is the mean over every element (F.mse_loss)"),
            (((m(x_t, t) - (x1 - x0)) ** 2).mean().sqrt(), "that is the root of the mean squared error: "
             "return the mean squared error itself"),
            ((m(x_t, t) - (x1 - x0)).abs().mean(), "that is the mean absolute error: flow matching uses "
             "the mean squared error"),
        ]
    for w, msg in checks:
        if _close(out, w):
            raise CheckFailure(msg)
    raise CheckFailure("the loss differs from mean((v_model(x_t, t, y) − (x1 − x0))²) with "
                       "x_t = (1 − t)·x0 + t·x1")


@fm.case("t broadcast over images (N, C, H, W)")
def _(fn):
    pts = _fm_inputs((64, 2), 0)
    with torch.no_grad():
        pts_ok = _close(_scalar(_fm_obs(fn, *pts)["out"]), _fm_ref(_VProbe(), *pts))
    for shape in [(5, 1, 8, 8), (8, 3, 4, 8), (4, 5, 3)]:
        x0, x1, t = _fm_inputs(shape, 1)
        out = _scalar(_fm_obs(fn, x0, x1, t)["out"])
        with torch.no_grad():
            want = _fm_ref(_VProbe(), x0, x1, t)
        if not _close(out, want):
            if not pts_ok:
                raise CheckFailure("(follows from the first ✗: the loss is already wrong for (N, 2) points)")
            raise CheckFailure(f"right for points but wrong for inputs of shape {shape}: "
                               + _broadcast_hint("t"))


@fm.case("passes x_t, t (N,) and the labels y to the model")
def _(fn):
    x0, x1, t = _fm_inputs((16, 2), 2)
    y = torch.arange(16) % 10
    obs = _fm_obs(fn, x0, x1, t, y)
    out = _scalar(obs["out"])
    x_in, t_in, y_in = obs["calls"][-1]
    if y_in is None:
        raise CheckFailure("the labels y were not passed to the model: call v_model(x_t, t, y) so a "
                           "class-conditional model knows which digit to draw")
    with torch.no_grad():
        want = _fm_ref(_VProbe(), x0, x1, t, y)
    if not _close(out, want):
        with torch.no_grad():
            if not _close(_scalar(_fm_obs(fn, x0, x1, t)["out"]), _fm_ref(_VProbe(), x0, x1, t)):
                raise CheckFailure("(follows from the first ✗: the loss is already wrong without labels)")
        raise CheckFailure("with labels the loss differs from mean((v_model(x_t, t, y) − (x1 − x0))²): pass y "
                           "unchanged, v_model(x_t, t, y)")


@fm.case("gradient reaches the model, inputs unchanged")
def _(fn):
    x0, x1, t = _fm_inputs((32, 1, 4, 4), 3)
    obs = _fm_obs(fn, x0, x1, t, backward=True)
    out = _scalar(obs["out"])
    if not obs["requires_grad"]:
        raise CheckFailure("the loss carries no gradient: the model's output was detached (.detach(), "
                           ".item(), torch.no_grad) — training would not move the model")
    w_grad = obs["w_grad"]
    if w_grad is None or w_grad.abs().sum() < 1e-6:
        raise CheckFailure("no gradient reaches the model's parameters")
    m2 = _VProbe()
    _fm_ref(m2, x0.clone(), x1.clone(), t.clone()).backward()
    if not _close(w_grad, m2.w.grad, 1e-3):
        with torch.no_grad():
            if not _close(out, _fm_ref(_VProbe(), x0, x1, t)):
                raise CheckFailure("(follows from the ✗ on the loss's value: a different loss has a different "
                                   "gradient)")
        raise CheckFailure("the gradient differs from that of the flow matching loss: is the target "
                           "(x1 − x0) or x_t computed from something that carries the model's gradient?")


# ============================================================================ flow: Euler sampler
eu = register("flow.euler_sample", euler_sample,
              "Euler from t = 0 (noise x0) to t = 1: `steps` steps of size 1/steps, v_fn(x, t) with t: (N,)")


class _Recorder:
    def __init__(self, v):
        self.v, self.ts = v, []

    def __call__(self, x, t):
        self.ts.append(t.detach().clone() if torch.is_tensor(t) else t)
        return self.v(x, t)


def _tcol(t, x):
    t = torch.as_tensor(t, dtype=x.dtype).reshape(-1)
    return _col(t.expand(x.shape[0]) if t.numel() == 1 else t, x)


@eu.case("`steps` evaluations at t = 0, 1/steps, …, (steps − 1)/steps")
def _(fn):
    x0 = torch.randn(6, 2, generator=_gen(0))
    rec = _Recorder(lambda x, t: torch.zeros_like(x))
    out = fn(rec, x0.clone(), 4)
    expect_tensor(out, x0.shape, "the sample")
    n = len(rec.ts)
    if n == 5:
        raise CheckFailure("5 evaluations for 4 steps: one evaluation per step, steps in all "
                           "(range(steps), not linspace(0, 1, steps + 1) walked to the end)")
    if n != 4:
        raise CheckFailure(f"{n} evaluations of v_fn for 4 steps: Euler evaluates the velocity once per step")
    for t in rec.ts:
        if not torch.is_tensor(t) or t.shape != (6,):
            got = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
            raise CheckFailure(f"v_fn got t as {got}: pass one time per sample, a tensor of shape (N,), "
                               "e.g. torch.full((x.shape[0],), k / steps)")
    got = torch.stack([t[0] for t in rec.ts]).double()
    want = torch.arange(4, dtype=torch.float64) / 4
    if torch.allclose(got, want, atol=1e-6):
        return
    if torch.allclose(got, want + 0.25, atol=1e-6):
        raise CheckFailure("t was taken at the end of each step (1/4, …, 1): Euler evaluates the velocity "
                           "where the step starts, t = k/steps for k = 0 … steps − 1")
    if torch.allclose(got, torch.linspace(0, 1, 4, dtype=torch.float64), atol=1e-6):
        raise CheckFailure("t = linspace(0, 1, steps) spaces the times 1/(steps − 1) apart and evaluates "
                           "at t = 1: use t = k/steps, k = 0 … steps − 1, step size 1/steps")
    if torch.allclose(got, 1 - want, atol=1e-6) or torch.allclose(got, 1 - want - 0.25, atol=1e-6):
        raise CheckFailure("time runs backwards: here t = 0 is noise and t = 1 data, so integrate from 0 up to 1")
    raise CheckFailure(f"v_fn was evaluated at t = {[round(v, 3) for v in got.tolist()]}, "
                       "expected 0, 0.25, 0.5, 0.75")


@eu.case("exact for a constant velocity")
def _(fn):
    x0 = torch.randn(8, 1, 4, 4, generator=_gen(1))
    c = torch.randn(8, 1, 4, 4, generator=_gen(2))
    for steps in (1, 5):
        out = fn(lambda x, t: c, x0.clone(), steps)
        expect_tensor(out, x0.shape, "the sample")
        if _close(out, x0 + c, 1e-4):
            continue
        if steps > 1 and _close(out, x0 + c * steps / (steps - 1), 1e-4):
            raise CheckFailure("the step size is 1/(steps − 1): with `steps` steps from 0 to 1 each is 1/steps")
        if _close(out, x0 + c * (steps + 1) / steps, 1e-4):
            raise CheckFailure("one step too many (steps + 1 steps of 1/steps): the last step must end at t = 1")
        if _close(out, x0 - c, 1e-4):
            raise CheckFailure("you stepped against the velocity: x ← x + dt·v")
        if _close(out, x0 + c * steps, 1e-4):
            raise CheckFailure("each step moved a full v: multiply the velocity by dt = 1/steps")
        if _close(out, x0 + c / steps, 1e-4):
            raise CheckFailure("the sample moved only one step's worth: update x at every step "
                               "(x = x + dt·v inside the loop, and return the updated x)")
        raise CheckFailure(f"with a constant velocity v, {steps} Euler step(s) must give x0 + v exactly")


@eu.case("follows a time-dependent velocity like Euler")
def _(fn):
    x0 = torch.randn(8, 2, generator=_gen(3))

    def v(x, t):
        return -x + 2 * _tcol(t, x)

    out = fn(v, x0.clone(), 3)
    x, dt = x0.clone(), 1 / 3
    for k in range(3):
        x = x + dt * v(x, torch.full((8,), k * dt))
    if _close(out, x, 1e-4):
        return
    x = x0.clone()
    for k in range(3):
        x = x + dt * v(x0, torch.full((8,), k * dt))
    if _close(out, x, 1e-4):
        raise CheckFailure("the velocity was evaluated at the starting noise every step: evaluate it "
                           "at the current x")
    raise CheckFailure("for v(x, t) = −x + 2t the result differs from 3 Euler steps x ← x + v(x, t)/3 at "
                       "t = 0, 1/3, 2/3")


@eu.case("leaves x0 unchanged")
def _(fn):
    x0 = torch.randn(4, 1, 4, 4, generator=_gen(4))
    _untouched(fn, (lambda x, t: torch.ones_like(x), x0, 4), ("v_fn", "x0", "steps"))
