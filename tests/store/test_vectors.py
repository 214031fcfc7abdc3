"""VectorIndex against brute-force numpy cosine search, its files and threads; rank fusion."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from genlab.errors import ConfigError, DataError, StoreError
from genlab.store.vectors import VectorIndex, reciprocal_rank_fusion

DIM = 32


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(ids, vectors, queries, k, allowed=None):
    """Top-k (id, cosine) per query by numpy, restricted to ``allowed`` ids when given."""
    keep = np.ones(len(ids), bool) if allowed is None else np.isin(ids, list(allowed))
    ids, scores = ids[keep], queries.astype(np.float64) @ vectors[keep].T.astype(np.float64)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[(int(ids[j]), float(row[j])) for j in o] for row, o in zip(scores, order, strict=True)]


def assert_same_results(got, expected):
    assert [[i for i, _ in row] for row in got] == [[i for i, _ in row] for row in expected]
    np.testing.assert_allclose([s for row in got for _, s in row], [s for row in expected for _, s in row], atol=1e-5)


@pytest.fixture
def filled():
    rng = np.random.default_rng(0)
    ids = rng.choice(10**12, 3000, replace=False).astype(np.int64)  # sparse, unordered ids
    vectors = unit(rng, 3000)
    index = VectorIndex(DIM)
    index.add(ids, vectors)
    return index, ids, vectors, rng


def test_search_equals_brute_force_cosine(filled):
    index, ids, vectors, rng = filled
    queries = unit(rng, 7)
    assert len(index) == 3000 and sorted(index.ids()) == sorted(ids)
    assert_same_results(index.search(queries, 10), brute_force(ids, vectors, queries, 10))
    assert_same_results(index.search(queries[0], 5), brute_force(ids, vectors, queries[:1], 5))  # (D,) query
    assert index.search(vectors[42], 1)[0][0][0] == ids[42]


def test_filtered_search_is_exact_top_k_among_allowed_ids(filled):
    index, ids, vectors, rng = filled
    queries = unit(rng, 5)
    allowed = set(rng.choice(ids, 30, replace=False).tolist()) | {7, 8}  # 7, 8: ids not in the index
    assert_same_results(index.search(queries, 10, allowed_ids=allowed), brute_force(ids, vectors, queries, 10, allowed))
    few = set(ids[:3].tolist())  # fewer allowed than k
    got = index.search(queries, 10, allowed_ids=few)
    assert all(len(row) == 3 and {i for i, _ in row} == few for row in got)
    assert index.search(queries, 10, allowed_ids=set()) == [[]] * 5


def test_add_replaces_existing_ids_and_remove(filled):
    index, ids, vectors, rng = filled
    new = unit(rng, 2)
    index.add(ids[:2], new)
    assert len(index) == 3000
    assert [row[0] for row in index.search(new, 1)] == [(ids[0], pytest.approx(1.0)), (ids[1], pytest.approx(1.0))]
    assert index.search(vectors[0], 1)[0][0][0] != ids[0]  # the old vector is gone
    assert index.remove([ids[5], ids[6], 7]) == 2  # 7 was never added
    assert len(index) == 2998 and ids[5] not in set(index.ids())
    assert all(i not in (ids[5], ids[6]) for i, _ in index.search(vectors[5], 3000)[0])
    assert index.remove([]) == 0


def test_small_and_empty_indexes():
    index = VectorIndex(4)
    assert index.search(np.eye(4, dtype=np.float32)[0], 3) == [[]]
    index.add([10, 20], np.eye(4, dtype=np.float32)[:2])
    assert index.search(np.eye(4)[0], 5) == [[(10, 1.0), (20, 0.0)]]  # float64 queries are accepted


def test_save_load_round_trip(filled, tmp_path):
    index, _, vectors, rng = filled
    path = tmp_path / "sub" / "vectors.faiss"
    index.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["vectors.faiss"]  # no temp file left behind
    loaded = VectorIndex.load(path, DIM)
    np.testing.assert_array_equal(loaded.ids(), index.ids())
    queries = unit(rng, 3)
    assert loaded.search(queries, 10) == index.search(queries, 10)
    loaded.add([1], vectors[:1])  # still a working, mutable index
    assert len(loaded) == 3001
    assert len(VectorIndex.load(tmp_path / "absent.faiss", DIM)) == 0


def test_load_errors_name_the_file_and_the_fix(filled, tmp_path):
    index, *_ = filled
    path = tmp_path / "vectors.faiss"
    path.write_bytes(b"not a faiss index at all")
    with pytest.raises(StoreError, match=r"vectors\.faiss is corrupt .*rebuild it") as err:
        VectorIndex.load(path, DIM)
    assert "\n" not in str(err.value) and "index_read.cpp" not in str(err.value)
    index.save(path)
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    with pytest.raises(StoreError, match="is corrupt"):
        VectorIndex.load(path, DIM)
    index.save(path)
    with pytest.raises(StoreError, match="holds 32-d vectors but the embedder gives 384-d"):
        VectorIndex.load(path, 384)


def test_input_errors_teach():
    index = VectorIndex(DIM)
    rng = np.random.default_rng(1)
    with pytest.raises(DataError, match=r"must be \(N, 32\) for this 32-d index; got shape \(2, 16\)"):
        index.add([1, 2], unit(rng, 2, 16))
    with pytest.raises(DataError, match="unit L2 norm"):
        index.add([1], unit(rng, 1) * 2)
    with pytest.raises(DataError, match="NaN or infinite"):
        index.add([1], np.full((1, DIM), np.nan, np.float32))
    with pytest.raises(DataError, match="floating point"):
        index.add([1], np.ones((1, DIM), np.int64))
    with pytest.raises(DataError, match="2 ids for 1 vectors"):
        index.add([1, 2], unit(rng, 1))
    with pytest.raises(DataError, match="ids repeat"):
        index.add([3, 3], unit(rng, 2))
    with pytest.raises(DataError, match="integers"):
        index.add(["a"], unit(rng, 1))
    with pytest.raises(ConfigError, match="k=0 must be a positive integer"):
        index.search(unit(rng, 1), 0)
    with pytest.raises(DataError, match="query must be"):
        index.search(np.ones(DIM + 1, np.float32), 1)
    with pytest.raises(ConfigError, match="dim"):
        VectorIndex(0)


def test_concurrent_adds_and_searches():
    index = VectorIndex(DIM)
    rng = np.random.default_rng(2)
    vectors = unit(rng, 1600)
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for start in range(t * 200, (t + 1) * 200, 10):
                index.add(np.arange(start, start + 10), vectors[start : start + 10])
                index.search(vectors[start], 5)
        except BaseException as exc:  # surfaced below: a thread's exception would be lost
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(index) == 1600 and sorted(index.ids()) == list(range(1600))
    assert [row[0][0] for row in index.search(vectors[::100], 1)] == list(range(0, 1600, 100))


# --- rank fusion ---------------------------------------------------------------------------------
def test_reciprocal_rank_fusion_hand_computed():
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1, 4]])
    expected = [(1, 1 / 61 + 1 / 62), (3, 1 / 63 + 1 / 61), (2, 1 / 62), (4, 1 / 63)]
    assert [d for d, _ in fused] == [d for d, _ in expected]
    assert [s for _, s in fused] == pytest.approx([s for _, s in expected], abs=1e-15)
    assert reciprocal_rank_fusion([[5], [6]]) == [(5, 1 / 61), (6, 1 / 61)]  # ties: first appearance
    assert reciprocal_rank_fusion([[6], [5]]) == [(6, 1 / 61), (5, 1 / 61)]
    weighted = reciprocal_rank_fusion([[1, 2], [2, 1]], k=0, weights=[2.0, 1.0])
    assert weighted == [(1, pytest.approx(2 / 1 + 1 / 2)), (2, pytest.approx(2 / 2 + 1 / 1))]
    assert reciprocal_rank_fusion([[1, 1, 2]], k=0) == [(1, 1.0), (2, pytest.approx(1 / 3))]  # repeat: best rank
    assert reciprocal_rank_fusion([]) == []
    with pytest.raises(ConfigError, match="one weight per ranking"):
        reciprocal_rank_fusion([[1], [2]], weights=[1.0])
