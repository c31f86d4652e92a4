"""The rules spec/FORMAT.md spells out for second implementations (clarified 2026-12-01), checked
against the reference decoder: each test names the section it checks."""
import re
import struct
import zlib

import numpy as np
import pytest

import dcformat
import fuzz_helpers as fh
from dcformat.codecs import huffman, zstd
from dcformat.constants import MAX_EMPTY_SHAPE_PRODUCT, CodebookDType, Codec, DType
from dcformat.conversion import convert_codebook
from dcformat.errors import (
    ChecksumError,
    CorruptFileError,
    EncodingError,
    HuffmanTableError,
    LimitExceededError,
    TruncatedFileError,
)
from dcformat.reader import DCFReader

SPEC = (fh.ROOT / "spec" / "FORMAT.md").read_text(encoding="utf-8")


def _file(index: bytes) -> bytes:
    """A file with an empty data section around ``index``."""
    return (b"\x89DCF" + struct.pack("<HHB", 1, 0, 0) + bytes(7) + index
            + struct.pack("<QI", len(index), zlib.crc32(index)) + b"\x89DCF")


def _decode_all(data: bytes) -> dict:
    with DCFReader(data) as f:
        return {name: f.get_tensor(name) for name in f.keys()}


# --------------------------------------------------------------------------------------------
# §2, §3: the smallest file, the end magic


def test_smallest_valid_file_is_40_bytes():
    smallest = _file(struct.pack("<II", 0, 0))
    assert len(smallest) == 40 and "The smallest valid file is 40 bytes" in SPEC
    assert _decode_all(smallest) == {}
    for length in range(32, 40):  # the magics where they belong, but no room for an 8-byte index
        data = bytearray(length)
        data[:4] = data[-4:] = b"\x89DCF"
        data[4:6] = b"\x01\x00"
        data[-16:-8] = struct.pack("<Q", 8)
        with pytest.raises(TruncatedFileError):
            DCFReader(bytes(data))


def test_bad_end_magic_is_a_truncated_file():
    data = bytearray(_file(struct.pack("<II", 0, 0)))
    data[-1] ^= 0xFF
    with pytest.raises(TruncatedFileError, match="trailer magic"):
        DCFReader(bytes(data))


# --------------------------------------------------------------------------------------------
# §1: UTF-8


def _metadata_file(key: bytes, value: bytes = b"v") -> bytes:
    entry = struct.pack("<H", len(key)) + key + struct.pack("<I", len(value)) + value
    return _file(struct.pack("<II", 0, 1) + entry)


@pytest.mark.parametrize("text", [b"a\x00b", b"\xef\xbb\xbfbom", b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf", b"\t"])
def test_well_formed_utf8_is_accepted_as_is(text):
    with DCFReader(_metadata_file(text, text)) as f:
        assert f.metadata() == {text.decode("utf-8"): text.decode("utf-8")}


@pytest.mark.parametrize("text", [b"\xc0\x80", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80",
                                  b"\xf5\x80\x80\x80", b"\x80", b"a\xc2", b"\xff"])
def test_ill_formed_utf8_is_corrupted(text):
    """Overlongs, encoded surrogates, beyond U+10FFFF, stray or missing continuation bytes."""
    for data in (_metadata_file(text), _metadata_file(b"k", text)):
        with pytest.raises(CorruptFileError, match="UTF-8"):
            DCFReader(data)


# --------------------------------------------------------------------------------------------
# §4.2: numel and MAX_EMPTY_SHAPE_PRODUCT


@pytest.mark.parametrize("shape", [(2**41, 0), (0, 2**41), (3, 0, 2**40), (0, 2**30, 2**30 - 1),
                                   (MAX_EMPTY_SHAPE_PRODUCT, 0)])
def test_an_empty_tensor_has_numel_0_whatever_the_order_of_its_dimensions(shape):
    model = fh.parse_model(dcformat.save({"w": np.zeros((0, 1), np.float32)}))
    model.tensors[0].shape = list(shape)
    with DCFReader(fh.serialize(model)) as f:
        assert f.info("w").numel == 0 and f.get_tensor("w").shape == shape
    if shape[0] < 2**63:
        assert dcformat.load(dcformat.save({"w": np.zeros(shape, np.uint8)}))["w"].shape == shape


@pytest.mark.parametrize("shape", [(2**30, 0, 2**30), (0, 2**60), (2**61, 0)])
def test_max_empty_shape_product_binds_reader_and_writer(shape):
    assert int(np.prod([d for d in shape if d], dtype=object)) > MAX_EMPTY_SHAPE_PRODUCT
    model = fh.parse_model(dcformat.save({"w": np.zeros((0, 1), np.float32)}))
    model.tensors[0].shape = list(shape)
    with pytest.raises(LimitExceededError, match="MAX_EMPTY_SHAPE_PRODUCT"):
        DCFReader(fh.serialize(model))
    with pytest.raises(EncodingError):
        dcformat.save({"w": np.zeros(shape, np.uint8)})


# --------------------------------------------------------------------------------------------
# §3.3: unknown enum values inside a payload refuse that tensor only


def _with_byteplanes():
    rng = np.random.default_rng(3)
    data = dcformat.save({"planes": rng.normal(size=256).astype(np.float32), "other": np.arange(4, dtype=np.int16)},
                         encodings={"planes": {"codecs": ("byteplanes",), "codebook": "never"},
                                    "other": {"codecs": ("plain",)}})
    model = fh.parse_model(data)
    model.minor = 1
    assert model.tensors[0].chunks[0].streams[0].codec == Codec.BYTEPLANES
    return model


@pytest.mark.parametrize("offset, value, words", [(0, 2, "transform 2"), (0, 255, "transform 255"),
                                                  (4, Codec.BITPACK, "codec 1"), (4, 5, "codec 5"),
                                                  (4, Codec.BYTEPLANES, "codec 4")])
def test_unknown_value_in_a_payload_refuses_only_its_tensor(offset, value, words):
    model = _with_byteplanes()
    stream = model.tensors[0].chunks[0].streams[0]
    payload = bytearray(stream.payload)
    payload[offset] = value
    stream.payload = bytes(payload)
    with DCFReader(fh.serialize(model)) as f:  # the index is fine: the file opens
        assert f.get_tensor("other").tolist() == [0, 1, 2, 3]
        with pytest.raises(CorruptFileError, match=words):
            f.get_tensor("planes")


# --------------------------------------------------------------------------------------------
# §4.4, §4.5, §8: streams without elements


def test_an_empty_stream_has_crc_0():
    w = np.zeros((4, 8), np.float32)
    w[3, 5] = 1.5
    model = fh.parse_model(dcformat.save({"w": w}, encodings={"w": {"layout": "csr", "index_bits": 4,
                                                                      "chunk_elements": 16, "codecs": ("plain",),
                                                                      "codebook": "never"}}))
    first = model.tensors[0].chunks[0]
    assert [(s.codec, s.count, len(s.payload)) for s in first.streams[1:]] == [(Codec.PLAIN, 0, 0)] * 2
    assert np.array_equal(_decode_all(fh.serialize(model))["w"], w)
    first.streams[1].crc = 1
    with pytest.raises(ChecksumError):
        _decode_all(fh.serialize(model))


# --------------------------------------------------------------------------------------------
# §7.2: codebook conversion, bit for bit

_F16_BITS = np.arange(2**16, dtype=np.uint32).astype(np.uint16)


def _f16_values(bits: np.ndarray) -> np.ndarray:
    """Exact float64 values of float16 bit patterns, from the bits alone (not numpy's float16)."""
    bits = bits.astype(np.int64)
    sign = np.where(bits >> 15, -1.0, 1.0)
    exponent, mantissa = (bits >> 10) & 31, bits & 1023
    value = np.where(exponent == 0, np.ldexp(mantissa.astype(float), -24),
                     np.ldexp((mantissa | 1024).astype(float), exponent - 25))
    return sign * np.where(exponent == 31, np.where(mantissa == 0, np.inf, np.nan), value)


def _f32_sample() -> np.ndarray:
    rng = np.random.default_rng(72)
    edges = np.array([0, 1, 0x1FFF, 0x2000, 0x2001, 0x3FFF, 0x7FFF, 0x8000, 0x8001, 0x18000, 0x7FFFFF],
                     np.uint32)
    every_exponent = (np.arange(255, dtype=np.uint32)[:, None] << np.uint32(23) | edges).ravel()
    sample = np.concatenate([rng.integers(0, 2**32, 60_000, dtype=np.uint64).astype(np.uint32),
                             every_exponent, every_exponent | np.uint32(0x8000_0000)])
    return sample[(sample & 0x7F80_0000) != 0x7F80_0000]  # numbers and infinities: no NaN


def _nearest(values: np.ndarray, table_bits: np.ndarray, table_values: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even of float64 ``values`` into the finite values of a target type (given as
    sorted ``table_values`` with their bits), overflow to infinity at the midpoint past the largest."""
    top, below_top = table_values[-1], table_values[-2]
    overflow = top + (top - below_top) / 2
    index = np.clip(np.searchsorted(table_values, np.abs(values)), 1, table_values.size - 1)
    lo, hi = table_values[index - 1], table_values[index]
    a = np.abs(values)
    pick_hi = (a - lo > hi - a) | ((a - lo == hi - a) & (table_bits[index] % 2 == 0))
    bits = np.where(a == lo, table_bits[index - 1], np.where(pick_hi, table_bits[index], table_bits[index - 1]))
    bits = np.where(a == hi, table_bits[index], bits)
    bits = np.where(a >= overflow, table_bits[-1] + 1, bits)  # the next pattern is infinity
    return bits | np.where(np.signbit(values), 0x8000, 0).astype(bits.dtype)


def test_numbers_convert_with_round_to_nearest_even():
    """Every non-NaN value: F32 -> F16 against an independent rounding, F32 -> BF16 against the
    spec's formula, widenings against exact values computed from the bits."""
    x = _f32_sample()
    positive = _F16_BITS[:0x7C00]
    f16 = _nearest(x.view(np.float32).astype(np.float64), positive.astype(np.uint32), _f16_values(positive))
    assert np.array_equal(convert_codebook(x, CodebookDType.F32, DType.F16), f16.astype(np.uint16))
    bf16 = ((x.astype(np.uint64) + 0x7FFF + ((x >> 16) & 1)) >> 16).astype(np.uint16)
    assert np.array_equal(convert_codebook(x, CodebookDType.F32, DType.BF16), bf16)
    assert np.array_equal(convert_codebook(x, CodebookDType.F32, DType.F64).view(np.float64),
                          x.view(np.float32).astype(np.float64))  # exact: float64 holds every float32
    numbers = _F16_BITS[(_F16_BITS & 0x7C00) != 0x7C00 | ((_F16_BITS & 0x3FF) == 0)]
    exact = _f16_values(numbers)
    assert np.array_equal(convert_codebook(numbers, CodebookDType.F16, DType.F32).view(np.float32), exact)
    assert np.array_equal(convert_codebook(numbers, CodebookDType.F16, DType.F64).view(np.float64), exact)
    as_f32 = exact.astype(np.float32).view(np.uint32).astype(np.uint64)
    assert np.array_equal(convert_codebook(numbers, CodebookDType.F16, DType.BF16),
                          ((as_f32 + 0x7FFF + ((as_f32 >> 16) & 1)) >> 16).astype(np.uint16))
    for codebook, bits in ((CodebookDType.F32, x), (CodebookDType.F16, _F16_BITS)):  # same type: copied
        target = DType.F32 if codebook == CodebookDType.F32 else DType.F16
        assert np.array_equal(convert_codebook(bits, codebook, target), bits)


def _nan_rows():
    section = SPEC[SPEC.index("**Conversion, bit for bit.**"):SPEC.index("## 8. Stream codecs")]
    rows = re.findall(r"^\| (F32|F16) \| (F16|F32|F64|BF16) \| `([^`]+)`", section, re.M)
    assert len(rows) == 6
    return [(CodebookDType[a], DType[b], rule.replace("\\|", "|")) for a, b, rule in rows]


@pytest.mark.parametrize("source, target, rule", _nan_rows())
def test_nan_conversion_is_the_spec_table(source, target, rule):
    """The NaN table of §7.2, evaluated as written, against the decoder: quiet and signalling NaNs,
    both signs, payloads that survive truncation and payloads that do not."""
    significand_bits, exponent = (23, 0x7F80_0000) if source == CodebookDType.F32 else (10, 0x7C00)
    significands = [1, 2, 3, 1 << (significand_bits - 1), (1 << (significand_bits - 1)) | 1,
                    (1 << significand_bits) - 1, 1 << (significand_bits - 2), 0x2000 % (1 << significand_bits) or 5]
    patterns = [(s, m) for s in (0, 1) for m in significands]
    bits = np.array([s << (significand_bits + (8 if source == CodebookDType.F32 else 5)) | exponent | m
                     for s, m in patterns], np.uint32 if source == CodebookDType.F32 else np.uint16)
    got = convert_codebook(bits, source, target)
    want = [eval(rule, {"max": max}, {"s": s, "m": m}) for s, m in patterns]  # noqa: S307 (the spec's text)
    assert [int(v) for v in got] == want


def test_nan_conversion_through_a_file():
    codebook = np.array([0x7F800001, 0xFFC00001, 0x7FA00000, 0x3F800000], np.uint32).view(np.float32)
    tensor = dcformat.CodebookTensor(codebook, np.array([0, 1, 2, 3], np.int32), np.float16)
    got = dcformat.load(dcformat.save({"w": tensor}, encodings={"w": {"codebook_dtype": "float32"}}))["w"]
    assert got.view(np.uint16).tolist() == [0x7C01, 0xFE00, 0x7D00, 0x3C00]


# --------------------------------------------------------------------------------------------
# §8.3: the Huffman alphabet bound of every role


def _huffman(symbols, alphabet: int) -> bytes:
    """A one-lane HUFFMAN payload of ``symbols`` whose table has ``alphabet`` entries: the symbols
    used share a complete code, the symbols above them have length 0."""
    used = int(max(symbols)) + 1
    lengths = np.zeros(alphabet, np.uint8)
    lengths[:used] = huffman.code_lengths(np.bincount(np.asarray(symbols), minlength=used) + 1)
    symbols = np.asarray(symbols, np.uint16)
    lane_bytes = np.array([(int(lengths[symbols].astype(np.int64).sum()) + 7) // 8])
    return huffman._serialize(symbols, lengths, 1, lane_bytes)  # no writer checks: alphabets past 65536 too


def _stream_with_alphabet(model, stream, alphabet):
    stream.codec, stream.param = Codec.HUFFMAN, 0
    stream.payload = _huffman(stream.elements, alphabet)
    return fh.serialize(model)


def _bool_model():
    return fh.parse_model(dcformat.save({"b": np.array([True, False, True, True])},
                                        encodings={"b": {"codecs": ("plain",)}}))


def _csr_model():
    w = np.zeros((2, 300), np.float32)
    w[0, [3, 290]] = 1.0
    w[1, 7] = 2.0
    return fh.parse_model(dcformat.save({"w": w}, encodings={"w": {"layout": "csr", "index_bits": 5,
                                                                      "codecs": ("plain",), "codebook": "never"}}))


def _codebook_model():
    ct = dcformat.CodebookTensor(np.array([0.5, -1.0, 2.0], np.float16), np.array([[0, 1], [2, 1]], np.int32))
    return fh.parse_model(dcformat.save({"w": ct}, encodings={"w": {"layout": "dense", "codecs": ("plain",)}}))


ROLES = {
    # row of the table: (model maker, which stream, the largest alphabet allowed)
    "VALUES, RAW, BOOL": (_bool_model, lambda m: m.tensors[0].chunks[0].streams[0], 2),
    "VALUES, CODEBOOK": (_codebook_model, lambda m: m.tensors[0].chunks[0].streams[0], 3),
    "CODEBOOK": (_codebook_model, lambda m: m.tensors[0].codebook, 65536),
    "ROW_COUNTS": (_csr_model, lambda m: m.tensors[0].chunks[0].streams[0], 301),
    "GAPS": (_csr_model, lambda m: m.tensors[0].chunks[0].streams[1], 32),
}


@pytest.mark.parametrize("role", sorted(ROLES))
def test_huffman_alphabet_bound_of_each_role(role):
    make, pick, bound = ROLES[role]
    assert re.search(rf"^\| {re.escape(role.split(', ')[0])}", SPEC, re.M)
    model = make()
    stream = pick(model)
    if role == "CODEBOOK":  # HUFFMAN holds codebook bit patterns below 65536 only: use such values
        model.tensors[0].codebook.elements = np.array([1, 2, 0x3C00], np.uint16)
    expected = {k: v.tobytes() for k, v in _decode_all(_stream_with_alphabet(model, stream, bound)).items()}
    assert expected  # at the bound: decodes
    with pytest.raises(HuffmanTableError, match="alphabet_size"):
        _decode_all(_stream_with_alphabet(model, stream, bound + 1))


# --------------------------------------------------------------------------------------------
# §8.4: ZSTD frame header, window, checksum

_CONTENT = bytes(range(32))


def _frame(descriptor: int, window: int | None = None, extra: bytes = b"", checksum: bool = False) -> bytes:
    """A hand-made frame of one raw block holding _CONTENT, with a 4-byte Frame_Content_Size."""
    header = bytes([descriptor]) + (bytes([window]) if window is not None else b"") + extra
    block = struct.pack("<I", (len(_CONTENT) << 3) | 1)[:3] + _CONTENT
    return zstd.FRAME_MAGIC + header + struct.pack("<I", len(_CONTENT)) + block


@pytest.mark.parametrize("window", [0, 17 << 3, 21 << 3, 21 << 3 | 7])
def test_zstd_every_window_up_to_window_log_31_is_accepted(window):
    assert zstd.decode(_frame(0x80, window), 32, 1).tobytes() == _CONTENT


@pytest.mark.parametrize("window", [22 << 3, 31 << 3 | 7])
def test_zstd_window_log_above_31_is_corrupted(window):
    with pytest.raises(CorruptFileError):
        zstd.decode(_frame(0x80, window), 32, 1)


def test_zstd_frame_header_bits():
    assert zstd.decode(_frame(0x80 | 0x10, 0), 32, 1).tobytes() == _CONTENT  # Unused_bit: ignored
    with pytest.raises(CorruptFileError):
        zstd.decode(_frame(0x80 | 0x08, 0), 32, 1)  # Reserved_bit
    assert zstd.decode(_frame(0x81, 0, extra=b"\x00"), 32, 1).tobytes() == _CONTENT  # Dictionary_ID 0
    with pytest.raises(CorruptFileError):
        zstd.decode(_frame(0x81, 0, extra=b"\x07"), 32, 1)  # a dictionary
    with pytest.raises(CorruptFileError, match="content size"):
        zstd.decode(zstd.FRAME_MAGIC + b"\x00\x00" + struct.pack("<I", (32 << 3) | 1)[:3] + _CONTENT, 32, 1)


def test_zstd_content_checksum_is_verified():
    import zstandard

    frame = zstandard.ZstdCompressor(level=3, write_checksum=True).compress(_CONTENT)
    assert zstandard.get_frame_parameters(frame).has_checksum
    assert zstd.decode(frame, 32, 1).tobytes() == _CONTENT
    with pytest.raises(CorruptFileError, match="checksum"):
        zstd.decode(frame[:-1] + bytes([frame[-1] ^ 1]), 32, 1)


# --------------------------------------------------------------------------------------------
# §4.1.1: restoring dcformat.source_metadata


@pytest.mark.parametrize("value, restored", [
    ('{"a":"1","b":"x"}', {"a": "1", "b": "x"}),
    (' {"b" : "1",\n"a":"\\u00e9\\ud83d\\ude00"} ', {"b": "1", "a": "é😀"}),
    ("{}", {}),
    ('["ab","cd"]', {}), ('"x"', {}), ("nope", {}), ("", {}), ('{"a":1}', {}), ('{"a":null}', {}),
    ('{"a":{"b":"c"}}', {}), ('{"a":"1","a":"2"}', {}), ('{"a":"1","\\u0061":"2"}', {}),
    ('{"a":"\\ud800"}', {}), ('{"\\udfff":"a"}', {}), ('\ufeff{"a":"b"}', {}), ('{"a":NaN}', {}),
])
def test_source_metadata_is_restored_only_from_an_object_of_strings(value, restored):
    from dcformat.pack.packer import source_metadata

    assert source_metadata({"dcformat.source_metadata": value, "other": "x"}) == restored
    assert source_metadata({"other": "x"}) == {}


@pytest.mark.parametrize("value", ['{"format":"pt","note":"caf\\u00e9"}', '{"a":1,"b":"x"}', "nope"])
def test_both_safetensors_writers_of_dcunpack_restore_the_same(tmp_path, value):
    """dcunpack to a file (dcformat.pack.unpack) and to stdout (cli.dcunpack.write_safetensors)
    write the same __metadata__: the rule of §4.1.1."""
    import io
    import json as json_module

    from dcformat.cli.dcunpack import write_safetensors
    from dcformat.pack.packer import source_metadata, unpack

    metadata = {"format": "dcf", "dcformat.source_metadata": value}
    data = dcformat.save({"w": np.ones(2, np.float32)}, metadata=metadata)
    (tmp_path / "m.dcf").write_bytes(data)
    unpack(tmp_path / "m.dcf", tmp_path / "m.safetensors")
    with DCFReader(data) as f:
        stream = io.BytesIO()
        write_safetensors(f, stream)
    piped, written = stream.getvalue(), (tmp_path / "m.safetensors").read_bytes()
    assert piped == written
    header = json_module.loads(written[8:8 + struct.unpack_from("<Q", written)[0]])
    assert header["__metadata__"] == {**metadata, **source_metadata(metadata)}
