"""Format 1.2: the float8 dtypes F8_E4M3 and F8_E5M2 (spec §4.3.1), their golden vectors, the
version rules (§3.1, §3.3) and the writer's choice of the oldest version a file needs."""
import io
import json
import math
import pathlib
import re
import struct

import numpy as np
import pytest

import dcformat
from dcformat.constants import DType, FLOAT8_MINOR, VERSION_MINOR
from dcformat.conversion import float8_float32_table, float8_to_float32, float32_to_float8
from dcformat.errors import CorruptFileError, EncodingError
from dcformat.structures import numpy_dtype
from dcformat.tensors import CodebookTensor
from dcformat.vectors import (VERSION_DIRECTORIES, array_from_json, encode_vector, vector_definitions,
                              vector_json)

ROOT = pathlib.Path(__file__).resolve().parent.parent
V10 = ROOT / "spec" / "vectors"
V11 = V10 / VERSION_DIRECTORIES["1.1"]
V12 = V10 / VERSION_DIRECTORIES["1.2"]
NAMES = sorted(p.stem for p in V12.glob("*.dcf"))
SPEC = (ROOT / "spec" / "FORMAT.md").read_text(encoding="utf-8")
E4M3, E5M2 = numpy_dtype(DType.F8_E4M3), numpy_dtype(DType.F8_E5M2)


def load_spec(name):
    return json.loads((V12 / f"{name}.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------
# the conversion of spec §4.3.1, from the format's definition (not from the implementation)

FORMATS = {DType.F8_E4M3: (4, 3, 7), DType.F8_E5M2: (5, 2, 15)}  # exponent bits, significand bits, bias


def naive_float32_bits(code: int, dtype: DType) -> int:
    """The spec's float32 bits of one float8 code, from the value the definition gives it."""
    exponent_bits, significand_bits, bias = FORMATS[dtype]
    sign = code >> 7
    e = (code >> significand_bits) & ((1 << exponent_bits) - 1)
    m = code & ((1 << significand_bits) - 1)
    top = (1 << exponent_bits) - 1
    if dtype == DType.F8_E4M3 and e == top and m == 7:
        return sign << 31 | 0x7F800000 | m << (23 - significand_bits)  # NaN: sign and significand kept
    if dtype == DType.F8_E5M2 and e == top:
        return sign << 31 | 0x7F800000 | m << (23 - significand_bits)  # infinity (m = 0) or NaN
    if e == 0:
        value = m * 2.0 ** (1 - bias - significand_bits)
    else:
        value = ((1 << significand_bits) + m) * 2.0 ** (e - bias - significand_bits)
    return struct.unpack("<I", struct.pack("<f", -value if sign else value))[0]


@pytest.mark.parametrize("dtype", [DType.F8_E4M3, DType.F8_E5M2])
def test_every_code_converts_as_the_definition_says(dtype):
    table = float8_float32_table(dtype)
    assert [int(x) for x in table] == [naive_float32_bits(c, dtype) for c in range(256)]
    codes = np.arange(256, dtype=np.uint8).view(numpy_dtype(dtype))
    assert float8_to_float32(codes).view(np.uint32).tolist() == table.tolist()


def test_the_named_codes():
    """The codes spec §4.3.1 names: largest finite values, infinities, NaNs, −0."""
    e4, e5 = float8_float32_table(DType.F8_E4M3), float8_float32_table(DType.F8_E5M2)
    as_float = lambda bits: struct.unpack("<f", struct.pack("<I", int(bits)))[0]  # noqa: E731
    assert as_float(e4[0x7E]) == 448 and as_float(e5[0x7B]) == 57344
    assert as_float(e4[0x78]) == 256 and as_float(e4[0x7D]) == 416  # e = 15, m < 7: numbers
    assert (e4[0x7F], e4[0xFF]) == (0x7FF00000, 0xFFF00000)
    assert (e5[0x7C], e5[0xFC]) == (0x7F800000, 0xFF800000)
    assert [int(e5[c]) for c in (0x7D, 0x7E, 0x7F, 0xFD)] == [0x7FA00000, 0x7FC00000, 0x7FE00000, 0xFFA00000]
    assert e4[0x80] == e5[0x80] == 0x80000000 and e4[0] == e5[0] == 0
    assert sum(math.isnan(as_float(b)) for b in e4) == 2 and sum(math.isnan(as_float(b)) for b in e5) == 6
    # F8_E5M2 is the upper byte of a float16: the F16 -> F32 rule of §7.2 for the pattern c << 8
    from dcformat.conversion import convert_codebook
    from dcformat.constants import CodebookDType

    f16 = convert_codebook((np.arange(256, dtype=np.uint16) << 8), CodebookDType.F16, DType.F32)
    assert f16.tolist() == e5.tolist()


def test_the_spec_table_is_the_conversion():
    """The two 16 x 16 tables of spec §4.3.1, cell by cell."""
    for dtype in (DType.F8_E4M3, DType.F8_E5M2):
        section = SPEC[SPEC.index(f"{dtype.name} → float32 bits:"):]
        rows = re.findall(r"^\| `([0-9A-F])0` \| (.*) \|$", section, re.M)[:16]
        cells = [int(x, 16) for _, row in rows for x in re.findall(r"`([0-9A-F]{8})`", row)]
        assert [r for r, _ in rows] == list("0123456789ABCDEF")
        assert cells == float8_float32_table(dtype).tolist(), dtype


@pytest.mark.parametrize("dtype", [DType.F8_E4M3, DType.F8_E5M2])
def test_libraries_agree_except_on_nans(dtype):
    """ml_dtypes (a reference only; it gives the numpy type) and torch: the same bits for every
    number and infinity; the NaN rows differ as the spec's informative note says."""
    import ml_dtypes

    name = {DType.F8_E4M3: "float8_e4m3fn", DType.F8_E5M2: "float8_e5m2"}[dtype]
    codes = np.arange(256, dtype=np.uint8)
    ours = float8_float32_table(dtype)
    theirs = codes.view(getattr(ml_dtypes, name)).astype(np.float32).view(np.uint32)
    nan = np.isnan(ours.view(np.float32))
    assert np.array_equal(ours[~nan], theirs[~nan])
    assert set(theirs[nan].tolist()) == {0x7FC00000, 0xFFC00000}
    torch = pytest.importorskip("torch")
    via_torch = torch.from_numpy(codes).view(getattr(torch, name)).float().view(torch.int32).numpy().view(np.uint32)
    assert np.array_equal(ours[~nan], via_torch[~nan])
    if dtype == DType.F8_E4M3:
        assert np.array_equal(ours, via_torch)


def _naive_round(x: float, dtype: DType) -> int:
    """Nearest float8 code to ``x`` (ties to the even code), by trying every finite code."""
    table = float8_float32_table(dtype).view(np.float32)
    best = None
    for code in range(256):
        v = float(table[code])
        if math.isnan(v) or math.isinf(v) or (code & 0x80) != (0x80 if math.copysign(1, x) < 0 else 0):
            continue
        d = abs(v - x)
        if best is None or d < best[0] or (d == best[0] and code % 2 == 0 and best[1] % 2 == 1):
            best = (d, code)
    return best[1]


@pytest.mark.parametrize("dtype", [DType.F8_E4M3, DType.F8_E5M2])
def test_writer_rounding_is_nearest_ties_to_even(dtype):
    table = float8_float32_table(dtype).view(np.float32)
    finite = np.sort(np.unique(table[np.isfinite(table) & (table >= 0)]))
    midpoints = (finite[:-1].astype(np.float64) + finite[1:]) / 2  # exact in float32: ties
    rng = np.random.default_rng(5)
    samples = np.concatenate([midpoints, -midpoints, finite, -finite, [0.0, -0.0],
                              rng.uniform(-1, 1, 300) * float(finite[-1]), rng.normal(0, 0.01, 300)]).astype(np.float32)
    got = float32_to_float8(samples, dtype)
    want = [_naive_round(float(x), dtype) for x in samples]
    assert got.tolist() == want
    assert float32_to_float8(np.array([np.nan, -np.nan], np.float32), dtype).tolist() == [0x7F, 0xFF]
    with pytest.raises(ValueError, match="outside the range"):
        float32_to_float8(np.array([float(finite[-1]) * 1.01], np.float32), dtype)


# --------------------------------------------------------------------------------------------
# golden vectors of 1.2

def test_the_1_2_vectors_are_all_committed():
    assert NAMES == ["33_float8_raw", "34_float8_codes", "35_float8_codebook", "36_float8_in_1_1",
                     "37_float8_in_1_0", "38_float8_codebook_mismatch"]
    assert set(vector_definitions("1.2")) == set(NAMES)
    assert not set(vector_definitions("1.2")) & (set(vector_definitions("1.0")) | set(vector_definitions("1.1")))


@pytest.mark.parametrize("name", NAMES)
def test_vector_decodes_to_its_json(name):
    spec = load_spec(name)
    data = (V12 / f"{name}.dcf").read_bytes()
    if "expect_error" in spec:
        assert spec["expected"] == {}
        for reader in (dcformat.DCFReader, dcformat.load):  # every entry point refuses it
            with pytest.raises(CorruptFileError, match=re.escape(spec["expect_error"])):
                reader(data)
        return
    assert struct.unpack_from("<HH", data, 4) == (1, 2)
    with dcformat.DCFReader(data) as f:
        assert f.keys() == list(spec["expected"])
        for key, expected in spec["expected"].items():
            want = array_from_json(expected)
            got = f.get_tensor(key)
            assert got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()
            assert float8_to_float32(got).tobytes().hex() == expected["float32_hex"]
        f.verify_all()


@pytest.mark.parametrize("name", NAMES)
def test_vector_reencodes_to_same_bytes(name):
    assert encode_vector(load_spec(name)) == (V12 / f"{name}.dcf").read_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_vector_json_is_its_definition(name):
    committed = load_spec(name)
    defined = json.loads(json.dumps(vector_json(name, vector_definitions("1.2")[name]), ensure_ascii=False))
    committed.pop("encodings"), defined.pop("encodings")
    assert committed == defined
    assert name in (V10 / "README.md").read_text(encoding="utf-8") and name in SPEC


def test_codes_vector_is_the_spec_table():
    spec = load_spec("34_float8_codes")
    for key, dtype in (("e4m3", DType.F8_E4M3), ("e5m2", DType.F8_E5M2)):
        assert bytes.fromhex(spec["expected"][key]["data_hex"]) == bytes(range(256))
        assert np.frombuffer(bytes.fromhex(spec["expected"][key]["float32_hex"]), "<u4").tolist() == \
            [naive_float32_bits(c, dtype) for c in range(256)]


def test_vectors_cover_what_1_2_adds():
    from dcformat.constants import Codec, Layout, ValueCoding

    seen = set()
    for name in NAMES[:3]:
        with dcformat.DCFReader((V12 / f"{name}.dcf").read_bytes()) as f:
            for info in f.tensors_info():
                seen.add((info.dtype, info.layout, info.value_coding))
                seen |= {(info.dtype, s.codec) for s in info.streams if s.role.value == "values"}
                if info.value_coding == ValueCoding.CODEBOOK:
                    assert info.codebook_dtype == info.dtype
    for dtype in (DType.F8_E4M3, DType.F8_E5M2):
        assert (dtype, Layout.DENSE, ValueCoding.RAW) in seen and (dtype, Layout.DENSE if dtype == DType.F8_E5M2
                                                                   else Layout.CSR, ValueCoding.CODEBOOK) in seen
    assert {c for d, c in (x for x in seen if len(x) == 2)} == {Codec.PLAIN, Codec.BITPACK, Codec.HUFFMAN, Codec.ZSTD}


@pytest.mark.parametrize("directory, names", [(V10, "1.0"), (V11, "1.1")])
def test_files_without_float8_stay_byte_identical(directory, names):
    """Every 1.0 and 1.1 vector rewritten by this writer: the same bytes, the same version."""
    for path in sorted(directory.glob("*.dcf")):
        spec = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        data = encode_vector(spec)
        assert data == path.read_bytes(), path.name
        assert struct.unpack_from("<H", data, 6)[0] == (0 if names == "1.0" else 1)


def test_a_1_1_decoder_sees_unknown_dtypes():
    """What a 1.1 decoder meets in a 1.2 file: dtype 14 or 15, values it does not define
    (spec §3.3); this reader names the version such a value needs when the file is older."""
    data = bytearray((V12 / "33_float8_raw.dcf").read_bytes())
    with dcformat.DCFReader(bytes(data)) as f:
        assert {int(i.dtype) for i in f.tensors_info()} == {14, 15}
    data[6] = 1
    with pytest.raises(CorruptFileError, match=r"value 14 \(F8_E4M3\), which needs format version 1.2"):
        dcformat.DCFReader(bytes(data))


# --------------------------------------------------------------------------------------------
# the writer's version and round trips

def test_writer_writes_1_2_only_for_float8():
    plain = {"w": np.ones(3, np.float32)}
    assert struct.unpack_from("<H", dcformat.save(plain), 6)[0] == 0
    assert struct.unpack_from("<H", dcformat.save(plain, aliases={"v": "w"}), 6)[0] == 1
    for extra in ({}, {"aliases": {"v": "w"}}):
        data = dcformat.save({**plain, "f": np.zeros(2, E4M3)}, **extra)
        assert struct.unpack_from("<H", data, 6)[0] == FLOAT8_MINOR == VERSION_MINOR == 2
        assert dcformat.DCFReader(data).header.version == (1, 2)
    # an empty float8 tensor is still float8: the file needs 1.2
    assert struct.unpack_from("<H", dcformat.save({"e": np.zeros((0, 4), E5M2)}), 6)[0] == 2


class _Pipe(io.RawIOBase):
    def __init__(self):
        self.data = bytearray()

    def writable(self):
        return True

    def write(self, b):
        self.data += b
        return len(b)


def test_writer_versions_asked_for():
    with pytest.raises(EncodingError, match="needs format version 1.2; this writer was asked for 1.1"):
        with dcformat.DCFWriter(io.BytesIO(), version_minor=1) as w:
            w.add("f", np.zeros(2, E4M3))
    with pytest.raises(EncodingError, match="cannot seek.*version_minor=2"):
        with dcformat.DCFWriter(_Pipe()) as w:
            w.add("f", np.zeros(2, E4M3))
    pipe = _Pipe()
    with dcformat.DCFWriter(pipe, version_minor=2) as w:
        w.add("f", np.arange(4, dtype=np.uint8).view(E4M3))
    data = bytes(pipe.data)
    assert struct.unpack_from("<H", data, 6)[0] == 2
    assert dcformat.load(data)["f"].view(np.uint8).tolist() == [0, 1, 2, 3]
    with pytest.raises(EncodingError, match="version_minor"):
        dcformat.DCFWriter(io.BytesIO(), version_minor=3)


def _every_code(shape, seed, dtype, zeros=0.0):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, size=shape).astype(np.uint8)
    codes[rng.random(shape) < zeros] = 0
    return codes.view(dtype)


@pytest.mark.parametrize("dtype", [E4M3, E5M2])
@pytest.mark.parametrize("encoding", [None, {"codecs": ("plain",)}, {"codecs": ("huffman",)},
                                      {"codecs": ("zstd",)}, {"codecs": ("bitpack",)},
                                      {"layout": "csr", "index_bits": 2}, {"layout": "csr"},
                                      {"chunk_elements": 7}])
def test_float8_round_trips_bit_exact(dtype, encoding):
    tensors = {"dense": _every_code((9, 33), 1, dtype), "sparse": _every_code((12, 50), 2, dtype, zeros=0.9),
               "scalar": _every_code((), 3, dtype), "vector": _every_code((1000,), 4, dtype, zeros=0.3),
               "empty": np.zeros((3, 0), dtype)}
    encodings = {k: encoding for k in tensors if not (encoding and "layout" in encoding and tensors[k].ndim < 2)}
    data = dcformat.save(tensors, encodings=encodings)
    back = dcformat.load(data)
    for name, array in tensors.items():
        assert back[name].dtype == dtype and back[name].shape == array.shape
        assert back[name].tobytes() == array.tobytes(), name
    with dcformat.DCFReader(data) as f:
        for info in f.tensors_info():
            assert all(s.codec.name != "BYTEPLANES" for s in info.streams)


@pytest.mark.parametrize("dtype", [E4M3, E5M2])
def test_float8_codebook_tensor(dtype):
    """Quantized in float32, stored with a codebook of the tensor's own float8 type: the decoded
    tensor is float8 and holds exactly the rounded centroids."""
    rng = np.random.default_rng(7)
    centroids = np.array([-0.731, -0.2, 0.013, 0.4, 1.9], np.float32)
    indices = rng.integers(-1, 5, size=(20, 30))
    tensor = CodebookTensor(centroids, indices, dtype)
    data = dcformat.save({"w": tensor}, encodings={"w": {"layout": "csr"}})
    with dcformat.DCFReader(data) as f:
        info = f.info("w")
        assert int(info.codebook_dtype) == int(info.dtype) and info.codebook is not None
        got = f.get_tensor("w")
        stored = f.get_codebook_tensor("w")
    rounded = float32_to_float8(centroids, info.dtype)
    want = np.where(indices < 0, 0, rounded[np.maximum(indices, 0)]).astype(np.uint8)
    assert got.dtype == dtype and got.view(np.uint8).tolist() == want.tolist()
    assert got.tobytes() == tensor.decode().tobytes()
    assert stored.codebook.dtype == dtype and stored.codebook.view(np.uint8)[:5].tolist() == rounded.tolist()
    # a codebook already of the float8 type is stored as it is, NaN and -0 included
    own = np.array([0x7F, 0x80, 0x01, 0x00], np.uint8).view(dtype)
    data = dcformat.save({"w": CodebookTensor(own, np.array([[0, 1], [2, 3]]), dtype)})
    assert dcformat.load(data)["w"].view(np.uint8).tolist() == [[0x7F, 0x80], [0x01, 0x00]]
    with pytest.raises(EncodingError, match="cannot be stored as F8_"):
        dcformat.save({"w": CodebookTensor(np.array([1e6], np.float32), np.zeros(4, np.int32), dtype)})


def _index_patched(data: bytes, old: bytes, new: bytes) -> bytes:
    """``data`` with the index bytes ``old`` (once) replaced by ``new``, its CRC recomputed."""
    from dcformat.checksum import crc32

    length = struct.unpack_from("<Q", data, len(data) - 16)[0]
    start = len(data) - 16 - length
    index = data[start:len(data) - 16]
    assert index.count(old) == 1
    index = index.replace(old, new)
    return data[:start] + index + struct.pack("<QI", length, crc32(index)) + data[-4:]


def test_codebook_dtype_rules_are_enforced():
    """Spec §4.2: a float8 tensor's codebook is of its own dtype, and a float8 codebook dtype
    belongs to that tensor only. Each broken rule refuses the whole file when it is opened."""
    tensor = CodebookTensor(np.array([0.5, 1.0], np.float32), np.array([0, 1, 1, 0]), E5M2)
    data = dcformat.save({"w": tensor}, encodings={"w": {"layout": "dense", "codecs": ("plain",)}})
    fields = struct.pack("<BBBB", 0, 1, 0, 15)  # layout, value_coding, index_bits, codebook_dtype
    for bad, message in ((14, "F8_E5M2 tensor cannot have a F8_E4M3 codebook"),
                         (1, "F8_E5M2 tensor cannot have a F32 codebook"),
                         (2, "F8_E5M2 tensor cannot have a F16 codebook"),
                         (16, "codebook dtype of 'w' has unknown value 16")):
        with pytest.raises(CorruptFileError, match=message):
            dcformat.DCFReader(_index_patched(data, fields, fields[:3] + bytes([bad])))
    minor_1 = bytearray(data)
    minor_1[6] = 1
    with pytest.raises(CorruptFileError, match="needs format version 1.2"):
        dcformat.DCFReader(bytes(minor_1))
    # dtype 16 and above are still reserved, in a file of any minor version
    name_dtype = b"\x01\x00w" + bytes([15])
    with pytest.raises(CorruptFileError, match="dtype of 'w' has unknown value 16"):
        dcformat.DCFReader(_index_patched(data, name_dtype, name_dtype[:3] + bytes([16])))
