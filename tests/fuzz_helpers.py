"""Structure-aware fuzzing of the dcf reader: a file model, mutations of it, and the targets.

Shared by the in-suite campaign (``tests/test_fuzz_reader.py``), the long campaign
(``tools/fuzz_reader.py``) and the corruption tests.

A seed file (a golden vector) is parsed once into a :class:`Model`: every field of the preamble,
the index and the trailer, and every stream's payload (plus its decoded elements). A mutation
changes a few fields of a copy, or a payload's inner structure (a Huffman table, a byte-plane
header, a zstd frame header), or re-encodes a stream's elements after breaking one of their
bounds; :func:`serialize` then lays the file out again with every offset, padding and CRC
recomputed (unless the mutation chose to break one), so the mutation reaches the deep checks
instead of stopping at a checksum. Mutations are pure functions of ``(seed, index)``: a finding is
reproduced from those two numbers alone.

The oracle (:func:`check_file`, :func:`check_stream`): any byte string handed to the reader either
decodes to arrays of the declared shape and dtype, or raises a :class:`DCFormatError` subclass.
Anything else is a finding: another exception, a crash, a hang, a wrong-size array, or a decode
that differs from another way of decoding the same bytes: the Numba kernels against their numpy
twins (:mod:`dcformat.kernels.small`), Huffman and bit-packing against the slow references of
``tests/naive*.py``, ``get_codebook_tensor`` against ``get_tensor``.
"""
from __future__ import annotations

import contextlib
import pathlib
import random
import struct
import sys
import zlib
from dataclasses import dataclass, field

import numpy as np

import dcformat
from dcformat.codecs import get_codec
from dcformat.constants import ELEMENT_DTYPE, Codec, ValueCoding
from dcformat.errors import DCFormatError, EncodingError
from dcformat.reader import decode_stream
from dcformat.structures import element_bound, element_size, numpy_dtype

ROOT = pathlib.Path(__file__).resolve().parent.parent
VECTORS = ROOT / "spec" / "vectors"
REGRESSIONS = ROOT / "tests" / "fuzz_regressions"
if str(ROOT / "tests") not in sys.path:  # for naive*.py when imported from tools/
    sys.path.insert(0, str(ROOT / "tests"))

import naive  # noqa: E402
import naive_huffman  # noqa: E402

FUZZ_MAX_TENSOR_BYTES = 64 * 2**20
"""The reader limit the targets run under: a legitimate all-zero CSR tensor can decode to this
much from a few bytes, so the targets keep it small (a bomb past it must fail by the limit)."""


# --------------------------------------------------------------------------------------------
# Checksums


def fix_checksums(data: bytearray) -> None:
    """Recompute the index CRC and every stream CRC so byte flips reach the deeper checks.

    Leaves ``data`` as it is when its index does not parse."""
    try:
        header = dcformat.DCFReader(bytes(data), verify=False).header
    except DCFormatError:
        return
    from dcformat.writer import serialize_index

    fixed = []
    for t in header.tensors.values():
        def crc(s):
            return s._replace(crc32=zlib.crc32(data[s.offset:s.offset + s.length]))

        cb = crc(t.codebook) if t.codebook else None
        chunks = tuple(c._replace(streams=tuple(crc(s) for s in c.streams)) for c in t.chunks)
        fixed.append(t._replace(codebook=cb, chunks=chunks))
    index_at = header.index_offset
    new_index = serialize_index(header.metadata, fixed)
    if len(new_index) != header.index_length:
        return
    data[index_at:index_at + len(new_index)] = new_index
    struct.pack_into("<I", data, len(data) - 8, zlib.crc32(new_index))


def fix_index_crc(data: bytearray) -> None:
    """Recompute the trailer's index CRC, if the trailer's index length is plausible."""
    if len(data) < 32:
        return
    (index_length,) = struct.unpack_from("<Q", data, len(data) - 16)
    if 8 <= index_length <= len(data) - 32:
        start = len(data) - 16 - index_length
        struct.pack_into("<I", data, len(data) - 8, zlib.crc32(bytes(data[start:len(data) - 16])))


# --------------------------------------------------------------------------------------------
# The file model. ``None`` in a field means "computed by serialize" (a count, a length, a CRC).


@dataclass
class Stream:
    codec: int
    param: int
    count: int
    payload: bytes
    reserved: int = 0
    crc: int | None = None
    length: int | None = None
    # Not in the file: what the seed's reader knew, for element mutations.
    size: int = 1  # element size of the role
    bound: int | None = None  # exclusive bound of the role
    elements: np.ndarray | None = None  # the seed's decoded elements


@dataclass
class Chunk:
    extent: int
    streams: list


@dataclass
class Tensor:
    name: bytes
    dtype: int
    shape: list
    layout: int
    value_coding: int
    index_bits: int
    codebook_dtype: int
    codebook_size: int
    codebook: Stream | None
    chunks: list
    name_length: int | None = None
    rank: int | None = None
    chunk_count: int | None = None


@dataclass
class Model:
    tensors: list
    metadata: list = field(default_factory=list)  # (key bytes, value bytes, key_length, value_length)
    magic: bytes = b"\x89DCF"
    major: int = 1
    minor: int = 0
    alignment_log2: int = 0
    reserved: bytes = bytes(7)
    tensor_count: int | None = None
    metadata_count: int | None = None
    index_length: int | None = None
    index_crc: int | None = None
    end_magic: bytes = b"\x89DCF"
    padding_byte: int = 0
    index_tail: bytes = b""  # bytes after the last index field
    data_tail: bytes = b""  # bytes after the last stream, before the index
    # the extension section of a 1.1 index (spec §4.6), count included; None: an empty one when
    # major is 1 and minor >= 1 (from 1.1 on every index has the section), none otherwise
    extensions: bytes | None = None


def parse_model(data: bytes) -> Model:
    """The model of a valid file (a seed), with every stream's decoded elements."""
    with dcformat.DCFReader(data) as f:
        header = f.header
        buffer = bytes(data)

        def stream(s, info):
            payload = buffer[s.offset:s.offset + s.length]
            try:
                elements = decode_stream(buffer, s, info) if s.count else None
            except DCFormatError:
                elements = None
            return Stream(int(s.codec), s.param, s.count, payload, size=element_size(s.role, info),
                          bound=element_bound(s.role, info), elements=elements)

        tensors = []
        for info in header.tensors.values():
            cb = stream(info.codebook, info) if info.codebook is not None else None
            chunks = [Chunk(c.extent, [stream(s, info) for s in c.streams]) for c in info.chunks]
            tensors.append(Tensor(info.name.encode(), int(info.dtype), list(info.shape), int(info.layout),
                                  int(info.value_coding), info.index_bits, info.codebook_dtype,
                                  info.codebook_size, cb, chunks))
        metadata = [(k.encode(), v.encode(), None, None) for k, v in header.metadata.items()]
        model = Model(tensors, metadata, major=header.version[0], minor=header.version[1],
                      alignment_log2=header.alignment_log2)
        if header.version[1] >= 1:  # the attachments' streams and the records, kept as bytes
            streams_end = max((s.offset + s.length for t in header.tensors.values() for s in t.streams),
                              default=16)
            model.data_tail = buffer[streams_end:header.index_offset]
            model.minor = 0
            file_without_section = serialize(model)  # the same bytes up to the last tensor entry
            model.minor = header.version[1]
            section_start = len(file_without_section) - 16  # its trailer's offset
            model.extensions = buffer[section_start:header.index_offset + header.index_length]
        return model


def _streams(model: Model):
    for t in model.tensors:
        if t.codebook is not None:
            yield t, t.codebook
        for c in t.chunks:
            yield from ((t, s) for s in c.streams)


def serialize(model: Model) -> bytes:
    """The file bytes of ``model``: streams laid out in index order (spec §5), counts, lengths and
    CRCs computed where the model holds ``None``."""
    align = 1 << min(model.alignment_log2, 12)
    out = bytearray(model.magic + struct.pack("<HHB", model.major & 0xFFFF, model.minor & 0xFFFF,
                                              model.alignment_log2 & 0xFF) + model.reserved)
    for _, s in _streams(model):
        if s.payload:
            pad = -len(out) % align
            out += bytes([model.padding_byte]) * pad
        out += s.payload
    out += model.data_tail
    index = bytearray()
    index += struct.pack("<II", _or(model.tensor_count, len(model.tensors)) & 0xFFFFFFFF,
                         _or(model.metadata_count, len(model.metadata)) & 0xFFFFFFFF)
    for key, value, key_length, value_length in model.metadata:
        index += struct.pack("<H", _or(key_length, len(key)) & 0xFFFF) + key
        index += struct.pack("<I", _or(value_length, len(value)) & 0xFFFFFFFF) + value
    for t in model.tensors:
        index += struct.pack("<H", _or(t.name_length, len(t.name)) & 0xFFFF) + t.name
        index += struct.pack("<BB", t.dtype & 0xFF, _or(t.rank, len(t.shape)) & 0xFF)
        index += b"".join(struct.pack("<Q", d & 0xFFFFFFFFFFFFFFFF) for d in t.shape)
        index += struct.pack("<BBBBII", t.layout & 0xFF, t.value_coding & 0xFF, t.index_bits & 0xFF,
                             t.codebook_dtype & 0xFF, t.codebook_size & 0xFFFFFFFF,
                             _or(t.chunk_count, len(t.chunks)) & 0xFFFFFFFF)
        if t.codebook is not None:
            index += _descriptor(t.codebook)
        for c in t.chunks:
            index += struct.pack("<Q", c.extent & 0xFFFFFFFFFFFFFFFF)
            index += b"".join(_descriptor(s) for s in c.streams)
    if model.extensions is not None:
        index += model.extensions
    elif model.major == 1 and model.minor >= 1:
        index += struct.pack("<I", 0)
    index += model.index_tail
    out += index
    out += struct.pack("<QI", _or(model.index_length, len(index)) & 0xFFFFFFFFFFFFFFFF,
                       _or(model.index_crc, zlib.crc32(index)) & 0xFFFFFFFF)
    out += model.end_magic
    return bytes(out)


def _or(value, default):
    return default if value is None else value


def _descriptor(s: Stream) -> bytes:
    return struct.pack("<BBHIQQ", s.codec & 0xFF, s.param & 0xFF, s.reserved & 0xFFFF,
                       _or(s.crc, zlib.crc32(s.payload)) & 0xFFFFFFFF, s.count & 0xFFFFFFFFFFFFFFFF,
                       _or(s.length, len(s.payload)) & 0xFFFFFFFFFFFFFFFF)


def _clone(record):
    new = object.__new__(type(record))
    new.__dict__.update(record.__dict__)
    return new


def copy_model(model: Model) -> Model:
    """A copy whose lists and records can be changed without touching ``model``. Streams are
    shared until :func:`take_stream` hands one out for changing; payloads and element arrays are
    never changed in place, only replaced."""
    m = _clone(model)
    m.metadata = list(model.metadata)
    m.tensors = []
    for t in model.tensors:
        t2 = _clone(t)
        t2.shape = list(t.shape)
        t2.chunks = [Chunk(c.extent, list(c.streams)) for c in t.chunks]
        m.tensors.append(t2)
    return m


def _stream_slots(model: Model):
    """(holder, key) of every stream: ``holder[key]`` for a chunk's list, or a tensor's codebook."""
    for t in model.tensors:
        if t.codebook is not None:
            yield t, None
        for c in t.chunks:
            yield from ((c.streams, i) for i in range(len(c.streams)))


def take_stream(rng: random.Random, model: Model, only=None) -> Stream | None:
    """A random stream of ``model`` (one that ``only(stream)`` accepts), copied into place so it
    can be changed."""
    slots = [(h, k) for h, k in _stream_slots(model)
             if only is None or only(h.codebook if k is None else h[k])]
    if not slots:
        return None
    holder, key = rng.choice(slots)
    if key is None:
        holder.codebook = s = _clone(holder.codebook)
    else:
        holder[key] = s = _clone(holder[key])
    return s


# --------------------------------------------------------------------------------------------
# Interesting values

_SPECIAL = (0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 15, 16, 17, 31, 32, 33, 63, 64, 127, 128, 255, 256,
            257, 4095, 4096, 4097, 65535, 65536, 65537, 2**24, 2**28 - 1, 2**28, 2**28 + 1,
            2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**32 + 1, 2**40 - 1, 2**40, 2**40 + 1, 2**48,
            2**62, 2**63 - 1, 2**63, 2**64 - 1)


def interesting(rng: random.Random, old: int, bits: int) -> int:
    """A value for a field of ``bits`` bits that held ``old``: a boundary, a neighbour, a power
    of two, or random."""
    top = (1 << bits) - 1
    r = rng.random()
    if r < 0.4:
        v = rng.choice(_SPECIAL)
    elif r < 0.7:
        v = old + rng.choice((-2, -1, 1, 2, 8, -8, old, -(old // 2)))
    elif r < 0.8:
        v = top - rng.randrange(3)
    elif r < 0.9:
        v = 1 << rng.randrange(bits)
    else:
        v = rng.getrandbits(bits)
    return v & top


# --------------------------------------------------------------------------------------------
# Payload mutations, one per codec structure


def mutate_bytes(rng: random.Random, payload: bytes) -> bytes:
    """Flip, set, insert, delete or truncate bytes of ``payload``."""
    p = bytearray(payload)
    op = rng.randrange(6)
    if op == 0 and p:
        for _ in range(rng.randint(1, 4)):
            p[rng.randrange(len(p))] ^= 1 << rng.randrange(8)
    elif op == 1 and p:
        p[rng.randrange(len(p))] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
    elif op == 2:
        at = rng.randrange(len(p) + 1)
        p[at:at] = bytes(rng.randrange(256) for _ in range(rng.choice((1, 1, 2, 4, 8))))
    elif op == 3 and p:
        at = rng.randrange(len(p))
        del p[at:at + rng.choice((1, 1, 2, 4, 8))]
    elif op == 4:
        del p[rng.randrange(len(p) + 1):]
    else:
        p += bytes(rng.randrange(256) for _ in range(rng.choice((1, 3, 8))))
    return bytes(p)


def _set_field(p: bytearray, rng: random.Random, offset: int, size: int) -> None:
    if offset + size <= len(p):
        old = int.from_bytes(p[offset:offset + size], "little")
        p[offset:offset + size] = interesting(rng, old, 8 * size).to_bytes(size, "little")


def pathological_lengths(rng: random.Random) -> tuple[int, list[int]]:
    """``(max_length, lengths)`` of a Huffman table that breaks (or just meets) a rule of §8.3."""
    from dcformat.codecs import huffman

    n = rng.choice((1, 2, 3, 5, 17, 100, 256, 300))
    freq = np.array([rng.choice((0, 1, 1, 2, 5, 100)) for _ in range(n)], np.int64)
    if not freq.any():
        freq[rng.randrange(n)] = 1
    lengths = [int(x) for x in huffman.code_lengths(freq, rng.randint(max(1, (n - 1).bit_length()), 16))]
    kind = rng.randrange(8)
    present = [i for i, x in enumerate(lengths) if x]
    if kind == 0:  # over-subscribed: shorten one code
        i = rng.choice(present)
        lengths[i] = max(1, lengths[i] - 1)
    elif kind == 1:  # incomplete: lengthen one code
        i = rng.choice(present)
        lengths[i] = min(31, lengths[i] + 1)
    elif kind == 2:  # over-long codes (the 5-bit field holds up to 31)
        i = rng.choice(present)
        lengths[i] = rng.randint(17, 31)
    elif kind == 3:  # no symbol at all
        lengths = [0] * n
    elif kind == 4:  # a single symbol with a length other than 1
        lengths = [0] * n
        lengths[rng.randrange(n)] = rng.randint(2, 31)
    elif kind == 5:  # a symbol added to a complete code
        zeros = [i for i, x in enumerate(lengths) if not x]
        if zeros:
            lengths[rng.choice(zeros)] = rng.randint(1, 16)
    # kinds 6, 7: valid table
    max_length = max(lengths) if rng.random() < 0.8 else rng.randint(0, 31)
    return max_length, lengths


def _pack_lengths(lengths) -> bytes:
    bits = []
    for x in lengths:
        bits += [(x >> i) & 1 for i in range(5)]
    bits += [0] * (-len(bits) % 8)
    return bytes(sum(bits[i + k] << k for k in range(8)) for i in range(0, len(bits), 8))


def mutate_huffman(rng: random.Random, payload: bytes) -> bytes:
    """Change a field of a HUFFMAN payload (header, a code length, a lane length) or replace its
    table by a pathological one; lane bytes kept."""
    p = bytearray(payload)
    if len(p) < 8:
        return mutate_bytes(rng, payload)
    max_length, lane_count, _, alphabet = struct.unpack_from("<BBHI", p)
    lengths_end = 8 + (5 * alphabet + 7) // 8
    op = rng.randrange(7)
    if op == 0:
        _set_field(p, rng, rng.choice((0, 1, 2)), 1)
    elif op == 1:
        _set_field(p, rng, 4, 4)
    elif op == 2 and alphabet and lengths_end <= len(p):  # one 5-bit code length
        s = rng.randrange(alphabet)
        v = rng.randrange(32)
        for i in range(5):
            bit = 5 * s + i
            p[8 + bit // 8] = (p[8 + bit // 8] & ~(1 << (bit % 8))) | (((v >> i) & 1) << (bit % 8))
    elif op == 3 and lengths_end + 4 * lane_count <= len(p):  # a lane length
        j = rng.randrange(max(lane_count, 1))
        _set_field(p, rng, lengths_end + 4 * j, 4)
    elif op == 4 and lengths_end + 4 * lane_count <= len(p) and lane_count >= 2:
        # move a byte from one lane to the next: the lane lengths still add up
        j = rng.randrange(lane_count - 1)
        a, b = struct.unpack_from("<II", p, lengths_end + 4 * j)
        d = rng.choice((-1, 1))
        if 0 <= a + d <= 0xFFFFFFFF and 0 <= b - d <= 0xFFFFFFFF:
            struct.pack_into("<II", p, lengths_end + 4 * j, a + d, b - d)
    elif op == 5 and lengths_end <= len(p):  # a pathological table, lanes kept
        new_max, lengths = pathological_lengths(rng)
        rest = p[lengths_end:]
        p = bytearray(struct.pack("<BBHI", new_max, lane_count, 0, len(lengths)) + _pack_lengths(lengths) + rest)
    else:
        return mutate_bytes(rng, payload)
    return bytes(p)


def mutate_byteplanes(rng: random.Random, payload: bytes) -> bytes:
    """Change a BYTEPLANES header field or plane descriptor, or mutate one plane (its descriptor
    length kept in step)."""
    p = bytearray(payload)
    if len(p) < 4:
        return mutate_bytes(rng, payload)
    plane_count = p[1]
    op = rng.randrange(5)
    descriptors = 4 + 8 * plane_count
    if op == 0:
        _set_field(p, rng, rng.choice((0, 1, 2)), 1)
    elif op == 1 and descriptors <= len(p) and plane_count:
        j = rng.randrange(plane_count)
        _set_field(p, rng, 4 + 8 * j + rng.choice((0, 1, 4)), rng.choice((1, 4)))
    elif op in (2, 3) and descriptors <= len(p) and plane_count:
        planes = []
        start = descriptors
        for j in range(plane_count):
            codec, _, length = struct.unpack_from("<B3sI", p, 4 + 8 * j)
            planes.append([codec, bytes(p[start:start + length])])
            start += length
        j = rng.randrange(plane_count)
        planes[j][1] = mutate_payload(rng, planes[j][0], planes[j][1])
        head = bytes(p[:4]) + b"".join(struct.pack("<B3sI", c, b"\0\0\0", len(b)) for c, b in planes)
        return head + b"".join(b for _, b in planes) + bytes(p[start:])
    else:
        return mutate_bytes(rng, payload)
    return bytes(p)


def _zstd_frame(content: bytes, *, content_size=True, checksum=False, level=1) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=level, write_content_size=content_size,
                                    write_checksum=checksum).compress(content)


def _fcs_field(p: bytes):
    """(offset, size) of a zstd frame header's Frame_Content_Size field, or None."""
    if len(p) < 5:
        return None
    fhd = p[4]
    fcs_flag, single, dict_flag = fhd >> 6, (fhd >> 5) & 1, fhd & 3
    size = (1 if single else 0, 2, 4, 8)[fcs_flag]
    offset = 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
    return (offset, size) if size and offset + size <= len(p) else None


def mutate_zstd(rng: random.Random, payload: bytes, expected: int) -> bytes:
    """Change a zstd frame: its header byte, its content size (a frame that expands past what it
    states, or states more than it holds), a dictionary id, what follows it, or a fresh frame of
    more or less content than ``expected`` bytes (a frame that expands past the declared size)."""
    p = bytearray(payload)
    op = rng.randrange(8)
    fcs = _fcs_field(p)
    if op == 0 and len(p) > 4:
        p[4] = rng.randrange(256)
    elif op == 1 and fcs:
        offset, size = fcs
        _set_field(p, rng, offset, size)
    elif op == 2:
        extra = rng.choice((0, 1, 7, 4096, 1 << 20))
        base = min(expected, 1 << 22)
        content = bytes(max(base + rng.choice((-extra, extra)), 0))
        frame = bytearray(_zstd_frame(content, checksum=rng.random() < 0.3))
        fcs = _fcs_field(frame)
        if fcs and rng.random() < 0.7:  # lie: state the expected size, whatever the content
            offset, size = fcs
            value = expected - 256 if size == 2 else expected
            if 0 <= value < 1 << (8 * size):
                frame[offset:offset + size] = value.to_bytes(size, "little")
        p = frame
    elif op == 3:  # no content size
        n = min(expected, 1 << 16)
        p = bytearray(_zstd_frame(bytes(rng.randrange(256) for _ in range(min(n, 64))) + bytes(max(n - 64, 0)),
                                  content_size=False))
    elif op == 4:  # skippable frame in front, or a second frame after
        skippable = struct.pack("<II", 0x184D2A50, 3) + b"abc"
        p = bytearray(skippable + p) if rng.random() < 0.5 else p + _zstd_frame(b"x")
    elif op == 5 and len(p) > 5:  # dictionary id flag with an id
        p[4] = (p[4] & ~3) | rng.randrange(1, 4)
    elif op == 6 and len(p) > 4:  # checksum flag without (or with a wrong) checksum
        p[4] ^= 4
    else:
        return mutate_bytes(rng, payload)
    return bytes(p)


def mutate_payload(rng: random.Random, codec: int, payload: bytes, expected: int = 0) -> bytes:
    if codec == Codec.HUFFMAN and rng.random() < 0.7:
        return mutate_huffman(rng, payload)
    if codec == Codec.BYTEPLANES and rng.random() < 0.7:
        return mutate_byteplanes(rng, payload)
    if codec == Codec.ZSTD and rng.random() < 0.7:
        return mutate_zstd(rng, payload, expected)
    if codec == Codec.BITPACK and payload and rng.random() < 0.3:
        p = bytearray(payload)
        p[-1] |= 0x80 >> rng.randrange(8)  # padding bits of the last byte
        return bytes(p)
    return mutate_bytes(rng, payload)


# --------------------------------------------------------------------------------------------
# Element mutations: break a bound, then re-encode with a codec the role allows


def mutate_elements(rng: random.Random, s: Stream) -> bool:
    """Re-encode ``s`` from its seed elements after breaking a bound (a codebook index >= k, a
    row count over the columns, counts that do not add up, a gap that runs past the row, a BOOL
    that is not 0 or 1) or changing their number. Returns False if ``s`` has no elements."""
    if s.elements is None or not len(s.elements):
        return False
    top = (1 << (8 * s.size)) - 1
    e = (s.elements.astype(np.uint64) & np.uint64(top)).astype(ELEMENT_DTYPE[s.size])
    op = rng.randrange(6)
    bound = s.bound if s.bound is not None else top + 1
    if op <= 2:
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(e))
            v = rng.choice((bound - 1, bound, bound + 1, bound * 2, top, 0, int(e[i]) + 1,
                            max(int(e[i]) - 1, 0), rng.randrange(bound + 1)))
            e[i] = min(max(v, 0), top)
    elif op == 3:  # one more or one fewer element than the descriptor says (count kept)
        e = np.concatenate([e, e[-1:]]) if rng.random() < 0.5 else e[:-1]
    elif op == 4:  # shuffle (row counts and gaps move to other rows)
        e = e[np.random.default_rng(rng.getrandbits(32)).permutation(len(e))]
    else:
        e = e[::-1].copy()
    keep_count = op == 3 and rng.random() < 0.5
    codec = rng.choice([c for c in Codec if c != Codec.BYTEPLANES or s.size >= 2])
    options = {Codec.ZSTD: {"level": 1},
               Codec.BYTEPLANES: {"transform": rng.randrange(2),
                                  "plane_codecs": (rng.choice((Codec.PLAIN, Codec.HUFFMAN, Codec.ZSTD)),),
                                  "plane_options": {Codec.ZSTD: {"level": 1}}}}.get(codec, {})
    try:
        encoded = get_codec(codec).encode(e, s.size, **options) if len(e) else None
    except EncodingError:
        encoded = None
    if encoded is None:
        encoded = get_codec(Codec.PLAIN).encode(e, s.size)
    s.codec, s.param, s.payload, s.length, s.crc = int(encoded.codec), encoded.param, encoded.payload, None, None
    if not keep_count:
        s.count = len(e)
    return True


# --------------------------------------------------------------------------------------------
# Model mutations


def mutate_model(rng: random.Random, model: Model, donors: list[Model], variant=None) -> None:
    """Apply one structural mutation to ``model`` (a copy). ``variant(rng, stream)`` replaces a
    stream by an element-mutated one (default :func:`mutate_elements`)."""
    variant = variant or mutate_elements
    op = rng.choices(
        ("header", "counts", "metadata", "tensor", "chunk", "descriptor", "payload", "elements",
         "splice", "transplant"),
        weights=(3, 3, 2, 12, 6, 12, 22, 25, 5, 3))[0]
    tensors = model.tensors
    t = rng.choice(tensors) if tensors else None
    if op == "header":
        which = rng.randrange(6)
        if which == 0:
            model.major = rng.choice((0, 2, 3, 255, 0xFFFF))
        elif which == 1:
            model.minor = rng.choice((1, 2, 99, 0xFFFF))
        elif which == 2:
            model.alignment_log2 = rng.choice((1, 3, 12, 13, 63, 255))
        elif which == 3:
            r = bytearray(model.reserved)
            r[rng.randrange(7)] = rng.randrange(1, 256)
            model.reserved = bytes(r)
        elif which == 4:
            model.padding_byte = rng.randrange(1, 256)
            model.alignment_log2 = rng.randint(1, 6)
        else:
            model.data_tail = bytes(rng.randint(1, 8))
    elif op == "counts":
        which = rng.randrange(5)
        if which == 0:
            model.tensor_count = interesting(rng, len(tensors), 32)
        elif which == 1:
            model.metadata_count = interesting(rng, len(model.metadata), 32)
        elif which == 2:
            model.index_length = interesting(rng, 8, 64)
        elif which == 3:
            model.index_crc = rng.getrandbits(32)
        else:
            model.index_tail = bytes(rng.randint(1, 9))
    elif op == "metadata":
        which = rng.randrange(5)
        entries = model.metadata
        if which == 0 or not entries:
            entries.append((b"k" * rng.choice((1, 4096, 4097)), b"v", None, None))
        elif which == 1:
            entries.append(entries[rng.randrange(len(entries))])  # duplicate key
        elif which == 2:
            i = rng.randrange(len(entries))
            k, v, _, _ = entries[i]
            entries[i] = (k, v, interesting(rng, len(k), 16), None)
        elif which == 3:
            i = rng.randrange(len(entries))
            k, v, _, _ = entries[i]
            entries[i] = (k, v, None, interesting(rng, len(v), 32))
        else:
            i = rng.randrange(len(entries))
            k, v, _, _ = entries[i]
            entries[i] = (k + b"\xff\xfe", v, None, None)  # invalid UTF-8
    elif op == "tensor" and t is not None:
        which = rng.randrange(12)
        if which == 0:
            t.dtype = rng.randrange(16)
        elif which == 1:
            t.rank = rng.choice((0, 1, 2, 3, 8, 9, 255, len(t.shape) + 1, max(len(t.shape) - 1, 0)))
        elif which == 2 and t.shape:
            i = rng.randrange(len(t.shape))
            t.shape[i] = interesting(rng, t.shape[i], 64)
        elif which == 3:
            if rng.random() < 0.5 and t.shape:
                t.shape.pop(rng.randrange(len(t.shape)))
            else:
                t.shape.insert(rng.randrange(len(t.shape) + 1), rng.choice((0, 1, 2, 2**40, 2**64 - 1)))
        elif which == 4:
            t.layout = rng.choice((0, 1, 2, 255))
        elif which == 5:
            t.value_coding = rng.choice((0, 1, 2, 255))
        elif which == 6:
            t.index_bits = rng.choice((0, 1, 2, 8, 9, 16, 17, 255))
        elif which == 7:
            t.codebook_dtype = rng.choice((0, 1, 2, 3, 255))
        elif which == 8:
            t.codebook_size = interesting(rng, t.codebook_size, 32)
        elif which == 9:
            t.chunk_count = interesting(rng, len(t.chunks), 32)
        elif which == 10:
            t.name = rng.choice((b"", b"\xff", t.name + b"\xc3", tensors[0].name, b"n" * 4097))
        else:
            t.name_length = interesting(rng, len(t.name), 16)
    elif op == "chunk" and t is not None and t.chunks:
        which = rng.randrange(5)
        c = rng.choice(t.chunks)
        if which == 0:
            c.extent = interesting(rng, c.extent, 64)
        elif which == 1 and len(t.chunks) > 1:
            t.chunks.pop(rng.randrange(len(t.chunks)))
        elif which == 2:
            t.chunks.insert(rng.randrange(len(t.chunks) + 1), Chunk(c.extent, list(c.streams)))
        elif which == 3 and len(c.streams) > 1:
            i, j = rng.sample(range(len(c.streams)), 2)
            c.streams[i], c.streams[j] = c.streams[j], c.streams[i]
        elif t.codebook is not None:  # the codebook stream gone, the values claimed RAW
            t.codebook, t.value_coding = None, 0
    elif op == "descriptor":
        s = take_stream(rng, model)
        if s is not None:
            which = rng.randrange(6)
            if which == 0:
                s.codec = rng.randrange(7)
            elif which == 1:
                s.param = rng.choice((0, 1, 7, 8, 9, 16, 17, 32, 33, 64, 255))
            elif which == 2:
                s.reserved = rng.randrange(1, 0x10000)
            elif which == 3:
                s.crc = rng.getrandbits(32)
            elif which == 4:
                s.count = interesting(rng, s.count, 64)
            else:
                s.length = interesting(rng, len(s.payload), 64)
    elif op == "payload":
        s = take_stream(rng, model)
        if s is not None:
            s.payload = mutate_payload(rng, s.codec, s.payload, s.count * s.size)
            if rng.random() < 0.1:
                s.length = len(s.payload) + rng.choice((-1, 1))
    elif op == "elements":
        s = take_stream(rng, model, lambda s: s.elements is not None)
        if s is not None:
            variant(rng, s)
    elif op == "splice":
        donor = rng.choice(donors)
        src = rng.choice(list(_streams(donor)) or [(None, None)])[1]
        dst = take_stream(rng, model)
        if src is not None and dst is not None:
            dst.codec, dst.param, dst.payload, dst.length, dst.crc = src.codec, src.param, src.payload, None, None
            if rng.random() < 0.5:
                dst.count = src.count
    elif op == "transplant":
        donor = rng.choice(donors)
        if donor.tensors:
            new = copy_model(donor).tensors[rng.randrange(len(donor.tensors))]
            if tensors and rng.random() < 0.5:
                tensors[rng.randrange(len(tensors))] = new
            else:
                tensors.append(new)


# --------------------------------------------------------------------------------------------
# Inputs from (seed, index)


class Corpus:
    """The seed models, parsed once; :meth:`file_input` and :meth:`stream_input` turn an integer
    into one mutated input, deterministically.

    ``variants``: element mutations re-encode a stream (slow: Huffman and zstd encoders); with a
    number, each seed stream has that many variants, made on first use and reused, which keeps
    a short campaign fast; ``None`` makes a fresh one every time (the long campaign).
    """

    def __init__(self, paths=None, variants: int | None = None):
        paths = sorted(VECTORS.glob("*.dcf")) if paths is None else paths
        self.models = [parse_model(p.read_bytes()) for p in paths]
        self.streams = [s for m in self.models for _, s in _streams(m) if s.count]
        self.variants = variants
        self._ids = {id(s.elements): i for i, s in enumerate(self.streams) if s.elements is not None}
        self._pool = {}

    def variant(self, rng: random.Random, s: Stream) -> None:
        """Replace ``s`` (a copy of a seed stream) by an element-mutated variant."""
        if self.variants is None or id(s.elements) not in self._ids:
            mutate_elements(rng, s)
            return
        key = (self._ids[id(s.elements)], rng.randrange(self.variants))
        if key not in self._pool:
            v = _clone(s)
            mutate_elements(random.Random(key[0] * 1_000_003 + key[1]), v)
            self._pool[key] = (v.codec, v.param, v.payload, v.count)
        s.codec, s.param, s.payload, s.count = self._pool[key]
        s.length = s.crc = None

    def file_input(self, key: int) -> tuple[bytes, bool, str, bool]:
        """``(file bytes, verify, backend, cross)``: a seed with 1 to 4 structural mutations,
        sometimes followed by raw byte flips or a truncation; read with or without CRC checks, by
        the Numba kernels or their numpy twins, and (``cross``) by the others too."""
        rng = random.Random(key)
        model = copy_model(rng.choice(self.models))
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
            mutate_model(rng, model, self.models, self.variant)
        data = serialize(model)
        r = rng.random()
        if r < 0.08:
            data = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            if rng.random() < 0.5:
                fix_index_crc(data)
            data = bytes(data)
        elif r < 0.1:
            data = data[:rng.randrange(len(data))]
        return data, rng.random() < 0.5, rng.choice(BACKENDS), rng.random() < 0.3

    def stream_input(self, key: int):
        """``(codec, payload, count, element_size, param, bound)``: a seed stream whose payload (and
        sometimes count, element size, param or bound) is mutated, for a codec's ``decode``."""
        rng = random.Random(key)
        s = _clone(rng.choice(self.streams))
        for _ in range(rng.choice((1, 1, 2, 3))):
            r = rng.random()
            if r < 0.55:
                s.payload = mutate_payload(rng, s.codec, s.payload, s.count * s.size)
            elif r < 0.8:
                self.variant(rng, s)
            elif r < 0.88:
                s.count = max(1, interesting(rng, s.count, 64))
            elif r < 0.92:
                s.size = rng.choice((1, 2, 4, 8))
            elif r < 0.96:
                s.param = rng.choice((0, 1, 8, 16, 32, 33))
            else:
                s.bound = rng.choice((None, 1, 2, 256, 257, 65536, 65537))
        return s.codec, s.payload, s.count, s.size, s.param, s.bound


# --------------------------------------------------------------------------------------------
# The oracle


class Finding(AssertionError):
    """The reader broke its promise on an input (not a DCFormatError)."""


BACKENDS = ("jit", "small")
"""The two implementations of the decoding kernels (:mod:`dcformat.kernels`): Numba's, and the
numpy twins that decode small streams while Numba is not loaded."""


@contextlib.contextmanager
def kernel_backend(name: str | None):
    """Decode with the Numba kernels (``"jit"``) or their numpy twins (``"small"``) whatever the
    stream's size; ``None``: as the library chooses."""
    from dcformat import kernels

    if name is None or not hasattr(kernels, "for_count"):
        yield
        return
    original = kernels.for_count
    if name == "small":
        from dcformat.kernels import small

        kernels.for_count = lambda kernel, count: small
    else:
        kernels.for_count = lambda kernel, count: kernels.jit(kernel)
    try:
        yield
    finally:
        kernels.for_count = original


def check_file(data: bytes, verify: bool = True, backend: str | None = None, cross: bool = True,
               max_tensor_bytes: int = FUZZ_MAX_TENSOR_BYTES) -> bool:
    """Open ``data`` and decode every tensor (and every codebook tensor's indices) with the kernels
    of ``backend``. Returns True if the file decoded, False if the reader raised a DCFormatError.
    Raises :class:`Finding` for a result of the wrong shape, for a codebook tensor whose indices
    do not give the decoded tensor, and (with a ``backend``, if ``cross``) for a file that the
    other kernels decode differently. The Numba kernels are asked for one tensor at a time
    (``get_tensor``), their numpy twins for all at once (``get_tensors``). Any other exception propagates: it is a finding too."""
    batch = backend == "small"  # one get_tensors call (one allocation, the thread pool), or get_tensor
    with kernel_backend(backend):
        first = _decode_file(data, verify, max_tensor_bytes, batch)
    if first is None or backend is None or not cross:
        return first is not None
    other = BACKENDS[1 - BACKENDS.index(backend)]
    with kernel_backend(other):  # the other kernels, and the other way of asking
        second = _decode_file(data, verify, max_tensor_bytes, not batch)
    if second is None:
        raise Finding(f"the {backend} kernels decode this file, the {other} kernels refuse it")
    for name, (array, indices) in first.items():
        again, again_indices = second[name]
        if not _same_bits(array, again) or not _same_bits(indices, again_indices):
            raise Finding(f"{name!r}: the {backend} and {other} kernels decode different values")
    return True


def _same_bits(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _decode_file(data, verify, max_tensor_bytes, batch=False):
    """name -> (array, codebook indices or None), or None if the reader raised a DCFormatError.
    ``batch``: decode the tensors with one ``get_tensors`` call, not one ``get_tensor`` each."""
    decoded = {}
    try:
        with dcformat.DCFReader(data, verify=verify, max_tensor_bytes=max_tensor_bytes) as f:
            arrays = f.get_tensors() if batch and hasattr(f, "get_tensors") else None
            for info in f.tensors_info():
                array = f.get_tensor(info.name) if arrays is None else arrays[info.name]
                if array.shape != tuple(info.shape) or array.dtype != numpy_dtype(info.dtype):
                    raise Finding(f"{info.name!r} decoded to {array.shape} {array.dtype}, "
                                  f"declared {info.shape} {info.dtype!r}")
                indices = None
                if info.value_coding == ValueCoding.CODEBOOK:
                    ct = f.get_codebook_tensor(info.name)
                    indices = ct.indices
                    if indices.shape != tuple(info.shape) or ct.codebook.size != info.codebook_size \
                            or (indices.size and int(indices.max()) >= info.codebook_size):
                        raise Finding(f"{info.name!r}: codebook tensor of a wrong shape or index")
                    if not _same_bits(ct.decode(), array):
                        raise Finding(f"{info.name!r}: get_codebook_tensor's codebook and indices do "
                                      f"not give get_tensor's values")
                decoded[info.name] = (array, indices)
        return decoded
    except DCFormatError:
        return None


def check_stream(codec, payload, count, size, param, bound, *, reference: bool = True) -> bool:
    """Decode one stream with its codec. Returns True if it decoded, False for a DCFormatError;
    raises :class:`Finding` for a wrong-size result, or a result (or refusal) that the slow
    reference decoders of ``tests/naive*.py`` disagree with."""
    module = get_codec(codec)
    results = []
    for backend in BACKENDS:  # the two kernel implementations must agree, refusals included
        with kernel_backend(backend):
            try:
                results.append(module.decode(payload, count, size, param, bound))
            except DCFormatError as error:
                results.append(type(error))
    out, other = results
    if not (out is other or (isinstance(out, np.ndarray) and isinstance(other, np.ndarray)
                             and out.dtype == other.dtype and np.array_equal(out, other))):
        raise Finding(f"codec {codec}: the Numba kernels give {_outcome(out)}, their numpy twins "
                      f"{_outcome(other)}")
    out = out if isinstance(out, np.ndarray) else None
    if out is not None and (out.shape != (count,) or out.dtype != ELEMENT_DTYPE[size].newbyteorder("=")):
        raise Finding(f"codec {codec} decoded {out.shape} {out.dtype} for {count} x {size} bytes")
    if out is not None and codec == Codec.HUFFMAN and bound is not None and len(out) and int(out.max()) >= bound:
        raise Finding(f"HUFFMAN decoded a symbol {int(out.max())} >= its bound {bound}")
    if reference and codec == Codec.HUFFMAN and param == 0 and len(payload) <= 2048 and count <= 4096:
        try:
            want = naive_huffman.decode(bytes(payload), count, size, bound)
        except naive_huffman.NaiveError:
            want = None
        if (want is None) != (out is None) or (want is not None and want != out.tolist()):
            raise Finding(f"HUFFMAN disagrees with the reference: kernel "
                          f"{'refused' if out is None else 'decoded'}, reference "
                          f"{'refused' if want is None else 'decoded'}")
    if reference and codec == Codec.BITPACK and out is not None and count <= 256:
        if naive.unpack_bits(payload, count, param) != out.tolist():
            raise Finding("BITPACK disagrees with the reference")
    return out is not None


def _outcome(result) -> str:
    if isinstance(result, np.ndarray):
        return f"{result.shape} {result.dtype} {result[:8].tolist()}"
    return result.__name__
