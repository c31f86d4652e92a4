"""Stream codecs (spec §8): one small module per codec, one uniform interface.

Each codec module defines:

``CODEC``
    its :class:`dcformat.constants.Codec` id.
``encode(elements, element_size, **options) -> EncodedStream``
    ``elements`` is a 1-D array of unsigned integers (any unsigned dtype, values fitting
    ``element_size`` bytes); returns the payload bytes and the descriptor's ``param``.
``decode(payload, count, element_size, param, bound) -> numpy.ndarray``
    ``payload`` is a bytes-like object (often a memoryview of a memory-mapped file) holding exactly
    the stream's stored bytes. Returns ``count`` elements as a 1-D array of the unsigned dtype of
    ``element_size`` bytes. ``bound`` is the role's exclusive upper bound on element values, or
    ``None``. A codec MUST check the payload length against ``count`` (spec §8) before it allocates,
    and raises a :class:`dcformat.errors.CorruptFileError` subclass for anything the spec calls
    corrupted. Only HUFFMAN uses ``bound`` itself (its alphabet size); the container checks the
    decoded values of the other codecs against ``bound``.

The registry below maps ids to modules; :func:`encode_smallest` tries candidates and keeps the
smallest payload, which is how a writer picks a codec per stream.
"""
from __future__ import annotations

import importlib
from typing import NamedTuple

import numpy as np

from ..constants import Codec
from ..errors import CorruptFileError, EncodingError

_MODULES = {
    Codec.PLAIN: "plain",
    Codec.BITPACK: "bitpack",
    Codec.HUFFMAN: "huffman",
    Codec.ZSTD: "zstd",
    Codec.BYTEPLANES: "byteplanes",
}


class EncodedStream(NamedTuple):
    codec: Codec
    param: int
    payload: bytes


def get_codec(codec_id: int):
    """The module implementing codec ``codec_id``; a file naming an unknown codec is corrupted."""
    try:
        name = _MODULES[Codec(codec_id)]
    except ValueError:
        raise CorruptFileError(f"unknown stream codec {codec_id}") from None
    return importlib.import_module(f"{__name__}.{name}")


def encode_smallest(elements: np.ndarray, element_size: int, candidates, options=None) -> EncodedStream:
    """Encode ``elements`` with every codec in ``candidates`` and return the smallest result.

    Ties go to the earlier candidate, so the order of ``candidates`` also states a preference for
    the cheaper decoder. ``options`` maps a codec to keyword options for its ``encode``.
    """
    options = options or {}
    if len(elements) == 0:
        return EncodedStream(Codec.PLAIN, 0, b"")
    best = None
    for codec in candidates:
        module = get_codec(codec)
        try:
            result = module.encode(elements, element_size, **options.get(Codec(codec), {}))
        except EncodingError:
            continue  # this codec cannot hold these elements (e.g. Huffman over a huge alphabet)
        if best is None or len(result.payload) < len(best.payload):
            best = result
    if best is None:
        raise EncodingError(f"no codec among {list(candidates)} can encode these elements")
    return best
