"""Probes for chapter 03: the learner's generator / discriminator classes and training step.

The class exercises are probed by building the learner's class with fixed seeds and returning what
the check looks at — outputs, gradients, parameter shapes, the layers feature maps pass through.
The training step is run on tiny instrumented models with optimisers that record, at every
``step()``, the gradients they hold and the models' parameters, so that the judge can compute the
gradients they should hold (see ``genlib.checks.ch03_gan_practice``).
"""
import copy

import torch
from torch import nn

from genlib.exercises import CheckFailure


# ============================================================================ classes
def build(cls, what, **kw):
    try:
        return cls(**kw)
    except TypeError as e:
        args = ", ".join(f"{k}={v}" for k, v in kw.items()) or "no arguments"
        raise CheckFailure(f"could not build your {what} with {args} ({e}); keep the signature "
                           "of the exercise") from None


def scaled_copy(model, factor=10.0):
    """A copy with every parameter multiplied: a bounded (tanh/sigmoid) output stays bounded."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(factor)
    return m


def spatial_trace(model, run):
    """Run ``run()`` with hooks on every submodule; return [(module, in (H, W), out (H, W))] for
    modules whose input and output are both 4-D feature maps."""
    seen, hooks = [], []

    def hook(m, inp, out):
        if inp and torch.is_tensor(inp[0]) and inp[0].dim() == 4 and torch.is_tensor(out) and out.dim() == 4:
            seen.append((m, tuple(inp[0].shape[-2:]), tuple(out.shape[-2:])))
    for m in model.modules():
        if m is not model:
            hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in hooks:
            h.remove()
    return seen


def _kind(m):
    for name, t in (("ConvTranspose2d", nn.ConvTranspose2d), ("Conv2d", nn.Conv2d),
                    ("Upsample", nn.Upsample)):
        if isinstance(m, t):
            return name
    return type(m).__name__


def _plain(out):
    return out.detach() if torch.is_tensor(out) else out


def output(cls, what, kw, x_shape, seed=0, mode=None, grad=True, noise="randn"):
    """Build ``cls(**kw)`` (after ``torch.manual_seed(seed)`` unless seed is None), optionally in
    ``mode`` ("train"/"eval"), and return its output on a random input of ``x_shape``: ``randn``
    noise or ``rand2`` images in [-1, 1]."""
    if seed is not None:
        torch.manual_seed(seed)
    m = build(cls, what, **kw)
    if mode is not None:
        m = m.train() if mode == "train" else m.eval()
    x = torch.randn(*x_shape) if noise == "randn" else torch.rand(*x_shape) * 2 - 1
    with torch.set_grad_enabled(grad):
        return _plain(m(x))


def generator_range(cls):
    """Outputs of G and of a copy with 10× weights, 64 noise vectors each."""
    torch.manual_seed(0)
    G = build(cls, "generator", z_dim=16)
    out = G(torch.randn(64, 16)).detach()
    big = scaled_copy(G)(torch.randn(64, 16)).detach()
    return out, big


def parameter_shapes(cls, what):
    """The shapes of the parameters of ``cls()`` built with its default arguments."""
    return [list(p.shape) for p in build(cls, what).parameters()]


def generator_grads(cls):
    """(name, grad) of every parameter after backpropagating sum(G(z)²)."""
    torch.manual_seed(0)
    G = build(cls, "generator", z_dim=16)
    G(torch.randn(8, 16)).pow(2).sum().backward()
    return [(n, p.grad) for n, p in G.named_parameters()]


def generator_trace(cls):
    """(layer kind, in (H, W), out (H, W)) of every layer between 4-D feature maps in G(z)."""
    torch.manual_seed(0)
    G = build(cls, "generator", z_dim=16).eval()
    return [(_kind(m), list(i), list(o)) for m, i, o in spatial_trace(G, lambda: G(torch.randn(2, 16)))]


def discriminator_logits(cls):
    """D's outputs with 5× weights on 64 images, and the same after adding 10 to the bias of the
    last Linear/Conv2d layer (None when it has none)."""
    torch.manual_seed(0)
    D = scaled_copy(build(cls, "discriminator"), 5.0)
    x = torch.rand(64, 1, 8, 8) * 2 - 1
    out = D(x).detach().view(-1)
    last = [m for m in D.modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and m.bias is not None]
    shifted = None
    if last:
        with torch.no_grad():
            last[-1].bias.add_(10.0)
            shifted = D(x).detach().view(-1)
    return out, shifted


def discriminator_input_grad(cls):
    torch.manual_seed(0)
    D = build(cls, "discriminator")
    x = (torch.rand(4, 1, 8, 8) * 2 - 1).requires_grad_(True)
    D(x).sum().backward()
    return x.grad


def discriminator_trace(cls):
    """Conv2d layers as (in (H, W), out (H, W)), and the names of pooling layers."""
    D = build(cls, "discriminator").eval()
    seen = spatial_trace(D, lambda: D(torch.rand(2, 1, 8, 8) * 2 - 1))
    convs = [(list(i), list(o)) for m, i, o in seen if isinstance(m, nn.Conv2d)]
    pools = [type(m).__name__ for m in D.modules()
             if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))]
    return convs, pools


def discriminator_batch_coupling(cls):
    """Image 0's logit in train mode for two batches that differ in the other 7 images, and the
    names of batch-norm layers."""
    torch.manual_seed(0)
    D = build(cls, "discriminator").train()
    x = torch.rand(8, 1, 8, 8) * 2 - 1
    y = x.clone()
    y[1:] = torch.rand(7, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        a, b = D(x).view(-1)[0], D(y).view(-1)[0]
    bn = [type(m).__name__ for m in D.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    return a, b, bn


# ============================================================================ the training step
class Recorder(nn.Module):
    """A linear layer that remembers whether it ran in train mode."""

    def __init__(self, d_in, d_out, act=None):
        super().__init__()
        self.lin, self.act, self.modes, self.inputs = nn.Linear(d_in, d_out), act, [], []

    def forward(self, x):
        self.modes.append(self.training)
        self.inputs.append(x.detach().clone())
        y = self.lin(x.flatten(1))
        return self.act(y) if self.act is not None else y.view(-1)


Z, X = 3, 5


def tiny_models(seed):
    """The step's G (Z → X, tanh) and D (X → logit), seeded."""
    torch.manual_seed(seed)
    G, D = Recorder(Z, X, torch.tanh), Recorder(X, 1)
    with torch.no_grad():  # logits of a few units, so sigmoid(mean) and mean(sigmoid) differ clearly
        D.lin.weight.mul_(4.0)
    return G, D


def _state(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _grads(ps):
    return [None if p.grad is None else p.grad.detach().clone() for p in ps]


class SpySGD(torch.optim.SGD):
    """SGD that records at each ``step``: its name, its grads, G's grads, both models' parameters
    and the last input G saw — everything needed to tell which gradient it should hold."""

    def __init__(self, params, label, log, G, D):
        super().__init__(params, lr=0.1)
        self.label, self.log, self.G, self.D = label, log, G, D

    def step(self, closure=None):
        own = _grads(p for g in self.param_groups for p in g["params"])
        self.log.append({"label": self.label, "own": own, "g_grads": _grads(self.G.parameters()),
                         "G": _state(self.G), "D": _state(self.D),
                         "g_input": self.G.inputs[-1] if self.G.inputs else None})
        return super().step(closure)


def train_step_run(fn, calls=2, seed=0):
    """Run the learner's step ``calls`` times on tiny models in eval mode; return what happened:
    at each call's start the models, optimiser states and batch; the learner's returned values;
    every optimiser step's record; the train/eval mode of every forward pass."""
    G, D = tiny_models(seed)
    G.eval(), D.eval()  # the step must switch them to train mode itself
    gen = torch.Generator().manual_seed(seed + 1)
    log, outs, starts, per_call = [], [], [], []
    opt_g = SpySGD(G.parameters(), "opt_g", log, G, D)
    opt_d = SpySGD(D.parameters(), "opt_d", log, G, D)
    for k in range(calls):
        # unequal sizes on the second call: 8 real images, 6 noise vectors
        real = torch.rand(8, X, generator=gen) * 2 - 1
        z = torch.randn(8 if k == 0 else 6, Z, generator=gen)
        starts.append({"G": _state(G), "D": _state(D), "opt_g": opt_g.state_dict(),
                       "opt_d": opt_d.state_dict(), "real": real, "z": z})
        G.inputs.clear()
        start = len(log)
        try:
            outs.append(fn(G, D, opt_g, opt_d, real.clone(), z.clone()))
        except RuntimeError as e:
            if "second time" in str(e):
                raise CheckFailure("the generator's backward failed because the D step's backward "
                                   "already went through G's graph and freed it: the fakes were "
                                   "not detached in the D step. Use D(fake.detach()) there "
                                   "(retain_graph=True would only hide the leak)") from None
            raise
        per_call.append(log[start:])
        G.eval(), D.eval()  # as the notebook does when it samples between steps
    return {"outs": [_plain_out(o) for o in outs], "per_call": per_call, "starts": starts,
            "modes": {"G": list(G.modes), "D": list(D.modes)}}


def _plain_out(out):
    if isinstance(out, dict):
        return {k: (v.detach() if torch.is_tensor(v) else v) for k, v in out.items()}
    return out
