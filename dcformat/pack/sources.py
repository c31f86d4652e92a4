"""Checkpoint sources: what a path holds, judged by its bytes, read one tensor at a time.

:func:`open_source` looks at the content, never at the suffix:

==================  ===============================================================================
safetensors         8-byte little-endian header length, then a JSON header starting with ``{``
torch (zip)         a zip archive with a ``data.pkl`` member (``torch.save`` since 1.6)
torch (legacy)      a pickle stream (``\\x80`` and a protocol byte): loaded only by
                    ``torch.load(weights_only=True)``, never unpickled here
npz                 a zip archive of ``.npy`` members (read with ``allow_pickle=False``)
dcf                 a ``.dcf`` file (its decoded tensors; the packing of its own source is carried)
index               a ``*.index.json`` with a ``weight_map``: a sharded checkpoint
directory           a Hugging Face model folder: ``model.safetensors``, ``pytorch_model.bin`` or
                    either one's shards with ``model.safetensors.index.json`` /
                    ``pytorch_model.bin.index.json``
onnx                an ONNX ModelProto (``ir_version`` first), or any ``*.onnx`` left over
                    (:mod:`.onnx_source`: initializers as tensors, the graph as an attachment)
==================  ===============================================================================

A :class:`Source` lists its tensors up front (:attr:`Source.entries`: name, dtype, shape, from the
headers, before any data is read) and hands each out on demand (:meth:`Source.get`, safe to call
from several threads). A safetensors file is read with ``pread`` into a fresh array per tensor, so
memory holds the tensors being worked on, not the file (a memory map's touched pages would count
as the process's memory); a sharded checkpoint keeps only the shards being read open.

Beside the tensors a source reports what is needed to give the checkpoint its shape back
(:attr:`Source.layout`, stored by the packer as the metadata entry ``dcformat.source_layout``):
the folder's weights file or its index and shards, a training checkpoint's nesting and non-tensor
entries (:mod:`.nested`), a stripped ``module.`` prefix; the folder's other files
(:attr:`Source.files`: config, tokenizer...), and :attr:`Source.notes` and :attr:`Source.warnings`
for the user. New kinds of input plug in through :data:`SNIFFERS` and :data:`OPENERS`.
"""
from __future__ import annotations

import collections
import json
import os
import pickle
import pickletools
import re
import struct
import threading
import zipfile
from dataclasses import dataclass

import numpy as np

from ..constants import MAGIC, MAX_NAME_LENGTH, MAX_RANK
from ..structures import dtype_of
from .errors import CheckpointError, PickledObjectsError
from .nested import flatten, strip_prefix, summarize

SAFETENSORS_MAX_HEADER = 100_000_000
"""Largest safetensors header accepted (the safetensors package's own limit)."""
INDEX_MAX_BYTES = 64 << 20
"""Largest ``*.index.json`` accepted."""
TORCH_EXTRA = "pip install 'dcformat[torch]'"
"""What to install to read torch files."""

_ST_DTYPES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16", "F16": "float16",
    "BF16": "bfloat16", "I32": "int32", "U32": "uint32", "F32": "float32", "F64": "float64", "I64": "int64",
    "U64": "uint64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",  # float8: format 1.2
}

FOLDER_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                  "pytorch_model.bin.index.json")
"""Weights of a Hugging Face model folder, in the order transformers looks for them."""


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a source, known from its header: name, numpy dtype, shape."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


def numpy_dtype_name(name: str) -> np.dtype:
    if name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, name))
    return np.dtype(name)


class Source:
    """Tensors of a checkpoint, listed up front and read one at a time.

    ``format``: ``"safetensors"``, ``"torch"``, ``"npz"`` (or what a carried dcf source recorded);
    ``name``: the file or folder name; ``entries``; ``metadata`` (the source's own str -> str);
    ``layout`` (JSON-able dict, empty when the checkpoint is one plain file of tensors); ``files``
    (other files of a model folder, relative paths); ``notes`` and ``warnings`` (one line each).
    """

    format = "?"

    def __init__(self, path: str | None):
        self.path = path
        self.name = os.path.basename(os.path.normpath(path)) if path else None
        self.entries: list[TensorEntry] = []
        self.metadata: dict[str, str] = {}
        self.layout: dict = {}
        self.files: list[str] = []
        self.attachments: dict[str, bytes] = {}  # made by the source itself (an ONNX model's graph)
        self.notes: list[str] = []
        self.warnings: list[str] = []
        self._lock = threading.Lock()

    # -- reading ------------------------------------------------------------------------------
    def get(self, name: str) -> np.ndarray:
        """Tensor ``name`` as a C-contiguous little-endian numpy array (a new read each call)."""
        raise NotImplementedError

    def read_all(self) -> dict[str, np.ndarray]:
        return {e.name: self.get(e.name) for e in self.entries}

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- helpers ------------------------------------------------------------------------------
    def _where(self) -> str:
        return repr(self.path) if self.path else "tensors"

    def _check_entries(self) -> None:
        seen = set()
        for entry in self.entries:
            name = entry.name
            if not isinstance(name, str) or not name:
                raise CheckpointError(f"{self._where()}: tensor names must be non-empty strings, got {name!r}")
            if name in seen:
                raise CheckpointError(f"{self._where()}: tensor {name!r} appears twice")
            seen.add(name)
            if len(name.encode("utf-8")) > MAX_NAME_LENGTH:
                raise CheckpointError(f"{self._where()}: tensor name {name[:40]!r}… is over {MAX_NAME_LENGTH} bytes")
            try:
                dtype_of(entry.dtype)
            except KeyError:
                raise CheckpointError(f"{self._where()}: tensor {name!r} has dtype {entry.dtype}, "
                                      "which a dcf file cannot hold") from None
            if entry.ndim > MAX_RANK:
                raise CheckpointError(f"{self._where()}: tensor {name!r} has rank {entry.ndim}; "
                                      f"a dcf file holds rank {MAX_RANK} at most")

    def _strip_flat_prefix(self) -> dict[str, str]:
        """Drop a DataParallel ``module.`` prefix shared by every name; returns new -> old names."""
        prefix = strip_prefix(e.name for e in self.entries)
        if not prefix:
            return {}
        renamed = {e.name[len(prefix):]: e.name for e in self.entries}
        self.entries = [TensorEntry(e.name[len(prefix):], e.dtype, e.shape) for e in self.entries]
        self.layout["prefix"] = prefix
        self.notes.append(f"every tensor name started with {prefix!r} (DataParallel): stored without it; "
                          "dcunpack puts it back (--flat leaves it off)")
        return renamed


def _contiguous_le(array: np.ndarray) -> np.ndarray:
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return array if array.flags.c_contiguous else np.ascontiguousarray(array)


# ----------------------------------------------------------------------------------------------
# What a path holds


def sniff(path: str) -> str:
    """The kind of ``path`` from its content: one of :data:`OPENERS`' keys. Raises
    :class:`CheckpointError` naming what the bytes look like when it is none of them."""
    if os.path.isdir(path):
        return "directory"
    if not os.path.exists(path):
        raise CheckpointError(f"{path!r}: no such file or directory")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path!r}: not a regular file or directory")
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as exc:
        raise CheckpointError(f"{path!r}: cannot be read ({exc.strerror or exc})") from None
    for sniffer in SNIFFERS:
        kind = sniffer(path, head)
        if kind:
            return kind
    raise CheckpointError(f"{path!r}: {_describe_unknown(path, head)}; dcpack reads safetensors, torch "
                          "(zip or legacy), npz, dcf and ONNX files, *.index.json and model folders")


def _sniff_dcf(path, head):
    return "dcf" if head.startswith(MAGIC) else None


def _sniff_safetensors(path, head):
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= SAFETENSORS_MAX_HEADER and head[8:9] == b"{":
            return "safetensors"
    return None


def _sniff_zip(path, head):
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path!r}: a damaged zip archive ({_one_line(exc)})") from None
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "torch"
    if all(n.endswith(".npy") for n in names):
        return "npz"
    raise CheckpointError(f"{path!r}: a zip archive that is neither a torch checkpoint (no data.pkl) nor an npz "
                          f"(members other than .npy, e.g. {next(n for n in names if not n.endswith('.npy'))!r})")


def _sniff_pickle(path, head):
    # protocol 2..5 pickles start with PROTO; torch's legacy format is a pickled magic number first
    return "torch" if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5 else None


def _sniff_index(path, head):
    if not head.lstrip()[:1] == b"{":
        return None
    if os.path.getsize(path) > INDEX_MAX_BYTES:
        raise CheckpointError(f"{path!r}: a JSON file over {INDEX_MAX_BYTES >> 20} MiB, not a checkpoint index")
    index = _read_json(path)
    if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
        raise CheckpointError(f"{path!r}: a JSON file without a 'weight_map': not a checkpoint index")
    return "index"


def _sniff_onnx(path, head):
    from .onnx_source import sniff_onnx

    return sniff_onnx(path, head)


SNIFFERS = [_sniff_dcf, _sniff_safetensors, _sniff_zip, _sniff_pickle, _sniff_index, _sniff_onnx]
"""Functions ``(path, first 64 bytes) -> kind or None``, tried in order."""

_KNOWN_MAGIC = [
    (b"version https://git-lfs", "a Git LFS pointer, not the file itself (fetch it with git lfs pull)"),
    (b"\x93NUMPY", "a single .npy array, not a checkpoint (save it in an .npz)"),
    (b"\x1f\x8b", "gzip-compressed data (decompress it first)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data (decompress it first)"),
    (b"\xfd7zXZ", "xz-compressed data (decompress it first)"),
    (b"\x89HDF", "an HDF5 file (Keras .h5), not a supported checkpoint"),
    (b"GGUF", "a GGUF file, not a supported checkpoint"),
    (b"\x7fELF", "an executable, not a checkpoint"),
    (b"<", "an HTML or XML page, not a checkpoint (a failed download?)"),
]


def _describe_unknown(path, head) -> str:
    if not head:
        return "empty file"
    for magic, what in _KNOWN_MAGIC:
        if head.startswith(magic):
            return what
    shown = " ".join(f"{b:02x}" for b in head[:8])
    return f"unknown content (first bytes {shown})"


def _read_json(path: str):
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read(INDEX_MAX_BYTES + 1).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path!r}: not valid JSON ({_one_line(exc)})") from None


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
"""Terminal escapes (torch's bold text) that a one-line message leaves out."""


def _one_line(exc: BaseException) -> str:
    text = _ANSI.sub("", str(exc)).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


# ----------------------------------------------------------------------------------------------
# safetensors


class SafetensorsSource(Source):
    """A ``.safetensors`` file, parsed here (no memory map): each :meth:`get` reads one tensor's
    bytes with ``pread`` into a new array. Tensors in name order (as the safetensors package lists
    them)."""

    format = "safetensors"

    def __init__(self, path: str, *, strip: bool = True):
        super().__init__(path)
        self._strip = strip
        size = os.path.getsize(path)
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            head = os.pread(self._fd, 8, 0)
            if len(head) < 8:
                raise CheckpointError(f"{path!r}: not a readable safetensors file (shorter than 8 bytes)")
            (n,) = struct.unpack("<Q", head)
            if n > SAFETENSORS_MAX_HEADER or 8 + n > size:
                raise CheckpointError(f"{path!r}: not a readable safetensors file (header length {n} "
                                      f"past the file's {size} bytes or the {SAFETENSORS_MAX_HEADER}-byte limit)")
            raw = os.pread(self._fd, n, 8)
            try:
                header = json.loads(raw.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise CheckpointError(f"{path!r}: not a readable safetensors file (header: {_one_line(exc)})") from None
            if not isinstance(header, dict):
                raise CheckpointError(f"{path!r}: not a readable safetensors file (the header is not a JSON object)")
            self._start = 8 + n
            self._parse(header, size - self._start)
        except BaseException:
            os.close(self._fd)
            raise

    def _parse(self, header: dict, data_size: int) -> None:
        bad = f"{self.path!r}: not a readable safetensors file"
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                      for k, v in metadata.items()):
            raise CheckpointError(f"{bad} (__metadata__ must map strings to strings)")
        self.metadata = dict(metadata)
        spans = []
        for name, info in header.items():
            if not (isinstance(info, dict) and isinstance(info.get("dtype"), str)
                    and isinstance(info.get("shape"), list) and isinstance(info.get("data_offsets"), list)):
                raise CheckpointError(f"{bad} (tensor {name!r}: dtype, shape and data_offsets expected)")
            code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
            if code not in _ST_DTYPES:
                raise CheckpointError(f"{self.path!r}: tensor {name!r} has dtype {code}, which a dcf file cannot hold")
            if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
                raise CheckpointError(f"{bad} (tensor {name!r}: bad shape {shape!r:.60})")
            if not (len(offsets) == 2 and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                    and 0 <= offsets[0] <= offsets[1]):
                raise CheckpointError(f"{bad} (tensor {name!r}: bad data_offsets {offsets!r:.60})")
            entry = TensorEntry(name, numpy_dtype_name(_ST_DTYPES[code]), tuple(shape))
            if offsets[1] - offsets[0] != entry.nbytes:
                raise CheckpointError(f"{bad} (tensor {name!r}: {offsets[1] - offsets[0]} bytes for "
                                      f"{entry.nbytes} bytes of {code} {tuple(shape)})")
            spans.append((offsets[0], offsets[1], entry))
        spans.sort(key=lambda s: (s[0], s[1]))
        end = 0
        for begin, stop, entry in spans:  # as the package: the data is covered without holes or overlaps
            if begin != end:
                raise CheckpointError(f"{bad} (tensor {entry.name!r} starts at byte {begin}, expected {end})")
            end = stop
        if end != data_size:
            raise CheckpointError(f"{bad} (the tensors hold {end} bytes, the file has {data_size} after the header)")
        self._spans = {entry.name: (self._start + begin, entry) for begin, _, entry in spans}
        self.entries = sorted((e for _, _, e in spans), key=lambda e: e.name)
        self._renamed = self._strip_flat_prefix() if self._strip else {}
        self._check_entries()

    def get(self, name: str) -> np.ndarray:
        offset, entry = self._spans[self._renamed.get(name, name)]
        out = np.empty(entry.shape, entry.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        done = 0
        while done < entry.nbytes:
            got = _pread_into(self._fd, view[done:], offset + done)
            if got <= 0:
                raise CheckpointError(f"{self.path!r}: the file ended inside tensor {name!r}")
            done += got
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    chunk = view[:1 << 30]
    if hasattr(os, "preadv"):
        return os.preadv(fd, [chunk], offset)
    data = os.pread(fd, len(chunk), offset)
    chunk[:len(data)] = data
    return len(data)


# ----------------------------------------------------------------------------------------------
# npz


class NpzSource(Source):
    """An ``.npz``: a zip of ``.npy`` members, headers read up front, each array read on demand
    (``allow_pickle=False``)."""

    format = "npz"

    def __init__(self, path: str):
        super().__init__(path)
        bad = f"{path!r}: not a readable npz archive without pickles"
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise CheckpointError(f"{bad} ({_one_line(exc)})") from None
        self._members = {}
        try:
            for member in self._zip.namelist():
                if not member.endswith(".npy"):
                    raise CheckpointError(f"{bad} (member {member!r} is not a .npy)")
                with self._zip.open(member) as handle:
                    version = np.lib.format.read_magic(handle)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(handle)
                if dtype.hasobject:
                    raise CheckpointError(f"{bad} (member {member!r} holds Python objects)")
                name = member[:-4]
                self._members[name] = member
                self.entries.append(TensorEntry(name, dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype,
                                                tuple(int(d) for d in shape)))
        except CheckpointError:
            self._zip.close()
            raise
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            self._zip.close()
            raise CheckpointError(f"{bad} ({_one_line(exc)})") from None
        self._renamed = self._strip_flat_prefix()
        self._check_entries()

    def get(self, name: str) -> np.ndarray:
        member = self._members[self._renamed.get(name, name)]
        with self._lock:
            try:
                with self._zip.open(member) as handle:
                    array = np.lib.format.read_array(handle, allow_pickle=False)
            except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
                raise CheckpointError(f"{self.path!r}: array {name!r} cannot be read ({_one_line(exc)})") from None
        return _contiguous_le(array)

    def close(self) -> None:
        self._zip.close()


# ----------------------------------------------------------------------------------------------
# torch


def import_torch(path: str):
    """torch, or a one-line error naming the extra to install."""
    try:
        import torch
    except ImportError:
        raise CheckpointError(f"{path!r} is a PyTorch checkpoint: reading it needs torch ({TORCH_EXTRA})") from None
    return torch


_PLAIN_GLOBAL_MODULES = ("torch", "torch._utils", "torch._tensor", "collections", "builtins", "_codecs")
"""Modules whose globals a weights-only pickle may name, when torch's own list is not at hand."""
_PLAIN_BUILTINS = {f"builtins.{t}" for t in ("dict", "list", "tuple", "set", "frozenset", "int", "float", "str",
                                             "bytes", "bool", "bytearray", "complex", "slice")}
"""Builtin types a pickle of plain data may name."""
_PICKLE_SCAN_LIMIT = 64 << 20
"""Bytes of pickle read at most to name the objects a refused file holds."""
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
"""Module names of protocol-2 pickles (which torch writes) as Python 3 knows them."""


def _allowed_globals(torch) -> set[str]:
    allowed = set()
    try:  # torch's own list (private, so only a better answer when it exists)
        from torch import _weights_only_unpickler

        allowed.update(_weights_only_unpickler._get_allowed_globals())
    except Exception:
        pass
    try:
        for item in torch.serialization.get_safe_globals():
            obj = item[0] if isinstance(item, tuple) else item
            allowed.add(f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}")
    except Exception:
        pass
    return allowed


def _pickle_globals(data: bytes) -> list[str]:
    """``module.name`` of every GLOBAL / STACK_GLOBAL in the pickles of ``data``, in order, read with
    :func:`pickletools.genops` (opcodes only: nothing is imported or called)."""
    import io

    found: list[str] = []
    stream = io.BytesIO(data)
    for _ in range(8):  # a legacy torch file is several pickles in a row, then raw storage bytes
        memo: dict = {}
        recent: list = []
        try:
            for op, arg, _pos in pickletools.genops(stream):
                name = op.name
                if name == "GLOBAL":
                    module, _, attr = str(arg).partition(" ")
                    found.append(f"{_PY2_MODULES.get(module, module)}.{attr}")
                    recent.append(None)
                elif name == "STACK_GLOBAL":
                    if len(recent) >= 2 and isinstance(recent[-2], str) and isinstance(recent[-1], str):
                        found.append(f"{recent[-2]}.{recent[-1]}")
                    else:
                        found.append("an object")
                    recent.append(None)
                elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING",
                              "BINSTRING", "STRING"):
                    recent.append(arg if isinstance(arg, str) else str(arg))
                elif name == "MEMOIZE":
                    memo[len(memo)] = recent[-1] if recent else None
                elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                    memo[arg] = recent[-1] if recent else None
                elif name in ("BINGET", "LONG_BINGET", "GET"):
                    recent.append(memo.get(arg))
                elif name == "STOP":
                    break
                else:
                    recent.append(None)
                del recent[:-4]
        except Exception:  # the end of the pickles, or bytes that are not one
            break
        if stream.tell() >= len(data):
            break
    return found


def pickled_objects(path, torch=None) -> list[str]:
    """The Python objects (``module.name``) a torch file's pickle refers to beyond plain data:
    what ``torch.load(weights_only=True)`` refuses. Empty when none is found (a damaged file)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
            handle.seek(0)
            if head[:2] == b"PK":
                with zipfile.ZipFile(handle) as archive:
                    members = [m for m in archive.infolist() if m.filename.endswith("data.pkl")]
                    if not members or members[0].file_size > _PICKLE_SCAN_LIMIT:
                        return []
                    data = archive.read(members[0])
            else:
                data = handle.read(_PICKLE_SCAN_LIMIT)
    except (OSError, zipfile.BadZipFile, ValueError):
        return []
    allowed = _allowed_globals(torch) if torch is not None else set()
    objects = []
    for name in _pickle_globals(data):
        module = name.rpartition(".")[0]
        if allowed:
            plain = name in allowed or name in _PLAIN_BUILTINS
        else:
            plain = module in _PLAIN_GLOBAL_MODULES
        if not plain and name not in objects:
            objects.append(name)
    return objects


def torch_numpy_dtypes(torch) -> dict:
    names = ["float32", "float16", "float64", "bfloat16", "int8", "int16", "int32", "int64", "uint8", "bool",
             "uint16", "uint32", "uint64", "float8_e4m3fn", "float8_e5m2"]
    return {getattr(torch, n): numpy_dtype_name(n) for n in names if hasattr(torch, n)}


class TorchSource(Source):
    """A ``torch.save`` file (zip or legacy), loaded with ``weights_only=True`` (memory-mapped when it
    is a zip). A flat state dict gives its names as they are; anything else (a training
    checkpoint: nested dicts, lists, optimizer state, numbers) is flattened to dotted names and a
    skeleton kept in the layout (:mod:`.nested`). ``key`` (dotted) picks one subtree."""

    format = "torch"

    def __init__(self, path: str, key: str | None = None, *, strip: bool = True):
        super().__init__(path)
        torch = import_torch(path)
        with open(path, "rb") as handle:
            is_zip = handle.read(2) == b"PK"
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
        except pickle.UnpicklingError as exc:  # anything but plain data, or a damaged pickle
            objects = pickled_objects(path, torch)
            if objects:
                raise PickledObjectsError(path, objects) from None
            raise CheckpointError(f"{path!r}: torch.load(weights_only=True) failed ({_one_line(exc)})") from None
        except Exception as exc:  # RuntimeError for a damaged archive, ...
            raise CheckpointError(f"{path!r}: torch.load(weights_only=True) failed ({_one_line(exc)})") from None
        if key:
            obj = select(obj, key, path)
            self.layout["key"] = key
        self._torch = torch
        dtypes = torch_numpy_dtypes(torch)

        def is_tensor(value):
            return isinstance(value, (torch.Tensor, np.ndarray))

        def describe(value):
            if isinstance(value, np.ndarray):
                return {"np": 1}
            if isinstance(value, torch.nn.Parameter):
                return {"p": 1 if value.requires_grad else 2}
            return {}

        if not isinstance(obj, (dict, list, tuple)) and not is_tensor(obj):
            raise CheckpointError(f"{path!r}: expected a state dict or a checkpoint of tensors, got {type(obj).__name__}")
        plain = (type(obj) in (dict, collections.OrderedDict) and len(obj) > 0
                 and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()))
        if plain:  # a state dict: names as they are (less a DataParallel prefix)
            prefix = strip_prefix(obj) if strip else ""
            tensors = {k[len(prefix):]: v for k, v in obj.items()}
            sources = {k[len(prefix):]: k for k in obj}
        else:
            flat = flatten(obj, is_tensor=is_tensor, describe_tensor=describe, where=repr(path))
            tensors, sources = flat.tensors, flat.sources
        self._tensors = tensors
        for name, value in tensors.items():
            if isinstance(value, np.ndarray):
                if value.dtype.hasobject:
                    raise CheckpointError(f"{path!r}: entry {sources[name]!r} is an object array")
                dtype = value.dtype.newbyteorder("<") if value.dtype.byteorder == ">" else value.dtype
            else:
                if value.layout != torch.strided or value.is_quantized:
                    raise CheckpointError(f"{path!r}: tensor {sources[name]!r} is sparse or quantized; "
                                          "only dense tensors are supported")
                try:
                    dtype = dtypes[value.dtype]
                except KeyError:
                    raise CheckpointError(f"{path!r}: tensor {sources[name]!r} has dtype {value.dtype}, "
                                          "which a dcf file cannot hold") from None
            self.entries.append(TensorEntry(name, dtype, tuple(int(d) for d in value.shape)))
        if plain:
            if prefix:
                self.layout["prefix"] = prefix
                self.notes.append(f"every tensor name started with {prefix!r} (DataParallel): stored without it; "
                                  "dcunpack puts it back (--flat leaves it off)")
        else:
            self.layout["tree"] = flat.skeleton
            tops = _top_counts(obj, flat, is_tensor)
            note = f"training checkpoint: {len(flat.tensors)} tensors"
            if tops:
                note += " (" + ", ".join(f"{k!r}: {n}" for k, n in tops) + ")"
            if flat.kept:
                note += f"; {len(flat.kept)} other entries kept in the metadata ({summarize(_by_top(flat.kept))})"
            if flat.stripped:
                note += f"; 'module.' prefix left off the names under {summarize(flat.stripped)}"
            if tops and not key:
                note += f"; --key {tops[0][0]} packs one subtree alone"
            self.notes.append(note)
            if flat.left_out:
                self.warnings.append(f"{len(flat.left_out)} entries cannot be stored and are left out: "
                                     + summarize([f"{p} ({t})" for p, t in flat.left_out]))
            if not flat.tensors:
                raise CheckpointError(f"{path!r}: the checkpoint holds no tensors")
        self._check_entries()

    def get(self, name: str) -> np.ndarray:
        value = self._tensors[name]
        if isinstance(value, np.ndarray):
            return _contiguous_le(value)
        return torch_to_numpy(self._torch, value)

    def close(self) -> None:
        self._tensors = {}


def torch_to_numpy(torch, tensor) -> np.ndarray:
    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    if tensor.dtype in (getattr(torch, "float8_e4m3fn", None), getattr(torch, "float8_e5m2", None)):
        return tensor.view(torch.uint8).numpy().view(numpy_dtype_name(str(tensor.dtype).removeprefix("torch.")))
    if tensor.dtype in (getattr(torch, "uint16", None), getattr(torch, "uint32", None), getattr(torch, "uint64", None)):
        signed = {2: torch.int16, 4: torch.int32, 8: torch.int64}[tensor.element_size()]
        return tensor.view(signed).numpy().view(f"<u{tensor.element_size()}")
    return tensor.numpy()


def _by_top(paths: list[str]) -> list[str]:
    """``["epoch", "optimizer (30)"]``: dotted paths grouped by their first part, in order."""
    counts: dict[str, int] = {}
    for path in paths:
        top = path.split(".", 1)[0]
        counts[top] = counts.get(top, 0) + 1
    return [top if n == 1 and top in paths else f"{top} ({n})" for top, n in counts.items()]


def _top_counts(obj, flat, is_tensor):
    if not isinstance(obj, dict):
        return []
    counts = []
    for key, value in obj.items():
        if is_tensor(value) or not isinstance(value, (dict, list, tuple)):
            continue
        n = sum(1 for p in flat.sources.values() if p == str(key) or p.startswith(f"{key}."))
        if n:
            counts.append((str(key), n))
    counts.sort(key=lambda kv: -kv[1])
    return counts


def select(obj, key: str, path: str):
    """The subtree at dotted ``key`` (dict keys as strings, list items by position)."""
    node, walked = obj, []
    for part in key.split("."):
        if isinstance(node, dict):
            match = [k for k in node if str(k) == part]
            if not match:
                keys = ", ".join(repr(str(k)) for k in list(node)[:12])
                raise CheckpointError(f"{path!r}: --key {key!r}: no entry {part!r} under "
                                      f"{'.'.join(walked) or 'the root'} (it has {keys})")
            node = node[match[0]]
        elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise CheckpointError(f"{path!r}: --key {key!r}: {'.'.join(walked) or 'the root'} has no entry {part!r}")
        walked.append(part)
    if not isinstance(node, (dict, list, tuple)):
        raise CheckpointError(f"{path!r}: --key {key!r} is a {type(node).__name__}, not a subtree of tensors")
    return node


# ----------------------------------------------------------------------------------------------
# dcf


CARRIED_KEYS = ("dcformat.source", "dcformat.source_format", "dcformat.source_metadata", "dcformat.source_layout")
"""Metadata a dcf input passes on to the file packed from it (what its source was)."""


class DcfSource(Source):
    """A ``.dcf`` file's decoded tensors; its record of its own source (name, format, metadata,
    layout) is carried over, so repacking keeps what dcunpack needs."""

    def __init__(self, path: str):
        super().__init__(path)
        from .. import open as open_dcf
        from ..structures import numpy_dtype

        self._reader = open_dcf(path)
        meta = self._reader.metadata()
        self.format = meta.get("dcformat.source_format", "dcf")
        self.name = meta.get("dcformat.source", self.name)
        from .restore import read_layout

        self.layout, self.metadata = read_layout(meta)
        self.user_metadata = {k: v for k, v in meta.items() if not k.startswith("dcformat.")}
        self.entries = [TensorEntry(i.name, numpy_dtype(i.dtype), tuple(i.shape)) for i in self._reader.tensors_info()]
        self.notes.append("a .dcf input: its decoded tensors are packed again (lossy ones as they decode)")
        self._check_entries()

    def get(self, name: str) -> np.ndarray:
        with self._lock:
            array = self._reader.get_tensor(name)
            self._reader.release_pages()
        return array

    def close(self) -> None:
        self._reader.close()


# ----------------------------------------------------------------------------------------------
# Shards and folders


class ShardedSource(Source):
    """A checkpoint split over shards listed by an ``*.index.json`` (``weight_map``: tensor -> file).
    Tensors shard by shard (the shards in name order), each shard's in its own order. Only the
    shards being read are open."""

    def __init__(self, index_path: str, folder: str | None = None):
        super().__init__(folder or os.path.dirname(os.path.abspath(index_path)))
        index = _read_json(index_path)
        if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
            raise CheckpointError(f"{index_path!r}: a JSON file without a 'weight_map': not a checkpoint index")
        directory = os.path.dirname(os.path.abspath(index_path))
        weight_map = index["weight_map"]
        files = []
        for name, file in weight_map.items():
            if not isinstance(file, str) or not file or file != os.path.basename(file) or file in (".", ".."):
                raise CheckpointError(f"{index_path!r}: tensor {name!r} maps to {file!r}, not a file name beside the index")
            if file not in files:
                files.append(file)
        if not files:
            raise CheckpointError(f"{index_path!r}: the weight_map is empty")
        files.sort()
        self._paths = {f: os.path.join(directory, f) for f in files}
        for f, p in self._paths.items():
            if not os.path.isfile(p):
                raise CheckpointError(f"{index_path!r}: shard {f!r} is missing")
        kinds = {f: sniff(p) for f, p in self._paths.items()}
        formats = set(kinds.values())
        if not formats <= {"safetensors", "torch"} or len(formats) != 1:
            raise CheckpointError(f"{index_path!r}: shards must all be safetensors or all torch files, got "
                                  + ", ".join(f"{f}: {k}" for f, k in kinds.items()))
        self.format = formats.pop()
        shards, self._where_is = {}, {}
        shard_meta = None
        for f in files:
            with self._open(f) as shard:
                if shard.layout.get("tree") is not None:
                    raise CheckpointError(f"{self._paths[f]!r}: a shard must be a flat state dict")
                shards[f] = [e.name for e in shard.entries]
                for e in shard.entries:
                    if e.name in self._where_is:
                        raise CheckpointError(f"{index_path!r}: tensor {e.name!r} is in shards "
                                              f"{self._where_is[e.name]!r} and {f!r}")
                    self._where_is[e.name] = f
                    self.entries.append(e)
                if shard_meta is None:
                    shard_meta = shard.metadata
                elif shard.metadata != shard_meta:
                    self.notes.append(f"the shards' own metadata differ; {files[0]}'s is kept")
        missing = [n for n in weight_map if n not in self._where_is]
        if missing:
            raise CheckpointError(f"{index_path!r}: {len(missing)} tensors of the weight_map are in no shard "
                                  f"(first: {missing[0]!r} in {weight_map[missing[0]]!r})")
        extra = [n for n in self._where_is if n not in weight_map]
        if extra:
            self.notes.append(f"{len(extra)} tensors in the shards are not in the index (packed too): {summarize(extra)}")
        self.metadata = dict(shard_meta or {})
        index_meta = index.get("metadata")
        self.layout = {"index": os.path.basename(index_path), "index_metadata": index_meta if isinstance(index_meta, dict) else {},
                       "shards": shards}
        prefix = strip_prefix(e.name for e in self.entries)
        if prefix:  # keep the names of the shards; a prefix would be restored by the shards map
            self.notes.append(f"every tensor name starts with {prefix!r}; names kept as they are in the shards")
        self._open_shards: dict[str, Source] = {}
        self._users: dict[str, int] = {}
        self._current = None
        self._check_entries()

    def _open(self, file: str) -> Source:
        path = self._paths[file]
        return SafetensorsSource(path, strip=False) if self.format == "safetensors" else TorchSource(path, strip=False)

    def get(self, name: str) -> np.ndarray:
        file = self._where_is[name]
        with self._lock:
            shard = self._open_shards.get(file)
            if shard is None:
                shard = self._open_shards[file] = self._open(file)
            self._users[file] = self._users.get(file, 0) + 1
            self._current = file
            for other in [f for f in self._open_shards if f != file and not self._users.get(f)]:
                self._open_shards.pop(other).close()
        try:
            return shard.get(name)
        finally:
            with self._lock:
                self._users[file] -= 1
                if file != self._current and not self._users[file]:
                    self._open_shards.pop(file).close()

    def close(self) -> None:
        with self._lock:
            for shard in self._open_shards.values():
                shard.close()
            self._open_shards.clear()


def open_folder(path: str, key: str | None = None) -> Source:
    """A Hugging Face model folder: its weights (one file or shards + index) and its other files."""
    present = set(os.listdir(path))
    chosen = next((name for name in FOLDER_WEIGHTS if name in present), None)
    if chosen is None:
        indexes = sorted(n for n in present if n.endswith((".safetensors.index.json", ".bin.index.json")))
        weights = sorted(n for n in present if os.path.isfile(os.path.join(path, n)) and not n.startswith(".")
                         and n.endswith((".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".npz")))
        if len(indexes) == 1:
            chosen = indexes[0]
        elif not indexes and len(weights) == 1:
            chosen = weights[0]
        else:
            found = indexes or weights
            raise CheckpointError(f"{path!r}: a folder without {' or '.join(FOLDER_WEIGHTS[::2])}"
                                  + (f" and with several candidates ({summarize(found)}): pass one of them" if found
                                     else " (nor any other weights file or index)"))
    full = os.path.join(path, chosen)
    if chosen.endswith(".index.json"):
        source = ShardedSource(full, folder=path)
        weight_files = set(source.layout["shards"]) | {chosen}
    else:
        kind = sniff(full)
        if kind not in ("safetensors", "torch", "npz"):
            raise CheckpointError(f"{full!r}: a {kind}, not a weights file")
        source = OPENERS[kind](full, key=key) if kind == "torch" else OPENERS[kind](full)
        source.layout = {"weights": chosen, **source.layout}
        source.path = path
        source.name = os.path.basename(os.path.normpath(path))
        weight_files = {chosen}
    return _with_folder_files(source, path, weight_files)


def _with_folder_files(source: Source, path: str, weight_files) -> Source:
    """Mark ``source`` as a model folder's and list the folder's other files (:attr:`Source.files`)."""
    source.layout = {"folder": 1, **source.layout}
    files = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            rel = os.path.relpath(os.path.join(root, name), path)
            if rel not in weight_files and not name.startswith(".") and os.path.isfile(os.path.join(root, name)):
                files.append(rel.replace(os.sep, "/"))
    source.files = files
    if files:
        source.notes.append(f"the folder's {len(files)} other files ({summarize(files)}) are not packed: "
                            "keep them beside the .dcf")
    return source


OPENERS = {
    "safetensors": SafetensorsSource,
    "torch": TorchSource,
    "npz": NpzSource,
    "dcf": DcfSource,
    "index": lambda path: _open_index(path),
    "directory": open_folder,
    "onnx": lambda path: _open_onnx(path),
}
"""Kind (from :func:`sniff`) -> ``opener(path)`` returning a :class:`Source`."""


def _open_onnx(path: str) -> Source:
    from .onnx_source import open_onnx

    return open_onnx(path)


def _open_index(index_path: str) -> Source:
    """An ``*.index.json``: its shards, as the folder holding it would give them."""
    source = ShardedSource(index_path)
    folder = os.path.dirname(os.path.abspath(index_path))
    return _with_folder_files(source, folder, set(source.layout["shards"]) | {os.path.basename(index_path)})


def open_source(path, *, key: str | None = None) -> Source:
    """The :class:`Source` for ``path`` (a file of any suffix, an index, a folder), by content."""
    path = os.fspath(path)
    kind = sniff(path)
    if key and kind not in ("torch", "directory"):
        raise CheckpointError(f"{path!r}: --key picks a subtree of a torch checkpoint; this is a {kind} input")
    if kind in ("torch", "directory"):
        return OPENERS[kind](path, key=key)
    return OPENERS[kind](path)


def source_kind(path) -> str:
    """The weights format of ``path``: ``safetensors``, ``torch``, ``npz`` or ``dcf`` (folders and
    indexes: their weights' format)."""
    path = os.fspath(path)
    kind = sniff(path)
    if kind in ("safetensors", "torch", "npz", "dcf"):
        return kind
    with open_source(path) as source:
        return source.format


class DictSource(Source):
    """Tensors already in memory (a dict of name -> array)."""

    format = None

    def __init__(self, tensors: dict, where: str = "tensors"):
        super().__init__(None)
        from .checkpoints import check_tensors

        self._tensors = check_tensors(tensors, where)
        self.entries = [TensorEntry(n, a.dtype, tuple(a.shape)) for n, a in self._tensors.items()]

    def get(self, name: str) -> np.ndarray:
        return self._tensors[name]
