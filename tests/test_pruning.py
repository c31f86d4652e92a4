"""Pruning masks (dcformat.compress.pruning) against slow, obviously-correct references."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dcformat.compress import filter_masks, global_masks, magnitude_mask, sparsity_of, threshold_mask

# Small integers give many equal magnitudes, so tie-breaking is exercised.
tied_values = st.integers(-4, 4).map(float)
any_values = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
weights = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=4, max_side=6),
                     elements=st.one_of(tied_values, any_values).map(np.float32))
sparsities = st.floats(0.0, 0.999)


def naive_magnitude_mask(w, sparsity):
    """Sort |w| stably (ties keep index order) and prune the first round(sparsity * n)."""
    flat = np.abs(np.asarray(w, np.float64)).ravel()
    n_prune = int(round(sparsity * flat.size))
    keep = np.ones(flat.size, bool)
    for i in sorted(range(flat.size), key=lambda i: (flat[i], i))[:n_prune]:
        keep[i] = False
    return keep.reshape(np.shape(w))


@given(weights, sparsities)
def test_magnitude_mask_matches_naive_reference(w, s):
    mask = magnitude_mask(w, s)
    assert mask.dtype == np.bool_ and mask.shape == w.shape
    assert np.count_nonzero(~mask) == round(s * w.size)
    np.testing.assert_array_equal(mask, naive_magnitude_mask(w, s))


@given(weights, sparsities)
def test_magnitude_mask_keeps_the_largest(w, s):
    mask = magnitude_mask(w, s)
    a = np.abs(w)
    if mask.any() and (~mask).any():
        assert a[mask].min() >= a[~mask].max()


def test_magnitude_mask_breaks_ties_by_index():
    w = np.array([1.0, -1.0, 1.0, 2.0, -1.0])
    np.testing.assert_array_equal(magnitude_mask(w, 0.4), [False, False, True, True, True])
    np.testing.assert_array_equal(magnitude_mask(w, 0.6), [False, False, False, True, True])


@given(hnp.arrays(np.float64, st.integers(1, 40), elements=st.one_of(tied_values, any_values)), sparsities)
def test_magnitude_mask_in_blocks_matches_naive_reference(w, s):
    """The lean path compares |w| block by block: ties across block boundaries still go by index."""
    from dcformat.compress import pruning

    old, pruning.MASK_BLOCK = pruning.MASK_BLOCK, 3
    try:
        for x in (w, w.astype(np.float32)):
            np.testing.assert_array_equal(magnitude_mask(x, s), naive_magnitude_mask(x, s))
    finally:
        pruning.MASK_BLOCK = old


def test_magnitude_mask_of_float32_holds_no_float64_copy():
    """The mask of a float32 tensor peaks at one float32 copy of the magnitudes plus the mask
    (1.25x the tensor; it was 4.3x through float64 copies, the peak of --preset aggressive)."""
    import tracemalloc

    w = np.random.default_rng(0).normal(size=(2000, 1000)).astype(np.float32)
    tracemalloc.start()
    try:
        mask = magnitude_mask(w, 0.9)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.4 * w.nbytes, peak / w.nbytes
    assert np.count_nonzero(~mask) == 0.9 * w.size


def test_magnitude_mask_exact_counts_on_a_large_tensor():
    w = np.random.default_rng(0).normal(size=(300, 784)).astype(np.float32)
    for s in (0.0, 0.08, 0.5, 0.92, 0.999):
        assert np.count_nonzero(~magnitude_mask(w, s)) == round(s * w.size)
    assert magnitude_mask(w, 0.0).all()


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "0.5", None, True])
def test_sparsity_is_validated(bad):
    with pytest.raises(ValueError, match="sparsity"):
        magnitude_mask(np.ones(4), bad)
    with pytest.raises(ValueError, match="sparsity"):
        filter_masks(np.ones((2, 2)), bad)
    with pytest.raises(ValueError, match="sparsity"):
        global_masks({"a": np.ones(4)}, bad)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused(bad):
    w = np.array([1.0, bad, 2.0])
    for call in (lambda: magnitude_mask(w, 0.5), lambda: threshold_mask(w, 1.0),
                 lambda: global_masks({"x": w}, 0.5), lambda: filter_masks(w.reshape(1, 3), 0.5)):
        with pytest.raises(ValueError, match="NaN or infinite"):
            call()


def test_non_numeric_weights_are_refused():
    with pytest.raises(ValueError, match="real numeric"):
        magnitude_mask(np.array([1 + 1j, 2]), 0.5)
    with pytest.raises(ValueError, match="real numeric"):
        magnitude_mask(np.array(["a", "b"]), 0.5)


def test_integer_and_half_precision_weights_are_accepted():
    w = np.arange(-5, 5)
    assert np.count_nonzero(~magnitude_mask(w, 0.3)) == 3
    assert np.count_nonzero(~magnitude_mask(w.astype(np.float16), 0.3)) == 3


# --- threshold rule -----------------------------------------------------------------------------


@given(hnp.arrays(np.float64, st.integers(1, 60), elements=st.one_of(tied_values, any_values)),
       st.floats(0.0, 3.0))
def test_threshold_mask_matches_a_loop(w, quality):
    threshold = quality * np.std(w)
    expected = [not (abs(x) < threshold) for x in w]
    np.testing.assert_array_equal(threshold_mask(w, quality), expected)


def test_threshold_mask_keeps_a_weight_exactly_at_the_threshold():
    w = np.array([[-1.0, 1.0], [1.0, -1.0]])  # std = 1
    assert threshold_mask(w, 1.0).all()
    assert not threshold_mask(w, 1.0 + 1e-12).any()
    assert threshold_mask(w, 0.0).all()


def test_threshold_mask_counts_zeros_in_the_std():
    w = np.array([0.0, 0.0, 3.0, -3.0])  # std over all four = 3 / sqrt(2)
    np.testing.assert_array_equal(threshold_mask(w, 1.0), [False, False, True, True])
    np.testing.assert_array_equal(threshold_mask(w, 1.5), [False, False, False, False])


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "1"])
def test_threshold_quality_is_validated(bad):
    with pytest.raises(ValueError, match="quality"):
        threshold_mask(np.ones(3), bad)


# --- global threshold ---------------------------------------------------------------------------


def layers(seed=0):
    rng = np.random.default_rng(seed)
    return {"conv1": rng.normal(0, 0.3, (6, 1, 5, 5)), "conv2": rng.normal(0, 0.05, (16, 6, 5, 5)),
            "ip1": rng.normal(0, 0.02, (120, 400)).astype(np.float32), "ip2": rng.normal(0, 0.1, (10, 120))}


@pytest.mark.parametrize("s", [0.0, 0.3, 0.9, 0.99])
def test_global_masks_use_one_threshold(s):
    ws = layers()
    masks = global_masks(ws, s)
    assert list(masks) == list(ws)
    total = sum(w.size for w in ws.values())
    assert sum(np.count_nonzero(~m) for m in masks.values()) == round(s * total)
    kept = [np.abs(ws[n][m]).min() for n, m in masks.items() if m.any()]
    pruned = [np.abs(ws[n][~m]).max() for n, m in masks.items() if (~m).any()]
    if kept and pruned:
        assert min(kept) >= max(pruned)  # every layer is cut at the same magnitude
    for name, m in masks.items():
        assert m.shape == ws[name].shape and m.dtype == np.bool_


def test_global_masks_equal_a_magnitude_mask_over_the_concatenation():
    ws = layers(1)
    flat = np.concatenate([w.ravel() for w in ws.values()])
    expected = magnitude_mask(flat, 0.7)
    got = np.concatenate([m.ravel() for m in global_masks(ws, 0.7).values()])
    np.testing.assert_array_equal(got, expected)


def test_global_masks_prune_small_layers_more():
    masks = global_masks(layers(), 0.5)
    assert sparsity_of(masks["ip1"]) > sparsity_of(masks["conv1"])  # std 0.02 against 0.3


def test_global_masks_ties_across_layers_follow_mapping_order():
    masks = global_masks({"a": np.ones(2), "b": np.ones(2)}, 0.5)
    np.testing.assert_array_equal(masks["a"], [False, False])
    np.testing.assert_array_equal(masks["b"], [True, True])


def test_global_masks_validate_their_argument():
    with pytest.raises(ValueError, match="non-empty mapping"):
        global_masks({}, 0.5)
    with pytest.raises(ValueError, match="non-empty mapping"):
        global_masks([np.ones(3)], 0.5)


# --- per-filter ---------------------------------------------------------------------------------


@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=4, max_side=5),
                  elements=st.one_of(tied_values, any_values).map(np.float32)), sparsities)
def test_filter_masks_prune_every_row_to_the_same_ratio(w, s):
    mask = filter_masks(w, s)
    assert mask.shape == w.shape
    rows_w = w.reshape(w.shape[0], -1)
    rows = mask.reshape(w.shape[0], -1)
    for row_w, row in zip(rows_w, rows):
        assert np.count_nonzero(~row) == round(s * row.size)
        np.testing.assert_array_equal(row, naive_magnitude_mask(row_w, s))


def test_filter_masks_on_a_conv_weight():
    w = np.random.default_rng(2).normal(size=(16, 6, 5, 5))
    w[3] *= 100  # a filter with large weights loses as many as the others
    mask = filter_masks(w, 0.6)
    np.testing.assert_array_equal((~mask).reshape(16, -1).sum(axis=1), np.full(16, 90))


def test_filter_masks_need_two_dimensions():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        filter_masks(np.ones(5), 0.5)


# --- sparsity_of --------------------------------------------------------------------------------


def test_sparsity_of():
    assert sparsity_of(np.array([True, False, False, True])) == 0.5
    assert sparsity_of(np.ones((3, 3), bool)) == 0.0
    assert sparsity_of(np.array([0.0, 1.5, 0.0, -2.0, 0.0])) == pytest.approx(0.6)
    assert sparsity_of(np.zeros(0, bool)) == 0.0
    w = np.random.default_rng(3).normal(size=1000)
    assert sparsity_of(magnitude_mask(w, 0.9)) == pytest.approx(0.9)
