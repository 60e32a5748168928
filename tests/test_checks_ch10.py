"""Gallery for chapter 10's checks: each reference and other correct forms pass; each classic slip is
rejected in a named case with a message that names it. Shared file: each author writes only between
its own BEGIN/END lines (C: inpainting and masked metrics, D: super-resolution and style, E: translation)."""
import pytest  # noqa: F401
import torch  # noqa: F401


# ===== BEGIN ch10 section C: inpainting + masked metrics (helper C) =====
# ===== END ch10 section C =====

# ===== BEGIN ch10 section D: super-resolution + style (helper D) =====
# ===== END ch10 section D =====

# ===== BEGIN ch10 section E: translation (helper E) =====
# ===== END ch10 section E =====
