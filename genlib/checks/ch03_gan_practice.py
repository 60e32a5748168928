"""Checks for chapter 03 (GAN practice): the digits generators/discriminators and the training step.

Module checks instantiate the learner's class and test behaviour: shapes, output range, logits,
parameter counts, gradients. The training-step check runs the learner's step on tiny models with
instrumented optimisers, and compares the gradient each optimiser holds at the moment it steps
with the gradient it should hold — which tells a missing ``detach``, a missing ``zero_grad``, and
the wrong optimiser apart.
"""
import copy

import torch
from torch import nn

from genlib import gan, models
from genlib.exercises import CheckFailure, expect_tensor, register
from genlib.losses import d_loss, g_loss

# ============================================================================ modules


def _params(m):
    return sum(p.numel() for p in m.parameters())


def _build(cls, what, **kw):
    try:
        return cls(**kw)
    except TypeError as e:
        args = ", ".join(f"{k}={v}" for k, v in kw.items()) or "no arguments"
        raise CheckFailure(f"could not build your {what} with {args} ({e}); keep the signature "
                           "of the exercise")


def _scaled_copy(model, factor=10.0):
    """A copy with every parameter multiplied: a bounded (tanh/sigmoid) output stays bounded."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(factor)
    return m


def generator_check(name, ref, kind):
    spec = register(name, ref, f"{kind} generator: z (N, z_dim) → images (N, 1, 8, 8) in [-1, 1]")

    @spec.case("maps (N, z_dim) noise to (N, 1, 8, 8)")
    def _(cls):
        torch.manual_seed(0)
        G = _build(cls, "generator", z_dim=16)
        out = G(torch.randn(5, 16))
        expect_tensor(out, what="G(z) for z of shape (5, 16)")
        if tuple(out.shape) != (5, 1, 8, 8):
            raise CheckFailure(f"G(z) for z: (5, 16) has shape {tuple(out.shape)}, expected "
                               "(5, 1, 8, 8): one 8×8 single-channel image per noise vector "
                               "(use z_dim from the constructor, and .view(-1, 1, 8, 8))")

    @spec.case("tanh output in [-1, 1], like the data")
    def _(cls):
        torch.manual_seed(0)
        G = _build(cls, "generator", z_dim=16)
        out = G(torch.randn(64, 16)).detach()
        big = _scaled_copy(G)(torch.randn(64, 16)).detach()
        if out.min() >= 0 and big.min() >= 0:
            raise CheckFailure("your images never go below 0 (a sigmoid output?) but the data are "
                               "scaled to [-1, 1], so D separates real from fake by range alone "
                               "(the S0.4 bug): end the generator with tanh")
        if big.abs().max() > 1 + 1e-5:
            raise CheckFailure(f"your outputs are unbounded (values up to {big.abs().max():.3g} with "
                               "larger weights): a linear output cannot match data in [-1, 1] "
                               "(the S3.6 bug); end with tanh")
        if big.abs().max() < 0.9:
            raise CheckFailure("your outputs never come near ±1, so dark and bright pixels are "
                               "out of reach: end with tanh, not tanh of something bounded")

    @spec.case("different noise, different images")
    def _(cls):
        torch.manual_seed(0)
        G = _build(cls, "generator", z_dim=16).eval()
        with torch.no_grad():
            out = G(torch.randn(8, 16))
        if (out - out[:1]).abs().max() < 1e-6:
            raise CheckFailure("all noise vectors give the same image: the generator ignores z")

    @spec.case("a single sample in eval mode")
    def _(cls):
        G = _build(cls, "generator", z_dim=16).eval()
        with torch.no_grad():
            out = G(torch.randn(1, 16))
        expect_tensor(out, (1, 1, 8, 8), "G(z) for one noise vector in eval mode")

    @spec.case("parameter count fits 8×8 digits")
    def _(cls):
        n = _params(_build(cls, "generator"))
        if n < 2_000:
            raise CheckFailure(f"{n:,} parameters is too few to draw ten digit classes")
        if n > 1_000_000:
            raise CheckFailure(f"{n:,} parameters for 64-pixel images will not train on a CPU in "
                               "minutes; shrink the hidden sizes / channels")

    @spec.case("every parameter gets a gradient")
    def _(cls):
        torch.manual_seed(0)
        G = _build(cls, "generator", z_dim=16)
        G(torch.randn(8, 16)).pow(2).sum().backward()
        dead = [n for n, p in G.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        if dead:
            raise CheckFailure(f"no gradient reaches {', '.join(dead[:3])}: a layer is built but "
                               "not used in forward, or the graph is cut (.detach(), .data)")

    if kind == "DCGAN":
        @spec.case("builds the image with (transposed) convolutions")
        def _(cls):
            G = _build(cls, "generator")
            if not any(isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)) for m in G.modules()):
                raise CheckFailure("a DCGAN generator reshapes the projected noise into a small "
                                   "feature map and grows it with transposed convolutions (or "
                                   "upsample + conv); yours has no convolution")
    return spec


def discriminator_check(name, ref, kind):
    spec = register(name, ref, f"{kind} discriminator: x (N, 1, 8, 8) → logits (N,)")

    @spec.case("maps (N, 1, 8, 8) to logits of shape (N,)")
    def _(cls):
        torch.manual_seed(0)
        D = _build(cls, "discriminator")
        out = D(torch.rand(5, 1, 8, 8) * 2 - 1)
        expect_tensor(out, what="D(x)")
        if tuple(out.shape) == (5, 1):
            raise CheckFailure("D(x) has shape (5, 1): return (N,) with .view(-1); (N, 1) logits "
                               "against (N,) targets is the S0.4 shape bug")
        if tuple(out.shape) != (5,):
            raise CheckFailure(f"D(x) has shape {tuple(out.shape)}, expected (5,): one logit per image")

    @spec.case("returns logits, not probabilities")
    def _(cls):
        torch.manual_seed(0)
        D = _scaled_copy(_build(cls, "discriminator"), 5.0)
        out = D(torch.rand(64, 1, 8, 8) * 2 - 1).detach()
        if out.min() >= 0 and out.max() <= 1:
            raise CheckFailure("your outputs stay in [0, 1] even with large weights: D ends in a "
                               "sigmoid. Return raw logits and use a loss computed from logits "
                               "(probabilities fed to a logit loss is the S4.7 mismatch)")

    @spec.case("gradient reaches the input image")
    def _(cls):
        torch.manual_seed(0)
        D = _build(cls, "discriminator")
        x = (torch.rand(4, 1, 8, 8) * 2 - 1).requires_grad_(True)
        D(x).sum().backward()
        if x.grad is None or not x.grad.abs().sum() > 0:
            raise CheckFailure("no gradient flows from D's output back to its input, so the "
                               "generator cannot learn through D: avoid .detach(), .round(), argmax")

    @spec.case("parameter count fits 8×8 digits")
    def _(cls):
        n = _params(_build(cls, "discriminator"))
        if n < 500:
            raise CheckFailure(f"{n:,} parameters is too few to judge digits")
        if n > 1_000_000:
            raise CheckFailure(f"{n:,} parameters for 64-pixel images is far too many for a CPU run")

    if kind == "DCGAN":
        @spec.case("downsamples with strided convolutions")
        def _(cls):
            D = _build(cls, "discriminator")
            if not any(isinstance(m, nn.Conv2d) for m in D.modules()):
                raise CheckFailure("a DCGAN discriminator uses strided convolutions instead of "
                                   "pooling or a flat MLP; yours has no Conv2d")
    return spec


generator_check("gan.mlp_generator", models.MLPGenerator, "MLP")
discriminator_check("gan.mlp_discriminator", models.MLPDiscriminator, "MLP")
generator_check("gan.dcgan_generator", models.DCGANGenerator, "DCGAN")
discriminator_check("gan.dcgan_discriminator", models.DCGANDiscriminator, "DCGAN")


# ============================================================================ the training step
class _Recorder(nn.Module):
    """A linear layer that remembers whether it ran in train mode."""

    def __init__(self, d_in, d_out, act=None):
        super().__init__()
        self.lin, self.act, self.modes = nn.Linear(d_in, d_out), act, []

    def forward(self, x):
        self.modes.append(self.training)
        y = self.lin(x.flatten(1))
        return self.act(y) if self.act is not None else y.view(-1)


class _SpySGD(torch.optim.SGD):
    """SGD that records at each ``step``: its name, its grads, the grads it should hold, G's grads."""

    def __init__(self, params, label, log, expected, G):
        super().__init__(params, lr=0.1)
        self.label, self.log, self.expected, self.G = label, log, expected, G

    def step(self, closure=None):
        def snap(ps):
            return [None if p.grad is None else p.grad.detach().clone() for p in ps]
        own = snap(p for g in self.param_groups for p in g["params"])
        self.log.append((self.label, own, self.expected(self.label), snap(self.G.parameters())))
        return super().step(closure)


Z, X = 3, 5


def _expected_grads(G, D, real, z):
    """The gradients each optimiser should hold when it steps, from the models' current state."""
    def fn(label):
        g, d = copy.deepcopy(G), copy.deepcopy(D)
        fake = g(z)
        if label == "opt_d":
            loss, params = d_loss(d(real), d(fake.detach())), list(d.parameters())
        else:
            loss, params = g_loss(d(fake)), list(g.parameters())
        return list(torch.autograd.grad(loss, params))
    return fn


def _run_step(fn, calls=2, seed=0):
    """Run the learner's step ``calls`` times on tiny models in eval mode; return what happened."""
    torch.manual_seed(seed)
    G, D = _Recorder(Z, X, torch.tanh), _Recorder(X, 1)
    G.eval(), D.eval()  # the step must switch them to train mode itself
    gen = torch.Generator().manual_seed(seed + 1)
    log, outs, state = [], [], {}
    expected = lambda label: _expected_grads(G, D, state["real"], state["z"])(label)  # noqa: E731
    opt_g = _SpySGD(G.parameters(), "opt_g", log, expected, G)
    opt_d = _SpySGD(D.parameters(), "opt_d", log, expected, G)
    per_call = []
    for _ in range(calls):
        state["real"] = torch.rand(8, X, generator=gen) * 2 - 1
        state["z"] = torch.randn(8, Z, generator=gen)
        start = len(log)
        try:
            outs.append(fn(G, D, opt_g, opt_d, state["real"].clone(), state["z"].clone()))
        except RuntimeError as e:
            if "second time" in str(e):
                raise CheckFailure("the generator's backward failed because the D step's backward "
                                   "already went through G's graph and freed it: the fakes were "
                                   "not detached in the D step. Use D(fake.detach()) there "
                                   "(retain_graph=True would only hide the leak)") from None
            raise
        per_call.append(log[start:])
        G.eval(), D.eval()  # as the notebook does when it samples between steps
    return dict(G=G, D=D, outs=outs, per_call=per_call)


def _same(a, b, tol=1e-5):
    return a is not None and torch.allclose(a, b, rtol=1e-4, atol=tol)


def _all_zero(grads):
    return all(g is None or g.abs().max() == 0 for g in grads)


spec = register("gan.train_step", gan.train_step,
                "one D step on detached fakes, then one G step through D; returns the logged numbers")


@spec.case("returns d_loss, g_loss, d_real, d_fake")
def _(fn):
    out = _run_step(fn, calls=1)["outs"][0]
    if not isinstance(out, dict):
        raise CheckFailure(f"return a dict of floats, got {type(out).__name__}")
    missing = {"d_loss", "g_loss", "d_real", "d_fake"} - set(out)
    if missing:
        raise CheckFailure(f"the returned dict lacks {', '.join(sorted(missing))}")
    for k in ("d_real", "d_fake"):
        v = float(out[k])
        if not 0 <= v <= 1:
            raise CheckFailure(f"{k} = {v:.3g} is not a probability: average sigmoid(logits), "
                               "the D(x) a reader can interpret")


@spec.case("steps opt_d, then opt_g, once each")
def _(fn):
    for calls in _run_step(fn)["per_call"]:
        order = [rec[0] for rec in calls]
        if order == ["opt_d", "opt_g"]:
            continue
        if "opt_g" not in order:
            raise CheckFailure(f"the optimisers stepped as {order}: opt_g never stepped, so the "
                               "generator never learns. After the generator's backward call "
                               "opt_g.step() (you stepped the wrong optimiser)")
        if "opt_d" not in order:
            raise CheckFailure(f"the optimisers stepped as {order}: opt_d never stepped. After the "
                               "discriminator's backward call opt_d.step() (you stepped the wrong "
                               "optimiser)")
        raise CheckFailure(f"the optimisers stepped as {order}; expected ['opt_d', 'opt_g']: "
                           "update D on the detached fakes first, then G through the updated D")


@spec.case("D step: no gradient leaks into G")
def _(fn):
    calls = _run_step(fn, calls=1)["per_call"][0]
    if calls and calls[0][0] == "opt_d" and not _all_zero(calls[0][3]):
        raise CheckFailure("when opt_d stepped, G's parameters already held gradients: D's loss "
                           "flowed back into G because the fakes were not detached. Use "
                           "D(fake.detach()) in the discriminator step")


@spec.case("D step: gradient of d_loss on detached fakes, freshly zeroed")
def _(fn):
    for k, calls in enumerate(_run_step(fn)["per_call"]):
        for label, grads, want, _ in calls:
            if label != "opt_d":
                continue
            if _all_zero(grads):
                raise CheckFailure("D's gradients are zero when opt_d steps: zero_grad() belongs "
                                   "before loss.backward(), not between backward() and step()")
            if all(_same(g, w) for g, w in zip(grads, want)):
                continue
            if k == 1:
                raise CheckFailure("at the second step D's gradient also contains the previous G "
                                   "step's gradient (G's backward runs through D): call "
                                   "opt_d.zero_grad() before the discriminator's backward")
            raise CheckFailure("D's gradient at opt_d.step() is not that of "
                               "d_loss(D(real), D(G(z).detach())) — check the loss and its inputs")


@spec.case("G step: gradient of g_loss through D")
def _(fn):
    for k, calls in enumerate(_run_step(fn)["per_call"]):
        for label, grads, want, _ in calls:
            if label != "opt_g":
                continue
            if _all_zero(grads):
                raise CheckFailure("G's gradients are zero when opt_g steps: in the G step pass the "
                                   "fakes to D without .detach() (and zero_grad before backward, "
                                   "not after)")
            if all(_same(g, w) for g, w in zip(grads, want)):
                continue
            raise CheckFailure("G's gradient at opt_g.step() is not that of g_loss(D(G(z))): "
                               "most likely it still holds gradient from the D step (the fakes "
                               "were not detached there) or from the previous step — detach the "
                               "fakes for D and call opt_g.zero_grad() right before the G backward")


@spec.case("both models in train mode during the step")
def _(fn):
    run = _run_step(fn, calls=1)
    if not all(run["G"].modes) or not all(run["D"].modes):
        raise CheckFailure("a model ran in eval mode during training (the notebook samples in eval "
                           "mode between steps): call G.train() and D.train() at the start of "
                           "the step, or batch norm and dropout behave as at test time")
