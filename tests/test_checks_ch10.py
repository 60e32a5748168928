"""Gallery for chapter 10's checks: each reference and other correct forms pass; each classic slip is
rejected in a named case with a message that names it. Shared file: each author writes only between
its own BEGIN/END lines (C: inpainting and masked metrics, D: super-resolution and style, E: translation)."""
import pytest  # noqa: F401
import torch  # noqa: F401


# ===== BEGIN ch10 section C: inpainting + masked metrics (helper C) =====
from genlib.diffusion import Schedule, ddpm_step, q_sample  # noqa: E402
from genlib.inpaint import masked_psnr_ssim, repaint_step, ssim_map  # noqa: E402
from genlib.metrics import ssim as _metrics_ssim  # noqa: E402

RK = "inpaint.replace_known"

from genlib.exercises import assert_first_failure  # noqa: E402


def first_rejects(rejects, name, fn, case, fragment):
    """``case`` fails with ``fragment`` in its message, and it is the message the learner reads first."""
    return assert_first_failure(name, fn, case, fragment)



def _ab_prev(t, betas):
    ab = Schedule(betas).alpha_bar
    return torch.where(t > 0, ab[(t - 1).clamp(min=0)], torch.ones_like(ab[t]))


def _rk(x_t, eps, x0, mask, t, betas, zm, zk, known=None, unknown=None, combine=None):
    s = Schedule(betas)
    unk = ddpm_step(x_t, eps, t, s, zm) if unknown is None else unknown(x_t, eps, x0, mask, t, betas, zm, zk)
    kn = q_sample(x0, _ab_prev(t, betas), zk) if known is None else known(x_t, eps, x0, mask, t, betas, zm, zk)
    if combine is not None:
        return combine(unk, kn, mask)
    return mask * unk + (1 - mask) * kn


def test_replace_known_accepted(accepts):
    accepts(RK, repaint_step)
    accepts(RK, lambda *a: torch.where(a[3].bool(), *(_rk(*a, combine=lambda u, k, m: (u, k))[i] for i in (0, 1))))

    def with_index(x_t, eps, x0, mask, t, betas, zm, zk):   # ᾱ_{−1} = 1 by prepending a 1
        ab = torch.cat([torch.ones(1), torch.cumprod(1 - betas, 0)])[t]
        a = ab.view(-1, 1, 1, 1)
        return mask * ddpm_step(x_t, eps, t, Schedule(betas), zm) + (1 - mask) * (a.sqrt() * x0 + (1 - a).sqrt() * zk)
    accepts(RK, with_index)


def _wrapped(x_t, eps, x0, mask, t, betas, zm, zk):
    ab = Schedule(betas).alpha_bar[t - 1].view(-1, 1, 1, 1)     # t = 0 reads ᾱ[−1]
    return ab.sqrt() * x0 + (1 - ab).sqrt() * zk


def _first_channel(x_t, eps, x0, mask, t, betas, zm, zk):
    out = q_sample(x0, _ab_prev(t, betas), zk)
    unk = ddpm_step(x_t, eps, t, Schedule(betas), zm)
    out[:, 0] = torch.where(mask[:, 0].bool(), unk[:, 0], out[:, 0])
    return out


def _flattened(x_t, eps, x0, mask, t, betas, zm, zk):
    n = len(x_t)
    m = mask.reshape(n, -1)
    unk = ddpm_step(x_t, eps, t, Schedule(betas), zm).reshape(n, -1)
    kn = q_sample(x0, _ab_prev(t, betas), zk).reshape(n, -1)
    return (m * unk + (1 - m) * kn).view_as(x_t)


def _in_place(x_t, eps, x0, mask, t, betas, zm, zk):
    kn = q_sample(x0, _ab_prev(t, betas), zk)
    x_t.mul_(1.0)
    x_t[(1 - mask).expand_as(x_t).bool()] = 0.0                # overwrites the caller's x_t
    return mask * ddpm_step(x_t, eps, t, Schedule(betas), zm) + (1 - mask) * kn


def _first_t(x_t, eps, x0, mask, t, betas, zm, zk):
    t0 = t[0].expand_as(t)
    return _rk(x_t, eps, x0, mask, t0, betas, zm, zk)


def _repeat_view(x_t, eps, x0, mask, t, betas, zm, zk):
    n, c = x_t.shape[:2]
    m = mask.repeat(c, 1, 1, 1).view(n, c, *mask.shape[2:])       # rows of other images end up here
    return m * ddpm_step(x_t, eps, t, Schedule(betas), zm) + (1 - m) * q_sample(x0, _ab_prev(t, betas), zk)


def _mask_ch_permuted(x_t, eps, x0, mask, t, betas, zm, zk):
    n, c = x_t.shape[:2]
    m = mask.transpose(0, 1).expand(c, n, *mask.shape[2:]).reshape(n, c, *mask.shape[2:])
    return m * ddpm_step(x_t, eps, t, Schedule(betas), zm) + (1 - m) * q_sample(x0, _ab_prev(t, betas), zk)


def _clamped(x_t, eps, x0, mask, t, betas, zm, zk):
    ab = Schedule(betas).alpha_bar[(t - 1).clamp(min=0)].view(-1, 1, 1, 1)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * zk


def _posterior_mean(x_t, eps, x0, mask, t, betas, zm, zk):
    return ddpm_step(x_t, eps, t, Schedule(betas), torch.zeros_like(zm))


RK_GALLERY = [
    ("known pixels pasted clean", lambda *a: _rk(*a, known=lambda x_t, eps, x0, *r: x0),
     "the known pixels are the ground truth re-noised to t − 1", "pasted the known pixels clean"),
    ("mask inverted", lambda *a: _rk(*a, combine=lambda u, k, m: (1 - m) * u + m * k),
     "the hole gets the model's DDPM step", "inverted"),
    ("re-noised to time t, not t - 1",
     lambda *a: _rk(*a, known=lambda x_t, eps, x0, mask, t, betas, zm, zk:
                    q_sample(x0, Schedule(betas).alpha_bar[t], zk)),
     "the known pixels are the ground truth re-noised to t − 1", "time t"),
    ("model's noise re-used for the known pixels",
     lambda *a: _rk(*a, known=lambda x_t, eps, x0, mask, t, betas, zm, zk: q_sample(x0, _ab_prev(t, betas), zm)),
     "the known pixels are the ground truth re-noised to t − 1", "re-used the model's noise"),
    ("mask flattened, not broadcast over channels", _flattened,
     "one image per input, mask broadcast over the channels", "broadcast"),
    ("mask applied to the first channel only", _first_channel,
     "one image per input, mask broadcast over the channels", "first channel"),
    ("alpha_bar[t - 1] wraps at t = 0", lambda *a: _rk(*a, known=_wrapped),
     "at t = 0 the known pixels come back exactly", "wraps"),
    ("writes into x_t", _in_place, "one image per input, mask broadcast over the channels", "in place"),
    ("one t for the whole batch", _first_t, "the hole gets the model's DDPM step", "first image's t"),
    # review turn 3 (ch10 §3): accepted before — case 1 fell through for a mask mixed across batch/channels
    ("mask.repeat(C, 1, 1, 1).view(N, C, H, W)", _repeat_view,
     "one image per input, mask broadcast over the channels", "right for one channel but wrong for three"),
    ("mask broadcast through a batch/channel transpose", _mask_ch_permuted,
     "one image per input, mask broadcast over the channels", "right for one channel but wrong for three"),
    # review turn 3 (ch10 M4): was told "noised to time t"; the bug is the t = 0 boundary
    ("alpha_bar[clamp(t - 1, 0)]", lambda *a: _rk(*a, known=_clamped), "at t = 0 the known pixels come back exactly",
     "ᾱ_{−1} = 1"),
    # review turn 3 (ch10 M3): formula errors were also told "index ᾱ with the whole t tensor"
    ("posterior mean in the hole, no noise", lambda *a: _rk(*a, unknown=_posterior_mean),
     "the hole gets the model's DDPM step", "ancestral step"),
    # learners 07-10 (issue 4): one ᾱ for the whole batch in the known part was told the generic formula
    ("known part re-noised with the first image's alpha_bar", lambda *a: _rk(*a, known=_known_first_t),
     "the known pixels are the ground truth re-noised to t − 1", "one ᾱ for the whole batch"),
    ("hole stepped with the first image's t", lambda *a: _rk(*a, unknown=_hole_first_t),
     "the hole gets the model's DDPM step", "first image's t"),
]


def _known_first_t(x_t, eps, x0, mask, t, betas, zm, zk):
    i = int(t[0])                                         # one ᾱ_{t−1} for every image
    a = Schedule(betas).alpha_bar[i - 1] if i > 0 else torch.tensor(1.0)
    return a.sqrt() * x0 + (1 - a).sqrt() * zk


def _hole_first_t(x_t, eps, x0, mask, t, betas, zm, zk):
    return ddpm_step(x_t, eps, t[0].expand_as(t), Schedule(betas), zm)



@pytest.mark.parametrize("label,fn,case,fragment", RK_GALLERY, ids=[g[0] for g in RK_GALLERY])
def test_replace_known_gallery_rejected(rejects, label, fn, case, fragment):
    first_rejects(rejects, RK, fn, case, fragment)


# ----------------------------------------------------------------------------- masked PSNR / SSIM
MS = "inpaint.masked_psnr_ssim"


def _mse(x, y, m):
    m = m.double().expand_as(x)
    return (m * (x.double() - y.double()) ** 2).flatten(1).sum(1) / m.flatten(1).sum(1)


def _ssim_hole(x, y, m, L):
    m = m.double().expand_as(x)
    return (m * ssim_map(x, y, L)).flatten(1).sum(1) / m.flatten(1).sum(1)


def test_masked_psnr_ssim_accepted(accepts):
    accepts(MS, masked_psnr_ssim)
    accepts(MS, lambda x, y, m, L: (20 * torch.log10(L / _mse(x, y, m).sqrt()), _ssim_hole(x, y, m, L)))

    def by_indexing(x, y, m, L):                        # one image at a time, boolean indexing
        ps, ss = [], []
        smap = ssim_map(x, y, L)
        for i in range(len(x)):
            sel = m[i].expand_as(x[i]).bool()
            mse = ((x[i] - y[i]).double()[sel] ** 2).mean()
            ps.append(10 * torch.log10(L ** 2 / mse))
            ss.append(smap[i][sel].mean())
        return torch.stack(ps), torch.stack(ss)
    accepts(MS, by_indexing)


def _ps(mse, L):
    return 10 * torch.log10(L ** 2 / mse)


MS_GALLERY = [
    ("mean over all pixels", lambda x, y, m, L: (_ps(((x - y).double() ** 2).flatten(1).mean(1), L),
                                                 _ssim_hole(x, y, m, L)),
     "PSNR on the hole, one value per image", "every pixel"),
    ("mask inverted", lambda x, y, m, L: (_ps(_mse(x, y, 1 - m), L), _ssim_hole(x, y, 1 - m, L)),
     "PSNR on the hole, one value per image", "inverted"),
    ("sum instead of mean", lambda x, y, m, L: (_ps((m * (x - y).double() ** 2).flatten(1).sum(1), L),
                                                _ssim_hole(x, y, m, L)),
     "PSNR on the hole, one value per image", "summed"),
    ("data_range fixed at 1", lambda x, y, m, L: (_ps(_mse(x, y, m), 1.0), _ssim_hole(x, y, m, L)),
     "PSNR on the hole, one value per image", "data_range"),
    ("data_range from the observed values",
     lambda x, y, m, L: (_ps(_mse(x, y, m), (torch.maximum(x.flatten(1).amax(1), y.flatten(1).amax(1))
                                            - torch.minimum(x.flatten(1).amin(1), y.flatten(1).amin(1))).double()),
                         _ssim_hole(x, y, m, L)),
     "PSNR on the hole, one value per image", "observed"),
    ("log of the batch-mean MSE", lambda x, y, m, L: (_ps(_mse(x, y, m).mean(), L).expand(len(x)),
                                                      _ssim_hole(x, y, m, L)),
     "PSNR on the hole, one value per image", "per image"),
    ("channels not counted", lambda x, y, m, L: (_ps((m * (x - y).double() ** 2).flatten(1).sum(1)
                                                     / m.double().flatten(1).sum(1), L), _ssim_hole(x, y, m, L)),
     "PSNR with colour images and another data_range", "channels"),
    ("SSIM over the whole image", lambda x, y, m, L: (_ps(_mse(x, y, m), L), ssim_map(x, y, L).flatten(1).mean(1)),
     "SSIM is the mean of ssim_map over the hole", "whole image"),
    ("SSIM summed over the hole", lambda x, y, m, L: (_ps(_mse(x, y, m), L),
                                                      (m.double() * ssim_map(x, y, L)).flatten(1).sum(1)),
     "SSIM is the mean of ssim_map over the hole", "summed"),
    # review turn 3 (ch10 §3): accepted before — the SSIM case only used data_range 2
    ("SSIM with ssim_map's default range", lambda x, y, m, L: (_ps(_mse(x, y, m), L), _ssim_hole(x, y, m, 2.0)),
     "SSIM with 8-bit images, data_range 255", "data_range"),
    # review turn 3 (ch10 §3): accepted before — no case passed an (N, C, H, W) mask
    ("mask.repeat(1, C, 1, 1)", lambda x, y, m, L: masked_psnr_ssim(x, y, m.repeat(1, x.shape[1], 1, 1), L),
     "a per-channel mask (N, C, H, W)", "per-channel mask"),
    # review turn 3 (ch10 M5) and learners B note b: generic messages before
    ("PSNR with L = 2 hard-coded", lambda x, y, m, L: (_ps(_mse(x, y, m), 2.0), _ssim_hole(x, y, m, L)),
     "PSNR with colour images and another data_range", "hard-coded to 2"),
    ("SSIM with data_range 1", lambda x, y, m, L: (_ps(_mse(x, y, m), L), _ssim_hole(x, y, m, 1.0)),
     "SSIM is the mean of ssim_map over the hole", "data_range = 1"),
    ("SSIM hole count without channels", lambda x, y, m, L: (_ps(_mse(x, y, m), L), (
        m.double().expand_as(x) * ssim_map(x, y, L)).flatten(1).sum(1) / m.double().flatten(1).sum(1)),
     "SSIM is the mean of ssim_map over the hole", "ignores the channels"),
    ("SSIM of channel 0 only", lambda x, y, m, L: (_ps(_mse(x, y, m), L), _ssim_hole(x[:, :1], y[:, :1], m, L)),
     "SSIM is the mean of ssim_map over the hole", "channel 0"),
    ("SSIM on [0, 1]-rescaled images with L = 1", lambda x, y, m, L: (
        _ps(_mse(x, y, m), L), _ssim_hole((x + L / 2) / L, (y + L / 2) / L, m, 1.0)),
     "SSIM is the mean of ssim_map over the hole", "rescaled"),
    # learners 07-10 (issue 4): images rescaled inside with (x + 1) / 2 were told the generic formula
    ("images rescaled inside with (x + 1) / 2", lambda x, y, m, L: masked_psnr_ssim((x + 1) / 2, (y + 1) / 2, m, L),
     "PSNR on the hole, one value per image", "rescaled inside the function"),
    ("images rescaled inside, scored with L = 1", lambda x, y, m, L: masked_psnr_ssim((x + 1) / 2, (y + 1) / 2, m, 1.0),
     "PSNR with colour images and another data_range", "(x + 1) / 2"),
    ("images rescaled by 1/255 inside", lambda x, y, m, L: (_ps(_mse(x / 255, y / 255, m), L), _ssim_hole(x, y, m, L)),
     "PSNR on the hole, one value per image", "+48.13 dB"),
    ("SSIM only on (x + 1) / 2-rescaled images", lambda x, y, m, L: (
        _ps(_mse(x, y, m), L), _ssim_hole((x + 1) / 2, (y + 1) / 2, m, L)),
     "SSIM is the mean of ssim_map over the hole", "(x + 1) / 2"),
]


@pytest.mark.parametrize("label,fn,case,fragment", MS_GALLERY, ids=[g[0] for g in MS_GALLERY])
def test_masked_psnr_ssim_gallery_rejected(rejects, label, fn, case, fragment):
    first_rejects(rejects, MS, fn, case, fragment)


def test_ssim_map_matches_metrics_ssim_away_from_the_border():
    g = torch.Generator().manual_seed(0)
    y = torch.rand(3, 2, 20, 20, generator=g) * 2 - 1
    x = (y + 0.3 * torch.randn(3, 2, 20, 20, generator=g)).clamp(-1, 1)
    inner = ssim_map(x, y, 2.0)[..., 3:-3, 3:-3].mean(dim=(1, 2, 3))
    assert torch.allclose(inner, _metrics_ssim(x, y, 2.0, win_size=7).double(), atol=1e-10)
    assert torch.allclose(ssim_map(y, y, 2.0), torch.ones(3, 2, 20, 20, dtype=torch.float64))
# ===== END ch10 section C =====

# ===== BEGIN ch10 section D: super-resolution + style (helper D) =====
from genlib.style import gram_matrix as _d_gram  # noqa: E402

GRAM = "style.gram_matrix"


def _d_flat(f):
    n, c, h, w = f.shape
    return f.reshape(n, c, h * w)


def test_gram_accepted(accepts):
    accepts(GRAM, _d_gram)
    accepts(GRAM, lambda f: torch.einsum("nchw,ndhw->ncd", f, f) / (f.shape[1] * f.shape[2] * f.shape[3]))
    accepts(GRAM, lambda f: torch.bmm(_d_flat(f), _d_flat(f).transpose(1, 2)) / f[0].numel())
    # positions-first layout done right (permute before reshape): Fᵀ F of (N, H·W, C)
    accepts(GRAM, lambda f: (lambda m: m.transpose(1, 2) @ m / f[0].numel())(
        f.permute(0, 2, 3, 1).reshape(len(f), -1, f.shape[1])))
    accepts(GRAM, lambda f: torch.stack([(x.flatten(1) @ x.flatten(1).T) / x.numel() for x in f]))


def _d_inplace(f):
    f /= f[0].numel() ** 0.5
    m = _d_flat(f)
    return m @ m.transpose(1, 2)


def _d_numpy(f):
    import numpy as np
    m = _d_flat(f).detach().numpy()
    return torch.from_numpy(np.einsum("ncp,ndp->ncd", m, m) / f[0].numel())


GRAM_GALLERY = [
    ("no normalisation", lambda f: _d_flat(f) @ _d_flat(f).transpose(1, 2),
     "G = F Fᵀ / (C·H·W)", "no normalisation"),
    ("divided by H·W (other convention)", lambda f: _d_flat(f) @ _d_flat(f).transpose(1, 2) / (f.shape[2] * f.shape[3]),
     "G = F Fᵀ / (C·H·W)", "divided by H·W"),
    ("divided by C only", lambda f: _d_flat(f) @ _d_flat(f).transpose(1, 2) / f.shape[1],
     "G = F Fᵀ / (C·H·W)", "C only"),
    ("batch size in the normaliser", lambda f: _d_flat(f) @ _d_flat(f).transpose(1, 2) / f.numel(),
     "G = F Fᵀ / (C·H·W)", "N·C·H·W"),
    ("transposed product (HW x HW)", lambda f: _d_flat(f).transpose(1, 2) @ _d_flat(f) / f[0].numel(),
     "one (C, C) matrix per image", "positions with positions"),
    ("one Gram for the whole batch", lambda f: (lambda m: m @ m.T / m.numel())(f.transpose(0, 1).reshape(f.shape[1], -1)),
     "one (C, C) matrix per image", "whole batch"),
    ("batch mixed, repeated per image",
     lambda f: (lambda m: (m @ m.T / m.numel() * len(f)).expand(len(f), -1, -1))(f.transpose(0, 1).reshape(f.shape[1], -1)),
     "G = F Fᵀ / (C·H·W)", "mixed"),
    ("not flattened spatially", lambda f: f @ f.transpose(-1, -2) / f[0].numel(),
     "one (C, C) matrix per image", "not flattened"),
    ("mean over channels", lambda f: (lambda m: m @ m.transpose(1, 2) / m[0].numel())(_d_flat(f).mean(1, keepdim=True)),
     "one (C, C) matrix per image", "averaged"),
    ("reshape to (N, HW, C) without permute", lambda f: (lambda m: m.transpose(1, 2) @ m / f[0].numel())(
        f.reshape(len(f), -1, f.shape[1])), "G = F Fᵀ / (C·H·W)", "memory order"),
    ("centred (covariance)", lambda f: (lambda m: m @ m.transpose(1, 2) / f[0].numel())(
        _d_flat(f) - _d_flat(f).mean(2, keepdim=True)), "G = F Fᵀ / (C·H·W)", "covariance"),
    ("through numpy (no gradient)", _d_numpy, "gradient reaches the features", "no gradient"),
    ("in place on the features", _d_inplace, "one (C, C) matrix per image", "in place"),
]


@pytest.mark.parametrize("label,fn,case,fragment", GRAM_GALLERY, ids=[g[0] for g in GRAM_GALLERY])
def test_gram_gallery_rejected(rejects, label, fn, case, fragment):
    first_rejects(rejects, GRAM, fn, case, fragment)


def test_gram_matches_style_loss_convention():
    # a map of ones: each entry sums H·W products 1·1, divided by C·H·W → 1/C
    g = _d_gram(torch.ones(2, 4, 3, 5))
    assert torch.allclose(g, torch.full((2, 4, 4), 0.25))
# ===== END ch10 section D =====

# ===== BEGIN ch10 section E: translation (helper E) =====
from genlib.translate import cycle_loss as _e_cycle  # noqa: E402

CYC = "translate.cycle_loss"
_E_VALUE = "λ·(mean|F(G(x)) − x| + mean|G(F(y)) − y|)"


def test_cycle_loss_accepted(accepts):
    import torch.nn.functional as F

    accepts(CYC, _e_cycle)
    accepts(CYC, lambda x, xr, y, yr, lam=10.0: lam * F.l1_loss(xr, x) + lam * F.l1_loss(yr, y))
    accepts(CYC, lambda x, xr, y, yr, lam=10.0: lam * (xr - x).abs().mean() + lam * (y - yr).abs().mean())
    accepts(CYC, lambda x, xr, y, yr, lam=10.0: lam * ((xr - x).abs() + (yr - y).abs()).mean())
    accepts(CYC, lambda x, xr, y, yr, lam=10.0: lam * torch.stack(
        [F.l1_loss(xr, x, reduction="sum") / x.numel(), (yr - y).norm(p=1) / y.numel()]).sum())


def _e_l1(a, b):
    return (a - b).abs().mean()


def _e_detached(x, xr, y, yr, lam=10.0):
    return lam * (_e_l1(xr.detach(), x) + _e_l1(yr.detach(), y))


def _e_item(x, xr, y, yr, lam=10.0):
    return (lam * (_e_l1(xr, x) + _e_l1(yr, y))).item()


def _e_per_image(x, xr, y, yr, lam=10.0):
    return lam * ((xr - x).abs().flatten(1).mean(1) + (yr - y).abs().flatten(1).mean(1))


def _e_no_default(x, xr, y, yr, lam):
    return lam * (_e_l1(xr, x) + _e_l1(yr, y))


def _e_alias(x, xr, y, yr, lam=10.0):
    d = x
    d -= xr
    e = y
    e -= yr
    return lam * (d.abs().mean() + e.abs().mean())


CYC_GALLERY = [
    ("only one direction (X)", lambda x, xr, y, yr, lam=10.0: lam * _e_l1(xr, x), _E_VALUE,
     "only the X → Y → X cycle"),
    ("only one direction (Y)", lambda x, xr, y, yr, lam=10.0: lam * _e_l1(yr, y), _E_VALUE,
     "only the Y → X → Y cycle"),
    ("L2 instead of L1", lambda x, xr, y, yr, lam=10.0: lam * (F_mse(xr, x) + F_mse(yr, y)), _E_VALUE,
     "L1 norm"),
    ("RMSE", lambda x, xr, y, yr, lam=10.0: lam * (F_mse(xr, x).sqrt() + F_mse(yr, y).sqrt()), _E_VALUE,
     "mean absolute error"),
    ("missing lambda", lambda x, xr, y, yr, lam=10.0: _e_l1(xr, x) + _e_l1(yr, y), _E_VALUE,
     "λ is missing"),
    ("lambda applied twice", lambda x, xr, y, yr, lam=10.0: lam * (lam * _e_l1(xr, x) + lam * _e_l1(yr, y)),
     _E_VALUE, "λ²"),
    ("lambda on one term only", lambda x, xr, y, yr, lam=10.0: lam * _e_l1(xr, x) + _e_l1(yr, y), _E_VALUE,
     "only the first direction"),
    ("sum instead of mean", lambda x, xr, y, yr, lam=10.0: lam * ((xr - x).abs().sum() + (yr - y).abs().sum()),
     _E_VALUE, "a sum over pixels"),
    ("sum over pixels, mean over images",
     lambda x, xr, y, yr, lam=10.0: lam * ((xr - x).abs().flatten(1).sum(1).mean()
                                          + (yr - y).abs().flatten(1).sum(1).mean()),
     _E_VALUE, "averaged over images"),
    ("directions averaged", lambda x, xr, y, yr, lam=10.0: lam * (_e_l1(xr, x) + _e_l1(yr, y)) / 2, _E_VALUE,
     "averaged"),
    ("compared with the other domain", lambda x, xr, y, yr, lam=10.0: lam * (_e_l1(xr, y) + _e_l1(yr, x)),
     _E_VALUE, "OTHER domain"),
    ("no absolute value", lambda x, xr, y, yr, lam=10.0: lam * ((xr - x).mean() + (yr - y).mean()), _E_VALUE,
     "cancel"),
    ("abs of the mean", lambda x, xr, y, yr, lam=10.0: lam * ((xr - x).mean().abs() + (yr - y).mean().abs()),
     _E_VALUE, ".abs() first"),
    ("detached reconstructions", _e_detached, "gradients reach both generators", "no gradient"),
    ("one direction detached", lambda x, xr, y, yr, lam=10.0: lam * (_e_l1(xr, x) + _e_l1(yr.detach(), y)),
     "gradients reach both generators", "no gradient reaches y_rec"),
    ("returns a float", _e_item, "one scalar tensor", "torch.Tensor"),
    ("per-image losses", _e_per_image, "one scalar tensor", "ONE number"),
    ("no default for lambda", _e_no_default, "λ = 10 by default", "lam=10.0"),
    ("default lambda 1", lambda x, xr, y, yr, lam=1.0: lam * (_e_l1(xr, x) + _e_l1(yr, y)),
     "λ = 10 by default", "lam=10.0"),
    # review turn 3 (ch10 M2): the alias slip overwrote the caller's x and y and was named as λ / gradient
    ("alias slip d = x; d -= x_rec", _e_alias, "one scalar tensor", "in place"),
]



def F_mse(a, b):
    return (a - b).pow(2).mean()


@pytest.mark.parametrize("label,fn,case,fragment", CYC_GALLERY, ids=[g[0] for g in CYC_GALLERY])
def test_cycle_loss_gallery_rejected(rejects, label, fn, case, fragment):
    first_rejects(rejects, CYC, fn, case, fragment)


def test_cycle_loss_reference_matches_training_use():
    """The reference is what train_cyclegan optimises: zero for perfect cycles, λ-linear."""
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    y = torch.rand(2, 3, 16, 16) * 2 - 1
    assert _e_cycle(x, x.clone(), y, y.clone()).item() == 0.0
    xr, yr = x + 0.1, y - 0.2
    assert abs(_e_cycle(xr, x, yr, y, lam=10.0).item() - 10 * (0.1 + 0.2)) < 1e-5
    assert abs(_e_cycle(xr, x, yr, y, lam=5.0).item() * 2 - _e_cycle(xr, x, yr, y).item()) < 1e-5

def _e_good_cycle(x, x_rec, y, y_rec, lam=10.0):
    return lam * ((x_rec - x).abs().mean() + (y_rec - y).abs().mean())


def _e_detached_cycle(x, x_rec, y, y_rec, lam=10.0):
    return lam * ((x_rec.detach() - x).abs().mean() + (y_rec.detach() - y).abs().mean())


def test_cycle_loss_is_graded_in_the_worker(tmp_path):
    """Plain tensors in, a scalar out: the safe grader runs every case in its worker, gradients included."""
    import sys

    import cloudpickle

    from genlib.exercises import registry
    from genlib.grading import judge

    registry()
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    z = judge.Zygote([str(judge.PKG_DIR), str(tmp_path)], 2 * 2 ** 30)
    try:
        ok = judge.judge_exercise(CYC, cloudpickle.dumps(_e_good_cycle), z, 30)
        bad = judge.judge_exercise(CYC, cloudpickle.dumps(_e_detached_cycle), z, 30)
    finally:
        z.close()
    assert ok["status"] == "passed", ok
    assert bad["status"] == "failed" and "gradients reach both generators" in bad["detail"], bad
# ===== END ch10 section E =====


def test_gram_in_float64_is_accepted(accepts):
    """Session-2 learner: a float64 Gram matrix broke nothing in the chapter (the style loss and Gatys
    transfer ran with it) but was rejected for 'keep the features' dtype'."""
    accepts(GRAM, lambda f: (lambda x: x @ x.transpose(1, 2) / x[0].numel())(f.double().flatten(2)))
