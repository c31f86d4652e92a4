"""The compiled k-means kernels against the numpy code they replaced (tests/naive_kmeans.py), bit for
bit, and the error-budget search's one-pass helpers against the numpy functions they stand for."""
import ml_dtypes
import numpy as np
import pytest
from naive_kmeans import finalize, lloyd_sorted

from dcformat.compress import magnitude_mask, relative_error
from dcformat.compress.sharing import _finalize, _kmeans_kernels, _lloyd_sorted
from dcformat.pack.budget import TensorSearch, unique_values
from dcformat.tensors import CodebookTensor


def _values(rng, kind, n):
    """Weights of the kinds that stress Lloyd's: peaked, rounded (many ties), bimodal (empty
    clusters to relocate), tiny values next to large ones (distances equal in float64), integers
    symmetric around the centroids (exact distance ties)."""
    if kind == "laplace":
        x = rng.laplace(size=n)
    elif kind == "rounded":
        x = np.round(rng.normal(size=n), int(rng.integers(0, 3)))
    elif kind == "bimodal":
        x = np.concatenate([rng.normal(-1, 0.05, n // 2), rng.normal(1, 0.05, n - n // 2)])
    elif kind == "tiny":
        x = rng.normal(size=n) * 1e-38
        x[:3] = [0.3, -0.2, 0.1]
    else:
        x = rng.integers(-20, 21, size=n).astype(np.float64)
    return x.astype(np.float32).astype(np.float64)


KINDS = ["laplace", "rounded", "bimodal", "tiny", "integers"]


@pytest.mark.parametrize("kind", KINDS)
def test_lloyd_and_finalize_match_the_numpy_reference_bit_for_bit(kind):
    rng = np.random.default_rng(KINDS.index(kind))
    for _ in range(60):
        x = _values(rng, kind, int(rng.integers(2, 3000)))
        u, counts = np.unique(x, return_counts=True)
        k = int(rng.integers(1, min(u.size, 300) + 1))
        if u.size <= k:
            continue
        iters = int(rng.choice([0, 1, 2, 5, 30, 300]))
        c0 = np.linspace(u[0], u[-1], k)
        expected = lloyd_sorted(u, counts, c0, iters)
        got = _lloyd_sorted(u, counts, c0, iters)
        assert got.dtype == np.float64 and np.array_equal(got.view(np.int64), expected.view(np.int64))
        ce, le = finalize(u, expected)
        cg, lg = _finalize(u, got)
        assert np.array_equal(cg.view(np.int32), ce.view(np.int32)) and np.array_equal(lg, le)


def test_relocation_picks_the_farthest_values_with_ties_to_the_lower_value():
    # Two clusters of integers and 4 empty ones: the far values tie in distance in pairs.
    u = np.arange(-10.0, 11.0)
    counts = np.ones(u.size, np.int64)
    c0 = np.array([-10.0, -9.5, -9.2, -9.1, -9.05, 10.0])
    for iters in (1, 2, 3, 300):
        expected = lloyd_sorted(u, counts, c0, iters)
        assert np.array_equal(_lloyd_sorted(u, counts, c0, iters), expected)
        assert np.count_nonzero(expected > -8) >= 3  # the empty centroids moved out of [-10, -9]


def test_relocation_breaks_a_tie_in_distance_by_the_lower_value():
    from naive_kmeans import relocate_empty

    from dcformat.kernels.kmeans import _relocate_empty

    u = np.arange(-10.0, 11.0)
    bounds = np.array([0, 1, 1, 1, 1, 21])  # -10 alone, three empty clusters, -9..10 around 0.5
    c = np.array([-10.0, -9.5, -9.2, -9.1, 0.5])
    empty = np.array([False, True, True, True, False])
    # farthest from 0.5: -9 and 10 (9.5), then -8 and 9 (8.5): the third empty one takes -8
    expected = np.array([-10.0, -9.0, -8.0, 0.5, 10.0])
    assert np.array_equal(relocate_empty(u, bounds, c.copy(), empty), expected)
    assert np.array_equal(_relocate_empty(u, bounds, c.copy(), empty), expected)


def test_unique_values_is_numpy_unique_with_positive_zero():
    rng = np.random.default_rng(5)
    for trial in range(120):
        x = rng.normal(size=int(rng.integers(1, 4000)))
        if trial % 2:
            x = np.round(x, 1)
        if trial % 3 == 0:
            x[:: 5] = -0.0
        x = x.astype(np.float64 if trial % 7 == 0 else np.float32)
        u, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
        U, I, C = unique_values(x)
        assert U.dtype == x.dtype and np.array_equal(U, u) and not np.any(np.signbit(U[U == 0]))
        assert np.array_equal(I, inverse.reshape(-1)) and np.array_equal(C, counts)
        assert np.array_equal(U[I], x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, ml_dtypes.bfloat16])
def test_search_masks_are_magnitude_masks(dtype):
    rng = np.random.default_rng(1)
    for trial in range(40):
        x = rng.normal(size=(int(rng.integers(1, 50)), int(rng.integers(1, 50))))
        if trial % 2:
            x = np.round(x, 1)  # equal magnitudes of both signs: ties go to the lower index
        x[0, 0] = -0.0
        x = x.astype(dtype)
        search = TensorSearch(x)
        for sparsity in (0.1, 0.25, 0.5, 0.75, 0.9, 0.999):
            assert np.array_equal(search.mask(sparsity), magnitude_mask(x, sparsity)), (trial, sparsity)


def test_masked_counts_and_cluster_totals():
    rng = np.random.default_rng(2)
    kernels = _kmeans_kernels()
    inverse = rng.integers(0, 50, size=10_000)
    mask = rng.random(10_000) < 0.3
    assert np.array_equal(kernels.masked_counts(inverse, mask, 60), np.bincount(inverse[mask], minlength=60))
    u = np.sort(rng.normal(size=200))
    counts = rng.integers(1, 5, size=200)
    labels = np.sort(rng.integers(0, 8, size=200))
    decoded = rng.normal(size=8)
    weight, err2 = kernels.cluster_totals(labels, counts, u, decoded, 8)
    assert np.array_equal(weight, np.bincount(labels, weights=counts, minlength=8))
    assert err2 == pytest.approx(float((counts * (u - decoded[labels]) ** 2).sum()), rel=1e-12)


def test_relative_error_in_blocks_equals_the_formula():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(1100, 1000)).astype(np.float32)  # more than one block
    indices = rng.integers(-1, 16, size=w.shape).astype(np.int32)
    stored = CodebookTensor(np.linspace(-2, 2, 16).astype(np.float32), indices, np.float32)
    dense = stored.decode().astype(np.float64)
    expected = np.linalg.norm(w.astype(np.float64) - dense) / np.linalg.norm(w.astype(np.float64))
    assert relative_error(w, stored) == pytest.approx(expected, rel=1e-12)
    assert relative_error(w, dense) == pytest.approx(expected, rel=1e-12)
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.zeros(3), np.ones(3)) == float("inf")
    with pytest.raises(ValueError, match="shape"):
        relative_error(w, stored.indices[:5])


def test_kernels_release_the_gil():
    """The packer runs error-budget searches of several tensors on threads at once."""
    from dcformat.kernels import kmeans

    for name in ("prefix_sums", "cuts", "lloyd_sorted", "nearest_sorted", "cluster_totals", "masked_counts",
                 "value_keys", "unique_from_keys", "magnitude_threshold", "magnitude_keep"):
        assert getattr(kmeans, name).targetoptions.get("nogil") is True, name


@pytest.mark.parametrize("u_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c_dtype", [np.int32, np.int64, np.uint32])
def test_prefix_sums_are_numpy_cumsum_of_float64_products(u_dtype, c_dtype):
    """One kernel for every input type: each product rounded once in float64, summed in order."""
    from dcformat.kernels import kmeans

    rng = np.random.default_rng(int(np.dtype(u_dtype).itemsize * 10 + np.dtype(c_dtype).itemsize))
    u = np.sort(rng.normal(0, 0.05, 5000)).astype(u_dtype)
    counts = rng.integers(1, 100_000, 5000).astype(c_dtype)
    cum_n, cum_s = kmeans.prefix_sums(u, counts)
    expected_s = np.concatenate([[0.0], np.cumsum(counts.astype(np.float64) * u.astype(np.float64))])
    expected_n = np.concatenate([[0.0], np.cumsum(counts.astype(np.float64))])
    assert cum_s.dtype == np.float64 and cum_s.tobytes() == expected_s.tobytes()
    assert cum_n.tobytes() == expected_n.tobytes()
