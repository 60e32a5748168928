"""Does a retrained model do what the shipped one does? The comparison behind ``scripts/train_*.py --check``.

Bit identity of the weights holds only on the CPU kernels that trained them: another CPU's vector
instructions round a few sums in a different order, training amplifies the difference, and in the
end every tensor differs. So a ``--check`` retrains, scores the retrained and the shipped model with
the same held-out metric, and passes when the two scores agree within a stated tolerance
(``compare``). How far the weights themselves moved (``weight_difference``: bit for bit identical,
or how many tensors differ and by how much) is printed as information; it never decides, except
that non-finite retrained weights, or tensors that do not even match in name or shape, fail.

    >>> checks = [compare("held-out accuracy", 0.9899, 0.9933, abs_tol=0.02)]
    >>> ok = verdict("digits_cnn.pt", checks, weight_difference(new_state, shipped_state))
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch

__all__ = ["Comparison", "WeightDiff", "compare", "compare_all", "weight_difference", "verdict"]


@dataclass(frozen=True)
class Comparison:
    """One metric of the retrained and of the shipped model; ``ok`` when |Δ| ≤ ``tolerance``."""

    name: str
    retrained: float
    shipped: float
    tolerance: float  # absolute: abs_tol + rel_tol · |shipped|
    ok: bool

    def __str__(self) -> str:
        delta = abs(self.retrained - self.shipped)
        rel = "≤" if self.ok else ("not ≤" if math.isnan(delta) else ">")
        return (f"{'✓' if self.ok else '✗'} {self.name}: retrained {self.retrained:.4g}, "
                f"shipped {self.shipped:.4g}, |Δ| {delta:.3g} {rel} {self.tolerance:.3g}")


def compare(name: str, retrained: float, shipped: float, *, abs_tol: float = 0.0,
            rel_tol: float = 0.0) -> Comparison:
    """Do two scores agree? |retrained − shipped| ≤ abs_tol + rel_tol · |shipped|.

    A NaN or infinite score on either side fails (a broken shipped file must not pass either).
    Tolerances are non-negative and not both zero: a zero tolerance would be bit identity again.
    """
    if abs_tol < 0 or rel_tol < 0 or not (math.isfinite(abs_tol) and math.isfinite(rel_tol)):
        raise ValueError(f"tolerances must be finite and >= 0, got abs_tol={abs_tol}, rel_tol={rel_tol}")
    if abs_tol == 0 and rel_tol == 0:
        raise ValueError(f"{name}: give abs_tol or rel_tol > 0 (a zero tolerance asks for bit identity)")
    r, s = float(retrained), float(shipped)
    tol = abs_tol + rel_tol * abs(s) if math.isfinite(s) else float("nan")
    ok = math.isfinite(r) and math.isfinite(s) and abs(r - s) <= tol
    return Comparison(name, r, s, tol, ok)


def compare_all(retrained: Mapping[str, float], shipped: Mapping[str, float],
                tolerances: Mapping[str, Mapping[str, float]]) -> list[Comparison]:
    """``compare`` for every metric named in ``tolerances`` ({name: {"abs_tol": …, "rel_tol": …}});
    a metric missing from either score dict is an error, not a silent pass."""
    missing = [k for k in tolerances if k not in retrained or k not in shipped]
    if missing:
        raise KeyError(f"metrics {missing} are not in both score dicts "
                       f"(retrained: {sorted(retrained)}, shipped: {sorted(shipped)})")
    return [compare(k, retrained[k], shipped[k], **tol) for k, tol in tolerances.items()]


@dataclass
class WeightDiff:
    """How the retrained weights differ from the shipped ones (information, plus structural faults)."""

    n: int = 0                                        # entries compared
    differ: list = field(default_factory=list)        # names whose values differ
    max_abs: float = 0.0                              # max |Δ| over differing floating tensors
    mismatched: list = field(default_factory=list)    # names missing on one side or of another shape
    nonfinite: list = field(default_factory=list)     # retrained tensors holding NaN or inf

    @property
    def identical(self) -> bool:
        return not (self.differ or self.mismatched or self.nonfinite)

    @property
    def structural_fault(self) -> bool:
        return bool(self.mismatched or self.nonfinite)

    def __str__(self) -> str:
        if self.identical:
            return f"weights bit for bit identical ({self.n} of {self.n} entries)"
        parts = []
        if self.differ:
            names = ", ".join(self.differ[:4]) + (", ..." if len(self.differ) > 4 else "")
            parts.append(f"weights differ bit-wise in {len(self.differ)} of {self.n} entries "
                         f"({names}; max |Δw| {self.max_abs:.2e}) — expected on another CPU, not a failure")
        if self.mismatched:
            parts.append(f"names or shapes do not match: {', '.join(self.mismatched[:6])}")
        if self.nonfinite:
            parts.append(f"retrained weights hold NaN/inf: {', '.join(self.nonfinite[:6])}")
        return "; ".join(parts)


def _flatten(d: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def weight_difference(retrained: Mapping, shipped: Mapping) -> WeightDiff:
    """Compare two (possibly nested) state dicts entry by entry; non-tensor entries (a width, a
    config value) are compared with ``==``."""
    a, b = _flatten(retrained), _flatten(shipped)
    wd = WeightDiff(n=len(set(a) | set(b)))
    wd.mismatched = sorted(set(a) ^ set(b))
    for k in a:
        if k not in b:
            continue
        x, y = a[k], b[k]
        if isinstance(x, torch.Tensor) and x.is_floating_point() and not bool(torch.isfinite(x).all()):
            wd.nonfinite.append(k)
        if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
            if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor) or x != y:
                wd.differ.append(k)
            continue
        if x.shape != y.shape:
            wd.mismatched.append(k)
        elif x.dtype != y.dtype or not torch.equal(x, y):
            wd.differ.append(k)
            if x.is_floating_point() and y.is_floating_point():
                d = (x.double() - y.double()).abs().max().item() if x.numel() else 0.0
                wd.max_abs = max(wd.max_abs, d) if not math.isnan(d) else float("nan")
    return wd


def verdict(label: str, comparisons: list[Comparison], weights: WeightDiff | None = None,
            out: Callable[[str], None] = print) -> bool:
    """Print the weight information and every comparison; True when every comparison passes and
    the retrained weights have no structural fault. No comparisons is an error: a check that
    compares nothing cannot pass."""
    if not comparisons:
        raise ValueError(f"{label}: no metric to compare")
    if weights is not None:
        out(f"  {label}: {weights}")
    for c in comparisons:
        out(f"  {c}")
    ok = all(c.ok for c in comparisons) and not (weights is not None and weights.structural_fault)
    out(f"  {'✓' if ok else '✗'} {label}: "
        + ("the retrained model does what the shipped one does (within the tolerances above)" if ok
           else "NOT reproduced (see ✗ above)"))
    return ok
