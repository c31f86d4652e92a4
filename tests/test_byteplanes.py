"""BYTEPLANES (spec §8.5): header, planes, rotation, and every rule that makes a stream corrupt."""
import importlib.util
import struct

import numpy as np
import pytest
from hypothesis import given, strategies as st

import naive
from dcformat.codecs import byteplanes, plain, zstd
from dcformat.constants import Codec, PlaneTransform
from dcformat.errors import CorruptFileError, CountMismatchError, EncodingError

HAVE_HUFFMAN = importlib.util.find_spec("dcformat.codecs.huffman") is not None
CODEC_SETS = [(Codec.PLAIN,), (Codec.ZSTD,), (Codec.PLAIN, Codec.ZSTD)]
if HAVE_HUFFMAN:
    CODEC_SETS += [(Codec.HUFFMAN,), (Codec.PLAIN, Codec.HUFFMAN, Codec.ZSTD)]
needs_huffman = pytest.mark.skipif(not HAVE_HUFFMAN, reason="no dcformat.codecs.huffman yet")
UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def weights(n=4000, dtype=np.float32, seed=0):
    """Bit patterns of weights shaped like trained ones: small, normal-ish."""
    w = (np.random.default_rng(seed).standard_normal(n) * 0.02).astype(dtype)
    return w.view(UINT[w.dtype.itemsize])


def parse(payload):
    """The header of spec §8.5, read independently of the codec."""
    transform, plane_count, reserved = struct.unpack_from("<BBH", payload, 0)
    planes, offset = [], 4 + 8 * plane_count
    for j in range(plane_count):
        codec, r0, r1, r2, length = struct.unpack_from("<BBBBI", payload, 4 + 8 * j)
        assert (r0, r1, r2) == (0, 0, 0)
        planes.append((codec, payload[offset:offset + length]))
        offset += length
    assert reserved == 0 and offset == len(payload)
    return transform, planes


@pytest.mark.parametrize("size", [2, 4, 8])
@pytest.mark.parametrize("transform", [PlaneTransform.NONE, PlaneTransform.ROTATE])
def test_wire_layout_with_plain_planes(size, transform):
    values = np.random.default_rng(size).integers(0, 2 ** (8 * size), 50, dtype=UINT[size],
                                                  endpoint=False)
    stream = byteplanes.encode(values, size, transform=transform, plane_codecs=(Codec.PLAIN,))
    assert stream.codec == Codec.BYTEPLANES and stream.param == 0
    t, planes = parse(stream.payload)
    assert t == transform and len(planes) == size
    bits = 8 * size
    expected = [naive.rotate_left(int(v), bits) if transform else int(v) for v in values]
    for j, (codec, data) in enumerate(planes):
        assert codec == Codec.PLAIN
        assert list(data) == [(x >> (8 * j)) & 0xFF for x in expected]
    np.testing.assert_array_equal(byteplanes.decode(stream.payload, values.size, size), values)


@pytest.mark.parametrize("size", [2, 4, 8])
def test_rotation_matches_spec(size):
    bits = 8 * size
    x = np.array([0, 1, 2 ** (bits - 1), 2 ** bits - 1, 0x1234567890ABCDEF % 2 ** bits], UINT[size])
    t = byteplanes.rotate_left(x)
    assert t.tolist() == [naive.rotate_left(int(v), bits) for v in x]
    assert byteplanes.rotate_right(t).tolist() == x.tolist()
    assert [naive.rotate_right(int(v), bits) for v in t] == x.tolist()


@given(st.sampled_from([2, 4, 8]), st.integers(1, 300), st.integers(0, 2 ** 32 - 1),
       st.sampled_from(CODEC_SETS), st.sampled_from([None, 0, 1]))
def test_round_trip(size, n, seed, codecs, transform):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2 ** (8 * size), n, dtype=UINT[size], endpoint=False)
    values[rng.random(n) < 0.5] = 0  # give the entropy coders something
    stream = byteplanes.encode(values, size, transform=transform, plane_codecs=codecs)
    _, planes = parse(stream.payload)
    assert {codec for codec, _ in planes} <= set(codecs)
    out = byteplanes.decode(memoryview(stream.payload), n, size, 0, None)
    assert out.dtype == np.dtype(f"<u{size}")
    np.testing.assert_array_equal(out, values)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_auto_transform_keeps_the_smaller(dtype):
    values = weights(dtype=dtype)
    size = values.dtype.itemsize
    codecs = (Codec.PLAIN, Codec.ZSTD)
    sizes = {t: len(byteplanes.encode(values, size, transform=t, plane_codecs=codecs).payload)
             for t in (0, 1)}
    auto = byteplanes.encode(values, size, plane_codecs=codecs).payload
    assert len(auto) == min(sizes.values())
    assert auto[0] == (0 if sizes[0] <= sizes[1] else 1)
    np.testing.assert_array_equal(byteplanes.decode(auto, values.size, size), values)


@needs_huffman
def test_huffman_planes_and_default_codecs():
    values = weights(20000)
    stream = byteplanes.encode(values, 4)  # default: PLAIN, HUFFMAN, ZSTD per plane; auto transform
    transform, planes = parse(stream.payload)
    assert transform == PlaneTransform.ROTATE  # the exponent plane is what makes floats compress
    assert len(stream.payload) < plain.encode(values, 4).payload.__len__() * 0.9
    np.testing.assert_array_equal(byteplanes.decode(stream.payload, values.size, 4), values)
    only_huffman = byteplanes.encode(values, 4, plane_codecs=(Codec.HUFFMAN,))
    assert {c for c, _ in parse(only_huffman.payload)[1]} == {Codec.HUFFMAN}
    np.testing.assert_array_equal(byteplanes.decode(only_huffman.payload, values.size, 4), values)


def test_plane_options_reach_the_plane_codec():
    values = weights()
    stream = byteplanes.encode(values, 4, transform=1, plane_codecs=(Codec.ZSTD,),
                               plane_options={Codec.ZSTD: {"level": 1}})
    _, planes = parse(stream.payload)
    top_plane = np.ascontiguousarray(byteplanes.rotate_left(values).view(np.uint8)[3::4])
    assert bytes(planes[3][1]) == zstd.encode(top_plane, 1, level=1).payload


def test_encode_refusals():
    with pytest.raises(EncodingError):
        byteplanes.encode(np.arange(4, dtype=np.uint8), 1)
    with pytest.raises(EncodingError):
        byteplanes.encode(np.zeros(0, np.uint16), 2)
    for codecs in [(), (Codec.BITPACK,), (Codec.PLAIN, Codec.BYTEPLANES), (9,)]:
        with pytest.raises(EncodingError):
            byteplanes.encode(np.arange(4, dtype=np.uint16), 2, plane_codecs=codecs)
    with pytest.raises(EncodingError):
        byteplanes.encode(np.arange(4, dtype=np.uint16), 2, transform=2)


def _plain_stream(values=np.arange(1, 6, dtype=np.uint32) * 0x01020304):
    return bytearray(byteplanes.encode(values, 4, transform=0, plane_codecs=(Codec.PLAIN,)).payload)


def test_header_rules():
    good = _plain_stream()
    assert byteplanes.decode(bytes(good), 5, 4).tolist() == (np.arange(1, 6) * 0x01020304).tolist()

    def corrupt(edit, error=CorruptFileError, count=5, size=4):
        data = bytearray(good)
        edit(data)
        with pytest.raises(error):
            byteplanes.decode(bytes(data), count, size)

    corrupt(lambda d: d.__setitem__(0, 2))  # unknown transform
    corrupt(lambda d: d.__setitem__(1, 2))  # plane_count != element_size
    corrupt(lambda d: d.__setitem__(1, 8))
    corrupt(lambda d: d.__setitem__(2, 1))  # reserved
    corrupt(lambda d: d.__setitem__(3, 0x80))
    for codec in (Codec.BITPACK, Codec.BYTEPLANES, 5, 255):
        corrupt(lambda d, c=codec: d.__setitem__(4 + 8, c))  # plane 1's codec
    for byte in (1, 2, 3):
        corrupt(lambda d, b=byte: d.__setitem__(4 + 8 * 2 + b, 1))  # plane 2's reserved bytes
    # plane lengths that do not add up to the payload
    corrupt(lambda d: d.extend(b"\0"), CountMismatchError)
    corrupt(lambda d: d.__setitem__(4 + 4, 6), CountMismatchError)
    corrupt(lambda d: d.__setitem__(4 + 4, 4), CountMismatchError)
    # a plane that adds up but does not hold count elements
    corrupt(lambda d: (d.__setitem__(4 + 4, 6), d.__setitem__(4 + 8 + 4, 4)), CountMismatchError)
    corrupt(lambda d: None, CountMismatchError, count=6)
    corrupt(lambda d: None, CorruptFileError, size=2)  # plane_count 4 vs element_size 2
    corrupt(lambda d: None, CorruptFileError, size=1)
    with pytest.raises(CorruptFileError):
        byteplanes.decode(bytes(good), 5, 4, 1)  # param must be 0
    with pytest.raises(CorruptFileError):
        byteplanes.decode(b"", 0, 4)  # no elements: must be PLAIN
    for n in range(0, 4 + 8 * 4):
        with pytest.raises(CorruptFileError):
            byteplanes.decode(bytes(good[:n]), 5, 4)


def test_huge_count_refused_by_the_planes():
    # A tiny stream claiming 2**40 elements fails in the plane codecs' own length checks.
    data = bytes(_plain_stream())
    with pytest.raises(CorruptFileError):
        byteplanes.decode(data, 2 ** 40, 4)


@pytest.mark.parametrize("codecs", CODEC_SETS[1:])
def test_hostile(codecs):
    values = weights(300)
    stream = byteplanes.encode(values, 4, plane_codecs=codecs)
    naive.check_hostile(byteplanes.decode, stream.payload, 300, 4, 0, flips=100)
