"""``get_slice``: safetensors' lazy slices, decoding only the chunks that cover what is asked for."""
import ml_dtypes
import numpy as np
import pytest

import dcformat
from dcformat.constants import Layout

ROWS, COLS = 50, 24


def _matrix(sparse: bool):
    rng = np.random.default_rng(7)
    w = rng.normal(size=(ROWS, COLS)).astype(np.float32)
    if sparse:
        w[rng.random(w.shape) < 0.8] = 0
    return w


def _file(layout: str, chunk_elements: int = 5 * COLS, **arrays):
    tensors = {"w": _matrix(layout == "csr"), **arrays}
    encodings = {"w": dcformat.Encoding(layout=layout, chunk_elements=chunk_elements)}
    return tensors, dcformat.save(tensors, encodings=encodings)


INDICES = [
    0, 7, -1, -ROWS, slice(None), slice(3, 17), slice(17, 3), slice(3, 17, 4), slice(None, None, -1),
    slice(40, 2, -3), slice(-5, None), slice(0, 0), slice(100, 200), slice(-100, 3),
    Ellipsis, (Ellipsis, 3), (Ellipsis, slice(2, 9)), (slice(5, 30), slice(1, 20, 3)), (12, 5), (-1, -1),
    (slice(None), 0), (Ellipsis, slice(None, None, -2)), (slice(4, 44), Ellipsis), (3, Ellipsis, 2), (),
]


@pytest.mark.parametrize("layout", ["dense", "csr"])
@pytest.mark.parametrize("index", INDICES, ids=repr)
def test_a_slice_equals_numpy_indexing_of_the_whole_tensor(layout, index):
    tensors, data = _file(layout)
    with dcformat.DCFReader(data) as f:
        assert f.info("w").layout == Layout[layout.upper()]
        assert len(f.info("w").chunks) == 10
        part = f.get_slice("w")[index]
    expected = tensors["w"][index]
    assert isinstance(part, np.ndarray)
    assert part.shape == expected.shape and part.dtype == expected.dtype
    np.testing.assert_array_equal(part, expected)


@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_random_slices_of_a_rank_3_tensor(layout):
    rng = np.random.default_rng(3)
    cube = rng.normal(size=(9, 7, 5)).astype(np.float32)
    if layout == "csr":
        cube[rng.random(cube.shape) < 0.7] = 0
    data = dcformat.save({"c": cube}, encodings={"c": dcformat.Encoding(layout=layout, chunk_elements=40)})

    def axis_index(n):
        if rng.random() < 0.3:
            return int(rng.integers(-n, n))
        a, b = sorted(int(v) for v in rng.integers(-n - 2, n + 2, 2))
        step = int(rng.choice([1, 1, 2, 3, -1, -2]))
        return slice(a, b, step) if step > 0 else slice(b, a, step)

    def random_index():
        given = int(rng.integers(0, 4))
        if rng.random() < 0.3:  # an Ellipsis at a random place: the parts after it index the last axes
            at = int(rng.integers(0, given + 1))
            head = [axis_index(n) for n in cube.shape[:at]]
            tail = [axis_index(n) for n in cube.shape[cube.ndim - (given - at):]] if given > at else []
            return tuple(head + [Ellipsis] + tail)
        return tuple(axis_index(n) for n in cube.shape[:given])

    with dcformat.DCFReader(data) as f:
        sliced = f.get_slice("c")
        for _ in range(200):
            index = random_index()
            np.testing.assert_array_equal(sliced[index], cube[index], err_msg=repr(index))


def _corrupt_chunk(data: bytes, name: str, chunk_number: int) -> bytes:
    with dcformat.DCFReader(data) as f:
        stream = f.info(name).chunks[chunk_number].streams[-1]
    assert stream.length > 0
    broken = bytearray(data)
    broken[stream.offset] ^= 0xFF  # its CRC no longer matches: decoding this chunk fails
    return bytes(broken)


@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_only_the_chunks_that_cover_the_slice_are_decoded(layout):
    tensors, data = _file(layout)  # chunks of 5 rows: chunk 6 holds rows 30..34
    broken = _corrupt_chunk(data, "w", 6)
    with dcformat.DCFReader(broken) as f:
        with pytest.raises(dcformat.ChecksumError):
            f.get_tensor("w")
        sliced = f.get_slice("w")
        np.testing.assert_array_equal(sliced[0:30], tensors["w"][0:30])
        np.testing.assert_array_equal(sliced[35:], tensors["w"][35:])
        np.testing.assert_array_equal(sliced[29, 3], tensors["w"][29, 3])
        np.testing.assert_array_equal(sliced[30:30], tensors["w"][30:30])  # empty: nothing decoded
        with pytest.raises(dcformat.ChecksumError):
            sliced[34]
        with pytest.raises(dcformat.ChecksumError):
            sliced[::7]  # rows 0, 7, ..., 28, 35: spans chunk 6


def test_a_dense_slice_decodes_only_the_element_range_it_covers():
    vector = np.arange(1000, dtype=np.int32) * 7
    data = dcformat.save({"v": vector}, encodings={"v": dcformat.Encoding(layout="dense", chunk_elements=100)})
    broken = _corrupt_chunk(data, "v", 4)  # elements 400..499
    with dcformat.DCFReader(broken) as f:
        sliced = f.get_slice("v")
        np.testing.assert_array_equal(sliced[:400], vector[:400])
        np.testing.assert_array_equal(sliced[500:1000:9], vector[500:1000:9])
        with pytest.raises(dcformat.ChecksumError):
            sliced[399:401]
    matrix = vector.reshape(10, 100)  # a row of 100 elements per chunk
    data = dcformat.save({"m": matrix}, encodings={"m": dcformat.Encoding(layout="dense", chunk_elements=50)})
    broken = _corrupt_chunk(data, "m", 9)  # row 4, second half
    with dcformat.DCFReader(broken) as f:
        np.testing.assert_array_equal(f.get_slice("m")[4, :50], matrix[4, :50])
        np.testing.assert_array_equal(f.get_slice("m")[2:4, 10:20], matrix[2:4, 10:20])
        with pytest.raises(dcformat.ChecksumError):
            f.get_slice("m")[4, 49:51]


def test_shape_and_dtype_as_safetensors_names_them():
    arrays = {"bf": np.zeros((2, 3), ml_dtypes.bfloat16), "i": np.zeros(4, np.int64), "u": np.zeros((), np.uint8),
              "flags": np.zeros(5, bool), "h": np.zeros((1, 1, 2), np.float16)}
    with dcformat.DCFReader(dcformat.save(arrays)) as f:
        seen = {name: (f.get_slice(name).get_shape(), f.get_slice(name).get_dtype()) for name in arrays}
    assert seen == {"bf": ([2, 3], "BF16"), "i": ([4], "I64"), "u": ([], "U8"), "flags": ([5], "BOOL"),
                    "h": ([1, 1, 2], "F16")}


def test_codebook_tensors_and_every_dtype_slice_exactly():
    rng = np.random.default_rng(5)
    codebook = rng.normal(size=16).astype(np.float32)
    indices = rng.integers(-1, 16, size=(30, 20))
    shared = dcformat.CodebookTensor(codebook, indices)
    arrays = {"shared": shared, "bf": rng.normal(size=(30, 20)).astype(ml_dtypes.bfloat16),
              "flags": rng.random((30, 20)) < 0.5, "u64": rng.integers(0, 2**63, (30, 20), dtype=np.uint64)}
    encodings = {name: {"chunk_elements": 60} for name in arrays}
    with dcformat.DCFReader(dcformat.save(arrays, encodings=encodings)) as f:
        for name, value in arrays.items():
            full = value.decode() if name == "shared" else value
            for index in (slice(4, 17), (slice(None), slice(3, 5)), 29, (Ellipsis, -1)):
                part = f.get_slice(name)[index]
                assert part.dtype == full.dtype
                np.testing.assert_array_equal(part.view(np.uint8), np.ascontiguousarray(full[index]).view(np.uint8))


def test_rank_0_and_empty_tensors():
    arrays = {"scalar": np.float64(2.5), "empty": np.zeros((0, 4), np.float32)}
    with dcformat.DCFReader(dcformat.save(arrays)) as f:
        assert f.get_slice("scalar")[()] == 2.5
        assert f.get_slice("scalar")[...].shape == ()
        assert f.get_slice("empty")[:, 1:3].shape == (0, 2)
        with pytest.raises(IndexError):
            f.get_slice("empty")[0]
        with pytest.raises(IndexError):
            f.get_slice("scalar")[0]


@pytest.mark.parametrize("index, error", [
    ((1, 2, 3), IndexError), (ROWS, IndexError), (-ROWS - 1, IndexError), ((0, COLS), IndexError),
    ((Ellipsis, Ellipsis), IndexError), ([1, 2], TypeError), (np.array([1]), TypeError),
    (None, TypeError), (1.5, TypeError), (slice(0, 2, 0), ValueError), ("a", TypeError),
])
def test_bad_indices_are_refused_as_numpy_refuses_them(index, error):
    tensors, data = _file("dense")
    with dcformat.DCFReader(data) as f, pytest.raises(error):
        f.get_slice("w")[index]


def test_numpy_integers_and_the_slice_of_a_missing_tensor():
    tensors, data = _file("csr")
    with dcformat.DCFReader(data) as f:
        np.testing.assert_array_equal(f.get_slice("w")[np.int64(3), np.uint8(2)], tensors["w"][3, 2])
        with pytest.raises(KeyError, match="no tensor named 'nope'"):
            f.get_slice("nope")


def test_a_slice_is_within_the_readers_memory_limit_while_the_tensor_is_not():
    tensors, data = _file("dense")
    row_bytes = COLS * 4
    with dcformat.DCFReader(data, max_tensor_bytes=12 * row_bytes) as f:
        with pytest.raises(dcformat.LimitExceededError):
            f.get_tensor("w")
        np.testing.assert_array_equal(f.get_slice("w")[10:15], tensors["w"][10:15])
        with pytest.raises(dcformat.LimitExceededError):
            f.get_slice("w")[0:20]


def test_the_result_owns_its_memory():
    tensors, data = _file("csr")
    with dcformat.DCFReader(data) as f:
        part = f.get_slice("w")[12, 3:9]
    assert part.flags.writeable and part.flags.c_contiguous
    assert part.base is None or part.base.nbytes == part.nbytes
