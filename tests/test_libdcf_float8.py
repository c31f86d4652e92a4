"""libdcf and format 1.2: float8 tensors decode natively (one byte) and to float32 bit-identical
to the Python reader and to spec §4.3.1, for every one of the 256 codes of each type, through
every path (RAW dense and CSR, codebooks dense and CSR, Huffman-fused lookup); files that break
1.2's rules are refused as the Python reader refuses them; dcfdecode writes the F8 safetensors
dtypes as dcunpack does. Also: a zero-byte allocation request costs nothing (scratch bounds exact)."""
import ctypes
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import dcformat
from dcformat.constants import DType
from dcformat.conversion import float8_to_float32
from dcformat.errors import CorruptFileError
from dcformat.structures import numpy_dtype
from dcformat.tensors import CodebookTensor
from libdcf_helpers import DCFDECODE, LIB_PATH, OUT_F32, DcfError, File, Lib, build_native
from test_format_1_2 import _index_patched, naive_float32_bits
from test_libdcf import CountingAllocator

ROOT = pathlib.Path(__file__).resolve().parent.parent
V12 = ROOT / "spec" / "vectors" / "1.2"
E4M3, E5M2 = numpy_dtype(DType.F8_E4M3), numpy_dtype(DType.F8_E5M2)
TYPES = [(DType.F8_E4M3, E4M3), (DType.F8_E5M2, E5M2)]


@pytest.fixture(scope="module")
def lib() -> Lib:
    build_native()
    return Lib(LIB_PATH)


def _naive_f32(codes: np.ndarray, dtype: DType) -> np.ndarray:
    return np.array([naive_float32_bits(int(c), dtype) for c in codes.view(np.uint8).reshape(-1)],
                    np.uint32).reshape(codes.shape)


def _check(lib, data, dtype):
    """Every tensor of ``data``: native bytes as Python's, float32 bits as the definition's."""
    py = dcformat.load(data)
    with lib.open(data) as f:
        for i, name in enumerate(f.names()):
            native, f32 = f.decode(i), f.decode(i, OUT_F32)
            assert native.dtype == py[name].dtype and native.shape == py[name].shape
            assert native.tobytes() == py[name].tobytes(), name
            assert f32.dtype == np.float32 and f32.view(np.uint32).tolist() == _naive_f32(py[name], dtype).tolist()
            assert f32.tobytes() == float8_to_float32(py[name]).tobytes()
            chunks = [f.decode_chunk(i, c, OUT_F32) for c in range(f.info(i).chunk_count)]
            if chunks:
                assert np.concatenate(chunks).tobytes() == f32.tobytes()
            assert f.decoded_size(i, OUT_F32) == 4 * py[name].size and f.decoded_size(i) == py[name].size


@pytest.mark.parametrize("dtype, np_dtype", TYPES, ids=["e4m3", "e5m2"])
def test_every_code_through_every_path(lib, dtype, np_dtype):
    codes = np.arange(256, dtype=np.uint8).view(np_dtype)
    rng = np.random.default_rng(int(dtype))
    sparse = rng.permutation(np.tile(np.arange(256, dtype=np.uint8), 4)).reshape(16, 64)
    sparse[rng.random(sparse.shape) < 0.6] = 0
    tensors = {"plain": codes, "huffman": codes, "bitpack": codes, "zstd": codes, "chunked": codes,
               "csr": sparse.view(np_dtype)}
    encodings = {"plain": {"codecs": ("plain",)}, "huffman": {"codecs": ("huffman",)},
                 "bitpack": {"codecs": ("bitpack",)}, "zstd": {"codecs": ("zstd",)},
                 "chunked": {"codecs": ("huffman",), "chunk_elements": 37},
                 "csr": {"layout": "csr", "index_bits": 3, "codecs": ("huffman", "bitpack")}}
    _check(lib, dcformat.save(tensors, encodings=encodings), dtype)
    # codebooks of every code (k = 256: one-byte symbols), dense with the Huffman-fused lookup, CSR
    index = rng.integers(-1, 256, size=(12, 40))
    book = CodebookTensor(codes, index, np_dtype)
    for encoding in ({"layout": "dense", "codecs": ("huffman",)}, {"layout": "dense", "codecs": ("bitpack",)},
                     {"layout": "csr", "index_bits": 2}, {"layout": "csr", "index_bits": 9, "codecs": ("zstd",)}):
        _check(lib, dcformat.save({"w": book}, encodings={"w": encoding}), dtype)
    # a codebook of 300 entries (2-byte symbols), rounded from float32 by the writer
    wide = CodebookTensor(rng.normal(0, 2, 300).astype(np.float32), rng.integers(-1, 300, size=(6, 70)), np_dtype)
    _check(lib, dcformat.save({"w": wide}, encodings={"w": {"layout": "dense"}}), dtype)
    _check(lib, dcformat.save({"w": wide}, encodings={"w": {"layout": "csr"}}), dtype)


@pytest.mark.parametrize("name", sorted(p.stem for p in V12.glob("*.dcf")))
def test_the_1_2_vectors(lib, name):
    data = (V12 / f"{name}.dcf").read_bytes()
    try:
        dcformat.DCFReader(data)
    except CorruptFileError as python:
        with pytest.raises(DcfError) as c:
            lib.open(data)
        assert c.value.name in ("BAD_ENUM", "BAD_FIELD")
        # the same fault named the same way: the version it needs, or the codebook rule
        tail = str(python).split(": ", 1)[-1] if "codebook" in str(python) else str(python)
        assert tail.split(" (a float8")[0] in str(c.value), (str(python), str(c.value))
        return
    with lib.open(data) as f:
        assert f.version() == (1, 2)
    py = dcformat.load(data)
    with lib.open(data) as f:
        for i, tensor in enumerate(f.names()):
            assert f.decode(i).tobytes() == py[tensor].tobytes()
            assert f.decode(i, OUT_F32).tobytes() == float8_to_float32(py[tensor]).tobytes()
            assert f.info(i).dtype in (14, 15)


def test_float8_rules_are_enforced_as_in_python(lib):
    tensor = CodebookTensor(np.array([0.5, 1.0], np.float32), np.array([0, 1, 1, 0]), E5M2)
    data = dcformat.save({"w": tensor}, encodings={"w": {"layout": "dense", "codecs": ("plain",)}})
    fields = bytes([0, 1, 0, 15])
    for bad, code in ((14, "BAD_FIELD"), (1, "BAD_FIELD"), (2, "BAD_FIELD"), (16, "BAD_ENUM")):
        patched = _index_patched(data, fields, fields[:3] + bytes([bad]))
        with pytest.raises(CorruptFileError):
            dcformat.DCFReader(patched)
        with pytest.raises(DcfError) as e:
            lib.open(patched)
        assert e.value.name == code, (bad, e.value)
    name_dtype = b"\x01\x00w" + bytes([15])
    with pytest.raises(DcfError, match="unknown value 16") as e:
        lib.open(_index_patched(data, name_dtype, name_dtype[:3] + bytes([16])))
    for minor in (0, 1):
        old = bytearray(data)
        old[6] = minor
        with pytest.raises(DcfError, match=f"needs format version 1.2, but the file is version 1.{minor}") as e:
            lib.open(bytes(old))
        assert e.value.name == "BAD_ENUM"
    with lib.open(data) as f:
        info = f.info(0)
        assert (info.dtype, info.codebook_dtype, f.version()) == (15, 15, (1, 2))


def test_dtype_names_and_sizes(lib):
    c = lib.c
    c.dcf_dtype_name.restype = ctypes.c_char_p
    assert [c.dcf_dtype_name(d) for d in (13, 14, 15, 16)] == [b"BOOL", b"F8_E4M3", b"F8_E5M2", b"?"]
    assert [c.dcf_dtype_size(d) for d in (13, 14, 15, 16)] == [1, 1, 1, 0]


def test_dcfdecode_writes_float8_as_dcunpack(lib, tmp_path):
    """`dcfdecode -o` = `dcunpack`, byte for byte, on the 1.2 vectors and on a file mixing float8
    with other dtypes (the safetensors package's order: I16 > F8_E4M3 > F8_E5M2 > I8)."""
    mixed = {"a16": np.arange(3, dtype=np.int16), "f4": np.arange(7, dtype=np.uint8).view(E4M3),
             "f5": np.arange(5, dtype=np.uint8).view(E5M2), "i8": np.zeros(2, np.int8), "w": np.ones(4, np.float32)}
    dcformat.save_file(mixed, tmp_path / "mixed.dcf")
    files = [tmp_path / "mixed.dcf"] + [p for p in sorted(V12.glob("3[345]_*.dcf"))]
    for path in files:
        c_out, py_out = tmp_path / f"{path.stem}.c.safetensors", tmp_path / f"{path.stem}.py.safetensors"
        subprocess.run([DCFDECODE, str(path), "-o", str(c_out)], check=True, capture_output=True)
        subprocess.run([sys.executable, "-m", "dcformat.cli.dcunpack", str(path), "-o", str(py_out), "-q"],
                       check=True, capture_output=True)
        assert c_out.read_bytes() == py_out.read_bytes(), path.name
    torch = pytest.importorskip("torch")  # safetensors.numpy has no float8 dtype
    from safetensors.torch import load_file as torch_load

    restored = torch_load(str(tmp_path / "mixed.c.safetensors"))
    assert restored["f4"].dtype == torch.float8_e4m3fn and restored["f5"].dtype == torch.float8_e5m2
    assert restored["f4"].view(torch.uint8).tolist() == list(range(7))


# ---------------------------------------------------------------------------------------------
# dcf_alloc(0): a request of no bytes costs nothing, so the documented bounds hold exactly

def _counted(lib, data):
    counter = CountingAllocator()
    requests = []
    inner = counter.malloc

    @ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
    def malloc(user, size):
        requests.append(size)
        return inner(user, size)

    options = lib.options()
    options.allocator.malloc_fn = ctypes.cast(malloc, ctypes.c_void_p)
    options.allocator.free_fn = ctypes.cast(counter.free, ctypes.c_void_p)
    f = File(lib, data, options)
    return f, counter, requests, malloc


def test_zero_byte_requests_never_reach_the_allocator(lib):
    """An index without metadata, tensors or extension records needs arrays of no element: none
    is asked of the hooks (it used to be 1 byte each). An empty tensor decodes with no scratch."""
    import io

    empty = dcformat.save({})
    assert len(empty) == 40
    buffer = io.BytesIO()
    with dcformat.DCFWriter(buffer, version_minor=1) as w:  # extension_count 0
        w.add("e", np.zeros((0, 5), np.float32))
        w.add("f", np.zeros((3, 0), np.float16))
    for data in (empty, buffer.getvalue(), dcformat.save({"w": np.ones(3, np.float32)})):
        f, counter, requests, keep = _counted(lib, data)
        assert requests and min(requests) > 1, requests  # no 0 (nor a 1 standing in for 0)
        after_open = counter.outstanding
        for i in range(len(f)):
            if f.info(i).numel == 0:
                before = len(requests)
                counter.peak = counter.outstanding
                for out_type in (0, OUT_F32):
                    assert f.decode(i, out_type).size == 0
                    assert f.scratch_size(i, out_type) == 0
                assert len(requests) == before and counter.peak == after_open
        f.close()
        assert counter.outstanding == 0 and not counter.sizes


def test_scratch_bound_holds_exactly_for_float8(lib):
    """Every allocation of a decode call within dcf_scratch_size, also for one-byte elements and
    float8 codebooks (the F32 output converts through a one-byte-per-element buffer)."""
    rng = np.random.default_rng(3)
    tensors = {"raw": rng.integers(0, 256, 3000).astype(np.uint8).view(E4M3),
               "csr": np.where(rng.random((40, 90)) < 0.1, rng.integers(1, 256, (40, 90)), 0).astype(np.uint8).view(E5M2),
               "book": CodebookTensor(rng.normal(0, 1, 9).astype(np.float32), rng.integers(-1, 9, (30, 30)), E4M3),
               "one": np.ones((), E5M2)}
    encodings = {"csr": {"layout": "csr", "chunk_elements": 900}, "book": {"layout": "dense", "codecs": ("bitpack",)}}
    f, counter, requests, keep = _counted(lib, dcformat.save(tensors, encodings=encodings))
    after_open = counter.outstanding
    for i in range(len(f)):
        for out_type in (0, OUT_F32):
            counter.peak = counter.outstanding
            f.decode(i, out_type)
            assert counter.outstanding == after_open
            assert counter.peak - after_open <= f.scratch_size(i, out_type), (f.name(i), out_type)
    f.close()
    assert counter.outstanding == 0


def _with_values(payload: bytes, codec: int, dtype=E4M3) -> bytes:
    """A 1.2 file of one RAW float8 tensor of 40 elements whose VALUES stream is ``payload``."""
    import fuzz_helpers as fh

    model = fh.parse_model(dcformat.save({"w": np.zeros(40, dtype)}, encodings={"w": {"codecs": ("plain",)}}))
    stream = model.tensors[0].chunks[0].streams[0]
    stream.codec, stream.param, stream.payload = codec, 0, payload
    return fh.serialize(model)


def _huffman_payload(alphabet: int, count: int) -> bytes:
    """One lane, symbols 0 and ``alphabet - 1`` of length 1, every symbol 0."""
    import struct

    lengths = [0] * alphabet
    lengths[0] = lengths[alphabet - 1] = 1
    bits = sum(v << (5 * i) for i, v in enumerate(lengths))
    table = bits.to_bytes((5 * alphabet + 7) // 8, "little")
    lane = bytes((count + 7) // 8)
    return struct.pack("<BBHI", 1, 1, 0, alphabet) + table + struct.pack("<I", len(lane)) + lane


@pytest.mark.parametrize("dtype", [E4M3, E5M2], ids=["e4m3", "e5m2"])
def test_one_byte_codec_rules(lib, dtype):
    """RAW float8 values are one-byte elements (spec §4.3.1): HUFFMAN's alphabet is at most 256 and
    BYTEPLANES does not apply; both decoders refuse the tensor when it is decoded."""
    import struct

    good = _with_values(_huffman_payload(256, 40), 2, dtype)
    assert dcformat.load(good)["w"].view(np.uint8).tolist() == [0] * 40
    with lib.open(good) as f:
        assert f.decode(0).view(np.uint8).tolist() == [0] * 40
    planes = struct.pack("<BBH", 0, 1, 0) + struct.pack("<BxxxI", 0, 40) + bytes(40)
    for payload, codec, name in ((_huffman_payload(257, 40), 2, "HUFFMAN_TABLE"), (planes, 4, "BAD_CODEC_PARAM")):
        data = _with_values(payload, codec, dtype)
        with dcformat.DCFReader(data) as reader:  # opens: the fault is inside the stream
            with pytest.raises(CorruptFileError):
                reader.get_tensor("w")
        with lib.open(data) as f:
            with pytest.raises(DcfError) as e:
                f.decode(0)
            assert e.value.name == name, e.value
