"""Claims that survive another seed: spreads over seeds, bootstrap intervals, directional claims.

A number a chapter compares comes with its spread. Two ways to get one:

* retrain or resample with several seeds (``over_seeds``) and report mean ± std, min–max and n;
* when retraining does not fit the budget, resample the evaluation set (``bootstrap_ci``,
  ``paired_bootstrap``): a paired bootstrap of a difference keeps the pairing of the two methods on
  the same test items, which removes the item-to-item noise both share.

A direction is claimed (``claim_greater``) only when *every* seed agrees with margin, or when the
interval of the difference lies above the margin; otherwise the helper prints "within noise" and the
numbers, and the notebook says so instead of reading meaning into it.

    >>> acc = over_seeds(lambda s: train_and_score(seed=s), seeds=(0, 1, 2))
    >>> print(acc)                       # 0.912 ± 0.011 (n=3, range 0.900–0.921)
    >>> claim_greater(acc_a, acc_b, margin=0.02, what="packing raises HQ samples")
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from . import runtime

__all__ = ["Spread", "Interval", "over_seeds", "spread", "bootstrap_ci", "paired_bootstrap",
           "wilson_interval", "claim_greater", "claim_interval", "describe_difference"]


def _as_floats(values) -> np.ndarray:
    arr = np.asarray([float(v) for v in values], dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError("expected a non-empty sequence of numbers")
    return arr


@dataclass(frozen=True)
class Spread:
    """Values of one measurement over seeds (or runs): mean, std (ddof=1), min, max, n."""
    values: tuple
    label: str = ""

    @property
    def arr(self) -> np.ndarray:
        return _as_floats(self.values)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(self.arr.mean())

    @property
    def std(self) -> float:
        return float(self.arr.std(ddof=1)) if self.n > 1 else 0.0

    @property
    def min(self) -> float:
        return float(self.arr.min())

    @property
    def max(self) -> float:
        return float(self.arr.max())

    def format(self, digits: int = 3, scale: float = 1.0, unit: str = "") -> str:
        f = f"{{:.{digits}f}}"
        m, s = f.format(self.mean * scale), f.format(self.std * scale)
        lo, hi = f.format(self.min * scale), f.format(self.max * scale)
        return f"{m}{unit} ± {s} (n={self.n}, range {lo}–{hi})"

    def __str__(self) -> str:
        return (self.label + ": " if self.label else "") + self.format()


def spread(values: Iterable[float], label: str = "") -> Spread:
    """Wrap numbers you already have (one per seed) as a ``Spread``."""
    vals = tuple(float(v) for v in values)
    _as_floats(vals)
    return Spread(vals, label)


def over_seeds(fn: Callable[[int], float | dict], seeds: Sequence[int] = (0, 1, 2),
               label: str = "") -> Spread | dict:
    """Run ``fn(seed)`` for each seed. ``fn`` returns a number (→ one ``Spread``) or a dict of
    numbers (→ a dict of ``Spread``, one per key)."""
    seeds = list(seeds)
    if len(seeds) == 0:
        raise ValueError("over_seeds needs at least one seed")
    outs = [fn(int(s)) for s in seeds]
    if isinstance(outs[0], dict):
        keys = list(outs[0])
        return {k: spread([o[k] for o in outs], label=str(k)) for k in keys}
    return spread(outs, label)


@dataclass(frozen=True)
class Interval:
    """A point estimate with a (1 − alpha) interval, from ``n`` items."""
    estimate: float
    low: float
    high: float
    n: int
    level: float = 0.95
    label: str = ""
    extra: dict = field(default_factory=dict)

    def excludes(self, value: float = 0.0) -> bool:
        return not (self.low <= value <= self.high)

    def format(self, digits: int = 3, scale: float = 1.0, unit: str = "") -> str:
        f = f"{{:.{digits}f}}"
        return (f"{f.format(self.estimate * scale)}{unit} "
                f"[{f.format(self.low * scale)}, {f.format(self.high * scale)}] "
                f"({int(round(self.level * 100))}% interval, n={self.n})")

    def __str__(self) -> str:
        return (self.label + ": " if self.label else "") + self.format()


def bootstrap_ci(x, stat: Callable[[np.ndarray], float] = np.mean, n_boot: int = 2000,
                 level: float = 0.95, seed: int = 0, label: str = "") -> Interval:
    """Percentile bootstrap interval of ``stat`` over the items of ``x`` (resampled with
    replacement along the first axis)."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] < 2:
        raise ValueError("bootstrap needs at least two items")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.shape[0], size=(n_boot, x.shape[0]))
    boots = np.array([stat(x[i]) for i in idx], dtype=np.float64)
    a = (1 - level) / 2
    return Interval(float(stat(x)), float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a)),
                    int(x.shape[0]), level, label)


def paired_bootstrap(a, b, stat: Callable[[np.ndarray], float] = np.mean, n_boot: int = 2000,
                     level: float = 0.95, seed: int = 0, label: str = "") -> Interval:
    """Interval of ``stat(a) − stat(b)`` where ``a[i]`` and ``b[i]`` are two methods scored on the
    same item ``i`` (the same test image, prompt or mask). Resamples items, keeping pairs."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired_bootstrap needs scores on the same items: {a.shape} vs {b.shape}")
    if a.shape[0] < 2:
        raise ValueError("bootstrap needs at least two items")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.shape[0], size=(n_boot, a.shape[0]))
    boots = np.array([stat(a[i]) - stat(b[i]) for i in idx], dtype=np.float64)
    q = (1 - level) / 2
    return Interval(float(stat(a) - stat(b)), float(np.quantile(boots, q)),
                    float(np.quantile(boots, 1 - q)), int(a.shape[0]), level, label)


def wilson_interval(successes: int, n: int, level: float = 0.95) -> Interval:
    """Wilson score interval of a proportion (better than ±1.96·sqrt(p(1−p)/n) near 0 and 1)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes}/{n}")
    z = _normal_quantile(1 - (1 - level) / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), n, level)


def _normal_quantile(p: float) -> float:
    # Acklam-free: bisection on erf is plenty for the few levels we use.
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def describe_difference(a: Spread, b: Spread, margin: float = 0.0, digits: int = 3,
                        higher_is_better: bool = True) -> tuple[bool, str]:
    """Do all seeds agree that ``a`` beats ``b`` by more than ``margin``? Returns ``(holds, text)``.

    Seeds are paired by position when both have the same n (same seed, two methods), so the
    per-seed differences are what must all clear the margin; otherwise the worst case
    (min of a vs max of b) must."""
    sign = 1.0 if higher_is_better else -1.0
    if a.n == b.n:
        diffs = sign * (a.arr - b.arr)
        holds = bool(np.all(diffs > margin))
        detail = f"per-seed differences {', '.join(f'{d:+.{digits}f}' for d in sign * diffs)}"
    else:
        worst = (a.min - b.max) if higher_is_better else (b.min - a.max)
        holds = bool(worst > margin)
        detail = f"worst-case difference {sign * worst:+.{digits}f}"
    text = (f"{a.label or 'a'} {a.format(digits)} vs {b.label or 'b'} {b.format(digits)}; "
            f"{detail}; margin {margin:g}")
    return holds, text


def claim_greater(a: Spread, b: Spread, margin: float = 0.0, what: str = "",
                  higher_is_better: bool = True, digits: int = 3) -> "runtime.Verdict":
    """Claim that ``a`` beats ``b`` by more than ``margin`` on every seed (paired by seed).

    Enforced like ``runtime.claim`` (asserted at default/gpu budgets, reported at smoke); the
    message always carries both spreads, n and the per-seed differences."""
    if a.n < 3 or b.n < 3:
        raise ValueError(f"a claim needs at least three seeds per side (got {a.n} and {b.n})")
    holds, text = describe_difference(a, b, margin, digits, higher_is_better)
    return runtime.claim(holds, f"{what}: {text}" if what else text)


def claim_interval(iv: Interval, margin: float = 0.0, what: str = "",
                   higher_is_better: bool = True, digits: int = 3) -> "runtime.Verdict":
    """Claim that a difference's interval lies above ``margin`` (below ``-margin`` when lower is
    better). Use with ``paired_bootstrap``."""
    holds = iv.low > margin if higher_is_better else iv.high < -margin
    text = f"difference {iv.format(digits)}; margin {margin:g}"
    return runtime.claim(holds, f"{what}: {text}" if what else text)
