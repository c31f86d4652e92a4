"""Torch tensors to and from .dcf files, as ``safetensors.torch``: :func:`save_file`,
:func:`load_file`, :func:`save`, :func:`load`, and :func:`open` (``safe_open(framework="pt")``).

Every dtype the format has round-trips exactly, bit for bit (bfloat16, float16, bool, every
integer width, and since format 1.2 ``torch.float8_e4m3fn`` and ``torch.float8_e5m2``; NaN
payloads and signed zeros included). Tensors handed over may require
gradients, be strided views or live on another device: they are detached, moved to the CPU and
made contiguous (:mod:`dcformat.arrays`). Loaded tensors share the decoded memory (no copy),
are writable, and are moved to ``device`` when it is not the CPU::

    from dcformat.torch import load_file, save_file
    save_file(model.state_dict(), "model.dcf")
    model.load_state_dict(load_file("model.dcf"))

    with dcformat.torch.open("model.dcf") as f:                 # lazy, as safe_open
        rows = f.get_slice("embed.weight")[1000:1010]          # decodes only those rows' chunks
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import IO, Any

import numpy as np
import torch

from .. import load as _load
from .. import open as _open
from .. import save as _save
from .. import save_file as _save_file
from ..encoding import Encoding
from ..profiles import Profile
from ..reader import DCFReader, Source
from ..slices import Index, TensorSlice
from ..structures import TensorInfo

def to_torch(array: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """The torch tensor of a decoded numpy array, sharing its memory where it can (a copy when
    the array is read-only), on ``device``. bfloat16 (``ml_dtypes``) becomes ``torch.bfloat16``,
    ml_dtypes' float8_e4m3fn and float8_e5m2 (format 1.2) ``torch.float8_e4m3fn`` and
    ``torch.float8_e5m2``."""
    if not array.flags.writeable:
        array = array.copy()
    if array.dtype.name == "bfloat16":
        tensor = torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    elif array.dtype.name in ("float8_e4m3fn", "float8_e5m2"):
        tensor = torch.from_numpy(array.view(np.uint8)).view(getattr(torch, array.dtype.name))
    else:
        tensor = torch.from_numpy(array)
    return tensor if torch.device(device).type == "cpu" else tensor.to(device)


def save_file(tensors: Mapping[str, torch.Tensor], filename: str | os.PathLike | IO[bytes],
              metadata: Mapping[str, str] | None = None, *,
              encodings: Mapping[str, Encoding | dict] | None = None, alignment_log2: int | None = None,
              profile: str | Profile | None = None) -> None:
    """Write torch tensors (a ``state_dict``, say) to the dcf file ``filename``, atomically.

    Lossless: :func:`load_file` gives every tensor back bit for bit. Options as
    :func:`dcformat.save_file` (numpy arrays and CodebookTensors are taken too)."""
    _save_file(tensors, filename, metadata, encodings, alignment_log2=alignment_log2, profile=profile)


def save(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None, *,
         encodings: Mapping[str, Encoding | dict] | None = None, alignment_log2: int | None = None,
         profile: str | Profile | None = None) -> bytes:
    """The bytes of a dcf file holding torch ``tensors`` (options as :func:`save_file`)."""
    return _save(tensors, metadata, encodings, alignment_log2=alignment_log2, profile=profile)


def load_file(filename: Source, device: str | torch.device = "cpu", **options: Any) -> dict[str, torch.Tensor]:
    """Decode every tensor of a dcf file to torch tensors on ``device``, in file order.

    ``filename``: a path or a binary file object (as :func:`dcformat.open`); ``options`` as
    :func:`dcformat.load_file` (``threads``, ``verify``, memory limits)."""
    torch.device(device)  # a device torch does not know: an error before anything is decoded
    with _open(filename, **options) as reader:
        return _shared_torch(reader.get_tensors(), device)


def load(data: bytes | bytearray | memoryview, device: str | torch.device = "cpu",
         **options: Any) -> dict[str, torch.Tensor]:
    """Decode every tensor of a dcf file held in ``data`` to torch tensors (as :func:`load_file`)."""
    torch.device(device)
    return _shared_torch(_load(data, **options), device)


def _shared_torch(arrays: dict, device) -> dict[str, torch.Tensor]:
    """``arrays`` as torch tensors; names that share one array (an alias and its target, spec
    §4.6.2) share one tensor, as tied weights do."""
    done: dict[int, torch.Tensor] = {}
    out = {}
    for name, array in arrays.items():
        if id(array) not in done:
            done[id(array)] = to_torch(array, device)
        out[name] = done[id(array)]
    return out


def open(filename: Source, device: str | torch.device = "cpu", **options: Any) -> TorchReader:  # noqa: A001
    """Open a dcf file lazily, giving torch tensors on ``device``: ``dcformat.open(filename,
    framework="pt")``, ``safetensors.safe_open(filename, framework="pt")``'s counterpart."""
    torch.device(device)  # a device torch does not know: an error before the file is opened
    return TorchReader(_open(filename, **options), device)


class TorchSlice:
    """A :class:`~dcformat.slices.TensorSlice` whose parts are torch tensors."""

    def __init__(self, part: TensorSlice, device: str | torch.device) -> None:
        self._slice = part
        self.device = device

    def get_shape(self) -> list[int]:
        """The tensor's shape, as a list (as ``safetensors`` gives it)."""
        return self._slice.get_shape()

    def get_dtype(self) -> str:
        """The tensor's dtype as the spec and ``safetensors`` name it (``"BF16"``, ``"F32"`` …)."""
        return self._slice.get_dtype()

    def __getitem__(self, key: Index) -> torch.Tensor:
        """The elements ``key`` selects (ints, slices, Ellipsis), as a new torch tensor; only the
        chunks holding them are decoded."""
        return to_torch(self._slice[key], self.device)


class TorchReader:
    """A lazily opened dcf file whose tensors come out as torch tensors on ``device``; the methods
    are :class:`~dcformat.reader.DCFReader`'s. Made by :func:`open`; use as a context manager."""

    def __init__(self, reader: DCFReader, device: str | torch.device = "cpu") -> None:
        torch.device(device)  # a clear error for a device torch does not know, before anything is read
        self.reader = reader
        self.device = device

    def keys(self) -> list[str]:
        """The tensors' names, in file order."""
        return self.reader.keys()

    def metadata(self) -> dict[str, str]:
        """The file's metadata (str -> str)."""
        return self.reader.metadata()

    def info(self, name: str) -> TensorInfo:
        """The index entry of tensor ``name`` (dtype, shape, layout, chunks)."""
        return self.reader.info(name)

    def get_tensor(self, name: str) -> torch.Tensor:
        """Decode tensor ``name`` to a torch tensor on the reader's device."""
        return to_torch(self.reader.get_tensor(name), self.device)

    def get_tensors(self, names: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Decode the tensors ``names`` (default: all, in file order) at once, on all threads."""
        return _shared_torch(self.reader.get_tensors(names), self.device)

    def get_slice(self, name: str) -> TorchSlice:
        """Tensor ``name``, to be read in parts: ``f.get_slice(name)[a:b]`` (see :mod:`dcformat.slices`)."""
        return TorchSlice(self.reader.get_slice(name), self.device)

    @property
    def closed(self) -> bool:
        """Whether the file was closed."""
        return self.reader.closed

    def close(self) -> None:
        """Release the file; calls after it raise :class:`~dcformat.errors.ClosedFileError`."""
        self.reader.close()

    def __contains__(self, name: object) -> bool:
        return name in self.reader

    def __iter__(self) -> Iterator[str]:
        return iter(self.reader)

    def __len__(self) -> int:
        return len(self.reader)

    def __enter__(self) -> TorchReader:
        """The reader itself; the ``with`` block's end closes it."""
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["TorchReader", "TorchSlice", "load", "load_file", "open", "save", "save_file", "to_torch"]
