"""ONNX models in and out: the initializers are packed as tensors, the graph travels as an attachment.

``dcpack model.onnx`` (:class:`OnnxSource`) packs every initializer of the model's main graph whose
type a dcf file holds (FLOAT, FLOAT16, BFLOAT16, DOUBLE, INT8 … INT64, UINT8 … UINT64, BOOL) under
its own name, whether its data is in the model (``raw_data`` or the typed ``*_data`` fields) or in
external-data files beside it. The rest of the model (nodes, inputs, outputs, opsets, metadata,
functions, subgraphs, ``Constant`` nodes, sparse initializers and any initializer of another type:
strings, complex, FLOAT8, INT4 …, kept untouched, data included) is the *graph*: the ModelProto
serialised with each packed initializer's data fields emptied (``raw_data``, the typed ``*_data``
fields and ``external_data`` cleared, ``data_location`` DEFAULT; its name, ``data_type``, ``dims``
and doc string kept). It is stored as the attachment :data:`GRAPH_ATTACHMENT`, and the metadata
entry ``dcformat.source_layout`` holds ``{"onnx": {"graph": "model.onnx.graph"}}``; tensors kept in
the graph that had external data are read into it (the graph refers to no other file).

``dcunpack model.dcf -o model.onnx`` (:func:`write_onnx`) parses the graph and gives every emptied
initializer its tensor back as little-endian ``raw_data`` (same name, type and dims: checked), or,
with ``external_data=True``, writes the tensors of 1,024 bytes or more to one file beside the
model (``model.onnx.data``) as ``onnx.save_model(..., save_as_external_data=True)`` does.

Reading is safe on untrusted models: only protobuf parsing (``onnx.load_model`` with
``load_external_data=False``), nothing executed; external-data locations must be relative paths
that stay inside the model's folder (links resolved), and every span is checked against its file.
The model's own protobuf (at most 2 GiB) is parsed whole: opening holds about twice its size for a
moment (the parsed message and the initializers' bytes taken out of it), then once; tensors in
external files are read one at a time with ``pread``. Writing holds the graph and, with external
data, one tensor; without, the whole model.
"""
from __future__ import annotations

import os

import numpy as np

from .errors import CheckpointError, PackError
from .sources import Source, TensorEntry, _pread_into, numpy_dtype_name

ONNX_EXTRA = "pip install 'dcformat[onnx]'"
"""What to install to read and write ONNX models."""
GRAPH_ATTACHMENT = "model.onnx.graph"
"""Name of the attachment holding the model's graph (its initializers' data left out)."""
LAYOUT_MEMBER = "onnx"
"""Member of ``dcformat.source_layout`` that marks a file packed from an ONNX model."""
EXTERNAL_THRESHOLD = 1024
"""``external_data=True``: tensors of this many bytes or more go to the external file (onnx's
``size_threshold``)."""
PROTOBUF_LIMIT = 2**31 - 1
"""Largest protobuf message: a bigger restored model needs external data."""

ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
               10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}
"""ONNX ``TensorProto.DataType`` -> numpy dtype name, for the types a dcf file holds."""
_DATA_FIELDS = ("raw_data", "float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")

# ModelProto's fields: number -> protobuf wire type (0 varint, 2 length-delimited)
_MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}


def import_onnx():
    try:
        import onnx
    except ImportError:
        raise CheckpointError(f"ONNX models need the onnx package: {ONNX_EXTRA}") from None
    return onnx


def _varint(data: bytes, pos: int):
    value = shift = 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    return None, pos


def looks_like_onnx(head: bytes) -> bool:
    """Whether the first bytes of a file read as the start of an ONNX ModelProto: it starts with
    ``ir_version`` (field 1, 1 … 100: every exporter writes it first) and every top-level field
    that follows in ``head`` is one of ModelProto's with its wire type. Cheap and never conclusive:
    the opener parses the whole message."""
    if not head.startswith(b"\x08"):
        return False
    pos, first = 0, True
    while pos < len(head):
        tag, pos = _varint(head, pos)
        if tag is None:
            return not first
        field, wire = tag >> 3, tag & 7
        if _MODEL_FIELDS.get(field) != wire:
            return False
        value, pos = _varint(head, pos)
        if value is None:
            return not first
        if first and not 1 <= value <= 100:
            return False
        if wire == 2:
            pos += value
        first = False
    return True


def sniff_onnx(path: str, head: bytes):
    """:data:`.sources.SNIFFERS` entry: ``"onnx"`` for a ModelProto's first bytes, or (tried last)
    any file named ``*.onnx``, for the opener to parse and explain."""
    return "onnx" if looks_like_onnx(head) or path.lower().endswith(".onnx") else None


def _safe_external_path(model_path: str, location: str, tensor: str) -> str:
    folder = os.path.dirname(os.path.abspath(model_path))
    where = f"{model_path!r}: initializer {tensor!r}'s external data {location!r}"
    if not location or os.path.isabs(location) or "\\" in location or "\x00" in location:
        raise CheckpointError(f"{where}: not a relative path inside the model's folder")
    full = os.path.normpath(os.path.join(folder, location))
    real_folder = os.path.realpath(folder)
    real = os.path.realpath(full)
    if os.path.commonpath([real_folder, real]) != real_folder or real == real_folder:
        raise CheckpointError(f"{where}: leaves the model's folder")
    if not os.path.isfile(real):
        raise CheckpointError(f"{where}: no such file beside the model")
    return real


class OnnxSource(Source):
    """An ONNX model: its main graph's initializers of dcf dtypes (in the graph's order) and, in
    :attr:`attachments`, the graph without their data (see the module's text)."""

    format = "onnx"

    def __init__(self, path: str):
        super().__init__(path)
        onnx = import_onnx()
        from google.protobuf.message import DecodeError

        self._fds: dict[str, int] = {}
        self._external: dict[str, tuple[str, int]] = {}  # name -> (file, offset)
        self._embedded: dict[str, object] = {}  # name -> bytes (raw, little-endian) or ndarray
        try:
            model = onnx.load_model(path, load_external_data=False)
        except (DecodeError, ValueError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f"{path!r}: not a readable ONNX model ({_one_line(exc)})") from None
        if not model.HasField("graph"):
            raise CheckpointError(f"{path!r}: an ONNX ModelProto without a graph")
        try:
            self._take(onnx, model)
            graph = model.SerializeToString()
        except BaseException:
            self.close()
            raise
        del model
        self.attachments = {GRAPH_ATTACHMENT: graph}
        self.layout = {LAYOUT_MEMBER: {"graph": GRAPH_ATTACHMENT}}
        self._by_name = {e.name: e for e in self.entries}
        self._check_entries()

    def _take(self, onnx, model):
        seen, kept = set(), []
        for tensor in model.graph.initializer:
            name = tensor.name
            if not name:
                raise CheckpointError(f"{self.path!r}: an initializer without a name")
            if name in seen:
                raise CheckpointError(f"{self.path!r}: initializer {name!r} appears twice")
            seen.add(name)
            code = ONNX_DTYPES.get(tensor.data_type)
            if code is None or tensor.HasField("segment"):
                what = "segmented" if code is not None else _type_name(onnx, tensor.data_type)
                kept.append(f"{name} ({what})")
                if tensor.data_location == onnx.TensorProto.EXTERNAL:  # the graph holds it, inline
                    tensor.raw_data = self._read_external_bytes(tensor)
                    del tensor.external_data[:]
                    tensor.ClearField("data_location")
                continue
            dtype = numpy_dtype_name(code)
            dtype = dtype if dtype.itemsize == 1 else dtype.newbyteorder("<")
            shape = tuple(int(d) for d in tensor.dims)
            if any(d < 0 for d in shape):
                raise CheckpointError(f"{self.path!r}: initializer {name!r} has negative dims {shape}")
            entry = TensorEntry(name, dtype, shape)
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                self._external[name] = self._external_span(tensor, entry.nbytes)
            elif tensor.HasField("raw_data"):
                if len(tensor.raw_data) != entry.nbytes:
                    raise CheckpointError(f"{self.path!r}: initializer {name!r} holds {len(tensor.raw_data)} "
                                          f"bytes, {entry.nbytes} expected for {shape} {code}")
                self._embedded[name] = tensor.raw_data
            else:
                from onnx import numpy_helper

                try:
                    array = numpy_helper.to_array(tensor)
                except (ValueError, TypeError) as exc:
                    raise CheckpointError(f"{self.path!r}: initializer {name!r}: {_one_line(exc)}") from None
                if array.shape != shape:
                    raise CheckpointError(f"{self.path!r}: initializer {name!r} holds {array.size} values, "
                                          f"{entry.size} expected for {shape}")
                self._embedded[name] = np.ascontiguousarray(array).astype(dtype, copy=False)
            for field in _DATA_FIELDS:
                tensor.ClearField(field)
            del tensor.external_data[:]
            tensor.ClearField("data_location")
            self.entries.append(entry)
        self._inline_other_external(onnx, model)
        if kept:
            self.notes.append(f"{len(kept)} initializers of types a dcf file does not hold are kept in the "
                              f"graph untouched: {', '.join(kept[:6])}{' …' if len(kept) > 6 else ''}")
        if model.graph.sparse_initializer:
            self.notes.append(f"{len(model.graph.sparse_initializer)} sparse initializers are kept in the graph")
        if not self.entries:
            self.notes.append("the model has no initializers of a dcf dtype: the file holds only its graph")

    def _inline_other_external(self, onnx, model):
        """Tensors outside the main graph's initializers (subgraphs, attributes, functions) that
        have external data: read into the graph, which must stand alone."""
        for tensor in _other_tensors(model):
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                tensor.raw_data = self._read_external_bytes(tensor)
                del tensor.external_data[:]
                tensor.ClearField("data_location")

    def _external_info(self, tensor):
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        try:
            offset = int(info.get("offset", 0) or 0)
            length = int(info["length"]) if info.get("length") not in (None, "") else None
        except ValueError:
            raise CheckpointError(f"{self.path!r}: initializer {tensor.name!r}: bad external-data offset "
                                  f"or length {info.get('offset')!r}/{info.get('length')!r}") from None
        if offset < 0 or (length is not None and length < 0):
            raise CheckpointError(f"{self.path!r}: initializer {tensor.name!r}: negative external-data span")
        file = _safe_external_path(self.path, location, tensor.name)
        size = os.path.getsize(file)
        if length is None:
            length = size - offset
        if offset + length > size:
            raise CheckpointError(f"{self.path!r}: initializer {tensor.name!r}'s external data "
                                  f"({offset}+{length}) is past the end of {location!r} ({size} bytes)")
        return file, offset, length

    def _external_span(self, tensor, nbytes):
        file, offset, length = self._external_info(tensor)
        if length != nbytes:
            raise CheckpointError(f"{self.path!r}: initializer {tensor.name!r}'s external data is {length} "
                                  f"bytes, {nbytes} expected for its type and dims")
        return file, offset

    def _fd(self, file):
        with self._lock:
            fd = self._fds.get(file)
            if fd is None:
                fd = self._fds[file] = os.open(file, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        return fd

    def _read_into(self, file, offset, view, name):
        fd, done = self._fd(file), 0
        while done < len(view):
            got = _pread_into(fd, view[done:], offset + done)
            if got <= 0:
                raise CheckpointError(f"{file!r} ended inside initializer {name!r}")
            done += got

    def _read_external_bytes(self, tensor):
        file, offset, length = self._external_info(tensor)
        out = bytearray(length)
        self._read_into(file, offset, memoryview(out), tensor.name)
        return bytes(out)

    def get(self, name: str) -> np.ndarray:
        entry = self._by_name[name]
        if name in self._external:
            file, offset = self._external[name]
            out = np.empty(entry.shape, entry.dtype)
            self._read_into(file, offset, memoryview(out.reshape(-1).view(np.uint8)), name)
            return out
        data = self._embedded[name]
        if isinstance(data, np.ndarray):
            return data.copy()
        return np.frombuffer(data, dtype=entry.dtype).reshape(entry.shape).copy()

    def close(self) -> None:
        fds, self._fds = getattr(self, "_fds", {}), {}
        for fd in fds.values():
            os.close(fd)


def open_onnx(path: str) -> OnnxSource:
    """:data:`.sources.OPENERS` entry for ``"onnx"``."""
    return OnnxSource(path)


def _type_name(onnx, code: int) -> str:
    try:
        return onnx.TensorProto.DataType.Name(code)
    except ValueError:
        return f"data type {code}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _other_tensors(model):
    """Every TensorProto of ``model`` except its main graph's initializers: node attributes (and
    their subgraphs, initializers included) of the main graph and of the model's functions."""
    def of_nodes(nodes):
        for node in nodes:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                if attr.HasField("g"):
                    yield from of_graph(attr.g)
                for g in attr.graphs:
                    yield from of_graph(g)

    def of_graph(graph):
        yield from graph.initializer
        yield from of_nodes(graph.node)

    yield from of_nodes(model.graph.node)
    for function in model.functions:
        yield from of_nodes(function.node)


# ----------------------------------------------------------------------------------------------
# dcunpack: the model back


def is_onnx_layout(layout: dict) -> bool:
    return isinstance(layout.get(LAYOUT_MEMBER), dict)


def write_onnx(reader, layout: dict, out: str, *, external_data: bool = False, progress_bar=None) -> dict:
    """Write the ONNX model packed in ``reader`` (a dcf reader whose ``layout`` marks an ONNX
    source) to ``out``: the graph attachment with every emptied initializer given its decoded
    tensor as little-endian ``raw_data``, or with ``external_data`` the tensors of
    :data:`EXTERNAL_THRESHOLD` bytes or more in ``out + ".data"`` (one file, tensor after tensor).
    Returns ``{"tensors", "parameters", "bytes", "files"}``."""
    onnx = import_onnx()
    from google.protobuf.message import DecodeError

    from ..atomic import AtomicFile
    from ..structures import numpy_dtype

    if not is_onnx_layout(layout):
        raise PackError("this file was not packed from an ONNX model (no graph): write its tensors to a "
                        ".safetensors, .pt or .npz file instead")
    name = layout[LAYOUT_MEMBER].get("graph", GRAPH_ATTACHMENT)
    if name not in reader.attachments():
        raise CheckpointError(f"the ONNX graph attachment {name!r} is missing from the file")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(reader.get_attachment(name))
    except DecodeError as exc:
        raise CheckpointError(f"attachment {name!r} is not an ONNX ModelProto ({_one_line(exc)})") from None
    infos = {i.name: i for i in reader.tensors_info()}
    names = set(reader.keys())
    inverse = {v: k for k, v in ONNX_DTYPES.items()}
    data_name = os.path.basename(out) + ".data"
    data_file = AtomicFile(out + ".data") if external_data else None
    result = {"tensors": 0, "parameters": 0, "bytes": 0, "files": []}
    offset = 0
    try:
        for tensor in model.graph.initializer:
            has_data = any(tensor.HasField(f) if f == "raw_data" else len(getattr(tensor, f)) for f in _DATA_FIELDS) \
                or tensor.data_location == onnx.TensorProto.EXTERNAL
            if tensor.name not in names:
                size = int(np.prod(tensor.dims)) if len(tensor.dims) else 1
                if not has_data and size and tensor.data_type in ONNX_DTYPES:
                    raise CheckpointError(f"initializer {tensor.name!r} has no data in the graph and no tensor in "
                                          "the file (packed with a recipe's 'only'?)")
                continue
            if has_data:
                raise CheckpointError(f"initializer {tensor.name!r} has data in the graph and a tensor in the file")
            array = reader.get_tensor(tensor.name)
            reader.release_pages()
            info = infos.get(tensor.name)
            dtype = numpy_dtype(info.dtype) if info is not None else array.dtype
            code = inverse.get("bfloat16" if dtype.name == "bfloat16" else dtype.name)
            if code != tensor.data_type or tuple(array.shape) != tuple(tensor.dims):
                raise CheckpointError(f"tensor {tensor.name!r} is {dtype.name} {tuple(array.shape)}, the graph's "
                                      f"initializer {_type_name(onnx, tensor.data_type)} {tuple(tensor.dims)}")
            raw = np.ascontiguousarray(array)
            if raw.dtype.byteorder == ">":
                raw = raw.astype(raw.dtype.newbyteorder("<"))
            raw = raw.reshape(-1).view(np.uint8)
            if data_file is not None and raw.nbytes >= EXTERNAL_THRESHOLD:
                data_file.file.write(memoryview(raw))
                for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(raw.nbytes))):
                    entry = tensor.external_data.add()
                    entry.key, entry.value = key, value
                tensor.data_location = onnx.TensorProto.EXTERNAL
                offset += raw.nbytes
            else:
                tensor.raw_data = raw.tobytes()
            result["tensors"] += 1
            result["parameters"] += int(array.size)
            if progress_bar is not None:
                progress_bar.update(int(array.size))
            del array, raw
        missing = names - {t.name for t in model.graph.initializer}
        if missing:
            raise CheckpointError(f"{len(missing)} tensors of the file are not initializers of its graph "
                                  f"(first: {sorted(missing)[0]!r})")
        serialized = model.SerializeToString() if model.ByteSize() <= PROTOBUF_LIMIT else None
        if serialized is None:
            raise PackError("the model is over 2 GiB with its tensors inside: write it with --external-data")
        atomic = AtomicFile(out)
        try:
            atomic.file.write(serialized)
            if data_file is not None:
                data_file.commit()
                data_file = None
                result["files"].append(out + ".data")
            atomic.commit()
        except BaseException:
            atomic.discard()
            raise
        result["files"].insert(0, out)
    finally:
        if data_file is not None:
            data_file.discard()
    result["bytes"] = sum(os.path.getsize(f) for f in result["files"])
    return result
