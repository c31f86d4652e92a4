"""Write a ``.safetensors`` file one tensor at a time, in the memory of one tensor.

A safetensors file is an 8-byte little-endian header length, a JSON header (every tensor's dtype,
shape and byte range, and ``__metadata__``) padded with spaces to a multiple of 8, then the tensors'
bytes. When every tensor's name, dtype and shape are known before any is decoded (the index of a dcf
file gives them), the header can go first and the tensors can follow one by one::

    entries = [(name, dtype, shape), ...]
    with SafetensorsStreamWriter("out.safetensors", entries, metadata) as writer:
        for name in writer.names:           # the order of the file; any order works
            writer.write(name, make(name))

The file is the one ``safetensors.numpy.save_file`` writes for the same tensors and metadata, byte
for byte: tensors are laid out as the safetensors package lays them out (by dtype, widest first,
then by name), the JSON is compact UTF-8, the header padded with spaces. (The package writes
``__metadata__`` keys in an arbitrary order; this writer keeps the order it is given.)

Writing is atomic, as :func:`.checkpoints.save_checkpoint` is: the bytes go to a temporary file
next to the target, which is fsynced and renamed into place by :meth:`~SafetensorsStreamWriter.close`;
an exception (or :meth:`~SafetensorsStreamWriter.abort`) removes it and leaves the target as it was.
"""
from __future__ import annotations

import json
import os
import struct

import numpy as np

from ..atomic import AtomicFile, AtomicWriter
from .errors import CheckpointError

SAFETENSORS_DTYPES = {
    "bool": "BOOL", "uint8": "U8", "int8": "I8", "int16": "I16", "uint16": "U16", "float16": "F16",
    "bfloat16": "BF16", "int32": "I32", "uint32": "U32", "float32": "F32", "float64": "F64", "int64": "I64",
    "uint64": "U64", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
}
"""numpy dtype name -> safetensors dtype name, for every dtype a dcf file holds."""

# The safetensors package sorts tensors by dtype (its Rust enum order, descending), then by name.
_RANK = {name: rank for rank, name in enumerate(
    ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64",
     "U64"])}

_WRITE_BLOCK = 1 << 26  # bytes per write call: large tensors go out in 64 MiB slices, no copies


class SafetensorsStreamWriter(AtomicWriter):
    """A safetensors file whose tensors (name, dtype, shape) are declared up front and written later.

    ``entries``: ``(name, dtype, shape)`` triples (any numpy dtype in :data:`SAFETENSORS_DTYPES`).
    ``metadata``: str -> str, stored as ``__metadata__`` (left out when empty). The header is written
    at once; :meth:`write` puts each tensor at its place, in any order (:attr:`names`, the file's
    order, needs no seeking); :meth:`close` checks that every tensor was written, then fsyncs and
    renames the file into place. Use as a context manager: an exception aborts.
    """

    def __init__(self, path, entries, metadata: dict[str, str] | None = None):
        self.path = os.fspath(path)
        layout = []
        seen = set()
        for name, dtype, shape in entries:
            if not isinstance(name, str) or not name:
                raise CheckpointError(f"{self.path!r}: tensor names must be non-empty strings, got {name!r}")
            if name in seen:
                raise CheckpointError(f"{self.path!r}: tensor {name!r} is declared twice")
            if name == "__metadata__":
                raise CheckpointError(f"{self.path!r}: '__metadata__' cannot be a tensor name in safetensors")
            seen.add(name)
            dtype = np.dtype(dtype)
            try:
                code = SAFETENSORS_DTYPES[dtype.name]
            except KeyError:
                raise CheckpointError(f"{self.path!r}: tensor {name!r} has dtype {dtype}, "
                                      "which safetensors cannot hold") from None
            shape = tuple(int(d) for d in shape)
            if any(d < 0 for d in shape):
                raise CheckpointError(f"{self.path!r}: tensor {name!r} has a negative dimension {shape}")
            numel = 1
            for d in shape:
                numel *= d
            layout.append((name, code, dtype, shape, numel * dtype.itemsize))
        layout.sort(key=lambda e: (-_RANK[e[1]], e[0]))

        header = {}
        if metadata:
            for key, value in metadata.items():
                if not isinstance(key, str) or not isinstance(value, str):
                    raise CheckpointError(f"{self.path!r}: metadata must map str to str, got {key!r}: {value!r}")
            header["__metadata__"] = dict(metadata)
        self._slots = {}
        offset = 0
        for name, code, dtype, shape, nbytes in layout:
            header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            self._slots[name] = (dtype, shape, offset, nbytes)
            offset += nbytes
        raw = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        raw += b" " * (-len(raw) % 8)
        self.names = [e[0] for e in layout]
        """Tensor names in the order of the file's data (writing in this order never seeks)."""
        self.data_start = 8 + len(raw)
        self.size = self.data_start + offset
        """The file's size once every tensor is written."""
        self._written: set[str] = set()
        self._state = "open"

        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise CheckpointError(f"{self.path!r}: directory {directory!r} does not exist")
        self._atomic = AtomicFile(self.path)
        self._file = self._atomic.file
        try:
            self._file.write(struct.pack("<Q", len(raw)) + raw)
            self._position = self.data_start
        except BaseException:
            self.abort()
            raise

    def write(self, name: str, array) -> None:
        """Write tensor ``name``; its dtype and shape must be the declared ones."""
        if self._state != "open":
            raise CheckpointError(f"{self.path!r}: cannot write to a safetensors writer that is {self._state}")
        try:
            dtype, shape, offset, nbytes = self._slots[name]
        except KeyError:
            raise CheckpointError(f"{self.path!r}: tensor {name!r} was not declared") from None
        if name in self._written:
            raise CheckpointError(f"{self.path!r}: tensor {name!r} was already written")
        array = np.asarray(array)
        if array.dtype.name != dtype.name or tuple(array.shape) != shape:
            raise CheckpointError(f"{self.path!r}: tensor {name!r} is {array.dtype.name} {tuple(array.shape)}, "
                                  f"declared {dtype.name} {shape}")
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        data = np.ascontiguousarray(array).reshape(-1).view(np.uint8)  # a view unless it had to be copied
        try:
            if self._position != self.data_start + offset:
                self._file.seek(self.data_start + offset)
            for begin in range(0, nbytes, _WRITE_BLOCK):
                self._file.write(memoryview(data[begin:begin + _WRITE_BLOCK]))
            self._position = self.data_start + offset + nbytes
        except BaseException:
            self.abort()
            raise
        self._written.add(name)

    def _finish(self) -> None:
        """Check that every tensor was written (:meth:`close` then fsyncs and renames the file)."""
        missing = [n for n in self.names if n not in self._written]
        if missing:
            raise CheckpointError(f"{self.path!r}: {len(missing)} declared tensors were not written "
                                  f"(first: {missing[0]!r})")

    def _closed_error(self) -> Exception:
        return CheckpointError(f"{self.path!r}: cannot close a safetensors writer that was aborted")


def save_safetensors_streaming(path, entries, make, metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file tensor by tensor: ``entries`` are ``(name, dtype, shape)``, and
    ``make(name)`` returns each tensor's array when its turn comes (in the file's order); only one
    is held at a time."""
    with SafetensorsStreamWriter(path, entries, metadata) as writer:
        for name in writer.names:
            array = make(name)
            writer.write(name, array)
            del array
