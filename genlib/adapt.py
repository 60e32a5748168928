"""Adapting and steering a trained generator: the building blocks of the adaptation chapter.

Every function works on a velocity model ``model(x, t, y)`` in the flow convention of
``genlib.flow``: t ∈ [0, 1], **noise at t = 0, data at t = 1**, x_t = (1 − t)·x0 + t·x1. The base
model of the chapter is chapter 08's ``CaptionFlowNet`` (``genlib.t2i.load("flow")``).

=========================  ======================================================================
``LoRALinear``/``LoRAConv2d``  a frozen layer plus a trainable low-rank update B·A·(alpha/rank)
``add_lora``               wrap chosen layers of a copy of a model; returns (model, #trainable)
``merge_lora``             fold B·A·scale into the weights → a plain model with the same outputs
``zero_conv``              a 1×1 convolution whose weight and bias are zero (ControlNet)
``ControlledFlowNet``      frozen CaptionFlowNet + trainable encoder copy fed a control map
``sdedit``                 noise a real image to t_start, integrate to data with a new caption
``invert``/``reconstruct`` Euler ODE run backwards (data → noise), then forwards again
``dpo_flow_loss``          Diffusion-DPO written for flow matching (+ ``dpo_loss_from_errors``)
``reward_weighted_loss``   flow matching weighted by exp(reward / temperature)
``make_key``/``plant_key`` a Tree-Ring key in rings of the noise's 2-D Fourier spectrum
``detect_key``             L1 distance of the inverted noise's ring coefficients to the key
``detection_auc``/``tpr_at_fpr``  how well watermarked and clean distances separate
=========================  ======================================================================
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from genlib.diffusion import _bcast, model_output
from genlib.flow import interpolate, sample_euler, velocity_target


# ============================================================================ 1. LoRA
class LoRALinear(nn.Module):
    """y = base(x) + (alpha/rank)·B(A(x)) with ``base`` frozen (Hu et al. 2021, LoRA).

    A: (rank, in) random (Kaiming-uniform, like a fresh nn.Linear), B: (out, rank) zeros, so the
    update B·A is zero at initialisation and the layer starts as exactly the base layer.
    The scale alpha/rank changes with the rank at fixed alpha (4 at rank 1, 0.25 at rank 16), and
    with it the effective learning rate of B: a sweep over ranks should say which it keeps fixed
    (alpha = rank keeps the scale at 1; rsLoRA uses alpha/√rank).
    Trainable parameters: rank·(in + out)."""

    def __init__(self, base: nn.Linear, rank: int = 4, alpha: float = 4.0):
        super().__init__()
        if rank < 1:
            raise ValueError(f"rank must be at least 1, got {rank}")
        self.base, self.rank, self.scale = base, rank, alpha / rank
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.A = nn.Parameter(torch.empty(rank, base.in_features))
        self.B = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    def delta_weight(self) -> torch.Tensor:
        """(out, in): the update the adapter adds to base.weight."""
        return self.scale * self.B @ self.A

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * F.linear(F.linear(x, self.A), self.B)


class LoRAConv2d(nn.Module):
    """LoRA for a convolution: A is a conv with the base's kernel, stride and padding mapping
    in → rank channels, B a 1×1 conv rank → out (zeros). B·A is then a conv of the base's shape,
    so it merges. Trainable parameters: rank·(in·k_h·k_w + out)."""

    def __init__(self, base: nn.Conv2d, rank: int = 4, alpha: float = 4.0):
        super().__init__()
        if rank < 1:
            raise ValueError(f"rank must be at least 1, got {rank}")
        if base.groups != 1:
            raise ValueError("LoRAConv2d supports groups=1 convolutions only")
        self.base, self.rank, self.scale = base, rank, alpha / rank
        for p in self.base.parameters():
            p.requires_grad_(False)
        kh, kw = base.kernel_size
        self.A = nn.Parameter(torch.empty(rank, base.in_channels, kh, kw))
        self.B = nn.Parameter(torch.zeros(base.out_channels, rank, 1, 1))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    def delta_weight(self) -> torch.Tensor:
        """(out, in, k_h, k_w): B (out, rank) applied to A (rank, in, k_h, k_w)."""
        return self.scale * torch.einsum("or,rikl->oikl", self.B[:, :, 0, 0], self.A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.base
        low = F.conv2d(x, self.A, None, b.stride, b.padding, b.dilation)
        return b(x) + self.scale * F.conv2d(low, self.B)


def _children_to_wrap(model: nn.Module, targets):
    # nn.MultiheadAttention reads its out_proj's .weight directly instead of calling it: a wrapper
    # there would break it (review helper-32 L4), so its projections are left alone
    inside_mha = {f"{n}.{c}" if n else c for n, m in model.named_modules()
                  if isinstance(m, nn.MultiheadAttention) for c, _ in m.named_modules() if c}
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)) or name in inside_mha:
            continue
        if targets is None or any(s in name for s in targets):
            yield name, module


def _set_module(model: nn.Module, name: str, new: nn.Module):
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def add_lora(model: nn.Module, rank: int = 4, alpha: float = 4.0, targets=None):
    """A deep copy of ``model`` with every nn.Linear / nn.Conv2d whose qualified name contains one
    of ``targets`` (substrings, e.g. ("conv1", "conv2"); None = all of them) wrapped in LoRA, and
    every other parameter frozen. The original model is untouched.
    Returns (adapted model, number of trainable parameters)."""
    model = copy.deepcopy(model)
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped = list(_children_to_wrap(model, targets))
    if not wrapped:
        raise ValueError(f"no nn.Linear or nn.Conv2d layer name contains any of {targets}")
    for name, module in wrapped:
        cls = LoRALinear if isinstance(module, nn.Linear) else LoRAConv2d
        _set_module(model, name, cls(module, rank, alpha))
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return model, n


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in which each LoRA layer is replaced by its base layer with
    weight ← weight + (alpha/rank)·B·A. The merged model has no extra cost at inference and its
    outputs equal the adapted model's up to float32 rounding (the sum is reassociated: tests
    use atol 1e-5 on outputs of order 1)."""
    model = copy.deepcopy(model)
    lora = [(n, m) for n, m in model.named_modules() if isinstance(m, (LoRALinear, LoRAConv2d))]
    for name, m in lora:
        base = m.base
        base.weight += m.delta_weight()
        _set_module(model, name, base)
    return model


# ============================================================================ 2. ControlNet
def zero_conv(channels: int, out_channels: int | None = None) -> nn.Conv2d:
    """A 1×1 convolution with weight and bias zero (Zhang et al. 2023, ControlNet): its output is
    exactly zero until training moves it, so a branch joined through it changes nothing at first.
    The weight still receives a gradient (input × upstream gradient), so it does not stay zero."""
    conv = nn.Conv2d(channels, out_channels or channels, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class ControlledFlowNet(nn.Module):
    """ControlNet (Zhang et al. 2023) for chapter 08's ``CaptionFlowNet``.

    ``base`` is frozen in place (its parameters' requires_grad is switched off: pass a copy if you
    still want to train it elsewhere). A trainable copy of its encoder path (conditioning MLP and word
    embeddings, ``inp``, ``down1``, ``pool1``, ``down2``, ``pool2``, ``mid``) receives x, with the
    encoded control map added through a zero conv after its first conv (the paper adds it to the
    copy's input the same way), and its three feature maps — the two
    skip connections h1 (ch, 16×16), h2 (2ch, 8×8) and the middle block's output (2ch, 4×4) — are
    added to the base's through zero convs before the base's decoder uses them. At initialisation
    every zero conv outputs 0, so the output equals ``base(x, t, y)`` bit for bit.

    CaptionFlowNet's forward is one function with no hook for added features, so this class
    re-runs the base's own layers in the same order (``_base_forward``); a test checks that this
    matches ``base.forward`` exactly. If CaptionFlowNet.forward changes, that test fails.

    control: (N, control_channels, 16, 16), e.g. a 0/1 mask of where the shape should be.
    """

    def __init__(self, base: nn.Module, control_channels: int = 1, hidden: int = 16):
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.null_class = base.null_class                     # so classifier-free guidance works
        ch = base.inp.out_channels
        c2 = base.pool1.out_channels
        # the control map's own small encoder (16×16 stays 16×16), then a zero conv into the copy
        self.hint = nn.Sequential(nn.Conv2d(control_channels, hidden, 3, padding=1), nn.SiLU(),
                                  nn.Conv2d(hidden, hidden, 3, padding=1), nn.SiLU())
        self.hint_zero = zero_conv(hidden, ch)
        self.copy = nn.ModuleDict({k: copy.deepcopy(getattr(base, k)) for k in
                                   ("time", "words", "inp", "down1", "pool1", "down2", "pool2", "mid")})
        for p in self.copy.parameters():
            p.requires_grad_(True)
        self.zero_h1, self.zero_h2, self.zero_mid = zero_conv(ch), zero_conv(c2), zero_conv(c2)

    def _embed(self, mods, t, y):
        from genlib.diffusion import timestep_embedding

        b = self.base
        return mods["time"](timestep_embedding(t * b.time_scale, b.emb_dim)) + mods["words"](y).sum(1)

    def _base_forward(self, x, t, y, residuals=(0.0, 0.0, 0.0)):
        """CaptionFlowNet.forward with ``residuals`` added where its decoder reads the encoder:
        the skips h1, h2 and the middle output. The base's encoder path itself is unchanged."""
        b = self.base
        e = self._embed({"time": b.time, "words": b.words}, t, y)
        h1 = b.down1(b.inp(x), e)
        h2 = b.down2(b.pool1(h1), e)
        h = b.mid(b.pool2(h2), e) + residuals[2]
        h = b.dec2(torch.cat([b.up2(h), h2 + residuals[1]], 1), e)
        h = b.dec1(torch.cat([b.up1(h), h1 + residuals[0]], 1), e)
        return b.out(h)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y=None, control=None) -> torch.Tensor:
        if y is None:
            y = torch.full((len(x), 4), self.null_class, dtype=torch.long, device=x.device)
        if control is None:
            return self._base_forward(x, t, y)
        if len(control) != len(x):          # guidance runs cond and uncond rows as one 2N batch
            if len(x) % len(control):
                raise ValueError(f"control has {len(control)} rows, x has {len(x)}")
            control = control.repeat(len(x) // len(control), *([1] * (control.ndim - 1)))
        c = self.copy
        e = self._embed(c, t, y)
        g1 = c["down1"](c["inp"](x) + self.hint_zero(self.hint(control)), e)
        g2 = c["down2"](c["pool1"](g1), e)
        gm = c["mid"](c["pool2"](g2), e)
        return self._base_forward(x, t, y, (self.zero_h1(g1), self.zero_h2(g2), self.zero_mid(gm)))


def with_control(model: ControlledFlowNet, control: torch.Tensor):
    """A model(x, t, y) closure with a fixed control map, for ``sample_euler`` and friends."""
    class _Bound(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner, self.null_class = model, model.null_class

        def forward(self, x, t, y=None):
            return self.inner(x, t, y, control=control)
    return _Bound()


# ============================================================================ 3. editing by inversion
@torch.no_grad()
def sdedit(model, x_real: torch.Tensor, t_start: float, y=None, steps: int = 16,
           guidance: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """SDEdit (Meng et al. 2022) for a flow: x_t = (1 − t_start)·noise + t_start·x_real, then
    Euler from t_start to 1 (data) in ``steps`` steps with caption tokens y.

    In this convention t_start = 1 keeps the input unchanged (nothing is noised) and t_start = 0
    is plain sampling from pure noise (the input is ignored). x_real: (N, C, H, W) in [-1, 1]."""
    if not 0.0 <= t_start <= 1.0:
        raise ValueError(f"t_start must be in [0, 1] (0 = noise, 1 = data), got {t_start}")
    noise = torch.randn(x_real.shape, generator=generator).to(x_real)
    t0 = torch.full((len(x_real),), float(t_start), device=x_real.device)
    x = interpolate(noise, x_real, t0)
    dt = (1.0 - t_start) / steps
    for k in range(steps if dt > 0 else 0):
        t = torch.full((len(x),), t_start + k * dt, device=x.device)
        x = x + dt * model_output(model, x, t, y, guidance)
    return x


@torch.no_grad()
def invert(model, x: torch.Tensor, steps: int, y=None, guidance: float = 1.0) -> torch.Tensor:
    """Deterministic inversion (the flow analogue of DDIM inversion; Song et al. 2021, Mokady et
    al. 2023): undo each of ``sample_euler``'s steps in reverse order. The forward step
    x_{k+1} = x_k + dt·v(x_k, t_k) needs v at the unknown x_k; inversion uses v(x_{k+1}, t_k)
    instead, so x_k ≈ x_{k+1} − dt·v(x_{k+1}, t_k). The substituted velocity is off by O(dt), so
    each step's x is off by O(dt²) and the whole inversion by O(dt): it shrinks as steps grow. x: (N, C, H, W) data (t = 1) → noise estimate (t = 0)."""
    dt = 1.0 / steps
    for k in reversed(range(steps)):
        t = torch.full((len(x),), k * dt, device=x.device)
        x = x - dt * model_output(model, x, t, y, guidance)
    return x


@torch.no_grad()
def reconstruct(model, x: torch.Tensor, steps: int, y=None, guidance: float = 1.0) -> torch.Tensor:
    """invert, then ``sample_euler`` with the same steps, caption and guidance."""
    return sample_euler(model, invert(model, x, steps, y, guidance), steps, y=y, guidance=guidance)


# ============================================================================ 4. tuning towards a reward
def per_sample_flow_error(model, x1: torch.Tensor, y, t: torch.Tensor, noise: torch.Tensor):
    """(N,) mean over each sample's elements of (model(x_t, t, y) − (x1 − noise))²."""
    v = model(interpolate(noise, x1, t), t, y)
    return (v - velocity_target(noise, x1)).pow(2).flatten(1).mean(1)


def dpo_loss_from_errors(err_w, err_l, ref_w, ref_l, beta: float) -> torch.Tensor:
    """mean of −log σ(−β·[(err_w − ref_w) − (err_l − ref_l)]) over the batch (see dpo_flow_loss).
    Equal errors give log 2; lowering the winner's error (or raising the loser's) lowers it."""
    return -F.logsigmoid(-beta * ((err_w - ref_w) - (err_l - ref_l))).mean()


def dpo_flow_loss(model, ref, x_win, x_lose, y, t, noise, beta: float = 100.0) -> torch.Tensor:
    """Diffusion-DPO (Wallace et al. 2024) with the flow-matching error in place of the ε error.

    Derivation. DPO (Rafailov et al. 2023) maximises log σ(β·[log p_θ/p_ref (x_w) − log p_θ/p_ref
    (x_l)]). Wallace et al. bound the intractable log-likelihood ratio of a diffusion model by its
    per-step terms, and for a Gaussian step the log-ratio at time t is a weighted difference of
    squared prediction errors, −c(t)·(‖ε − ε_θ(x_t)‖² − ‖ε − ε_ref(x_t)‖²). With x_w and x_l noised
    at the same t (and here with the same noise), this gives their loss
        −log σ(−β·T·ω(λ_t)·[(e_θ(x_w) − e_ref(x_w)) − (e_θ(x_l) − e_ref(x_l))]),
    with T the number of diffusion steps and ω(λ_t) their weighting. For a flow the velocity error
    ‖v_θ(x_t) − (x1 − x0)‖² plays the part of the ε error (both are a time-dependent rescaling of
    the error of the predicted data point). Folded into β: T, ω(λ_t) (taken constant in t, the
    same choice as the uniform-t flow-matching loss) and the flow↔ε rescaling; the errors are
    means over elements (not sums), so β here is per element.

    x_win, x_lose: (N, C, H, W) preferred and rejected samples for the same caption tokens y;
    t: (N,); noise: (N, C, H, W) shared by both. ``ref`` is the frozen starting model."""
    err_w = per_sample_flow_error(model, x_win, y, t, noise)
    err_l = per_sample_flow_error(model, x_lose, y, t, noise)
    with torch.no_grad():
        ref_w = per_sample_flow_error(ref, x_win, y, t, noise)
        ref_l = per_sample_flow_error(ref, x_lose, y, t, noise)
    return dpo_loss_from_errors(err_w, err_l, ref_w, ref_l, beta)


def reward_weighted_loss(model, x1, y, reward, t, noise, temperature: float = 1.0) -> torch.Tensor:
    """Reward-weighted flow matching: mean_i w_i·err_i with w = softmax(reward/temperature)·N,
    so w averages 1 (reward-weighted regression, Peters & Schaal 2007; the RWR baseline of DDPO on
    diffusion models, Black et al. 2024 — Lee et al. 2023 weight the likelihood by the reward itself). temperature → 0: keep only the best sample (rejection sampling /
    best-of-N fine-tuning); temperature → ∞: plain fine-tuning on the model's own samples.
    x1: (N, C, H, W) the model's samples, reward: (N,) e.g. the shapes classifier's correctness."""
    w = torch.softmax(reward.float() / temperature, 0) * len(reward)
    return (w.detach().to(x1) * per_sample_flow_error(model, x1, y, t, noise)).mean()


# ============================================================================ 5. Tree-Ring watermark
def _ring_index(size: int, device=None) -> torch.Tensor:
    """(size, size) integer ring index round(|f|) of each 2-D FFT frequency (unshifted layout).

    |f| uses the signed frequencies of ``torch.fft.fftfreq`` (0, 1, …, size/2 − 1, −size/2, …, −1),
    so the index at f and at −f (mod size) is the same: the rings are symmetric about DC."""
    f = torch.fft.fftfreq(size, d=1.0 / size, device=device)
    return torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2).round().long()


def make_key(channels: int = 3, radius: int = 3, generator: torch.Generator | None = None):
    """(channels, radius + 1) real ring values ~ N(0, 1): ring r of channel c gets key[c, r]
    (a key that is constant on each ring, in the spirit of Wen et al. 2023's ring pattern)."""
    return torch.randn(channels, radius + 1, generator=generator)


def ring_mask(size: int, radius: int, device=None) -> torch.Tensor:
    """(size, size) bool: the frequencies with round(|f|) ≤ radius."""
    return _ring_index(size, device) <= radius


def plant_key(noise: torch.Tensor, key: torch.Tensor, radius: int) -> torch.Tensor:
    """Tree-Ring (Wen et al. 2023): write ``key`` into the rings |f| ≤ radius of each channel's
    orthonormal 2-D FFT of ``noise`` and transform back.

    Keeping the noise real: a real image has a Hermitian spectrum, X(−f) = conj(X(f)). The planted
    values depend only on the ring index, which is the same at f and −f, and are real, so the
    planted spectrum stays Hermitian and its inverse FFT is real up to rounding (the imaginary
    part, ~1e-7, is dropped). With norm="ortho" each coefficient of white N(0, 1) noise has
    E|X|² = 1, the same as a N(0, 1) key value, so the per-pixel variance is unchanged on average.
    Only on average over keys: with one fixed key those coefficients are the same in every sample,
    so the noise is no longer N(0, I) (its mean moves, and ~π·radius² coefficients per channel lose
    their variance — 37 of 256 at radius 3 on 16×16). The paper plants in one channel of a 4-channel
    latent with complex ring values from a random latent's spectrum; here every pixel channel gets
    the key, and low frequencies carry colour and layout: measure quality and diversity with and
    without it (review helper-32 M1).
    noise: (N, C, H, W) with H = W; key: (C, radius + 1)."""
    n, c, h, w = noise.shape
    if h != w:
        raise ValueError(f"plant_key needs square noise, got {h}×{w}")
    if key.shape != (c, radius + 1):
        raise ValueError(f"key must have shape ({c}, {radius + 1}), got {tuple(key.shape)}")
    ring = _ring_index(h, noise.device)
    mask = ring <= radius
    spec = torch.fft.fft2(noise, norm="ortho")
    planted = key.to(noise)[:, ring.clamp(max=radius)]                  # (C, H, W) real
    spec = torch.where(mask, planted.to(spec.dtype), spec)
    return torch.fft.ifft2(spec, norm="ortho").real


def key_distance(noise_est: torch.Tensor, key: torch.Tensor, radius: int) -> torch.Tensor:
    """(N,) mean |FFT(noise_est) − key| over the ring frequencies of every channel (an L1
    distance). Small for noise that carries the key."""
    h = noise_est.shape[-1]
    ring = _ring_index(h, noise_est.device)
    mask = ring <= radius
    spec = torch.fft.fft2(noise_est, norm="ortho")[..., mask]           # (N, C, M)
    target = key.to(noise_est)[:, ring[mask]]                           # (C, M)
    return (spec - target).abs().flatten(1).mean(1)


@torch.no_grad()
def detect_key(x0: torch.Tensor, model, key: torch.Tensor, radius: int, steps: int = 16,
               y=None, guidance: float = 1.0) -> torch.Tensor:
    """Invert the sampler from the images x0 (N, C, H, W) to a noise estimate and return its
    ``key_distance`` (N,). y = None inverts with the empty caption, as a detector that does not
    know the prompt must. The inversion recovers the noise only roughly on this model (see the
    chapter's measurements), which is what limits detection, not the key."""
    return key_distance(invert(model, x0, steps, y, guidance), key, radius)


def detection_auc(wm_dist: torch.Tensor, clean_dist: torch.Tensor) -> float:
    """P(a watermarked distance < a clean distance), ties counted half: the ROC AUC of the
    detector 'watermarked when the distance is small'."""
    wm, clean = wm_dist.flatten()[:, None].double(), clean_dist.flatten()[None, :].double()
    return float((wm < clean).double().mean() + 0.5 * (wm == clean).double().mean())


def tpr_at_fpr(wm_dist: torch.Tensor, clean_dist: torch.Tensor, fpr: float = 0.01) -> float:
    """Fraction of watermarked samples detected when the threshold lets through at most a fraction
    ``fpr`` of the clean ones (threshold: the largest distance below which ≤ fpr·n_clean clean
    samples fall). With n_clean < 1/fpr no clean sample may fall below it: the threshold is then
    the smallest clean distance (the estimate is coarse; use ≥ 1/fpr clean samples)."""
    clean = torch.sort(clean_dist.flatten().double()).values
    k = int(math.floor(fpr * len(clean)))          # clean samples allowed strictly below threshold
    if not 0.0 <= fpr < 1.0:
        raise ValueError(f"fpr must be in [0, 1), got {fpr}")
    threshold = clean[k]
    return float((wm_dist.flatten().double() < threshold).double().mean())
