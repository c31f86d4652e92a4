"""Read and write dense checkpoints: safetensors, torch and npz files, folders of shards.

Reading goes through :mod:`.sources`, which judges a path by its content (any suffix) and reads one
tensor at a time; :func:`load_checkpoint` reads them all into a dict. Every array handed out is
C-contiguous and little-endian. Nothing is unpickled beyond plain data: torch files go through
``torch.load(weights_only=True)`` (torch is imported only for them), npz through
``numpy.load(allow_pickle=False)``. A training checkpoint's tensors come under dotted names
(``model.fc.weight``, ``optimizer.state.0.exp_avg``); :mod:`.nested` keeps the rest.

Writing picks the format from the suffix (:data:`FORMATS`). Writers are atomic (a temporary file
next to the target, fsynced and renamed into place). :mod:`.safetensors_stream` writes a
safetensors file one tensor at a time; :mod:`.restore` writes model folders and nested torch
checkpoints.
"""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from ..atomic import AtomicFile
from ..constants import MAX_NAME_LENGTH
from ..structures import dtype_of
from .errors import CheckpointError

FORMATS = {".safetensors": "safetensors", ".pt": "torch", ".pth": "torch", ".bin": "torch", ".ckpt": "torch",
           ".npz": "npz"}
"""Output file suffix -> checkpoint format (inputs are judged by their content)."""


def output_format(path) -> str:
    """The format to write ``path`` in, from its suffix: ``"safetensors"``, ``"torch"`` or ``"npz"``."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    try:
        return FORMATS[suffix]
    except KeyError:
        known = ", ".join(sorted(FORMATS))
        raise CheckpointError(
            f"{os.fspath(path)!r}: unknown checkpoint suffix {suffix or '(none)'!r}; use one of {known}"
        ) from None


def checkpoint_format(path) -> str:
    """The weights format of an existing checkpoint, from its content: ``"safetensors"``,
    ``"torch"``, ``"npz"`` or ``"dcf"`` (a folder or an index: the format of its weights)."""
    from .sources import source_kind

    return source_kind(path)


def check_tensors(tensors: dict, where: str) -> dict[str, np.ndarray]:
    """Names valid for a dcf file, dtypes the format holds, arrays C-contiguous little-endian."""
    out = {}
    for name, array in tensors.items():
        if not isinstance(name, str) or not name:
            raise CheckpointError(f"{where}: tensor names must be non-empty strings, got {name!r}")
        if len(name.encode("utf-8")) > MAX_NAME_LENGTH:
            raise CheckpointError(f"{where}: tensor name {name[:40]!r}… is over {MAX_NAME_LENGTH} bytes")
        array = np.asarray(array)
        try:
            dtype_of(array.dtype)
        except KeyError:
            raise CheckpointError(
                f"{where}: tensor {name!r} has dtype {array.dtype}, which a dcf file cannot hold"
            ) from None
        if array.ndim > 8:
            raise CheckpointError(f"{where}: tensor {name!r} has rank {array.ndim}; a dcf file holds rank 8 at most")
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        out[name] = array if array.flags.c_contiguous else np.array(array, order="C")  # keeps rank 0
    return out


def load_checkpoint(path, *, key: str | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors (name -> numpy array, in the source's order) and string metadata of a checkpoint:
    a file of any suffix, an ``*.index.json`` or a model folder (see :mod:`.sources`)."""
    from .sources import open_source

    with open_source(path, key=key) as source:
        return source.read_all(), dict(source.metadata)


def save_checkpoint(tensors: dict[str, np.ndarray], path, metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` to ``path`` in the format its suffix names, atomically.

    ``metadata`` (str -> str) goes into a safetensors header; ``.pt`` and ``.npz`` have no place
    for it and drop it.
    """
    path = os.fspath(path)
    fmt = output_format(path)
    tensors = check_tensors(tensors, path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CheckpointError(f"{path!r}: directory {directory!r} does not exist")
    atomic = AtomicFile(path)
    atomic.file.close()  # the savers below write by name
    try:
        {"safetensors": _save_safetensors, "torch": _save_torch, "npz": _save_npz}[fmt](tensors, atomic.temp, metadata)
        atomic.commit()
    except BaseException:
        atomic.discard()
        raise


def _save_safetensors(tensors, path, metadata):
    from safetensors.numpy import save_file

    save_file(tensors, path, metadata=dict(metadata) if metadata else None)


def _save_torch(tensors, path, metadata):
    torch = _torch(path)
    torch.save({name: numpy_to_torch(torch, array) for name, array in tensors.items()}, path)


def _torch(path):
    try:
        import torch
    except ImportError:
        raise CheckpointError(f"{os.fspath(path)!r}: writing a torch file needs torch "
                              "(pip install 'dcformat[torch]')") from None
    return torch


def numpy_to_torch(torch, array: np.ndarray):
    """A torch tensor with its own copy of ``array`` (bfloat16, float8 and unsigned dtypes included)."""
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
    if array.dtype.name in ("float8_e4m3fn", "float8_e5m2"):  # format 1.2
        return torch.from_numpy(array.view(np.uint8).copy()).view(getattr(torch, array.dtype.name))
    if array.dtype.kind == "u" and array.dtype.itemsize > 1:
        return torch.from_numpy(array.view(f"<i{array.dtype.itemsize}").copy()).view(
            {2: torch.uint16, 4: torch.uint32, 8: torch.uint64}[array.dtype.itemsize])
    return torch.from_numpy(np.array(array, copy=True))


def save_torch_object(obj, path) -> None:
    """``torch.save(obj, path)``, atomically."""
    path = os.fspath(path)
    torch = _torch(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CheckpointError(f"{path!r}: directory {directory!r} does not exist")
    atomic = AtomicFile(path)
    atomic.file.close()
    try:
        torch.save(obj, atomic.temp)
        atomic.commit()
    except BaseException:
        atomic.discard()
        raise


def _save_npz(tensors, path, metadata):
    odd = sorted({a.dtype.name for a in tensors.values()} & {"bfloat16", "float8_e4m3fn", "float8_e5m2"})
    if odd:
        raise CheckpointError(f"{path!r}: npz cannot hold {', '.join(odd)} tensors without pickles; "
                              "write .safetensors or .pt")
    # numpy.savez's own keywords ("file", "allow_pickle") could clash with tensor names: write the
    # archive as savez does, one uncompressed ".npy" member per tensor.
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in tensors.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def metadata_json(value) -> str:
    """Compact, stable JSON for a metadata value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
