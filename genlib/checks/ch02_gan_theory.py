"""Checks for chapter 02 (GAN theory): GAN losses computed from logits, LSGAN and hinge variants.

Every loss check runs the same battery — scalar output, value against the reference (with a
diagnosis of the usual wrong formulas), mean not sum, (N, 1) inputs, gradients — plus, for the
two-input losses, real and fake batches of different sizes; for the BCE-based losses, the value and
the gradient at logits of ±200 (beyond nn.BCELoss's −100 log clamp, which makes ±100 come out exactly
right); and for the generator loss, the gradient where D rejects fakes.
"""
import math

import torch
import torch.nn.functional as F

from genlib import losses
from genlib.exercises import CheckFailure, expect_tensor, register

N = 16


def _logits(*shape, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) * 2 - 1) * scale


def _call(fn, *args):
    """Call the learner's loss, turning the classic crashes into advice."""
    try:
        return fn(*args)
    except RuntimeError as e:
        if "between 0 and 1" in str(e):
            raise CheckFailure("you passed logits to a loss that expects probabilities "
                               "(F.binary_cross_entropy / nn.BCELoss): the inputs here are raw "
                               "logits, so use F.binary_cross_entropy_with_logits or softplus")
        raise
    except ValueError as e:
        if "size" in str(e).lower():
            raise CheckFailure(f"shape mismatch between logits and targets ({e}): build the "
                               "targets with torch.ones_like(logits) / zeros_like(logits), or "
                               "flatten the logits with .view(-1)")
        raise


def _scalar(out, what="your loss"):
    expect_tensor(out, what=what)
    if out.dim() != 0:
        raise CheckFailure(f"{what} has shape {tuple(out.shape)}; return one number for the batch "
                           "(a 0-dim tensor), e.g. by averaging with .mean()")
    return out


def _close(a, b, tol=1e-4):
    return bool(torch.isfinite(a).all()) and torch.allclose(a.float(), b.float(), rtol=tol, atol=tol)


def loss_check(name, ref, summary, n_inputs, wrong, bce=False, nonsaturating=False):
    """Register the shared battery for a GAN loss.

    ``wrong``: (formula, message) pairs — if the learner's value equals a known wrong formula on the
    random inputs, its message is the diagnosis.
    """
    spec = register(name, ref, summary)

    def inputs(seed=0, shape=(N,)):
        return [_logits(*shape, seed=seed + i) for i in range(n_inputs)]

    @spec.case("returns a scalar")
    def _(fn):
        _scalar(_call(fn, *inputs()))

    @spec.case("matches the reference on random logits")
    def _(fn):
        args = inputs(seed=1)
        out = _scalar(_call(fn, *[a.clone() for a in args]))
        if not torch.isfinite(out):
            raise CheckFailure("your loss is NaN/inf on ordinary logits in [-3, 3]: it probably "
                               "takes log of the logits as if they were probabilities; the inputs "
                               "are logits (any real number), so use softplus / log-sigmoid")
        expected = ref(*args)
        if _close(out, expected):
            return
        for formula, message in wrong:
            if _close(out, formula(*args)):
                raise CheckFailure(message)
        raise CheckFailure(f"your loss is {out.item():.4f} where the reference gives "
                           f"{expected.item():.4f}: {summary}")

    @spec.case("mean over the batch, not sum")
    def _(fn):
        args = inputs(seed=2)
        once = _scalar(_call(fn, *args))
        twice = _scalar(_call(fn, *[torch.cat([a, a]) for a in args]))
        if torch.isfinite(once) and abs(twice.item() - 2 * once.item()) < 1e-4 * max(1, abs(once.item())) \
                and abs(once.item()) > 1e-6:
            raise CheckFailure("your loss doubles when the batch is duplicated: it sums over the "
                               "batch. Average with .mean(), so the step size does not depend on "
                               "the batch size")
        if not _close(once, twice):
            raise CheckFailure("duplicating the batch changed your loss: a per-batch average "
                               "must not depend on how many copies of the batch there are")

    @spec.case("(N, 1) logits give the same scalar as (N,)")
    def _(fn):
        args = inputs(seed=3)
        flat = _scalar(_call(fn, *args))
        out = _call(fn, *[a.view(-1, 1) for a in args])
        expect_tensor(out, what="your loss on (N, 1) logits")
        if out.dim() != 0:
            raise CheckFailure(f"on (N, 1) logits your loss has shape {tuple(out.shape)}: "
                               "something broadcast (N, 1) against (N,) into an N×N matrix; "
                               "flatten the logits with .view(-1) first")
        if not _close(out, flat):
            raise CheckFailure("on (N, 1) logits your loss changes value: (N, 1) logits against "
                               "(N,) targets broadcast silently into an N×N matrix whose mean "
                               "mixes every logit with every target (the S0.4 shape bug). "
                               "Flatten the logits with .view(-1), or build targets with "
                               "ones_like/zeros_like")

    if n_inputs == 2:
        @spec.case("real and fake batches of different sizes")
        def _(fn):
            real, fake = _logits(N, seed=5), _logits(N // 4, seed=6)  # 16 real, 4 fake logits
            out = _scalar(_call(fn, real.clone(), fake.clone()))
            expected = ref(real, fake)
            if _close(out, expected):
                return
            n, m = len(real), len(fake)
            raise CheckFailure(
                f"with {n} real and {m} fake logits your loss is {out.item():.4f}, the reference "
                f"{expected.item():.4f}. The real and fake terms are two separate means (mean over the "
                f"N reals + mean over the M fakes): concatenating both batches and taking one mean "
                f"(even ×2) weights them N : M = {n} : {m} instead of 1 : 1, which only looks right "
                "when N = M")

    if bce:
        @spec.case("exact at logits of ±200, value and gradient (no overflow, no clamp)")
        def _(fn):
            # ±200, not ±100: nn.BCELoss / F.binary_cross_entropy clamp each log at −100, so a sigmoid
            # followed by BCELoss gives exactly 100 at ±100 — the right number for the wrong reason
            big = torch.tensor([200.0, -200.0, 200.0, -200.0])
            args = [big, -big] if n_inputs == 2 else [big]
            args = [a.clone().requires_grad_(True) for a in args]
            out = _scalar(_call(fn, *args))
            if not torch.isfinite(out):
                raise CheckFailure("your loss is inf/NaN at logits of ±200: σ(200) rounds to 1 in "
                                   "float32 and log(1 − 1) = −inf. Compute it from logits: "
                                   "−log σ(l) = softplus(−l), −log(1 − σ(l)) = softplus(l), or use "
                                   "F.binary_cross_entropy_with_logits")
            ref_args = [a.detach().clone().requires_grad_(True) for a in args]
            expected = ref(*ref_args)
            if not torch.allclose(out.detach(), expected.detach(), rtol=1e-3, atol=1e-2):
                if abs(out.item() - expected.item() / 2) < 1e-2 * expected.item():
                    raise CheckFailure(
                        f"at logits of ±200 your loss is {out.item():.4g}, expected "
                        f"{expected.item():.4g}, capped at 100 per term: a sigmoid followed by "
                        "nn.BCELoss / F.binary_cross_entropy clamps each log term at −100, so the loss "
                        "stops at 100 and its gradient is 0 wherever σ rounds to 0 or 1 (clamping the "
                        "logits to ±100 caps it the same way). Pass the raw logits to "
                        "F.binary_cross_entropy_with_logits (or use softplus)")
                raise CheckFailure(f"at logits of ±200 your loss is {out.item():.4g}, expected "
                                   f"{expected.item():.4g}: clamping probabilities (e.g. to "
                                   "[1e-7, 1 − 1e-7]) or log terms caps the loss; compute it from logits")
            if not out.requires_grad:
                raise CheckFailure("your loss carries no gradient: do not call .item(), .detach() or "
                                   "build a new tensor from the values; compute it from the logits with "
                                   "differentiable operations")
            out.backward()
            expected.backward()
            for i, (a, r) in enumerate(zip(args, ref_args)):
                if a.grad is None or not torch.allclose(a.grad, r.grad, rtol=1e-3, atol=1e-5):
                    got = 0.0 if a.grad is None else a.grad.abs().max().item()
                    raise CheckFailure(
                        f"at logits of ±200 the gradient w.r.t. input {i + 1} is {got:.3g} at most, "
                        f"the reference's is {r.grad.abs().max().item():.3g} (±1/N on the wrong side): "
                        "your loss has the right value but no gradient where D is confidently wrong — "
                        "the sign of a clamp (nn.BCELoss's −100, or clamped probabilities). Use "
                        "softplus or F.binary_cross_entropy_with_logits")

    if nonsaturating:
        @spec.case("strong gradient when D rejects the fakes")
        def _(fn):
            logits = torch.full((N,), -8.0, requires_grad=True)
            out = _scalar(_call(fn, logits))
            out.backward()
            if logits.grad is None:
                raise CheckFailure("no gradient reached the logits: do not detach or call .item()")
            if logits.grad.sum().item() > 0:
                raise CheckFailure("your gradient pushes the fake logits down: the generator must "
                                   "raise D(G(z)) — minimise −log D(G(z))")
            g = logits.grad.abs().sum().item()  # reference: ≈ 1 (each logit gets ≈ −1/N)
            if g < 0.1:
                raise CheckFailure(f"where D rejects the fakes (logit −8, D ≈ 3e-4) your gradient "
                                   f"is only {g:.2g}: this is the saturating loss, which stalls "
                                   "early in training. Use −log D(G(z)) = softplus(−logit)")

    @spec.case("as the chapter's training step uses it: D's logits for a batch of 256, D's weight gradient")
    def _(fn):
        # genlib.gan.train_step calls the loss on D(x).view(-1) — non-leaf float32 logits, large once D
        # is confident — then loss.backward() and loss.item(): compare the gradient on D's weights
        g = torch.Generator().manual_seed(7)
        feats = [torch.randn(256, 8, generator=g) for _ in range(n_inputs)]
        w0 = 4 * torch.randn(8, generator=g)
        grads = []
        for f in (fn, ref):
            w = w0.clone().requires_grad_(True)
            out = _scalar(_call(f, *[x @ w for x in feats]))
            if not out.requires_grad:
                raise CheckFailure("your loss carries no gradient: do not call .item(), .detach() or "
                                   "build a new tensor from the values")
            out.backward()
            grads.append((out.item(), w.grad))
        (v, gw), (rv, rw) = grads
        if not (math.isfinite(v) and abs(v - rv) <= 1e-4 * max(1.0, abs(rv)) and gw is not None
                and torch.allclose(gw, rw, rtol=1e-3, atol=1e-5)):
            raise CheckFailure(f"on a batch of 256 logits up to ±{float(torch.cat([x @ w0 for x in feats]).abs().max()):.0f} "
                               f"(a confident D) your loss is {v:.5g}, the reference {rv:.5g}, or the gradient "
                               "reaching D's weights differs: " + summary, generic=True)

    @spec.case("gradient matches the reference")
    def _(fn):
        args = [a.clone().requires_grad_(True) for a in inputs(seed=4)]
        out = _scalar(_call(fn, *args))
        if not out.requires_grad:
            raise CheckFailure("your loss carries no gradient: do not call .item(), .detach() or "
                               "build a new tensor from the values")
        out.backward()
        ref_args = [a.detach().clone().requires_grad_(True) for a in args]
        ref(*ref_args).backward()
        for i, (a, r) in enumerate(zip(args, ref_args)):
            if a.grad is None:
                raise CheckFailure(f"input {i + 1} got no gradient")
            if not torch.allclose(a.grad, r.grad, rtol=1e-3, atol=1e-5):
                raise CheckFailure(f"the gradient w.r.t. input {i + 1} differs from the reference; "
                                   "check the formula (and that it is averaged, not summed)")
    return spec


# ----------------------------------------------------------------------------- the wrong formulas
def _bce(l, t):
    return t * F.softplus(-l) + (1 - t) * F.softplus(l)


_sig = torch.sigmoid

D_WRONG = [
    (lambda r, f: losses.d_loss(f, r),
     "you swapped the labels: real logits must be pushed towards label 1 and fake ones towards 0"),
    (lambda r, f: losses.d_loss(_sig(r), _sig(f)),
     "you applied a sigmoid and then a loss that applies its own: pass the raw logits"),
    (lambda r, f: 0.5 * losses.d_loss(r, f),
     "your loss is half the reference: one mean over the concatenated real and fake logits gives "
     "½·(mean real + mean fake) when the batches have equal sizes. Do not multiply by 2 (with "
     "unequal batches that weights real : fake as N : M); take the mean BCE of the reals plus "
     "the mean BCE of the fakes, two separate means"),
    (lambda r, f: F.softplus(-r).sum() + F.softplus(f).sum(),
     "you summed over the batch: use .mean()"),
    (lambda r, f: F.softplus(-r).mean(),
     "your loss ignores the fake logits: add the mean BCE of the fakes against label 0"),
    (lambda r, f: F.softplus(-r).mean() - F.softplus(-f).mean(),
     "the fake term is −log(1 − D(G(z))) = softplus(logit), not −(−log D(G(z)))"),
]

G_WRONG = [
    (lambda f: losses.saturating_g_loss(f),
     "this is the saturating loss E[log(1 − D(G(z)))] of the minimax game; it was asked for the "
     "non-saturating −E[log D(G(z))] = mean softplus(−logit)"),
    (lambda f: 1 - _sig(f).mean(),
     "1 − mean D(G(z)) is not a log-loss (the S1.7 bug): use −E[log D(G(z))] = mean softplus(−logit)"),
    (lambda f: F.softplus(f).mean(),
     "you pushed the fakes towards label 0 — that is D's goal. The generator wants D(G(z)) → 1: "
     "minimise −log D(G(z)) = softplus(−logit)"),
    (lambda f: F.softplus(-_sig(f)).mean(),
     "you applied a sigmoid and then a loss that applies its own: pass the raw logits"),
    (lambda f: F.softplus(-f).sum(), "you summed over the batch: use .mean()"),
]

LS_D_WRONG = [
    (lambda r, f: 2 * losses.lsgan_d_loss(r, f),
     "your loss is twice the reference: the least-squares losses carry a factor ½ "
     "(½·E[(D(x) − 1)²] + ½·E[D(G(z))²])"),
    (lambda r, f: losses.lsgan_d_loss(f, r), "you swapped the targets: real → 1, fake → 0"),
    (lambda r, f: losses.lsgan_d_loss(_sig(r), _sig(f)),
     "LSGAN works on D's raw output: do not apply a sigmoid first"),
    (lambda r, f: 0.5 * (r - 1).pow(2).sum() + 0.5 * f.pow(2).sum(), "you summed over the batch: use .mean()"),
]

LS_G_WRONG = [
    (lambda f: 2 * losses.lsgan_g_loss(f), "your loss is twice the reference: ½·E[(D(G(z)) − 1)²]"),
    (lambda f: 0.5 * f.pow(2).mean(),
     "target 0 is D's goal for fakes; the generator wants D(G(z)) → 1: ½·E[(D(G(z)) − 1)²]"),
    (lambda f: losses.lsgan_g_loss(_sig(f)), "LSGAN works on D's raw output: no sigmoid"),
    (lambda f: 0.5 * (f - 1).pow(2).sum(), "you summed over the batch: use .mean()"),
]

HINGE_D_WRONG = [
    (lambda r, f: (1 - r).mean() + (1 + f).mean(),
     "without the max(0, ·) this is a linear loss that rewards D without bound for pushing "
     "logits further: clamp each term with relu"),
    (lambda r, f: losses.hinge_d_loss(f, r),
     "you swapped real and fake: reals want D(x) ≥ 1 and fakes D(G(z)) ≤ −1, so the loss is "
     "E[relu(1 − D(x))] + E[relu(1 + D(G(z)))]"),
    (lambda r, f: F.relu(1 - r).sum() + F.relu(1 + f).sum(), "you summed over the batch: use .mean()"),
]

HINGE_G_WRONG = [
    (lambda f: F.relu(1 - f).mean(),
     "the generator's hinge loss has no margin: it is −E[D(G(z))] (a relu would stop pushing "
     "fakes once they pass the margin)"),
    (lambda f: f.mean(), "wrong sign: the generator raises D(G(z)), so minimise −E[D(G(z))]"),
    (lambda f: -f.sum(), "you summed over the batch: use .mean()"),
]

loss_check("gan.d_loss", losses.d_loss,
           "mean BCE(real logits → 1) + mean BCE(fake logits → 0), computed from logits",
           2, D_WRONG, bce=True)
loss_check("gan.g_loss", losses.g_loss,
           "non-saturating generator loss −E[log D(G(z))] = mean softplus(−fake logits)",
           1, G_WRONG, bce=True, nonsaturating=True)
loss_check("gan.lsgan_d_loss", losses.lsgan_d_loss,
           "½·E[(D(x) − 1)²] + ½·E[D(G(z))²] on raw outputs", 2, LS_D_WRONG)
loss_check("gan.lsgan_g_loss", losses.lsgan_g_loss, "½·E[(D(G(z)) − 1)²] on raw outputs",
           1, LS_G_WRONG)
loss_check("gan.hinge_d_loss", losses.hinge_d_loss,
           "E[relu(1 − D(x))] + E[relu(1 + D(G(z)))]", 2, HINGE_D_WRONG)
loss_check("gan.hinge_g_loss", losses.hinge_g_loss, "−E[D(G(z))]", 1, HINGE_G_WRONG)
