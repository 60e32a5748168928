"""Checks for chapter 10 (applications: inpainting, super-resolution, translation, style transfer).

This file is shared by three authors; each writes only between its own BEGIN/END lines:
section C (inpainting and metrics on a mask), section D (super-resolution and style transfer),
section E (image-to-image translation). Every check compares against formulas written out here and
names the learner's mistake when their numbers equal a known wrong formula.
"""
import torch

from genlib.exercises import CheckFailure, expect_tensor, register  # noqa: F401  (used by the sections)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _close(a, b, tol: float = 1e-4) -> bool:
    """a is a finite tensor of b's shape and equal to b within tol."""
    return (torch.is_tensor(a) and a.shape == b.shape and bool(torch.isfinite(a).all())
            and torch.allclose(a.double(), b.double(), rtol=tol, atol=tol))


# ===== BEGIN ch10 section C: inpainting + masked metrics (helper C) =====
# ===== END ch10 section C =====

# ===== BEGIN ch10 section D: super-resolution + style (helper D) =====
# ===== END ch10 section D =====

# ===== BEGIN ch10 section E: translation (helper E) =====
# ===== END ch10 section E =====
