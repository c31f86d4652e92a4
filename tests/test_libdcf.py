"""libdcf, the C decoder, cross-checked against the Python reader through ctypes.

Every golden vector (the folder is walked, so vectors added later are covered) decodes bit for
bit to the Python reader's tensors and to the vector's JSON; every truncation and a set of byte
flips (with checksums on, and off in both decoders so the flips reach the codecs) end in the same
verdict per tensor as the Python reader, never in different values; chunk by chunk equals whole;
float32 output equals numpy's astype; limits, buffer sizes and out types are refused with their
own error codes; the zstd-less build refuses exactly the ZSTD files.
"""
from __future__ import annotations

import glob
import json
import os
import random
import struct
import threading
import ctypes

import ml_dtypes
import numpy as np
import pytest

import dcformat
from dcformat.checksum import crc32
from dcformat.constants import FLOAT8_DTYPES, FLOAT_DTYPES, Codec, DType
from dcformat.conversion import float8_to_float32
from dcformat.errors import DCFormatError
from dcformat.index_reader import read_header
from dcformat.reader import DCFReader
from dcformat.tensors import CodebookTensor

from libdcf_helpers import ERR, ERROR_NAMES, LIB_PATH, NOZSTD_LIB_PATH, OUT_F32, DcfError, Lib, build_native

VECTOR_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "spec", "vectors")
MAX_TEST_BYTES = 1 << 26  # both decoders refuse larger tensors here: a flipped shape may claim GBs of zeros
VECTORS = sorted(glob.glob(os.path.join(VECTOR_DIR, "**", "*.dcf"), recursive=True))


@pytest.fixture(scope="session")
def lib() -> Lib:
    build_native()  # fails (never skips) when the build fails
    return Lib(LIB_PATH)


@pytest.fixture(scope="session")
def nozstd() -> Lib:
    build_native()
    return Lib(NOZSTD_LIB_PATH)


# ---------------------------------------------------------------------------------------------
# reference outcomes

def python_tensors(data: bytes, verify: bool = True):
    """``(metadata, names, {name: array or DCFormatError})`` from the Python reader, or raises
    DCFormatError if the file does not open."""
    with DCFReader(bytearray(data), verify=verify, threads=1, max_tensor_bytes=MAX_TEST_BYTES) as reader:
        names = reader.keys()
        out = {}
        for name in names:
            try:
                out[name] = np.array(reader.get_tensor(name))
            except DCFormatError as error:
                out[name] = error
        return reader.metadata(), names, out


def c_tensors(lib: Lib, data: bytes, out_type: int = 0, **limits):
    """The same from libdcf (DcfError where Python has DCFormatError)."""
    limits.setdefault("max_tensor_bytes", MAX_TEST_BYTES)
    with lib.open(data, **limits) as f:
        names = f.names()
        out = {}
        for i, name in enumerate(names):
            try:
                out[name] = f.decode(i, out_type)
            except DcfError as error:
                out[name] = error
        return f.metadata(), names, out


def bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def assert_same(c_array: np.ndarray, py_array: np.ndarray, what: str = "") -> None:
    assert c_array.dtype == py_array.dtype, what
    assert c_array.shape == py_array.shape, what
    assert bits(c_array) == bits(py_array), what


def zstd_tensors(data: bytes) -> set[str]:
    """Names of the tensors with a ZSTD stream or a BYTEPLANES stream with a ZSTD plane."""
    try:
        header = read_header(data, check_crc=False)
    except DCFormatError:
        return set()
    names = set()
    for t in header.tensors.values():
        for s in t.streams:
            if s.codec == Codec.ZSTD or (s.codec == Codec.BYTEPLANES and s.length >= 4 and any(
                    s.offset + 4 + 8 * j < len(data) and data[s.offset + 4 + 8 * j] == Codec.ZSTD
                    for j in range(min(data[s.offset + 1], 8)))):
                names.add(t.name)
    return names


def assert_same_outcome(lib: Lib, data: bytes, verify: bool = True, tolerate=()) -> str:
    """C and Python agree on ``data``: both refuse to open it, or per tensor both refuse it or
    both give the same bits. Returns "closed", "open" (some tensor refused) or "ok".

    ``tolerate``: tensors whose outcomes may differ. Only used for ZSTD tensors of corrupted files
    read without checksums: libzstd versions (the system's here, the one bundled with the
    zstandard package there) do not detect the same corruptions of a frame without a content
    checksum, nor decode them to the same bytes; the stream CRC, verified by default, does."""
    try:
        py = python_tensors(data, verify)
    except DCFormatError:
        py = None
    try:
        c = c_tensors(lib, data, skip_checksums=0 if verify else 1)
    except DcfError as error:
        assert error.code not in (ERR["NO_MEMORY"], ERR["BAD_ARGUMENT"]), error
        c = None
    if py is None or c is None:
        assert py is None and c is None, f"Python {'refused' if py is None else 'accepted'} the file, C did not"
        return "closed"
    assert c[0] == py[0] and c[1] == py[1]
    verdict = "ok"
    for name in py[1]:
        p, q = py[2][name], c[2][name]
        if name in tolerate:
            continue
        if isinstance(p, DCFormatError) or isinstance(q, DcfError):
            assert isinstance(p, DCFormatError) and isinstance(q, DcfError), (name, p, q)
            assert q.code not in (ERR["NO_MEMORY"], ERR["BAD_ARGUMENT"], ERR["BUFFER_TOO_SMALL"]), q
            verdict = "open"
        else:
            assert_same(q, p, name)
    return verdict


def uses_zstd(data: bytes) -> bool:
    """Whether any stream of the file is ZSTD or a BYTEPLANES stream with a ZSTD plane."""
    header = read_header(data, check_crc=False)
    for t in header.tensors.values():
        for s in t.streams:
            if s.codec == Codec.ZSTD:
                return True
            if s.codec == Codec.BYTEPLANES and s.length >= 4:
                planes = data[s.offset + 1]
                if any(data[s.offset + 4 + 8 * j] == Codec.ZSTD for j in range(planes)):
                    return True
    return False


# ---------------------------------------------------------------------------------------------
# the library itself

def test_error_codes_each_have_a_description(lib):
    texts = [lib.c.dcf_strerror(code).decode() for code in range(len(ERROR_NAMES))]
    assert texts[0] == "success"
    assert len(set(texts)) == len(texts)  # one description per code
    assert all(t != "unknown error code" for t in texts)
    assert lib.c.dcf_strerror(len(ERROR_NAMES)).decode() == "unknown error code"  # the list is complete


def test_builds_report_zstd(lib, nozstd):
    assert lib.has_zstd and not nozstd.has_zstd
    assert lib.c.dcf_lib_version().decode().count(".") == 2


# ---------------------------------------------------------------------------------------------
# golden vectors

def test_there_are_vectors():
    assert len(VECTORS) >= 16


@pytest.mark.parametrize("path", VECTORS, ids=os.path.basename)
def test_vector_matches_python_reader_and_json(lib, path):
    data = open(path, "rb").read()
    try:
        meta, names, py = python_tensors(data)
    except DCFormatError:  # a vector a decoder must refuse (another major version): C refuses it too
        with pytest.raises(DcfError):
            lib.open(data)
        return
    c_meta, c_names, c = c_tensors(lib, data)
    assert (c_meta, c_names) == (meta, names)
    for name in names:
        assert_same(c[name], py[name], name)
    expected = json.load(open(path[:-4] + ".json", encoding="utf-8"))
    assert expected["metadata"] == c_meta
    assert list(expected["expected"]) == c_names
    for name, want in expected["expected"].items():
        assert DType[want["dtype"]] == DType(lib.open(data).info(c_names.index(name)).dtype)
        assert list(c[name].shape) == want["shape"]
        assert bits(c[name]).hex() == want["data_hex"], name


@pytest.mark.parametrize("path", VECTORS, ids=os.path.basename)
def test_vector_info_and_chunks(lib, path):
    data = open(path, "rb").read()
    try:
        header = read_header(data)
    except DCFormatError:
        return
    with lib.open(data) as f:
        assert f.version() == header.version
        aliases = getattr(header, "aliases", {})
        assert len(f) == len(header.tensors) + len(aliases)
        for j, (alias, target) in enumerate(aliases.items()):
            i = len(header.tensors) + j
            assert f.name(i) == alias and f.find(alias) == i
            assert f.name(f.entry(i)) == target
            assert bits(f.decode(i)) == bits(f.decode(f.entry(i)))
        for i, (name, t) in enumerate(header.tensors.items()):
            info = f.info(i)
            assert f.find(name) == i
            assert (info.numel, info.stored_bytes, info.chunk_count, info.entries) == \
                (t.numel, t.stored_bytes, len(t.chunks), t.entries)
            assert tuple(info.shape[:info.rank]) == t.shape
            whole = f.decode(i)
            assert f.decoded_size(i) == whole.nbytes
            parts = [f.decode_chunk(i, c) for c in range(info.chunk_count)]
            flat = np.concatenate(parts) if parts else np.zeros(0, whole.dtype)
            assert bits(flat) == bits(whole)
            for c in range(info.chunk_count):
                ci = f.chunk_info(i, c)
                assert ci.element_count == parts[c].size
                assert bits(whole.reshape(-1)[ci.first_element:ci.first_element + ci.element_count]) == bits(parts[c])
        with pytest.raises(DcfError) as e:
            f.find("no such tensor")
        assert e.value.name == "NOT_FOUND"


@pytest.mark.parametrize("path", VECTORS, ids=os.path.basename)
def test_vector_to_float32_is_numpy_astype(lib, path):
    data = open(path, "rb").read()
    try:
        _, names, py = python_tensors(data)
    except DCFormatError:
        return
    with lib.open(data) as f:
        for i, name in enumerate(names):
            if DType(f.info(i).dtype) in FLOAT_DTYPES:
                with np.errstate(all="ignore"):  # float8 (1.2): spec 4.3.1's NaNs, not ml_dtypes' cast
                    want = float8_to_float32(py[name]) if DType(f.info(i).dtype) in FLOAT8_DTYPES \
                        else py[name].astype(np.float32)
                assert_same(f.decode(i, OUT_F32), want, name)
                parts = [f.decode_chunk(i, c, OUT_F32) for c in range(f.info(i).chunk_count)]
                if parts:
                    assert bits(np.concatenate(parts)) == bits(want)
            else:
                with pytest.raises(DcfError) as e:
                    f.decode(i, OUT_F32)
                assert e.value.name == "OUT_TYPE"
                with pytest.raises(DcfError) as e:
                    f.decoded_size(i, OUT_F32)
                assert e.value.name == "OUT_TYPE"


@pytest.mark.parametrize("path", VECTORS, ids=os.path.basename)
def test_vector_buffer_too_small(lib, path):
    data = open(path, "rb").read()
    try:
        read_header(data)
    except DCFormatError:
        return
    with lib.open(data) as f:
        for i in range(len(f)):
            size = f.decoded_size(i)
            if size:
                with pytest.raises(DcfError) as e:
                    f.decode(i, out_size=size - 1)
                assert e.value.name == "BUFFER_TOO_SMALL"
                with pytest.raises(DcfError) as e:
                    f.decode_chunk(i, 0, out_size=f.chunk_info(i, 0).element_count * f.decode(i).itemsize - 1)
                assert e.value.name == "BUFFER_TOO_SMALL"


@pytest.mark.parametrize("path", VECTORS, ids=os.path.basename)
def test_vector_without_zstd(nozstd, lib, path):
    """The zstd-less build decodes every vector without ZSTD streams, and refuses the others'
    ZSTD tensors with its own error."""
    data = open(path, "rb").read()
    try:
        _, names, py = python_tensors(data)
    except DCFormatError:
        return
    zstd = uses_zstd(data)
    _, _, c = c_tensors(nozstd, data)
    refused = [n for n in names if isinstance(c[n], DcfError)]
    for name in names:
        if isinstance(c[name], DcfError):
            assert c[name].name == "ZSTD_UNSUPPORTED", c[name]
            assert "built without zstd" in str(c[name])
        else:
            assert_same(c[name], py[name], name)
    assert bool(refused) == zstd


def test_the_zstd_vector_is_refused_without_zstd(nozstd, lib):
    data = open(os.path.join(VECTOR_DIR, "09_zstd.dcf"), "rb").read()
    assert uses_zstd(data)
    with nozstd.open(data) as f, lib.open(data) as g:
        with pytest.raises(DcfError) as e:
            for i in range(len(f)):
                f.decode(i)
        assert e.value.name == "ZSTD_UNSUPPORTED" and "this libdcf was built without zstd" in str(e.value)
        for i in range(len(g)):
            g.decode(i)


@pytest.mark.parametrize("path", VECTORS, ids=os.path.basename)
def test_vector_attachments_match_python(lib, path):
    """Version 1.1 attachments (spec 4.6.1): the same names, in record order, and the same bytes."""
    data = open(path, "rb").read()
    try:
        reader = DCFReader(bytearray(data), threads=1)
    except DCFormatError:
        return
    with reader, lib.open(data) as f:
        names = reader.attachments() if hasattr(reader, "attachments") else []
        assert f.attachment_names() == names
        for j, name in enumerate(names):
            assert f.attachment(j) == reader.get_attachment(name)
            size = len(reader.get_attachment(name))
            if size:
                with pytest.raises(DcfError) as e:
                    f.attachment(j, out_size=size - 1)
                assert e.value.name == "BUFFER_TOO_SMALL"


ATTACHMENT_NAMES = [
    b"config.json", b"tokenizer/vocab.txt", b"a/b/c/d.bin", "caf\u00e9/\u6a21\u578b.json".encode(), b".hidden", b"..x",
    b"x..", b"a b", b"\xf0\x9f\x98\x80.txt",
    b"", b"/etc/passwd", b"../up", b"a/../b", b"./a", b"a/.", b"a//b", b"a/", b"C:x", b"a\\b", b"a\x00b",
    b"tab\there", b"del\x7f", "c1\u0085".encode(), b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xff",
    b"\xe2\x82", b"x" * 4096, b"x" * 4097,
]


@pytest.mark.parametrize("name", ATTACHMENT_NAMES, ids=repr)
def test_attachment_name_rule_is_the_python_one(lib, name):
    """dcf_attachment_name_problem (dcf.h: what the opener checks, and what a program writing
    attachments to a folder checks again) refuses exactly the names the Python writer refuses."""
    from dcformat.extensions import attachment_name_problem

    try:
        expected = attachment_name_problem(name.decode("utf-8"))
    except UnicodeDecodeError:
        expected = "is not valid UTF-8"
    got = lib.c.dcf_attachment_name_problem(name, len(name))
    assert (got is None) == (expected is None), (got, expected)
    if name and name.startswith(b"/"):
        assert got == b"is an absolute path (starts with '/')"


# ---------------------------------------------------------------------------------------------
# corrupted inputs

@pytest.mark.parametrize("path", VECTORS, ids=os.path.basename)
def test_every_truncation_is_refused(lib, path):
    data = open(path, "rb").read()
    buffer = ctypes.create_string_buffer(data, len(data))
    allowed = {ERR[name] for name in ("TRUNCATED", "BAD_END_MAGIC", "BAD_MAGIC", "LIMIT_INDEX_LENGTH")}
    codes = [lib.open_code(buffer, n) for n in range(len(data))]
    assert set(codes) <= allowed, sorted(set(codes) - allowed)
    assert lib.open_code(buffer, len(data)) == ERR["OK"] or not python_opens(data)


def python_opens(data: bytes) -> bool:
    try:
        read_header(data)
        return True
    except DCFormatError:
        return False


@pytest.mark.parametrize("path", VECTORS, ids=os.path.basename)
def test_byte_flips_agree_with_python(lib, path):
    """Flipped bits: with checksums verified, and with checksums off in both decoders (so the
    flips reach the index fields and the codecs), C and Python reach the same verdict per tensor
    and never different values."""
    data = open(path, "rb").read()
    rng = random.Random(len(data))
    positions = sorted(set(rng.randrange(len(data)) for _ in range(25)) | set(range(min(len(data), 32))))
    verdicts = {"closed": 0, "open": 0, "ok": 0}
    for pos in positions:
        for bit in (0, 7) if pos % 3 == 0 else (rng.randrange(8),):
            flipped = bytearray(data)
            flipped[pos] ^= 1 << bit
            flipped = bytes(flipped)
            assert_same_outcome(lib, flipped, verify=True) != "ok" or flipped == data
            tolerate = zstd_tensors(data) | zstd_tensors(flipped)
            verdicts[assert_same_outcome(lib, flipped, verify=False, tolerate=tolerate)] += 1
    assert verdicts["closed"] > 0


def _with_index_crc(data: bytes) -> bytes:
    """``data`` with its index CRC recomputed."""
    length = struct.unpack_from("<Q", data, len(data) - 16)[0]
    index = data[len(data) - 16 - length:len(data) - 16]
    return data[:len(data) - 12] + struct.pack("<I", crc32(index)) + data[len(data) - 8:]


def test_index_field_mutations_behind_a_valid_crc(lib):
    """Mutated index bytes with the index CRC recomputed: the index rules themselves must refuse
    them, in C as in Python."""
    rng = random.Random(7)
    seen = set()
    for path in VECTORS:
        data = open(path, "rb").read()
        try:
            length = read_header(data).index_length
        except DCFormatError:
            continue
        start = len(data) - 16 - length
        for _ in range(40):
            m = bytearray(data)
            pos = start + rng.randrange(length)
            m[pos] = rng.choice([0, 1, 2, 0x7F, 0x80, 0xFF, m[pos] ^ 0x10, m[pos] + 1 & 0xFF])
            seen.add(assert_same_outcome(lib, _with_index_crc(bytes(m)), verify=True))
    assert "closed" in seen


# ---------------------------------------------------------------------------------------------
# limits and arguments

def test_caller_limits_are_enforced(lib):
    data = open(os.path.join(VECTOR_DIR, "08_multichunk.dcf"), "rb").read()
    with lib.open(data) as f:
        size = max(f.decoded_size(i) for i in range(len(f)))
        scratch = max(f.scratch_size(i) for i in range(len(f)))
    with lib.open(data, max_tensor_bytes=size - 1) as f:
        with pytest.raises(DcfError) as e:
            for i in range(len(f)):
                f.decode(i)
        assert e.value.name == "LIMIT_TENSOR_BYTES" and "max_tensor_bytes" in str(e.value)
    with pytest.raises(DcfError) as e:
        lib.open(data, max_tensors=1)
    assert e.value.name == "LIMIT_TENSORS"
    length = struct.unpack_from("<Q", data, len(data) - 16)[0]
    with pytest.raises(DcfError) as e:
        lib.open(data, max_index_length=length - 1)
    assert e.value.name == "LIMIT_INDEX_LENGTH"
    with lib.open(data, max_index_length=length) as f:
        assert len(f) >= 1
    with lib.open(data, max_scratch_bytes=1) as f:
        refused = []
        for i in range(len(f)):
            if f.scratch_size(i) > 1:
                with pytest.raises(DcfError) as e:
                    f.decode(i)
                refused.append(e.value.name)
        assert refused and set(refused) == {"LIMIT_SCRATCH"}
    with lib.open(data, max_scratch_bytes=scratch) as f:
        for i in range(len(f)):
            f.decode(i)


def test_bad_arguments(lib):
    data = open(os.path.join(VECTOR_DIR, "01_dense_raw.dcf"), "rb").read()
    with lib.open(data) as f:
        n = len(f)
        with pytest.raises(DcfError) as e:
            f.decode(n)
        assert e.value.name == "BAD_ARGUMENT"
        with pytest.raises(DcfError) as e:
            f.decode(0, out_type=DType.I64 if DType(f.info(0).dtype) != DType.I64 else DType.I8)
        assert e.value.name == "OUT_TYPE"
        with pytest.raises(DcfError) as e:
            f.chunk_info(0, 10**6)
        assert e.value.name == "BAD_ARGUMENT"
        # a second open of the same context is refused
        err = __import__("libdcf_helpers").ErrorInfo()
        assert lib.c.dcf_open_buffer(f.ctx, f._data, len(data), __import__("ctypes").byref(err)) == ERR["BAD_ARGUMENT"]


def test_open_file_maps_the_file(lib, tmp_path):
    path = os.path.join(VECTOR_DIR, "04_csr_codebook_huffman.dcf")
    data = open(path, "rb").read()
    with lib.open_path(path) as f, lib.open(data) as g:
        assert f.names() == g.names()
        for i in range(len(f)):
            assert bits(f.decode(i)) == bits(g.decode(i))
    with pytest.raises(DcfError) as e:
        lib.open_path(str(tmp_path / "missing.dcf"))
    assert e.value.name == "IO" and "No such file" in str(e.value)
    empty = tmp_path / "empty.dcf"
    empty.write_bytes(b"")
    with pytest.raises(DcfError) as e:
        lib.open_path(str(empty))
    assert e.value.name == "TRUNCATED"


def test_error_messages_name_the_tensor_and_the_problem(lib):
    w = np.arange(64, dtype=np.float32).reshape(8, 8)
    data = bytearray(dcformat.save({"layer.weight": w}, encodings={"layer.weight": dcformat.Encoding(codecs=("plain",))}))
    header = read_header(bytes(data))
    stream = header.tensors["layer.weight"].chunks[0].streams[0]
    data[stream.offset] ^= 1
    with lib.open(bytes(data)) as f:
        with pytest.raises(DcfError) as e:
            f.decode(0)
    assert e.value.name == "STREAM_CHECKSUM"
    assert "'layer.weight'" in str(e.value) and "checksum" in str(e.value)


def test_several_threads_decode_one_context(lib):
    rng = np.random.default_rng(3)
    tensors = {f"t{i}": np.where(rng.random((64, 300)) < 0.1, rng.normal(size=(64, 300)), 0).astype(np.float32)
               for i in range(6)}
    data = dcformat.save(tensors, encodings={k: dcformat.Encoding(chunk_elements=2048) for k in tensors})
    with lib.open(data) as f:
        want = {i: bits(f.decode(i)) for i in range(len(f))}
        problems = []

        def work(seed):
            r = random.Random(seed)
            for _ in range(30):
                i = r.randrange(len(f))
                if bits(f.decode(i)) != want[i]:
                    problems.append(i)

        threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not problems


# ---------------------------------------------------------------------------------------------
# codebook conversion: bit-exact with numpy / ml_dtypes, NaNs, infinities, subnormals, -0.0

def _special_f32() -> np.ndarray:
    specials = [0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FBFFFFF,
                0xFF800001, 0x7F802000, 0x7FFFE000, 0x7F801FFF, 0x00000001, 0x80000001, 0x007FFFFF, 0x00800000,
                0x33000000, 0x33000001, 0x337FFFFF, 0x33800000, 0x387FC000, 0x387FE000, 0x38800000, 0x477FE000,
                0x477FEFFF, 0x477FF000, 0x477FF001, 0x7F7FFFFF, 0x7F7F8000, 0x7F7F7FFF, 0x3F808000, 0x3F818000,
                0x3F800001, 0x3F807FFF, 0x3F800FFF, 0x3F801000, 0x3F803000, 0x3F801001]
    rng = np.random.default_rng(11)
    return np.concatenate([np.array(specials, np.uint32), rng.integers(0, 2**32, 3000, dtype=np.uint64).astype(np.uint32)])


@pytest.mark.parametrize("target", [np.float32, np.float16, ml_dtypes.bfloat16, np.float64], ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("source", ["f32", "f16"])
def test_codebook_conversion_is_bit_exact(lib, source, target):
    if source == "f32":
        book = _special_f32().view(np.float32)
    else:
        book = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)  # every float16
    book = book[:65536]
    indices = np.arange(book.size, dtype=np.int64).reshape(-1, 8 if book.size % 8 == 0 else 1)
    tensor = CodebookTensor(book, indices, np.dtype(target))
    data = dcformat.save({"w": tensor}, encodings={"w": dcformat.Encoding(layout="dense")})
    _, _, py = python_tensors(data)
    with lib.open(data) as f:
        assert_same(f.decode(0), py["w"])
        with np.errstate(all="ignore"):
            assert_same(f.decode(0, OUT_F32), py["w"].astype(np.float32))
    if target is not np.float32 or source != "f32":
        with np.errstate(all="ignore"):
            direct = book.astype(np.dtype(target))
        assert bits(py["w"].reshape(-1)) == bits(direct)  # the reference really is astype


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float64], ids=lambda t: np.dtype(t).name)
def test_raw_floats_to_float32_match_astype(lib, dtype):
    size = np.dtype(dtype).itemsize
    rng = np.random.default_rng(5)
    raw = rng.integers(0, 256, 4096 * size, dtype=np.uint8)
    if size == 8:  # plenty of NaN payloads, infinities, subnormals and rounding cases of float64
        words = raw.view(np.uint64)
        words[::7] |= np.uint64(0x7FF0000000000000)
        words[1::7] &= np.uint64(0x800FFFFFFFFFFFFF)
        words[2::7] = (words[2::7] & np.uint64(0x800FFFFFFFFFFFFF)) | np.uint64(0x3800000000000000)
    values = raw.view(np.dtype(dtype)).reshape(64, -1)
    for layout in ("dense", "csr"):
        sparse = values.copy()
        sparse.view(np.uint8).reshape(64, -1)[:, : sparse.shape[1] * size // 2] = 0
        data = dcformat.save({"w": sparse}, encodings={"w": dcformat.Encoding(layout=layout, chunk_elements=1000)})
        _, _, py = python_tensors(data)
        with lib.open(data) as f:
            assert_same(f.decode(0), py["w"])
            with np.errstate(all="ignore"):
                assert_same(f.decode(0, OUT_F32), py["w"].astype(np.float32))


# ---------------------------------------------------------------------------------------------
# allocator hooks: every allocation goes through them, scratch stays within dcf_scratch_size

MALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
FREE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


class CountingAllocator:
    """malloc/free hooks that track the bytes outstanding and their peak."""

    def __init__(self):
        libc = ctypes.CDLL(None)
        libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
        libc.free.argtypes = [ctypes.c_void_p]
        self.sizes, self.outstanding, self.peak = {}, 0, 0

        def malloc(user, size):
            p = libc.malloc(size)
            self.sizes[p] = size
            self.outstanding += size
            self.peak = max(self.peak, self.outstanding)
            return p

        def free(user, p):
            self.outstanding -= self.sizes.pop(p)
            libc.free(p)

        self.malloc, self.free = MALLOC(malloc), FREE(free)


@pytest.mark.parametrize("path", VECTORS, ids=os.path.basename)
def test_allocations_go_through_the_hooks_and_scratch_is_bounded(lib, path):
    data = open(path, "rb").read()
    if not python_opens(data):
        return
    counter = CountingAllocator()
    options = lib.options()
    options.allocator.malloc_fn = ctypes.cast(counter.malloc, ctypes.c_void_p)
    options.allocator.free_fn = ctypes.cast(counter.free, ctypes.c_void_p)
    from libdcf_helpers import File

    f = File(lib, data, options)
    after_open = counter.outstanding
    assert after_open > 0 and after_open <= 64 * 1024 + 4 * len(data)  # the context and its index
    for i in range(len(f)):
        for out_type in ((0, OUT_F32) if DType(f.info(i).dtype) in FLOAT_DTYPES else (0,)):
            counter.peak = counter.outstanding
            f.decode(i, out_type)
            assert counter.outstanding == after_open  # scratch freed
            assert counter.peak - after_open <= f.scratch_size(i, out_type), f.name(i)
    f.close()
    assert counter.outstanding == 0 and not counter.sizes  # nothing leaked


def _empty_tensor_file(shape) -> bytes:
    """A file with one empty F32 tensor of ``shape`` (no streams), written by hand."""
    index = struct.pack("<II", 1, 0) + struct.pack("<H", 1) + b"e" + struct.pack("<BB", DType.F32, len(shape))
    index += b"".join(struct.pack("<Q", d) for d in shape) + struct.pack("<BBBBII", 0, 0, 0, 0, 0, 0)
    return b"\x89DCF" + struct.pack("<HHB", 1, 0, 0) + bytes(7) + index + \
        struct.pack("<QI", len(index), crc32(index)) + b"\x89DCF"


@pytest.mark.parametrize("shape", [(0,), (2**41, 0), (0, 2**41), (3, 0, 2**59), (2**60 - 1, 0), (2**60, 0),
                                   (0, 2**40, 2**40), (2**64 - 1, 0), (0, 2**32, 2**32)])
def test_empty_shapes_follow_the_spec(lib, shape):
    """numel is 0 whatever the other dimensions; their product is bounded by MAX_EMPTY_SHAPE_PRODUCT."""
    data = _empty_tensor_file(shape)
    product = 1
    for d in shape:
        product *= d or 1
    if product > 2**60 - 1:
        with pytest.raises(DcfError) as e:
            lib.open(data)
        assert e.value.name == "LIMIT_EMPTY_SHAPE"
        with pytest.raises(DCFormatError):
            python_tensors(data)
    else:
        assert assert_same_outcome(lib, data) == "ok"
        with lib.open(data) as f:
            assert f.info(0).numel == 0 and f.decode(0).shape == shape
