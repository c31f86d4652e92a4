"""ZSTD (spec §8.4): one frame stating its content size, nothing after it, bounded expansion."""
import numpy as np
import pytest
import zstandard

import naive
from dcformat.codecs import zstd
from dcformat.constants import MAX_ZSTD_EXPANSION, Codec
from dcformat.errors import CorruptFileError, CountMismatchError, EncodingError, LimitExceededError

ELEMENTS = (np.arange(3000, dtype=np.uint32) % 17) * 1000


def _fcs_offset(frame):
    """Offset and size of the Frame_Content_Size field of a frame (RFC 8878 §3.1.1.1)."""
    fhd = frame[4]
    fcs_flag, single_segment, dict_flag = fhd >> 6, (fhd >> 5) & 1, fhd & 3
    offset = 5 + (0 if single_segment else 1) + [0, 1, 2, 4][dict_flag]
    size = [1 if single_segment else 0, 2, 4, 8][fcs_flag]
    return offset, size


def test_round_trip_and_frame_properties():
    for size, dtype in [(1, np.uint8), (2, np.uint16), (4, np.uint32), (8, np.uint64)]:
        values = (ELEMENTS % 251).astype(dtype)
        stream = zstd.encode(values, size)
        assert stream.codec == Codec.ZSTD and stream.param == 0
        params = zstandard.get_frame_parameters(stream.payload)
        assert params.content_size == values.size * size
        assert not params.has_checksum and params.dict_id == 0
        out = zstd.decode(memoryview(stream.payload), values.size, size, 0, None)
        assert out.dtype == np.dtype(f"<u{size}") and out.flags.writeable
        np.testing.assert_array_equal(out, values)


def test_level_option():
    fast = zstd.encode(ELEMENTS, 4, level=1).payload
    np.testing.assert_array_equal(zstd.decode(fast, ELEMENTS.size, 4), ELEMENTS)
    for bad in (99, "3", 2.5):
        with pytest.raises(EncodingError):
            zstd.encode(ELEMENTS, 4, level=bad)
    with pytest.raises(EncodingError):
        zstd.encode(np.zeros(0, np.uint8), 1)


def test_frame_with_checksum_is_accepted_and_checked():
    frame = zstandard.ZstdCompressor(write_checksum=True).compress(ELEMENTS.tobytes())
    np.testing.assert_array_equal(zstd.decode(frame, ELEMENTS.size, 4), ELEMENTS)
    bad = frame[:-1] + bytes([frame[-1] ^ 1])
    with pytest.raises(CorruptFileError):
        zstd.decode(bad, ELEMENTS.size, 4)


def test_content_size_must_be_stated():
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(ELEMENTS.tobytes())
    assert zstandard.frame_content_size(frame) == -1
    with pytest.raises(CorruptFileError, match="content size"):
        zstd.decode(frame, ELEMENTS.size, 4)


def test_content_size_must_match_count():
    frame = zstd.encode(ELEMENTS, 4).payload
    for count in (ELEMENTS.size - 1, ELEMENTS.size + 1):
        with pytest.raises(CountMismatchError):
            zstd.decode(frame, count, 4)
    with pytest.raises(CountMismatchError):  # same count, other element size
        zstd.decode(frame, ELEMENTS.size, 8)


@pytest.mark.parametrize("n", [10, 200, 70_000])
def test_lying_content_size(n):
    # The header states count × element_size, but the blocks hold one byte more or less.
    content = bytes(range(256)) * (n // 256) + bytes(n % 256)
    for actual in (content[:-1], content + b"\x07"):
        frame = bytearray(zstandard.ZstdCompressor(level=3).compress(actual))
        offset, size = _fcs_offset(frame)
        stated = n - (256 if size == 2 else 0)
        frame[offset:offset + size] = stated.to_bytes(size, "little")
        assert zstandard.frame_content_size(bytes(frame)) == n
        with pytest.raises(CorruptFileError):
            zstd.decode(bytes(frame), n, 1)


def test_nothing_after_the_frame():
    frame = zstd.encode(ELEMENTS, 4).payload
    skippable = b"\x50\x2a\x4d\x18" + (4).to_bytes(4, "little") + b"abcd"
    for extra in (b"\0", b"garbage", frame, skippable):
        with pytest.raises(CorruptFileError):
            zstd.decode(frame + extra, ELEMENTS.size, 4)


def test_skippable_frame_alone_is_refused():
    # libzstd reports a skippable frame's size as its "content size": the magic check catches it.
    skippable = b"\x50\x2a\x4d\x18" + (12).to_bytes(4, "little") + bytes(12)
    assert zstandard.get_frame_parameters(skippable).content_size == 12
    with pytest.raises(CorruptFileError):
        zstd.decode(skippable, 3, 4)


def test_decompression_bomb_is_refused_before_allocating(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("zstandard called for a stream the expansion bound refuses")

    monkeypatch.setattr(zstandard, "ZstdDecompressor", forbidden)
    monkeypatch.setattr(zstandard, "get_frame_parameters", forbidden)
    tiny = zstandard.ZstdCompressor().compress(b"\0" * 100)
    with pytest.raises(LimitExceededError):
        zstd.decode(tiny, 2 ** 40, 8)
    with pytest.raises(LimitExceededError):
        zstd.decode(tiny, MAX_ZSTD_EXPANSION * len(tiny) + 1, 1)
    with pytest.raises(LimitExceededError):
        zstd.decode(b"", 1, 1)


def test_expansion_bound_is_inclusive():
    payload = b"\x28\xb5\x2f\xfd" + bytes(12)
    with pytest.raises(CorruptFileError) as info:
        zstd.decode(payload, MAX_ZSTD_EXPANSION * len(payload) // 8, 8)
    assert not isinstance(info.value, LimitExceededError)


def test_highly_compressible_stream_is_within_the_bound():
    values = np.zeros(2 ** 22, np.uint64)  # 32 MiB of zeros
    payload = zstd.encode(values, 8, level=19).payload
    assert values.nbytes <= MAX_ZSTD_EXPANSION * len(payload)
    np.testing.assert_array_equal(zstd.decode(payload, values.size, 8), values)


def test_count_and_param_rules():
    frame = zstd.encode(ELEMENTS, 4).payload
    with pytest.raises(CorruptFileError):
        zstd.decode(frame, ELEMENTS.size, 4, 1)  # param must be 0
    with pytest.raises(CorruptFileError):
        zstd.decode(b"", 0, 4)  # no elements: must be PLAIN
    for bad in (b"\0" * 16, b"\x28\xb5\x2f", b"\x28\xb5\x2f\xfd", b"\x28\xb5\x2f\xfd\xff\xff"):
        with pytest.raises(CorruptFileError):
            zstd.decode(bad, 1, 1)


def test_hostile():
    values = np.arange(200, dtype=np.uint16) % 7
    naive.check_hostile(zstd.decode, zstd.encode(values, 2).payload, 200, 2, 0, flips=200)
