"""One or two sampling steps from a many-step flow: distillation (chapter 09, section 2b).

Conventions as in ``genlib.flow``: t ∈ [0, 1], noise x0 at t = 0, data x1 at t = 1, a network
v(x, t, y) is a velocity, and one Euler step of size dt is x ← x + dt·v(x, t, y).

Two ways to turn the shipped digits flow (the *teacher*, 32 Euler steps) into a *student* that
samples in one or two network calls, both starting from the teacher's weights:

* **Progressive distillation** (Salimans & Ho 2022), written for a velocity model: the student
  learns to take ONE step of size 2·dt where the teacher takes TWO steps of size dt. The
  student's regression target at (x_t, t) is the velocity that lands where the two teacher steps
  land, ``progressive_target``. Each stage halves the number of steps (32 → 16 → … → 1), and the
  student of one stage is the teacher of the next.
* **Consistency distillation** (Song et al. 2023): a function f(x_t, t) that maps every point of
  one teacher trajectory to the same end point. Parameterised from a velocity network as
  f(x, t) = x + (1 − t)·v(x, t, y) (so f(x, 1) = x holds by construction), it is trained so that
  f at (x_t, t) matches f at the next point the teacher's ODE step reaches, (x̂, t + Δ), with the
  target's weights held fixed (stop-gradient; Song & Dhariwal 2023 found no EMA target needed).
  One-step sampling is f(x0, 0) = x0 + v(x0, 0): a single Euler step. ``sample_consistency``
  with k steps re-noises the estimate to t = j/k and applies f again (Song et al. 2023, Alg. 1).

Both are compared in chapter 09 with the teacher and with reflow (Liu et al. 2023) at 1, 2, 4 and
32 network evaluations; ``scripts/train_diffusion.py --only pd cd`` trains the shipped students.

========================  =======================================================================
``progressive_target``    velocity that reproduces two teacher Euler steps in one (no gradient)
``consistency_fn``        f(x, t) = x + (1 − t)·v(x, t, y)
``consistency_target``    f_θ⁻ at the point one teacher Heun step further on (no gradient)
``train_progressive``     progressive distillation, stage by stage; returns the stage students
``train_consistency``     consistency distillation on a grid of N teacher steps
``sample_consistency``    multistep consistency sampling (1 step = one Euler step)
========================  =======================================================================
"""
from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F

from genlib.diffusion import _bcast, device_generator


def _check_args(x_t: torch.Tensor, t: torch.Tensor, dt: float):
    if not torch.is_tensor(x_t) or not torch.is_tensor(t):
        raise TypeError("x_t and t must be tensors")
    if t.dim() != 1 or len(t) != len(x_t):
        raise ValueError(f"t must be (N,) with N = len(x_t) = {len(x_t)}, got shape {tuple(t.shape)}")
    if not dt > 0:
        raise ValueError(f"dt must be > 0, got {dt}")


@torch.no_grad()
def progressive_target(teacher, x_t: torch.Tensor, t: torch.Tensor, dt: float, y=None) -> torch.Tensor:
    """The student's velocity target for one step of size 2·dt from (x_t, t):

        x_mid = x_t + dt·v_T(x_t, t, y),   x_end = x_mid + dt·v_T(x_mid, t + dt, y),
        target = (x_end − x_t) / (2·dt)

    so that one student Euler step, x_t + 2·dt·target, lands exactly where the teacher's two steps
    land. x_t: (N, ...), t: (N,), dt: float > 0. Returns a new (N, ...) tensor; x_t is unchanged
    and no gradient flows into the teacher."""
    _check_args(x_t, t, dt)
    x_mid = x_t + dt * teacher(x_t, t, y)
    x_end = x_mid + dt * teacher(x_mid, t + dt, y)
    return (x_end - x_t) / (2 * dt)


def consistency_fn(model, x: torch.Tensor, t: torch.Tensor, y=None) -> torch.Tensor:
    """f(x, t) = x + (1 − t)·v(x, t, y): the data end point predicted from (x, t); f(x, 1) = x."""
    return x + _bcast(1 - t, x) * model(x, t, y)


@torch.no_grad()
def consistency_target(student, teacher, x_t: torch.Tensor, t: torch.Tensor, dt: float, y=None):
    """One teacher Heun step from (x_t, t) to t + dt, then f of the (frozen) student there."""
    _check_args(x_t, t, dt)
    v1 = teacher(x_t, t, y)
    x_e = x_t + dt * v1
    x_next = x_t + dt * (v1 + teacher(x_e, t + dt, y)) / 2
    return consistency_fn(student, x_next, t + dt, y)


def _data_batch(x1, y, batch, g, device):
    idx = torch.randint(0, len(x1), (batch,), generator=g)
    b1 = x1[idx].to(device)
    b0 = torch.randn(b1.shape, generator=g).to(device)
    return b0, b1, (None if y is None else y[idx].to(device))


def _trainable(model):
    student = copy.deepcopy(model).train()
    for p in student.parameters():
        p.requires_grad_(True)
    return student


def _frozen(model):
    m = copy.deepcopy(model).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def _update(opt, sched, ema, student, loss, losses: list) -> None:
    """One optimiser step on ``loss``, the learning-rate schedule, the EMA, and the loss recorded."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    ema.update(student)
    losses.append(loss.item())


def train_progressive(teacher, x1: torch.Tensor, y=None, start_steps: int = 32, end_steps: int = 1,
                      steps_per_stage: int = 600, batch_size: int = 128, lr: float = 5e-4,
                      ema_decay: float = 0.995, seed: int = 0, progress: bool = True,
                      target_fn=progressive_target) -> dict:
    """Progressive distillation from ``teacher`` (sampled with ``start_steps`` Euler steps) down to
    ``end_steps``. Stage with k student steps: x_t on the straight path between fresh noise and a
    training digit at a grid time t = j/k (j uniform in 0…k−1), the target ``target_fn(teacher,
    x_t, t, 1/(2k), y)``, MSE, Adam with cosine decay from ``lr``; the stage's student (an EMA of
    its weights) starts from the teacher and becomes the next stage's teacher.

    Returns {"students": {k: model}, "seconds": {k: training seconds}, "losses": {k: [...]}}."""
    from genlib.gan import EMA
    from genlib.train import progress as bar

    if start_steps < 2 or end_steps < 1 or start_steps & (start_steps - 1) or end_steps & (end_steps - 1):
        raise ValueError("start_steps and end_steps must be powers of two, start_steps ≥ 2")
    if end_steps >= start_steps:
        raise ValueError("end_steps must be smaller than start_steps")
    g = torch.Generator().manual_seed(seed)
    device = next(teacher.parameters()).device
    out = {"students": {}, "seconds": {}, "losses": {}}
    current, k = _frozen(teacher), start_steps // 2
    while k >= end_steps:
        t0 = time.process_time()
        student = _trainable(current)
        opt = torch.optim.Adam(student.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps_per_stage)
        ema, losses = EMA(student, ema_decay), []
        for _ in (bar(range(steps_per_stage), desc=f"PD → {k} step{'s' * (k > 1)}") if progress
                  else range(steps_per_stage)):
            b0, b1, yb = _data_batch(x1, y, batch_size, g, device)
            t = (torch.randint(0, k, (batch_size,), generator=g).float() / k).to(device)
            x_t = b0 + _bcast(t, b0) * (b1 - b0)
            target = target_fn(current, x_t, t, 1.0 / (2 * k), yb)
            loss = F.mse_loss(student(x_t, t, yb), target)
            _update(opt, sched, ema, student, loss, losses)
        current = _frozen(ema.model)
        out["students"][k], out["losses"][k] = current, losses
        out["seconds"][k] = time.process_time() - t0
        k //= 2
    return out


def train_consistency(teacher, x1: torch.Tensor, y=None, grid: int = 16, steps: int = 3000,
                      batch_size: int = 128, lr: float = 2e-4, ema_decay: float = 0.999, seed: int = 0,
                      progress: bool = True) -> dict:
    """Consistency distillation: the student (initialised from the teacher) regresses
    f_θ(x_t, t) onto ``consistency_target`` computed with a stop-gradient copy of θ, at t = j/grid
    (j uniform in 0…grid−1) on the straight path between fresh noise and a training digit; MSE,
    Adam with cosine decay. Returns {"model": EMA student, "seconds": ..., "losses": [...]}."""
    from genlib.gan import EMA
    from genlib.train import progress as bar

    if grid < 1 or steps < 1:
        raise ValueError("grid and steps must be ≥ 1")
    g = torch.Generator().manual_seed(seed)
    device = next(teacher.parameters()).device
    teacher = _frozen(teacher)
    student = _trainable(teacher)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    ema, losses, t0 = EMA(student, ema_decay), [], time.process_time()
    for _ in (bar(range(steps), desc="consistency distillation") if progress else range(steps)):
        b0, b1, yb = _data_batch(x1, y, batch_size, g, device)
        t = (torch.randint(0, grid, (batch_size,), generator=g).float() / grid).to(device)
        x_t = b0 + _bcast(t, b0) * (b1 - b0)
        student.eval()  # the stop-gradient target: the same weights, no dropout/batch-norm updates
        target = consistency_target(student, teacher, x_t, t, 1.0 / grid, yb)
        student.train()
        loss = F.mse_loss(consistency_fn(student, x_t, t, yb), target)
        _update(opt, sched, ema, student, loss, losses)
    return {"model": _frozen(ema.model), "seconds": time.process_time() - t0, "losses": losses}


@torch.no_grad()
def sample_consistency(model, x0: torch.Tensor, steps: int = 1, y=None, generator=None) -> torch.Tensor:
    """Multistep consistency sampling: x̂ = f(x0, 0); for j = 1 … steps−1, re-noise to t = j/steps
    (x = (1 − t)·z + t·x̂ with fresh z ~ N(0, I) from ``generator``) and set x̂ = f(x, t).
    NFE = steps; one step is exactly one Euler step of the velocity network."""
    if steps < 1:
        raise ValueError("steps must be ≥ 1")
    n = len(x0)
    g = device_generator(generator, x0.device)   # noise drawn on x0's device: no host copy per step
    x_hat = consistency_fn(model, x0, torch.zeros(n, device=x0.device), y)
    for j in range(1, steps):
        t = torch.full((n,), j / steps, device=x0.device)
        z = torch.randn(x0.shape, generator=g, device=x0.device, dtype=x0.dtype)
        x_hat = consistency_fn(model, z + _bcast(t, z) * (x_hat - z), t, y)
    return x_hat


__all__ = ["progressive_target", "consistency_fn", "consistency_target", "train_progressive",
           "train_consistency", "sample_consistency"]


# ============================================================================ what the shipped models cost to train
# scripts/train_diffusion.py's recipes (tests/test_distill.py checks these numbers against its constants).
# One "evaluation" is a forward pass of a batch of 128 through the 0.29 M-parameter TinyUNet; a training
# update costs about three (forward + backward ≈ 2 forwards); reflow's pairs are Heun-16 samples (32
# evaluations each) of 12,000 noise images in batches of 128.
PD_RECIPE = {"start_steps": 32, "steps_per_stage": 400, "lr": 5e-4}
CD_RECIPE = {"grid": 16, "steps": 2000, "lr": 2e-4}
_PD_STAGES = PD_RECIPE["start_steps"].bit_length() - 1          # 32 → 1: five halvings
TRAINING_COST = {
    "flow (the teacher)": {"evaluations": 5000 * 3, "note": "5,000 updates from scratch"},
    "reflow (from the teacher)": {"evaluations": 12000 * 32 // 128 + 3000 * 3,
                                  "note": "12,000 teacher samples at 32 evaluations + 3,000 updates, on top of the teacher"},
    "progressive distillation": {"evaluations": _PD_STAGES * PD_RECIPE["steps_per_stage"] * (2 + 3),
                                 "note": f"{_PD_STAGES} stages × {PD_RECIPE['steps_per_stage']} updates, "
                                         "2 teacher calls + 1 update each, on top of the teacher"},
    "consistency distillation": {"evaluations": CD_RECIPE["steps"] * (2 + 1 + 3),
                                 "note": f"{CD_RECIPE['steps']:,} updates, a Heun teacher step (2 calls) + "
                                         "the stop-gradient target (1) + 1 update each, on top of the teacher"},
}
