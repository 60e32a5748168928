"""Where and how long things run: device, seeds, budgets, mixed precision, quality claims.

Budgets (``GENLIB_BUDGET``):

* ``smoke``   – seconds per chapter; proves the code runs, never proves a quality claim.
* ``default`` – the CPU budget every chapter is written for (≤ 4 minutes per notebook on 2 cores).
* ``gpu``     – longer runs for people with an accelerator.
"""
from __future__ import annotations

import contextlib
import os
import random
import warnings

import numpy as np
import torch

BUDGETS = ("smoke", "default", "gpu")


class GenlibWarning(UserWarning):
    """genlib's own warnings (a wrong pixel range, a suspicious input). ``setup_notebook`` quiets
    third-party UserWarnings but keeps these visible: they point at a learner's mistake."""


def budget() -> str:
    """The active budget name, from ``GENLIB_BUDGET`` (default: ``default``)."""
    name = os.environ.get("GENLIB_BUDGET", "default").strip().lower() or "default"
    if name not in BUDGETS:
        raise ValueError(f"GENLIB_BUDGET={name!r}: choose one of {', '.join(BUDGETS)}")
    return name


def scaled(default, smoke=None, gpu=None):
    """Pick a size for the active budget: ``steps = scaled(3000, smoke=50, gpu=20000)``."""
    b = budget()
    if b == "smoke" and smoke is not None:
        return smoke
    if b == "gpu" and gpu is not None:
        return gpu
    return default


class Verdict:
    """What :func:`claim` returns: true when the claim holds. A notebook cell that ends with a
    claim shows nothing more than the claim's own ✓ line (no trailing ``True`` echo)."""

    __slots__ = ("holds", "message")

    def __init__(self, holds: bool, message: str):
        self.holds, self.message = bool(holds), message

    def __bool__(self) -> bool:
        return self.holds

    def __eq__(self, other) -> bool:
        return bool(self) == bool(other) if isinstance(other, (bool, Verdict)) else NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        return f"Verdict({'holds' if self.holds else 'fails'}: {self.message!r})"

    def _ipython_display_(self) -> None:  # the ✓ line is already printed
        pass


def claim(condition: bool, message: str) -> Verdict:
    """Assert a claim about a result: enforced at the default and gpu budgets.

    At the ``smoke`` budget models are too small to be judged, so the claim is reported, not
    enforced. Returns a :class:`Verdict`, true when the condition holds (``if claim(...)`` works;
    a cell ending with a claim echoes nothing).
    """
    ok = bool(condition)
    if budget() == "smoke":
        print(("✓ " if ok else "· (not enforced at smoke budget) ") + message)
        return Verdict(ok, message)
    assert ok, message
    print("✓ " + message)
    return Verdict(ok, message)


def get_device(prefer: str | None = None) -> torch.device:
    """CUDA if present, then Apple MPS, then CPU. ``GENLIB_DEVICE`` or ``prefer`` overrides."""
    want = (prefer or os.environ.get("GENLIB_DEVICE", "")).strip().lower()
    if want:
        if want.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"GENLIB_DEVICE={want} but CUDA is not available here; "
                               "unset it to run on the CPU")
        return torch.device(want)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and PyTorch; return a ``torch.Generator`` seeded the same way."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def autocast(device: torch.device | str):
    """Mixed precision where it helps: bf16 (or fp16) autocast on CUDA, nothing on CPU/MPS.

    fp16/bf16 *compute* with fp32 master weights: the parameters stay float32, only matmuls and
    convolutions run in half precision inside this context.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def setup_notebook(seed: int = 0, threads: int | None = None) -> torch.device:
    """What every chapter's first code cell calls: quiet warnings, seed, pick a device, report.

    Third-party UserWarnings, DeprecationWarnings and FutureWarnings are silenced; genlib's own
    :class:`GenlibWarning` (e.g. psnr's "pixel values span … but data_range=…") stays visible.
    """
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("default", category=GenlibWarning)  # inserted first, so it wins
    if threads:
        torch.set_num_threads(threads)
    seed_everything(seed)
    device = get_device()
    print(f"genlib: device={device.type}, budget={budget()}, seed={seed}")
    return device
