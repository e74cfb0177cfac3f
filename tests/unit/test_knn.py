"""Exact k-NN (ml.metrics.exact_knn) against brute-force numpy in float64, and against faiss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from ml.metrics import exact_knn
from ml.metrics.exact_knn import knn


def brute_force(q: np.ndarray, r: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Float64 distances of every pair; a stable sort breaks ties by the smaller index."""
    dist, idx = [], []
    for rows in np.array_split(q, max(1, q.shape[0] // 32)):
        diff = rows[:, None, :].astype(np.float64) - r[None, :, :].astype(np.float64)
        d2 = (diff**2).sum(-1)
        order = np.argsort(d2, axis=1, kind="stable")[:, :k]
        dist.append(np.sqrt(np.take_along_axis(d2, order, axis=1)))
        idx.append(order)
    return np.concatenate(dist), np.concatenate(idx)


def tied_data(seed: int = 0, n: int = 150, d: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Reference with duplicated rows and coarse values (many equal distances); queries that
    include copies of reference rows (distance 0, tied with the copies' duplicates)."""
    rng = np.random.default_rng(seed)
    reference = np.round(rng.normal(size=(n, d)), 0).astype(np.float32)
    reference[n // 2 : n // 2 + 20] = reference[:20]
    queries = np.round(rng.normal(size=(40, d)), 0).astype(np.float32)
    queries[:5] = reference[:5]
    return queries, reference


def digits(offset: float = 0.0, scale: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten 8 x 8 digits, each pixel repeated `scale` x `scale`
    (integers 0-16, so many tied distances), plus `offset`: the last 600 query the first
    1,197. At scale 2, 600 x 256 is above faiss's threshold (128,000) for its BLAS path, the
    one large searches take."""
    pixels = load_digits().images.astype(np.float32)
    pixels = pixels.repeat(scale, axis=1).repeat(scale, axis=2)
    vectors = pixels.reshape(len(pixels), -1) + np.float32(offset)
    return vectors[1197:], vectors[:1197]


def assert_exact(queries: np.ndarray, reference: np.ndarray, k: int, **options: object) -> None:
    distances, indices = knn(queries, reference, k, **options)  # type: ignore[arg-type]
    expected_d, expected_i = brute_force(queries, reference, k)
    assert indices.dtype == np.int64 and distances.dtype == np.float32
    np.testing.assert_array_equal(indices, expected_i)
    np.testing.assert_allclose(distances, expected_d, rtol=1e-6, atol=1e-6)


# Chunks smaller than k, of one row, and not dividing the 150 reference rows.
@pytest.mark.parametrize("chunk_rows", [1, 3, 7, 64, None])
def test_knn_equals_brute_force_with_ties(chunk_rows: int | None) -> None:
    queries, reference = tied_data()
    assert_exact(queries, reference, 5, chunk_rows=chunk_rows)


def test_knn_equals_brute_force_on_continuous_data() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(300, 32)).astype(np.float32)
    assert_exact(rng.normal(size=(50, 32)).astype(np.float32), reference, 7, chunk_rows=100)


def test_knn_equals_brute_force_on_digits_in_every_merge_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Small groups and query blocks so that both the screened merge and the dense top-k occur
    # (41 and 19 of 60 blocks), on real images with many ties.
    monkeypatch.setattr(exact_knn, "_GROUP", 8)
    monkeypatch.setattr(exact_knn, "_QUERY_BLOCK_ROWS", 100)
    queries, reference = digits(scale=1)
    assert_exact(queries, reference, 10, chunk_rows=128)


def test_knn_is_exact_for_offset_float64_data_near_copies() -> None:
    # A large common offset (like a -1 background) and near-copies: cancellation territory.
    rng = np.random.default_rng(2)
    reference = 500.0 + rng.normal(size=(120, 16))
    queries = reference[:30] + rng.normal(scale=1e-4, size=(30, 16))
    assert_exact(queries, reference, 4, chunk_rows=50)


def test_knn_is_exact_far_from_the_origin_where_faiss_is_not() -> None:
    # Digits shifted by 1e4 (still exact in float32): ||x||^2 ~ 2.6e10, whose float32 spacing
    # (2048) dwarfs the differences between neighbour distances, so the expansion
    # ||q||^2 + ||r||^2 - 2 q.r that faiss's IndexFlatL2 ranks by cannot tell them apart.
    faiss = pytest.importorskip("faiss")  # a test dependency (pyproject.toml [test])
    queries, reference = digits(offset=1e4)
    expected_d, expected = brute_force(queries, reference, 5)
    distances, indices = knn(queries, reference, 5)
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(distances, expected_d, rtol=1e-6)
    index = faiss.IndexFlatL2(reference.shape[1])
    index.add(reference)
    _, faiss_idx = index.search(queries, 5)
    same_sets = (np.sort(faiss_idx, axis=1) == np.sort(expected, axis=1)).all(axis=1)
    assert same_sets.mean() < 0.1  # measured: 0 of 600 rows
    # Without the offset the same faiss index agrees (up to the order of tied neighbours).
    plain_q, plain_r = digits()
    index = faiss.IndexFlatL2(plain_r.shape[1])
    index.add(plain_r)
    faiss_d2, _ = index.search(plain_q, 5)
    expected_d, _ = brute_force(plain_q, plain_r, 5)
    np.testing.assert_allclose(np.sqrt(np.maximum(faiss_d2, 0)), expected_d, rtol=1e-5)


def test_knn_range_query_fallback_stays_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    # No spare candidates and a bound as wide as bfloat16 matmuls: most rows take the
    # fallback path, which must give the same answer.
    monkeypatch.setattr(exact_knn, "_EXTRA_CANDIDATES", 0)
    monkeypatch.setattr(exact_knn, "_matmul_input_roundoff", lambda device: 2.0**-8)
    searched: list[int] = []
    range_query = exact_knn._ExactSearch._range_query

    def spy(self, rows, limit):  # type: ignore[no-untyped-def]
        searched.extend(rows.tolist())
        return range_query(self, rows, limit)

    monkeypatch.setattr(exact_knn._ExactSearch, "_range_query", spy)
    queries, reference = tied_data(seed=3)
    assert_exact(queries, reference, 5, chunk_rows=16)
    assert len(searched) > len(queries) // 2


def test_knn_edge_sizes() -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(size=(6, 3)).astype(np.float32)
    d, i = knn(np.empty((0, 3), np.float32), reference, 2)
    assert d.shape == i.shape == (0, 2)
    assert_exact(reference[:1], reference, 6)  # one query, k = N
    assert_exact(rng.normal(size=(4, 3)), reference[:1], 1)  # one reference row
    d, i = knn(torch.from_numpy(reference), reference, 1)  # tensors in, each row its own NN
    np.testing.assert_array_equal(i[:, 0], np.arange(6))
    np.testing.assert_array_equal(d, 0.0)


def test_faiss_backend_gives_the_same_indices_without_ties() -> None:
    pytest.importorskip("faiss")
    rng = np.random.default_rng(5)
    reference = rng.normal(size=(400, 24)).astype(np.float32)
    queries = rng.normal(size=(60, 24)).astype(np.float32)
    d_ours, i_ours = knn(queries, reference, 5)
    d_faiss, i_faiss = knn(queries, reference, 5, backend="faiss")
    np.testing.assert_array_equal(i_faiss, i_ours)
    np.testing.assert_allclose(d_faiss, d_ours, rtol=1e-4)


def test_knn_rejects_bad_arguments() -> None:
    reference = np.zeros((4, 3), np.float32)
    query = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="exceeds"):
        knn(query, reference, 5)
    with pytest.raises(ValueError, match="positive integer"):
        knn(query, reference, 0)
    with pytest.raises(ValueError, match="dimensions"):
        knn(np.zeros((2, 4), np.float32), reference, 1)
    with pytest.raises(ValueError, match="2-D"):
        knn(np.zeros(3), reference, 1)
    with pytest.raises(ValueError, match="backend"):
        knn(query, reference, 1, backend="annoy")
    with pytest.raises(ValueError, match="NaN"):
        knn(np.full((1, 3), np.nan), reference, 1)
    with pytest.raises(ValueError, match="NaN"):
        knn(query, np.full((4, 3), np.inf), 1)


def test_neighbours_module_reexports_the_exact_search() -> None:
    from ml.metrics import neighbours

    assert neighbours.knn is knn


def test_knn_leaves_torch_thread_count_as_it_was() -> None:
    threads = torch.get_num_threads()
    queries, reference = tied_data()
    knn(queries, reference, 3, chunk_rows=64)
    with pytest.raises(ValueError, match="NaN"):
        knn(queries, np.full_like(reference, np.nan), 3)
    assert torch.get_num_threads() == threads
