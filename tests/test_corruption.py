"""Hostile bytes: every truncation and thousands of byte flips raise a DCFormatError subclass.

Any byte string handed to the reader either decodes or raises one of the library's errors: never a
crash, a hang, another exception type, or a wrong-size array.
"""
import pathlib
import struct
import zlib

import numpy as np
import pytest

import dcformat
from dcformat.errors import DCFormatError
from fuzz_helpers import fix_checksums

VECTORS = pathlib.Path(__file__).parent.parent / "spec" / "vectors"
FILES = sorted(VECTORS.glob("*.dcf"))


def read_everything(data: bytes) -> None:
    """Open and decode every tensor; the decoded arrays must have their declared shape."""
    with dcformat.DCFReader(data) as f:
        for name in f.keys():
            info = f.info(name)
            array = f.get_tensor(name)
            assert array.shape == info.shape


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_truncation_raises(path):
    data = path.read_bytes()
    for cut in range(len(data)):
        with pytest.raises(DCFormatError):
            read_everything(data[:cut])


def _flip_outcomes(data: bytes, flips: int, seed: int, fix_crc: bool):
    rng = np.random.default_rng(seed)
    decoded = raised = 0
    for _ in range(flips):
        mutated = bytearray(data)
        for _ in range(rng.integers(1, 4)):
            mutated[rng.integers(len(mutated))] ^= 1 << rng.integers(8)
        if fix_crc:
            fix_checksums(mutated)
        try:
            read_everything(bytes(mutated))
            decoded += 1
        except DCFormatError:
            raised += 1
    return decoded, raised


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_random_byte_flips(path):
    data = path.read_bytes()
    decoded, raised = _flip_outcomes(data, 300, seed=len(data), fix_crc=False)
    assert decoded + raised == 300


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_random_byte_flips_behind_valid_checksums(path):
    """With checksums recomputed, flips reach the structure checks and the codecs."""
    data = path.read_bytes()
    decoded, raised = _flip_outcomes(data, 300, seed=1 + len(data), fix_crc=True)
    assert decoded + raised == 300


def test_not_a_dcf_file():
    with pytest.raises(dcformat.BadMagicError):
        dcformat.load(b"PK\x03\x04" + bytes(60))
    with pytest.raises(dcformat.TruncatedFileError):
        dcformat.load(b"")


def test_newer_major_version_is_named():
    data = bytearray(dcformat.save({"a": np.ones(2, np.float32)}))
    data[4:6] = (2).to_bytes(2, "little")
    with pytest.raises(dcformat.UnsupportedVersionError, match="2.0"):
        dcformat.load(bytes(data))


def test_checksum_mismatch():
    data = bytearray(dcformat.save({"a": np.arange(100, dtype=np.float32)}, encodings={"a": {"codecs": ("plain",)}}))
    data[20] ^= 1
    with pytest.raises(dcformat.ChecksumError):
        dcformat.load(bytes(data))


def test_bomb_claim_refused_before_allocating():
    """A tiny file whose index claims a huge CSR tensor with no entries is refused by the limit."""
    from dcformat.writer import serialize_index
    from dcformat.structures import ChunkInfo, StreamInfo, TensorInfo
    from dcformat.constants import DType, Layout, ValueCoding, Role, Codec

    rows = 2**20
    # a chunk may cover at most MAX_CHUNK_ELEMENTS; claim 2**28 elements per chunk with no entries
    cols = 2**8
    streams = lambda n: (StreamInfo(Role.ROW_COUNTS, Codec.ZSTD, 0, 0, n, 1), StreamInfo(Role.GAPS, Codec.PLAIN, 0, 0, 0, 0), StreamInfo(Role.VALUES, Codec.PLAIN, 0, 0, 0, 0))
    tensor = TensorInfo("big", DType.F32, (rows, cols), Layout.CSR, ValueCoding.RAW, 4, 0, 0, None,
                        (ChunkInfo(0, rows, streams(rows)),))
    index = serialize_index({}, [tensor])
    data = dcformat.save({})[:16] + b"\x00" + index + struct.pack("<QI", len(index), zlib.crc32(index)) + b"\x89DCF"
    with pytest.raises(DCFormatError):  # since the fuzzing campaign: refused by dcformat.open
        with dcformat.DCFReader(data, verify=False, max_tensor_bytes=2**30) as f:
            f.get_tensor("big")
