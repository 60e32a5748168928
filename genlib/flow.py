"""Flow matching / rectified flow (Lipman et al. 2023; Liu et al. 2023) and reflow.

Conventions: flow time t ∈ [0, 1], x0 ~ N(0, I) is noise at t = 0, x1 is data at t = 1. The
conditional path is the straight line x_t = (1 − t)·x0 + t·x1 with constant velocity x1 − x0; a
network v(x_t, t, y) regresses that velocity, and sampling integrates dx/dt = v from t = 0 to 1.

=======================  =========================================================================
``interpolate``          x_t on the straight path
``velocity_target``      x1 − x0
``flow_matching_loss``   MSE of v(x_t, t, y) against x1 − x0, mean over every element
``euler_sample``         plain Euler integration of any v_fn(x, t)
``sample_euler``         Euler with a model, optional guidance: NFE = steps (2·steps when guided)
``sample_heun``          Heun (2nd order): NFE = 2·steps (4·steps when guided); EDM's variant
                        with a plain Euler last step (``last_euler``): 2·steps − 1
``straightness``         |x_1 − x_0| / path length of a trajectory, averaged over samples (1 = straight)
``path_length``          Σ_k |x_{k+1} − x_k| per sample
``reflow_pairs``         couple noise with the model's own samples (x0, model(x0)) for reflow
``train_flow``           train a model on fresh noise (independent coupling) or on fixed pairs
=======================  =========================================================================
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from genlib.diffusion import _bcast, model_output


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(1 − t)·x0 + t·x1.  x0 (noise), x1 (data): (N, ...); t: (N,) in [0, 1], broadcast."""
    tb = _bcast(t, x0)
    return (1 - tb) * x0 + tb * x1


def velocity_target(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """d/dt of the straight path: x1 − x0 (points from noise to data)."""
    return x1 - x0


def flow_matching_loss(v_model, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor,
                       y=None) -> torch.Tensor:
    """mean((v_model(x_t, t, y) − (x1 − x0))²) over every element, x_t = interpolate(x0, x1, t)."""
    return F.mse_loss(v_model(interpolate(x0, x1, t), t, y), velocity_target(x0, x1))


@torch.no_grad()
def euler_sample(v_fn, x0: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` uniform Euler steps from t = 0 to 1: x ← x + v_fn(x, t)/steps, t: (N,) float."""
    x, dt = x0, 1.0 / steps
    for k in range(steps):
        t = torch.full((len(x),), k * dt, device=x.device)
        x = x + dt * v_fn(x, t)
    return x


@torch.no_grad()
def sample_euler(v_model, x0: torch.Tensor, steps: int, y=None, guidance: float = 1.0,
                 progress: bool = False, return_traj: bool = False):
    """Euler sampling with a model ``v_model(x, t, y)``; NFE = steps (2·steps with guidance ≠ 1,
    one batched cond+uncond call per step). ``return_traj``: also the (steps+1, N, ...) path."""
    from genlib.train import progress as bar

    x, dt, traj = x0, 1.0 / steps, [x0]
    for k in (bar(range(steps), desc="Euler") if progress else range(steps)):
        t = torch.full((len(x),), k * dt, device=x.device)
        x = x + dt * model_output(v_model, x, t, y, guidance)
        if return_traj:
            traj.append(x)
    return (x, torch.stack(traj)) if return_traj else x


@torch.no_grad()
def sample_heun(v_model, x0: torch.Tensor, steps: int, y=None, guidance: float = 1.0,
                progress: bool = False, return_traj: bool = False, last_euler: bool = False):
    """Heun's method (explicit trapezoid): predict with Euler, correct with the mean of the two
    slopes. NFE = 2·steps (the end point t = 1 is evaluated too; 4·steps with guidance ≠ 1).

    ``last_euler=True`` is EDM's variant (Karras et al. 2022, Algorithm 1): the last step is a
    plain Euler step, so the network is never evaluated at the data end t = 1 (where a velocity
    field is often stiff) and NFE = 2·steps − 1."""
    from genlib.train import progress as bar

    x, dt, traj = x0, 1.0 / steps, [x0]
    for k in (bar(range(steps), desc="Heun") if progress else range(steps)):
        t = torch.full((len(x),), k * dt, device=x.device)
        v1 = model_output(v_model, x, t, y, guidance)
        if last_euler and k == steps - 1:
            x = x + dt * v1
        else:
            v2 = model_output(v_model, x + dt * v1, t + dt, y, guidance)
            x = x + dt * (v1 + v2) / 2
        if return_traj:
            traj.append(x)
    return (x, torch.stack(traj)) if return_traj else x


def path_length(traj: torch.Tensor) -> torch.Tensor:
    """traj: (K+1, N, ...) → (N,) Σ_k ‖x_{k+1} − x_k‖ (Euclidean over each sample's elements)."""
    return (traj[1:] - traj[:-1]).flatten(2).norm(dim=2).sum(0)


def straightness(traj: torch.Tensor) -> float:
    """traj: (K+1, N, ...) → mean over samples of ‖x_K − x_0‖ / path length, in (0, 1]; 1 means
    every trajectory is a straight line (Euler with one step would be exact)."""
    chord = (traj[-1] - traj[0]).flatten(1).norm(dim=1)
    return float((chord / path_length(traj).clamp(min=1e-12)).mean())


@torch.no_grad()
def reflow_pairs(v_model, n: int, shape, y=None, steps: int = 32, method: str = "heun",
                 generator: torch.Generator | None = None, batch: int = 1000):
    """Reflow couplings: noise x0 ~ N(0, I) and the model's own sample x1 = ODE(x0) (label y kept,
    no guidance). shape: per-sample shape, e.g. (1, 8, 8); y: None or (n,) labels.
    Returns (x0, x1), each (n, *shape)."""
    device = next(v_model.parameters()).device
    x0 = torch.randn((n, *shape), generator=generator).to(device)
    sampler = sample_heun if method == "heun" else sample_euler
    x1 = torch.cat([sampler(v_model, x0[i:i + batch], steps,
                            None if y is None else y[i:i + batch])
                    for i in range(0, n, batch)])
    return x0, x1


def train_flow(model, x1: torch.Tensor, steps: int, y=None, x0=None, batch_size: int = 128,
               lr: float = 2e-3, p_uncond: float = 0.1, seed: int = 0, ema_decay: float = 0.999,
               t_dist: str = "uniform", progress: bool = True, desc: str = "flow"):
    """Train ``model`` by flow matching on data x1: (M, ...) (labels y: (M,) or None).

    x0 None: fresh noise each step (independent coupling); x0 given (M, ...): fixed pairs (reflow).
    Labels are replaced by the null label with probability ``p_uncond`` (classifier-free guidance).
    Adam with a cosine learning-rate decay; returns (EMA copy of the model, list of losses).
    ``t_dist``: "uniform" or "logit_normal" (t = sigmoid(N(0, 1)), more weight mid-path).
    """
    from genlib.gan import EMA
    from genlib.train import progress as bar

    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    ema = EMA(model, ema_decay)
    losses, m = [], len(x1)
    for _ in (bar(range(steps), desc=desc) if progress else range(steps)):
        idx = torch.randint(0, m, (batch_size,), generator=g)
        b1 = x1[idx].to(device)
        b0 = (torch.randn(b1.shape, generator=g) if x0 is None else x0[idx]).to(device)
        t = (torch.rand(batch_size, generator=g) if t_dist == "uniform"
             else torch.sigmoid(torch.randn(batch_size, generator=g))).to(device)
        yb = None
        if y is not None:
            yb = y[idx].clone()
            yb[torch.rand(batch_size, generator=g) < p_uncond] = model.null_class
            yb = yb.to(device)
        loss = flow_matching_loss(model, b0, b1, t, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        ema.update(model)
        losses.append(loss.item())
    return ema.model, losses
