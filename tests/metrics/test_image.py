"""Image metrics against torchmetrics and clovaai's prdc on the same features, plus closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from genlab.errors import DataError
from genlab.metrics import image as im


class Features(torch.nn.Module):
    """A 'feature extractor' that returns its input: the peers then score exactly our features."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _sets(n: int = 600, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    a = rng.standard_normal((n, dim)) @ mix + 3.0  # a large mean: cancellation would show
    b = rng.standard_normal((n + 50, dim)) @ (mix * 1.3) + 3.2
    return np.abs(a), np.abs(b)  # non-negative, as post-ReLU features


def test_fid_agrees_with_torchmetrics():
    tm = pytest.importorskip("torchmetrics.image.fid")
    a, b = _sets()
    metric = tm.FrechetInceptionDistance(feature=Features(a.shape[1]), reset_real_features=True)
    metric.update(torch.from_numpy(a), real=True)
    metric.update(torch.from_numpy(b), real=False)
    reference = float(metric.compute())
    ours = im.fid(a, b)
    assert ours > 0.1
    assert abs(ours - reference) / reference < 1e-6


def test_fid_formula_matches_sqrtm_on_a_well_conditioned_case():
    a, b = _sets(seed=1)
    sa, sb = im.GaussianStats.of(a), im.GaussianStats.of(b)
    root = scipy.linalg.sqrtm(sa.cov @ sb.cov).real
    expected = ((sa.mean - sb.mean) ** 2).sum() + np.trace(sa.cov + sb.cov - 2 * root)
    assert im.frechet_distance(sa, sb) == pytest.approx(expected, rel=1e-8)


def test_trace_sqrt_stays_accurate_when_ill_conditioned_and_singular():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    la = np.logspace(-14, 3, 40)  # condition number 1e17
    lb = np.logspace(-12, 2, 40)[rng.permutation(40)]
    la[:5] = 0.0  # singular: rank 35, as the covariance of fewer samples than dimensions
    cov_a, cov_b = (q * la) @ q.T, (q * lb) @ q.T  # commuting: tr (AB)^½ = Σ √(λa λb) exactly
    expected = np.sqrt(la * lb).sum()
    # forming the matrices alone perturbs the eigenvalues by ~eps·‖A‖ = 1e-13, i.e. ~1e-8 of the answer here
    # (scipy's sqrtm: 7e-8 off, with an imaginary part of 5e-7)
    assert im.trace_sqrt_product(cov_a, cov_b) == pytest.approx(expected, rel=1e-7)
    assert im.trace_sqrt_product(cov_b, cov_a) == pytest.approx(expected, rel=1e-7)


def test_fid_of_a_set_with_itself_is_zero_and_few_samples_warn():
    a, _ = _sets(n=400)
    s = im.GaussianStats.of(a)
    assert abs(im.frechet_distance(s, s)) < 1e-9 * np.trace(s.cov)
    with pytest.warns(im.SampleSizeWarning, match="at least 32 samples"):
        im.fid(a[:20], a[20:40])


def test_running_stats_and_fid_wrapper_match_the_batch_computation():
    a, b = _sets()
    running = im.RunningStats()
    for chunk in np.array_split(a, 7):
        running.update(chunk)
    full = im.GaussianStats.of(a)
    got = running.stats()
    np.testing.assert_allclose(got.mean, full.mean, rtol=1e-12)
    np.testing.assert_allclose(got.cov, full.cov, rtol=1e-10, atol=1e-12)
    acc = im.FID()
    for chunk in np.array_split(a, 3):
        acc.update(chunk, real=True)
    for chunk in np.array_split(b, 5):
        acc.update(chunk, real=False)
    assert acc.compute() == pytest.approx(im.fid(a, b), rel=1e-9)


def test_kid_agrees_with_torchmetrics_on_the_same_subsets():
    tm = pytest.importorskip("torchmetrics.image.kid")
    a, b = _sets(n=300)
    metric = tm.KernelInceptionDistance(feature=Features(a.shape[1]), subsets=20, subset_size=100)
    metric.update(torch.from_numpy(a), real=True)
    metric.update(torch.from_numpy(b), real=False)
    torch.manual_seed(7)
    mean, std = (float(v) for v in metric.compute())
    ours = im.kid(a, b, subsets=20, subset_size=100, seed=7)
    assert ours.mean > 0
    assert abs(ours.mean - mean) / mean < 1e-6
    assert abs(ours.std - std) / std < 1e-6
    acc = im.KID(subsets=20, subset_size=100, seed=7)
    acc.update(a, real=True)
    acc.update(b, real=False)
    assert acc.compute().mean == ours.mean


def test_kid_is_unbiased_near_zero_for_one_distribution():
    rng = np.random.default_rng(3)
    x = np.abs(rng.standard_normal((4000, 16)))
    same = im.kid(x[:2000], x[2000:], subsets=50, subset_size=500)
    different = im.kid(x[:2000], x[2000:] * 1.2, subsets=50, subset_size=500)
    assert abs(same.mean) < 3 * same.std
    assert different.mean > 10 * different.std


def test_inception_score_agrees_with_torchmetrics_and_bounds():
    tm = pytest.importorskip("torchmetrics.image.inception")
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((500, 10)) * 3
    metric = tm.InceptionScore(feature=Features(10), splits=1)
    metric.update(torch.from_numpy(logits))
    reference = float(metric.compute()[0])
    assert im.inception_score(logits, splits=1)[0] == pytest.approx(reference, rel=1e-6)
    confident = np.eye(10)[np.arange(500) % 10] * 50  # sure of each class, all classes equally: IS = K
    assert im.inception_score(confident, splits=5, seed=None)[0] == pytest.approx(10.0, rel=1e-6)
    assert im.inception_score(np.zeros((100, 10)))[0] == pytest.approx(1.0)


def test_precision_recall_density_coverage_agree_with_prdc():
    prdc = pytest.importorskip("prdc")
    a, b = _sets(n=300, dim=16)
    reference = prdc.compute_prdc(real_features=a, fake_features=b, nearest_k=5)
    p, r = im.precision_recall(a, b, k=5)
    d, c = im.density_coverage(a, b, k=5)
    assert (p, r) == pytest.approx((reference["precision"], reference["recall"]), abs=1e-12)
    assert (d, c) == pytest.approx((reference["density"], reference["coverage"]), abs=1e-12)
    assert im.precision_recall(a, a, k=3) == (1.0, 1.0)


def test_bad_features_get_one_line_errors():
    a, b = _sets(n=50)
    bad = a.copy()
    bad[3, 2] = np.nan
    with pytest.raises(DataError, match="NaN/inf values in 1 rows"):
        im.fid(bad, b)
    with pytest.raises(DataError, match="32 and 8 dimensions"):
        im.fid(a, b[:, :8])
    with pytest.raises(DataError, match="at least 6 samples"):
        im.density_coverage(a[:4], b, k=5)
    with pytest.raises(DataError, match="2-D array"):
        im.kid(a[0], b)


def test_bootstrap_interval_is_bias_corrected_and_contains_the_estimate():
    a, b = _sets(n=400, dim=8)
    low, high = im.bootstrap_fid(a, b, resamples=30, seed=0)
    assert low < im.fid(a, b) < high
    same = im.bootstrap_fid(a[:200], a[200:], resamples=30, seed=0)  # one distribution: FID near 0
    assert same[0] <= im.fid(a[:200], a[200:]) <= same[1]


def test_inception_score_shuffles_data_stored_class_by_class():
    sorted_logits = np.repeat(np.eye(10) * 50, 50, axis=0)  # 50 confident images of class 0, then of 1, …
    assert im.inception_score(sorted_logits, splits=10)[0] > 9.0  # ≈ 10, less the imbalance of 50 random draws
    assert im.inception_score(sorted_logits, splits=10, seed=None)[0] == pytest.approx(1.0)
