"""Training checkpoints: nested objects of tensors, flattened to dotted names and a JSON skeleton.

A training checkpoint is a tree: ``{"model": state_dict, "optimizer": {"state": {0: {...}},
"param_groups": [...]}, "epoch": 3}``. :func:`flatten` walks it and returns the tensors under dotted
names (``model.fc.weight``, ``optimizer.state.0.exp_avg``) and a *skeleton*: the same tree as plain
JSON, each tensor replaced by a reference to its name, every other value kept as it is. The packer
stores the skeleton in the dcf metadata (``dcformat.source_layout``, key ``"tree"``) and
:func:`unflatten` rebuilds the original object from it and the decoded tensors.

Skeleton nodes (JSON)::

    {"t": NAME}                tensor NAME of the file; "p": 1 an nn.Parameter (2: one without grad), "np": 1 a numpy array
    {"d": [[KEY, NODE], ...]}  dict in its order, KEY a string or an integer; "od": 1 an OrderedDict
    {"l": [NODE, ...]}         list
    {"u": [NODE, ...]}         tuple
    null, true, 3, 0.5, "s"    None, bools, ints, finite floats, strings
    {"f": "nan"|"inf"|"-inf"}  non-finite floats
    {"size": [..]}, {"dtype": "float32"}, {"device": "cpu"}, {"bytes": BASE64}
    {"x": TYPE}                an entry that could not be kept (listed in a warning when packed)

A dict whose values are all tensors and whose keys all start with ``module.`` (what
``torch.nn.DataParallel`` and DDP save) gives its tensors names without that prefix; the skeleton
keeps the original keys, so the original names come back.
"""
from __future__ import annotations

import base64
import math
from collections import OrderedDict

from .errors import CheckpointError

DATA_PARALLEL_PREFIX = "module."


def strip_prefix(names) -> str:
    """The ``module.`` prefixes every one of ``names`` starts with ('' when not all do)."""
    names = list(names)
    prefix = ""
    while names and all(n.startswith(prefix + DATA_PARALLEL_PREFIX) and len(n) > len(prefix) + 7 for n in names):
        prefix += DATA_PARALLEL_PREFIX
    return prefix


class Flattened:
    """What :func:`flatten` found: ``tensors`` (dotted name -> leaf, in tree order), the
    ``skeleton``, ``kept`` (dotted paths of the non-tensor entries kept in the skeleton),
    ``left_out`` (path and type of the entries that could not be kept) and ``stripped`` (the
    paths of dicts whose ``module.`` prefix was dropped from the tensor names)."""

    def __init__(self):
        self.tensors: dict = {}
        self.sources: dict[str, str] = {}
        self.skeleton = None
        self.kept: list[str] = []
        self.left_out: list[tuple[str, str]] = []
        self.stripped: list[str] = []


def flatten(obj, *, is_tensor, describe_tensor=None, where: str = "checkpoint") -> Flattened:
    """Flatten ``obj`` (``is_tensor(value)`` tells the tensor leaves; ``describe_tensor(value)``
    returns extra skeleton fields for a tensor, e.g. ``{"p": 1}``)."""
    out = Flattened()

    def add_tensor(name: str, path: str, value):
        if name in out.tensors:
            raise CheckpointError(f"{where}: entries {out.sources[name]!r} and {path!r} both give the tensor name "
                                  f"{name!r}; pick one subtree with --key")
        out.tensors[name] = value
        out.sources[name] = path
        node = {"t": name}
        if describe_tensor is not None:
            node.update(describe_tensor(value))
        return node

    def walk(value, name: str, path: str):
        if is_tensor(value):
            return add_tensor(name, path or "(root)", value)
        if isinstance(value, dict):
            items = list(value.items())
            prefix = ""
            if items and all(isinstance(k, str) for k, _ in items) and all(is_tensor(v) for _, v in items):
                prefix = strip_prefix(k for k, _ in items)
                if prefix:
                    out.stripped.append(path or "(root)")
            pairs = []
            for key, item in items:
                if isinstance(key, bool) or not isinstance(key, (str, int)):
                    out.left_out.append((_join(path, repr(key)), f"{type(key).__name__} key"))
                    continue
                text = str(key)[len(prefix):] if prefix else str(key)
                pairs.append([key, walk(item, _join(name, text), _join(path, str(key)))])
            node = {"d": pairs}
            if isinstance(value, OrderedDict):
                node["od"] = 1
            return node
        if isinstance(value, (list, tuple)) and _kind(value) != "torch.Size":
            items = [walk(item, _join(name, str(i)), _join(path, str(i))) for i, item in enumerate(value)]
            return {"u" if isinstance(value, tuple) else "l": items}
        leaf = _leaf(value)
        if leaf is _UNKEPT:
            out.left_out.append((path or "(root)", type(value).__name__))
            return {"x": type(value).__name__}
        out.kept.append(path or "(root)")
        return leaf

    out.skeleton = walk(obj, "", "")
    return out


_UNKEPT = object()


def _join(prefix: str, part: str) -> str:
    return f"{prefix}.{part}" if prefix else part


def _kind(value) -> str:
    return type(value).__module__ + "." + type(value).__name__


def _leaf(value):
    """The JSON form of a non-tensor value, or _UNKEPT."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        return {"f": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, bytes):
        return {"bytes": base64.b64encode(value).decode("ascii")}
    kind = _kind(value)
    if kind == "torch.Size":
        return {"size": [int(d) for d in value]}
    if kind == "torch.dtype":
        return {"dtype": str(value).removeprefix("torch.")}
    if kind == "torch.device":
        return {"device": str(value)}
    return _UNKEPT


def unflatten(skeleton, tensors, *, make_tensor=None):
    """The object ``skeleton`` describes; ``tensors[name]`` gives each tensor (passed through
    ``make_tensor(array, node)`` when given). Entries marked ``{"x": ...}`` are left out."""

    def build(node):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            raise CheckpointError("dcformat.source_layout: malformed tree (a bare list)")
        if not isinstance(node, dict):
            raise CheckpointError(f"dcformat.source_layout: malformed tree node {node!r:.60}")
        if "t" in node:
            try:
                array = tensors[node["t"]]
            except KeyError:
                raise CheckpointError(f"dcformat.source_layout: the tree names tensor {node['t']!r}, "
                                      "which the file does not hold") from None
            return make_tensor(array, node) if make_tensor else array
        if "d" in node:
            out = OrderedDict() if node.get("od") else {}
            for pair in node["d"]:
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise CheckpointError("dcformat.source_layout: malformed dict entry in the tree")
                key, child = pair
                if isinstance(child, dict) and "x" in child:
                    continue
                out[key] = build(child)
            return out
        if "l" in node or "u" in node:
            items = [build(c) for c in (node.get("l") if "l" in node else node["u"]) if not (isinstance(c, dict) and "x" in c)]
            return items if "l" in node else tuple(items)
        if "f" in node:
            return float(node["f"])
        if "bytes" in node:
            return base64.b64decode(node["bytes"])
        if "size" in node or "dtype" in node or "device" in node:
            import torch

            if "size" in node:
                return torch.Size(node["size"])
            if "dtype" in node:
                return getattr(torch, node["dtype"])
            return torch.device(node["device"])
        raise CheckpointError(f"dcformat.source_layout: unknown tree node {sorted(node)!r:.60}")

    return build(skeleton)


def tensor_names(skeleton) -> list[str]:
    """Every tensor name the skeleton refers to, in order."""
    names = []

    def walk(node):
        if isinstance(node, dict):
            if "t" in node:
                names.append(node["t"])
            for pair in node.get("d", ()):
                walk(pair[1])
            for child in node.get("l", node.get("u", ())):
                walk(child)

    walk(skeleton)
    return names


def left_out(skeleton, path: str = "") -> list[str]:
    """Dotted paths of the entries marked as not kept."""
    found = []

    def walk(node, here):
        if isinstance(node, dict):
            if "x" in node:
                found.append(f"{here or '(root)'} ({node['x']})")
            for key, child in node.get("d", ()):
                walk(child, _join(here, str(key)))
            for i, child in enumerate(node.get("l", node.get("u", ()))):
                walk(child, _join(here, str(i)))

    walk(skeleton, path)
    return found


def summarize(paths: list[str], limit: int = 6) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f", … ({len(paths) - limit} more)" if len(paths) > limit else "")
