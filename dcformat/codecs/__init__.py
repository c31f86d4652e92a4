"""Stream codecs (spec §8): one small module per codec, one uniform interface.

Each codec module defines:

``CODEC``
    its :class:`dcformat.constants.Codec` id.
``encode(elements, element_size, **options) -> EncodedStream``
    ``elements`` is a 1-D array of unsigned integers (any unsigned dtype, values fitting
    ``element_size`` bytes); returns the payload bytes and the descriptor's ``param``.
``decode(payload, count, element_size, param, bound, out=None) -> numpy.ndarray``
    ``payload`` is a bytes-like object (often a memoryview of a memory-mapped file) holding exactly
    the stream's stored bytes. Returns ``count`` elements as a 1-D array of the unsigned dtype of
    ``element_size`` bytes. ``bound`` is the role's exclusive upper bound on element values, or
    ``None``. A codec MUST check the payload length against ``count`` (spec §8) before it allocates,
    and raises a :class:`dcformat.errors.CorruptFileError` subclass for anything the spec calls
    corrupted. Only HUFFMAN uses ``bound`` itself (its alphabet size); the container checks the
    decoded values of the other codecs against ``bound``. ``out``: optional writable C-contiguous
    1-D array of ``count`` elements of that dtype (native byte order), e.g. a slice of the tensor
    being decoded; the elements are written there and ``out`` is returned, which saves a copy.
    After an error ``out`` holds partial data.

A codec may also define ``prepare(elements, element_size, limit=None, **options)``, returning a
:class:`Prepared` (the exact payload size, and ``finish()`` to encode) or None when it can tell
cheaply that it would not come under ``limit`` bytes. The registry below maps ids to modules;
:func:`encode_smallest` sizes the candidates and encodes the smallest, which is how a writer picks
a codec per stream.
"""
from __future__ import annotations

import importlib
from typing import Callable, NamedTuple

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


class Prepared(NamedTuple):
    """A stream whose exact payload ``size`` is known, ready to be encoded by ``finish()``."""

    size: int
    finish: Callable[[], EncodedStream]


def _done(stream: EncodedStream) -> Prepared:
    return Prepared(len(stream.payload), lambda: stream)


def prepare(codec, elements: np.ndarray, element_size: int, options: dict, limit: int | None = None):
    """Size ``elements`` coded with ``codec``, as cheaply as that codec can; see :func:`prepare_smallest`.

    Codecs that define ``prepare(elements, element_size, limit=None, **options)`` know their exact
    size before encoding (PLAIN, BITPACK, HUFFMAN: from the length or a histogram), or can guess
    that they will not come under ``limit`` (ZSTD: a fast probe) and return None; for the others
    this encodes. Raises :class:`EncodingError` if the codec cannot hold the elements.
    """
    module = get_codec(codec)
    if hasattr(module, "prepare"):
        return module.prepare(elements, element_size, limit=limit, **options)
    return _done(module.encode(elements, element_size, **options))


_LAST = (Codec.BYTEPLANES, Codec.ZSTD)  # tried after the cheap codecs, ZSTD last: it is given a limit


def prepare_smallest(elements: np.ndarray, element_size: int, candidates, options=None) -> Prepared:
    """The smallest of ``candidates`` for ``elements``, encoded only when :meth:`Prepared.finish` is called.

    Ties go to the earlier candidate, so the order of ``candidates`` also states a preference for
    the cheaper decoder. ``options`` maps a codec to keyword options for its ``encode``. The sizes
    of PLAIN, BITPACK and HUFFMAN are exact without encoding, so only the winner is encoded. ZSTD
    runs last, told the best size so far: on a stream of more than a few KiB a fast zstd probe
    decides whether the slow, high-level compression can come close, and ZSTD is left out if not
    (:func:`dcformat.codecs.zstd.prepare`), which rarely costs a byte and saves most of the time.
    """
    options = options or {}
    if len(elements) == 0:
        return _done(EncodedStream(Codec.PLAIN, 0, b""))
    candidates = [Codec(c) for c in candidates]
    order = sorted(range(len(candidates)), key=lambda i: (candidates[i] in _LAST, candidates[i] == Codec.ZSTD))
    best, best_key = None, None
    for i in order:
        codec = candidates[i]
        try:
            result = prepare(codec, elements, element_size, options.get(codec, {}),
                             limit=best.size if best is not None else None)
        except EncodingError:
            continue  # this codec cannot hold these elements (e.g. Huffman over a huge alphabet)
        if result is not None and (best is None or (result.size, i) < best_key):
            best, best_key = result, (result.size, i)
    if best is None:
        raise EncodingError(f"no codec among {list(candidates)} can encode these elements")
    return best


def encode_smallest(elements: np.ndarray, element_size: int, candidates, options=None) -> EncodedStream:
    """Encode ``elements`` with the smallest of ``candidates`` (:func:`prepare_smallest`)."""
    return prepare_smallest(elements, element_size, candidates, options).finish()
