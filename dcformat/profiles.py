"""Writer profiles: what a file promises its decoder, beyond the format itself.

A profile restricts what the writer may choose, so that a given class of decoders can read the file
cheaply. It applies to every tensor of a file (:class:`dcformat.DCFWriter` ``profile=``,
``dcformat.save_file(..., profile=)``, :func:`dcformat.pack.packer.pack` ``profile=``,
``dcpack --profile``), combines with any recipe or preset, and its name is stored in the file's
metadata under ``dcformat.profile``. A file that keeps the promises is an ordinary dcf file: any
decoder reads it; the profile only tells which promises hold.

``mobile`` (:data:`MOBILE`), for phones and embedded boards:

- **No ZSTD**, not even inside BYTEPLANES planes: a build of the C decoder without libzstd decodes
  every stream. Streams use PLAIN, BITPACK, HUFFMAN and BYTEPLANES (with PLAIN or HUFFMAN planes).
- **Dense raw tensors usable in place.** The file's ``alignment_log2`` is 6: every stream starts
  at a multiple of 64 bytes (a cache line; the widest SIMD load). A tensor stored DENSE with RAW
  values has its VALUES PLAIN in one chunk (up to ``MAX_CHUNK_ELEMENTS`` elements; larger tensors
  use chunks of exactly that many, whose byte lengths are multiples of 64, so the streams follow
  each other without padding): the bytes at the stream's offset *are* the tensor, little-endian,
  64-byte aligned, and an app can hand a memory map of them to its runtime without decoding.
- **Bounded chunks.** Every other chunk covers at most :data:`MOBILE_CHUNK_ELEMENTS` (2**18)
  elements (DENSE: ``extent``; CSR: ``extent × cols``; a matrix whose rows are longer than that is
  stored DENSE), so what a chunk-by-chunk decoder needs beside the caller's tensor does not grow
  with the model. With libdcf's scratch (``libdcf/dcf.h``: a CSR chunk takes ``4 × rows + (gap
  size + value size) × entries`` bytes, entries and rows at most its elements; a DENSE chunk none,
  1 byte per element for BYTEPLANES; plus the codebook, 8 bytes per entry) that is at most
  3.5 MiB per decoding thread for any tensor (2-byte gaps and 8-byte values), at most 576 KiB for
  float32 weights with codebooks of at most 256 entries, gaps of at most 8 bits and rows of at
  least 16 columns (1-byte gaps and symbols: ``2**18 × (2 + 4/16)`` bytes), plus the codebook
  (at most 512 KiB; 2 KiB for 256 entries). An in-place tensor needs none in its own dtype (its
  bytes are copied, or used where they lie); converted to float32, a raw F16, BF16 or F64 one needs
  its own bytes once more in libdcf, so decode those in their own dtype. Measured with libdcf's
  ``dcf_scratch_size`` on MiniLM, the largest tensor's scratch is 0.92 MB (``safe``), 0.79 MB
  (``aggressive``) and 0.33 MB (``lossless``), against 1.7, 1.2 and 1.4 MB without the profile;
  the bound matters more for larger models, whose default chunks reach 2**20 elements.

  Why 2**18: each chunk carries its own stream descriptors, Huffman tables, lane lengths and up to
  63 bytes of padding per stream. On MiniLM (README, presets) 2**18 costs 0.12 % of the file with
  the ``safe`` preset and 1.9 % with ``aggressive`` (sparse rows: three streams a chunk); 2**17
  costs 0.20 % and 3.0 %, 2**16 0.39 % and 5.2 %, for a scratch bound 2 and 4 times smaller. A
  phone's decoding thread affords a few MiB; the download is what the format is for.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, replace

import numpy as np

from .constants import MAX_CHUNK_ELEMENTS, Codec, Layout, ValueCoding
from .encoding import EncodedTensor, Encoding
from .errors import EncodingError

METADATA_KEY = "dcformat.profile"
"""The metadata key holding the profile's name."""

MOBILE_CHUNK_ELEMENTS = 2**18
"""The most elements one chunk of a ``mobile`` file covers, in-place dense raw tensors aside."""


@dataclass(frozen=True)
class Profile:
    """What a profile lets the writer choose. See the module's docstring for ``mobile``.

    name: stored under ``dcformat.profile``.
    codecs: the stream codecs allowed (BYTEPLANES planes included).
    alignment_log2: the file's alignment (at least).
    max_chunk_elements: the most elements of a chunk, in-place dense raw tensors aside.
    in_place: dense raw tensors are stored PLAIN in one chunk (:attr:`Encoding.in_place`).
    """

    name: str
    codecs: tuple[str, ...]
    alignment_log2: int
    max_chunk_elements: int
    in_place: bool

    def encoding(self, tensor, encoding: Encoding | dict | None = None) -> Encoding:
        """The caller's ``encoding`` for ``tensor`` restricted to this profile.

        Raises :class:`EncodingError` when the caller asks for what the profile forbids (a codec
        outside it, CSR with rows longer than a chunk, larger chunks)."""
        encoding = Encoding.coerce(encoding)
        if encoding.codecs is not None:
            outside = [c for c in encoding.codecs if c not in self.codecs]
            if outside:
                raise EncodingError(f"profile {self.name!r} allows the codecs {list(self.codecs)}, not {outside}")
            codecs = encoding.codecs
        else:
            codecs = self.codecs
        chunk = encoding.chunk_elements
        if chunk is not None and chunk > self.max_chunk_elements:
            raise EncodingError(f"profile {self.name!r} allows chunks of at most {self.max_chunk_elements} "
                                f"elements, not {chunk}")
        shape = tuple(int(d) for d in getattr(tensor, "shape", np.shape(tensor)))
        layout = encoding.layout
        if len(shape) >= 2 and _cols(shape) > self.max_chunk_elements:
            if layout == "csr":
                raise EncodingError(f"profile {self.name!r}: rows of {_cols(shape)} elements are longer than a "
                                    f"chunk ({self.max_chunk_elements}); store the tensor dense")
            layout = "dense"
        return replace(encoding, codecs=codecs, chunk_elements=chunk or self.max_chunk_elements, layout=layout,
                       in_place=self.in_place or encoding.in_place)

    def check(self, encoded: EncodedTensor) -> None:
        """Raise :class:`EncodingError` if ``encoded`` breaks a promise of this profile."""
        allowed = {Codec[c.upper()] for c in self.codecs}
        streams = ([encoded.codebook[0]] if encoded.codebook else []) + [s for _, ss in encoded.chunks for s, _ in ss]
        for stream in streams:
            used = {stream.codec} | set(plane_codecs(stream.payload) if stream.codec == Codec.BYTEPLANES else ())
            if not used <= allowed:
                raise EncodingError(f"profile {self.name!r}: a stream uses {sorted(c.name for c in used - allowed)}")
        cols = _cols(encoded.shape) if encoded.layout == Layout.CSR else 1
        in_place = self.in_place and encoded.layout == Layout.DENSE and encoded.value_coding == ValueCoding.RAW
        for i, (extent, chunk_streams) in enumerate(encoded.chunks):
            if in_place:
                last = i == len(encoded.chunks) - 1
                if chunk_streams[0][0].codec != Codec.PLAIN or (not last and extent != MAX_CHUNK_ELEMENTS):
                    raise EncodingError(f"profile {self.name!r}: a dense raw tensor must be PLAIN in chunks of "
                                        f"{MAX_CHUNK_ELEMENTS} elements")
            elif extent * cols > self.max_chunk_elements:
                raise EncodingError(f"profile {self.name!r}: a chunk of {extent * cols} elements is over "
                                    f"{self.max_chunk_elements}")


def _cols(shape) -> int:
    return int(np.prod(shape[1:], dtype=np.int64)) if len(shape) >= 2 else 1


_PLANES = struct.Struct("<BBH")


def plane_codecs(payload) -> list[Codec]:
    """The plane codecs named by a BYTEPLANES payload (spec §8.5)."""
    _, count, _ = _PLANES.unpack_from(payload, 0)
    return [Codec(payload[_PLANES.size + 8 * j]) for j in range(count)]


MOBILE = Profile("mobile", codecs=("plain", "bitpack", "huffman", "byteplanes"), alignment_log2=6,
                 max_chunk_elements=MOBILE_CHUNK_ELEMENTS, in_place=True)

PROFILES = {p.name: p for p in (MOBILE,)}


def get_profile(profile) -> Profile | None:
    """A :class:`Profile` from its name (``"mobile"``), a Profile, or None (no profile)."""
    if profile is None or isinstance(profile, Profile):
        return profile
    try:
        return PROFILES[profile]
    except (KeyError, TypeError):
        raise EncodingError(f"unknown profile {profile!r}; known: {sorted(PROFILES)}") from None
