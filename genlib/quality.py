"""Sample quality of the digits samplers, with its noise level: FID, KID and FID∞ over seeds.

Why not one digits-FID number? Three reasons, all measured on chapter 07's samplers:

* **FID is biased, and the bias depends on the sample set.** With n samples, E[FID_n] ≈ FID_∞ + c/n,
  where c depends on the covariance of the sample set's features; two sets at equal n carry
  different biases, so a sampler can score *below* n real digits scored against the same
  held-out digits (a sampler with lower-variance output, for instance, gets a smaller bias).
* **"Real vs real" is a reference level, not a floor.** FID(n train digits, test digits) is itself a
  finite-sample estimate: it moves with *which* n train digits are drawn (0.21–0.26 at n = 1,000),
  and a sample set can come out "closer" to the 297 test digits than a different finite real set,
  by the bias above or simply by chance. Read it as "what real data scores at this n", with its
  spread — never as a lower bound.
* **One draw is one draw.** The seed-to-seed spread of one sampler's FID at n = 1,000 is a few
  hundredths, as large as many differences between samplers.

What this module gives instead, for sample sets drawn with several seeds (one set per seed, equal n):

* ``kid``: the unbiased KID (Bińkowski et al. 2018, cubic kernel on the shipped digits CNN's 64-d
  features), computed as the full U-statistic against the 297 held-out **test** digits (no random
  subsets). Averaged over both sets it is the population MMD², which is ≥ 0 and 0 for a perfect
  sampler whatever n is: unlike FID it has no sample-size bias. Here the 297 test digits are one
  fixed draw; their own term (test vs test) is shared by every row, shifts all KIDs alike (real
  train digits score −8 ± 2 ×10⁻³ at n = 1,000, not 0) and cancels in every difference between
  rows. Reported ×10³ (``KID_SCALE``).
* ``fid``: plain FID against the test digits at this n (biased; compare only at equal n);
* ``fid_inf``: FID∞ (Chong & Forsyth 2020): FID on random subsets of several sizes N, a straight
  line fitted to FID_N against 1/N, and its intercept at 1/N = 0. It removes the sample-size bias on
  the generated side (the 297 test digits stay finite, a bias every row shares);
* ``real_*``: the same numbers for random sets of n real **train** digits (``real_draws`` of them),
  the reference level at the same n, with its spread — with the samples' class counts when labels
  are given (``real_matched``): at small n a class-balanced set scores a far lower KID than a random
  one, so only a reference of the same composition is comparable;
* ``accuracy``: share classified as the requested label, when labels are given.

Every entry is a ``genlib.stats.Spread`` over the seeds (mean ± std, range, n). Compare two samplers
with ``compare`` / ``claim_better`` (paired by seed; a direction is asserted only when every seed
agrees by more than the margin). ``noise_level`` states a table's noise: the largest seed-to-seed
std of its rows.

Measured noise (shipped ``digits_flow``, n = 1,000 per set, 5 seeds, torch threads 1):

=================  ====================  ====================  ==============================
                   Euler 8 NFE           Euler 32 NFE          real train digits (10 draws)
=================  ====================  ====================  ==============================
KID×10³            −0.86 ± 1.18          −5.41 ± 1.22          −8.23 ± 1.89
FID                0.235 ± 0.008         0.198 ± 0.011         0.212 ± 0.030 (0.172–0.257)
FID∞               0.174 ± 0.005         0.139 ± 0.006         0.151 ± 0.056
=================  ====================  ====================  ==============================

At n = 400 (chapter 07's table, 3 seeds) KID is much noisier relative to the differences: seed std
of KID×10³ about 5 for the flow sampler (−4.6 ± 5.6 at 8 NFE) against FID 0.271 ± 0.017; the
cubic kernel on 64-d features is heavy-tailed. There FID at equal n, paired by seed, separates
samplers that KID cannot (flow 8 NFE vs the DCGAN: FID 0.271 ± 0.017 vs 0.433 ± 0.027, while one
seed of three reverses the KID order). Use KID at n ≥ 1,000, FID (equal n, paired) below that.

Paired by seed (the same starting noise for both samplers) the differences are far tighter than
the spreads: 32 vs 8 NFE, KID×10³ −4.2 … −4.9, FID −0.031 … −0.041 on all five seeds. So compare
samplers on the same seeds (``compare``) and read a difference only when every seed agrees.
FID puts the 32-NFE sampler below the real-digit level (0.198 vs 0.212 ± 0.030); KID does not
(−5.4 vs −8.2 ± 1.9). The sampler's features do not simply vary less (total variance 19.8 for
8 NFE vs 19.5 for 1,000 train digits): FID summarises each set by a Gaussian, and a real set's
non-Gaussian detail and its draw-to-draw spread are what the FID reference carries.
(The numbers in this table use *random* real sets. The samples ask for each digit equally often,
and since 2026-12-08 a labelled sample is compared with real sets of the same class counts, which
sit lower and tighter: at n = 300, KID×10³ −16.7 ± 0.8 and FID 0.207 ± 0.018, against which
chapter 07's 32-step flow, 0.251 ± 0.037, is no longer "below the real level".)
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import torch

from .stats import Spread, describe_difference, spread

__all__ = ["KID_SCALE", "digits_quality", "real_reference", "kid_unbiased", "fid_infinity",
           "compare", "claim_better", "noise_level", "format_row"]

KID_SCALE = 1e3          # KID values are reported ×10³
METRICS = ("kid", "fid", "fid_inf")


def _feats(x: torch.Tensor) -> np.ndarray:
    from .features import digits_features

    x = torch.as_tensor(x)
    if x.dim() != 4 or tuple(x.shape[1:]) != (1, 8, 8):
        raise ValueError(f"digit samples must be (N, 1, 8, 8) in [-1, 1], got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("samples contain NaN or inf")
    with torch.no_grad():
        return digits_features(x.detach().float().cpu().clamp(-1, 1)).double().numpy()


@lru_cache(maxsize=1)
def _test_feats() -> np.ndarray:
    from .data import digits
    return _feats(digits("test")[0])


@lru_cache(maxsize=1)
def _train_feats() -> np.ndarray:
    from .data import digits
    return _feats(digits("train")[0])


def _train_labels() -> np.ndarray:
    from .data import digits
    return digits("train")[1].numpy()


def _kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def kid_unbiased(f1: np.ndarray, f2: np.ndarray) -> float:
    """Unbiased MMD² with the cubic kernel k(a, b) = (a·b/d + 1)³ between feature sets f1 (n1, d)
    and f2 (n2, d), all pairs (a U-statistic: the diagonal terms are left out). Sizes may differ.
    Its expectation is 0 when both sets come from one distribution, so single values may be < 0."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    n1, n2 = len(f1), len(f2)
    if n1 < 2 or n2 < 2:
        raise ValueError("KID needs at least 2 samples per set")
    k11, k22, k12 = _kernel(f1, f1), _kernel(f2, f2), _kernel(f1, f2)
    return float((k11.sum() - np.trace(k11)) / (n1 * (n1 - 1))
                 + (k22.sum() - np.trace(k22)) / (n2 * (n2 - 1)) - 2 * k12.mean())


def _fid(f1: np.ndarray, f2_stats) -> float:
    from .metrics import frechet_distance, gaussian_stats
    mu, s = gaussian_stats(f1)
    return frechet_distance(mu, s, *f2_stats)


@lru_cache(maxsize=1)
def _test_stats():
    from .metrics import gaussian_stats
    return gaussian_stats(_test_feats())


def fid_infinity(f: np.ndarray, ref_stats=None, sizes: Sequence[float] = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
                 repeats: int = 3, seed: int = 0) -> float:
    """FID∞ (Chong & Forsyth 2020) of features f (n, d) against ``ref_stats`` (mean, cov; default:
    the test digits): FID of random subsets of N = size·n rows (``repeats`` per size, averaged),
    a least-squares line FID_N = FID∞ + k/N, and its intercept."""
    ref_stats = _test_stats() if ref_stats is None else ref_stats
    n = len(f)
    rng = np.random.default_rng(seed)
    inv, vals = [], []
    for frac in sizes:
        m = max(int(round(frac * n)), f.shape[1] + 2)
        if m > n:
            continue
        reps = 1 if m == n else repeats
        v = np.mean([_fid(f[rng.choice(n, m, replace=False)] if m < n else f, ref_stats) for _ in range(reps)])
        inv.append(1.0 / m)
        vals.append(v)
    if len(inv) < 2:
        raise ValueError(f"FID∞ needs more than {f.shape[1] + 2} samples, got {n}")
    slope, intercept = np.polyfit(np.asarray(inv), np.asarray(vals), 1)
    return float(intercept)


def _score(f: np.ndarray, fid_inf: bool) -> dict:
    out = {"kid": KID_SCALE * kid_unbiased(f, _test_feats()), "fid": _fid(f, _test_stats())}
    if fid_inf:
        out["fid_inf"] = fid_infinity(f)
    return out


_REAL_CACHE: dict = {}


def real_reference(n: int, draws: int = 10, fid_inf: bool = True, seed: int = 0,
                   class_counts=None) -> dict:
    """The reference level at sample size n: ``draws`` random sets of n of the 1,500 train digits
    (without replacement), each scored against the 297 test digits like a sample set.
    ``class_counts`` (10 ints summing to n): each set holds exactly that many train digits of each
    class — the composition of a class-conditional sample set. It matters: with labels 0…9 in turn
    (exactly n/10 per class) real sets score a much lower KID than random sets of the same size
    (KID×10³ −29 ± 5 vs −7 ± 18 at n = 120, −13.0 ± 1.1 vs −7.3 ± 4.6 at n = 500; 20 draws each):
    a stratified set is not an i.i.d. draw, and the unbiased estimator's correction assumes one.
    → {"kid", "fid", "fid_inf"} as ``Spread`` over the draws. A reference, not a floor: a sampler can
    score below it (see the module docstring). Cached per (n, draws, fid_inf, seed, class_counts)."""
    n, draws = int(n), int(draws)
    if not 2 <= n <= 1500:
        raise ValueError(f"n must be between 2 and 1,500 (the train digits), got {n}")
    if draws < 2:
        raise ValueError("real_reference needs at least 2 draws for a spread")
    counts = None if class_counts is None else tuple(int(c) for c in class_counts)
    if counts is not None:
        have = np.bincount(_train_labels(), minlength=10)
        if len(counts) != 10 or sum(counts) != n or min(counts) < 0:
            raise ValueError(f"class_counts must be 10 non-negative ints summing to n = {n}, got {counts}")
        if any(c > h for c, h in zip(counts, have)):
            raise ValueError(f"class_counts {counts} ask for more digits of a class than the train set has {tuple(have)}")
    key = (n, draws, fid_inf, seed, counts)
    if key not in _REAL_CACHE:
        tr = _train_feats()
        rng = np.random.default_rng(seed)
        if counts is None:
            pick = lambda: rng.choice(len(tr), n, replace=False)  # noqa: E731
        else:
            by_class = [np.flatnonzero(_train_labels() == c) for c in range(10)]
            pick = lambda: np.concatenate([rng.choice(by_class[c], k, replace=False)  # noqa: E731
                                           for c, k in enumerate(counts) if k])
        rows = [_score(tr[pick()], fid_inf) for _ in range(draws)]
        _REAL_CACHE[key] = {k: spread([r[k] for r in rows], label=f"real {k}") for k in rows[0]}
    return _REAL_CACHE[key]


def digits_quality(samples, labels=None, fid_inf: bool = True, real_draws: int = 10,
                   label: str = "") -> dict:
    """Score digit sample sets drawn with different seeds against the 297 held-out test digits.

    samples: one tensor (N, 1, 8, 8) in [-1, 1], or a list of them (one per seed, all the same N;
        values outside [-1, 1] are clipped, as an image would be).
    labels: the requested classes, (N,) shared by every set or a list with one per set; adds
        ``accuracy`` (share the shipped digits CNN classifies as requested).
    fid_inf: also compute FID∞ (about 0.1 s per set).
    real_draws: how many random sets of N train digits make the reference level (0: skip it). With
        labels, each reference set has the class counts of the (first) label set: a sample that asks
        for every digit equally often is compared with real sets of the same composition
        (``real_reference``'s ``class_counts``; ``real_matched`` in the result says which was used).

    Returns a dict of ``genlib.stats.Spread`` (over the seeds; label ``label``):
    ``kid`` (KID×10³, unbiased: its expectation is 0 for equal distributions, so a finite sample can print a negative value), ``fid`` (at this N), ``fid_inf`` (FID∞), ``accuracy``
    (with labels), ``real_kid`` / ``real_fid`` / ``real_fid_inf`` (reference level: N real train
    digits, spread over ``real_draws`` draws), and the ints ``n`` (per set), ``sets``, ``n_ref`` (297).
    With one set the spreads have n=1 and no std: draw at least three seeds to compare samplers.
    """
    sets = [samples] if torch.is_tensor(samples) else list(samples)
    if not sets:
        raise ValueError("digits_quality needs at least one sample set")
    sizes = {len(s) for s in sets}
    if len(sizes) != 1:
        raise ValueError(f"all sample sets must have the same size (FID depends on it), got {sorted(sizes)}")
    n = sizes.pop()
    if n < 66:
        raise ValueError(f"need more samples than the 64 feature dimensions (+2), got {n}")
    if labels is not None:
        labs = [labels] * len(sets) if torch.is_tensor(labels) else list(labels)
        if len(labs) != len(sets) or any(len(l) != n for l in labs):
            raise ValueError("labels must be (N,) or one (N,) tensor per sample set")
    rows = []
    for i, s in enumerate(sets):
        f = _feats(s)
        r = _score(f, fid_inf)
        if labels is not None:
            from .features import classify_digits
            pred, _ = classify_digits(torch.as_tensor(s).detach().float().cpu().clamp(-1, 1))
            r["accuracy"] = float((pred == torch.as_tensor(labs[i]).cpu()).float().mean())
        rows.append(r)
    out = {k: spread([r[k] for r in rows], label=f"{label} {k}".strip()) for k in rows[0]}
    out.update(n=n, sets=len(sets), n_ref=len(_test_feats()))
    if real_draws:
        counts = None
        if labels is not None and n <= 1500:
            counts = np.bincount(torch.as_tensor(labs[0]).cpu().numpy(), minlength=10)
            if len(counts) != 10 or (counts > np.bincount(_train_labels(), minlength=10)).any():
                counts = None  # not ten digit classes, or more of one than the train set holds: random sets
        ref = real_reference(min(n, 1500), real_draws, fid_inf, class_counts=counts)
        out.update({f"real_{k}": v for k, v in ref.items()})
        out["real_matched"] = counts is not None
    return out


def compare(a: dict, b: dict, metric: str = "kid", margin: float = 0.0, digits: int = 3) -> tuple[bool, str]:
    """Is sampler ``a`` better (lower ``metric``) than ``b`` by more than ``margin`` on every seed?
    Seeds are paired by position (same seeds, same labels for both). → (holds, text with both
    spreads and the per-seed differences)."""
    if metric not in a or metric not in b:
        raise KeyError(f"{metric!r} is not in both results (have {sorted(k for k in a if k in b)})")
    if a[metric].n != b[metric].n:
        raise ValueError("compare sample sets drawn with the same seeds (got different numbers of sets)")
    return describe_difference(a[metric], b[metric], margin, digits, higher_is_better=(metric == "accuracy"))


def claim_better(a: dict, b: dict, metric: str = "kid", margin: float = 0.0, what: str = "",
                 digits: int = 3) -> bool:
    """``runtime.claim`` that ``a`` beats ``b`` on ``metric`` by more than ``margin`` on every seed
    (at least three seeds each). Lower is better except for ``accuracy``."""
    from .stats import claim_greater
    return claim_greater(a[metric], b[metric], margin, what, higher_is_better=(metric == "accuracy"),
                         digits=digits)


def noise_level(results: Sequence[dict], metric: str = "kid", how: str = "max") -> float:
    """The seed-to-seed std of ``metric`` over a table's rows: the largest (``how="max"``) or the
    typical one (``how="median"``, robust to a few broken rows such as 1-NFE samplers). Differences
    below about twice this are within noise."""
    stds = [r[metric].std for r in results if metric in r and r[metric].n > 1]
    if not stds:
        raise ValueError("noise_level needs rows with at least two seeds")
    if how not in ("max", "median"):
        raise ValueError(f"how must be 'max' or 'median', got {how!r}")
    return float(max(stds) if how == "max" else np.median(stds))


def format_row(r: dict, metrics: Sequence[str] = ("kid", "fid"), digits: int = 3) -> str:
    """'KID×10³ 1.234 ± 0.100  FID 0.214 ± 0.012' for one result of ``digits_quality``."""
    names = {"kid": "KID×10³", "fid": "FID", "fid_inf": "FID∞", "accuracy": "acc"}
    parts = []
    for m in metrics:
        s: Spread = r[m]
        parts.append(f"{names.get(m, m)} {s.mean:.{digits}f} ± {s.std:.{digits}f}")
    return "  ".join(parts)
