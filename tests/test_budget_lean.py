"""The error-budget search's lean helpers (issue 12: a search holds a few times its tensor, not 17x)
against the plain numpy computations they replace, bit for bit; and its Lloyd's runs in slices that
a stop request (Ctrl-C) interrupts, with the same result (issue 13)."""
import ml_dtypes
import numpy as np
import pytest

from dcformat import parallel
from dcformat.compress import magnitude_mask, relative_error
from dcformat.compress.sharing import _kmeans_kernels, _lloyd_sorted
from dcformat.pack.budget import SUMS_EVERY, TensorSearch, sorted_values
from dcformat.pack.packer import _digest, _nonzero_bits, _stored_facts, compress_tensor, reconstruction
from dcformat.pack.recipe import Policy
from dcformat.tensors import CodebookTensor


def _tensor(rng, trial, dtype=np.float32):
    x = rng.normal(size=(int(rng.integers(2, 60)), int(rng.integers(2, 60))))
    if trial % 3 == 1:
        x = np.round(x, 1)  # many equal values, equal magnitudes of both signs
    if trial % 3 == 2:
        x[rng.random(x.shape) < 0.3] = 0.0
    x.flat[0] = -0.0
    return x.astype(dtype)


def _unique(x):
    u, c = np.unique(np.asarray(x).reshape(-1), return_counts=True)
    return u + u.dtype.type(0), c


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sorted_values_are_numpy_unique_with_positive_zero(dtype):
    rng = np.random.default_rng(0)
    for trial in range(30):
        x = _tensor(rng, trial, dtype).reshape(-1)
        u, c = sorted_values(x)
        eu, ec = _unique(x)
        assert u.dtype == x.dtype and np.array_equal(u.view(np.uint8), eu.view(np.uint8))
        assert np.array_equal(c, ec)


def test_kept_values_are_the_unique_values_under_the_magnitude_mask():
    rng = np.random.default_rng(1)
    for trial in range(30):
        x = _tensor(rng, trial)
        search = TensorSearch(x)
        for sparsity in (0.1, 0.25, 0.5, 0.75, 0.9, 0.999):
            mask = magnitude_mask(x, sparsity)
            us, cs, pruned = search._kept(sparsity)
            eu, ec = _unique(x[mask])
            assert pruned and np.array_equal(us.view(np.uint32), eu.view(np.uint32)) and np.array_equal(cs, ec)


def test_pairwise_norm2_is_numpy_sum_bit_for_bit():
    rng = np.random.default_rng(2)
    kernels = _kmeans_kernels()
    for n in list(range(0, 140)) + [1000, 4097, 100_003, 1 << 20]:
        u = rng.normal(size=n).astype(np.float32)
        c = rng.integers(1, 5, size=n).astype(np.int32)
        assert kernels.pairwise_norm2(u, c) == float((c.astype(np.int64) * u.astype(np.float64) ** 2).sum())


@pytest.mark.parametrize("every", [1, 3, SUMS_EVERY])
def test_sliced_lloyd_on_float32_values_and_checkpointed_sums_is_the_kernel_bit_for_bit(every):
    rng = np.random.default_rng(3)
    kernels = _kmeans_kernels()
    for trial in range(40):
        x = _tensor(rng, trial).reshape(-1)
        u32, c32 = sorted_values(x)
        u, counts = u32.astype(np.float64), c32.astype(np.int64)
        k = int(rng.integers(2, min(u.size, 64) + 1))
        if u.size <= k:
            continue
        c0 = np.linspace(u[0], u[-1], k)
        iters = int(rng.choice([0, 1, 5, 300]))
        expected = kernels.lloyd_sorted(u, counts, *kernels.prefix_sums(u, counts), c0, iters)
        sums = (*kernels.prefix_checkpoints(u32, c32, every), every)
        got = _lloyd_sorted(u32, c32, c0, iters, sums)
        assert np.array_equal(got.view(np.int64), expected.view(np.int64)), (trial, k, iters)


def test_a_stop_request_interrupts_lloyds_between_slices():
    rng = np.random.default_rng(4)
    u, counts = np.unique(rng.laplace(size=200_000).astype(np.float32).astype(np.float64), return_counts=True)
    c0 = np.linspace(u[0], u[-1], 256)
    parallel.request_stop()
    try:
        with pytest.raises(parallel.Stopped):
            _lloyd_sorted(u, counts, c0, 300)  # one slice runs (a few rounds), then the check stops it
    finally:
        parallel.clear_stop()


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16, np.float64])
def test_built_candidates_are_compress_tensor_and_their_estimates_exact(dtype):
    rng = np.random.default_rng(5)
    for trial in range(6):
        x = _tensor(rng, trial, dtype)
        search = TensorSearch(x)
        for c in search.candidates()[1:]:
            built = search.build(c.policy)
            stored, _ = compress_tensor(x, c.policy)
            assert np.array_equal(built.codebook.view(np.uint8), stored.codebook.view(np.uint8))
            assert np.array_equal(built.indices, stored.indices), (trial, c.policy.describe())
            assert relative_error(x, built) == pytest.approx(c.error, rel=1e-9, abs=1e-12)
        for step in (0.01, 0.1, 0.5):
            policy = Policy.from_dict({"step": step})
            built, (stored, _) = search.build(policy), compress_tensor(x, policy)
            assert np.array_equal(built.indices, stored.indices)
            assert np.array_equal(built.codebook, stored.codebook)


def test_stored_facts_are_those_of_the_decoded_tensor():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(1300, 1000)).astype(np.float32)  # more than one block
    x[:5] = 0.0
    indices = rng.integers(-1, 16, size=x.shape).astype(np.int32)
    for stored in (x, np.where(x > 0.5, x, 0).astype(np.float32),
                   CodebookTensor(np.linspace(-2, 2, 16).astype(np.float32), indices, np.float32)):
        dense = reconstruction(stored)
        digest, nonzeros, newly_zero, error = _stored_facts(x, stored)
        assert digest == _digest(dense)
        assert nonzeros == int(np.count_nonzero(_nonzero_bits(dense)))
        assert newly_zero == (0 if stored is x else int(np.count_nonzero(_nonzero_bits(x) & ~_nonzero_bits(dense))))
        assert error == (0.0 if stored is x else relative_error(x, dense))


def test_the_float16_grid_is_compress_tensor_and_the_zero_entry_changes_no_stream():
    from dcformat.pack.budget import _measure, _measure_grid, choose, grid_policy, grid_rung

    rng = np.random.default_rng(7)
    w = rng.laplace(0, 0.05, size=(300, 200)).astype(np.float32)
    search = TensorSearch(w)
    for budget in (0.01, 0.1, 0.6):
        for half in (False, True):
            policy = grid_policy(grid_rung(search, budget, half), half)
            stored, _ = compress_tensor(w, policy)
            built = search.build(policy)
            assert built.codebook.dtype == (np.float16 if half else np.float32)
            assert np.array_equal(built.codebook.view(np.uint8), stored.codebook.view(np.uint8))
            assert np.array_equal(built.indices, stored.indices)
            plain, lean = _measure(search, policy), _measure(search, policy, lean=True)
            assert lean[1] == plain[1] and lean[2:] == plain[2:]  # the same streams, error and bytes
            assert np.array_equal(lean[0].decode(), plain[0].decode())
            if budget == 0.01:  # few values in the zero cell: it became an explicit entry
                assert (plain[0].indices < 0).any() and not (lean[0].indices < 0).any()
    for budget in (0.01, 0.03):
        choice = choose(w, budget)
        grids = [_measure_grid(search, budget, half=half) for half in (False, True)]
        assert choice.error <= budget and choice.bytes <= min(g[4] for g in grids)
