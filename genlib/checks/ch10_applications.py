"""Checks for chapter 10 (applications: inpainting, super-resolution, translation, style transfer).

This file is shared by three authors; each writes only between its own BEGIN/END lines:
section C (inpainting and metrics on a mask), section D (super-resolution and style transfer),
section E (image-to-image translation). Every check compares against formulas written out here and
names the learner's mistake when their numbers equal a known wrong formula.
"""
import torch

from genlib.exercises import CheckFailure, expect_tensor, register  # noqa: F401  (used by the sections)


# the same small helpers as chapter 07's checks: seeded generator, finite-and-close, per-sample column
from genlib.checks.ch07_diffusion import _close, _col, _gen  # noqa: E402,F401


# ===== BEGIN ch10 section C: inpainting + masked metrics (helper C) =====
from genlib.inpaint import masked_psnr_ssim, repaint_step, ssim_map  # noqa: E402


def _untouched(fn, args, what):
    """Call fn on clones and fail when it wrote into any of its tensor arguments."""
    before = [a.clone() if torch.is_tensor(a) else a for a in args]
    out = fn(*args)
    for name, a, b in zip(what, args, before):
        if torch.is_tensor(a) and not torch.equal(a, b):
            raise CheckFailure(f"your function changed its input {name} in place (an in-place op such as "
                               f"+=, .mul_() or a slice assignment on it): the caller still needs {name}. "
                               "Build a new tensor instead (torch.where, or mask * a + (1 - mask) * b)")
    return out


# ---------------------------------------------------------------------------- inpaint.replace_known
def _rp_setup(n=6, c=3, hw=6, t=None, seed=0):
    """A small, fully random RePaint step: images (n, c, hw, hw), a random 0/1 mask (n, 1, hw, hw)."""
    g = _gen(seed)
    T = 20
    betas = torch.linspace(0.02, 0.3, T)
    x_t, eps, x_known, z_model, z_known = (torch.randn(n, c, hw, hw, generator=g) for _ in range(5))
    mask = (torch.rand(n, 1, hw, hw, generator=g) < 0.5).float()
    mask[:, :, 0, 0], mask[:, :, 0, 1] = 1.0, 0.0            # every image has both kinds of pixel
    if t is None:
        t = torch.randint(1, T, (n,), generator=g)
    return x_t, eps, x_known, mask, t, betas, z_model, z_known


def _rp_parts(x_t, eps, x_known, mask, t, betas, z_model, z_known):
    """The two halves of a RePaint step written out: the model's ancestral step and the known pixels
    re-noised to t − 1 (plus the wrong variants, to name them)."""
    alphas = 1 - betas
    ab = torch.cumprod(alphas.double(), 0).float()
    ab_t = ab[t]
    ab_prev = torch.where(t > 0, ab[(t - 1).clamp(min=0)], torch.ones_like(ab_t))
    x0 = (x_t - _col((1 - ab_t).sqrt(), x_t) * eps) / _col(ab_t.sqrt(), x_t)
    mean = (_col(ab_prev.sqrt() * betas[t] / (1 - ab_t), x_t) * x0
            + _col(alphas[t].sqrt() * (1 - ab_prev) / (1 - ab_t), x_t) * x_t)
    var = _col(betas[t] * (1 - ab_prev) / (1 - ab_t), x_t)
    model = mean + var.sqrt() * z_model
    noised = {
        "right": _col(ab_prev.sqrt(), x_t) * x_known + _col((1 - ab_prev).sqrt(), x_t) * z_known,
        "clean": x_known,
        "time t": _col(ab_t.sqrt(), x_t) * x_known + _col((1 - ab_t).sqrt(), x_t) * z_known,
        "model noise": _col(ab_prev.sqrt(), x_t) * x_known + _col((1 - ab_prev).sqrt(), x_t) * z_model,
        "wrapped": _col(ab[t - 1].sqrt(), x_t) * x_known + _col((1 - ab[t - 1]).sqrt(), x_t) * z_known,
        "clamped": _col(ab[(t - 1).clamp(min=0)].sqrt(), x_t) * x_known
        + _col((1 - ab[(t - 1).clamp(min=0)]).sqrt(), x_t) * z_known,
    }
    return model, noised


def _rp_call(fn, args):
    try:
        return _untouched(fn, args, ("x_t", "eps", "x_known", "mask", "t", "betas", "z_model", "z_known"))
    except RuntimeError as e:
        if "size" in str(e) or "shape" in str(e) or "match" in str(e):
            raise CheckFailure(f"shapes do not broadcast ({e}): the mask is (N, 1, H, W) and the images "
                               "(N, C, H, W); multiply by the mask as it is (it broadcasts over the "
                               "channels) instead of flattening or indexing it")
        raise


def _rp_want(args):
    model, noised = _rp_parts(*args)
    return args[3] * model + (1 - args[3]) * noised["right"]


def _rp_diagnose(out, args, region):
    """Name the mistake when the pixels of ``region`` (a 0/1 tensor like out) match a wrong formula."""
    model, noised = _rp_parts(*args)
    r = region.expand_as(out).bool()

    def same(a):
        return torch.allclose(out[r].double(), a[r].double(), rtol=1e-4, atol=1e-4)

    mask = args[3].expand_as(out).bool()
    if same(noised["right"]) and not torch.equal(r, ~mask):
        raise CheckFailure("the mask is inverted: mask = 1 marks the HOLE, where the model's step goes; "
                           "the known pixels (mask = 0) get the re-noised ground truth")
    if same(model) and not torch.equal(r, mask):
        raise CheckFailure("the mask is inverted: the model's step landed on the known pixels (mask = 0); "
                           "mask = 1 marks the hole")
    t = args[4]
    if not bool((t == t[0]).all()):
        t0 = (*args[:4], t[0].expand_as(t).clone(), *args[5:])
        if _close(out, _rp_want(t0)):
            raise CheckFailure("every image was stepped with the first image's t (t[0], .item() or int(t)): "
                               "each image has its own time step; index ᾱ and β with the whole t tensor and "
                               "reshape to (N, 1, 1, 1)")
        if same(_rp_parts(*t0)[1]["right"]) and not torch.equal(r, mask):
            raise CheckFailure("the known pixels were re-noised with one ᾱ for the whole batch, the first "
                               "image's ᾱ_{t−1} (t[0], .item() or int(t)): each image has its own t, so index "
                               "ᾱ with the whole tensor, ᾱ[t − 1] (1 where t = 0), and reshape it to "
                               "(N, 1, 1, 1) to broadcast over each image")
        if same(_rp_parts(*t0)[0]) and torch.equal(r, mask):
            raise CheckFailure("the hole was stepped with the first image's t for the whole batch (t[0], "
                               ".item() or int(t)): each image has its own time step; index ᾱ and β with the "
                               "whole t tensor and reshape to (N, 1, 1, 1)")
    if (t == 0).any() and not torch.equal(noised["clamped"], noised["right"]) and same(noised["clamped"]):
        raise CheckFailure("at t = 0 you used ᾱ_0 (an index clamped with clamp(t − 1, 0) or max(t − 1, 0)): "
                           "there is no step before 0, ᾱ_{−1} = 1, so at the last step the known pixels come "
                           "back exactly. Use torch.where(t > 0, ᾱ[(t − 1).clamp(min=0)], 1)")
    if same(noised["clean"]):
        raise CheckFailure("you pasted the known pixels clean: at step t − 1 the rest of the image is "
                           "still noisy, so the ground truth must be noised to the same time, "
                           "q_sample(x_known, ᾱ_{t−1}, z_known), or the model sees a seam between a "
                           "clean border and a noisy hole")
    if same(noised["time t"]):
        raise CheckFailure("the known pixels are noised to time t, the step you came FROM: x_{t−1} needs "
                           "them at the new time t − 1, i.e. ᾱ_{t−1} (ᾱ_{−1} = 1 at t = 0)")
    if same(noised["model noise"]):
        raise CheckFailure("you re-used the model's noise z_model for the known pixels: the known part "
                           "needs its own fresh draw z_known (the two noises must be independent)")
    if same(noised["wrapped"]):
        raise CheckFailure("at t = 0 you read ᾱ[t − 1] = ᾱ[−1], which Python wraps to the LAST (noisiest) "
                           "step: ᾱ_{−1} must be 1, so the known pixels come back exactly at the end")


def replace_known_reference(x_t, eps, x_known, mask, t, betas, z_model, z_known):
    """The learner's exercise: ``genlib.inpaint.repaint_step``."""
    return repaint_step(x_t, eps, x_known, mask, t, betas, z_model, z_known)


rk_spec = register("inpaint.replace_known", replace_known_reference,
                   "one RePaint step: model step in the hole, ground truth re-noised to t − 1 elsewhere")


@rk_spec.case("one image per input, mask broadcast over the channels")
def _(fn):
    args = _rp_setup(c=3)
    out = _rp_call(fn, args)
    expect_tensor(out, args[0].shape, "x_{t−1}")
    model, noised = _rp_parts(*args)
    want = args[3] * model + (1 - args[3]) * noised["right"]
    if _close(out, want):
        return
    if _close(out[:, :1], want[:, :1]) and not _close(out[:, 1:], want[:, 1:]):
        raise CheckFailure("only the first channel is right: the mask (N, 1, H, W) must apply to every "
                           "channel (let it broadcast: mask * a + (1 - mask) * b)")
    one = _rp_setup(c=1)
    if _close(_rp_call(fn, one), _rp_want(one)):
        raise CheckFailure("right for one channel but wrong for three: the mask (N, 1, H, W) must reach every "
                           "channel of its own image (let it broadcast, mask * a + (1 - mask) * b; no repeat "
                           "or view that mixes the batch and channel axes)")
    # wrong for one channel too: the formula itself is wrong, and the next cases (one channel) name it


@rk_spec.case("the hole gets the model's DDPM step")
def _(fn):
    args = _rp_setup(c=1, seed=1)
    out = _rp_call(fn, args)
    expect_tensor(out, args[0].shape, "x_{t−1}")
    model, _ = _rp_parts(*args)
    hole = args[3].expand_as(out).bool()
    if torch.allclose(out[hole], model[hole], rtol=1e-4, atol=1e-4):
        return
    _rp_diagnose(out, args, args[3])
    raise CheckFailure("the hole (mask = 1) must hold the model's ancestral step "
                       "ddpm_step(x_t, eps, t, Schedule(betas), z_model)")


@rk_spec.case("the known pixels are the ground truth re-noised to t − 1")
def _(fn):
    args = _rp_setup(c=1, seed=2)
    out = _rp_call(fn, args)
    expect_tensor(out, args[0].shape, "x_{t−1}")
    _, noised = _rp_parts(*args)
    known = (1 - args[3]).expand_as(out).bool()
    if torch.allclose(out[known], noised["right"][known], rtol=1e-4, atol=1e-4):
        return
    _rp_diagnose(out, args, 1 - args[3])
    raise CheckFailure("outside the hole x_{t−1} must be q_sample(x_known, ᾱ_{t−1}, z_known) = "
                       "√ᾱ_{t−1}·x_known + √(1 − ᾱ_{t−1})·z_known")


@rk_spec.case("at t = 0 the known pixels come back exactly")
def _(fn):
    args = _rp_setup(c=1, seed=3, t=torch.zeros(6, dtype=torch.long))
    out = _rp_call(fn, args)
    expect_tensor(out, args[0].shape, "x_{t−1}")
    known = (1 - args[3]).expand_as(out).bool()
    if torch.allclose(out[known], args[2][known], rtol=1e-4, atol=1e-4):
        return
    _rp_diagnose(out, args, 1 - args[3])
    raise CheckFailure("at the last step (t = 0) ᾱ_{−1} = 1: the known pixels must equal x_known")


@rk_spec.case("one time step per image")
def _(fn):
    args = _rp_setup(c=1, seed=4, t=torch.tensor([1, 19, 5, 0, 12, 3]))
    out = _rp_call(fn, args)
    if _close(out, _rp_want(args)):
        return
    same_t = [_rp_setup(c=1, seed=4, t=torch.full((6,), v, dtype=torch.long)) for v in (1, 12)]
    if not all(_close(_rp_call(fn, a), _rp_want(a)) for a in same_t):
        raise CheckFailure("(follows from the ✗ above: the step is already wrong when every image has the same t)")
    raise CheckFailure("right when every image has the same t, wrong with a different t per image: index ᾱ "
                       "with the whole t tensor and reshape to (N, 1, 1, 1) (no .item(), no t[0])")


@rk_spec.case("a whole RePaint loop as the chapter runs it (cosine schedule, t = T − 1 … 0)")
def _(fn):
    # genlib.inpaint.ddpm_inpaint(step=your function): the same t for the batch at every step, a mask
    # (N, 1, H, W), betas of a cosine schedule (up to 0.999 at the noisy end), fresh noises each step
    from genlib.diffusion import Schedule
    sch = Schedule.cosine(30)
    g = _gen(6)
    n, c, hw = 3, 1, 8
    x_known = torch.rand(n, c, hw, hw, generator=g) * 2 - 1
    mask = torch.zeros(n, 1, hw, hw)
    mask[:, :, 2:6, 1:5] = 1
    x = want = torch.randn(n, c, hw, hw, generator=g)
    for i in range(sch.T - 1, -1, -1):
        t = torch.full((n,), i, dtype=torch.long)
        eps_x, eps_w = torch.tanh(x), torch.tanh(want)             # a smooth stand-in for the ε-model
        zm, zk = torch.randn(n, c, hw, hw, generator=g), torch.randn(n, c, hw, hw, generator=g)
        x = _rp_call(fn, (x, eps_x, x_known, mask, t, sch.betas, zm, zk))
        expect_tensor(x, (n, c, hw, hw), f"x_{{t−1}} at t = {i}")
        if x.dtype != x_known.dtype:
            raise CheckFailure(f"x_{{t−1}} has dtype {x.dtype} for float32 inputs: keep the images' dtype, the "
                               "sampler feeds it back into the model")
        want = repaint_step(want, eps_w, x_known, mask, t, sch.betas, zm, zk)
        if not torch.isfinite(x).all():
            raise CheckFailure(f"x_{{t−1}} contains NaN or inf at t = {i} (β_t = {sch.betas[i].item():.3g}): check "
                               "the step at the ends of the schedule")
    if not _close(x, want, 1e-3):
        raise CheckFailure("over a whole RePaint loop (t = 29 … 0 on a cosine schedule, same t for the batch) "
                           "the result drifts from the reference: check the first and the last steps")
    known = (1 - mask).expand_as(x).bool()
    if not torch.allclose(x[known], x_known[known], atol=1e-5):
        raise CheckFailure("after the last step the known pixels must be x_known exactly (ᾱ_{−1} = 1)")


# ---------------------------------------------------------------------------- inpaint.masked_psnr_ssim
def masked_scores_reference(x, y, mask, data_range):
    """The learner's exercise: ``genlib.inpaint.masked_psnr_ssim``."""
    return masked_psnr_ssim(x, y, mask, data_range)


ms_spec = register("inpaint.masked_psnr_ssim", masked_scores_reference,
                   "PSNR and SSIM of each image on its hole only: (psnr (N,), ssim (N,))")


def _ms_setup(c=1, seed=0, n=5, hw=8, scale=1.0):
    g = _gen(seed)
    y = (torch.rand(n, c, hw, hw, generator=g) * 2 - 1) * scale
    x = (y + 0.3 * scale * torch.randn(n, c, hw, hw, generator=g)).clamp(-scale, scale)
    mask = torch.zeros(n, 1, hw, hw)
    for i in range(n):                                        # holes of different sizes per image
        k = 2 + i % 4
        mask[i, :, :k, : k + 1] = 1
    x = torch.where(mask.expand_as(x).bool(), x, y + 0.05 * scale * torch.randn(x.shape, generator=g))
    return x, y, mask


def _ms_call(fn, x, y, mask, data_range):
    out = _untouched(fn, (x, y, mask, data_range), ("x", "y", "mask", "data_range"))
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise CheckFailure("return a pair (psnr, ssim), each a tensor of shape (N,)")
    p, s = out
    expect_tensor(p, (len(x),), "psnr")
    expect_tensor(s, (len(x),), "ssim")
    return p.double(), s.double()


def _ms_variants(x, y, mask, data_range):
    """Known wrong PSNR formulas, to name the learner's mistake."""
    m = mask.double().expand_as(x)
    d2 = (x.double() - y.double()) ** 2
    L2 = data_range ** 2

    def ps(mse, l2=L2):
        return 10 * torch.log10(l2 / mse)

    cnt = m.flatten(1).sum(1)
    mse = (m * d2).flatten(1).sum(1) / cnt
    return {
        "rescaled": ps(mse / 4),
        "all pixels": ps(d2.flatten(1).mean(1)),
        "inverted": ps(((1 - m) * d2).flatten(1).sum(1) / (1 - m).flatten(1).sum(1)),
        "sum": ps((m * d2).flatten(1).sum(1)),
        "hole share": ps((m * d2).flatten(1).mean(1)),
        "range 1": ps(mse, 1.0),
        "range 2": ps(mse, 4.0),
        "range 255": ps(mse, 255.0 ** 2),
        "range observed": ps(mse, (torch.maximum(x.flatten(1).amax(1), y.flatten(1).amax(1))
                                   - torch.minimum(x.flatten(1).amin(1), y.flatten(1).amin(1))).double() ** 2),
        "batch": ps(mse.mean()).expand(len(x)),
        "channels uncounted": ps((m * d2).flatten(1).sum(1) / mask.double().flatten(1).sum(1)),
        "amplitude": 20 * torch.log10(data_range / mse),
    }


_MS_NAMES = {
    "rescaled": "your PSNR is 6.02 dB too high for every image: the squared errors are 4× too small, as when "
                "the images are rescaled inside the function ((x + 1) / 2 maps [−1, 1] to [0, 1] and halves "
                "every difference) while data_range stays as passed. Score x and y as given, with the "
                "data_range passed; do not rescale them inside the function",
    "all pixels": "you averaged the error over every pixel: only the hole (mask = 1) counts; the known "
                  "pixels are copied and would inflate the score",
    "inverted": "the mask is inverted: mask = 1 marks the hole, the pixels that were filled in and must be scored",
    "sum": "you summed the squared errors over the hole instead of averaging them: divide by the number "
           "of hole pixels (times channels), or PSNR depends on the hole's size",
    "hole share": "you divided the hole's squared error by ALL pixels (a mean over the whole image of "
                  "mask·err²): divide by the number of hole entries instead",
    "range 1": "data_range is wrong: use the argument (2 for images in [-1, 1]), not 1",
    "range 2": "data_range is hard-coded to 2 (or, the same number here, the images were rescaled inside the "
               "function with (x + 1) / 2 and scored with data_range 1): score x and y as given, with the "
               "argument data_range (255 for 8-bit images, 2 for [-1, 1])",
    "range 255": "data_range is wrong: use the argument, not 255",
    "range observed": "data_range is the span of the pixel scale (the argument), not the observed "
                      "max − min of the images",
    "batch": "you averaged the MSE over the whole batch before the log: PSNR is per image, "
             "10·log10(L²/MSE_i) for each image i (the mean of the logs is not the log of the mean)",
    "channels uncounted": "your count of hole pixels ignores the channels: a (N, 1, H, W) mask covers "
                          "C entries per pixel of an (N, C, H, W) image; expand it (mask.expand_as(x)) "
                          "before summing",
    "amplitude": "PSNR is 10·log10(L²/MSE) = 20·log10(L/RMSE); 20·log10(L/MSE) mixes the two",
}


def _ms_full_mask(mask, c, seed):
    """A per-channel mask (N, C, H, W): the hole differs between channels."""
    m = mask.expand(-1, c, -1, -1).clone()
    g = _gen(seed + 100)
    m[:, 1:] = (torch.rand(m[:, 1:].shape, generator=g) < 0.4).float()
    m[:, :, 0, 0] = 1
    return m


def _ms_psnr_case(fn, c, data_range, seed, full_mask=False):
    x, y, mask = _ms_setup(c=c, seed=seed, scale=data_range / 2)
    if full_mask:
        mask = _ms_full_mask(mask, c, seed)
    p, _ = _ms_call(fn, x, y, mask, data_range)
    want, _ = masked_psnr_ssim(x, y, mask, data_range)
    if torch.allclose(p, want, rtol=1e-4, atol=1e-4):
        return
    for key, wrong in _ms_variants(x, y, mask, data_range).items():
        if torch.allclose(p, wrong, rtol=1e-4, atol=1e-4):
            raise CheckFailure(_MS_NAMES[key])
    off = p - want
    if bool(torch.isfinite(off).all()) and off.abs().min() > 0.05 and torch.allclose(off, off.mean().expand_as(off),
                                                                                    atol=1e-3):
        k = 10 ** (-off.mean().item() / 20)
        raise CheckFailure(f"your PSNR is off by {off.mean().item():+.2f} dB for every image: the errors are "
                           f"scaled by a constant (×{k:.3g}) relative to data_range, as when the images are "
                           "rescaled inside the function (x / 255, (x + 1) / 2, …) or data_range is changed. "
                           "Score x and y as given, with the data_range argument")
    raise CheckFailure("PSNR differs from 10·log10(data_range² / MSE) with the MSE averaged over the "
                       "hole's entries of each image")


@ms_spec.case("PSNR on the hole, one value per image")
def _(fn):
    _ms_psnr_case(fn, c=1, data_range=2.0, seed=0)


@ms_spec.case("PSNR with colour images and another data_range")
def _(fn):
    _ms_psnr_case(fn, c=3, data_range=255.0, seed=1)


def _ssim_named(s, x, y, mask, data_range):
    """Name a known wrong SSIM; return without raising when none matches."""
    smap = ssim_map(x, y, data_range)
    m = mask.double().expand_as(smap)

    def hole(mp, mm=m):
        return (mm * mp).flatten(1).sum(1) / mm.flatten(1).sum(1)

    def same(v):
        return torch.allclose(s, v, rtol=1e-4, atol=1e-4)

    for L in {1.0, 2.0, 255.0} - {float(data_range)}:
        if same(hole(ssim_map(x, y, L))):
            raise CheckFailure(f"your SSIM used data_range = {L:g}: pass the argument on, "
                               f"ssim_map(x, y, data_range) (here {data_range:g}); its constants C1 = (0.01·L)², "
                               "C2 = (0.03·L)² depend on it")
    if same(hole(ssim_map(x, y)) ) and data_range != 2.0:
        raise CheckFailure("your SSIM ignored data_range (ssim_map's default is 2.0): pass it on, "
                           "ssim_map(x, y, data_range)")
    if x.shape[1] > 1 and mask.shape[1] == 1 and same((m * smap).flatten(1).sum(1) / mask.double().flatten(1).sum(1)):
        raise CheckFailure("your count of hole pixels ignores the channels: a (N, 1, H, W) mask covers C entries "
                           "per pixel of the (N, C, H, W) SSIM map; expand it (mask.expand_as(x)) before summing")
    if x.shape[1] > 1 and same(hole(smap[:, :1], m[:, :1])):
        raise CheckFailure("your SSIM uses channel 0 only: average the map over every channel of the hole")
    if same(hole(ssim_map((x + 1) / 2, (y + 1) / 2, data_range))) or same(hole(ssim_map((x + 1) / 2, (y + 1) / 2, 1.0))):
        raise CheckFailure("you rescaled the images inside the function ((x + 1) / 2): SSIM's constants are set "
                           "by the data_range passed, so score x and y as given with ssim_map(x, y, data_range)")
    lo = -data_range / 2
    rescaled = ssim_map((x - lo) / data_range, (y - lo) / data_range, 1.0)
    if same(hole(rescaled)):
        raise CheckFailure("you rescaled the images to [0, 1] and used L = 1: the exercise asks for "
                           "ssim_map(x, y, data_range) on the images as given, the same map as the reference")


@ms_spec.case("SSIM is the mean of ssim_map over the hole")
def _(fn):
    for c, seed in ((1, 2), (3, 3)):
        x, y, mask = _ms_setup(c=c, seed=seed)
        _, s = _ms_call(fn, x, y, mask, 2.0)
        want = masked_psnr_ssim(x, y, mask, 2.0)[1]
        if torch.allclose(s, want, rtol=1e-4, atol=1e-4):
            continue
        _ssim_named(s, x, y, mask, 2.0)
        smap = ssim_map(x, y, 2.0)
        m = mask.double().expand_as(smap)
        if torch.allclose(s, smap.flatten(1).mean(1), rtol=1e-4, atol=1e-4):
            raise CheckFailure("your SSIM is the mean of the map over the whole image: average it over "
                               "the hole (mask = 1) only")
        if torch.allclose(s, ((1 - m) * smap).flatten(1).sum(1) / (1 - m).flatten(1).sum(1), rtol=1e-4,
                          atol=1e-4):
            raise CheckFailure("your SSIM is averaged over the known pixels: the mask is inverted")
        if torch.allclose(s, (m * smap).flatten(1).sum(1), rtol=1e-4, atol=1e-4):
            raise CheckFailure("you summed the SSIM map over the hole: take the mean over the hole's entries")
        if torch.allclose(s, s.mean().expand_as(s), atol=1e-9) and not torch.allclose(want, want.mean()):
            raise CheckFailure("your SSIM is the same for every image: it must be one value per image")
        raise CheckFailure("SSIM differs from the mean of ssim_map(x, y, data_range) over the hole's entries")


@ms_spec.case("SSIM with 8-bit images, data_range 255")
def _(fn):
    x, y, mask = _ms_setup(c=3, seed=7, scale=127.5)
    x, y = x + 127.5, y + 127.5                                   # pixels in [0, 255]
    _, s = _ms_call(fn, x, y, mask, 255.0)
    want = masked_psnr_ssim(x, y, mask, 255.0)[1]
    if torch.allclose(s, want, rtol=1e-4, atol=1e-4):
        return
    _ssim_named(s, x, y, mask, 255.0)
    raise CheckFailure("for 8-bit images with data_range 255 your SSIM differs from the mean of "
                       "ssim_map(x, y, data_range) over the hole")


@ms_spec.case("a per-channel mask (N, C, H, W)")
def _(fn):
    # the docstring allows (N, C, H, W) masks: a repeat over C or a count of mask.sum() · C breaks them
    try:
        _ms_psnr_case(fn, c=3, data_range=2.0, seed=5, full_mask=True)
        x, y, mask = _ms_setup(c=3, seed=6)
        mask = _ms_full_mask(mask, 3, 6)
        _, s = _ms_call(fn, x, y, mask, 2.0)
    except RuntimeError as e:
        if "size" in str(e) or "shape" in str(e):
            raise CheckFailure(f"with a per-channel mask (N, C, H, W) your function crashed ({str(e)[:90]}): a "
                               "repeat or view over C assumes an (N, 1, H, W) mask. mask.expand_as(x) works for "
                               "both shapes") from None
        raise
    if not torch.allclose(s, masked_psnr_ssim(x, y, mask, 2.0)[1], rtol=1e-4, atol=1e-4):
        raise CheckFailure("with a per-channel mask (N, C, H, W) your SSIM differs: average the map over the "
                           "entries where the mask is 1 (mask.expand_as(x) is a no-op for such a mask)")


@ms_spec.case("an exact fill of the hole scores PSNR = +inf")
def _(fn):
    x, y, mask = _ms_setup(c=1, seed=4)
    x = torch.where(mask.bool(), y, x)               # exact in the hole, wrong outside
    p, _ = _ms_call(fn, x, y, mask, 2.0)
    if not bool(torch.isinf(p).all() and (p > 0).all()):
        raise CheckFailure("an exact fill of the hole must give PSNR = +inf even though the known pixels "
                           "differ: only the hole's pixels enter the MSE")
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


_GRAM_INPLACE = ("your function changed the features in place (e.g. f /= ..., .div_()): the caller still "
                 "needs them (the style loss reuses each layer's features). Compute a new tensor instead")


def _gram_call(fn, f):
    before = f.detach().clone()
    try:
        out = fn(f)
    except RuntimeError as e:
        if "in-place" in str(e):
            raise CheckFailure(_GRAM_INPLACE) from None
        raise
    if not torch.equal(f.detach(), before):
        raise CheckFailure(_GRAM_INPLACE)
    return out


def _gram_feats(seed=0, shape=(2, 3, 5, 4)) -> torch.Tensor:
    # positive like ReLU features, not centred: a covariance (centred) differs clearly from the Gram
    return torch.rand(*shape, generator=_gen(seed), dtype=torch.float64) + 0.1


@gram_spec.case("one (C, C) matrix per image")
def _(fn):
    f = _gram_feats()                          # N=2, C=3, H=5, W=4
    out = _gram_call(fn, f.clone())
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
    out = _gram_call(fn, f.clone())
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
    if n > 1 and _close(out, out[:1].expand_as(out), 1e-6) and not _close(ref, ref[:1].expand_as(ref), 1e-6):
        raise CheckFailure("every image got the same Gram matrix: the batch was mixed (e.g. features reshaped "
                           "to (C, N·H·W) and one product for all). Compute one Gram matrix per image from its "
                           "own features, F = features.reshape(N, C, H·W)")
    if not _close(out, out.transpose(1, 2), 1e-6):
        raise CheckFailure("your matrices are not symmetric: G must be F Fᵀ with the same F on both "
                           "sides")
    raise CheckFailure("the values differ from F Fᵀ / (C·H·W) with F = features.reshape(N, C, H·W)")


@gram_spec.case("each image's Gram uses only that image")
def _(fn):
    f = _gram_feats(2, (3, 4, 6, 6))
    a = _gram_call(fn, f.clone())
    g = f.clone()
    g[1:] = g[1:] * 3 + 1                      # change the other images only
    b = _gram_call(fn, g)
    one = _gram_call(fn, f[:1].clone())
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
    out = _gram_call(fn, f)
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
    _gram_call(fn, _gram_feats(5))


@gram_spec.case("float32 features of the chapter's network, with gradients to the image")
def _(fn):
    # what style.default_loss does with it: float32 feature maps of (N, C, H, W), then an MSE to the style
    # image's Gram (expanded over the batch) backpropagated to the pixels
    g = _gen(6)
    f = (torch.rand(4, 8, 16, 16, generator=g) + 0.05).requires_grad_(True)
    out = _gram_call(fn, f)
    expect_tensor(out, (4, 8, 8), "the Gram matrices")
    if not out.is_floating_point():
        raise CheckFailure(f"for float32 features your Gram matrices are {out.dtype}: return a floating tensor")
    if not _close(out.detach(), _gram_ref(f.detach().double()), 1e-5):
        raise CheckFailure("for float32 features (4, 8, 16, 16) the values differ from F Fᵀ / (C·H·W)")
    if not out.requires_grad:
        raise CheckFailure("the output carries no gradient: the style loss must backpropagate to the image")
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


_CYC_NAMES = ("x", "x_rec", "y", "y_rec", "lam")


def _e_call(fn, *args, **kw):
    """Call the learner's loss; an in-place write into x, x_rec, y or y_rec is named first (CycleGAN's
    training step reuses x and y for the identity and discriminator losses after this one)."""
    before = [a.detach().clone() if torch.is_tensor(a) else a for a in args]
    out = fn(*args, **kw)
    for name, a, b in zip(_CYC_NAMES, args, before):
        if torch.is_tensor(a) and not torch.equal(a.detach(), b):
            raise CheckFailure(f"your loss changed its input {name} in place (d = {name}; d -= … writes into "
                               f"{name} itself, as do +=, .sub_(), .abs_()): the training step reuses x and y "
                               "for the identity and discriminator losses. Compute new tensors: "
                               "(x_rec - x).abs().mean()")
    return out


@cyc_spec.case("one scalar tensor")
def _(fn):
    x, x_rec, y, y_rec = _e_batch(0)
    _e_scalar(_e_call(fn, x, x_rec, y, y_rec, 10.0))


@cyc_spec.case("λ·(mean|F(G(x)) − x| + mean|G(F(y)) − y|)")
def _(fn):
    x, x_rec, y, y_rec = _e_batch(1)
    lam = 7.0
    out = _e_scalar(_e_call(fn, x.clone(), x_rec.clone(), y.clone(), y_rec.clone(), lam))
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
         "2017); pix2pix (Isola et al. 2017) chose L1 over L2 too, because L2 blurs more"),
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
        out = _e_call(fn, x, x_rec, y, y_rec)
    except TypeError:
        raise CheckFailure("call it as cycle_loss(x, x_rec, y, y_rec) too: give lam a default, "
                           "lam=10.0, the paper's value") from None
    ref = 10.0 * ((x_rec - x).abs().mean() + (y_rec - y).abs().mean())
    if not _close(_e_scalar(out), ref, 1e-6):
        if not _close(_e_scalar(_e_call(fn, x, x_rec, y, y_rec, 10.0)), ref, 1e-6):
            raise CheckFailure("(follows from the ✗ on the value: with lam=10.0 passed explicitly the loss is "
                               "already wrong)")
        raise CheckFailure(f"with no lam given your loss is {float(out):.5g}, expected {float(ref):.5g}: "
                           "the default should be lam=10.0 (Zhu et al. 2017)")


@cyc_spec.case("gradients reach both generators")
def _(fn):
    x, x_rec, y, y_rec = _e_batch(3, dtype=torch.float32)
    x_rec.requires_grad_(True)
    y_rec.requires_grad_(True)
    lam = 7.0
    out = _e_scalar(_e_call(fn, x, x_rec, y, y_rec, lam))
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
            ref = lam * ((x_rec.detach() - x).abs().mean() + (y_rec.detach() - y).abs().mean())
            if not _close(out.detach(), ref, 1e-5):
                raise CheckFailure("(follows from the ✗ on the value: a different loss has a different gradient)")
            raise CheckFailure(f"the gradient with respect to {name} is not λ·sign({name} − real)/numel: "
                               "the loss is not λ times the mean absolute error")
# ===== END ch10 section E =====
