"""dcformat: Deep Compression for neural-network weights, and the .dcf file format.

The API has the shape of safetensors'::

    import dcformat
    dcformat.save_file({"fc1.weight": w}, "model.dcf", metadata={"source": "lenet"})
    tensors = dcformat.load_file("model.dcf")
    with dcformat.open("model.dcf") as f:          # lazy, memory-mapped
        w = f.get_tensor("fc1.weight")

Without options everything is lossless. Weight-shared tensors are handed over as
:class:`CodebookTensor`; per-tensor choices as :class:`Encoding` (or a dict) in ``encodings``.
This package imports neither torch nor Numba: the codecs load Numba when a stream needs it, and
small files decode without it (:mod:`dcformat.kernels`). Decoding uses every CPU
(``threads=``, or ``DCFORMAT_THREADS``; :mod:`dcformat.parallel`).
"""
from __future__ import annotations

import io

from .constants import VERSION_MAJOR, VERSION_MINOR
from .encoding import Encoding
from .errors import (
    BadMagicError,
    ChecksumError,
    CorruptFileError,
    CountMismatchError,
    DCFormatError,
    EncodingError,
    HuffmanTableError,
    LimitExceededError,
    OffsetError,
    TruncatedFileError,
    UnsupportedVersionError,
)
from .reader import DCFReader
from .structures import TensorInfo
from .tensors import ZERO_INDEX, CodebookTensor
from .writer import DCFWriter

__version__ = "0.1.0"
FORMAT_VERSION = (VERSION_MAJOR, VERSION_MINOR)


def _write_all(writer: DCFWriter, tensors, encodings) -> None:
    if not isinstance(tensors, dict):
        raise EncodingError("tensors must be a dict of name to array")
    encodings = encodings or {}
    unknown = set(encodings) - set(tensors)
    if unknown:
        raise EncodingError(f"encodings name tensors that are not given: {sorted(unknown)[:5]}")
    with writer:
        for name, tensor in tensors.items():
            writer.add(name, tensor, encodings.get(name))


def save_file(tensors, path, metadata=None, encodings=None, *, alignment_log2: int | None = None,
              profile=None) -> None:
    """Write ``tensors`` (name -> numpy array or CodebookTensor) to ``path``, atomically.

    ``profile="mobile"`` keeps the file within the mobile profile (:mod:`dcformat.profiles`)."""
    _write_all(DCFWriter(path, metadata=metadata, alignment_log2=alignment_log2, profile=profile), tensors,
               encodings)


def save(tensors, metadata=None, encodings=None, *, alignment_log2: int | None = None, profile=None) -> bytes:
    """The bytes of a dcf file holding ``tensors`` (options as :func:`save_file`)."""
    buffer = io.BytesIO()
    _write_all(DCFWriter(buffer, metadata=metadata, alignment_log2=alignment_log2, profile=profile), tensors,
               encodings)
    return buffer.getvalue()


def open(path, *, verify: bool = True, **limits) -> DCFReader:  # noqa: A001 - the safetensors name
    """Open a dcf file lazily (memory-mapped); use as a context manager."""
    return DCFReader(path, verify=verify, **limits)


def load_file(path, **options) -> dict:
    """Decode every tensor of the file at ``path``; returns name -> numpy array.

    ``options`` go to :class:`DCFReader`: ``max_tensor_bytes``, ``max_total_bytes`` (16 GiB each by
    default), ``verify``, and ``threads`` (the
    chunks of all tensors decode in parallel; default: every CPU, or ``DCFORMAT_THREADS``). The
    arrays are views of one allocation, freed with the last of them (``DCFReader.get_tensors``)."""
    with DCFReader(path, **options) as reader:
        return reader.get_tensors()


def load(data: bytes, **options) -> dict:
    """Decode every tensor of a dcf file held in ``data`` (options as :func:`load_file`)."""
    with DCFReader(bytes(data), **options) as reader:
        return reader.get_tensors()


__all__ = [
    "BadMagicError", "ChecksumError", "CodebookTensor", "CorruptFileError", "CountMismatchError",
    "DCFReader", "DCFWriter", "DCFormatError", "Encoding", "EncodingError", "FORMAT_VERSION",
    "HuffmanTableError", "LimitExceededError", "OffsetError", "TensorInfo", "TruncatedFileError",
    "UnsupportedVersionError", "ZERO_INDEX", "load", "load_file", "open", "save", "save_file",
]
