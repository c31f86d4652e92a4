"""Hostile files: a fuzzing campaign on the reader, and the hostile inputs it is built from.

The campaign (``tools/fuzz_reader.py``, mutations and oracle in ``fuzz_helpers.py``) runs 100,000
mutated inputs in the default suite; the long one is a documented command (the tool's docstring).
Every input either decodes to arrays of the declared shape or raises a DCFormatError subclass.
Then: the reproducers of past findings, and one test per kind of hostile input the campaign's
mutations stand for (bad Huffman tables, codebook indices beyond k, CSR counts and gaps, chunk
tables, zstd frames, decompression bombs), each with the error it must raise, and bombs with the
memory their refusal may cost.
"""
import json
import pathlib
import struct
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import zstandard

import dcformat
import fuzz_helpers as fh
from dcformat.codecs import huffman
from dcformat.constants import DEFAULT_MAX_TENSOR_BYTES, Codec, DType, Layout, ValueCoding
from dcformat.errors import (
    CorruptFileError,
    DCFormatError,
    CountMismatchError,
    HuffmanTableError,
    LimitExceededError,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "fuzz_reader.py"
CAMPAIGN_INPUTS = 100_000
CAMPAIGN_SEED = 20261122


def _run_tool(*args, timeout):
    result = subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                            timeout=timeout, cwd=ROOT)
    lines = [line for line in result.stdout.splitlines() if line.startswith("SUMMARY ")]
    summary = json.loads(lines[-1][len("SUMMARY "):]) if lines else None
    return result, summary


# --------------------------------------------------------------------------------------------
# The campaign


def test_campaign_of_100000_inputs_finds_nothing(tmp_path):
    """100,000 structure-aware mutations of the golden vectors (a quarter of them fed to a codec's
    decode directly, the rest as whole files), each decoded or refused, in under 2 minutes."""
    result, summary = _run_tool("--inputs", str(CAMPAIGN_INPUTS), "--seed", str(CAMPAIGN_SEED),
                                "--variants", "16", "--findings", str(tmp_path / "findings"),
                                "--report-every", "1000", timeout=170)
    assert summary is not None, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"\nin-suite campaign: {summary['inputs']} inputs in {summary['seconds']} s "
          f"({summary['cpu_seconds']} s of CPU; {summary['inputs'] / summary['seconds']:.0f}/s), "
          f"{summary['decoded']} decoded, {summary['stream_inputs']} stream-level, "
          f"findings {summary['findings']}")
    assert summary["findings"] == {}, result.stdout[-5000:]
    assert result.returncode == 0
    assert summary["inputs"] == CAMPAIGN_INPUTS
    # Under 2 minutes of the fuzzing process's CPU time (about a minute of wall time on the idle
    # 2-core reference machine; wall time grows with whatever else shares the machine).
    assert summary["cpu_seconds"] < 120


def test_driver_reports_crashes_hangs_and_errors(tmp_path):
    """The driver's own test: a segfault, an endless loop and a non-DCFormatError exception at
    chosen inputs are each reported as a finding, with the input saved, and fuzzing goes on."""
    result, summary = _run_tool("--inputs", "40", "--seed", "1", "--variants", "2", "--timeout", "2",
                                "--findings", str(tmp_path), "--inject", "crash:10,hang:20,error:30",
                                timeout=150)
    assert summary is not None, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 1
    assert {f.split(":")[0] for f in summary["findings"]} == {
        "Crash(exit -11)@file", "Hang@file", "RuntimeError@fuzz_reader.py"}
    assert summary["inputs"] == 40
    saved = sorted(p.name for p in tmp_path.glob("*--*.dcf"))
    assert [s.split("--")[1] for s in saved] == ["seed1-input10.dcf", "seed1-input20.dcf", "seed1-input30.dcf"]


def test_inputs_are_reproducible():
    corpus = fh.Corpus(variants=4)
    again = fh.Corpus(variants=4)
    for key in (0, 1, 77, 10**9 + 3):
        assert corpus.file_input(key) == again.file_input(key)
        assert corpus.stream_input(key) == again.stream_input(key)


# --------------------------------------------------------------------------------------------
# Reproducers of past findings, decoded forever


REGRESSIONS = {
    # name: what the reader must raise (every file here was once a finding)
    "empty_tensor_huge_dimension.dcf": LimitExceededError,
    "empty_tensor_nonzero_dims_overflow.dcf": LimitExceededError,
    "dense_count_beyond_stream_bytes.dcf": CountMismatchError,
    "huffman_lane_longer_than_its_codes.dcf": CorruptFileError,
}


def test_every_regression_file_is_listed():
    assert {p.name for p in fh.REGRESSIONS.iterdir() if p.suffix in (".dcf", ".json")} == set(REGRESSIONS)
    readme = (fh.REGRESSIONS / "README.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in readme for name in REGRESSIONS)


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression(name):
    """Refused from bytes and from the file (memory-mapped), with and without checksums, by both
    kernel implementations."""
    path = fh.REGRESSIONS / name
    for source in (path.read_bytes(), path):
        for verify in (True, False):
            with pytest.raises(REGRESSIONS[name]):
                with dcformat.DCFReader(source, verify=verify) as f:
                    for key in f.keys():
                        f.get_tensor(key)
    for verify in (True, False):
        for backend in fh.BACKENDS:
            assert fh.check_file(path.read_bytes(), verify, backend) is False


def test_truncated_files_on_disk(tmp_path):
    """The memory-mapped path: an empty file, and every truncation of a vector, from disk."""
    data = (fh.VECTORS / "04_csr_codebook_huffman.dcf").read_bytes()
    for cut in [0, 1, 16, 31, 32] + list(range(33, len(data), 97)):
        path = tmp_path / f"cut{cut}.dcf"
        path.write_bytes(data[:cut])
        with pytest.raises(dcformat.TruncatedFileError if cut < 32 else DCFormatError):
            with dcformat.open(path) as f:
                f.get_tensors() if hasattr(f, "get_tensors") else [f.get_tensor(k) for k in f.keys()]


# --------------------------------------------------------------------------------------------
# Hostile inputs, one per kind the campaign mutates


def _model(tensors, **encodings):
    return fh.parse_model(dcformat.save(tensors, encodings=encodings))


def _read(model_or_bytes, verify=True, **limits):
    data = fh.serialize(model_or_bytes) if isinstance(model_or_bytes, fh.Model) else model_or_bytes
    with dcformat.DCFReader(data, verify=verify, **limits) as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _huffman_payload(lengths, symbols, max_length=None, lanes=1):
    """A HUFFMAN payload with any code lengths (valid or not), coding ``symbols`` with the canonical
    codes of the lengths where they have one."""
    lengths = list(lengths)
    codes = huffman.canonical_codes(np.array(lengths))
    bits = []
    for s in symbols:
        bits += [(int(codes[s]) >> (lengths[s] - 1 - i)) & 1 for i in range(lengths[s])]
    bits += [0] * (-len(bits) % 8)
    lane = bytes(sum(bits[i + k] << k for k in range(8)) for i in range(0, len(bits), 8))
    head = struct.pack("<BBHI", max(lengths) if max_length is None else max_length, lanes, 0, len(lengths))
    return head + fh._pack_lengths(lengths) + struct.pack("<I", len(lane)) + bytes(4 * (lanes - 1)) + lane


def _with_values_stream(payload, count, symbols_of_k=4):
    """A dense codebook tensor of ``count`` elements whose VALUES stream is ``payload`` (HUFFMAN)."""
    model = _model({"w": dcformat.CodebookTensor(np.linspace(-1, 1, symbols_of_k, dtype=np.float32),
                                                 np.zeros(count, np.int32))},
                   w={"layout": "dense", "codecs": ("plain",)})
    stream = model.tensors[0].chunks[0].streams[0]
    stream.codec, stream.payload, stream.count = Codec.HUFFMAN, payload, count
    return model


@pytest.mark.parametrize("lengths, max_length, why", [
    ([1, 1, 1], None, "over-subscribed"),
    ([1, 2, 3], None, "incomplete"),
    ([1, 2, 17, 17], None, "over 16"),
    ([1, 31], None, "over 16"),
    ([0, 0, 0, 0], 1, "no symbol"),
    ([2, 0, 0, 0], None, "single symbol"),
    ([1, 2, 3, 3], 4, "max_length"),
])
def test_bad_huffman_tables_in_a_file(lengths, max_length, why):
    present = [s for s, n in enumerate(lengths) if 0 < n <= 16]
    payload = _huffman_payload(lengths, present[:1] * 5, max_length)
    with pytest.raises(HuffmanTableError):
        _read(_with_values_stream(payload, 5))


def test_empty_huffman_alphabet():
    payload = struct.pack("<BBHI", 1, 1, 0, 0) + struct.pack("<I", 1) + b"\0"
    with pytest.raises(HuffmanTableError, match="alphabet_size 0"):
        _read(_with_values_stream(payload, 5))


def test_huffman_alphabet_beyond_the_codebook():
    """A Huffman table over more symbols than the codebook holds: index >= k, refused by the table."""
    payload = _huffman_payload([1, 2, 3, 3, 0, 0, 0, 0], [0, 1, 2, 3, 3])  # alphabet 8 > k = 4
    with pytest.raises(HuffmanTableError, match="bound"):
        _read(_with_values_stream(payload, 5))


@pytest.mark.parametrize("codec", ["plain", "bitpack", "zstd"])
@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_codebook_index_beyond_k(codec, layout):
    indices = np.array([[0, -1, 1, 2], [2, 2, -1, 0]], np.int32)
    model = _model({"w": dcformat.CodebookTensor(np.array([0.5, -1, 2], np.float32), indices)},
                   w={"layout": layout, "codecs": (codec,), "index_bits": 2})
    chunk = model.tensors[0].chunks[0]
    values = chunk.streams[-1]
    bad = values.elements.copy()
    bad[-1] = model.tensors[0].codebook_size  # k (the writer may have added a zero: k = 3 or 4)
    encoded = dcformat.codecs.get_codec(values.codec).encode(bad, 1)
    values.payload, values.param = encoded.payload, encoded.param
    with pytest.raises(CorruptFileError, match="outside the codebook|exceeds its bound"):
        _read(model)


def _csr_model():
    w = np.zeros((3, 40), np.float32)
    w[0, [1, 5]] = 1.5
    w[1, 39] = -2
    w[2, [0, 20, 30]] = 0.25
    return _model({"w": w}, w={"layout": "csr", "index_bits": 3, "codecs": ("plain",), "codebook": "never"})


def test_csr_row_counts_that_do_not_sum():
    model = _csr_model()
    counts = model.tensors[0].chunks[0].streams[0]
    bad = counts.elements.copy()
    bad[0] += 1
    counts.payload = bad.astype("<u4").tobytes()
    with pytest.raises(CountMismatchError, match="add up"):
        _read(model)


def test_csr_row_count_over_the_columns():
    model = _csr_model()
    counts, gaps, values = model.tensors[0].chunks[0].streams
    bad = counts.elements.copy()
    bad[:] = [41, 0, 0]
    counts.payload = bad.astype("<u4").tobytes()
    for s in (gaps, values):  # make the entries add up, so only the bound can refuse it
        s.payload = (s.payload * 41)[:41 * s.size]
        s.count = 41
    with pytest.raises(CorruptFileError, match="exceeds its bound"):
        _read(model)


def test_csr_gap_that_runs_past_the_row():
    """Six entries in a row of 40 columns, each 8 columns after the last (gap 7, the largest of
    index_bits 3): the sixth lands at column 47."""
    model = _csr_model()
    counts, gaps, values = model.tensors[0].chunks[0].streams
    counts.payload = np.array([0, 0, 6], "<u4").tobytes()
    gaps.payload, gaps.count = bytes([7] * 6), 6
    values.payload, values.count = values.payload[:4] * 6, 6
    with pytest.raises(CorruptFileError, match="column >= 40"):
        _read(model)
    gaps.payload = bytes([7] * 5 + [6])  # the last at column 46: still past the row
    with pytest.raises(CorruptFileError, match="column >= 40"):
        _read(model)
    gaps.payload = bytes([7] * 4 + [6, 0])  # the last at column 39: inside
    assert _read(model)["w"][2, 39] == 1.5


@pytest.mark.parametrize("extents, error", [
    ((3, 3), CountMismatchError),  # add up to more than the elements
    ((2,), CountMismatchError),  # add up to fewer
    ((0, 5), CorruptFileError),  # a zero extent
])
def test_chunk_tables_that_do_not_add_up(extents, error):
    model = _model({"w": np.arange(5, dtype=np.float32)}, w={"codecs": ("plain",), "chunk_elements": 2})
    t = model.tensors[0]
    t.chunks = [fh.Chunk(e, list(t.chunks[0].streams)) for e in extents]
    with pytest.raises(error):
        _read(model)


@pytest.mark.parametrize("backend", fh.BACKENDS)
def test_long_huffman_lane_refused_before_decoding(backend):
    """A 16 MiB lane holding one 1-bit code: refused from the lane lengths alone (it once cost the
    numpy kernels 2 GiB of scratch and 20 s; regression file huffman_lane_longer_than_its_codes)."""
    def payload(lane):
        return struct.pack("<BBHI", 1, 1, 0, 2) + fh._pack_lengths([1, 1]) + struct.pack("<I", len(lane)) + lane

    with fh.kernel_backend(backend):
        assert huffman.decode(payload(b"\0"), 1, 1, 0, None).tolist() == [0]  # warm up
        hostile = payload(bytes(16 * 2**20))
        tracemalloc.start()
        try:
            with pytest.raises(CorruptFileError, match="bytes after its last code"):
                huffman.decode(hostile, 1, 1, 0, None)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 2**20


def test_zstd_frame_that_expands_past_its_declared_size():
    """A frame holding 4,000 bytes whose header states the 400 the stream declares: refused by
    libzstd while decoding, into a buffer of the declared size only."""
    model = _model({"w": np.arange(100, dtype=np.float32)}, w={"codecs": ("zstd",)})
    stream = model.tensors[0].chunks[0].streams[0]
    frame = bytearray(zstandard.ZstdCompressor(level=1).compress(bytes(4000)))
    offset, size = fh._fcs_field(frame)
    frame[offset:offset + size] = (400 - 256 if size == 2 else 400).to_bytes(size, "little")
    stream.payload = bytes(frame)
    with pytest.raises(CorruptFileError):
        _read(model)


def test_zstd_frame_stating_more_than_declared():
    model = _model({"w": np.arange(100, dtype=np.float32)}, w={"codecs": ("zstd",)})
    stream = model.tensors[0].chunks[0].streams[0]
    stream.payload = zstandard.ZstdCompressor(level=1).compress(bytes(2**24))  # 16 MiB of zeros
    with pytest.raises(CountMismatchError, match="states 16777216"):
        _read(model)


# --------------------------------------------------------------------------------------------
# Decompression bombs: a tiny file claiming terabytes is refused before anything is allocated


def _bomb(shape, chunks, layout=Layout.DENSE, codec=Codec.ZSTD, payload=b"\x28", dtype=DType.F64):
    """A small file whose index claims a tensor of ``shape`` in ``chunks`` chunks, each chunk's
    first stream a ``payload`` of a byte or a few."""
    rows = shape[0]
    per_chunk = -(-rows // chunks)
    tensor = fh.Tensor(b"bomb", dtype, list(shape), layout, ValueCoding.RAW,
                       4 if layout == Layout.CSR else 0, 0, 0, None, [])
    for start in range(0, rows, per_chunk):
        extent = min(per_chunk, rows - start)
        streams = [fh.Stream(codec, 0, extent, payload)]
        if layout == Layout.CSR:  # no entries: the GAPS and VALUES streams are empty
            streams += [fh.Stream(Codec.PLAIN, 0, 0, b""), fh.Stream(Codec.PLAIN, 0, 0, b"")]
        tensor.chunks.append(fh.Chunk(extent, streams))
    return fh.serialize(fh.Model([tensor]))


def _zstd_expanding():
    """A stream declaring 1 float64 whose zstd frame holds 1 GiB of zeros (32 KiB stored) and
    states 8 bytes of content: libzstd must stop at the 8-byte buffer it was given."""
    model = _model({"w": np.arange(1, dtype=np.float64)}, w={"codecs": ("zstd",)})
    stream = model.tensors[0].chunks[0].streams[0]
    compressor = zstandard.ZstdCompressor(level=1).compressobj(size=2**30)
    frame = bytearray(b"".join(compressor.compress(bytes(2**24)) for _ in range(64)) + compressor.flush())
    offset, size = fh._fcs_field(frame)
    frame[offset:offset + size] = (8).to_bytes(size, "little")
    stream.payload = bytes(frame)
    return fh.serialize(model)


BOMBS = {
    # name: (file, reader limits, what refuses it)
    # 8 TiB of float64, 4096 dense chunks of 2**28 elements, each a 1-byte zstd stream
    "dense_8TiB": (lambda: _bomb((2**40,), 4096), {}, CountMismatchError),
    # the same behind a raised reader limit: refused by its streams' sizes, not by the limit
    "dense_8TiB_no_limit": (lambda: _bomb((2**40,), 4096), {"max_tensor_bytes": 2**60}, CountMismatchError),
    # 16 GiB, just at the default limit: 64 chunks whose 1-byte streams cannot hold 2**25 each
    "dense_16GiB": (lambda: _bomb((2**31,), 64), {}, CountMismatchError),
    # 8 TiB as CSR: 4096 all-zero rows of 2**28 columns, a legitimate all-zero matrix by its
    # structure (4-byte row counts of 0): the reader's tensor-size limit refuses it, by name
    "csr_8TiB": (lambda: _bomb((4096, 2**28), 4096, Layout.CSR, Codec.PLAIN, bytes(4)), {}, LimitExceededError),
    # a frame that expands to 1 GiB in a stream of one element
    "zstd_expanding": (_zstd_expanding, {}, CorruptFileError),
}


@pytest.fixture(scope="module")
def bomb_files():
    return {name: make() for name, (make, _, _) in BOMBS.items()}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_bomb_refused_before_allocating(name, bomb_files):
    """tracemalloc sees numpy's allocations: refusing the bomb allocates no more than a few times
    the file's own size."""
    _, limits, error = BOMBS[name]
    data = bomb_files[name]
    assert len(data) < 512 * 2**10
    tracemalloc.start()
    try:
        with pytest.raises(error) as caught:
            _read(data, verify=False, **limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20 + 16 * len(data), f"peak {peak} bytes while refusing: {caught.value}"
    if error is LimitExceededError:
        assert str(DEFAULT_MAX_TENSOR_BYTES) in str(caught.value)  # the error names the limit


def _many_zero_csr_tensors(count):
    """``count`` all-zero CSR float64 tensors of 8 x 2**28 (16 GiB each, the default limit), each
    a legitimate file on its own: about 1 KB of index apiece."""
    one = fh.parse_model(_bomb((8, 2**28), 8, Layout.CSR, Codec.PLAIN, bytes(4))).tensors[0]
    tensors = []
    for i in range(count):
        t = fh._clone(one)
        t.name = f"zero{i}".encode()
        tensors.append(t)
    return fh.serialize(fh.Model(tensors))


def test_many_zero_tensors_are_refused_in_total():
    data = _many_zero_csr_tensors(1024)
    assert len(data) < 2**20
    with pytest.raises(LimitExceededError):
        dcformat.load(data)


def test_bombs_leave_peak_rss_flat(tmp_path, bomb_files):
    """The same bombs in a fresh process: its peak resident memory (getrusage) grows by less
    than 64 MiB while it refuses them all, so no native allocation (libzstd's) escaped either."""
    for name, data in bomb_files.items():
        (tmp_path / f"{name}.dcf").write_bytes(data)
    limits = {name: BOMBS[name][1] for name in BOMBS}
    script = f"""
import pathlib, resource, numpy, dcformat
from dcformat.errors import DCFormatError
dcformat.load(dcformat.save({{"w": numpy.arange(10.0)}}, encodings={{"w": {{"codecs": ("zstd",)}}}}))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for name, limits in {limits!r}.items():
    try:
        dcformat.load(pathlib.Path({str(tmp_path)!r}, name + ".dcf").read_bytes(), **limits)
        print("DECODED", name)
    except DCFormatError:
        pass
print("GROWTH_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DECODED" not in result.stdout
    growth_kb = int(result.stdout.split("GROWTH_KB")[1])
    assert growth_kb < 64 * 1024, growth_kb


def test_regression_files_are_small():
    for p in fh.REGRESSIONS.iterdir():
        assert p.stat().st_size < 4096, p
