"""Unpack a dcf file into the shape its source had: a single file, a nested torch checkpoint, or a
Hugging Face model folder with shards and an index.

What the source looked like is in the metadata entry ``dcformat.source_layout`` (see
:data:`.packer.LAYOUT_KEY`): a folder's weights file or its shards, a training checkpoint's
skeleton (:mod:`.nested`), a stripped ``module.`` prefix. :func:`unpack` uses it:

- ``OUT`` a directory (exists, ends with ``/``, or has no suffix): the model folder. Shards are
  the source's own, or, with ``max_shard_size``, split as ``save_pretrained`` splits them (in file
  order, a new shard when the next tensor would pass the size, a larger tensor alone), named
  ``model-00001-of-00003.safetensors`` / ``pytorch_model-00001-of-00003.bin``, with an index
  ``{"metadata": {"total_size": ...}, "weight_map": {...}}`` written as transformers writes it
  (``json.dumps(indent=2, sort_keys=True)`` and a newline). safetensors shards stream tensor by
  tensor.
- ``OUT.pt`` (``.pth``, ``.bin``, ``.ckpt``): a training checkpoint comes back whole, nesting and
  non-tensor entries included; a state dict as a dict of tensors.
- ``OUT.safetensors`` (streamed) or ``OUT.npz``: the tensors, flat.
- ``OUT.onnx``, for a file packed from an ONNX model: the model, its graph from the attachment and
  its initializers decoded (:func:`.onnx_source.write_onnx`; ``external_data``: the large ones in
  ``OUT.onnx.data``). A folder output of such a file holds ``OUT/<source name>``.

Names come back as the source had them (a stripped prefix restored) unless ``flat``.
"""
from __future__ import annotations

import json
import os
import re
import time

import numpy as np

from .checkpoints import FORMATS, _torch, numpy_to_torch, output_format, save_checkpoint, save_torch_object
from .errors import CheckpointError, PackError
from .nested import left_out, summarize, unflatten

WEIGHT_NAMES = {"safetensors": ("model", ".safetensors"), "torch": ("pytorch_model", ".bin")}
"""Output format -> (base name, suffix) of a folder's weights, as transformers names them."""
DEFAULT_SHARD_FORMAT = "-{index:05d}-of-{count:05d}"
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(text) -> int:
    """Bytes in ``"5GB"`` (decimal units as huggingface_hub reads them; KiB/MiB/GiB binary) or an int."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
        unit = match.group(2).upper() if match else None
        if not match or (unit and unit not in _UNITS):
            raise PackError(f"shard size {text!r}: expected a number of bytes or e.g. 500MB, 5GB, 2GiB")
        value = int(float(match.group(1)) * _UNITS[unit or "B"])
    if value < 1:
        raise PackError(f"shard size {text!r} must be at least one byte")
    return value


def split_shards(names, sizes, max_shard_size: int) -> list[list[str]]:
    """Group ``names`` (in order) into shards as huggingface_hub's ``split_state_dict_into_shards``
    does: a tensor larger than the limit gets its own shard, otherwise a new shard starts when the
    next tensor would take the current one past the limit."""
    shards, current, current_size = [], [], 0
    for name, size in zip(names, sizes):
        if size > max_shard_size:
            shards.append([name])
            continue
        if current_size + size > max_shard_size:
            shards.append(current)
            current, current_size = [], 0
        current.append(name)
        current_size += size
    if current:
        shards.append(current)
    return shards


def is_folder_output(out) -> bool:
    out = os.fspath(out)
    return out.endswith(("/", os.sep)) or os.path.isdir(out) or not os.path.splitext(out)[1]


def read_layout(metadata: dict) -> tuple[dict, dict]:
    """``(layout, source metadata)`` recorded by the packer (empty dicts when absent; the source
    metadata as :func:`.packer.source_metadata` restores it)."""
    def parse(key):
        if key not in metadata:
            return {}
        try:
            value = json.loads(metadata[key])
        except ValueError:
            raise CheckpointError(f"metadata {key} is not valid JSON") from None
        if not isinstance(value, dict):
            raise CheckpointError(f"metadata {key} is not a JSON object")
        return value

    from .packer import source_metadata

    return parse("dcformat.source_layout"), source_metadata(metadata)


def unpack(path, out, *, progress: bool = False, max_shard_size=None, weights_format: str | None = None,
           flat: bool = False, external_data: bool = False) -> dict:
    """Decode the dcf file ``path`` into ``out`` (see the module's text). Returns ``{"tensors",
    "parameters", "bytes", "seconds", "files", "notes"}``."""
    from .. import open as open_dcf

    start = time.perf_counter()
    out = os.fspath(out)
    folder = is_folder_output(out)
    onnx_out = _onnx_output(path, out, folder)
    if onnx_out is not None or external_data:
        if onnx_out is None:
            raise PackError("external data applies to an .onnx output")
        if max_shard_size is not None or weights_format is not None or flat:
            raise PackError("--max-shard-size, --format and --flat do not apply to an .onnx output")
        from .onnx_source import write_onnx

        with open_dcf(path) as reader:
            layout, _ = read_layout(reader.metadata())
            job = _Job(reader, reader.metadata(), layout, {}, True, progress)
            if folder:
                os.makedirs(out, exist_ok=True)
            with job._bar("unpacking") as bar:
                done = write_onnx(reader, layout, onnx_out, external_data=external_data, progress_bar=bar)
        return {**done, "seconds": time.perf_counter() - start, "notes": []}
    if not folder:
        fmt = output_format(out)  # refuse an unknown suffix before decoding anything
        if max_shard_size is not None or weights_format is not None:
            raise PackError("--max-shard-size and --format apply to a folder output (-o DIR/)")
    if weights_format not in (None, "safetensors", "torch"):
        raise PackError(f"weights format must be safetensors or torch, not {weights_format!r}")
    limit = parse_size(max_shard_size) if max_shard_size is not None else None
    with open_dcf(path) as reader:
        metadata = reader.metadata()
        layout, source_metadata = read_layout(metadata)
        job = _Job(reader, metadata, layout, source_metadata, flat, progress)
        if folder:
            job.folder(out, weights_format or ("torch" if metadata.get("dcformat.source_format") == "torch"
                                               else "safetensors"), limit)
        else:
            job.file(out, fmt)
    return {"tensors": len(job.infos), "parameters": job.parameters, "bytes": job.bytes,
            "seconds": time.perf_counter() - start, "files": job.files, "notes": job.notes}


class _Job:
    def __init__(self, reader, metadata, layout, source_metadata, flat, progress):
        self.reader, self.metadata, self.layout = reader, metadata, layout
        self.source_metadata = source_metadata
        # format 1.1 aliases (tied weights) come back under their own names, as their targets
        self.aliases = reader.aliases()
        self.infos = source_order([*reader.tensors_info(), *(reader.info(a)._replace(name=a) for a in self.aliases)],
                                  layout, set(self.aliases))
        self.share = False  # torch outputs: an alias and its target share one tensor again
        self._memo: dict = {}
        self._torch_memo: dict = {}
        self.flat = flat
        prefix = "" if flat else str(layout.get("prefix", ""))
        self.original = {i.name: prefix + i.name for i in self.infos}
        self.tree = None if flat else layout.get("tree")
        self.progress = progress
        self.parameters = 0
        self.bytes = 0
        self.files: list[str] = []
        self.notes: list[str] = []
        if self.tree is not None:
            lost = left_out(self.tree)
            if lost:
                self.notes.append(f"{len(lost)} entries of the source could not be stored when it was packed "
                                  f"and are missing: {summarize(lost)}")

    def _bar(self, desc):
        from .packer import _progress

        return _progress(sum(i.numel for i in self.infos), desc, self.progress)

    def _get(self, name, bar):
        target = self.aliases.get(name, name)
        if self.share and target in self._memo:
            array = self._memo[target]
        else:
            array = self.reader.get_tensor(name)
            if self.share and target in self.aliases.values():
                self._memo[target] = array
        self.reader.release_pages()
        self.parameters += int(array.size)
        bar.update(int(array.size))
        return array

    # -- one file ----------------------------------------------------------------------------
    def file(self, out, fmt):
        if self.tree is not None and fmt != "torch":
            self.notes.append(f"a training checkpoint: its nesting and {_count_kept(self.tree)} non-tensor entries "
                              "are kept only by a .pt output (here: the tensors under their dotted names)")
        with self._bar("unpacking") as bar:
            if fmt == "safetensors":
                metadata = {**self.metadata, **self.source_metadata}
                self._write_safetensors(out, [i.name for i in self.infos], metadata, bar)
            elif fmt == "torch" and self.tree is not None:
                torch = _torch(out)  # a CheckpointError naming the extra without torch
                self.share = True
                tensors = {i.name: self._get(i.name, bar) for i in self.infos}
                obj = unflatten(self.tree, tensors,  # tied tensors share one storage again
                                make_tensor=lambda a, node: _torch_leaf(torch, a, node, self._to_torch))
                save_torch_object(obj, out)
            elif fmt == "torch":
                torch = _torch(out)
                self.share = True
                save_torch_object({self.original[i.name]: self._to_torch(torch, self._get(i.name, bar))
                                   for i in self.infos}, out)
            else:
                tensors = {self.original[i.name]: self._get(i.name, bar) for i in self.infos}
                save_checkpoint(tensors, out, metadata={**self.metadata, **self.source_metadata})
        self.files.append(out)
        self.bytes += os.path.getsize(out)
        attachments = self.reader.attachments()
        if attachments:
            self.notes.append(f"the file holds {len(attachments)} attachments ({summarize(attachments)}), not written "
                              "to a single file: unpack to a folder (-o DIR/) to get them")

    def _to_torch(self, torch, array):
        """``array`` as a torch tensor; the same array (an alias's and its target's) gives the same tensor."""
        if id(array) not in self._torch_memo:
            self._torch_memo[id(array)] = (array, numpy_to_torch(torch, array))
        return self._torch_memo[id(array)][1]

    def _write_safetensors(self, out, names, metadata, bar):
        from ..structures import numpy_dtype
        from .safetensors_stream import SafetensorsStreamWriter

        infos = {i.name: i for i in self.infos}
        by_original = {self.original[n]: n for n in names}
        entries = [(self.original[n], numpy_dtype(infos[n].dtype), infos[n].shape) for n in names]
        with SafetensorsStreamWriter(out, entries, metadata) as writer:
            for original in writer.names:  # the file's order: sequential writes
                array = self._get(by_original[original], bar)
                writer.write(original, array)
                del array

    # -- a model folder ----------------------------------------------------------------------
    def folder(self, out, fmt, limit):
        if self.tree is not None:
            self.notes.append(f"a training checkpoint written as a model folder: its nesting and "
                              f"{_count_kept(self.tree)} non-tensor entries are kept only by a .pt output")
        os.makedirs(out, exist_ok=True)
        names = [i.name for i in self.infos]
        sizes = {i.name: i.numel * _itemsize(i) for i in self.infos}
        source_fmt = "torch" if self.metadata.get("dcformat.source_format") == "torch" else "safetensors"
        base, suffix = WEIGHT_NAMES[fmt]
        shards_layout = self.layout.get("shards")
        index_name = self.layout.get("index")
        if fmt == source_fmt:
            base = _base_of(index_name, self.layout.get("weights"), fmt) or base
        if limit is not None:
            groups = split_shards(names, [sizes[n] for n in names], limit)
            files = None
        elif isinstance(shards_layout, dict) and shards_layout:
            known = set(names)
            files = [f for f in shards_layout if any(n in known for n in shards_layout[f])]
            groups = [[n for n in shards_layout[f] if n in known] for f in files]
            covered = {n for g in groups for n in g}
            rest = [n for n in names if n not in covered]
            if rest:
                if not groups:
                    files, groups = [None], [[]]
                groups[-1].extend(rest)
            if fmt != source_fmt or len(groups) == 1:
                files = None
        else:
            groups, files = [names], None
        if files is None:
            if len(groups) == 1:
                weights = self.layout.get("weights") if fmt == source_fmt else None
                files = [weights if isinstance(weights, str) and os.path.basename(weights) == weights
                         else base + suffix]
            else:
                files = [f"{base}-{i + 1:05d}-of-{len(groups):05d}{suffix}" for i in range(len(groups))]
        for f in files:
            if not isinstance(f, str) or os.path.basename(f) != f or f in (".", ".."):
                raise CheckpointError(f"dcformat.source_layout: shard name {f!r} is not a plain file name")
        index_file = None
        if len(groups) > 1:
            own = (isinstance(index_name, str) and fmt == source_fmt and limit is None
                   and os.path.basename(index_name) == index_name)
            index_file = index_name if own else f"{base}{suffix}.index.json"
        for name in self.reader.attachments():  # the weights are never replaced by an attachment
            if name in files or name == index_file:
                raise CheckpointError(f"attachment {name!r} has the name of a weights file of the folder; "
                                      "nothing written")
        shard_metadata = self.source_metadata or {"format": "pt"}
        with self._bar("unpacking") as bar:
            for file, group in zip(files, groups):
                target = os.path.join(out, file)
                if fmt == "safetensors":
                    self._write_safetensors(target, group, shard_metadata, bar)
                else:
                    torch = _torch(target)
                    self.share = True
                    save_torch_object({self.original[n]: self._to_torch(torch, self._get(n, bar)) for n in group}, target)
                self.files.append(target)
                self.bytes += os.path.getsize(target)
        if len(groups) > 1:
            index_meta = self.layout.get("index_metadata") if isinstance(self.layout.get("index_metadata"), dict) else {}
            index = {"metadata": {**index_meta, "total_size": sum(sizes.values())},
                     "weight_map": {self.original[n]: f for f, g in zip(files, groups) for n in g}}
            target = os.path.join(out, index_file)
            _write_text(target, json.dumps(index, indent=2, sort_keys=True) + "\n")
            self.files.append(target)
            self.bytes += os.path.getsize(target)
        from .attachments import write_attachments

        # format 1.1: the folder's other files, never over the weights (one file under two names)
        for name in write_attachments(self.reader, out, force=True, taken=list(self.files)):
            target = os.path.join(out, *name.split("/"))
            self.files.append(target)
            self.bytes += os.path.getsize(target)
        written = {os.path.basename(f) for f in self.files}
        stale = sorted(n for n in os.listdir(out) if n not in written and not n.startswith(".")
                       and (n.endswith(tuple(FORMATS)) or n.endswith(".index.json")))
        if stale:
            self.notes.append(f"{out!r} also holds {summarize(stale)}, not written now: remove them if they "
                              "belong to another model")


ALIAS_POSITIONS = "alias_positions"
"""The member of ``dcformat.source_layout`` that says where each alias (a tied tensor stored once,
spec §4.6.2) stood among the source's tensors: ``{alias name: position}``, a 0-based index into the
list of every name (tensor entries and aliases) in the source's order."""


def source_order(infos: list, layout: dict, aliases: set) -> list:
    """``infos`` (the tensor entries in index order, then the aliases, as a reader lists them) in
    the order the source had them, which the index alone does not say for aliases. Taken from the
    layout: a training checkpoint's tree (its tensors in order), a sharded source's shards (in file
    order, each in its order), or the alias positions the packer recorded (:data:`ALIAS_POSITIONS`);
    names the layout does not place keep their place after the others. Without any, the aliases
    stay last. The layout is untrusted text: a member that does not fit the file is not used."""
    by_name = {i.name: i for i in infos}
    order: list[str] = []
    tree, shards, positions = layout.get("tree"), layout.get("shards"), layout.get(ALIAS_POSITIONS)
    if tree is not None:
        stack = [tree]
        while stack:  # depth first, in order
            node = stack.pop()
            if isinstance(node, dict):
                if isinstance(node.get("t"), str):
                    order.append(node["t"])
                    continue
                children = node.get("d") if "d" in node else node.get("l", node.get("u"))
                if isinstance(children, list):
                    if "d" in node:
                        children = [c[1] for c in children if isinstance(c, list) and len(c) == 2]
                    stack.extend(reversed(children))
    elif isinstance(shards, dict):
        order = [n for names in shards.values() if isinstance(names, list) for n in names if isinstance(n, str)]
    elif isinstance(positions, dict) and positions:
        entries = [i.name for i in infos if i.name not in aliases]
        placed = sorted((p, n) for n, p in positions.items() if n in aliases and isinstance(p, int)
                        and not isinstance(p, bool))
        if (len(placed) == len(positions) and len({p for p, _ in placed}) == len(placed)
                and all(0 <= p < len(infos) for p, _ in placed)):
            order = entries
            for position, name in placed:
                order.insert(position, name)
    seen: set = set()
    ordered = []
    for name in order:
        if name in by_name and name not in seen:
            seen.add(name)
            ordered.append(by_name[name])
    return ordered + [i for i in infos if i.name not in seen]


def _onnx_output(path, out: str, folder: bool) -> str | None:
    """The .onnx file to write: ``out`` itself when it ends with ``.onnx``; in a folder output of a
    file packed from an ONNX model, the source's name inside it; otherwise None."""
    if out.lower().endswith(".onnx") and not os.path.isdir(out):
        return out
    if not folder:
        return None
    from .. import open as open_dcf
    from .onnx_source import is_onnx_layout

    with open_dcf(path) as reader:
        metadata = reader.metadata()
    layout, _ = read_layout(metadata)
    if not is_onnx_layout(layout):
        return None
    name = os.path.basename(metadata.get("dcformat.source", "") or "model.onnx")
    return os.path.join(out, name if name.lower().endswith(".onnx") else name + ".onnx")


def _base_of(index_name, weights, fmt) -> str | None:
    _, suffix = WEIGHT_NAMES[fmt]
    for name, tail in ((index_name, f"{suffix}.index.json"), (weights, suffix)):
        if isinstance(name, str) and name.endswith(tail) and len(name) > len(tail):
            return name[:-len(tail)]
    return None


def _itemsize(info) -> int:
    from ..structures import numpy_dtype

    return numpy_dtype(info.dtype).itemsize


def _count_kept(tree) -> int:
    count = 0

    def walk(node):
        nonlocal count
        if isinstance(node, dict):
            if "t" in node or "x" in node:
                return
            if "d" in node:
                for _, child in node["d"]:
                    walk(child)
                return
            if "l" in node or "u" in node:
                for child in node.get("l", node.get("u", ())):
                    walk(child)
                return
        count += 1

    walk(tree)
    return count


def _torch_leaf(torch, array: np.ndarray, node: dict, to_torch=None):
    if node.get("np"):
        return np.array(array, copy=True)
    tensor = to_torch(torch, array) if to_torch else numpy_to_torch(torch, array)
    if node.get("p"):
        return torch.nn.Parameter(tensor, requires_grad=node["p"] == 1)
    return tensor


def _write_text(path: str, text: str) -> None:
    from ..atomic import AtomicFile

    atomic = AtomicFile(path)
    try:
        atomic.file.write(text.encode("utf-8"))
        atomic.commit()
    except BaseException:
        atomic.discard()
        raise
