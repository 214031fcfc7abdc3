"""A vector index for the generation store, and reciprocal rank fusion of ranked lists.

:class:`VectorIndex` keeps unit-norm float32 vectors under int64 ids in a FAISS flat
inner-product index, so a search's score is the cosine similarity. :func:`reciprocal_rank_fusion`
merges the rankings of several searches (text, image, keyword) into one.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from genlab.errors import ConfigError, DataError, StoreError
from genlab.io import atomic_path

NORM_TOLERANCE = 1e-3  # |‖v‖ − 1| allowed: float32 rounding of normalised embeddings is ~1e-7


FEW_QUERIES = 16  # below this many queries, search on one thread (measured: benchmarks/store.py)


class VectorIndex:
    """Exact cosine-similarity search over unit vectors with int64 ids.

    A flat (brute-force) index: a search scores every vector, ~10 ms per query for 100k × 384 on one
    CPU core (~0.7 ms when ``allowed_ids`` keeps 1%: only those are scored), so exact search is
    right at the store's scale (up to ~1e6 vectors); an approximate index (IVF, HNSW) would trade
    recall for speed we do not need. ``add``, ``remove``, ``search`` and ``save`` may be called
    from several threads (they take turns under one lock).
    """

    def __init__(self, dim: int) -> None:
        if not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ConfigError(f"dim={dim!r} must be a positive integer (the embedder's dimension).")
        self.dim = int(dim)
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        self._lock = threading.RLock()

    # --- contents --------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        """int64 (N,): the ids in the index, in insertion order."""
        with self._lock:
            return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def add(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Add ``vectors`` (N, dim) unit-norm floats under ``ids`` (N,); an id already present is replaced."""
        ids = _check_ids(ids)
        vectors = self._check_vectors(vectors, "vectors")
        if len(ids) != len(vectors):
            raise DataError(f"got {len(ids)} ids for {len(vectors)} vectors; give one id per vector.")
        if len(np.unique(ids)) != len(ids):
            raise DataError("ids repeat within one add; give each vector its own id.")
        if len(ids) == 0:
            return
        with self._lock:
            self._index.remove_ids(faiss.IDSelectorBatch(ids))
            self._index.add_with_ids(vectors, ids)

    def remove(self, ids: Iterable[int] | np.ndarray) -> int:
        """Remove the vectors of ``ids`` (ids not present are ignored); returns how many were removed."""
        ids = _check_ids(ids)
        if len(ids) == 0:
            return 0
        with self._lock:
            return int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))

    # --- search ----------------------------------------------------------------------------
    def search(
        self, query: np.ndarray, k: int, *, allowed_ids: set[int] | None = None
    ) -> list[list[tuple[int, float]]]:
        """The ``k`` most similar vectors to each query: (dim,) or (Q, dim) unit-norm floats →
        one list per query of (id, cosine similarity), best first; fewer than ``k`` when the index
        (or ``allowed_ids``) holds fewer.

        ``allowed_ids`` restricts the search to those ids, exactly: the result is the top ``k``
        among them, not a filtered top ``k`` of everything.
        """
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ConfigError(f"k={k!r} must be a positive integer (how many results per query).")
        query = np.asarray(query)
        queries = self._check_vectors(query[None] if query.ndim == 1 else query, "query")
        params = None
        if allowed_ids is not None:
            allowed = _check_ids(list(allowed_ids))
            if len(allowed) == 0:
                return [[] for _ in range(len(queries))]
            selector = faiss.IDSelectorBatch(allowed)  # bound to a name: params does not own it
            params = faiss.SearchParameters(sel=selector)
        with self._lock:
            k = min(int(k), len(self))
            if k == 0 or len(queries) == 0:
                return [[] for _ in range(len(queries))]
            threads = faiss.omp_get_max_threads()
            if len(queries) < FEW_QUERIES:  # a query or two: OpenMP's start-up costs more than it saves
                faiss.omp_set_num_threads(1)
            try:
                scores, found = self._index.search(queries, k, params=params)
            finally:
                faiss.omp_set_num_threads(threads)
        # faiss pads with id −1 where fewer than k vectors qualify
        return [[(int(i), float(s)) for i, s in zip(row_ids, row_scores, strict=True) if i != -1]
                for row_ids, row_scores in zip(found, scores, strict=True)]  # fmt: skip

    # --- files -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the index to ``path`` atomically (a temp file beside it, then renamed onto it)."""
        path = Path(path)
        with self._lock, atomic_path(path) as tmp:
            faiss.write_index(self._index, str(tmp))
        return path

    @classmethod
    def load(cls, path: str | Path, dim: int) -> VectorIndex:
        """The index saved at ``path``; an empty one if there is no file yet."""
        path = Path(path)
        index = cls(dim)
        if not path.exists():
            return index
        rebuild = "it is derived data: delete it and rebuild it from the store's embeddings"
        try:
            loaded = faiss.read_index(str(path))
        except RuntimeError as exc:
            # faiss prefixes its C++ location ("Error in … at index_read.cpp:1685: "); keep the reason
            reason = re.sub(r"^Error in .*? at \S+:\d+: ", "", str(exc).strip().splitlines()[0]) if str(exc) else "?"
            raise StoreError(f"vector index {path} is corrupt ({reason}); {rebuild}.") from None
        if not isinstance(loaded, faiss.IndexIDMap2) or loaded.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise StoreError(f"{path} is not a genlab vector index (a {type(loaded).__name__}); {rebuild}.")
        if loaded.d != index.dim:
            raise StoreError(
                f"vector index {path} holds {loaded.d}-d vectors but the embedder gives {index.dim}-d; "
                f"it was built with another embedder: {rebuild}."
            )
        index._index = loaded
        return index

    # --- validation ------------------------------------------------------------------------
    def _check_vectors(self, vectors: Any, what: str) -> np.ndarray:
        """float (N, dim), finite, unit rows → C-contiguous float32, or a one-line error."""
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise DataError(f"{what} must be (N, {self.dim}) for this {self.dim}-d index; got shape {vectors.shape}.")
        if not np.issubdtype(vectors.dtype, np.floating):
            raise DataError(f"{what} must be floating point (float32); got {vectors.dtype}.")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not np.isfinite(vectors).all():
            raise DataError(f"{what} contain NaN or infinite values; check the embedder's input.")
        norms = np.linalg.norm(vectors, axis=1)
        if len(norms) and np.abs(norms - 1.0).max() > NORM_TOLERANCE:
            bad = int(np.argmax(np.abs(norms - 1.0)))
            raise DataError(
                f"{what} must have unit L2 norm (cosine = inner product); row {bad} has norm {norms[bad]:.4g}. "
                "Normalise with v / np.linalg.norm(v, axis=-1, keepdims=True)."
            )
        return vectors


def _check_ids(ids: Any) -> np.ndarray:
    """Integer ids → int64 (N,) (faiss reserves −1 for "no result"), or a one-line error."""
    array = np.asarray(ids)
    if array.size == 0:
        return np.zeros(0, np.int64)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"ids must be a flat sequence of integers; got {array.dtype} of shape {array.shape}.")
    if (array < 0).any():
        raise DataError(f"ids must be ≥ 0; got {int(array.min())}.")
    return np.ascontiguousarray(array, dtype=np.int64)


# --- rank fusion ---------------------------------------------------------------------------------
def reciprocal_rank_fusion(rankings: list[list[int]], *, k: int = 60,
                           weights: Sequence[float] | None = None) -> list[tuple[int, float]]:  # fmt: skip
    """Merge ranked lists of ids into one: reciprocal rank fusion (Cormack, Clarke & Büttcher,
    "Reciprocal Rank Fusion outperforms Condorcet and individual Rank Learning Methods", SIGIR 2009).

        score(d) = Σ_i w_i / (k + rank_i(d)),   rank_i(d) = 1, 2, … in list i

    summed over the lists that contain d (w_i = 1 unless ``weights`` are given; k = 60 as in the
    paper damps the weight of the very top ranks). Returns (id, score) best first; equal scores keep
    the order in which ids first appear (list by list). An id repeated within one list counts at its
    best rank.
    """
    if k < 0:
        raise ConfigError(f"k={k} must be ≥ 0 (the paper uses 60).")
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ConfigError(f"got {len(weights)} weights for {len(rankings)} rankings; give one weight per ranking.")
    scores: dict[int, float] = {}  # dicts keep insertion order = first appearance
    for ranking, weight in zip(rankings, weights, strict=True):
        seen: set[int] = set()
        for rank, doc in enumerate(ranking, start=1):
            if doc in seen:
                continue
            seen.add(doc)
            scores[doc] = scores.get(doc, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])  # stable: ties stay in first-appearance order
