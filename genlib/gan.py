"""GAN training and the theory behind it (chapters 02 and 03).

Theory on a grid (1-D densities): ``optimal_discriminator``, ``value_function``, ``jsd``,
``fit_discriminator_1d``; game dynamics: ``bilinear_game``.
Training: ``train_step`` (one D update then one G update — the chapter-03 exercise), ``EMA`` of
generator weights, ``train_gan`` (the loop with the practical toolkit's switches), ``sample``.
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import torch
from torch import nn

from genlib.losses import d_loss, g_loss
from genlib.train import History, batches, progress

# ============================================================================ theory on a grid


def gaussian_pdf(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Density of N(mean, std²) at ``x`` (any shape)."""
    return torch.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


def optimal_discriminator(p_data: torch.Tensor, p_g: torch.Tensor) -> torch.Tensor:
    """D*(x) = p_data(x) / (p_data(x) + p_g(x)), elementwise; ½ where both densities are 0.

    It maximises p_data·log D + p_g·log(1 − D) pointwise: a·log D + b·log(1 − D) peaks at a/(a+b).
    """
    total = p_data + p_g
    tiny = torch.finfo(total.dtype).tiny  # avoids 0/0 where total = 0 (masked by the where anyway)
    return torch.where(total > 0, p_data / total.clamp_min(tiny), torch.full_like(total, 0.5))


def value_function(d: torch.Tensor, p_data: torch.Tensor, p_g: torch.Tensor, dx: float) -> float:
    """V(D, G) = ∫ p_data log D + p_g log(1 − D) dx by a Riemann sum on an even grid (float64)."""
    d, p, q = (t.double() for t in (d, p_data, p_g))
    # xlogy gives 0·log 0 = 0; the clamp handles D rounding to exactly 0 or 1 where the other
    # density is tiny but not zero (its contribution is then negligible, not −inf).
    integrand = torch.xlogy(p, d.clamp_min(1e-300)) + torch.xlogy(q, (1 - d).clamp_min(1e-300))
    return float(integrand.sum() * dx)


def jsd(p: torch.Tensor, q: torch.Tensor, dx: float) -> float:
    """Jensen–Shannon divergence (nats) of two densities tabulated on an even grid."""
    p, q = p.double(), q.double()
    m = 0.5 * (p + q)
    kl_pm = (torch.xlogy(p, p) - torch.xlogy(p, m)).sum() * dx
    kl_qm = (torch.xlogy(q, q) - torch.xlogy(q, m)).sum() * dx
    return float(0.5 * kl_pm + 0.5 * kl_qm)


def fit_discriminator_1d(sample_data: Callable[[int], torch.Tensor],
                         sample_g: Callable[[int], torch.Tensor], steps: int = 1500,
                         batch_size: int = 512, hidden: int = 64, lr: float = 3e-3,
                         seed: int = 0) -> nn.Module:
    """Train a small D: (N, 1) → logits (N,) on fresh samples of two fixed 1-D distributions.

    With G frozen this is plain logistic regression of "real vs fake", so its sigmoid output
    should approach D* = p_data / (p_data + p_g) wherever there are samples to learn from.
    """
    torch.manual_seed(seed)
    D = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                      nn.Linear(hidden, 1), nn.Flatten(0))
    opt = torch.optim.Adam(D.parameters(), lr=lr)
    for _ in progress(range(steps), desc="fit D"):
        real, fake = sample_data(batch_size).view(-1, 1), sample_g(batch_size).view(-1, 1)
        loss = d_loss(D(real), D(fake))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return D.eval()


# ============================================================================ game dynamics


def bilinear_game(x0: float = 1.0, y0: float = 1.0, lr: float = 0.1, steps: int = 100,
                  alternating: bool = False, extragradient: bool = False) -> torch.Tensor:
    """Gradient play on min_x max_y f = x·y; returns the trajectory (steps + 1, 2).

    Simultaneous: both players step from the same point, (x, y) ← (x − lr·y, y + lr·x): the norm
    grows by √(1 + lr²) every step — an outward spiral, for any step size. Alternating: x steps
    first and y sees the new x (the G-then-D order; a D-then-G loop is the mirror image); the orbit
    stays bounded (the update matrix has determinant 1) and cycles. Neither converges to the
    equilibrium (0, 0); the running *average* of the alternating iterates does.
    ``extragradient``: each player first takes a look-ahead step, then steps from the original point
    with the gradient at the look-ahead point (Korpelevich 1976): the norm shrinks by
    √(1 − lr² + lr⁴) per step, so it converges. Gradients come from autograd, as in a GAN's loop.
    """
    x = torch.tensor(float(x0), dtype=torch.float64, requires_grad=True)
    y = torch.tensor(float(y0), dtype=torch.float64, requires_grad=True)
    path = [(x0, y0)]
    for _ in range(steps):
        if extragradient:
            gx, gy = torch.autograd.grad(x * y, (x, y))
            xh = (x - lr * gx).detach().requires_grad_(True)   # look-ahead point
            yh = (y + lr * gy).detach().requires_grad_(True)
            gxh, gyh = torch.autograd.grad(xh * yh, (xh, yh))
            with torch.no_grad():
                x -= lr * gxh
                y += lr * gyh
            path.append((x.item(), y.item()))
            continue
        gx, = torch.autograd.grad(x * y, x)               # ∂f/∂x = y, x descends
        if alternating:
            with torch.no_grad():
                x -= lr * gx
        gy, = torch.autograd.grad(x * y, y)               # ∂f/∂y = x (new x if alternating)
        with torch.no_grad():
            if not alternating:
                x -= lr * gx
            y += lr * gy                                  # y ascends
        path.append((x.item(), y.item()))
    return torch.tensor(path)


# ============================================================================ training


def train_step(G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer,
               opt_d: torch.optim.Optimizer, real: torch.Tensor, z: torch.Tensor,
               d_loss_fn=d_loss, g_loss_fn=g_loss) -> dict:
    """One discriminator update, then one generator update. Returns floats for logging.

    ``real: (N, ...)`` a data batch, ``z: (N, z_dim)`` noise. Keys: ``d_loss``, ``g_loss``,
    ``d_real`` = mean D(x), ``d_fake`` = mean D(G(z)) (probabilities, seen by the D step).
    """
    G.train()
    D.train()  # the notebook samples in eval mode between steps; batch norm must train here
    fake = G(z)

    # D step: detach the fakes, so D's loss cannot send gradients into G's weights.
    opt_d.zero_grad(set_to_none=True)
    real_logits, fake_logits = D(real), D(fake.detach())
    loss_d = d_loss_fn(real_logits, fake_logits)
    loss_d.backward()
    opt_d.step()

    # G step: through the (just updated) D. This backward also fills D's .grad, which is
    # harmless because the next D step zeroes it first; only opt_g steps here.
    opt_g.zero_grad(set_to_none=True)
    loss_g = g_loss_fn(D(fake))
    loss_g.backward()
    opt_g.step()

    return {"d_loss": loss_d.item(), "g_loss": loss_g.item(),
            "d_real": torch.sigmoid(real_logits).mean().item(),
            "d_fake": torch.sigmoid(fake_logits).mean().item()}


class EMA:
    """Exponential moving average of a model's weights: ``ema = EMA(G, 0.999)``; ``ema.update(G)``.

    ``ema.model`` is a frozen copy in eval mode whose parameters track
    θ_ema ← d·θ_ema + (1 − d)·θ, with d warmed up as d_t = min(decay, (1 + t)/(10 + t)) so a short
    run is not dominated by the random initial weights. The warm-up reaches ``decay`` only after
    t = (10·decay − 1)/(1 − decay) updates (8,991 for 0.999, 891 for 0.99); before that the
    effective averaging window is about 1/(1 − d_t) ≈ (10 + t)/9 updates (≈ 330 at t = 3,000).
    Floating-point buffers (batch-norm running mean and variance) are averaged the same way, so
    they describe the averaged weights' activations roughly rather than the raw model's; integer
    buffers (batch counters) are copied.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for pe, p in zip(self.model.parameters(), model.parameters()):
            pe.lerp_(p.detach(), 1 - d)
        for be, b in zip(self.model.buffers(), model.buffers()):
            if be.is_floating_point():
                be.lerp_(b, 1 - d)
            else:
                be.copy_(b)


def train_gan(G: nn.Module, D: nn.Module, data: torch.Tensor, steps: int, z_dim: int,
              batch_size: int = 64, lr_g: float = 2e-4, lr_d: float = 2e-4,
              betas: tuple = (0.5, 0.999), d_loss_fn=d_loss, g_loss_fn=g_loss,
              ema: EMA | None = None, step_fn=train_step, seed: int = 0,
              every: int = 0, callback: Callable[[int], None] | None = None,
              lr_decay: bool = False, desc: str = "GAN") -> History:
    """Train G and D with Adam for ``steps`` steps on minibatches of ``data`` (N, ...).

    Toolkit switches: ``betas`` (β1 = 0.5 is the DCGAN choice), ``lr_d`` ≠ ``lr_g`` (TTUR),
    ``d_loss_fn`` (e.g. label smoothing), ``ema`` (updated after every step), spectral norm lives
    in the model. ``lr_decay`` anneals both learning rates linearly to 0, so the last steps make
    ever smaller changes (it freezes the iterate wherever it is then; it does not by itself make
    the game converge — chapter 02 §6). ``callback(step)`` runs every ``every`` steps and after
    the last step.
    Returns a History with d_loss, g_loss, d_real, d_fake per step.
    """
    gen = torch.Generator().manual_seed(seed)
    device = next(G.parameters()).device
    opt_g = torch.optim.Adam(G.parameters(), lr=lr_g, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=lr_d, betas=betas)
    scheds = []
    if lr_decay:
        scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda i: 1 - i / steps) for o in (opt_g, opt_d)]
    hist = History()
    it = batches(data, batch_size, gen)
    for step in progress(range(1, steps + 1), desc=desc):
        real = next(it).to(device)
        z = torch.randn(len(real), z_dim, generator=gen).to(device)
        hist.log(**step_fn(G, D, opt_g, opt_d, real, z, d_loss_fn=d_loss_fn, g_loss_fn=g_loss_fn))
        for sched in scheds:
            sched.step()
        if ema is not None:
            ema.update(G)
        if callback is not None and every and (step % every == 0 or step == steps):
            callback(step)
    return hist


@torch.no_grad()
def sample(G: nn.Module, n: int, z_dim: int, seed: int = 0) -> torch.Tensor:
    """``n`` samples from G in eval mode with fixed noise (seeded); G's mode is restored."""
    was_training = G.training
    G.eval()
    device = next(G.parameters()).device
    z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    out = G(z)
    G.train(was_training)
    return out
