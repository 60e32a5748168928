"""Inpainting (chapter 10): fill a hole in an image so that the result agrees with the pixels around it.

Convention: images in [-1, 1], (N, C, H, W); ``mask`` (N, 1, H, W) (broadcast over channels) or
(N, C, H, W) with **1 = missing (the hole to fill), 0 = known**. Metrics on the hole count only the
pixels where mask = 1.

=======================  =========================================================================
``half_masks``           a random half (top, bottom, left or right) of every image is missing
``centre_masks``         a k×k square in the middle is missing
``repaint_step``         one DDPM step with known-pixel replacement (RePaint, Lugmayr et al. 2022)
``ddpm_inpaint``         T replacement steps with a chapter-07 ε-model used unchanged (+ resampling)
``flow_inpaint``         Euler steps of a flow-matching model, known pixels put on the straight path;
                         optional reconstruction guidance
``ae_inpaint``           baseline: project onto an autoencoder's outputs, keep the known pixels
``infill_tokens``        MaskGIT decoding (Chang et al. 2022) that starts from the known tokens
``ssim_map``             per-pixel SSIM with a window renormalised at the borders (fits 8×8 images);
                         images on [0, data_range], as standard SSIM assumes
``masked_psnr_ssim``     PSNR and SSIM of every image computed on its hole only
``hole_diversity``       how different K completions of the same input are, on the hole
=======================  =========================================================================
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from genlib.diffusion import Schedule, _bcast, ddpm_step, predict_x0, q_sample
from genlib.metrics import gaussian_window


# ============================================================================ masks
def half_masks(n: int, size: int = 8, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, 1, size, size) float masks: for each image one of the four halves, chosen at random, is missing."""
    side = torch.randint(0, 4, (n,), generator=generator)
    m = torch.zeros(n, 1, size, size)
    h = size // 2
    for i, s in enumerate(side.tolist()):
        if s == 0:
            m[i, :, :h] = 1          # top
        elif s == 1:
            m[i, :, h:] = 1          # bottom
        elif s == 2:
            m[i, :, :, :h] = 1       # left
        else:
            m[i, :, :, h:] = 1       # right
    return m


def centre_masks(n: int, size: int = 8, k: int = 4) -> torch.Tensor:
    """(n, 1, size, size) float masks with the central k×k square missing."""
    m = torch.zeros(n, 1, size, size)
    a = (size - k) // 2
    m[:, :, a:a + k, a:a + k] = 1
    return m


# ============================================================================ diffusion and flow
def repaint_step(x_t: torch.Tensor, eps: torch.Tensor, x_known: torch.Tensor, mask: torch.Tensor,
                 t: torch.Tensor, betas: torch.Tensor, z_model: torch.Tensor,
                 z_known: torch.Tensor) -> torch.Tensor:
    """x_t → x_{t−1} for inpainting. In the hole (mask = 1): the model's ancestral DDPM step
    (``ddpm_step`` with the model's ε̂ ``eps`` and noise ``z_model``). Outside it: the ground truth
    x_known diffused to the *new* time t − 1 with its own fresh noise ``z_known``:
    q_sample(x_known, ᾱ_{t−1}, z_known), where ᾱ_{−1} = 1 (at t = 0 the known pixels come back
    exactly). All images (N, C, H, W); mask (N, 1, H, W) or (N, C, H, W); t: (N,) long;
    betas: (T,) the schedule (``Schedule(betas)`` rebuilds ᾱ)."""
    schedule = Schedule(betas)
    ab = schedule.alpha_bar.to(x_t.device)
    ab_prev = torch.where(t > 0, ab[(t - 1).clamp(min=0)], torch.ones_like(ab[t]))
    unknown = ddpm_step(x_t, eps, t, schedule, z_model)
    known = q_sample(x_known, ab_prev, z_known)
    return mask * unknown + (1 - mask) * known


def _eps_clipped(model, x, t, y, ab):
    """ε̂ with the implied x0 clipped to [-1, 1] (as chapter 07's samplers do)."""
    eps = model(x, t, y)
    a = _bcast(ab, x)
    x0 = predict_x0(x, eps, ab).clamp(-1, 1)
    return (x - a.sqrt() * x0) / (1 - a).sqrt()


@torch.no_grad()
def ddpm_inpaint(model, x_known: torch.Tensor, mask: torch.Tensor, schedule: Schedule | None = None,
                 y=None, resample: int = 1, generator: torch.Generator | None = None,
                 progress: bool = False, step=None) -> torch.Tensor:
    """RePaint with an unconditional ε-model used unchanged: start from noise, and at every step
    replace the known pixels by the ground truth noised to the current time (``repaint_step``).
    ``resample`` = U > 1 (RePaint's resampling with jump length 1): after each step go back to x_t by
    one forward step x_t = √(1−β_t)·x_{t−1} + √β_t·z and redo it, U times in all, so that the
    hole can adjust to what was pasted around it. NFE = (T − 1)·U + 1 (the last step, t = 0, is not
    resampled). y = None uses the null label.
    ``step``: a function with ``repaint_step``'s signature to use instead of it (the exercise)."""
    from genlib.train import progress as bar

    schedule = schedule or model.schedule
    device = x_known.device
    n = len(x_known)
    if y is None:
        y = torch.full((n,), model.null_class, dtype=torch.long, device=device)
    ab_all = schedule.alpha_bar.to(device)
    betas = schedule.betas.to(device)

    def noise():
        return torch.randn(x_known.shape, generator=generator).to(device)

    t_last = torch.full((n,), schedule.T - 1, dtype=torch.long, device=device)
    x = mask * noise() + (1 - mask) * q_sample(x_known, ab_all[t_last], noise())
    steps = range(schedule.T - 1, -1, -1)
    for i in (bar(steps, desc="RePaint") if progress else steps):
        t = torch.full((n,), i, dtype=torch.long, device=device)
        for u in range(resample):
            eps = _eps_clipped(model, x, t, y, ab_all[t])
            x_prev = (step or repaint_step)(x, eps, x_known, mask, t, schedule.betas, noise(), noise())
            if u < resample - 1 and i > 0:
                x = (1 - betas[i]).sqrt() * x_prev + betas[i].sqrt() * noise()
            else:
                break
        x = x_prev
    return x


def flow_inpaint(v_model, x_known: torch.Tensor, mask: torch.Tensor, steps: int = 32, guidance: float = 0.0,
                 y=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Euler integration of a flow-matching model (x0 noise at t = 0, data at t = 1) in which, before
    every step, the known pixels are put where the straight path of the ground truth is at that time:
    (1 − t)·z + t·x_known, with z the starting noise. The last assignment pastes them clean.

    ``guidance`` λ > 0 adds reconstruction guidance (the manifold-constrained gradient of Chung et al.
    2022, in flow form): the model's estimate of the finished image x̂1 = x + (1 − t)·v should agree
    with the known pixels, so each step also moves x down the gradient of ‖(1 − mask)·(x̂1 − x_known)‖²,
    x ← x + dt·(v − λ·∇). Replacement alone only tells the hole about its surroundings through the
    noisy current image; the gradient tells it what the surroundings must become. Costs a backward
    pass per step."""
    device = x_known.device
    n = len(x_known)
    if y is None:
        y = torch.full((n,), v_model.null_class, dtype=torch.long, device=device)
    z = torch.randn(x_known.shape, generator=generator).to(device)
    x, dt = z, 1.0 / steps
    for k in range(steps):
        tk = k * dt
        t = torch.full((n,), tk, device=device)
        x = mask * x + (1 - mask) * ((1 - tk) * z + tk * x_known)
        if guidance > 0:
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                v = v_model(xg, t, y)
                x1_hat = xg + (1 - tk) * v
                err = ((1 - mask) * (x1_hat - x_known) ** 2).sum()
                grad, = torch.autograd.grad(err, xg)
            x = x + dt * (v.detach() - guidance * grad)
        else:
            with torch.no_grad():
                x = x + dt * v_model(x, t, y)
    return (mask * x.clamp(-1, 1) + (1 - mask) * x_known).detach()


@torch.no_grad()
def ae_inpaint(reconstruct, x_known: torch.Tensor, mask: torch.Tensor, fill: torch.Tensor | float = 0.0,
               iters: int = 20) -> torch.Tensor:
    """Baseline: start with the hole set to ``fill`` (e.g. the mean training image), then ``iters``
    times replace the image by the autoencoder's reconstruction and paste the known pixels back.
    ``reconstruct``: (N, C, H, W) → (N, C, H, W) in the same range. Deterministic: one answer per input."""
    x = mask * fill + (1 - mask) * x_known
    for _ in range(iters):
        x = mask * reconstruct(x) + (1 - mask) * x_known
    return x


# ============================================================================ tokens
@torch.no_grad()
def infill_tokens(model, cond: torch.Tensor, tokens: torch.Tensor, hole: torch.Tensor, steps: int = 8,
                  temperature: float = 1.0, confidence_noise: float = 1.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill the token positions where ``hole`` (N, L) bool is True with a MaskGIT ``model``; the other
    tokens of ``tokens`` (N, L) stay. Same parallel decoding as ``MaskGIT.generate``: each step
    samples every masked position, keeps the most confident and re-masks the rest, so that after
    step s a share cos(π/2·(s+1)/steps) of each row's hole is still masked. cond (N, n_cond)."""
    from genlib.transformer import sample_step

    n, l = tokens.shape
    img = torch.where(hole, torch.full_like(tokens, model.mask_id), tokens)
    n_hole = hole.sum(1)                                                     # (N,)
    for s in range(steps):
        masked = img == model.mask_id
        logits = model(cond, img)
        u = torch.rand(n * l, generator=generator).to(tokens.device)
        tok = sample_step(logits.reshape(n * l, -1), temperature, u).view(n, l)
        prob = F.softmax(logits.float() / temperature, -1).gather(-1, tok.unsqueeze(-1))[..., 0]
        g = torch.rand(n, l, generator=generator).to(tokens.device).clamp(1e-9, 1 - 1e-9)
        conf = prob.log() + confidence_noise * (1 - (s + 1) / steps) * -torch.log(-torch.log(g))
        conf = torch.where(masked, conf, torch.full_like(conf, float("inf")))
        tok = torch.where(masked, tok, img)
        n_left = (n_hole.float() * math.cos(0.5 * math.pi * (s + 1) / steps)).floor().long()
        remask = conf.argsort(1).argsort(1) < n_left[:, None]                # least confident
        img = torch.where(remask, torch.full_like(tok, model.mask_id), tok)
    return img


# ============================================================================ metrics on the hole
def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, win_size: int = 7,
             sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Per-pixel SSIM (Wang et al. 2004) of (N, C, H, W) images → (N, C, H, W) float64.

    The images must be on the scale [0, data_range] (0 = black), as Wang et al. and torchmetrics /
    scikit-image assume: SSIM's luminance term compares window means *relative* to their size (Weber's
    law), so unlike PSNR it changes when every pixel is shifted by a constant. Convert images in
    [-1, 1] with (x + 1) / 2 and data_range = 1 (chapter 10 does); SSIM computed on signed pixels is
    a different statistic and can rank methods differently.

    Same formula as ``genlib.metrics.ssim`` (Gaussian window σ = 1.5, population moments, C1 and C2
    from k1, k2 and ``data_range``), with two changes for tiny images: the window is 7 taps (an
    11-tap window does not fit an 8×8 digit at all), and near the border the window is cut to the
    pixels inside the image and renormalised to sum 1, so every pixel gets a value. Away from the
    border the map equals the one ``metrics.ssim(win_size=7)`` averages."""
    c = x.shape[1]
    xd, yd = x.double(), y.double()
    g = gaussian_window(win_size, sigma).to(x.device)
    w2 = (g[:, None] * g[None, :])[None, None]                               # (1, 1, k, k)
    pad = win_size // 2
    maps = torch.cat([xd, yd, xd * xd, yd * yd, xd * yd], dim=1)            # (N, 5C, H, W)
    flat = maps.reshape(-1, 1, *maps.shape[-2:])
    num = F.conv2d(flat, w2, padding=pad)
    den = F.conv2d(torch.ones_like(flat[:1]), w2, padding=pad)              # weight inside the image
    mu_x, mu_y, e_xx, e_yy, e_xy = (num / den).reshape(maps.shape).split(c, dim=1)
    var_x, var_y, cov = e_xx - mu_x ** 2, e_yy - mu_y ** 2, e_xy - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))


def masked_psnr_ssim(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                     data_range: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """PSNR and SSIM of every image on its hole only: x, y (N, C, H, W) on the scale [0, data_range]
    (see ``ssim_map``: pass (x + 1) / 2 and data_range = 1 for images in [-1, 1]; PSNR is the same
    either way); mask (N, 1, H, W) or (N, C, H, W), 1 = counted. Per image: MSE = mean of (x − y)² over the hole's pixels and channels,
    PSNR = 10·log10(data_range² / MSE); SSIM = mean of ``ssim_map`` over the same entries.
    Returns two (N,) float64 tensors; an image completed exactly has PSNR +inf."""
    m = mask.double().expand_as(x)
    count = m.flatten(1).sum(1)
    mse = (m * (x.double() - y.double()) ** 2).flatten(1).sum(1) / count
    psnr = 10 * torch.log10(data_range ** 2 / mse)
    ssim = (m * ssim_map(x, y, data_range)).flatten(1).sum(1) / count
    return psnr, ssim


def hole_diversity(samples: torch.Tensor, mask: torch.Tensor) -> float:
    """samples (K, N, C, H, W): K completions of each of N inputs → mean over inputs and over the
    K·(K−1) ordered pairs of the RMS difference on the hole (0: every completion is the same)."""
    k = samples.shape[0]
    m = mask.double().expand_as(samples[0])
    d = samples.double()[:, None] - samples.double()[None]                 # (K, K, N, C, H, W)
    rms = ((d ** 2 * m).flatten(3).sum(3) / m.flatten(1).sum(1)).sqrt()     # (K, K, N)
    return float(rms.sum() / (k * (k - 1) * samples.shape[1]))
