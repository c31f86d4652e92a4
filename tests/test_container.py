"""The container end to end: lossless round trips, codebook tensors, the API, atomic writes."""
import os

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import dcformat
from dcformat import CodebookTensor, Encoding
from dcformat.constants import Layout, ValueCoding

DTYPES = ["float32", "float16", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
          "uint64", "bool"]


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@st.composite
def sparse_arrays(draw):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=12))
    array = draw(hnp.arrays(dtype, shape))  # any bit pattern: NaNs, -0.0, infinities
    density = draw(st.sampled_from([0.0, 0.05, 0.3, 1.0]))
    mask = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).random(shape) < density
    return np.where(mask, array, np.zeros((), dtype))


@given(sparse_arrays(), st.sampled_from(["auto", "dense", "csr"]), st.sampled_from(["auto", 1, 3, 8, 16]),
       st.sampled_from([None, ("plain",), ("bitpack",), ("huffman",), ("zstd",), ("byteplanes",)]),
       st.sampled_from([7, 2**20]))
def test_lossless_round_trip(array, layout, index_bits, codecs, chunk):
    if layout == "csr" and (array.ndim < 2 or array.shape[0] == 0):
        layout = "auto"
    encoding = Encoding(layout=layout, index_bits=index_bits, codecs=codecs, chunk_elements=chunk)
    out = dcformat.load(dcformat.save({"t": array}, encodings={"t": encoding}))["t"]
    assert same_bits(out, array)


@st.composite
def codebook_tensors(draw):
    k = draw(st.sampled_from([1, 2, 5, 16, 256, 257, 1000]))
    codebook = draw(hnp.arrays(np.dtype(draw(st.sampled_from(["float32", "float16"]))), k,
                               elements=st.floats(-4, 4, width=16), unique=False))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=30))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    indices = rng.integers(0, k, size=shape)
    indices[rng.random(shape) < draw(st.sampled_from([0.0, 0.5, 0.95]))] = -1
    dtype = draw(st.sampled_from(["float32", "float16", "float64"]))
    return CodebookTensor(codebook, indices, np.dtype(dtype))


@given(codebook_tensors(), st.sampled_from(["auto", "dense", "csr"]), st.sampled_from(["auto", 1, 2, 5, 9]))
def test_codebook_tensor_round_trip(tensor, layout, index_bits):
    if layout == "csr" and len(tensor.shape) < 2:
        layout = "dense"
    data = dcformat.save({"w": tensor}, encodings={"w": Encoding(layout=layout, index_bits=index_bits)})
    out = dcformat.load(data)["w"]
    assert same_bits(out, tensor.decode())
    with dcformat.DCFReader(data) as f:
        info = f.info("w")
        assert info.value_coding == ValueCoding.CODEBOOK
        again = f.get_codebook_tensor("w")
    assert same_bits(again.decode(), tensor.decode())
    assert np.array_equal(again.codebook[: tensor.codebook.size].view(np.uint8),
                          tensor.codebook.view(np.uint8))


def test_auto_chooses_csr_for_pruned_weights():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(300, 784)).astype(np.float32)
    w[rng.random(w.shape) > 0.08] = 0
    data = dcformat.save({"w": w})
    with dcformat.DCFReader(data) as f:
        assert f.info("w").layout == Layout.CSR
    assert len(data) < w.nbytes * 0.08 * 1.6  # 8% kept: values + a few bits of index each
    assert same_bits(dcformat.load(data)["w"], w)


def test_lossless_codebook_for_few_distinct_values():
    values = np.linspace(-1, 1, 32, dtype=np.float32)
    w = values[np.random.default_rng(1).integers(0, 32, size=(100, 100))]
    data = dcformat.save({"w": w})
    with dcformat.DCFReader(data) as f:
        assert f.info("w").value_coding == ValueCoding.CODEBOOK
    assert len(data) < w.size * 5.2 / 8 + 400  # about log2(32) bits per weight
    assert same_bits(dcformat.load(data)["w"], w)


def test_file_api_and_lazy_open(tmp_path):
    path = tmp_path / "m.dcf"
    tensors = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.array([1, 2], np.int16)}
    dcformat.save_file(tensors, path, metadata={"source": "test"})
    with dcformat.open(path) as f:
        assert f.keys() == ["a", "b"] and "a" in f and len(f) == 2
        assert f.metadata() == {"source": "test"}
        assert f.info("a").shape == (3, 4)
        assert same_bits(f.get_tensor("b"), tensors["b"])
        with pytest.raises(KeyError, match="no tensor named"):
            f.get_tensor("c")
    loaded = dcformat.load_file(path)
    assert all(same_bits(loaded[k], v) for k, v in tensors.items())
    assert dcformat.save(tensors, metadata={"source": "test"}) == path.read_bytes()


def test_writer_is_deterministic():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(64, 64)).astype(np.float32)
    w[rng.random(w.shape) < 0.9] = 0
    assert dcformat.save({"w": w}) == dcformat.save({"w": w.copy()})


def test_failed_write_leaves_old_file(tmp_path):
    path = tmp_path / "m.dcf"
    dcformat.save_file({"a": np.ones(3, np.float32)}, path)
    before = path.read_bytes()
    with pytest.raises(dcformat.EncodingError):
        dcformat.save_file({"a": np.ones(3, np.float32), "bad": np.array(["x"])}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.dcf"]  # no temporary file left behind


def test_writer_state_machine(tmp_path):
    writer = dcformat.DCFWriter(tmp_path / "w.dcf")
    writer.add("a", np.zeros(2, np.float32))
    with pytest.raises(dcformat.EncodingError, match="already"):
        writer.add("a", np.zeros(2, np.float32))
    writer.close()
    with pytest.raises(dcformat.EncodingError, match="closed"):
        writer.add("b", np.zeros(2, np.float32))
    writer.close()  # closing twice is harmless


@pytest.mark.parametrize("bad", [
    dict(tensors={"": np.zeros(1)}),
    dict(tensors={"x": np.zeros(1, np.complex64)}),
    dict(tensors={"x": np.zeros(1)}, metadata={"k": 1}),
    dict(tensors={"x": np.zeros(1)}, encodings={"y": Encoding()}),
    dict(tensors={"x": np.zeros(3)}, encodings={"x": Encoding(layout="csr")}),
    dict(tensors={"x": np.zeros((0, 2**31, 2**31), np.uint8)}),
])
def test_bad_writer_input_raises_encoding_error(bad):
    with pytest.raises(dcformat.EncodingError):
        dcformat.save(**bad)


@pytest.mark.parametrize("kwargs", [dict(layout="sparse"), dict(index_bits=0), dict(index_bits=17),
                                    dict(codecs=("lz4",)), dict(codebook_dtype="int8"), dict(chunk_elements=0)])
def test_bad_encoding_options(kwargs):
    with pytest.raises(dcformat.EncodingError):
        Encoding(**kwargs)


def test_reader_size_limit_refuses_before_decoding():
    data = dcformat.save({"w": np.zeros((64, 64), np.float32)})
    with dcformat.DCFReader(data, max_tensor_bytes=1000) as f:
        with pytest.raises(dcformat.LimitExceededError, match="limit"):
            f.get_tensor("w")


def test_alignment(tmp_path):
    data = dcformat.save({"a": np.arange(5, dtype=np.float32), "b": np.arange(3, dtype=np.int64)},
                         encodings={"a": Encoding(codecs=("plain",)), "b": Encoding(codecs=("plain",))},
                         alignment_log2=6)
    with dcformat.DCFReader(data) as f:
        for name in f.keys():
            for stream in f.info(name).streams:
                assert stream.offset % 64 == 0
        assert f.get_tensor("b").tolist() == [0, 1, 2]
