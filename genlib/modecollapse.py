"""Mode collapse, measured and fixed (chapter 04).

The measuring pieces follow the PacGAN / VEEGAN protocol on the 2-D mixtures:

* ``assign_modes``  – nearest mode of each sample and whether it is *high quality* (within 3 std).
* ``mode_counts``   – histogram of the high-quality samples over the modes.
* ``reverse_kl``    – KL(p_gen ‖ uniform) of that histogram, natural log (defined below).
* ``evaluate_modes`` – the three numbers of the tables: modes captured, high-quality fraction, rKL.

The remedies, each a few lines:

* ``pack``               – PacGAN: the discriminator judges m samples at once.
* ``gradient_penalty``   – WGAN-GP: (‖∇D(x̂)‖ − 1)² at random interpolates x̂ of real and fake.
* ``SNLinear``           – spectral normalisation: divide W by its largest singular value.
* ``MinibatchStd``       – append the batch's average feature std, so D can see "no variety".
* ``mode_seeking_loss``  – MSGAN: pay G for mapping different z to different x.

``GANConfig`` + ``train_2d`` train any combination on ``ring`` or ``grid``; ``train_2d_seeds`` trains
several seeds of one configuration as one seed-stacked model (the same runs up to float rounding,
1.4–2.3× the throughput per seed on one thread), and ``train_2d_parallel`` several configurations in
worker processes; ``genlib.bench`` runs them over seeds. Reverse KL as used everywhere here::

    p_k = (# high-quality samples whose nearest mode is k) / (# high-quality samples)
    rKL = Σ_{k : p_k > 0} p_k · ln(K · p_k)          (0 when p is uniform, ln K when one mode)

and rKL = inf when no sample is high quality.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from genlib import data as gdata
from genlib import losses

DATASETS = {  # name -> (centers (K, 2), std)
    "ring": (gdata.ring_centers(), 0.01),
    "grid": (gdata.grid_centers(), 0.05),
}


# ============================================================================ measuring
def assign_modes(samples: torch.Tensor, centers: torch.Tensor, std: float):
    """Nearest mode and quality of each sample.

    ``samples: (N, 2)``, ``centers: (K, 2)`` → ``(mode (N,) int64, high_quality (N,) bool)``;
    a sample is high quality when its Euclidean distance to the nearest centre is ≤ 3·std.
    """
    dist = torch.cdist(samples.float(), centers.float())  # (N, K)
    nearest, mode = dist.min(dim=1)
    return mode, nearest <= 3 * std


def mode_counts(mode: torch.Tensor, high_quality: torch.Tensor, n_modes: int) -> torch.Tensor:
    """(K,) int64: how many high-quality samples fall on each mode."""
    return torch.bincount(mode[high_quality], minlength=n_modes)


def reverse_kl(counts: torch.Tensor) -> float:
    """KL(p ‖ uniform) in nats of the histogram ``counts: (K,)``; empty modes add 0 (0·ln 0 = 0)."""
    counts = counts.double()
    total = counts.sum()
    if total == 0:
        return float("inf")
    p = counts / total
    p = p[p > 0]
    return float((p * torch.log(p * len(counts))).sum())


def evaluate_modes(samples: torch.Tensor, centers: torch.Tensor, std: float) -> dict:
    """``{"modes", "high_quality", "reverse_kl"}`` for ``samples: (N, 2)`` (the tables' numbers)."""
    mode, hq = assign_modes(samples, centers, std)
    counts = mode_counts(mode, hq, len(centers))
    return {"modes": int((counts > 0).sum()), "high_quality": float(hq.float().mean()),
            "reverse_kl": reverse_kl(counts)}


# ============================================================================ remedies
def pack(x: torch.Tensor, m: int) -> torch.Tensor:
    """PacGAN packing: ``(N, C, ...)`` → ``(N/m, m·C, ...)``, consecutive samples side by side.

    Row j of the result holds samples j·m … j·m+m−1 concatenated along the feature/channel axis,
    so a discriminator with m times wider input judges them jointly. N must be a multiple of m.
    """
    n = x.shape[0]
    if n % m:
        raise ValueError(f"batch of {n} cannot be packed in groups of {m}")
    return x.reshape(n // m, m * x.shape[1], *x.shape[2:])


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP penalty E[(‖∇ₓ D(x̂)‖₂ − 1)²] at x̂ = ε·real + (1−ε)·fake, ε ~ U(0,1) per sample.

    ``critic: (N, ...) → (N, 1)``; ``real, fake: (N, ...)`` (any trailing shape); the gradient
    norm is over everything but the batch axis. Scalar, differentiable w.r.t. the critic's parameters (multiply by λ=10 outside).
    """
    eps = torch.rand(real.shape[0], *[1] * (real.ndim - 1), device=real.device, dtype=real.dtype)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    # create_graph=True: the penalty itself must be differentiated w.r.t. D's weights
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    norms = grad.flatten(1).norm(dim=1)
    return ((norms - 1) ** 2).mean()


class SNLinear(nn.Linear):
    """Linear layer whose weight is divided by its spectral norm (Miyato et al. 2018).

    σ(W) is estimated by one step of power iteration per training forward pass, with the vector
    ``u`` kept between calls, so the estimate converges as training goes.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.register_buffer("u", F.normalize(torch.randn(out_features), dim=0))

    def sigma(self) -> torch.Tensor:
        w = self.weight
        if self.training:
            with torch.no_grad():  # assign a new tensor (not in place: u may be in a live graph)
                self.u = F.normalize(w @ F.normalize(w.t() @ self.u, dim=0), dim=0)
        v = F.normalize(w.t() @ self.u, dim=0).detach()
        return self.u @ w @ v  # ≈ largest singular value, differentiable in w

    def forward(self, x):
        return F.linear(x, self.weight / self.sigma(), self.bias)


class MinibatchStd(nn.Module):
    """``(N, F)`` → ``(N, F+1)``: append the std over the batch, averaged over features.

    A collapsed generator makes a batch of near-identical fakes; this one number lets the
    discriminator see that, which a per-sample discriminator cannot (Karras et al. 2018).
    """

    def forward(self, h):
        s = h.std(dim=0, correction=0).mean()
        return torch.cat([h, s.expand(h.shape[0], 1)], dim=1)


def mode_seeking_loss(z1, z2, x1, x2, eps: float = 1e-5) -> torch.Tensor:
    """MSGAN term (Mao et al. 2019), to *add* to G's loss: 1 / (mean over pairs of r + eps), where
    r = mean|x1−x2| / mean|z1−z2| for one pair (means over that pair's features).

    Small when two latents far apart give samples far apart, so G is paid to spread out.
    """
    ratio = (x1 - x2).abs().flatten(1).mean(1) / (z1 - z2).abs().flatten(1).mean(1)
    return 1.0 / (ratio.mean() + eps)


# ============================================================================ models and training
def mlp(d_in: int, d_out: int, hidden: int, depth: int, act=nn.ReLU, linear=nn.Linear,
        mbstd: bool = False) -> nn.Sequential:
    """``depth`` hidden layers of ``hidden`` units; optionally minibatch-std before the last layer."""
    layers, d = [], d_in
    for _ in range(depth):
        layers += [linear(d, hidden), act()]
        d = hidden
    if mbstd:
        layers.append(MinibatchStd())
        d += 1
    layers.append(linear(d, d_out))
    return nn.Sequential(*layers)


@dataclass
class GANConfig:
    """One 2-D GAN experiment. ``loss``: "gan" (non-saturating), "hinge" (SN-GAN's hinge loss) or
    "wgan-gp". ``d_gain`` multiplies D's output logit (a fixed gain after a Lipschitz critic)."""
    dataset: str = "ring"
    loss: str = "gan"
    pack: int = 1
    spectral_norm: bool = False
    mbstd: bool = False
    mode_seeking: float = 0.0
    steps: int = 15000
    batch: int = 256
    lr: float = 2e-4
    lr_decay: bool = False  # linear decay to 0: the last steps refine the modes' positions
    scale: float | None = None  # networks work in units of `scale` (None: the data's largest |coordinate|)
    betas: tuple = (0.5, 0.999)
    n_critic: int = 1
    ema: float = 0.0  # > 0: samples come from an exponential moving average of G's weights (gan.EMA)
    gp_weight: float = 10.0
    d_gain: float = 1.0
    z_dim: int = 2
    g_hidden: int = 256
    g_depth: int = 3
    d_hidden: int = 256
    d_depth: int = 3
    seed: int = 0
    n_eval: int = 2500

    def label(self) -> str:
        return describe(self)


def describe(cfg: GANConfig) -> str:
    parts = [{"wgan-gp": "WGAN-GP", "hinge": "hinge GAN"}.get(cfg.loss, "GAN")]
    if cfg.pack > 1:
        parts = [f"PacGAN{cfg.pack}"] if cfg.loss == "gan" else parts + [f"pack {cfg.pack}"]
    if cfg.spectral_norm:
        parts.append("SN")
    if cfg.mbstd:
        parts.append("mb-std")
    if cfg.mode_seeking:
        parts.append("mode-seeking")
    if cfg.d_gain != 1:
        parts.append(f"D gain {cfg.d_gain:g}")
    return " + ".join(parts)


class Scale(nn.Module):
    """Multiply by a fixed number: the unit conversion between data and network coordinates."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = float(factor)

    def forward(self, x):
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:g}"


def build_models(cfg: GANConfig):
    """Generator z (z_dim) → x (2) and discriminator on packs of ``cfg.pack`` points (2·pack).

    Both networks work in rescaled coordinates — G's last step is ×s, D's first step is ÷s, with
    s = ``data_scale(cfg)`` — the 2-D analogue of scaling images to [−1, 1]. Without it the grid
    (modes at ±4) trains poorly: in our runs the samples stayed spread over the whole square for
    thousands of steps (2–20 % high quality; 80–95 % with the scaling). One likely reason: default
    initialisation puts most of D's first-layer ReLU kinks near the origin, few near the outer modes.
    """
    g = mlp(cfg.z_dim, 2, cfg.g_hidden, cfg.g_depth)
    d = mlp(2 * cfg.pack, 1, cfg.d_hidden, cfg.d_depth, act=lambda: nn.LeakyReLU(0.2),
            linear=SNLinear if cfg.spectral_norm else nn.Linear, mbstd=cfg.mbstd)
    if cfg.d_gain != 1:
        d = nn.Sequential(*d, Scale(cfg.d_gain))
    scale = data_scale(cfg)
    if scale != 1:
        g, d = nn.Sequential(g, Scale(scale)), nn.Sequential(Scale(1 / scale), d)
    return g, d


def data_scale(cfg: GANConfig) -> float:
    """``cfg.scale``, or by default the largest |coordinate| of the dataset's modes (ring 1, grid 4)."""
    if cfg.scale is not None:
        return float(cfg.scale)
    return float(DATASETS[cfg.dataset][0].abs().max())


def sample_mixture(centers: torch.Tensor, std: float, n: int, gen: torch.Generator):
    """(n, 2) fresh samples from the equal-weight Gaussian mixture."""
    k = torch.randint(len(centers), (n,), generator=gen)
    return centers[k] + std * torch.randn(n, 2, generator=gen)


@torch.no_grad()
def generate(g: nn.Module, n: int, z_dim: int, seed: int = 12345) -> torch.Tensor:
    was_training = g.training
    g.eval()
    z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))
    x = g(z)
    g.train(was_training)
    return x


@dataclass
class RunResult:
    config: dict
    final: dict
    seconds: float
    snapshots: list = field(default_factory=list)  # (step, samples (n,2)) for plots
    curve: list = field(default_factory=list)      # (step, evaluate_modes dict)


# ============================================================================ many seeds at once
# For one seed, a training step of these small MLPs is mostly Python and dispatch overhead
# (measured, one thread, ring, 3×128, batch 256: 11 ms per step for one seed, 25 ms for five seeds
# stacked as below — 2.3× the throughput; 1.4× for the grid's minibatch std at batch 512). So we
# train the S seeds of one configuration as ONE model whose every tensor has a leading seed axis: a
# linear layer holds S weight matrices and applies them with one batched matmul (S, N, in) @ (S, in,
# out). Nothing mixes across that axis — the losses are summed over seeds (so seed s's gradient is
# exactly its own), and Adam is elementwise (so seed s's update is exactly its own) — hence seed s
# of a stacked run is the run with seed s alone, up to float rounding (tests/test_modecollapse.py
# checks this against a plain single-seed loop).

class SeedLinear(nn.Module):
    """S independent linear layers: ``(S, N, in)`` → ``(S, N, out)`` with one batched matmul.

    Built from S ``nn.Linear`` (or ``SNLinear``) layers, whose weights it copies: ``weight (S, out, in)``,
    ``bias (S, 1, out)``. With ``spectral_norm`` each seed's weight is divided by its own largest
    singular value, estimated as in ``SNLinear`` (one power-iteration step per training forward pass).
    """

    def __init__(self, layers, spectral_norm: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([l.weight.detach() for l in layers]).clone())
        self.bias = nn.Parameter(torch.stack([l.bias.detach() for l in layers]).unsqueeze(1).clone())
        self.spectral_norm = spectral_norm
        if spectral_norm:
            self.register_buffer("u", torch.stack([l.u for l in layers]).clone())  # (S, out)

    def sigma(self) -> torch.Tensor:
        """(S, 1, 1): each seed's σ(W), exactly ``SNLinear.sigma`` per seed."""
        w = self.weight
        if self.training:
            with torch.no_grad():
                v = F.normalize(torch.einsum("soi,so->si", w, self.u), dim=1)
                self.u = F.normalize(torch.einsum("soi,si->so", w, v), dim=1)
        v = F.normalize(torch.einsum("soi,so->si", w, self.u), dim=1).detach()
        return torch.einsum("so,soi,si->s", self.u, w, v).view(-1, 1, 1)

    def forward(self, x):
        w = self.weight / self.sigma() if self.spectral_norm else self.weight
        return torch.baddbmm(self.bias, x, w.transpose(1, 2))


class SeedMinibatchStd(nn.Module):
    """``MinibatchStd`` per seed: ``(S, N, F)`` → ``(S, N, F+1)``, the std taken over each seed's batch."""

    def forward(self, h):
        s = h.std(dim=1, correction=0).mean(dim=1)  # (S,)
        return torch.cat([h, s.view(-1, 1, 1).expand(h.shape[0], h.shape[1], 1)], dim=2)


def stack_seeds(models) -> nn.Module:
    """S models of identical architecture (as built by ``build_models``) → one seed-stacked model.

    Linear layers become ``SeedLinear``; minibatch std becomes ``SeedMinibatchStd``; elementwise
    modules (activations, ``Scale``) are shared, since they hold no weights.
    """
    first = models[0]
    if isinstance(first, nn.Sequential):
        return nn.Sequential(*[stack_seeds([m[i] for m in models]) for i in range(len(first))])
    if isinstance(first, nn.Linear):
        return SeedLinear(models, spectral_norm=isinstance(first, SNLinear))
    if isinstance(first, MinibatchStd):
        return SeedMinibatchStd()
    if isinstance(first, (nn.ReLU, nn.LeakyReLU, Scale)):
        return first
    raise TypeError(f"stack_seeds: no seed-stacked version of {type(first).__name__}")


def unstack_seed(stacked: nn.Module, single: nn.Module, i: int) -> nn.Module:
    """Copy seed ``i``'s weights from ``stacked`` into ``single`` (same architecture); returns it."""
    for s_mod, m in zip(stacked.modules(), single.modules()):
        if isinstance(s_mod, SeedLinear):
            with torch.no_grad():
                m.weight.copy_(s_mod.weight[i])
                m.bias.copy_(s_mod.bias[i, 0])
                if s_mod.spectral_norm:
                    m.u = s_mod.u[i].clone()
    return single


@torch.no_grad()
def generate_seeds(g: nn.Module, n: int, z_dim: int, n_seeds: int, seed: int = 12345) -> torch.Tensor:
    """``(S, n, 2)``: every seed's generator on the same ``n`` latents (those of ``generate``)."""
    was_training = g.training
    g.eval()
    z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))
    x = g(z.expand(n_seeds, n, z_dim).contiguous())
    g.train(was_training)
    return x


def _pack_seeds(x: torch.Tensor, m: int) -> torch.Tensor:
    """``(S, N, C)`` → ``(S, N/m, m·C)``: ``pack`` applied to each seed's batch."""
    s, n = x.shape[:2]
    return pack(x.reshape(s * n, *x.shape[2:]), m).reshape(s, n // m, -1)


def _d_step(cfg, g, d, opt_d, real, z):
    """One discriminator step for every seed; ``real: (S, B, 2)``, ``z: (S, B, z_dim)``."""
    n_seeds = real.shape[0]
    with torch.no_grad():  # D's step never backpropagates into G: no graph needed
        fake = g(z)
    real_l = d(_pack_seeds(real, cfg.pack)).squeeze(2)
    fake_l = d(_pack_seeds(fake, cfg.pack)).squeeze(2)
    # Σ over seeds of each seed's mean loss = S × the mean over all: every seed keeps its own gradient
    if cfg.loss == "wgan-gp":
        flat = real.shape[0] * real.shape[1]
        # (N, 1), as gradient_penalty's docstring promises the learner's version
        critic = lambda x: d(_pack_seeds(x.view(real.shape), cfg.pack)).reshape(-1, 1)  # noqa: E731
        loss = fake_l.mean() - real_l.mean() + cfg.gp_weight * gradient_penalty(
            critic, real.reshape(flat, -1), fake.reshape(flat, -1))
    elif cfg.loss == "hinge":
        loss = losses.hinge_d_loss(real_l.reshape(-1), fake_l.reshape(-1))
    else:
        loss = losses.d_loss(real_l.reshape(-1), fake_l.reshape(-1))
    opt_d.zero_grad(set_to_none=True)
    (n_seeds * loss).backward()
    opt_d.step()


def _g_step(cfg, g, d, opt_g, z):
    """One generator step for every seed; ``z: (S, B, z_dim)``."""
    n_seeds = z.shape[0]
    fake = g(z)
    d.requires_grad_(False)  # G's step needs gradients through D, not for D's weights
    logits = d(_pack_seeds(fake, cfg.pack)).reshape(-1)
    d.requires_grad_(True)
    loss = n_seeds * (-logits.mean() if cfg.loss in ("wgan-gp", "hinge") else losses.g_loss(logits))
    if cfg.mode_seeking:
        half = cfg.batch // 2  # pair sample i with sample i + half, within each seed
        loss = loss + cfg.mode_seeking * sum(
            mode_seeking_loss(zs[:half], zs[half:2 * half], xs[:half], xs[half:2 * half])
            for zs, xs in zip(z, fake))
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    opt_g.step()


def train_2d_seeds(cfg: GANConfig, seeds, eval_every: int = 0, snapshot_steps=(), progress: bool = False):
    """Train ``cfg`` once per seed in ``seeds``, all at once; returns ``(generators, [RunResult])``.

    Seed s gets the initial weights of ``torch.manual_seed(s)`` and its own data/noise stream
    ``Generator().manual_seed(s + 1000)`` — the same as ``train_2d(replace(cfg, seed=s))``.
    ``eval_every`` > 0 records ``evaluate_modes`` every that many steps (each result's ``curve``);
    ``snapshot_steps`` stores ``cfg.n_eval`` samples at those steps (for the over-time plots).
    ``generators`` is the seed-stacked generator; ``unstack_seed`` extracts one.
    """
    from genlib.train import progress as pbar

    seeds = list(seeds)
    if cfg.batch % cfg.pack:
        raise ValueError(f"batch {cfg.batch} is not a multiple of pack {cfg.pack}")
    singles = []
    for s in seeds:
        torch.manual_seed(s)  # initial weights, exactly as a single run
        singles.append(build_models(replace(cfg, seed=s)))
    g, d = stack_seeds([gs for gs, _ in singles]), stack_seeds([ds for _, ds in singles])
    gens = [torch.Generator().manual_seed(s + 1000) for s in seeds]  # data and noise, per seed
    centers, std = DATASETS[cfg.dataset]
    # fused Adam: one kernel for all parameters; elementwise, so each seed's slice is its own Adam
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=cfg.betas, fused=True)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=cfg.betas, fused=True)
    scheds = []
    if cfg.lr_decay:
        scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda t: 1 - t / cfg.steps) for o in (opt_g, opt_d)]
    ema = None
    if cfg.ema:
        from genlib.gan import EMA
        ema = EMA(g, cfg.ema)  # elementwise, so each seed's slice averages its own weights
    sampler = (lambda: ema.model) if ema else (lambda: g)
    results = [RunResult(config=asdict(replace(cfg, seed=s)), final={}, seconds=0.0) for s in seeds]
    snaps = set(snapshot_steps)
    desc = cfg.label() + (f" × {len(seeds)} seeds" if len(seeds) > 1 else "")
    t0 = time.perf_counter()
    steps = range(1, cfg.steps + 1)
    for step in (pbar(steps, desc=desc) if progress else steps):
        for _ in range(cfg.n_critic):
            real = torch.stack([sample_mixture(centers, std, cfg.batch, gen) for gen in gens])
            z = torch.stack([torch.randn(cfg.batch, cfg.z_dim, generator=gen) for gen in gens])
            _d_step(cfg, g, d, opt_d, real, z)
        _g_step(cfg, g, d, opt_g, torch.stack([torch.randn(cfg.batch, cfg.z_dim, generator=gen) for gen in gens]))
        if ema:
            ema.update(g)
        for sch in scheds:
            sch.step()
        if (eval_every and step % eval_every == 0) or step in snaps:
            xs = generate_seeds(sampler(), cfg.n_eval, cfg.z_dim, len(seeds))
            for res, x in zip(results, xs):
                if eval_every and step % eval_every == 0:
                    res.curve.append((step, evaluate_modes(x, centers, std)))
                if step in snaps:
                    res.snapshots.append((step, x))
    seconds = time.perf_counter() - t0
    for res, x in zip(results, generate_seeds(sampler(), cfg.n_eval, cfg.z_dim, len(seeds))):
        res.final = evaluate_modes(x, centers, std)
        res.seconds = seconds / len(seeds)  # each seed's share of the wall time
    return sampler(), results


def _train_job(job):
    cfg, seeds, kw, in_worker = job
    if in_worker:
        torch.set_num_threads(1)
    _, results = train_2d_seeds(cfg, seeds, **kw)
    return results


def train_2d_parallel(configs, seeds, processes: int = 2, **kw) -> list[list[RunResult]]:
    """``train_2d_seeds(cfg, seeds, **kw)`` for each config, ``processes`` configs at a time.

    Each config trains in its own worker process with one thread (measured on two cores: two
    one-thread processes do about 1.5× the work of one two-thread process for these networks). Returns the
    results only (one list per config); the workers import genlib afresh, so anything patched
    into ``genlib.modecollapse`` at run time is *not* seen by them.
    """
    if processes <= 1 or len(configs) == 1:
        return [_train_job((cfg, list(seeds), kw, False)) for cfg in configs]
    jobs = [(cfg, list(seeds), kw, True) for cfg in configs]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(processes, len(jobs)), mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(_train_job, jobs))


def train_2d(cfg: GANConfig, eval_every: int = 0, snapshot_steps=(), progress: bool = False):
    """Train one GAN on ``cfg.dataset`` with seed ``cfg.seed``; returns ``(generator, RunResult)``.

    ``train_2d_seeds`` with one seed; the generator comes back as a plain ``nn.Sequential``.
    """
    gs, (res,) = train_2d_seeds(cfg, [cfg.seed], eval_every, snapshot_steps, progress)
    torch.manual_seed(cfg.seed)
    g, _ = build_models(cfg)
    return unstack_seed(gs, g, 0), res


# ============================================================================ stacked digits (1,000 modes)
@dataclass
class StackedConfig:
    """DCGAN-style conv GAN on stacked digits (3, 8, 8); ``pack`` > 1 is PacDCGAN."""
    pack: int = 1
    steps: int = 3000
    batch: int = 128
    lr: float = 2e-4
    betas: tuple = (0.5, 0.999)
    z_dim: int = 32
    width: int = 64
    seed: int = 0
    n_eval: int = 26000

    def label(self) -> str:
        return f"PacDCGAN{self.pack}" if self.pack > 1 else "DCGAN"


class StackedG(nn.Module):
    """z (N, z_dim) → (N, 3, 8, 8) in [-1, 1]: linear to 2×2, two stride-2 transposed convs."""

    def __init__(self, z_dim: int = 32, width: int = 64):
        super().__init__()
        self.width = width
        self.fc = nn.Sequential(nn.Linear(z_dim, 2 * width * 4), nn.BatchNorm1d(2 * width * 4), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),  # 2→4
            nn.ConvTranspose2d(width, 3, 4, 2, 1), nn.Tanh())                                 # 4→8

    def forward(self, z):
        return self.net(self.fc(z).view(-1, 2 * self.width, 2, 2))


def stacked_discriminator(pack_m: int = 1, width: int = 64) -> nn.Sequential:
    """(N/m, 3m, 8, 8) packed images → (N/m, 1) logits: two stride-2 convs and a linear layer."""
    return nn.Sequential(
        nn.Conv2d(3 * pack_m, width, 4, 2, 1), nn.LeakyReLU(0.2),          # 8→4
        nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),           # 4→2
        nn.Flatten(), nn.Linear(2 * width * 4, 1))


def stacked_modes(images: torch.Tensor) -> dict:
    """Modes of stacked digits ``(N, 3, 8, 8)``: distinct label triples and KL(p ‖ uniform over 1,000)."""
    from genlib.features import stacked_labels

    y = stacked_labels(images)
    counts = torch.bincount(100 * y[:, 0] + 10 * y[:, 1] + y[:, 2], minlength=1000)
    return {"modes": int((counts > 0).sum()), "kl": reverse_kl(counts)}


def train_stacked(cfg: StackedConfig, progress: bool = False):
    """Train one (Pac)DCGAN on stacked digits; returns ``(generator, RunResult)``."""
    from genlib.train import progress as pbar

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1000)
    x_train, _ = gdata.stacked(60000, seed=cfg.seed)
    g, d = StackedG(cfg.z_dim, cfg.width), stacked_discriminator(cfg.pack, cfg.width)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=cfg.betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=cfg.betas)
    t0 = time.perf_counter()
    steps = range(cfg.steps)
    for _ in (pbar(steps, desc=cfg.label()) if progress else steps):
        real = x_train[torch.randint(len(x_train), (cfg.batch,), generator=gen)]
        fake = g(torch.randn(cfg.batch, cfg.z_dim, generator=gen))
        loss_d = losses.d_loss(d(pack(real, cfg.pack)).squeeze(1), d(pack(fake.detach(), cfg.pack)).squeeze(1))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = losses.g_loss(d(pack(fake, cfg.pack)).squeeze(1))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    seconds = time.perf_counter() - t0
    g.eval()
    with torch.no_grad():
        z = torch.randn(cfg.n_eval, cfg.z_dim, generator=torch.Generator().manual_seed(12345))
        final = stacked_modes(g(z))
    return g, RunResult(config=asdict(cfg), final=final, seconds=seconds)
