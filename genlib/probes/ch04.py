"""Probes for chapter 04's ``modes.gradient_penalty``: critics the penalty is computed on.

The learner's penalty takes a critic (an ``nn.Module``), so the check's cases build the critic
here from a plain description and return what happened: the penalty's value, whether it carries a
gradient, the points the critic was evaluated at, the gradients after ``backward``.
"""
import torch


class Recorder(torch.nn.Module):
    """A critic that remembers the points it was evaluated at. f(x) = ½ Σ (a ⊙ x)² + w·x."""

    def __init__(self, shape, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.a = torch.nn.Parameter(torch.rand(*shape, generator=g) + 0.5)
        self.w = torch.nn.Parameter(torch.randn(*shape, generator=g))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return (0.5 * (self.a * x) ** 2 + self.w * x).flatten(1).sum(1, keepdim=True)


class Linear(torch.nn.Module):
    """f(x) = w·x: its gradient is w everywhere, so the penalty is exactly (‖w‖ − 1)²."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x):
        return (self.w * x).flatten(1).sum(1, keepdim=True)


def _critic(desc):
    """("recorder", shape, seed) or ("linear", w)."""
    if desc[0] == "recorder":
        return Recorder(tuple(desc[1]), seed=int(desc[2]))
    if desc[0] == "linear":
        return Linear(desc[1])
    raise ValueError(f"unknown critic {desc[0]!r}")


def _plain(out):
    """The learner's result as plain data: a tensor without its graph, or the value itself."""
    if torch.is_tensor(out):
        return {"out": out.detach(), "tensor": True, "requires_grad": bool(out.requires_grad)}
    return {"out": out, "tensor": False, "requires_grad": False, "type": type(out).__name__}


def penalty(fn, critic, real, fake, backward=False):
    """Call ``fn(critic, real, fake)``; with ``backward``, backpropagate the penalty when it has a
    gradient. Returns the value, the critic's evaluation points and the gradients."""
    c = _critic(critic)
    out = fn(c, real, fake)
    obs = _plain(out)
    if backward and obs["requires_grad"]:
        out.backward()
    obs["seen"] = list(getattr(c, "seen", []))
    obs["grads"] = {n: p.grad for n, p in c.named_parameters()}
    obs["fake_grad"] = fake.grad if torch.is_tensor(fake) else None
    return obs


def penalty_on_device(fn, w, n, device, dtype):
    """The penalty for ``n`` random 2-D points on ``device`` ("meta" stands for a GPU) in
    ``dtype``; a RuntimeError that names the device is returned as ``device_error``."""
    real = torch.randn(n, 2, device=device, dtype=dtype)
    fake = torch.randn(n, 2, device=device, dtype=dtype)
    critic = Linear(w.to(device=device, dtype=dtype))
    try:
        out = fn(critic, real, fake)
    except RuntimeError as e:
        if "device" in str(e):
            return {"device_error": str(e)}
        raise
    if not torch.is_tensor(out):
        return {"tensor": False, "type": type(out).__name__}
    return {"tensor": True, "device": out.device.type, "dtype": out.dtype,
            "where": f"{out.dtype} on {out.device}"}


def pack_strided(fn, x, m, layout):
    """``fn(x', m)`` with x' = x laid out non-contiguously in memory, built here because tensors
    reach the grading worker contiguous: ``layout`` "t" (x' = x.t().contiguous().t()) or
    "channels_last" (x' = x.contiguous(memory_format=torch.channels_last)). The result, and whether
    x' really was non-contiguous."""
    if layout == "t":
        xs = x.t().contiguous().t()
    elif layout == "channels_last":
        xs = x.contiguous(memory_format=torch.channels_last)
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return {"out": fn(xs, m), "contiguous": xs.is_contiguous()}
