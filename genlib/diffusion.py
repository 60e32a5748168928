"""Denoising diffusion (DDPM / DDIM), classifier-free guidance, and the small networks of chapter 07.

Conventions: images live in [-1, 1], digits are (N, 1, 8, 8). Discrete time t = 0 … T-1, where
t = T-1 is the noisiest step and ``alpha_bar[t]`` decreases with t. The forward process is
variance preserving: x_t = √ᾱ_t·x0 + √(1-ᾱ_t)·ε.

=====================  ===========================================================================
``Schedule``           betas / alphas / alpha_bar (T,) float32: ``Schedule.linear``, ``.cosine``
``q_sample``           x_t from x0 and noise in closed form
``posterior``          mean and variance of q(x_{t-1} | x_t, x0)
``predict_x0``         the x0 estimate implied by an ε prediction (Tweedie)
``ddpm_step``          one ancestral step x_t → x_{t-1}
``ddim_step``          one deterministic (η = 0) step to any earlier time
``guided``             classifier-free guidance: uncond + scale·(cond − uncond)
``diffusion_loss``     the "simple" ε-MSE training loss
``sample_ddpm``        T steps of ancestral sampling, NFE = T (2T with guidance ≠ 1)
``sample_ddim``        any decreasing subset of steps, NFE = steps (2·steps with guidance ≠ 1)
``TimeMLP``            a small MLP for 2-D data: (x, t, y) → (N, dim)
``TinyUNet``           ~0.3 M-parameter U-Net for 8×8 digits with time and class embeddings
``load_pretrained``    the shipped digits models: "digits_flow", "digits_ddpm", "digits_reflow",
                       "digits_dcgan"
``digits_eval``        digits-FID against the held-out test digits + requested-class accuracy
=====================  ===========================================================================

Every model here is called as ``model(x, t, y)``: t is a (N,) tensor (long steps for diffusion,
float times in [0, 1] for flow matching; ``time_scale`` maps either onto the embedding's range)
and y is None (unconditional) or (N,) class labels, where the index ``model.null_class`` means
"no label" — the unconditional branch of classifier-free guidance.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")


# ============================================================================ schedules
@dataclass
class Schedule:
    """A noise schedule: ``betas``, ``alphas`` = 1 − betas, ``alpha_bar`` = cumprod(alphas), all (T,);
    ``T`` is the number of steps (valid integer steps are 0 … T − 1; step T − 1 is the noisiest)."""
    betas: torch.Tensor

    def __post_init__(self):
        self.betas = self.betas.float()
        self.alphas = 1.0 - self.betas
        self.alpha_bar = torch.cumprod(self.alphas.double(), 0).float()  # cumprod in float64
        self.T = len(self.betas)

    @classmethod
    def linear(cls, T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> "Schedule":
        """Ho et al. 2020: betas linear from beta_start to beta_end (their T = 1000 values)."""
        return cls(torch.linspace(beta_start, beta_end, T, dtype=torch.float64))

    @classmethod
    def cosine(cls, T: int, s: float = 0.008, max_beta: float = 0.999) -> "Schedule":
        """Nichol & Dhariwal 2021: ᾱ(u) ∝ cos²((u + s)/(1 + s)·π/2), betas clipped at max_beta."""
        u = torch.linspace(0, 1, T + 1, dtype=torch.float64)
        f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
        ab = f / f[0]
        return cls((1 - ab[1:] / ab[:-1]).clamp(max=max_beta))

    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio ᾱ / (1 − ᾱ) per step, (T,), decreasing in t."""
        return self.alpha_bar / (1 - self.alpha_bar)

    def to(self, device) -> "Schedule":
        out = Schedule(self.betas.to(device))
        return out


def _bcast(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N,) → (N, 1, 1, …) so that it broadcasts against x: (N, ...)."""
    return a.reshape(-1, *([1] * (x.ndim - 1))).to(x)


# ============================================================================ forward and reverse steps
def q_sample(x0: torch.Tensor, alpha_bar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t = √ᾱ·x0 + √(1 − ᾱ)·noise.  x0, noise: (N, ...); alpha_bar: (N,) (one value per sample)."""
    ab = _bcast(alpha_bar, x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def posterior(x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, schedule: Schedule):
    """q(x_{t-1} | x_t, x0) = N(mean, var): x0, x_t: (N, ...), t: (N,) long.

    mean = √ᾱ_{t-1}·β_t/(1−ᾱ_t)·x0 + √α_t·(1−ᾱ_{t-1})/(1−ᾱ_t)·x_t,  var = β̃_t = β_t·(1−ᾱ_{t-1})/(1−ᾱ_t),
    with ᾱ_{-1} = 1 (so var = 0 and mean = x0 at t = 0). Returns mean (N, ...) and var (N, 1, …).
    """
    s = schedule
    ab_t = s.alpha_bar.to(x0.device)[t]
    ab_prev = torch.where(t > 0, s.alpha_bar.to(x0.device)[(t - 1).clamp(min=0)],
                          torch.ones_like(ab_t))
    beta, alpha = s.betas.to(x0.device)[t], s.alphas.to(x0.device)[t]
    c0 = _bcast(ab_prev.sqrt() * beta / (1 - ab_t), x0)
    ct = _bcast(alpha.sqrt() * (1 - ab_prev) / (1 - ab_t), x0)
    var = _bcast(beta * (1 - ab_prev) / (1 - ab_t), x0)
    return c0 * x0 + ct * x_t, var


def predict_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """x0 ≈ (x_t − √(1−ᾱ)·ε̂) / √ᾱ: the ε parameterisation solved for x0 (Tweedie's E[x0 | x_t]
    when ε̂ is the optimal denoiser). alpha_bar: (N,)."""
    ab = _bcast(alpha_bar, x_t)
    return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()


def ddpm_step(x_t: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, schedule: Schedule,
              noise: torch.Tensor) -> torch.Tensor:
    """Ancestral step x_t → x_{t-1} ~ N(posterior mean at x0 = predict_x0, β̃_t). t: (N,) long;
    noise (N, ...) standard normal, unused where t = 0 (β̃_0 = 0: the last step adds no noise)."""
    x0 = predict_x0(x_t, eps, schedule.alpha_bar.to(x_t.device)[t])
    mean, var = posterior(x0, x_t, t, schedule)
    return mean + var.sqrt() * noise


def ddim_step(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: torch.Tensor,
              alpha_bar_prev: torch.Tensor) -> torch.Tensor:
    """Deterministic DDIM step (Song et al. 2021, η = 0) from ᾱ_t to any earlier (larger) ᾱ_prev:
    keep the predicted noise, move the predicted x0.  alpha_bar_*: (N,)."""
    x0 = predict_x0(x_t, eps, alpha_bar_t)
    ab = _bcast(alpha_bar_prev, x_t)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def guided(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022): uncond + scale·(cond − uncond).
    scale = 1: the conditional prediction; 0: the unconditional; > 1: pushed past cond."""
    return uncond + scale * (cond - uncond)


def diffusion_loss(eps_model, x0: torch.Tensor, schedule: Schedule, y=None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """The simple loss of Ho et al. 2020: t ~ U{0..T−1}, ε ~ N(0, I), ‖ε_θ(x_t, t, y) − ε‖² averaged
    over every element. x0: (N, ...); y: None or (N,) labels (passed through to the model)."""
    n = len(x0)
    t = torch.randint(0, schedule.T, (n,), generator=generator).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator).to(x0)
    x_t = q_sample(x0, schedule.alpha_bar.to(x0.device)[t], noise)
    return F.mse_loss(eps_model(x_t, t, y), noise)


# ============================================================================ samplers
def model_output(model, x: torch.Tensor, t: torch.Tensor, y=None, guidance: float = 1.0):
    """model(x, t, y), with classifier-free guidance when y is given and guidance ≠ 1: the
    conditional and the unconditional (null-label) inputs go through the network as ONE batch of
    2N rows (NFE 2 per call), then ``guided`` combines them."""
    if y is None or guidance == 1.0:
        return model(x, t, y)
    null = torch.full_like(y, model.null_class)
    out = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
    cond, uncond = out.chunk(2)
    return guided(cond, uncond, guidance)


def _eps(model, x, t, y, guidance, ab, clip):
    """ε̂ at (x, t); with ``clip`` the implied x0 is clipped to [-1, 1] and ε̂ recomputed from it
    (the "clip_denoised" of DDPM code: keeps early, very noisy steps from overshooting)."""
    eps = model_output(model, x, t, y, guidance)
    if clip:
        a = _bcast(ab, x)
        x0 = predict_x0(x, eps, ab).clamp(-1, 1)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
    return eps


def device_generator(generator, device):
    """A generator on ``device`` for drawing noise there directly (no host-to-device copy): the
    CPU ``generator`` itself when ``device`` is the CPU, else a new one on ``device`` seeded from
    it (one integer drawn on the host). None stays None (the global generator)."""
    if generator is None:
        return None
    device = torch.device(device if device is not None else "cpu")
    if generator.device.type == device.type:
        return generator
    return torch.Generator(device=device).manual_seed(int(torch.randint(0, 2 ** 62, (1,), generator=generator)))


def _noise(shape, generator, device):
    """Noise drawn on ``device`` itself; on the CPU the same numbers as before device support."""
    return torch.randn(shape, generator=device_generator(generator, device), device=device)


@torch.no_grad()
def sample_ddpm(eps_model, shape, schedule: Schedule, y=None, guidance: float = 1.0,
                generator: torch.Generator | None = None, progress: bool = False,
                clip: bool = True, device=None) -> torch.Tensor:
    """Ancestral DDPM sampling from x_{T-1} ~ N(0, I) down to x_0: T network evaluations (2T with
    guidance ≠ 1). shape: e.g. (N, 1, 8, 8); y: None or (N,) labels. Noise comes from ``generator``."""
    from genlib.train import progress as bar

    device = device or next(eps_model.parameters()).device
    x = _noise(shape, generator, device)
    steps = range(schedule.T - 1, -1, -1)
    ab_all = schedule.alpha_bar.to(device)
    for i in (bar(steps, desc="DDPM") if progress else steps):
        t = torch.full((shape[0],), i, dtype=torch.long, device=device)
        eps = _eps(eps_model, x, t, y, guidance, ab_all[t], clip)
        x = ddpm_step(x, eps, t, schedule, _noise(shape, generator, device))
    return x


def ddim_timesteps(T: int, steps: int) -> torch.Tensor:
    """``steps`` decreasing, evenly spaced integer steps from T−1 down to 0 (both ends included
    when steps ≥ 2). E.g. T = 100, steps = 5 → [99, 74, 50, 25, 0]."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in [1, T={T}], got {steps}")
    return torch.linspace(T - 1, 0, steps).round().long().unique_consecutive()


@torch.no_grad()
def sample_ddim(eps_model, shape, schedule: Schedule, steps: int, y=None, guidance: float = 1.0,
                generator: torch.Generator | None = None, progress: bool = False,
                clip: bool = True, device=None) -> torch.Tensor:
    """DDIM (η = 0) over ``ddim_timesteps(T, steps)``: ``steps`` network evaluations (2× with
    guidance ≠ 1). The last step goes from t = 0 to the clean image (ᾱ_prev = 1)."""
    from genlib.train import progress as bar

    device = device or next(eps_model.parameters()).device
    x = _noise(shape, generator, device)
    ts = ddim_timesteps(schedule.T, steps).tolist()
    ab_all = schedule.alpha_bar.to(device)
    n = shape[0]
    pairs = list(zip(ts, ts[1:] + [-1]))
    for i, j in (bar(pairs, desc="DDIM") if progress else pairs):
        t = torch.full((n,), i, dtype=torch.long, device=device)
        ab_t = ab_all[t]
        ab_prev = ab_all[torch.full_like(t, j)] if j >= 0 else torch.ones_like(ab_t)
        eps = _eps(eps_model, x, t, y, guidance, ab_t, clip)
        x = ddim_step(x, eps, ab_t, ab_prev)
    return x


class CountNFE(nn.Module):
    """Wraps a model and counts network evaluations per sample: every call adds rows / ``n``
    (so one batched cond+uncond call of 2N rows counts 2). ``CountNFE(model, n).nfe``."""

    def __init__(self, model: nn.Module, n: int):
        super().__init__()
        self.model, self.n, self.nfe = model, n, 0.0
        self.null_class = getattr(model, "null_class", None)

    def forward(self, x, t, y=None):
        self.nfe += len(x) / self.n
        return self.model(x, t, y)


# ============================================================================ networks
def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (N,) times (any real values) → (N, dim), as in the Transformer."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class _Conditioning(nn.Module):
    """Time (sinusoidal → MLP) plus class embedding (n_classes + 1 rows; the last is the null
    label) → (N, emb). y = None means the null label for every sample."""

    def __init__(self, emb: int, n_classes: int, time_scale: float):
        super().__init__()
        self.time_scale, self.n_classes = time_scale, n_classes
        self.time = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label = nn.Embedding(n_classes + 1, emb) if n_classes else None
        self.emb = emb

    def forward(self, t: torch.Tensor, y=None) -> torch.Tensor:
        if not torch.is_tensor(t) or t.dim() != 1:
            shape = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
            raise ValueError(f"the model takes t of shape (N,), one time per sample; got {shape}. If you "
                             "reshaped t to broadcast it over x (t.view(-1, 1, ...)), pass the original "
                             "(N,) tensor to the model.")
        h = self.time(timestep_embedding(t * self.time_scale, self.emb))
        if self.label is not None:
            if y is None:
                y = torch.full((len(t),), self.n_classes, dtype=torch.long, device=t.device)
            h = h + self.label(y)
        return h


class TimeMLP(nn.Module):
    """(x: (N, dim), t: (N,), y) → (N, dim): an MLP on [x, embedding(t, y)] with SiLU activations.

    ``time_scale``: multiplies t before the sinusoidal embedding (1000 for flow times in [0, 1],
    1000 / T for diffusion steps). ``n_classes`` = 0 means unconditional.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, layers: int = 3, emb: int = 32,
                 n_classes: int = 0, time_scale: float = 1000.0):
        super().__init__()
        self.config = dict(dim=dim, hidden=hidden, layers=layers, emb=emb, n_classes=n_classes,
                           time_scale=time_scale)
        self.null_class = n_classes
        self.cond = _Conditioning(emb, n_classes, time_scale)
        sizes = [dim + emb] + [hidden] * layers
        self.net = nn.Sequential(*[m for a, b in zip(sizes, sizes[1:])
                                   for m in (nn.Linear(a, b), nn.SiLU())], nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y=None) -> torch.Tensor:
        return self.net(torch.cat([x, self.cond(t, y)], dim=1))


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv3×3, plus the embedding (a per-channel shift), GroupNorm → SiLU →
    conv3×3, with a residual connection (1×1 conv when the channel count changes)."""

    def __init__(self, cin: int, cout: int, emb: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.norm2, self.conv2 = nn.GroupNorm(8, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(e)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class TinyUNet(nn.Module):
    """A ~0.3 M-parameter U-Net for (N, 1, 8, 8) images: (x, t, y) → (N, 1, 8, 8).

    8×8 (ch) → 4×4 (2ch) → back up to 8×8 with a skip connection; every ResBlock sees the time +
    class embedding. ``n_classes`` labels plus a null label (index ``null_class`` = n_classes) for
    classifier-free guidance; y = None is the null label. The same network predicts ε (diffusion,
    ``time_scale`` = 1000 / T) or the velocity (flow matching, ``time_scale`` = 1000).
    """

    def __init__(self, ch: int = 32, emb: int = 128, n_classes: int = 10,
                 time_scale: float = 1000.0):
        super().__init__()
        self.config = dict(ch=ch, emb=emb, n_classes=n_classes, time_scale=time_scale)
        self.null_class = n_classes
        self.cond = _Conditioning(emb, n_classes, time_scale)
        self.inp = nn.Conv2d(1, ch, 3, padding=1)
        self.down1 = ResBlock(ch, ch, emb)                                # 8×8
        self.pool = nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1)        # 8×8 → 4×4
        self.mid1, self.mid2 = ResBlock(2 * ch, 2 * ch, emb), ResBlock(2 * ch, 2 * ch, emb)
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                nn.Conv2d(2 * ch, ch, 3, padding=1))      # 4×4 → 8×8
        self.up1 = ResBlock(2 * ch, ch, emb)                              # after the skip concat
        self.out = nn.Sequential(nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv2d(ch, 1, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y=None) -> torch.Tensor:
        e = self.cond(t, y)
        h1 = self.down1(self.inp(x), e)                                   # (N, ch, 8, 8)
        h = self.mid2(self.mid1(self.pool(h1), e), e)                     # (N, 2ch, 4, 4)
        h = self.up1(torch.cat([self.up(h), h1], dim=1), e)               # (N, ch, 8, 8)
        return self.out(h)


# ============================================================================ training
def train_diffusion(model, x0: torch.Tensor, schedule: Schedule, steps: int, y=None,
                    batch_size: int = 128, lr: float = 2e-3, p_uncond: float = 0.1, seed: int = 0,
                    ema_decay: float = 0.999, progress: bool = True, desc: str = "DDPM"):
    """Train an ε-model with ``diffusion_loss`` on x0: (M, ...) (labels y: (M,) or None, replaced
    by the null label with probability ``p_uncond``). Adam with cosine learning-rate decay.
    Returns (EMA copy of the model, list of losses)."""
    from genlib.gan import EMA
    from genlib.train import progress as bar

    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    ema = EMA(model, ema_decay)
    losses, m = [], len(x0)
    for _ in (bar(range(steps), desc=desc) if progress else range(steps)):
        idx = torch.randint(0, m, (batch_size,), generator=g)
        yb = None
        if y is not None:
            yb = y[idx].clone()
            yb[torch.rand(batch_size, generator=g) < p_uncond] = model.null_class
            yb = yb.to(device)
        loss = diffusion_loss(model, x0[idx].to(device), schedule, yb, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        ema.update(model)
        losses.append(loss.item())
    return ema.model, losses


# ============================================================================ shipped weights
PRETRAINED = {
    "digits_flow": "class-conditional flow matching (velocity) TinyUNet",
    "digits_ddpm": "class-conditional DDPM ε-model TinyUNet (cosine schedule, model.schedule)",
    "digits_reflow": "digits_flow after one reflow round (fine-tuned on its own noise→sample pairs)",
    "digits_dcgan": "chapter 03's DCGAN generator (EMA weights), z: (N, model.z_dim)",
    "digits_pd4": "digits_flow progressively distilled to 4 Euler steps (genlib.distill)",
    "digits_pd2": "digits_flow progressively distilled to 2 Euler steps (genlib.distill)",
    "digits_pd1": "digits_flow progressively distilled to 1 Euler step (genlib.distill)",
    "digits_cd": "digits_flow consistency-distilled (genlib.distill.sample_consistency; 1 step = Euler)",
    "digits_vae": "chapter 05's class-conditional MLPVAE on grey digits (genlib.speed.train_digits_vae, "
                  "2,000 steps, seed 0): decode z ~ N(0, I) with a label",
}


def weights_path(name: str) -> str:
    return os.path.join(WEIGHTS_DIR, f"{name}.pt")


def load_pretrained(name: str, device="cpu") -> nn.Module:
    """A shipped digits model in eval mode, float32, frozen: "digits_flow", "digits_ddpm" (has
    ``.schedule``), "digits_reflow", "digits_dcgan" (a DCGANGenerator with ``.z_dim``), the
    distilled students "digits_pd4/pd2/pd1" and "digits_cd", or "digits_vae" (an MLPVAE).
    Weights are stored in float16 in genlib/weights/<name>.pt; scripts/train_diffusion.py
    rebuilds them."""
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained model {name!r}; choose from {sorted(PRETRAINED)}")
    path = weights_path(name)
    if not os.path.exists(path):
        raise RuntimeError(f"{path} is missing; rebuild it with "
                           "`python scripts/train_diffusion.py` (about 20 minutes on 2 CPU cores)")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    cfg = dict(blob["config"])
    kind = cfg.pop("kind")
    if kind == "dcgan":
        from genlib.models import DCGANGenerator
        model = DCGANGenerator(**cfg)
    elif kind == "mlpvae":
        from genlib.vae import MLPVAE
        model = MLPVAE(**cfg)
    else:
        T, steps = cfg.pop("T", None), cfg.pop("steps", None)
        model = TinyUNet(**cfg)
        if T is not None:
            model.schedule = Schedule.cosine(T)
        if steps is not None:
            model.sample_steps = steps  # a progressive-distillation student's number of steps
    model.load_state_dict({k: v.float() for k, v in blob["state"].items()})
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval().to(device)


# ============================================================================ evaluation on digits
_REAL_FID: dict = {}


def real_vs_real_fid(n: int) -> float:
    """digits-FID of the first n train digits (n ≤ 1,500) against the 297 held-out test digits: a
    *reference level* for n samples, not a floor — it moves with which n real digits are drawn
    (0.21–0.26 at n = 1,000) and a sampler can score below it. For a reference with its spread,
    and for comparisons over seeds, use ``genlib.quality.digits_quality``."""
    if n not in _REAL_FID:
        from genlib.data import digits
        from genlib.metrics import digits_fid
        if n > 1500:
            raise ValueError("only 1,500 train digits exist for the real-vs-real reference")
        _REAL_FID[n] = digits_fid(digits("train")[0][:n], digits("test")[0])
    return _REAL_FID[n]


def digits_eval(samples: torch.Tensor, labels=None, diversity: bool = False) -> dict:
    """Score digit samples (N, 1, 8, 8) in [-1, 1] against the held-out TEST digits (297):

    * ``fid``: digits-FID (shipped CNN features) of the samples vs the test digits;
    * ``real_fid``: the same FID for the first N real train digits (``real_vs_real_fid``): a
      reference level, not a floor; compare models only at equal N, over several seeds
      (``genlib.quality`` does both);
    * ``accuracy`` (when ``labels`` (N,) are the requested classes): share classified as asked;
    * with ``diversity``: ``precision``, ``recall`` (k = 3) and ``coverage`` (k = 5) vs the test
      digits' features.
    """
    from genlib.data import digits
    from genlib.features import classify_digits, digits_features
    from genlib.metrics import density_coverage, fid_from_features, precision_recall

    x = samples.detach().float().cpu().clamp(-1, 1)
    real = digits("test")[0]
    fr, ff = digits_features(real).double(), digits_features(x).double()
    out = {"n": len(x), "fid": fid_from_features(ff, fr), "real_fid": real_vs_real_fid(len(x))}
    if labels is not None:
        pred, _ = classify_digits(x)
        out["accuracy"] = float((pred == labels.cpu()).float().mean())
    if diversity:
        out["precision"], out["recall"] = precision_recall(fr, ff, 3)
        out["coverage"] = density_coverage(fr, ff, 5)[1]
    return out
