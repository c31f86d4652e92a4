"""Property tests: files written by dcformat.save over every dtype, layout, value coding, codec,
index width, chunking, alignment, Huffman lane count, empty and 0-d tensors decode in libdcf
(whole, chunk by chunk, and to float32) to exactly the Python reader's bits; the zstd-less build
decodes them too, or refuses exactly the tensors that use ZSTD."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import dcformat
from dcformat.constants import FLOAT_DTYPES, DType
from dcformat.conversion import float8_to_float32
from dcformat.errors import EncodingError
from dcformat.structures import dtype_of
from dcformat.tensors import CodebookTensor

from libdcf_helpers import LIB_PATH, NOZSTD_LIB_PATH, OUT_F32, DcfError, Lib, build_native
from test_libdcf import bits, python_tensors, zstd_tensors

DTYPES = [np.float32, np.float16, ml_dtypes.bfloat16, np.float64, np.int8, np.int16, np.int32, np.int64,
          np.uint8, np.uint16, np.uint32, np.uint64, np.bool_, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2]
FLOAT8 = ("float8_e4m3fn", "float8_e5m2")  # format 1.2
CODECS = ("plain", "bitpack", "huffman", "zstd", "byteplanes")


@pytest.fixture(scope="module")
def libs():
    build_native()
    return Lib(LIB_PATH), Lib(NOZSTD_LIB_PATH)


@st.composite
def shapes(draw):
    kind = draw(st.sampled_from(["small", "matrix", "empty", "scalar"]))
    if kind == "scalar":
        return ()
    if kind == "empty":
        dims = draw(st.lists(st.integers(0, 5), min_size=1, max_size=3))
        dims[draw(st.integers(0, len(dims) - 1))] = 0
        return tuple(dims)
    if kind == "matrix":
        return (draw(st.integers(1, 16)), draw(st.integers(1, 160)))
    return tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=4)))


@st.composite
def arrays(draw, dtype, shape):
    """Values of ``dtype``: random bits (floats: every NaN payload, infinity, subnormal), many
    exact zeros (so CSR has something to skip), and sometimes few distinct values."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) if shape else 1
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if dtype == np.bool_:
        a = rng.random(n) < draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
        return a.reshape(shape)
    raw = rng.integers(0, 256, n * dtype.itemsize, dtype=np.uint8).view(dtype).copy()
    style = draw(st.sampled_from(["bits", "few", "normal"]))
    if style == "few":
        raw = rng.choice(raw[:max(1, min(n, draw(st.integers(1, 40))))], n)
    elif style == "normal" and dtype.kind == "f" or dtype.name == "bfloat16" and style == "normal":
        raw = rng.normal(0, 0.1, n).astype(dtype)
    zeros = rng.random(n) < draw(st.sampled_from([0.0, 0.5, 0.9, 1.0]))
    raw[zeros] = 0
    return raw.reshape(shape)


@st.composite
def encodings(draw, shape):
    fields = {}
    if len(shape) >= 2 and draw(st.booleans()):
        fields["layout"] = "csr"
    else:
        fields["layout"] = draw(st.sampled_from(["auto", "dense"]))
    fields["index_bits"] = draw(st.one_of(st.just("auto"), st.integers(1, 16)))
    if draw(st.booleans()):
        fields["codecs"] = tuple(draw(st.lists(st.sampled_from(CODECS), min_size=1, max_size=3, unique=True)))
    fields["chunk_elements"] = draw(st.sampled_from([None, 5, 64, 1000]))
    fields["huffman_lanes"] = draw(st.sampled_from([None, 1, 2, 3, 4, 5, 8]))
    fields["codebook"] = draw(st.sampled_from(["auto", "never"]))
    return dcformat.Encoding(**fields)


@st.composite
def files(draw):
    tensors, encs = {}, {}
    for t in range(draw(st.integers(1, 3))):
        name = f"t{t}." + draw(st.sampled_from(["weight", "bias", "é", "x" * 30]))
        dtype = draw(st.sampled_from(DTYPES))
        shape = draw(shapes())
        if np.dtype(dtype).kind == "f" or np.dtype(dtype).name in ("bfloat16", *FLOAT8):
            if draw(st.integers(0, 3)) == 0 and int(np.prod(shape)) > 0:
                k = draw(st.integers(1, 300))
                book_dtype = draw(st.sampled_from([np.float32, np.float16]))
                rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
                book = rng.integers(0, 2**32, k, dtype=np.uint64).astype(np.uint32).view(np.float32)
                with np.errstate(all="ignore"):
                    book = book.astype(book_dtype) if book_dtype is np.float16 else book
                if np.dtype(dtype).name in FLOAT8:  # a float8 codebook: every code, or rounded normals
                    book = rng.integers(0, 256, k).astype(np.uint8).view(dtype)
                if draw(st.booleans()):
                    book = rng.normal(0, 1, k).astype(book_dtype)
                indices = rng.integers(-1, k, shape)
                tensors[name] = CodebookTensor(book, indices, np.dtype(dtype))
                encs[name] = draw(encodings(shape))
                continue
        tensors[name] = draw(arrays(dtype, shape))
        encs[name] = draw(encodings(shape))
    alignment = draw(st.sampled_from([None, 0, 3, 6, 12]))
    metadata = draw(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=20), max_size=3))
    try:
        return dcformat.save(tensors, metadata, encs, alignment_log2=alignment)
    except EncodingError:
        assume(False)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=files())
def test_c_decodes_what_python_decodes(libs, data):
    lib, nozstd = libs
    meta, names, py = python_tensors(data)
    zstd = zstd_tensors(data)
    with lib.open(data) as f, nozstd.open(data) as g:
        assert f.names() == names and f.metadata() == meta
        for i, name in enumerate(names):
            want = py[name]
            got = f.decode(i)
            assert got.dtype == want.dtype and got.shape == want.shape
            assert bits(got) == bits(want), name
            chunks = [f.decode_chunk(i, c) for c in range(f.info(i).chunk_count)]
            assert bits(np.concatenate(chunks) if chunks else got.reshape(-1)) == bits(want)
            if DType(f.info(i).dtype) in FLOAT_DTYPES:
                with np.errstate(all="ignore"):
                    f32 = float8_to_float32(want) if want.dtype.name in FLOAT8 else want.astype(np.float32)
                    assert bits(f.decode(i, OUT_F32)) == bits(f32)
            else:
                with pytest.raises(DcfError):
                    f.decode(i, OUT_F32)
            try:
                assert bits(g.decode(i)) == bits(want)
            except DcfError as error:
                assert error.name == "ZSTD_UNSUPPORTED" and name in zstd, error
            assert dtype_of(want.dtype) == DType(f.info(i).dtype)


def test_every_codec_and_layout_is_reached(libs):
    """The strategies above reach every codec, both layouts and both value codings (checked on
    a fixed file, so a change to the writer's choices cannot silently narrow the property test)."""
    from dcformat.index_reader import read_header

    rng = np.random.default_rng(0)
    w = np.where(rng.random((32, 200)) < 0.1, rng.normal(0, 1, (32, 200)), 0).astype(np.float32)
    seen = set()
    for codecs in (("plain",), ("bitpack",), ("huffman",), ("zstd",), ("byteplanes",)):
        for layout in ("dense", "csr"):
            data = dcformat.save({"w": w}, encodings={"w": dcformat.Encoding(layout=layout, codecs=codecs,
                                                                                codebook="never")})
            t = read_header(data).tensors["w"]
            seen |= {(int(t.layout), int(s.codec)) for s in t.streams}
            lib = libs[0]
            with lib.open(data) as f:
                assert bits(f.decode(0)) == bits(python_tensors(data)[2]["w"])
    assert {c for _, c in seen} == {0, 1, 2, 3, 4}
    assert {l for l, _ in seen} == {0, 1}
