"""The limits of spec §9: each is in constants.py, each is enforced, before any allocation that
depends on the field, with an error that names the value; and just at the limit the file is read.

Every hostile file here is a few hundred bytes whose fields claim the most memory they can; the
reader must refuse it while tracemalloc sees (almost) nothing allocated.
"""
import pathlib
import re
import struct
import tracemalloc

import numpy as np
import pytest

import dcformat
import fuzz_helpers as fh
from dcformat import constants as c
from dcformat.codecs import bitpack, huffman
from dcformat.constants import Codec, DType
from dcformat.errors import CorruptFileError, DCFormatError, HuffmanTableError, LimitExceededError
from dcformat.constants import MAX_EMPTY_SHAPE_PRODUCT

SPEC = (pathlib.Path(__file__).parent.parent / "spec" / "FORMAT.md").read_text(encoding="utf-8")


def test_every_limit_of_the_spec_is_a_constant():
    """The other direction of tests/test_constants.py: every row of the §9 table is a constant of
    the same value."""
    section = SPEC.split("## 9. Limits")[1].split("The reference decoder's own limits")[0]
    rows = re.findall(r"^\| `(MAX_\w+)` \| ([^|]+)\|", section, re.M)
    assert len(rows) >= 15
    for name, text in rows:
        assert hasattr(c, name), f"{name} is in spec §9 but not in constants.py"
        numbers = [int(n) for n in re.findall(r"\d+", text.replace(",", ""))]
        value = getattr(c, name)
        assert value in numbers or numbers[0] ** numbers[1] == value, (name, text)


def test_reader_limits_are_in_the_spec():
    """The reader's own, lower limits (spec §9 allows them) are named in §9 too."""
    section = SPEC.split("The reference decoder's own limits")[1].split("\n## ")[0]
    assert re.search(r"\| `DEFAULT_MAX_TENSOR_BYTES` \| 16 GiB \(2\^34 bytes\)", section)
    assert c.DEFAULT_MAX_TENSOR_BYTES == 2**34
    assert MAX_EMPTY_SHAPE_PRODUCT == 2**60 - 1  # a limit of the format since 2026-12-01, in the first table
    table = SPEC.split("## 9. Limits")[1].split("The reference decoder's own limits")[0]
    assert re.search(r"\| `MAX_EMPTY_SHAPE_PRODUCT` \| 1,152,921,504,606,846,975 \(2\^60 − 1\) \|", table)


# --------------------------------------------------------------------------------------------


def _base():
    """A small valid model: a dense float32 tensor of 6 elements in one PLAIN chunk."""
    return fh.parse_model(dcformat.save({"w": np.arange(6, dtype=np.float32)},
                                        encodings={"w": {"codecs": ("plain",)}}))


def _codebook_base():
    ct = dcformat.CodebookTensor(np.array([1, 2, 3], np.float32), np.array([0, 1, 2, 1], np.int32))
    return fh.parse_model(dcformat.save({"w": ct}, encodings={"w": {"layout": "dense", "codecs": ("plain",)}}))


def _csr_base():
    w = np.zeros((2, 8), np.float32)
    w[0, 3] = w[1, 7] = 1
    return fh.parse_model(dcformat.save({"w": w}, encodings={
        "w": {"layout": "csr", "index_bits": 2, "codecs": ("plain",), "codebook": "never"}}))


def _huffman_stream(max_length=2, lanes=1, alphabet=4, lengths=(1, 2, 2, 0)):
    head = struct.pack("<BBHI", max_length, lanes, 0, alphabet)
    return head + fh._pack_lengths(list(lengths) + [0] * (alphabet - len(lengths))) + bytes(4 * lanes)


def _set(model_fn, change):
    def make():
        m = model_fn()
        change(m)
        return fh.serialize(m)
    return make


def _stream(m):
    return m.tensors[0].chunks[0].streams[0]


def _huffman_values(max_length=2, lanes=1, alphabet=3, lengths=(1, 2, 2)):
    def change(m):
        s = _stream(m)
        s.codec, s.payload = Codec.HUFFMAN, _huffman_stream(max_length, lanes, alphabet, lengths)
    return change


def _raw_index(index: bytes) -> bytes:
    """A file whose index is ``index`` (no streams)."""
    import zlib

    return b"\x89DCF\x01\x00\x00\x00" + bytes(8) + index + struct.pack("<QI", len(index), zlib.crc32(index)) + b"\x89DCF"


def _index_length_over():
    data = bytearray(fh.serialize(_base()))
    struct.pack_into("<Q", data, len(data) - 16, c.MAX_INDEX_LENGTH + 1)
    return bytes(data)


OVER = {
    # limit: (hostile file, error, text the message must hold)
    "MAX_INDEX_LENGTH": (_index_length_over, LimitExceededError, str(c.MAX_INDEX_LENGTH)),
    "MAX_TENSORS": (lambda: _raw_index(struct.pack("<II", c.MAX_TENSORS + 1, 0)), LimitExceededError,
                    str(c.MAX_TENSORS)),
    "MAX_METADATA_ENTRIES": (lambda: _raw_index(struct.pack("<II", 0, c.MAX_METADATA_ENTRIES + 1)),
                             LimitExceededError, str(c.MAX_METADATA_ENTRIES)),
    "MAX_NAME_LENGTH": (_set(_base, lambda m: setattr(m.tensors[0], "name", b"n" * (c.MAX_NAME_LENGTH + 1))),
                        CorruptFileError, str(c.MAX_NAME_LENGTH)),
    "MAX_NAME_LENGTH (metadata key)": (_set(_base, lambda m: m.metadata.append((b"k" * 4097, b"", None, None))),
                                       CorruptFileError, str(c.MAX_NAME_LENGTH)),
    "MAX_RANK": (_set(_base, lambda m: setattr(m.tensors[0], "shape", [1] * 8 + [6])), LimitExceededError, "9"),
    "MAX_TENSOR_ELEMENTS": (_set(_base, lambda m: setattr(m.tensors[0], "shape", [2**20, 2**20 + 1])),
                            LimitExceededError, str(c.MAX_TENSOR_ELEMENTS)),
    "MAX_TENSOR_ELEMENTS (overflowing u64 product)": (
        _set(_base, lambda m: setattr(m.tensors[0], "shape", [2**64 - 1] * 8)), LimitExceededError,
        str(c.MAX_TENSOR_ELEMENTS)),
    "MAX_CHUNK_ELEMENTS": (_set(_base, lambda m: (setattr(m.tensors[0], "shape", [2**28 + 1]),
                                                  setattr(m.tensors[0].chunks[0], "extent", 2**28 + 1))),
                           LimitExceededError, str(c.MAX_CHUNK_ELEMENTS)),
    "MAX_CHUNK_ELEMENTS (CSR rows x cols)": (
        _set(_csr_base, lambda m: setattr(m.tensors[0], "shape", [2, 2**27 + 1])), LimitExceededError,
        str(c.MAX_CHUNK_ELEMENTS)),
    "MAX_CODEBOOK_SIZE": (_set(_codebook_base, lambda m: setattr(m.tensors[0], "codebook_size", 2**16 + 1)),
                          LimitExceededError, str(c.MAX_CODEBOOK_SIZE)),
    "MAX_INDEX_BITS": (_set(_csr_base, lambda m: setattr(m.tensors[0], "index_bits", 17)), CorruptFileError,
                       "17"),
    "MAX_CODE_LENGTH": (_set(_codebook_base, _huffman_values(max_length=17, lengths=(1, 2, 17))),
                        HuffmanTableError, "17"),
    "MAX_CODE_LENGTH (a length field over max_length)": (
        _set(_codebook_base, _huffman_values(max_length=16, lengths=(1, 16, 31))), HuffmanTableError, "31"),
    "MAX_HUFFMAN_LANES": (_set(_codebook_base, _huffman_values(lanes=9)), CorruptFileError, "9"),
    "MAX_HUFFMAN_ALPHABET": (
        lambda: _call(huffman.decode, _huffman_stream(alphabet=2**16 + 1), 4, 4, 0, None), HuffmanTableError,
        "65537"),
    "MAX_BITPACK_WIDTH": (_set(_base, lambda m: (setattr(_stream(m), "codec", Codec.BITPACK),
                                                  setattr(_stream(m), "param", 33))), CorruptFileError, "33"),
    "MAX_BITPACK_WIDTH (codec)": (lambda: _call(bitpack.decode, bytes(33), 8, 8, 33), CorruptFileError, "33"),
    "MAX_ZSTD_EXPANSION": (_set(_base, lambda m: (setattr(_stream(m), "codec", Codec.ZSTD),
                                                   setattr(_stream(m), "count", 2**40),
                                                   setattr(m.tensors[0], "shape", [2**40]),
                                                   setattr(m.tensors[0].chunks[0], "extent", 2**40))),
                           LimitExceededError, str(c.MAX_CHUNK_ELEMENTS)),
    "MAX_ZSTD_EXPANSION (stream)": (_set(_base, lambda m: (setattr(_stream(m), "codec", Codec.ZSTD),
                                                            setattr(_stream(m), "payload", b"\x28"),
                                                            setattr(_stream(m), "count", 2**17),
                                                            setattr(m.tensors[0], "shape", [2**17]),
                                                            setattr(m.tensors[0].chunks[0], "extent", 2**17))),
                                    DCFormatError, "cannot hold"),
    "MAX_ALIGNMENT_LOG2": (_set(_base, lambda m: setattr(m, "alignment_log2", 13)), CorruptFileError, "13"),
    "MAX_EMPTY_SHAPE_PRODUCT (this reader's)": (
        _set(_base, lambda m: (setattr(m.tensors[0], "shape", [0, 2**60]), setattr(m.tensors[0], "chunks", []))),
        LimitExceededError, str(MAX_EMPTY_SHAPE_PRODUCT)),
    "DEFAULT_MAX_TENSOR_BYTES (this reader's)": (
        _set(_csr_base, lambda m: (setattr(m.tensors[0], "shape", [2**9, 2**26]),
                                   setattr(m.tensors[0], "chunks", [
                                       fh.Chunk(1, [fh.Stream(0, 0, 1, bytes(4)), fh.Stream(0, 0, 0, b""),
                                                    fh.Stream(0, 0, 0, b"")])] * 2**9))),
        LimitExceededError, str(c.DEFAULT_MAX_TENSOR_BYTES)),
}


def _call(function, *args):
    """A codec call, its arguments made now (outside the traced part)."""
    return lambda: function(*args)


def _refuse(made):
    """Run a codec call, or open a file and decode everything in it."""
    if callable(made):
        made()
        return
    with dcformat.DCFReader(made, verify=False) as f:
        for name in f.keys():
            f.get_tensor(name)


@pytest.mark.parametrize("limit", sorted(OVER))
def test_over_the_limit_is_refused_before_allocating(limit):
    make, error, text = OVER[limit]
    made = make()
    tracemalloc.start()
    try:
        with pytest.raises(error) as caught:
            _refuse(made)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert text in str(caught.value), str(caught.value)
    assert peak < 2**20, f"{limit}: {peak} bytes allocated while refusing"


AT = {
    # limit: a file just at the limit, which must be read
    "MAX_NAME_LENGTH": lambda: dcformat.save({"n" * c.MAX_NAME_LENGTH: np.ones(1)},
                                             metadata={"k" * c.MAX_NAME_LENGTH: "v"}),
    "MAX_RANK": lambda: dcformat.save({"w": np.ones((1,) * c.MAX_RANK)}),
    "MAX_INDEX_BITS": lambda: dcformat.save({"w": np.eye(4)}, encodings={"w": {"layout": "csr", "index_bits": 16}}),
    "MAX_CODE_LENGTH": lambda: _longest_codes(),
    "MAX_BITPACK_WIDTH": lambda: _widest_bitpack(),
    "MAX_ALIGNMENT_LOG2": lambda: dcformat.save({"w": np.ones(3)}, alignment_log2=c.MAX_ALIGNMENT_LOG2),
    "MAX_EMPTY_SHAPE_PRODUCT": lambda: dcformat.save({"w": np.zeros((0, MAX_EMPTY_SHAPE_PRODUCT), np.uint8)}),
}


@pytest.mark.parametrize("limit", sorted(AT))
def test_at_the_limit_is_read(limit):
    data = AT[limit]()
    with dcformat.DCFReader(data) as f:
        for name in f.keys():
            assert f.get_tensor(name).shape == f.info(name).shape
        if limit == "MAX_BITPACK_WIDTH":
            assert f.info("w").chunks[0].streams[0].param == 32
            assert f.get_tensor("w").tolist() == [2**32 - 1, 5, 0]


def _widest_bitpack():
    """A uint32 tensor in a BITPACK stream of width 32 (which the writer never picks: PLAIN ties)."""
    values = np.array([2**32 - 1, 5, 0], np.uint32)
    model = fh.parse_model(dcformat.save({"w": values}, encodings={"w": {"codecs": ("plain",)}}))
    stream = _stream(model)
    stream.codec, stream.param, stream.payload = Codec.BITPACK, c.MAX_BITPACK_WIDTH, bitpack.encode(values, 4, 32).payload
    return fh.serialize(model)


def _longest_codes():
    """A uint8 tensor whose HUFFMAN stream has codes of every length 1 … 16 (a complete code)."""
    lengths = np.array(list(range(1, 17)) + [16], np.uint8)
    symbols = np.arange(17, dtype=np.uint8).repeat(3)
    model = fh.parse_model(dcformat.save({"w": symbols}, encodings={"w": {"codecs": ("plain",)}}))
    stream = _stream(model)
    stream.codec, stream.payload = Codec.HUFFMAN, huffman.serialize(symbols, lengths, 2)
    return fh.serialize(model)


def test_huffman_at_max_code_length():
    data = AT["MAX_CODE_LENGTH"]()
    with dcformat.DCFReader(data) as f:
        stream = f.info("w").chunks[0].streams[0]
        assert stream.codec == Codec.HUFFMAN
        assert data[stream.offset] == c.MAX_CODE_LENGTH  # the payload's max_length
        assert f.get_tensor("w").tolist() == np.arange(17).repeat(3).tolist()


def test_limits_hold_for_every_dtype_size():
    """The tensor-size limit multiplies by the element size with Python integers: 2**40 elements of
    8 bytes are 8 TiB, not an overflowed int64."""
    for dtype, size in c.DTYPE_SIZE.items():
        m = _base()
        t = m.tensors[0]
        t.dtype, t.shape = int(dtype), [2**40]
        t.chunks = [fh.Chunk(2**28, [fh.Stream(Codec.ZSTD, 0, 2**28, b"\x28" * 2**14)])] * 4096
        with pytest.raises(DCFormatError):
            _refuse(fh.serialize(m))
    assert DType.F64 in c.DTYPE_SIZE


def test_codebook_indices_count_against_the_tensor_limit():
    """get_codebook_tensor allocates int32 indices: 4 bytes an element, even for a float16 tensor
    of 2 bytes an element, and the reader's limit applies to what it allocates."""
    ct = dcformat.CodebookTensor(np.array([1, 2], np.float16), np.zeros(100, np.int32), np.float16)
    with dcformat.DCFReader(dcformat.save({"w": ct}), max_tensor_bytes=300) as f:
        assert f.get_tensor("w").nbytes == 200
        with pytest.raises(LimitExceededError, match="400 bytes of indices.* 300"):
            f.get_codebook_tensor("w")
