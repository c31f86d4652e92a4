"""PLAIN codec (spec §8.1) and the element helpers the codecs share."""
import numpy as np
import pytest

import naive
from dcformat.codecs import get_codec, plain
from dcformat.constants import Codec
from dcformat.errors import CorruptFileError, CountMismatchError, EncodingError

SIZES = [(1, np.uint8), (2, np.uint16), (4, np.uint32), (8, np.uint64)]


@pytest.mark.parametrize("size,dtype", SIZES)
def test_round_trip_and_wire_layout(size, dtype):
    a = np.array([0, 1, 2 ** (8 * size) - 1, 0x1234 % 2 ** (8 * size)], dtype)
    stream = plain.encode(a, size)
    assert stream == (Codec.PLAIN, 0, a.astype(f"<u{size}").tobytes())
    out = plain.decode(memoryview(stream.payload), len(a), size, 0, None)
    assert out.dtype == np.dtype(f"<u{size}") and out.flags.writeable
    np.testing.assert_array_equal(out, a)


def test_little_endian_bytes():
    assert plain.encode(np.array([0x0102], np.uint16), 2).payload == b"\x02\x01"
    assert plain.encode(np.array([1], np.uint64), 4).payload == b"\x01\0\0\0"


def test_registry():
    assert get_codec(Codec.PLAIN) is plain


def test_empty_stream():
    assert plain.encode(np.zeros(0, np.uint8), 1).payload == b""
    assert plain.decode(b"", 0, 4, 0, None).shape == (0,)


@pytest.mark.parametrize("size,dtype", SIZES)
def test_length_must_be_exact(size, dtype):
    payload = plain.encode(np.arange(5, dtype=dtype), size).payload
    for bad in (payload[:-1], payload + b"\0", b""):
        with pytest.raises(CountMismatchError):
            plain.decode(bad, 5, size, 0, None)
    with pytest.raises(CountMismatchError):
        plain.decode(payload, 6, size, 0, None)


def test_param_must_be_zero():
    with pytest.raises(CorruptFileError):
        plain.decode(b"\0", 1, 1, 3, None)


def test_decoded_array_owns_its_memory():
    payload = bytearray(b"\x05\x06")
    out = plain.decode(payload, 2, 1, 0, None)
    payload[0] = 9
    assert out[0] == 5


def test_as_elements_rejects_bad_input():
    with pytest.raises(EncodingError):
        plain.encode(np.array([-1, 2], np.int32), 4)
    with pytest.raises(EncodingError):
        plain.encode(np.zeros((2, 2), np.uint8), 1)
    with pytest.raises(EncodingError):
        plain.encode(np.array([256], np.uint16), 1)
    with pytest.raises(EncodingError):
        plain.encode(np.array([1], np.uint8), 3)
    # wider dtypes are fine when the values fit
    assert plain.encode(np.array([255], np.uint64), 1).payload == b"\xff"


def test_hostile():
    payload = plain.encode(np.arange(7, dtype=np.uint32), 4).payload
    naive.check_hostile(plain.decode, payload, 7, 4, 0)
