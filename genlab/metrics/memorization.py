"""Memorisation audit for images: is a generated sample a near-copy of a training example?

For each generated sample, the distances d₁ ≤ d₂ to its two nearest training examples in a feature
space (the domain network's, or raw pixels). A sample is flagged as a near-copy when
d₁ / d₂ < ``ratio`` (1/3 by default: Yoon et al. 2023, "Diffusion probabilistic models generalize
when they fail to memorize"; the ratio is scale-free, so one threshold works in any feature space).
d₁ is also reported relative to the median nearest-neighbour distance *within* the training set, the
typical gap between two distinct real examples. (Text has its own audit: exact n-gram overlap,
:func:`genlab.metrics.text.ngram_overlap`.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.data.images import save_grid
from genlab.errors import DataError
from genlab.metrics.image import apply_pairwise_distances, as_features, knn_radii


def nearest_two(queries: np.ndarray, reference: np.ndarray, *, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Indices (N, 2) and distances (N, 2) of each query's two nearest reference points (float64)."""
    if len(reference) < 2:
        raise DataError(f"the memorisation audit needs at least 2 training examples; got {len(reference)}.")
    index = np.empty((len(queries), 2), dtype=np.int64)
    dist = np.empty((len(queries), 2))

    def take(d: torch.Tensor, rows: slice) -> None:
        values, idx = torch.topk(d, 2, dim=1, largest=False)
        index[rows], dist[rows] = idx.numpy(), values.numpy()

    apply_pairwise_distances(queries, reference, take, chunk=chunk)
    return index, dist


def memorization(generated: Any, training: Any, *, ratio: float = 1 / 3, top: int = 16) -> dict[str, Any]:
    """Audit generated features (N, D) against training features (M, D); JSON-ready summary.

    ``closest`` lists the ``top`` generated samples with the smallest d₁/d₂, each with its nearest
    training index, so the pairs can be looked at (:func:`save_closest_pairs`).
    """
    gen = as_features(generated, "generated features")
    train = as_features(training, "training features")
    if gen.shape[1] != train.shape[1]:
        raise DataError(f"generated features have {gen.shape[1]} dimensions, training features {train.shape[1]}.")
    index, dist = nearest_two(gen, train)
    d1, d2 = dist[:, 0], dist[:, 1]
    r = np.where(d2 > 0, d1 / np.where(d2 > 0, d2, 1.0), 0.0)  # two identical neighbours: d1 = d2 = 0, a copy
    typical = float(np.median(knn_radii(train, 1)))
    order = np.argsort(r, kind="stable")[:top]
    return {
        "near_copy_share": float((r < ratio).mean()),
        "near_copies": int((r < ratio).sum()),
        "ratio_threshold": ratio,
        "n_generated": len(gen),
        "n_training": len(train),
        "nn_distance_median": float(np.median(d1)),
        "train_nn_distance_median": typical,
        "nn_distance_relative_median": float(np.median(d1) / typical) if typical > 0 else None,
        "ratio_quantiles": {q: float(np.quantile(r, float(q))) for q in ("0.01", "0.05", "0.5")},
        "closest": [
            {"sample": int(i), "train": int(index[i, 0]), "distance": float(d1[i]), "ratio": float(r[i])} for i in order
        ],
    }


def save_closest_pairs(generated: np.ndarray, training: np.ndarray, report: dict[str, Any], path: str | Path) -> Path:
    """A PNG grid: each column one of ``report['closest']``, generated on top, its nearest training example below."""
    pairs = report["closest"]
    if not pairs:
        raise DataError("the report lists no pairs to draw.")
    top = np.stack([generated[p["sample"]] for p in pairs])
    bottom = np.stack([training[p["train"]] for p in pairs])
    save_grid(np.concatenate([top, bottom]), Path(path), ncol=len(pairs))
    return Path(path)
