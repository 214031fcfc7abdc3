"""The image memorisation audit finds planted copies and leaves fresh samples alone."""

from __future__ import annotations

import numpy as np
import pytest

from genlab.errors import DataError
from genlab.metrics.memorization import memorization, nearest_two, save_closest_pairs


def test_planted_copies_are_flagged_and_fresh_samples_are_not(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.standard_normal((500, 16))
    copies = train[[3, 77, 200]] + 1e-3 * rng.standard_normal((3, 16))
    fresh = rng.standard_normal((97, 16))
    report = memorization(np.concatenate([copies, fresh]), train, top=5)
    assert report["near_copies"] == 3 and report["near_copy_share"] == pytest.approx(0.03)
    pairs = sorted((p["sample"], p["train"]) for p in report["closest"][:3])
    assert pairs == [(0, 3), (1, 77), (2, 200)]
    assert report["nn_distance_relative_median"] > 0.5  # fresh samples sit as far away as real neighbours do
    images = rng.integers(0, 256, (500, 8, 8, 1), dtype=np.uint8)
    path = save_closest_pairs(images[:100], images, report, tmp_path / "pairs.png")
    assert path.stat().st_size > 0


def test_nearest_two_matches_brute_force():
    rng = np.random.default_rng(1)
    q, r = rng.standard_normal((50, 4)), rng.standard_normal((80, 4))
    index, dist = nearest_two(q, r, chunk=7)
    full = np.linalg.norm(q[:, None] - r[None], axis=-1)
    np.testing.assert_array_equal(index, np.argsort(full, axis=1)[:, :2])
    np.testing.assert_allclose(dist, np.sort(full, axis=1)[:, :2], rtol=1e-9)


def test_too_little_training_data():
    with pytest.raises(DataError, match="at least 2 training examples"):
        memorization(np.zeros((3, 4)), np.zeros((1, 4)))
