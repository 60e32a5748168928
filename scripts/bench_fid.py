"""Benchmark: genlib's FID (eigh of a symmetric matrix) vs the usual scipy.linalg.sqrtm(Σ1·Σ2).

    .venv/bin/python scripts/bench_fid.py                   # 10,000 × 2,048 features, as in the issue
    .venv/bin/python scripts/bench_fid.py --n 2000 --d 512  # quicker

Both paths get the same float64 features and compute the covariances the same way, so the
comparison isolates the matrix square root; the end-to-end time (covariances included) is
reported too. The features are well conditioned (smallest covariance eigenvalue ≫ 0), the regime
where sqrtm is trustworthy, so the two values must agree to 1e-6 relative.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import scipy.linalg

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from genlib import metrics  # noqa: E402


def make_features(n: int, d: int, seed: int = 0):
    """Two (n, d) float64 feature sets, non-negative like ReLU/pool features, well conditioned."""
    rng = np.random.default_rng(seed)
    mix = np.eye(d) + rng.standard_normal((d, d)) / (2 * np.sqrt(d))
    f1 = np.abs(rng.standard_normal((n, d)) @ mix)
    f2 = np.abs(rng.standard_normal((n, d)) @ mix * 1.1 + 0.05)
    return f1, f2


def fid_sqrtm(f1, f2) -> float:
    """The common reference recipe: sqrtm of the non-symmetric product, real part of the trace."""
    mu1, s1 = metrics.gaussian_stats(f1)
    mu2, s2 = metrics.gaussian_stats(f2)
    covmean = scipy.linalg.sqrtm(s1 @ s2)  # no `disp=` (deprecated, removed in SciPy 1.18)
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--d", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    f1, f2 = make_features(args.n, args.d, args.seed)
    (mu1, s1), t_cov1 = timed(metrics.gaussian_stats, f1)
    (mu2, s2), t_cov2 = timed(metrics.gaussian_stats, f2)
    t_cov = t_cov1 + t_cov2
    ours, t_ours = timed(metrics.frechet_distance, mu1, s1, mu2, s2)
    covmean, t_sqrtm = timed(lambda: scipy.linalg.sqrtm(s1 @ s2))
    diff = mu1 - mu2
    ref = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(np.real(covmean)))
    w = np.linalg.eigvalsh(s1)
    rel = abs(ours - ref) / abs(ref)
    print(f"features: 2 × ({args.n} × {args.d}) float64; cond(Σ1) ≈ {w[-1] / w[0]:.3g}")
    print(f"covariances (shared by both):   {t_cov:8.2f} s")
    print(f"genlib frechet_distance:        {t_ours:8.2f} s   FID = {ours:.10g}")
    print(f"scipy sqrtm(Σ1·Σ2) + trace:     {t_sqrtm:8.2f} s   FID = {ref:.10g}")
    print(f"relative difference:            {rel:.2e}")
    print(f"speed-up, matrix part:          {t_sqrtm / t_ours:8.1f}×")
    print(f"speed-up, end to end:           {(t_cov + t_sqrtm) / (t_cov + t_ours):8.1f}×")
    ok = rel < 1e-6
    print("agreement within 1e-6 relative: " + ("yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
