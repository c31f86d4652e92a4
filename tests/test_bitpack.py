"""BITPACK (spec §8.2): the jitted kernels against bit-by-bit references, and the codec's rules."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import naive
from dcformat.codecs import bitpack
from dcformat.constants import Codec
from dcformat.errors import CorruptFileError, CountMismatchError, EncodingError
from dcformat.kernels import bitpack as kernels


def at_least(n):
    """More examples than the profile's default for the kernel-vs-reference tests; the "long"
    profile of conftest.py still raises them."""
    return max(n, settings.default.max_examples)


DTYPES = [np.uint8, np.uint16, np.uint32, np.uint64]


@st.composite
def packable(draw):
    dtype = draw(st.sampled_from(DTYPES))
    width = draw(st.integers(1, min(32, 8 * np.dtype(dtype).itemsize)))
    values = draw(st.lists(st.integers(0, 2 ** width - 1), max_size=80))
    return np.array(values, dtype), width


@settings(max_examples=at_least(150))
@given(packable())
def test_kernels_match_naive(case):
    values, width = case
    out = np.empty(kernels.packed_size(len(values), width), np.uint8)
    kernels.pack(values, width, out)
    assert out.tobytes() == naive.pack_bits(values.tolist(), width)
    back = np.empty(len(values), values.dtype)
    kernels.unpack(out, width, back)
    assert back.tolist() == naive.unpack_bits(out, len(values), width)


@settings(max_examples=at_least(100))
@given(packable())
def test_codec_round_trip(case):
    values, width = case
    if len(values) == 0:
        return
    size = values.dtype.itemsize
    stream = bitpack.encode(values, size, width=width)
    assert stream.codec == Codec.BITPACK and stream.param == width
    assert len(stream.payload) == (len(values) * width + 7) // 8
    np.testing.assert_array_equal(bitpack.decode(stream.payload, len(values), size, width), values)


def test_spec_bit_order():
    # 3-bit values 1, 2, 7: bits 100 010 111 (LSB first) -> byte 0b11010001, then 0b1 + padding
    assert bitpack.encode(np.array([1, 2, 7], np.uint8), 1).payload == bytes([0b11010001, 0b1])


def test_default_width_is_minimal():
    assert bitpack.encode(np.array([0, 0], np.uint8), 1).param == 1
    assert bitpack.encode(np.array([0, 5], np.uint8), 1).param == 3
    assert bitpack.encode(np.array([2 ** 32 - 1], np.uint64), 8).param == 32


def test_encode_refusals():
    with pytest.raises(EncodingError):
        bitpack.encode(np.array([8], np.uint8), 1, width=3)  # too narrow
    with pytest.raises(EncodingError):
        bitpack.encode(np.array([1], np.uint8), 1, width=9)  # wider than the element
    with pytest.raises(EncodingError):
        bitpack.encode(np.array([1], np.uint64), 8, width=33)
    with pytest.raises(EncodingError):
        bitpack.encode(np.array([2 ** 32], np.uint64), 8)
    with pytest.raises(EncodingError):
        bitpack.encode(np.zeros(0, np.uint8), 1)


@pytest.mark.parametrize("width", [1, 3, 5, 8, 13, 31, 32])
def test_length_must_be_exact(width):
    values = np.arange(11, dtype=np.uint32) % 2
    payload = bitpack.encode(values, 4, width=width).payload
    with pytest.raises(CountMismatchError):
        bitpack.decode(payload[:-1], 11, 4, width)
    with pytest.raises(CountMismatchError):
        bitpack.decode(payload + b"\0", 11, 4, width)
    with pytest.raises(CountMismatchError):
        bitpack.decode(payload, 11 + 8, 4, width)


def test_non_zero_padding_is_corrupted():
    payload = bytearray(bitpack.encode(np.array([1, 2, 7], np.uint8), 1).payload)  # 9 of 16 bits
    for bit in range(1, 8):
        bad = bytearray(payload)
        bad[-1] |= 1 << bit
        with pytest.raises(CorruptFileError):
            bitpack.decode(bytes(bad), 3, 1, 3)
    np.testing.assert_array_equal(bitpack.decode(bytes(payload), 3, 1, 3), [1, 2, 7])


def test_bad_params_are_corrupted():
    for width, size in [(0, 4), (33, 8), (9, 1), (17, 2)]:
        with pytest.raises(CorruptFileError):
            bitpack.decode(b"\0" * 64, 8, size, width)
    with pytest.raises(CorruptFileError):
        bitpack.decode(b"", 0, 1, 1)  # a stream of no elements must be PLAIN


def test_decode_dtypes():
    for size in (1, 2, 4, 8):
        out = bitpack.decode(b"\x05", 2, size, 4)
        assert out.dtype == np.dtype(f"<u{size}") and out.tolist() == [5, 0]


@pytest.mark.parametrize("width", [1, 5, 32])
def test_unpack_never_reads_past_input(width, monkeypatch):
    # Run the kernel as plain Python so that numpy's bounds checks catch any read past the end:
    # whatever the input length, unpack must stay inside it.
    def python(f):  # already Python under NUMBA_DISABLE_JIT
        return getattr(f, "py_func", f)

    monkeypatch.setattr(kernels, "_load64", python(kernels._load64))
    for n in range(0, 20):
        data = np.full(n, 0xFF, np.uint8)
        out = np.empty(40, np.uint64)
        python(kernels.unpack)(data, width, out)
        full = min(40, n * 8 // width)  # values whose bits all lie inside data
        assert out[:full].tolist() == [2 ** width - 1] * full


def test_hostile():
    values = np.arange(30, dtype=np.uint16) * 7
    stream = bitpack.encode(values, 2)
    naive.check_hostile(bitpack.decode, stream.payload, 30, 2, stream.param)
