"""dcformat: Deep Compression for neural-network weights, and the .dcf file format.

The API has the shape of safetensors'::

    import dcformat
    dcformat.save_file({"fc1.weight": w}, "model.dcf", metadata={"source": "lenet"})
    tensors = dcformat.load_file("model.dcf")
    with dcformat.open("model.dcf") as f:          # lazy, memory-mapped
        w = f.get_tensor("fc1.weight")
        rows = f.get_slice("embed.weight")[0:100]  # decodes only the chunks holding these rows

``save_file`` takes torch tensors too (any dtype the format has); :mod:`dcformat.torch` has the same
calls returning torch tensors (``dcformat.torch.load_file``, as ``safetensors.torch``).
Without options everything is lossless. Weight-shared tensors are handed over as
:class:`CodebookTensor`; per-tensor choices as :class:`Encoding` (or a dict) in ``encodings``.
This package imports neither torch nor Numba: the codecs load Numba when a stream needs it, and
small files decode without it (:mod:`dcformat.kernels`). Decoding uses every CPU
(``threads=``, or ``DCFORMAT_THREADS``; :mod:`dcformat.parallel`).
"""
from __future__ import annotations

from .cli._startup import install as _quiet_start  # the standard library only

_quiet_start()  # in a dcformat command's own process only: Ctrl-C while importing numpy ends it quietly (130)

import io
import os
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any, Literal, overload

import numpy as np

from .constants import VERSION_MAJOR, VERSION_MINOR
from .encoding import Encoding
from .errors import (
    BadMagicError,
    ChecksumError,
    ClosedFileError,
    CorruptFileError,
    CountMismatchError,
    DCFormatError,
    EncodingError,
    EncodingTypeError,
    HuffmanTableError,
    LimitExceededError,
    OffsetError,
    TruncatedFileError,
    UnsupportedVersionError,
)
from .profiles import Profile
from .reader import DCFReader, Source, TensorSlice
from .structures import TensorInfo
from .tensors import ZERO_INDEX, CodebookTensor
from .writer import DCFWriter, check_names

if TYPE_CHECKING:
    from .torch.io import TorchReader

__version__ = "0.1.0"
FORMAT_VERSION = (VERSION_MAJOR, VERSION_MINOR)


def _write_all(target: str | os.PathLike | IO[bytes], tensors: Mapping[str, Any], metadata: Mapping[str, str] | None,
               encodings: Mapping[str, Encoding | dict] | None, alignment_log2: int | None,
               profile: str | Profile | None, attachments: Mapping[str, Any] | None = None,
               aliases: Mapping[str, str] | None = None) -> None:
    if not isinstance(tensors, Mapping):
        raise EncodingTypeError(f"tensors must be a dict of name to array, not {type(tensors).__name__}")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise EncodingTypeError(f"metadata must be a dict of str to str, not {type(metadata).__name__}")
    encodings = encodings or {}
    unknown = set(encodings) - set(tensors)
    if unknown:
        raise EncodingError(f"encodings name tensors that are not given: {sorted(unknown, key=repr)[:5]}")
    check_names(tensors, dict(metadata) if metadata is not None else None)  # before a byte is written
    for what, given in (("attachments", attachments), ("aliases", aliases)):
        if given is not None and not isinstance(given, Mapping):
            raise EncodingTypeError(f"{what} must be a dict, not {type(given).__name__}")
    for name, aliased in (aliases or {}).items():
        if aliased not in tensors:  # checked again by the writer; here before a byte is written
            raise EncodingError(f"alias {name!r}: its target {aliased!r} is not one of the tensors given")
    with DCFWriter(target, metadata=dict(metadata) if metadata else None, alignment_log2=alignment_log2,
                   profile=profile) as writer:
        for name, data in (attachments or {}).items():
            writer.add_attachment(name, data)
        for name, tensor in tensors.items():
            writer.add(name, tensor, encodings.get(name))
        for name, aliased in (aliases or {}).items():
            writer.add_alias(name, aliased)


def save_file(tensors: Mapping[str, Any], path: str | os.PathLike | IO[bytes],
              metadata: Mapping[str, str] | None = None, encodings: Mapping[str, Encoding | dict] | None = None,
              *, alignment_log2: int | None = None, profile: str | Profile | None = None,
              attachments: Mapping[str, Any] | None = None, aliases: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` to the dcf file ``path``, atomically.

    ``tensors``: name -> numpy array, :class:`CodebookTensor` or torch tensor (any dtype the
    format has; detached, moved to the CPU and made contiguous, bits stored exactly). Names are
    non-empty str of at most 4096 bytes of UTF-8; every name and ``metadata`` (str -> str) is
    checked before anything is written. ``path``: str or ``os.PathLike`` (the file appears
    complete or not at all: a temporary file is renamed over it) or a binary file object open for
    writing. ``encodings``: per-tensor :class:`Encoding` (or dict of its fields); everything left
    out is chosen to make the file smallest, losslessly. ``alignment_log2``: align every stream to
    ``2 ** alignment_log2`` bytes (default packed). ``profile="mobile"`` keeps the file within the
    mobile profile (:mod:`dcformat.profiles`).
    ``attachments``: file name (a relative POSIX path, ``"config.json"``) -> bytes, stored
    byte-exact (spec §4.6.1; read back with :meth:`DCFReader.get_attachment`). ``aliases``: name ->
    the name of one of ``tensors``, stored once and listed under both names (spec §4.6.2: tied
    weights). A file with either is written as format version 1.1, else as 1.0.

    Raises :class:`EncodingError` (a ``ValueError``) for what cannot be encoded, its subclass
    :class:`EncodingTypeError` (also a ``TypeError``) for objects of the wrong type.
    """
    _write_all(path, tensors, metadata, encodings, alignment_log2, profile, attachments, aliases)


def save(tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None,
         encodings: Mapping[str, Encoding | dict] | None = None, *, alignment_log2: int | None = None,
         profile: str | Profile | None = None, attachments: Mapping[str, Any] | None = None,
         aliases: Mapping[str, str] | None = None) -> bytes:
    """The bytes of a dcf file holding ``tensors`` (arguments as :func:`save_file`).

    ``load(save(tensors))`` gives the tensors back."""
    buffer = io.BytesIO()
    _write_all(buffer, tensors, metadata, encodings, alignment_log2, profile, attachments, aliases)
    return buffer.getvalue()


FRAMEWORKS = {"np": "np", "numpy": "np", "pt": "pt", "torch": "pt"}
"""Names ``open(framework=...)`` takes: numpy arrays (``np``) or torch tensors (``pt``)."""


@overload
def open(source: Source, framework: Literal["np", "numpy"] = "np", *, device: str = "cpu",  # noqa: A001
         verify: bool = True, **limits: Any) -> DCFReader: ...
@overload
def open(source: Source, framework: Literal["pt", "torch"], *, device: Any = "cpu",  # noqa: A001
         verify: bool = True, **limits: Any) -> TorchReader: ...


def open(source: Source, framework: str = "np", *, device: Any = "cpu",  # noqa: A001 - the safetensors name
         verify: bool = True, **limits: Any) -> DCFReader | TorchReader:
    """Open a dcf file lazily, as ``safetensors.safe_open``: the index is read now, each tensor
    when it is asked for. Use it as a context manager; after the ``with`` block (or
    :meth:`DCFReader.close`) every call raises :class:`ClosedFileError`.

    ``source``: a path (str, ``os.PathLike`` or bytes, as with the built-in ``open``; a file is
    memory-mapped), a binary file object (a regular file is memory-mapped from its current
    position; anything else, such as ``io.BytesIO`` or a pipe, is read to its end), or a
    ``bytearray``/``memoryview`` holding the file (for ``bytes`` contents use :func:`load`, or
    :class:`DCFReader`). ``framework``: ``"np"`` (numpy arrays) or ``"pt"`` (torch tensors on
    ``device``, a str or ``torch.device``, through :mod:`dcformat.torch`). ``verify``: check every
    CRC-32 (default).
    ``limits``: ``max_tensor_bytes``, ``max_total_bytes`` (16 GiB each by default) and
    ``threads`` (default: every CPU, or ``DCFORMAT_THREADS``).

        with dcformat.open("model.dcf") as f:
            w = f.get_tensor("fc1.weight")
            rows = f.get_slice("embed.weight")[100:200]   # decodes only the chunks holding them
    """
    kind = FRAMEWORKS.get(framework) if isinstance(framework, str) else None
    if kind is None:
        raise ValueError(f"framework must be one of {sorted(FRAMEWORKS)}, not {framework!r}")
    if kind == "np" and device != "cpu":
        raise ValueError(f"numpy arrays live on the CPU: device {device!r} needs framework='pt'")
    if isinstance(source, bytes):
        if b"\0" in source:  # never in a path, always in a dcf file (its version field)
            raise ValueError("bytes given to dcformat.open are a path, as with the built-in open(), and a path "
                             "has no NUL byte: for the contents of a dcf file use dcformat.load(data) or "
                             "dcformat.DCFReader(data)")
        source = os.fsdecode(source)  # a path, as the built-in open() takes it
    reader = DCFReader(source, verify=verify, **limits)
    if kind == "pt":
        try:
            from .torch.io import TorchReader

            return TorchReader(reader, device=device)
        except BaseException:
            reader.close()
            raise
    return reader


def load_file(source: Source, **options: Any) -> dict[str, np.ndarray]:
    """Decode every tensor of a dcf file; returns name -> numpy array, in file order (aliases
    last, each the same array object as its target's).

    ``source``: anything :func:`open` takes (a path, a binary file object). ``options`` go to
    :class:`DCFReader`: ``max_tensor_bytes``, ``max_total_bytes`` (16 GiB each by default),
    ``verify``, and ``threads`` (the chunks of all tensors decode in parallel; default: every
    CPU, or ``DCFORMAT_THREADS``). The arrays are views of one allocation, freed with the last of
    them (:meth:`DCFReader.get_tensors`). For torch tensors, :func:`dcformat.torch.load_file`."""
    with open(source, **options) as reader:
        return reader.get_tensors()


def load(data: bytes | bytearray | memoryview, **options: Any) -> dict[str, np.ndarray]:
    """Decode every tensor of a dcf file held in memory, ``data`` (options as :func:`load_file`).

    ``load(save(tensors))`` gives the tensors back."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"load takes the bytes of a dcf file, not {type(data).__name__} (load_file takes paths)")
    with DCFReader(data, **options) as reader:
        return reader.get_tensors()


__all__ = [
    "BadMagicError", "ChecksumError", "ClosedFileError", "CodebookTensor", "CorruptFileError", "CountMismatchError",
    "DCFReader", "DCFWriter", "DCFormatError", "Encoding", "EncodingError", "EncodingTypeError", "FORMAT_VERSION",
    "HuffmanTableError", "LimitExceededError", "OffsetError", "TensorInfo", "TruncatedFileError",
    "TensorSlice", "UnsupportedVersionError", "ZERO_INDEX", "load", "load_file", "open", "save", "save_file",
]
