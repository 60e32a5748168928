"""genlib.quality: unbiased KID, FID∞, the real-data reference level and seed-paired comparisons."""
import numpy as np
import pytest
import torch

from genlib import metrics, quality
from genlib.data import digits
from genlib.stats import spread


def test_kid_unbiased_matches_metrics_kid_on_a_full_subset():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(60, 8)), rng.normal(0.3, 1.0, size=(60, 8))
    # one "subset" of all rows (a permutation) is the full U-statistic
    ref, _ = metrics.kid_from_features(a, b, subsets=1, subset_size=60)
    assert quality.kid_unbiased(a, b) == pytest.approx(ref, rel=1e-10)


def test_kid_unbiased_is_centred_on_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(1)
    same = [quality.kid_unbiased(rng.normal(size=(50, 4)), rng.normal(size=(80, 4))) for _ in range(300)]
    diff = [quality.kid_unbiased(rng.normal(size=(50, 4)), rng.normal(0.5, 1, size=(80, 4))) for _ in range(50)]
    se = np.std(same) / np.sqrt(len(same))
    assert abs(np.mean(same)) < 4 * se            # unbiased: no upward drift at n = 50
    assert min(same) < 0 < max(same)              # single values straddle zero
    assert np.mean(diff) > 20 * se
    with pytest.raises(ValueError):
        quality.kid_unbiased(rng.normal(size=(1, 4)), rng.normal(size=(5, 4)))


def test_fid_infinity_removes_most_of_the_sample_size_bias():
    d = 8
    ref = (np.zeros(d), np.eye(d))                # exact N(0, I): the true FID is 0
    rng = np.random.default_rng(2)
    plain, inf = [], []
    for _ in range(20):
        f = rng.normal(size=(200, d))
        plain.append(metrics.frechet_distance(*metrics.gaussian_stats(f), *ref))
        inf.append(quality.fid_infinity(f, ref, seed=int(rng.integers(1000))))
    assert np.mean(plain) > 0.05                  # biased upwards at n = 200
    assert abs(np.mean(inf)) < np.mean(plain) / 4


def test_digits_quality_of_real_digits_sits_at_the_reference_level_and_validates_input():
    x = digits("train")[0]
    y = digits("train")[1]
    sets = [x[i * 300:(i + 1) * 300] for i in range(3)]
    labs = [y[i * 300:(i + 1) * 300] for i in range(3)]
    q = quality.digits_quality(sets, labs, real_draws=5)
    assert (q["n"], q["sets"], q["n_ref"]) == (300, 3, 297)
    assert q["kid"].n == 3 and q["real_kid"].n == 5
    assert q["accuracy"].min > 0.95               # the classifier was trained on these digits
    # real digits are scored like a reference draw: inside a wide band around the reference level
    width = 4 * max(q["real_kid"].std, q["kid"].std)
    assert abs(q["kid"].mean - q["real_kid"].mean) < width
    noise = -torch.ones(300, 1, 8, 8) + 0.05 * torch.randn(300, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    qn = quality.digits_quality(noise, real_draws=0, fid_inf=False)
    assert qn["kid"].mean > q["real_kid"].max + 10 * q["real_kid"].std   # blank images are far worse
    assert "real_kid" not in qn and "fid_inf" not in qn
    with pytest.raises(ValueError, match="same size"):
        quality.digits_quality([x[:100], x[:120]])
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\)"):
        quality.digits_quality(x[:100, 0])
    with pytest.raises(ValueError, match="NaN"):
        quality.digits_quality(torch.full((100, 1, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="more samples"):
        quality.digits_quality(x[:10])


def test_compare_pairs_seeds_and_claim_needs_three():
    a = {"kid": spread([1.0, 2.0, 3.0]), "accuracy": spread([0.9, 0.8, 0.95])}
    b = {"kid": spread([1.5, 2.4, 3.2]), "accuracy": spread([0.85, 0.82, 0.9])}
    holds, text = quality.compare(a, b, "kid")
    assert holds and "per-seed differences" in text          # lower KID on every seed
    assert not quality.compare(a, b, "kid", margin=0.3)[0]    # 0.2 is not > 0.3
    assert not quality.compare(a, b, "accuracy")[0]           # seed 2: 0.80 < 0.82
    assert quality.claim_better(a, b, "kid")
    with pytest.raises(ValueError, match="three seeds"):
        quality.claim_better({"kid": spread([1.0, 2.0])}, {"kid": spread([2.0, 3.0])})
    with pytest.raises(KeyError):
        quality.compare(a, b, "fid")
    assert quality.noise_level([a, b], "kid") == pytest.approx(1.0)
    c = {"kid": spread([0.0, 10.0, 20.0])}
    assert quality.noise_level([a, b, c], "kid", how="median") == pytest.approx(1.0)
    assert quality.noise_level([a, b, c], "kid") == pytest.approx(10.0)
    with pytest.raises(ValueError):
        quality.noise_level([a], "kid", how="mean")
    assert "KID×10³ 2.000 ± 1.000" in quality.format_row(a, ("kid",))


def test_the_reference_has_the_samples_class_counts_when_labels_are_given():
    """helper-26's finding: labels 0…9 in turn make a stratified set, whose unbiased KID sits far below
    random real sets of the same size (−29 ± 5 vs −7 ± 18 ×10⁻³ at n = 120) — so a class-balanced
    sample was compared with a reference of another composition. Now the reference matches it."""
    x, y = digits("train")
    idx = torch.cat([torch.nonzero(y == c).flatten()[:12] for c in range(10)])  # 12 real digits of each class
    labs = torch.arange(120) % 10
    q = quality.digits_quality(x[idx], y[idx], real_draws=6, fid_inf=False)
    assert q["real_matched"] is True
    q_random = quality.digits_quality(x[idx], None, real_draws=6, fid_inf=False)
    assert q_random["real_matched"] is False
    # a class-balanced real set sits inside the matched reference's band, and the two references differ
    assert abs(q["kid"].mean - q["real_kid"].mean) < 4 * q["real_kid"].std
    assert q["real_kid"].mean < q_random["real_kid"].mean - 5
    # the composition is the labels' (any order), checked on the draws themselves
    ref = quality.real_reference(120, 3, fid_inf=False, class_counts=torch.bincount(labs, minlength=10).tolist())
    assert ref["kid"].n == 3
    with pytest.raises(ValueError, match="summing to n"):
        quality.real_reference(120, 3, class_counts=[10] * 10)
    with pytest.raises(ValueError, match="more digits of a class"):
        quality.real_reference(1500, 3, class_counts=[1500] + [0] * 9)
    # labels that are not ten digit classes fall back to random sets
    odd = quality.digits_quality(x[idx], torch.full((120,), 12), real_draws=3, fid_inf=False)
    assert odd["real_matched"] is False
