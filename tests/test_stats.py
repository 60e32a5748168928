"""genlib.stats: spreads, bootstrap intervals and directional claims."""
import numpy as np
import pytest

from genlib import stats


def test_spread_summary_and_format():
    s = stats.spread([1.0, 2.0, 3.0], label="acc")
    assert s.n == 3 and s.mean == pytest.approx(2.0) and s.std == pytest.approx(1.0)
    assert (s.min, s.max) == (1.0, 3.0)
    assert "n=3" in str(s) and "range 1.000–3.000" in str(s) and str(s).startswith("acc: ")


def test_over_seeds_passes_each_seed_and_collects_dicts():
    seen = []
    out = stats.over_seeds(lambda s: seen.append(s) or {"a": s, "b": 2 * s}, seeds=(3, 4, 5))
    assert seen == [3, 4, 5]
    assert out["a"].values == (3.0, 4.0, 5.0) and out["b"].mean == pytest.approx(8.0)
    with pytest.raises(ValueError):
        stats.over_seeds(lambda s: 0.0, seeds=())


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = stats.bootstrap_ci(rng.normal(size=50))
    large = stats.bootstrap_ci(rng.normal(size=5000))
    assert small.low < small.estimate < small.high
    assert (large.high - large.low) < (small.high - small.low) / 5
    assert large.low < 0 < large.high


def test_paired_bootstrap_sees_a_small_shift_that_unpaired_noise_hides():
    rng = np.random.default_rng(1)
    item = rng.normal(scale=5.0, size=400)          # shared item difficulty
    a = item + 0.2 + rng.normal(scale=0.1, size=400)
    b = item + rng.normal(scale=0.1, size=400)
    iv = stats.paired_bootstrap(a, b)
    assert iv.excludes(0.0) and 0.15 < iv.estimate < 0.25
    with pytest.raises(ValueError):
        stats.paired_bootstrap(a, b[:-1])


def test_wilson_interval_known_values():
    iv = stats.wilson_interval(0, 10)
    assert iv.low == pytest.approx(0.0, abs=1e-12) and 0.27 < iv.high < 0.29         # 0.2775 for 0/10 at 95 %
    iv = stats.wilson_interval(50, 100)
    assert iv.low == pytest.approx(0.4038, abs=2e-3) and iv.high == pytest.approx(0.5962, abs=2e-3)
    with pytest.raises(ValueError):
        stats.wilson_interval(11, 10)


def test_claim_greater_needs_every_seed(monkeypatch):
    monkeypatch.setenv("GENLIB_BUDGET", "default")
    a = stats.spread([0.9, 0.92, 0.91], "a")
    b = stats.spread([0.8, 0.85, 0.89], "b")
    assert stats.claim_greater(a, b, margin=0.01, what="a beats b")
    with pytest.raises(AssertionError, match="per-seed differences"):
        stats.claim_greater(a, stats.spread([0.8, 0.93, 0.8], "c"), what="a beats c")
    with pytest.raises(ValueError, match="three seeds"):
        stats.claim_greater(stats.spread([1, 2], "x"), stats.spread([0, 1], "y"))
    # lower is better (an FID): a smaller on every seed
    assert stats.claim_greater(stats.spread([1, 1.1, 1.2]), stats.spread([2, 2.1, 2.2]),
                               higher_is_better=False)


def test_claim_interval_reports_at_smoke(monkeypatch, capsys):
    monkeypatch.setenv("GENLIB_BUDGET", "smoke")
    iv = stats.Interval(0.01, -0.02, 0.04, n=100)
    assert not stats.claim_interval(iv, what="guided beats baseline")
    assert "not enforced" in capsys.readouterr().out
    monkeypatch.setenv("GENLIB_BUDGET", "default")
    with pytest.raises(AssertionError, match="guided beats baseline"):
        stats.claim_interval(iv, what="guided beats baseline")
