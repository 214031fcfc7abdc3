"""Usefulness of generated data: train on synthetic, test on real (TSTR), and augmentation gain.

A fixed classifier (:class:`genlab.metrics.features.DomainNet`, the same recipe and the same number
of optimiser steps each time) is trained three times and tested on the same real validation images:

- on the real training images (the baseline, "TRTR"),
- on generated labelled images only (TSTR, Esteban et al. 2017),
- on real + generated images (what a data-augmentation user wants to know).

``augmentation_gain`` is the third accuracy minus the first; ``tstr_gap`` the first minus the second.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genlab.errors import DataError
from genlab.metrics.features import check_images, classifier_accuracy, train_classifier


def tstr(synthetic: tuple[np.ndarray, np.ndarray], real_train: tuple[np.ndarray, np.ndarray],
         real_val: tuple[np.ndarray, np.ndarray], num_classes: int, *, steps: int = 300, seed: int = 0,
         device: str = "cpu") -> dict[str, Any]:  # fmt: skip
    """Each argument is (uint8 images NHWC, int labels); all three at the same image size."""
    sets = {"synthetic": synthetic, "real training": real_train, "real validation": real_val}
    for what, (images, labels) in sets.items():
        check_images(images, f"{what} images")
        if labels is None or len(labels) != len(images):
            raise DataError(f"TSTR needs a label for every {what} image; train a class-conditional model.")
    shapes = {images.shape[1:] for images, _ in sets.values()}
    if len(shapes) != 1:
        raise DataError(f"TSTR needs all images at one size; got {sorted(shapes)}.")
    val_x, val_y = real_val

    def accuracy(images: np.ndarray, labels: np.ndarray) -> float:
        net = train_classifier(images, labels, num_classes, steps=steps, seed=seed, device=device)
        return classifier_accuracy(net, val_x, val_y)

    both = (np.concatenate([real_train[0], synthetic[0]]), np.concatenate([real_train[1], synthetic[1]]))
    real_acc, syn_acc, aug_acc = accuracy(*real_train), accuracy(*synthetic), accuracy(*both)
    return {
        "real_accuracy": real_acc,
        "synthetic_accuracy": syn_acc,
        "augmented_accuracy": aug_acc,
        "augmentation_gain": aug_acc - real_acc,
        "tstr_gap": real_acc - syn_acc,
        "n_synthetic": len(synthetic[0]),
        "n_real_train": len(real_train[0]),
        "n_real_val": len(val_x),
        "classifier": f"DomainNet, {steps} AdamW steps of 128, one-cycle lr 2e-3, seed {seed}",
    }
