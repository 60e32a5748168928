"""Gallery for chapter 10's checks: each reference and other correct forms pass; each classic slip is
rejected in a named case with a message that names it. Shared file: each author writes only between
its own BEGIN/END lines (C: inpainting and masked metrics, D: super-resolution and style, E: translation)."""
import pytest  # noqa: F401
import torch  # noqa: F401


# ===== BEGIN ch10 section C: inpainting + masked metrics (helper C) =====
# ===== END ch10 section C =====

# ===== BEGIN ch10 section D: super-resolution + style (helper D) =====
from genlib.style import gram_matrix as _d_gram  # noqa: E402

GRAM = "style.gram_matrix"


def _d_flat(f):
    n, c, h, w = f.shape
    return f.reshape(n, c, h * w)


def test_gram_accepted(accepts):
    accepts(GRAM, _d_gram)
    accepts(GRAM, lambda f: torch.einsum("nchw,ndhw->ncd", f, f) / (f.shape[1] * f.shape[2] * f.shape[3]))
    accepts(GRAM, lambda f: torch.bmm(_d_flat(f), _d_flat(f).transpose(1, 2)) / f[0].numel())
    # positions-first layout done right (permute before reshape): Fᵀ F of (N, H·W, C)
    accepts(GRAM, lambda f: (lambda m: m.transpose(1, 2) @ m / f[0].numel())(
        f.permute(0, 2, 3, 1).reshape(len(f), -1, f.shape[1])))
    accepts(GRAM, lambda f: torch.stack([(x.flatten(1) @ x.flatten(1).T) / x.numel() for x in f]))


def _d_inplace(f):
    f /= f[0].numel() ** 0.5
    m = _d_flat(f)
    return m @ m.transpose(1, 2)


def _d_numpy(f):
    import numpy as np
    m = _d_flat(f).detach().numpy()
    return torch.from_numpy(np.einsum("ncp,ndp->ncd", m, m) / f[0].numel())


GRAM_GALLERY = [
    ("no normalisation", lambda f: _d_flat(f) @ _d_flat(f).transpose(1, 2),
     "G = F Fᵀ / (C·H·W)", "no normalisation"),
    ("divided by H·W (other convention)", lambda f: _d_flat(f) @ _d_flat(f).transpose(1, 2) / (f.shape[2] * f.shape[3]),
     "G = F Fᵀ / (C·H·W)", "divided by H·W"),
    ("divided by C only", lambda f: _d_flat(f) @ _d_flat(f).transpose(1, 2) / f.shape[1],
     "G = F Fᵀ / (C·H·W)", "C only"),
    ("batch size in the normaliser", lambda f: _d_flat(f) @ _d_flat(f).transpose(1, 2) / f.numel(),
     "G = F Fᵀ / (C·H·W)", "N·C·H·W"),
    ("transposed product (HW x HW)", lambda f: _d_flat(f).transpose(1, 2) @ _d_flat(f) / f[0].numel(),
     "one (C, C) matrix per image", "positions with positions"),
    ("one Gram for the whole batch", lambda f: (lambda m: m @ m.T / m.numel())(f.transpose(0, 1).reshape(f.shape[1], -1)),
     "one (C, C) matrix per image", "whole batch"),
    ("batch mixed, repeated per image",
     lambda f: (lambda m: (m @ m.T / m.numel() * len(f)).expand(len(f), -1, -1))(f.transpose(0, 1).reshape(f.shape[1], -1)),
     "each image's Gram uses only that image", "mixed"),
    ("not flattened spatially", lambda f: f @ f.transpose(-1, -2) / f[0].numel(),
     "one (C, C) matrix per image", "not flattened"),
    ("mean over channels", lambda f: (lambda m: m @ m.transpose(1, 2) / m[0].numel())(_d_flat(f).mean(1, keepdim=True)),
     "one (C, C) matrix per image", "averaged"),
    ("reshape to (N, HW, C) without permute", lambda f: (lambda m: m.transpose(1, 2) @ m / f[0].numel())(
        f.reshape(len(f), -1, f.shape[1])), "G = F Fᵀ / (C·H·W)", "memory order"),
    ("centred (covariance)", lambda f: (lambda m: m @ m.transpose(1, 2) / f[0].numel())(
        _d_flat(f) - _d_flat(f).mean(2, keepdim=True)), "G = F Fᵀ / (C·H·W)", "covariance"),
    ("through numpy (no gradient)", _d_numpy, "gradient reaches the features", "no gradient"),
    ("in place on the features", _d_inplace, "leaves the features unchanged", "in place"),
]


@pytest.mark.parametrize("label,fn,case,fragment", GRAM_GALLERY, ids=[g[0] for g in GRAM_GALLERY])
def test_gram_gallery_rejected(rejects, label, fn, case, fragment):
    rejects(GRAM, fn, case, fragment)


def test_gram_matches_style_loss_convention():
    # a map of ones: each entry sums H·W products 1·1, divided by C·H·W → 1/C
    g = _d_gram(torch.ones(2, 4, 3, 5))
    assert torch.allclose(g, torch.full((2, 4, 4), 0.25))
# ===== END ch10 section D =====

# ===== BEGIN ch10 section E: translation (helper E) =====
# ===== END ch10 section E =====
