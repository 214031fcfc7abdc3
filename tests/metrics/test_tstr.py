"""TSTR: a perfect generator scores like real data, a useless one like chance."""

from __future__ import annotations

import numpy as np
import pytest

from genlab.data.datasets import load_images
from genlab.errors import DataError
from genlab.metrics.tstr import tstr


@pytest.fixture(scope="module")
def digits():
    return load_images("digits").split(val_fraction=0.2, seed=0)


def test_real_copies_score_like_real_and_noise_like_chance(digits):
    train, val = digits
    real = (train.images, train.labels)
    perfect = tstr(real, real, (val.images, val.labels), 10, steps=60)
    assert perfect["real_accuracy"] > 0.8
    assert perfect["synthetic_accuracy"] == pytest.approx(perfect["real_accuracy"], abs=0.02)  # same data, same seed
    rng = np.random.default_rng(0)
    noise = (rng.integers(0, 256, train.images.shape, dtype=np.uint8), rng.integers(0, 10, len(train)))
    useless = tstr(noise, real, (val.images, val.labels), 10, steps=60)
    assert useless["synthetic_accuracy"] < 0.3
    assert useless["augmentation_gain"] == pytest.approx(useless["augmented_accuracy"] - useless["real_accuracy"])


def test_tstr_needs_labels_and_one_size(digits):
    train, val = digits
    with pytest.raises(DataError, match="needs a label for every synthetic image"):
        tstr((train.images, None), (train.images, train.labels), (val.images, val.labels), 10)
    small = train.images[:, :4, :4]
    with pytest.raises(DataError, match="all images at one size"):
        tstr((small, train.labels), (train.images, train.labels), (val.images, val.labels), 10)
