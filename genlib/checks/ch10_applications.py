"""Checks for chapter 10 (applications: inpainting, super-resolution, translation, style transfer).

This file is shared by three authors; each writes only between its own BEGIN/END lines:
section C (inpainting and metrics on a mask), section D (super-resolution and style transfer),
section E (image-to-image translation). Every check compares against formulas written out here and
names the learner's mistake when their numbers equal a known wrong formula.
"""
import torch

from genlib.exercises import CheckFailure, expect_tensor, register  # noqa: F401  (used by the sections)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _close(a, b, tol: float = 1e-4) -> bool:
    """a is a finite tensor of b's shape and equal to b within tol."""
    return (torch.is_tensor(a) and a.shape == b.shape and bool(torch.isfinite(a).all())
            and torch.allclose(a.double(), b.double(), rtol=tol, atol=tol))


# ===== BEGIN ch10 section C: inpainting + masked metrics (helper C) =====
# ===== END ch10 section C =====

# ===== BEGIN ch10 section D: super-resolution + style (helper D) =====
# style.gram_matrix: G[n] = F_n F_nᵀ / (C·H·W), F_n = features[n] reshaped to (C, H·W). The chapter
# states this convention (Johnson et al. 2016); H·W alone (Gatys-style scaling) is named, not accepted.
def _gram_ref(f: torch.Tensor) -> torch.Tensor:
    n, c, h, w = f.shape
    m = f.reshape(n, c, h * w)
    return m @ m.transpose(1, 2) / (c * h * w)


gram_spec = register("style.gram_matrix", _gram_ref,
                     "features (N, C, H, W) → Gram matrices (N, C, C) = F Fᵀ / (C·H·W) per image")


def _gram_feats(seed=0, shape=(2, 3, 5, 4)) -> torch.Tensor:
    # positive like ReLU features, not centred: a covariance (centred) differs clearly from the Gram
    return torch.rand(*shape, generator=_gen(seed), dtype=torch.float64) + 0.1


@gram_spec.case("one (C, C) matrix per image")
def _(fn):
    f = _gram_feats()                          # N=2, C=3, H=5, W=4
    out = fn(f.clone())
    if torch.is_tensor(out):
        s = tuple(out.shape)
        if s == (2, 20, 20):
            raise CheckFailure("your output is (N, H·W, H·W): you multiplied Fᵀ F, which compares "
                               "positions with positions. The Gram matrix compares channels: with "
                               "F = features.reshape(N, C, H·W), compute F @ F.transpose(1, 2) → (N, C, C)")
        if s == (3, 3) or s == (1, 3, 3):
            raise CheckFailure("you returned one Gram matrix for the whole batch: the images were mixed "
                               "together. Keep the batch axis: reshape to (N, C, H·W) and use a batched "
                               "product (@ or torch.bmm) → (N, C, C)")
        if len(s) == 4:
            raise CheckFailure(f"your output is {s}, still 4-D: the feature maps were not flattened over "
                               "space. Reshape to (N, C, H·W) first, then F @ F.transpose(1, 2)")
        if s in ((2, 1, 1), (2,), (2, 1)):
            raise CheckFailure("you averaged (or summed) over the channels before the product: the Gram "
                               "matrix needs every pair of channels, (N, C, C)")
    expect_tensor(out, (2, 3, 3), "the Gram matrices")


@gram_spec.case("G = F Fᵀ / (C·H·W)")
def _(fn):
    f = _gram_feats(1)
    n, c, h, w = f.shape
    out = fn(f.clone())
    expect_tensor(out, (n, c, c), "the Gram matrices")
    ref = _gram_ref(f)
    if _close(out, ref, 1e-5):
        return
    raw = ref * (c * h * w)
    if _close(out, raw, 1e-5):
        raise CheckFailure("no normalisation: F Fᵀ grows with the size of the feature map. Divide by "
                           "C·H·W (this chapter's convention), so layers of different sizes weigh alike")
    if _close(out, raw / (h * w), 1e-5):
        raise CheckFailure("you divided by H·W; this chapter's convention divides by C·H·W (Johnson et "
                           "al. 2016). Both appear in the literature — they differ by the factor C, "
                           "which the style weight absorbs — but use C·H·W here")
    if _close(out, raw / c, 1e-5):
        raise CheckFailure("you divided by C only; the convention here is C·H·W (channels × positions)")
    if _close(out, ref / n, 1e-5):
        raise CheckFailure("you divided by N·C·H·W: the batch size does not belong in the normaliser, "
                           "each image's Gram matrix is its own average")
    m = f.reshape(n, c, h * w)
    cen = m - m.mean(2, keepdim=True)
    if _close(out, cen @ cen.transpose(1, 2) / (c * h * w), 1e-5):
        raise CheckFailure("you subtracted the mean of each channel: that is a covariance, not a Gram "
                           "matrix. Gatys et al. use the raw products F Fᵀ (the means are part of the style)")
    mixed = f.reshape(n, h * w, c)
    if _close(out, mixed.transpose(1, 2) @ mixed / (c * h * w), 1e-5):
        raise CheckFailure("you reshaped (N, C, H, W) straight to (N, H·W, C): reshape keeps memory "
                           "order, so channels and positions got mixed. Reshape to (N, C, H·W) (or "
                           "permute to (N, H, W, C) before reshaping)")
    if not _close(out, out.transpose(1, 2), 1e-6):
        raise CheckFailure("your matrices are not symmetric: G must be F Fᵀ with the same F on both "
                           "sides")
    raise CheckFailure("the values differ from F Fᵀ / (C·H·W) with F = features.reshape(N, C, H·W)")


@gram_spec.case("each image's Gram uses only that image")
def _(fn):
    f = _gram_feats(2, (3, 4, 6, 6))
    a = fn(f.clone())
    g = f.clone()
    g[1:] = g[1:] * 3 + 1                      # change the other images only
    b = fn(g)
    one = fn(f[:1].clone())
    for t in (a, b, one):
        expect_tensor(t, None, "the Gram matrices")
    if not (a.shape[0] == 3 and b.shape[0] == 3 and one.shape[0] == 1):
        raise CheckFailure("keep the batch axis: N images in, N Gram matrices out")
    if not _close(a[0], b[0], 1e-6) or not _close(one[0], a[0], 1e-6):
        raise CheckFailure("image 0's Gram matrix changed when only the *other* images changed: the "
                           "batch was mixed (e.g. a reshape to (C, N·H·W), or a product over the batch "
                           "axis). Compute one Gram matrix per image")


@gram_spec.case("gradient reaches the features")
def _(fn):
    f = _gram_feats(3, (2, 3, 4, 5)).requires_grad_(True)
    out = fn(f)
    expect_tensor(out, (2, 3, 3), "the Gram matrices")
    if not out.requires_grad:
        raise CheckFailure("the output carries no gradient (.detach(), .item(), numpy or torch.no_grad "
                           "inside): the style loss has to backpropagate through the Gram matrix to the "
                           "image's pixels")
    w = torch.rand(2, 3, 3, generator=_gen(4), dtype=torch.float64)
    (out * w).sum().backward()
    f2 = f.detach().clone().requires_grad_(True)
    (_gram_ref(f2) * w).sum().backward()
    if f.grad is None or not _close(f.grad, f2.grad, 1e-5):
        raise CheckFailure("the gradient with respect to the features differs from that of F Fᵀ / (C·H·W)")


@gram_spec.case("leaves the features unchanged")
def _(fn):
    f = _gram_feats(5)
    before = f.clone()
    fn(f)
    if not torch.equal(f, before):
        raise CheckFailure("your function changed the features in place (e.g. f /= ..., .div_()): the "
                           "caller still needs them. Compute a new tensor instead")
# ===== END ch10 section D =====

# ===== BEGIN ch10 section E: translation (helper E) =====
# translate.cycle_loss: λ·(mean|F(G(x)) − x| + mean|G(F(y)) − y|) on tensors (x, x_rec, y, y_rec);
# the formulas are written out here, not taken from genlib.translate.
from genlib.translate import cycle_loss as _e_cycle_ref  # noqa: E402

cyc_spec = register("translate.cycle_loss", _e_cycle_ref,
                    "λ·(mean|x_rec − x| + mean|y_rec − y|), x_rec = F(G(x)), y_rec = G(F(y)) → a scalar")


def _e_batch(seed=0, n=4, dtype=torch.float64):
    """x, y (N, 3, 4, 4) in [-1, 1] and reconstructions with errors of different sizes per domain."""
    g = _gen(seed)
    x = torch.rand(n, 3, 4, 4, generator=g, dtype=dtype) * 2 - 1
    y = torch.rand(n, 3, 4, 4, generator=g, dtype=dtype) * 2 - 1
    x_rec = x + 0.3 * torch.randn(x.shape, generator=g, dtype=dtype) + 0.05   # biased: Σ(x_rec − x) ≠ 0
    y_rec = y + 0.6 * torch.randn(y.shape, generator=g, dtype=dtype) - 0.1
    return x, x_rec, y, y_rec


def _e_scalar(out, what="the cycle loss"):
    if not torch.is_tensor(out):
        raise CheckFailure(f"{what} should be a torch.Tensor, got {type(out).__name__}: the training "
                           "step calls .backward() on it, so return the tensor itself (no .item(), no "
                           "float(), no NumPy)")
    if out.dim() != 0:
        raise CheckFailure(f"{what} has shape {tuple(out.shape)}: return ONE number. Average the "
                           "absolute errors over every pixel of the batch (.mean()), per direction, "
                           "then add the two directions")
    return out


@cyc_spec.case("one scalar tensor")
def _(fn):
    x, x_rec, y, y_rec = _e_batch(0)
    _e_scalar(fn(x, x_rec, y, y_rec, 10.0))


@cyc_spec.case("λ·(mean|F(G(x)) − x| + mean|G(F(y)) − y|)")
def _(fn):
    x, x_rec, y, y_rec = _e_batch(1)
    lam = 7.0
    out = _e_scalar(fn(x.clone(), x_rec.clone(), y.clone(), y_rec.clone(), lam))
    l1x, l1y = (x_rec - x).abs().mean(), (y_rec - y).abs().mean()
    ref = lam * (l1x + l1y)
    if _close(out, ref, 1e-6):
        return
    named = [
        (lam * l1x, "only the X → Y → X cycle: add the Y → X → Y direction, mean|G(F(y)) − y|. "
                    "With one direction, F is never asked to be G's inverse on Y's side"),
        (lam * l1y, "only the Y → X → Y cycle: add the X → Y → X direction, mean|F(G(x)) − x|"),
        (lam * ((x_rec - x).pow(2).mean() + (y_rec - y).pow(2).mean()),
         "squared errors (L2): CycleGAN's cycle loss is the L1 norm, mean|x_rec − x| (Zhu et al. "
         "2017); L2 lets many small errors through and blurs"),
        (lam * ((x_rec - x).pow(2).mean().sqrt() + (y_rec - y).pow(2).mean().sqrt()),
         "root mean squared errors: use the mean absolute error, mean|x_rec − x| (L1)"),
        (l1x + l1y, "λ is missing: multiply the sum of the two L1 terms by lam (10 in the paper), "
                    "which weighs cycle consistency against the GAN losses"),
        (lam * lam * (l1x + l1y), "λ is applied twice (λ²): multiply by lam once"),
        (lam * ((x_rec - x).abs().sum() + (y_rec - y).abs().sum()),
         "a sum over pixels, not a mean: the loss then grows with batch size and image size and λ = 10 "
         "no longer means what the paper means. Use .mean()"),
        (lam * ((x_rec - x).abs().sum() / len(x) + (y_rec - y).abs().sum() / len(y)),
         "summed over pixels and averaged over images: average over every pixel (.mean() on the "
         "whole tensor), so λ does not depend on the image size"),
        (0.5 * lam * (l1x + l1y), "the two directions are averaged (÷ 2): add them, λ·(L1_x + L1_y)"),
        (lam * ((x_rec - y).abs().mean() + (y_rec - x).abs().mean()),
         "each reconstruction is compared with the OTHER domain: F(G(x)) must come back to x, "
         "G(F(y)) to y"),
        (lam * ((x_rec - x).mean() + (y_rec - y).mean()),
         "no absolute value: positive and negative errors cancel. Use (x_rec − x).abs().mean()"),
        (lam * ((x_rec - x).mean().abs() + (y_rec - y).mean().abs()),
         "the absolute value of the mean error, not the mean of the absolute errors: .abs() first, "
         "then .mean()"),
        (lam * (x_rec - x).abs().mean() + (y_rec - y).abs().mean(),
         "λ multiplies only the first direction: put both terms inside, λ·(L1_x + L1_y)"),
    ]
    for value, msg in named:
        if value is not None and _close(out, value, 1e-6):
            raise CheckFailure(msg)
    raise CheckFailure(f"your loss is {float(out):.5g}, the reference λ·(mean|x_rec − x| + "
                       f"mean|y_rec − y|) is {float(ref):.5g} (λ = {lam})")


@cyc_spec.case("λ = 10 by default")
def _(fn):
    x, x_rec, y, y_rec = _e_batch(2)
    try:
        out = fn(x, x_rec, y, y_rec)
    except TypeError:
        raise CheckFailure("call it as cycle_loss(x, x_rec, y, y_rec) too: give lam a default, "
                           "lam=10.0, the paper's value") from None
    ref = 10.0 * ((x_rec - x).abs().mean() + (y_rec - y).abs().mean())
    if not _close(_e_scalar(out), ref, 1e-6):
        raise CheckFailure(f"with no lam given your loss is {float(out):.5g}, expected {float(ref):.5g}: "
                           "the default should be lam=10.0 (Zhu et al. 2017)")


@cyc_spec.case("gradients reach both generators")
def _(fn):
    x, x_rec, y, y_rec = _e_batch(3, dtype=torch.float32)
    x_rec.requires_grad_(True)
    y_rec.requires_grad_(True)
    lam = 7.0
    out = _e_scalar(fn(x, x_rec, y, y_rec, lam))
    if not out.requires_grad:
        raise CheckFailure("no gradient: the loss does not depend on x_rec or y_rec as far as autograd "
                           "knows (.detach(), torch.no_grad(), .item() or NumPy inside). Then neither "
                           "generator learns from the cycle; keep the reconstructions in the graph")
    out.backward()
    for name, rec, real, n_what in (("x_rec", x_rec, x, "G and F on the X → Y → X cycle"),
                                    ("y_rec", y_rec, y, "F and G on the Y → X → Y cycle")):
        if rec.grad is None or not torch.any(rec.grad != 0):
            raise CheckFailure(f"no gradient reaches {name}: it was detached (or left out), so {n_what} "
                               "get no signal from it")
        want = lam * torch.sign(rec.detach() - real) / real.numel()
        if not torch.allclose(rec.grad, want, rtol=1e-4, atol=1e-7):
            raise CheckFailure(f"the gradient with respect to {name} is not λ·sign({name} − real)/numel: "
                               "the loss is not λ times the mean absolute error")
# ===== END ch10 section E =====
