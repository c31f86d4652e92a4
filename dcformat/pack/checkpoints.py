"""Read and write dense checkpoints: ``.safetensors``, ``.pt``/``.pth`` and ``.npz``.

Every loader returns ``(tensors, metadata)``: an ordered dict of name to C-contiguous,
little-endian numpy array, and the file's string metadata (safetensors' ``__metadata__``; empty for
the other formats). Nothing is unpickled beyond plain tensors:

- ``.safetensors`` through the ``safetensors`` package (numpy framework; ``ml_dtypes`` gives numpy
  its bfloat16);
- ``.pt``/``.pth`` through ``torch.load(weights_only=True)`` — a plain state dict, or a dict with a
  ``"state_dict"`` entry holding one; torch is imported only here;
- ``.npz`` through ``numpy.load(allow_pickle=False)``.

Writers are atomic (a temporary file next to the target, fsynced and renamed into place) and store
plain tensors only. :mod:`.safetensors_stream` writes a safetensors file one tensor at a time.
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

FORMATS = {".safetensors": "safetensors", ".pt": "torch", ".pth": "torch", ".npz": "npz"}
"""File suffix -> checkpoint format."""


def checkpoint_format(path) -> str:
    """The format of ``path`` from its suffix: ``"safetensors"``, ``"torch"`` or ``"npz"``."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    try:
        return FORMATS[suffix]
    except KeyError:
        known = ", ".join(sorted(FORMATS))
        raise CheckpointError(
            f"{os.fspath(path)!r}: unknown checkpoint suffix {suffix or '(none)'!r}; use one of {known}"
        ) from None


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


def load_checkpoint(path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors (name -> numpy array, in file order) and string metadata of a checkpoint."""
    path = os.fspath(path)
    fmt = checkpoint_format(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path!r}: no such file")
    loader = {"safetensors": _load_safetensors, "torch": _load_torch, "npz": _load_npz}[fmt]
    tensors, metadata = loader(path)
    return check_tensors(tensors, path), metadata


def _load_safetensors(path: str):
    import ml_dtypes  # noqa: F401 - registers numpy's "bfloat16" for BF16 tensors
    from safetensors import safe_open

    try:
        with safe_open(path, framework="np") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as exc:  # the package raises SafetensorError, TypeError, OSError...
        raise CheckpointError(f"{path!r}: not a readable safetensors file ({_one_line(exc)})") from None
    return tensors, metadata


def _load_torch(path: str):
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for anything but plain tensors, RuntimeError, ...
        raise CheckpointError(f"{path!r}: torch.load(weights_only=True) failed ({_one_line(exc)})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path!r}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    tensors = {}
    for name, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{path!r}: entry {name!r} is a {type(value).__name__}, not a tensor "
                "(expected a plain state dict or {'state_dict': ...})"
            )
        tensors[name] = _torch_to_numpy(value, name, path)
    return tensors, {}


def _torch_to_numpy(tensor, name: str, path: str) -> np.ndarray:
    import torch

    if tensor.layout != torch.strided or tensor.is_quantized:
        raise CheckpointError(f"{path!r}: tensor {name!r} is sparse or quantized; only dense tensors are supported")
    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    try:
        return tensor.numpy()
    except (TypeError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path!r}: tensor {name!r} of dtype {tensor.dtype} has no numpy form ({_one_line(exc)})"
        ) from None


def _load_npz(path: str):
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}, {}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise CheckpointError(f"{path!r}: not a readable npz archive without pickles ({_one_line(exc)})") from None


def save_checkpoint(tensors: dict[str, np.ndarray], path, metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` to ``path`` in the format its suffix names, atomically.

    ``metadata`` (str -> str) goes into a safetensors header; ``.pt`` and ``.npz`` have no place
    for it and drop it.
    """
    path = os.fspath(path)
    fmt = checkpoint_format(path)
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
    import torch

    out = {}
    for name, array in tensors.items():
        if array.dtype.name == "bfloat16":
            out[name] = torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
        else:
            out[name] = torch.from_numpy(np.array(array, copy=True))
    torch.save(out, path)


def _save_npz(tensors, path, metadata):
    if any(a.dtype.name == "bfloat16" for a in tensors.values()):
        raise CheckpointError(f"{path!r}: npz cannot hold bfloat16 tensors without pickles; write .safetensors or .pt")
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
