"""Probes for chapter 11's spot-the-bug drills whose answer is a class or takes networks.

Each probe builds what the drill's check needs from plain arguments (seeded), runs the learner's
code and returns raw observations — outputs, parameters after a step, gradients, layer sizes; the
verdicts and the reference fixes run in the grader (``genlib.checks.ch11_interview``).
"""
import torch
import torch.nn as nn

from genlib.exercises import CheckFailure


def _plain(out):
    return out.detach() if torch.is_tensor(out) else out


def tiny_gan(seed=0):
    torch.manual_seed(seed)
    G = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))
    D = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1), nn.Flatten(0))
    real, z = torch.randn(32, 2) + 2, torch.randn(32, 2)
    return G, D, real, z


def params(m):
    return [p.detach().clone() for p in m.parameters()]


def junk_grads(*modules, value=5.0):
    """Fill every .grad with junk, as a training loop leaves them: G's backward fills D's .grad."""
    for m in modules:
        for p in m.parameters():
            p.grad = torch.full_like(p, value)


# ============================================================================ classes
def gaussian_head(cls, backward=False):
    """mu, logvar of ``cls(12, 5)`` on 256 random inputs; with ``backward``, the parameters'
    gradients of mu.sum() + logvar.sum()."""
    torch.manual_seed(0)
    head = cls(12, 5)
    mu, logvar = head(torch.randn(256, 12))
    grads = None
    if backward and torch.is_tensor(mu) and torch.is_tensor(logvar):
        (mu.sum() + logvar.sum()).backward()
        grads = [p.grad for p in head.parameters()]
    return _plain(mu), _plain(logvar), grads


def conv_encoder(cls, size, latent):
    """``cls(image_size=size, latent_dim=latent)`` on 3 random images: its output, or the message
    of the RuntimeError a mis-sized Linear raises."""
    enc = cls(image_size=size, latent_dim=latent)
    try:
        out = enc(torch.randn(3, 1, size, size))
    except RuntimeError as e:
        if "shapes cannot be multiplied" in str(e) or "size mismatch" in str(e):
            return {"size_error": str(e)}
        raise
    if isinstance(out, (tuple, list)):
        out = type(out)(_plain(t) for t in out)
    return {"out": _plain(out)}


def generator(cls, n, scale, seed=0, saturated_grads=False):
    """``cls(z_dim=16, out_dim=64)`` on ``n`` noise vectors times ``scale``; with
    ``saturated_grads``, the parameters' gradients of the sum of the outputs at exactly ±1 (None
    when there are none)."""
    torch.manual_seed(seed)
    G = cls(z_dim=16, out_dim=64)
    out = G(torch.randn(n, 16) * scale)
    grads = None
    if saturated_grads and torch.is_tensor(out):
        sat = out.detach().abs() >= 1.0
        if sat.any():
            grads = list(torch.autograd.grad(out[sat].sum(), list(G.parameters()), allow_unused=True))
    return _plain(out), grads


def decoder_linears(cls, latent_dim):
    """in_features of every nn.Linear of ``cls(latent_dim=latent_dim)``, in module order."""
    return [m.in_features for m in cls(latent_dim=latent_dim).modules() if isinstance(m, nn.Linear)]


def decoder_run(cls, latent_dim, n=3):
    """Run the decoder on (n, latent_dim) noise, recording the shape every Linear layer receives:
    (output or None, RuntimeError message or None, shapes)."""
    torch.manual_seed(0)
    dec = cls(latent_dim=latent_dim)
    seen = []
    hooks = [m.register_forward_pre_hook(lambda mod, inp: seen.append(list(inp[0].shape)))
             for m in dec.modules() if isinstance(m, nn.Linear)]
    try:
        out, err = dec(torch.randn(n, latent_dim)), None
    except RuntimeError as e:
        out, err = None, str(e)
    finally:
        for h in hooks:
            h.remove()
    return _plain(out), err, seen


# ============================================================================ steps on a tiny GAN
def d_step(fn, junk=False):
    """The learner's D step on the seeded tiny GAN: D's and G's parameters and G's .grad after."""
    G, D, real, z = tiny_gan()
    if junk:
        junk_grads(D)
    fn(G, D, torch.optim.SGD(D.parameters(), lr=0.1), real, z)
    return {"D": params(D), "G": params(G), "G_grads": [p.grad for p in G.parameters()]}


def train_steps(fn, junk=False, steps=1):
    """``steps`` calls of the learner's train step on the seeded tiny GAN: whether each returned a
    pair, and both models' parameters after."""
    G, D, real, z = tiny_gan()
    if junk:
        junk_grads(G, D)
    opts = (torch.optim.SGD(G.parameters(), lr=0.1), torch.optim.SGD(D.parameters(), lr=0.1))
    pairs = []
    for _ in range(steps):
        out = fn(G, D, *opts, real, z)
        pairs.append(isinstance(out, (tuple, list)) and len(out) == 2)
        if not pairs[-1]:
            break
    return {"pairs": pairs, "G": params(G), "D": params(D)}


def optimizers(fn):
    """What ``fn(G, D)`` returned for the tiny GAN: for each optimiser its type, whether it is an
    Adam, which parameters it holds (("G", i), ("D", i) or ("other", -1)), its lr and betas."""
    G, D, _, _ = tiny_gan()
    out = fn(G, D)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        return {"pair": False}
    names = {id(p): ["G", i] for i, p in enumerate(G.parameters())}
    names.update({id(p): ["D", i] for i, p in enumerate(D.parameters())})
    facts = []
    for opt in out:
        groups = getattr(opt, "param_groups", None)
        f = {"type": type(opt).__name__, "adam": isinstance(opt, torch.optim.Adam),
             "groups": groups is not None}
        if groups is not None:
            f["held"] = [names.get(id(p), ["other", -1]) for g in groups for p in g["params"]]
            f["lr"], f["betas"] = groups[0].get("lr"), list(groups[0].get("betas", (None, None)))
        facts.append(f)
    return {"pair": True, "opts": facts, "n": {"G": len(list(G.parameters())),
                                                "D": len(list(D.parameters()))}}


def generator_step(fn, junk=False):
    """The learner's G step on the seeded tiny GAN: the returned loss and both models' parameters."""
    G, D, _, z = tiny_gan()
    if junk:
        junk_grads(G)
    try:
        out = fn(G, D, torch.optim.SGD(G.parameters(), lr=0.1), z)
    except AttributeError as e:
        if "loss" in str(e):
            raise CheckFailure(f"{e}: a PyTorch model carries no loss (and the source's Keras model "
                               "had none either). Compute it from D's logits: loss = g_loss(D(G(z)))"
                               ) from None
        raise
    return {"out": _plain(out), "requires_grad": torch.is_tensor(out) and out.requires_grad,
            "G": params(G), "D": params(D)}
