"""Probes for chapter 09's exercises whose calls cannot cross to the grading worker as plain data.

* ``progressive`` — ``distill.progressive_target`` takes a network (the teacher): the probe builds
  the instrumented ``PTeacher`` here, calls the learner's function and returns its output, whether
  that output carries a gradient, whether a loss against it can be back-propagated, how many times
  the teacher was called, and x_t after the call.
* ``cache_write`` — ``speed.cache_write`` must write into its buffers in place and return views of
  them: both are facts about memory in the process where the learner's code runs. The probe
  returns the buffers after the call, copies of the returned tensors, and which buffer each one
  shares memory with, at which position.

The verdicts are computed in the grader (``genlib.checks.ch09_speed``).
"""
import numbers

import torch
import torch.nn.functional as F
from torch import nn

from genlib.exercises import CheckFailure


class PTeacher(nn.Module):
    """A velocity field that depends on x, t and the label, nonlinearly, with a trainable
    parameter (so a target computed with gradients shows); counts its calls."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.7, -1.3, 0.4]))
        self.calls = 0

    def forward(self, x, t, y=None):
        self.calls += 1
        if not torch.is_tensor(t) or t.shape != (len(x),):
            raise CheckFailure(f"the teacher was called with t of shape {tuple(getattr(t, 'shape', ()))}: "
                               f"pass a (N,) tensor of times, N = {len(x)} (t, then t + dt)")
        tb = t.view(-1, *([1] * (x.dim() - 1)))
        lab = torch.zeros(len(x), dtype=x.dtype, device=x.device) if y is None else 0.3 * (y.to(x.dtype) - 4.5)
        lab = lab.view(-1, *([1] * (x.dim() - 1)))
        return self.w[0] * torch.sin(3 * tb + 1) * x + self.w[1] * torch.cos(2 * x) * tb ** 2 + self.w[2] + lab


def progressive(fn, x, t, dt, y=None, backward=False):
    """``fn(PTeacher(), x, t, dt, y)``; with ``backward``, also an MSE loss of a trainable tensor
    against the result, back-propagated (the error message if that fails)."""
    teacher = PTeacher()
    out = fn(teacher, x, t, dt, y)
    obs = {"calls": teacher.calls, "x_after": x.detach().clone(), "type": type(out).__name__,
           "out": None, "requires_grad": False, "backward_error": None}
    if torch.is_tensor(out):
        obs["out"] = out.detach().clone()
        obs["requires_grad"] = bool(out.requires_grad)
        if backward and out.is_floating_point():
            student = torch.zeros(out.shape, dtype=out.dtype, requires_grad=True)
            try:
                F.mse_loss(student, out).backward()
            except RuntimeError as e:
                obs["backward_error"] = str(e).split(".")[0][:200]
    return obs


def _shares(a, b) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def cache_write(fn, k_buf, v_buf, length, k_new, v_new):
    """``fn(k_buf, v_buf, length, k_new, v_new)`` on these tensors: the buffers and the new keys and
    values after the call, copies of the three returned values, and for each returned tensor which
    buffer's memory it uses and from which position of that buffer it starts."""
    res = fn(k_buf, v_buf, length, k_new, v_new)
    obs = {"k_buf": k_buf.clone(), "v_buf": v_buf.clone(), "k_new": k_new.clone(), "v_new": v_new.clone(),
           "type": type(res).__name__, "items": None}
    if isinstance(res, (tuple, list)):
        items = []
        for r in res:
            if torch.is_tensor(r):
                item = {"tensor": r.detach().clone(), "shares_k": _shares(r, k_buf), "shares_v": _shares(r, v_buf)}
                buf = k_buf if item["shares_k"] else (v_buf if item["shares_v"] else None)
                item["start"] = None if buf is None else (r.storage_offset() - buf.storage_offset()) // buf.stride(2)
                items.append(item)
            elif isinstance(r, bool):
                items.append({"type": "bool"})
            elif isinstance(r, numbers.Integral):
                items.append({"value": int(r)})
            else:
                items.append({"type": type(r).__name__})
        obs["items"] = items
    return obs


def progressive_meta(fn, n=4, shape=(1, 8, 8), dt=0.125):
    """``fn`` on inputs that live on the ``meta`` device (shapes without data), as a stand-in for a
    GPU: whether it runs, and where its output lives. A tensor created on the CPU inside ``fn`` and
    combined with x_t or t raises here exactly as it would on a GPU."""
    x = torch.empty((n, *shape), device="meta")
    t = torch.empty(n, device="meta")
    y = torch.zeros(n, dtype=torch.long, device="meta")
    try:
        out = fn(PTeacher(), x, t, dt, y)
    except (RuntimeError, TypeError, ValueError) as e:
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}", "device": None, "shape": None}
    if not torch.is_tensor(out):
        return {"error": None, "device": None, "shape": None}
    return {"error": None, "device": str(out.device), "shape": list(out.shape)}
