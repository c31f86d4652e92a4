"""CSR with relative indices (spec §6.2): kernels against the literal references in naive.py."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import naive
from dcformat.csr import csr_decode, csr_encode, gather_values, gaps_dtype
from dcformat.encoding import raw_gap_histogram
from dcformat.errors import CorruptFileError, CountMismatchError, EncodingError


def at_least(n):
    """More examples than the profile's default for the kernel-vs-reference tests; the "long"
    profile of conftest.py still raises them."""
    return max(n, settings.default.max_examples)


DTYPES = [np.uint8, np.uint16, np.uint32, np.uint64]


@st.composite
def chunks(draw, max_rows=5, max_cols=90):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    rows = draw(st.integers(0, max_rows))
    cols = draw(st.integers(0, max_cols))
    density = draw(st.sampled_from([0.0, 0.02, 0.1, 0.5, 1.0]))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    values = rng.integers(1, np.iinfo(dtype).max, size=(rows, cols), dtype=dtype, endpoint=True)
    mask = rng.random((rows, cols)) < density
    return np.where(mask, values, dtype.type(0)).astype(dtype)


def _naive_flat_sources(sources, cols):
    return [-1 if s is None else s[0] * cols + s[1] for s in sources]


def test_spec_worked_example():
    row = np.array([[0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0]], np.uint32)
    counts, gaps, sources = csr_encode(row, 2)
    assert counts.tolist() == [4] and counts.dtype == np.uint32
    assert gaps.tolist() == [1, 3, 3, 0] and gaps.dtype == np.uint8
    values = gather_values(row, sources, 0)
    assert values.tolist() == [5, 0, 0, 7]
    assert naive.csr_encode(row.tolist(), 2)[:2] == ([4], [1, 3, 3, 0])
    np.testing.assert_array_equal(csr_decode(counts, gaps, values, 1, 12), row)
    assert naive.csr_decode([4], [1, 3, 3, 0], [5, 0, 0, 7], 12) == row.tolist()


@settings(max_examples=at_least(120))
@given(chunks(), st.integers(1, 16))
def test_encode_matches_naive(chunk, index_bits):
    counts, gaps, sources = csr_encode(chunk, index_bits)
    n_counts, n_gaps, n_sources = naive.csr_encode(chunk.tolist(), index_bits)
    assert counts.dtype == np.uint32 and gaps.dtype == gaps_dtype(index_bits)
    assert counts.tolist() == n_counts
    assert gaps.tolist() == n_gaps
    assert sources.tolist() == _naive_flat_sources(n_sources, chunk.shape[1])
    assert (counts <= chunk.shape[1]).all() and (gaps < 2 ** index_bits).all()
    # and back, through both decoders
    values = gather_values(chunk, sources, 0)
    decoded = csr_decode(counts, gaps, values, *chunk.shape)
    assert decoded.dtype == chunk.dtype
    np.testing.assert_array_equal(decoded, chunk)
    assert naive.csr_decode(n_counts, n_gaps, values.tolist(), chunk.shape[1]) == chunk.tolist()


@settings(max_examples=at_least(60))
@given(chunks(max_cols=300))
def test_gap_histogram_gives_naive_filler_counts(chunk):
    """The writer picks index_bits from the raw-gap histogram: the fillers it implies are exact."""
    if chunk.size == 0:
        return
    hist = raw_gap_histogram(chunk != 0)
    gaps = np.arange(len(hist))
    nnz = np.count_nonzero(chunk)
    assert hist.sum() == nnz
    for b in range(1, 17):
        fillers = int(((gaps >> b) * hist).sum())
        assert fillers == naive.filler_count(chunk.tolist(), b)
        assert len(csr_encode(chunk, b)[1]) == nnz + fillers


def test_gaps_many_times_the_span():
    row = np.zeros((2, 5000), np.uint16)
    row[0, 4999] = 1
    row[1, [0, 1, 2047, 4000]] = 3
    for b in (1, 2, 3, 8, 11, 12, 16):
        counts, gaps, sources = csr_encode(row, b)
        n = naive.csr_encode(row.tolist(), b)
        assert counts.tolist() == n[0] and gaps.tolist() == n[1]
        assert counts[0] == (4999 >> b) + 1
        np.testing.assert_array_equal(csr_decode(counts, gaps, gather_values(row, sources, 0),
                                                 2, 5000), row)


def test_shapes_with_nothing():
    for shape in [(0, 0), (0, 7), (3, 0), (4, 9)]:
        chunk = np.zeros(shape, np.uint32)
        counts, gaps, sources = csr_encode(chunk, 4)
        assert counts.tolist() == [0] * shape[0] and gaps.size == sources.size == 0
        decoded = csr_decode(counts, gaps, np.zeros(0, np.uint32), *shape)
        np.testing.assert_array_equal(decoded, chunk)
        assert raw_gap_histogram(chunk != 0).sum() == 0 if chunk.size else True


def test_negative_zero_is_not_zero():
    chunk = np.array([[0.0, -0.0, 1.5, 0.0]], np.float32)
    counts, gaps, sources = csr_encode(chunk.view(np.uint32), 8)
    assert counts.tolist() == [2] and gaps.tolist() == [1, 0]
    values = gather_values(chunk.view(np.uint32), sources, 0)
    out = csr_decode(counts, gaps, values, 1, 4).view(np.float32)
    assert np.signbit(out[0, 1]) and out.tobytes() == chunk.tobytes()


def test_encode_refusals():
    with pytest.raises(EncodingError):
        csr_encode(np.zeros((2, 2), np.float32), 4)
    with pytest.raises(EncodingError):
        csr_encode(np.zeros((2, 2), np.int8), 4)
    with pytest.raises(EncodingError):
        csr_encode(np.zeros(4, np.uint8), 4)
    for bits in (0, 17, True, 2.0):
        with pytest.raises(EncodingError):
            csr_encode(np.zeros((2, 2), np.uint8), bits)


def test_non_contiguous_input_is_accepted():
    chunk = np.arange(60, dtype=np.uint16).reshape(6, 10)[::2, ::3] % 3
    counts, gaps, sources = csr_encode(chunk, 1)
    np.testing.assert_array_equal(
        csr_decode(counts, gaps, gather_values(chunk, sources, 0), *chunk.shape), chunk)


@settings(max_examples=at_least(150))
@given(st.integers(0, 4), st.integers(0, 12), st.data())
def test_decode_matches_naive_on_any_streams(rows, cols, data):
    counts = data.draw(st.lists(st.integers(0, 14), min_size=rows, max_size=rows))
    n = data.draw(st.sampled_from([sum(counts), sum(counts) + 1, max(sum(counts) - 1, 0)]))
    gaps = data.draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    values = list(range(1, n + 1))
    try:
        expected = naive.csr_decode(counts, gaps, values, cols)
    except ValueError:
        expected = None
    guard = np.full(rows * cols + 16, 0xAB, np.uint16)
    out = guard[8:8 + rows * cols]
    args = (np.array(counts, np.uint32), np.array(gaps, np.uint8), np.array(values, np.uint16),
            rows, cols)
    if expected is None:
        with pytest.raises((CountMismatchError, CorruptFileError)):
            csr_decode(*args, out=out)
    else:
        assert csr_decode(*args, out=out).tolist() == expected
    assert (guard[:8] == 0xAB).all() and (guard[8 + rows * cols:] == 0xAB).all()


def test_decode_rejects_positions_past_the_row():
    counts = np.array([2], np.uint32)
    with pytest.raises(CorruptFileError):
        csr_decode(counts, np.array([3, 0], np.uint8), np.array([1, 2], np.uint8), 1, 4)
    with pytest.raises(CorruptFileError):  # a row count above cols
        csr_decode(np.array([5], np.uint32), np.zeros(5, np.uint8), np.ones(5, np.uint8), 1, 4)
    with pytest.raises(CorruptFileError):  # any entry in a row of no columns
        csr_decode(np.array([1], np.uint32), np.zeros(1, np.uint8), np.ones(1, np.uint8), 1, 0)
    # the last column is fine
    assert csr_decode(counts, np.array([2, 0], np.uint16), np.array([1, 2], np.uint8), 1,
                      4).tolist() == [[0, 0, 1, 2]]


def test_decode_rejects_counts_that_do_not_add_up():
    gaps, values = np.zeros(3, np.uint8), np.ones(3, np.uint32)
    with pytest.raises(CountMismatchError):
        csr_decode(np.array([1, 1], np.uint32), gaps, values, 2, 5)
    with pytest.raises(CountMismatchError):
        csr_decode(np.array([2, 2], np.uint32), gaps, values, 2, 5)
    with pytest.raises(CountMismatchError):
        csr_decode(np.array([2, 1], np.uint32), gaps, values[:2], 2, 5)
    with pytest.raises(CountMismatchError):
        csr_decode(np.array([3], np.uint32), gaps, values, 2, 5)
    # a sum that overflows 32 bits is not mistaken for a small one
    with pytest.raises(CountMismatchError):
        csr_decode(np.array([2 ** 32 - 1, 4], np.uint32), gaps, values, 2, 5)


def test_decode_out_argument():
    chunk = np.array([[0, 1, 0], [2, 0, 3]], np.uint64)
    counts, gaps, sources = csr_encode(chunk, 3)
    values = gather_values(chunk, sources, 0)
    out = np.full(6, 99, np.uint64)  # need not be zeroed
    result = csr_decode(counts, gaps, values, 2, 3, out=out)
    assert np.shares_memory(result, out) and out.tolist() == chunk.ravel().tolist()
    for bad in (np.zeros(5, np.uint64), np.zeros(6, np.uint32), np.zeros((3, 4), np.uint64)[:, :2],
                np.zeros(6, np.uint64)[::-1]):
        with pytest.raises(TypeError):
            csr_decode(counts, gaps, values, 2, 3, out=bad)
    with pytest.raises(TypeError):
        csr_decode(counts.astype(np.int64), gaps, values, 2, 3)


def test_choose_index_bits_minimises_estimated_bits():
    """Dense rows need 1-bit gaps; gaps of ~1000 columns want a width near log2(1000)."""
    from dcformat.encoding import choose_index_bits

    dense = np.ones((4, 64), bool)
    assert choose_index_bits(raw_gap_histogram(dense), None, 32.0, None) == 1
    sparse = np.zeros((4, 4096), bool)
    sparse[:, 999::1000] = True
    best = choose_index_bits(raw_gap_histogram(sparse), None, 32.0, None)
    assert best == 10  # 999 zeros fit 10 bits with no filler; 9 bits would need one filler each
