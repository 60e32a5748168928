"""Gallery for chapter 04's checks: the references pass, each classic slip is named."""
import math

import pytest
import torch

from genlib.modecollapse import assign_modes, gradient_penalty, pack, reverse_kl
from genlib.exercises import assert_first_failure

@pytest.fixture
def rejects():
    """Gallery assertion: the named case is the FIRST message the learner reads (one diagnosis per
    mistake), and it contains the fragment."""
    return assert_first_failure


def test_references_accepted(accepts):
    accepts("modes.assign_modes", assign_modes)
    accepts("modes.reverse_kl", reverse_kl)
    accepts("modes.pack", pack)
    accepts("modes.gradient_penalty", gradient_penalty)


def test_other_correct_forms_accepted(accepts):
    def assign_loop(x, c, std):
        d = ((x[:, None, :] - c[None]) ** 2).sum(-1).sqrt()
        return d.argmin(1), d.min(1).values <= 3 * std

    def kl_numpy(counts):
        import numpy as np
        p = counts.numpy() / counts.sum().item()
        p = p[p > 0]
        return float(np.sum(p * np.log(p * len(counts))))

    def pack_view(x, m):   # .view on a contiguous copy: also fine for transposed or channels_last batches
        if x.shape[0] % m:
            raise ValueError(f"{x.shape[0]} samples do not split into groups of {m}")
        return x.contiguous().view(x.shape[0] // m, -1, *x.shape[2:])

    def gp_expanded(critic, real, fake):
        eps = torch.rand(len(real), *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype).expand_as(real)
        x = (eps * real + (1 - eps) * fake).detach().requires_grad_()
        out = critic(x)
        g = torch.autograd.grad(out, x, grad_outputs=torch.ones_like(out), create_graph=True)[0]
        return ((g.reshape(len(x), -1).pow(2).sum(1).sqrt() - 1) ** 2).mean()

    accepts("modes.assign_modes", assign_loop)
    accepts("modes.reverse_kl", kl_numpy)
    accepts("modes.pack", pack_view)
    accepts("modes.gradient_penalty", gp_expanded)


# ----------------------------------------------------------------------------- wrong versions
def _assign(metric="l2", k=3.0, pick="min", mask_dtype=None):
    def fn(x, c, std):
        diff = x[:, None, :] - c[None]
        if metric == "l2":
            d = diff.pow(2).sum(-1).sqrt()
        elif metric == "sq":
            d = diff.pow(2).sum(-1)
        else:  # box: per coordinate
            d = diff.abs().max(-1).values
        near = d.min(1) if pick == "min" else d.max(1)
        hq = near.values <= k * std
        return near.indices, hq if mask_dtype is None else hq.to(mask_dtype)
    return fn


def _kl(kind):
    def fn(counts):
        c = counts.double()
        k = len(c)
        if kind == "forward":
            p = c / c.sum()
            return float((1 / k * torch.log((1 / k) / p)).sum())
        if kind == "nan":
            p = c / c.sum()
            return float((p * torch.log(p * k)).sum())
        if kind == "log2":
            p = c / c.sum()
            p = p[p > 0]
            return float((p * torch.log2(p * k)).sum())
        if kind == "unnormalised":
            c = c[c > 0]
            return float((c * torch.log(c * k)).sum())
        if kind == "inplace":
            counts[counts == 0] = 1  # "smoothing" that edits the caller's histogram
            p = counts.double() / counts.sum()
            return float((p * torch.log(p * k)).sum())
        raise ValueError(kind)
    return fn


def _pack_chunks(x, m):
    return torch.cat(x.chunk(m), dim=1)


def _pack_transposed(x, m):
    return x.t().reshape(x.shape[0] // m, -1) if x.dim() == 2 else x.reshape(len(x) // m, -1, *x.shape[2:])


def _pack_flat_images(x, m):
    return x.reshape(x.shape[0] // m, -1)


def _pack_truncating(x, m):
    n = x.shape[0] // m * m  # drops the remainder without a word
    return x[:n].reshape(n // m, m * x.shape[1], *x.shape[2:])


def _pack_reshape_error(x, m):  # H7: the old notebook solution, relies on reshape's RuntimeError
    n = x.shape[0]
    return x.reshape(n // m, m * x.shape[1], *x.shape[2:])


def _pack_inferred(x, m):  # reshape(N // m, -1): (6, 2) with m = 4 silently becomes (1, 12)
    return x.reshape(x.shape[0] // m, -1, *x.shape[2:])


def _gp_eps(kind):
    def fn(critic, real, fake):
        n, shape = real.shape[0], (real.shape[0], *[1] * (real.dim() - 1))
        kw = dict(device=real.device, dtype=real.dtype)
        if kind == "half":  # H8: ε ~ U(0, 0.5)
            e = torch.rand(*shape, **kw) / 2
        elif kind == "linspace":  # H8: a fixed grid, the same at every call
            e = torch.linspace(0, 1, n, **kw).view(shape)
        else:  # "nodevice": the old notebook solution, ε on the default device and dtype
            e = torch.rand(*shape)
        x = (e * real.detach() + (1 - e) * fake.detach()).requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
        return ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()
    return fn


def _pack_detached(x, m):
    if x.shape[0] % m:
        raise ValueError("N must be a multiple of m")
    return x.detach().reshape(x.shape[0] // m, m * x.shape[1], *x.shape[2:])


def _gp(at="interp", create_graph=True, norm="all", eps="sample", reduce="mean", one_sided=False,
        weight=1.0, detach=True):
    def fn(critic, real, fake):
        n, kw = real.shape[0], dict(device=real.device, dtype=real.dtype)  # one mistake per entry
        if eps == "sample":
            e = torch.rand(n, *[1] * (real.dim() - 1), **kw)
        elif eps == "element":
            e = torch.rand_like(real)
        else:
            e = torch.rand(1, **kw)
        r, f = (real.detach(), fake.detach()) if detach else (real, fake)
        x = {"interp": e * r + (1 - e) * f, "real": r.clone(), "fake": f.clone()}[at]
        if detach:
            x = x.detach().requires_grad_(True)
        elif not x.requires_grad:
            x.requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=create_graph)
        if norm == "all":
            nrm = g.flatten(1).norm(dim=1)
        elif norm == "dim1":
            nrm = g.norm(dim=1)
        else:
            nrm = g.norm()
        pen = (torch.relu(nrm - 1) ** 2) if one_sided else (nrm - 1) ** 2
        return weight * (pen.mean() if reduce == "mean" else pen.sum())
    return fn


A, K, P, G = "modes.assign_modes", "modes.reverse_kl", "modes.pack", "modes.gradient_penalty"
GALLERY = [
    ("argmax", A, _assign(pick="max"), "picks the nearest mode", "farthest"),
    ("squared distance", A, _assign(metric="sq"), "high quality means Euclidean distance ≤ 3·std", "square root"),
    ("box not disk", A, _assign(metric="box"), "high quality means Euclidean distance ≤ 3·std", "Euclidean"),
    ("one std", A, _assign(k=1.0), "high quality means Euclidean distance ≤ 3·std", "3·std"),
    ("float mask", A, _assign(mask_dtype=torch.float32), "returns (mode (N,) int, high_quality (N,) bool)",
     "boolean"),
    ("forward KL", K, _kl("forward"), "all samples on one mode → ln K", "forward"),
    ("0 log 0 = nan", K, _kl("nan"), "all samples on one mode → ln K", "0·ln 0"),
    ("log base 2", K, _kl("log2"), "all samples on one mode → ln K", "natural log"),
    ("counts not normalised", K, _kl("unnormalised"), "uniform histogram → 0", "normalise"),
    ("smooths in place", K, _kl("inplace"), "does not change the counts", "in place"),
    ("chunks not consecutive", P, _pack_chunks, "each row holds m consecutive whole samples", "consecutive"),
    ("transpose mixes samples", P, _pack_transposed, "each row holds m consecutive whole samples",
     "mixed coordinates"),
    ("images flattened", P, _pack_flat_images, "images are packed along channels", "shape"),
    ("detached", P, _pack_detached, "keeps gradients", "gradient"),
    ("drops the remainder", P, _pack_truncating, "a batch that is not a multiple of m is refused, not truncated",
     "dropped"),
    ("relies on reshape's RuntimeError (H7)", P, _pack_reshape_error,
     "a batch that is not a multiple of m is refused, not truncated", "ValueError"),
    ("reshape(N // m, -1)", P, _pack_inferred, "a batch that is not a multiple of m is refused, not truncated",
     "dropped"),
    ("eps ~ U(0, 0.5) (H8)", G, _gp_eps("half"), "ε ~ U(0, 1), drawn afresh at each call", "uniform"),
    ("eps a fixed linspace (H8)", G, _gp_eps("linspace"), "ε ~ U(0, 1), drawn afresh at each call", "same ε"),
    ("eps without device/dtype (H8)", G, _gp_eps("nodevice"), "runs on the device and dtype of its inputs",
     "device=real.device"),
    ("penalty at real points", G, _gp(at="real"), "evaluates the critic at random interpolates of real and fake",
     "real samples"),
    ("penalty at fake points", G, _gp(at="fake"), "evaluates the critic at random interpolates of real and fake",
     "fake samples"),
    ("eps per element", G, _gp(eps="element"), "evaluates the critic at random interpolates of real and fake",
     "one ε per"),
    ("one eps for the batch", G, _gp(eps="batch"), "evaluates the critic at random interpolates of real and fake",
     "same ε"),
    ("no create_graph", G, _gp(create_graph=False), "the penalty trains the critic (create_graph=True)",
     "create_graph"),
    ("norm over dim 1", G, _gp(norm="dim1"), "gradient norm over all non-batch axes (images)", "flatten(1)"),
    ("norm over the batch", G, _gp(norm="batch"), "closed form for a linear critic (2-D points)", "differs"),
    ("one-sided", G, _gp(one_sided=True), "closed form for a linear critic (2-D points)", "two-sided"),
    ("lambda inside", G, _gp(weight=10.0), "closed form for a linear critic (2-D points)", "without λ"),
    ("sum not mean", G, _gp(reduce="sum"), "closed form for a linear critic (2-D points)", "mean"),
    ("gradient leaks into G", G, _gp(detach=False), "does not leave gradients on real or fake", "detach"),
]


@pytest.mark.parametrize("label,name,fn,case,fragment", GALLERY, ids=[g[0] for g in GALLERY])
def test_gallery_rejected(rejects, label, name, fn, case, fragment):
    rejects(name, fn, case, fragment)


def test_reverse_kl_values():
    assert reverse_kl(torch.tensor([1, 1, 1, 1])) == pytest.approx(0.0, abs=1e-12)
    assert reverse_kl(torch.tensor([4, 0, 0, 0])) == pytest.approx(math.log(4))
    # two of four modes, equal: ln 2
    assert reverse_kl(torch.tensor([3, 3, 0, 0])) == pytest.approx(math.log(2))
    assert reverse_kl(torch.tensor([0, 0])) == float("inf")


def test_not_implemented_falls_back(capsys):
    from genlib.exercises import check

    def stub(critic, real, fake):
        raise NotImplementedError

    assert check(G, stub) is gradient_penalty
    assert "not done yet" in capsys.readouterr().out


# ------------------------------------------------------------------ turn-3 reviews (issue 23): first messages
def _kl_float32(counts):  # learner B: int64 counts / their sum is float32; 2.0794415474 for ln 8
    p = counts / counts.sum()
    p = p[p > 0]
    return float((p * torch.log(p * len(counts))).sum())


def _gp_textbook_no_detach(critic, real, fake):  # learner B: the textbook form, the caller detaches
    eps = torch.rand(real.shape[0], *[1] * (real.dim() - 1), device=real.device, dtype=real.dtype)
    x = (eps * real + (1 - eps) * fake).requires_grad_(True) if not fake.requires_grad else eps * real + (1 - eps) * fake
    (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()


def _kl_tensor(counts):  # session-2 learner: float64, but a 0-d tensor; then round(v, 3) fails in cell 6
    p = counts.double() / counts.sum()
    p = p[p > 0]
    return (p * torch.log(p * len(counts))).sum()


def _pack_plain_view(x, m):  # learner 04-05 (defect 7): passed, then fails on a transposed batch
    if x.shape[0] % m:
        raise ValueError(f"{x.shape[0]} samples do not split into groups of {m}")
    return x.view(x.shape[0] // m, m * x.shape[1], *x.shape[2:])


def _gp_eps_n1(images_too=True):
    """learner 04-05 (defect 6): ε of shape (N, 1). On (8, 3, 4, 4) images it raises a broadcast error;
    with ``images_too=False`` it is used only where it broadcasts silently (H = N), one ε per pixel row."""
    def fn(critic, real, fake):
        n, kw = real.shape[0], dict(device=real.device, dtype=real.dtype)
        silent = real.dim() == 4 and real.shape[2] == n
        e = torch.rand(n, 1, **kw) if (images_too or silent or real.dim() == 2) else \
            torch.rand(n, *[1] * (real.dim() - 1), **kw)
        x = (e * real.detach() + (1 - e) * fake.detach()).requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
        return ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()
    return fn


LEARNER_FIRST = [
    ("pack with .view on a non-contiguous batch", P, _pack_plain_view,
     "works on a non-contiguous batch (transposed, channels_last)", ".reshape(...)"),
    ("eps of shape (N, 1) on images: broadcast error", G, _gp_eps_n1(),
     "gradient norm over all non-batch axes (images)", "shape (N, 1, 1, 1)"),
    ("eps of shape (N, 1) on images: silent where H = N", G, _gp_eps_n1(images_too=False),
     "gradient norm over all non-batch axes (images)", "one ε per row of pixels"),
]


@pytest.mark.parametrize("label,name,fn,case,fragment", LEARNER_FIRST, ids=[g[0] for g in LEARNER_FIRST])
def test_learner_slips_first_message(label, name, fn, case, fragment):
    assert_first_failure(name, fn, case, fragment)


REVIEW = [
    ("reverse_kl returns a 0-d tensor, then round() fails (session-2 learner)", K, _kl_tensor,
     "as chapter 04 uses it: bincount counts in, a Python number out", "round(value, 3)"),
    ("textbook penalty, caller expected to detach (learner B)", G, _gp_textbook_no_detach,
     "does not leave gradients on real or fake", "a caller may pass fake = G(z) undetached"),
]


def test_reverse_kl_in_float32_is_accepted(accepts):
    """Chapter 04 compares with ln 8 at rel_tol 1e-6: a float32 computation returned as a float is right
    (session-2 learner: it was rejected for 'double precision' the chapter no longer asks for)."""
    accepts(K, _kl_float32)


@pytest.mark.parametrize("form", ["ones_n1", "squeeze", "index"])
def test_penalty_forms_that_follow_the_docstring_train_in_the_chapter(form, monkeypatch):
    """Session-2 learner: grad_outputs=ones(N, 1), critic(x̂).squeeze(1) and critic(x̂)[:, 0] passed the
    check (its critics return (N, 1), as the docstring says) and then crashed the chapter's WGAN-GP
    trainer, whose critic returned (N,). The trainer's critic now returns (N, 1)."""
    from dataclasses import replace

    from genlib import modecollapse as mc

    def penalty(critic, real, fake):
        eps = torch.rand(real.shape[0], *[1] * (real.dim() - 1), device=real.device, dtype=real.dtype)
        x = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
        out = critic(x)
        if form == "ones_n1":
            (g,) = torch.autograd.grad(out, x, grad_outputs=torch.ones(real.size(0), 1), create_graph=True)
        else:
            out = out.squeeze(1) if form == "squeeze" else out[:, 0]
            (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        return ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()

    monkeypatch.setattr(mc, "gradient_penalty", penalty)
    mc.train_2d_seeds(replace(mc.GANConfig(), loss="wgan-gp", steps=3, batch=16), [0, 1])


@pytest.mark.parametrize("label,name,fn,case,fragment", REVIEW, ids=[g[0] for g in REVIEW])
def test_review_holes_first_message(rejects, label, name, fn, case, fragment):
    rejects(name, fn, case, fragment)
