"""Probes for chapter 07's losses (``diffusion.loss``, ``flow.loss``): models they are trained on.

Both losses take a network, so the check's cases build a small instrumented model here from plain
arguments, call the learner's loss on it and return what happened: the loss value, whether it has
a gradient, what the model was given, the parameter's gradient after ``backward`` and the inputs
after the call (to see in-place changes).
"""
import torch
from torch import nn

from genlib.diffusion import Schedule


def _col(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


class EpsProbe(nn.Module):
    """An 'ε-model' that knows x0 and returns the noise a given forward process must have used.

    mode "ab": the correct process (√ᾱ_t, √(1 − ᾱ_t)); "ab+1" / "ab-1": ᾱ indexed off by one;
    "alpha": α_t used for ᾱ_t; "var": ᾱ and 1 − ᾱ as coefficients; "x0": returns x0.
    The output times ``scale`` (a parameter, 1) plus ``offset``: with the right process the loss is
    offset² exactly.
    """

    def __init__(self, x0, schedule, mode="ab", offset=0.0):
        super().__init__()
        self.x0, self.s, self.mode, self.offset = x0, schedule, mode, offset
        self.scale = nn.Parameter(torch.ones(()))
        self.seen = []

    def forward(self, x_t, t, y=None):
        self.seen.append((x_t.detach().clone(), t.detach().clone() if torch.is_tensor(t) else t))
        t = torch.as_tensor(t).long().reshape(-1).expand(x_t.shape[0])
        T = self.s.T
        if self.mode == "x0":
            out = self.x0
        else:
            if self.mode == "alpha":
                a = self.s.alphas[t]
            else:
                shift = {"ab": 0, "ab+1": 1, "ab-1": -1, "var": 0}[self.mode]
                a = self.s.alpha_bar[(t + shift).clamp(0, T - 1)]
            a = _col(a, x_t)
            if self.mode == "var":
                out = (x_t - a * self.x0) / (1 - a)
            else:
                out = (x_t - a.sqrt() * self.x0) / (1 - a).sqrt()
        return self.scale * out + self.offset


class VProbe(nn.Module):
    """A velocity model with a parameter, nonlinear in x and t, that records what it is given."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.7, -0.4, 0.9]))
        self.calls = []

    def forward(self, x, t, y=None):
        self.calls.append((x.detach().clone(), t.detach().clone() if torch.is_tensor(t) else t, y))
        tt = torch.as_tensor(t, dtype=x.dtype).reshape(-1)
        tt = _col(tt.expand(x.shape[0]) if tt.numel() == 1 else tt, x)
        out = self.w[0] * x + self.w[1] * tt + self.w[2] * torch.sin(3 * x) * tt
        if y is not None:
            out = out + 0.3 * _col(y.to(x.dtype) + 1, x)
        return out


def _plain(out):
    if torch.is_tensor(out):
        return {"out": out.detach(), "requires_grad": bool(out.requires_grad)}
    return {"out": out, "requires_grad": False}


def eps_loss(fn, x0, betas, mode="ab", offset=0.0, calls=1, backward=False, model_x0=None):
    """``calls`` calls of ``fn(model, x0, schedule)`` on one EpsProbe; the last call's loss, what
    the model saw over all calls, the scale's gradient (after ``backward``) and x0 afterwards."""
    schedule = Schedule(betas)
    model = EpsProbe(x0 if model_x0 is None else model_x0, schedule, mode, offset)
    for _ in range(calls):
        out = fn(model, x0, schedule)
    obs = _plain(out)
    if backward and obs["requires_grad"]:
        out.backward()
    obs.update(seen=list(model.seen), scale_grad=model.scale.grad, x0_after=x0)
    return obs


def flow_loss(fn, x0, x1, t, y=None, backward=False):
    """``fn(model, x0, x1, t[, y])`` on a VProbe: the loss, the model's calls, w's gradient (after
    ``backward``) and the inputs after the call."""
    model = VProbe()
    out = fn(model, x0, x1, t) if y is None else fn(model, x0, x1, t, y)
    obs = _plain(out)
    if backward and obs["requires_grad"]:
        out.backward()
    obs.update(calls=list(model.calls), w_grad=model.w.grad, inputs_after=[x0, x1, t])
    return obs
