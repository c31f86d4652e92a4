"""The packing pipeline: a dense checkpoint and a recipe in, a verified ``.dcf`` file out.

For each tensor the recipe's policy is applied with the primitives of :mod:`dcformat.compress`
(pruning masks, k-means or power-of-two weight sharing); the writer then chooses the layout, the
relative-index width (unless the policy fixes it) and the entropy coder of every stream by size.
Tensors are written one at a time. Afterwards the file is read back: every tensor must decode to
exactly what was handed to the writer (raw tensors bit-exact, shared ones to their codebook
reconstruction), and the fidelity of each tensor against the source is reported.
"""
from __future__ import annotations

import hashlib
import math
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ..compress import (
    filter_masks,
    global_masks,
    inq_quantize,
    magnitude_mask,
    relative_error,
    share_weights,
    threshold_mask,
)
from ..compress._checks import as_finite_array
from ..compress.ecsq import uniform_quantize
from ..encoding import Encoding
from ..errors import EncodingError
from ..profiles import METADATA_KEY as PROFILE_KEY
from ..profiles import get_profile
from ..report import ratio_text
from ..parallel import imap_ordered, resolve_threads
from ..tensors import ZERO_INDEX, CodebookTensor
from ..writer import DCFWriter
from .checkpoints import load_checkpoint, metadata_json
from .errors import PackError, PatternError
from .recipe import CSR_DENSITY, METADATA_KEY, Policy, Recipe, coerce_recipe, is_float

RESERVED_PREFIX = "dcformat."
"""Metadata keys the packer writes: ``dcformat.recipe`` (the recipe as JSON, with its preset name
and error budgets), ``dcformat.source``
(the source file name), ``dcformat.source_format``, ``dcformat.source_metadata`` (the source's own
string metadata as a JSON object, when it had any), ``dcformat.source_layout`` (see
:data:`LAYOUT_KEY`), ``dcformat.packer`` and, with a profile, ``dcformat.profile`` (its name)."""
LAYOUT_KEY = "dcformat.source_layout"
"""What dcunpack needs to give the checkpoint its shape back, written only when it is more than one
plain file of tensors: a JSON object, every member optional: ``folder`` (1: a model folder),
``weights`` (the folder's weights file name), ``index``, ``index_metadata`` and ``shards`` (a
sharded checkpoint: the index file's name, its ``metadata`` object, shard file -> tensor names in
order), ``tree`` (a training checkpoint's skeleton, :mod:`.nested`), ``key`` (the subtree
packed), ``prefix`` (the ``module.`` prefix stripped from every tensor name)."""


@dataclass
class TensorReport:
    """What packing did to one tensor, measured on the file as written."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    policy: str
    rule: str | None
    parameters: int
    nonzeros: int
    pruned: float
    """Share of the elements that were non-zero in the source and are zero in the file."""
    relative_error: float
    """``‖W − Ŵ‖ / ‖W‖`` (Frobenius, float64) between the source and the file."""
    codebook_size: int | None
    bytes: int
    """Bytes of the tensor's streams in the file."""
    lossless: bool

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class PackResult:
    path: str
    source: str | None
    recipe: Recipe
    file_bytes: int
    original_bytes: int
    parameters: int
    nonzeros: int
    seconds: float
    tensors: list[TensorReport] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """What the source held beside plain tensors and what was done with it (one line each)."""
    warnings: list[str] = field(default_factory=list)
    """Entries of the source that could not be kept (one line each)."""

    @property
    def ratio(self) -> float:
        """Original bytes (dense, in the source's dtypes) over the file's bytes on disk."""
        return self.original_bytes / self.file_bytes if self.file_bytes else float("inf")

    def summary(self) -> str:
        kept = 100 * self.nonzeros / max(1, self.parameters)
        return (f"{len(self.tensors)} tensors, {self.parameters:,} parameters, "
                f"{self.nonzeros:,} non-zero ({kept:.1f}%); "
                f"{self.file_bytes:,} bytes, {ratio_text(self.ratio, f'the dense {self.original_bytes:,}', 1)}; "
                f"{self.seconds:.1f} s")

    def to_dict(self) -> dict:
        return {
            "path": self.path, "source": self.source, "recipe": self.recipe.to_dict(), "file_bytes": self.file_bytes,
            "original_bytes": self.original_bytes, "parameters": self.parameters, "nonzeros": self.nonzeros,
            "ratio": self.ratio, "seconds": self.seconds, "tensors": [t.to_dict() for t in self.tensors],
        }


# ----------------------------------------------------------------------------------------------
# One tensor


def prune_mask(array: np.ndarray, policy: Policy) -> np.ndarray | None:
    """The keep-mask a policy's pruning gives (None: no pruning). ``"global"`` needs the group."""
    if policy.prune == "magnitude":
        return magnitude_mask(array, policy.sparsity)
    if policy.prune == "threshold":
        return threshold_mask(array, policy.quality)
    if policy.prune == "filter":
        return filter_masks(array, policy.sparsity)
    if policy.prune == "global":
        raise PackError("global pruning needs every tensor of its group: use pack() or global_masks()")
    return None


def float16_codebook(values: np.ndarray) -> CodebookTensor:
    """``values`` rounded to float16, as a codebook of the distinct float16 values (dtype kept).

    Every finite float16 value fits a 65,536-entry codebook; zeros get ``ZERO_INDEX`` so a sparse
    tensor stays sparse.
    """
    with np.errstate(over="ignore"):
        half = np.asarray(values).astype(np.float16)
    if not np.isfinite(half).all():
        raise PackError("a tensor has values outside the float16 range; store it raw")
    bits = half.reshape(-1).view(np.uint16)
    bits = np.where(bits == 0x8000, np.uint16(0), bits)  # -0.0 joins +0.0: both decode to zero
    table, inverse = np.unique(bits, return_inverse=True)
    indices = inverse.reshape(half.shape).astype(np.int32)
    if table[0] == 0:  # zero becomes "no entry"
        indices -= 1
        table = table[1:]
    if table.size == 0:
        return CodebookTensor(np.zeros(1, np.float16), np.full(half.shape, ZERO_INDEX, np.int32), values.dtype)
    return CodebookTensor(table.view(np.float16), indices, values.dtype)


def compress_tensor(array: np.ndarray, policy: Policy, *, mask: np.ndarray | None = None):
    """Apply ``policy`` to one tensor. Returns ``(stored, encoding)`` for :meth:`DCFWriter.add`.

    ``stored`` is the array itself (lossless), the pruned array (raw values), or a
    :class:`CodebookTensor`. ``mask`` overrides the policy's own pruning (global pruning).
    """
    if not is_float(array) or policy.lossless:
        return array, None
    if mask is None:
        mask = prune_mask(array, policy)
    if policy.share == "kmeans":
        keep = mask if mask is not None else np.ones(array.shape, bool)
        pruned = mask is not None and not mask.all()  # sparsity 0 prunes nothing: no zero symbol
        stored = share_weights(array, keep, k=policy.centroids(pruned=pruned), init=policy.init,
                               method=policy.method, iters=policy.iters, seed=policy.seed)
    elif policy.share == "uniform":
        stored = uniform_quantize(array, policy.step)
        if mask is not None:
            stored = CodebookTensor(stored.codebook, np.where(mask, stored.indices, ZERO_INDEX), stored.dtype)
    elif policy.share == "pow2":
        stored = inq_quantize(array if mask is None else np.where(mask, array, np.zeros((), array.dtype)), policy.bits)
        if mask is not None:
            stored = CodebookTensor(stored.codebook, np.where(mask, stored.indices, ZERO_INDEX), stored.dtype)
    else:
        values = array if mask is None else np.where(mask, array, np.zeros((), array.dtype))
        if policy.store == "float16" and array.dtype in (np.float32, np.float64):
            stored = float16_codebook(values)
        else:
            stored = values
    shared = isinstance(stored, CodebookTensor)
    if shared and policy.codebook_dtype == "float16" and stored.codebook.dtype != np.float16:
        with np.errstate(over="ignore"):
            half = stored.codebook.astype(np.float16)
        if not np.isfinite(half).all():
            raise PackError("a codebook value is outside the float16 range; use codebook_dtype float32")
        stored = CodebookTensor(half, stored.indices, stored.dtype)
    return stored, encoding_for(array, stored, policy, pruned=mask is not None)


def encoding_for(array: np.ndarray, stored, policy: Policy, *, pruned: bool) -> Encoding:
    """The writer settings for a compressed tensor: the policy's index width and layout."""
    layout = policy.layout
    if layout == "auto":
        # A pruned, sparse tensor goes straight to CSR: the writer's own "auto" would also encode it
        # dense to compare, which triples the packing time and, at this density, does not win.
        layout = "csr" if pruned and array.ndim >= 2 and _density(stored) <= CSR_DENSITY else "auto"
    return Encoding(index_bits=policy.resolved_index_bits(array.ndim), layout=layout)


def _density(stored) -> float:
    if isinstance(stored, CodebookTensor):
        kept = np.count_nonzero(stored.indices >= 0)
    else:
        kept = np.count_nonzero(_nonzero_bits(stored))
    return kept / max(1, stored.indices.size if isinstance(stored, CodebookTensor) else stored.size)


def reconstruction(stored) -> np.ndarray:
    """The dense tensor a reader will decode for ``stored``."""
    return stored.decode() if isinstance(stored, CodebookTensor) else np.asarray(stored)


FACTS_BLOCK = 1 << 20
"""Elements decoded at a time by :func:`_stored_facts`."""


def _stored_facts(array: np.ndarray, stored) -> tuple[bytes, int, int, float]:
    """For what the writer is given (``stored``: ``array`` itself, another array, or a
    :class:`CodebookTensor`): the digest of the tensor a reader will decode (:func:`_digest` of
    :func:`reconstruction`), its non-zero elements, the elements non-zero in ``array`` that are
    zero in it, and its relative error (``relative_error(array, reconstruction(stored))``, 0 for
    ``array`` itself); decoded :data:`FACTS_BLOCK` elements at a time, never whole."""
    digest = hashlib.blake2b(digest_size=16)
    flat = np.ascontiguousarray(array).reshape(-1)
    if isinstance(stored, CodebookTensor):
        indices = stored.indices.reshape(-1)
        size = indices.size

        def block(start, stop):
            return CodebookTensor(stored.codebook, indices[start:stop], stored.dtype).decode()
    else:
        values = np.ascontiguousarray(stored).reshape(-1)
        size = values.size

        def block(start, stop):
            return values[start:stop]
    lossy = stored is not array
    if lossy:
        as_finite_array(array, "w")  # relative_error's check
    nonzeros = newly_zero = 0
    num2 = den2 = 0.0
    for start in range(0, size, FACTS_BLOCK):  # the blocks of relative_error: the same sums
        stop = min(size, start + FACTS_BLOCK)
        dense = np.ascontiguousarray(block(start, stop))
        digest.update(dense.view(np.uint8))
        kept = _nonzero_bits(dense)
        nonzeros += int(np.count_nonzero(kept))
        if lossy:
            newly_zero += int(np.count_nonzero(_nonzero_bits(flat[start:stop]) & ~kept))
            x = flat[start:stop].astype(np.float64)
            d = x - as_finite_array(dense, "w_hat").astype(np.float64)
            num2 += float(np.multiply(d, d, out=d).sum())
            den2 += float(np.multiply(x, x, out=x).sum())
    error = 0.0
    if lossy:
        num, den = math.sqrt(num2), math.sqrt(den2)
        error = (0.0 if num == 0.0 else float("inf")) if den == 0.0 else num / den
    return digest.digest(), nonzeros, newly_zero, error


def _digest(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array)
    return hashlib.blake2b(array.reshape(-1).view(np.uint8), digest_size=16).digest()


def _nonzero_bits(array: np.ndarray) -> np.ndarray:
    """Per element, whether its bit pattern is non-zero (the spec's notion of a zero element)."""
    array = np.ascontiguousarray(array)
    if array.dtype.itemsize in (1, 2, 4, 8):
        return array.reshape(-1).view(f"u{array.dtype.itemsize}") != 0
    return array.reshape(-1) != 0


# ----------------------------------------------------------------------------------------------
# A whole checkpoint


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="w", unit_scale=True, leave=False, disable=None if enabled else True)


def choose_encoding(array, max_error, *, search="sparsity+bits", profile=None, progress=None):
    from .budget import choose

    return choose(array, max_error, search=search, profile=profile, progress=progress)


class _SearchProgress:
    """Moves a progress bar while error-budget searches run on other threads: each search reports
    its share as it goes, and writing the tensor adds whatever is left of its elements."""

    def __init__(self):
        self.bar = None
        self._lock = threading.Lock()
        self._shown: dict[str, int] = {}
        self._done: dict[str, float] = {}

    def callback(self, name: str, size: int):
        def report(fraction: float) -> None:
            with self._lock:
                self._done[name] = min(size, self._done.get(name, 0.0) + fraction * size)
                step = int(self._done[name]) - self._shown.get(name, 0)
                if step > 0 and self.bar is not None:
                    self._shown[name] = self._shown.get(name, 0) + step
                    self.bar.update(step)
        return report

    def finish(self, name: str, size: int) -> None:
        with self._lock:
            step = size - self._shown.pop(name, 0)
            self._done.pop(name, None)
            if step > 0 and self.bar is not None:
                self.bar.update(step)


def pack(source, out, recipe=None, *, metadata: dict[str, str] | None = None, progress: bool = False,
         verify: bool = True, source_name: str | None = None, threads: int | None = None,
         profile=None, key: str | None = None, attach=None, searches=None) -> PackResult:
    """Pack a checkpoint into the dcf file ``out``.

    ``source``: a path (a file of any suffix, an ``*.index.json``, a model folder, judged by
    content: :mod:`.sources`), an open :class:`~.sources.Source`, or a dict of name -> array.
    ``recipe``: a :class:`Recipe`, a recipe dict, a JSON (or dcf) file path, or None (lossless).
    ``metadata``: extra string metadata (keys starting with ``dcformat.`` are reserved).
    ``verify``: read the file back and check every tensor (cheap next to packing).
    ``threads``: when the recipe has an error budget, the searches of that many tensors run at
    once, ahead of the one being written (None: ``DCFORMAT_THREADS`` or the CPUs). The file is the
    same whatever the number. Other recipes go tensor by tensor.
    ``profile``: a writer profile or its name (``"mobile"``, :mod:`dcformat.profiles`), with any
    recipe; error-budget searches then measure each candidate as the profile stores it.
    ``key``: a torch checkpoint's subtree to pack alone (dotted, e.g. ``"model"``).
    ``attach``: paths of files stored inside the .dcf byte-exact (format 1.1 attachments, under
    their base names), beside a model folder's configuration and tokenizer files, which always are
    (:mod:`.attachments`). A tensor with the same dtype, shape and bits as an earlier one (tied
    weights) under the same policy is stored once, as an alias of it.
    ``searches``: a :class:`~.budget.Searches` that keeps each tensor's error-budget search, so
    that packing the same tensors again at other budgets, or :func:`~.sweep.budget_sweep` on them,
    searches only what was not searched yet, and a fixed policy that is one of a kept search's
    candidates is built from its codebook: the same file as without (with a ``profile`` every
    search is the file's own). Its searches hold about twice each searched tensor until dropped.

    Tensors are read from the source one at a time as their turn comes (with an error budget, the
    few being searched ahead), so memory holds a few tensors, not the checkpoint; only global
    pruning reads every tensor it prunes together first. The result's ``notes`` and ``warnings``
    say what was found (a training checkpoint's entries, a stripped ``module.`` prefix, a folder's
    other files) and what could not be kept.
    """
    from .sources import DictSource, Source, open_source

    start = time.perf_counter()
    _return_large_blocks()
    recipe = coerce_recipe(recipe)
    try:
        profile = get_profile(profile)
    except EncodingError as exc:
        raise PackError(str(exc)) from None
    if isinstance(source, (str, os.PathLike)):
        src = open_source(source, key=key)
        owned = True
    elif isinstance(source, Source):
        src, owned = source, False
    elif isinstance(source, dict):
        src, owned = DictSource(source), True
    else:
        raise PackError(f"source must be a checkpoint path or a dict of arrays, not {type(source).__name__}")
    try:
        return _pack(src, out, recipe, metadata=metadata, progress=progress, verify=verify,
                     source_name=source_name or src.name, threads=threads, profile=profile, start=start,
                     attach=attach, searches=searches if profile is None else None)
    finally:
        if owned:
            src.close()


def _pack(src, out, recipe, *, metadata, progress, verify, source_name, threads, profile, start,
          attach=None, searches=None) -> PackResult:
    from .attachments import TieFinder, pack_attachments

    entries = {e.name: e for e in src.entries}
    names = [name for name in entries if recipe.selects(name)]
    if not names:
        raise PackError(f"no tensor matches {list(recipe.only or [])} (the recipe's 'only')")
    unmatched = recipe.unmatched_patterns(names)
    if unmatched:
        raise PatternError(f"{', '.join(unmatched)} matches no tensor (names look like {names[0]!r}); "
                           "fix the pattern or drop it")
    carried = getattr(src, "user_metadata", None) or {}
    meta = _metadata(recipe, source_name, src.format, src.metadata, {**carried, **(metadata or {})},
                     layout=src.layout)
    if profile is not None:
        meta[PROFILE_KEY] = profile.name

    rules = {name: recipe.rule_for(name, entries[name]) for name in names}
    policies = {name: (rule.policy if rule else Policy()) for name, rule in rules.items()}
    try:
        masks = _global_masks(src, entries, policies)
    except ValueError as exc:
        raise PackError(f"global pruning: {exc}") from None
    expected: dict[str, tuple[bytes, int]] = {}
    reports = []
    total = sum(entries[n].size for n in names)
    attachments, attachment_notes = pack_attachments(src, attach)
    order = {name: i for i, name in enumerate(names)}
    ties, ties_lock, aliases = TieFinder(), threading.Lock(), {}

    def prepare(name):
        """Everything about one tensor that does not touch the file: run ahead on other threads."""
        array, policy = src.get(name), policies[name]
        described, encoded, encoding = policy.describe(), None, None
        if name not in masks:  # tied weights (same dtype, shape, bits, policy): stored once
            key = (*TieFinder.key(array), described)
            with ties_lock:
                first = ties.target(name, array, key)
            if first is not None and order[first] < order[name]:
                return name, _Tied(first), None, None, described, True, 0.0, 0.0, None
        try:
            if policy.max_error is not None:
                if searches is not None:
                    choice = searches.get(name, array).choice(array, policy.max_error, policy.search)
                else:
                    choice = choose_encoding(array, policy.max_error, search=policy.search, profile=profile,
                                             progress=searching.callback(name, int(array.size)))
                stored, encoded = choice.stored, choice.encoded
                described = f"{choice.policy.describe()} (error ≤ {policy.max_error:g})"
            else:
                stored = None if searches is None or name in masks else searches.stored(name, array, policy)
                if stored is not None:  # compress_tensor's tensor, from the codebook a search kept
                    encoding = encoding_for(array, stored, policy, pruned=policy.prune != "none")
                else:
                    stored, encoding = compress_tensor(array, policy, mask=masks.get(name))
        except PackError as exc:
            raise PackError(f"tensor {name!r}: {exc}") from None
        except ValueError as exc:  # the compress primitives name the argument, not the tensor
            raise PackError(f"tensor {name!r}: {exc}") from None
        lossless = stored is array
        digest, nonzeros, newly_zero, error = _stored_facts(array, stored)
        pruned = float(newly_zero) / array.size if array.size and not lossless else 0.0
        check = (digest, nonzeros)
        del array
        return name, stored, encoded, encoding, described, lossless, error, pruned, check

    # Error-budget searches run ahead on other threads while the memory of the tensors in flight
    # (searched, or waiting to be written) stays within what the largest one needs alone, plus a
    # little: a large search runs beside small ones only, and two large ones never run at once.
    ahead = resolve_threads(threads) if any(policies[n].max_error is not None for n in names) else 1
    costs = [entries[n].nbytes * (SEARCH_WORKING_SET if policies[n].max_error is not None else WRITE_WORKING_SET)
             for n in names]
    searching = _SearchProgress()
    with DCFWriter(out, metadata=meta, profile=profile) as writer, _progress(total, "packing", progress) as bar:
        searching.bar = bar
        for attachment, data in attachments:  # a folder's files, --attach, the source's own (an ONNX graph)
            writer.add_attachment(attachment, data)
        for name, stored, encoded, encoding, described, lossless, error, pruned, check in run_ahead(
                prepare, names, costs, ahead, limit=max(costs) + AHEAD_SLACK):
            entry = entries[name]
            if isinstance(stored, _Tied):
                writer.add_alias(name, stored.target)
                aliases[name] = stored.target
                reports.append(TensorReport(
                    name=name, shape=tuple(int(d) for d in entry.shape), dtype=entry.dtype.name,
                    policy=f"alias of {stored.target}", rule=None, parameters=int(entry.size),
                    nonzeros=expected[stored.target][1], pruned=0.0, relative_error=0.0, codebook_size=None,
                    bytes=0, lossless=True))
                searching.finish(name, int(entry.size))
                continue
            try:
                info = writer.add_encoded(name, encoded) if encoded is not None else writer.add(name, stored, encoding)
            except PackError as exc:
                raise PackError(f"tensor {name!r}: {exc}") from None
            except ValueError as exc:
                raise PackError(f"tensor {name!r}: {exc}") from None
            expected[name] = check
            rule = rules[name]
            reports.append(TensorReport(
                name=name, shape=tuple(int(d) for d in entry.shape), dtype=entry.dtype.name,
                policy=described, rule=(rule.name or f"rule {recipe.rules.index(rule) + 1}") if rule else None,
                parameters=int(entry.size), nonzeros=check[1], pruned=pruned, relative_error=error,
                codebook_size=info.codebook_size or None, bytes=info.stored_bytes, lossless=lossless,
            ))
            masks.pop(name, None)
            del stored, encoded
            searching.finish(name, int(entry.size))
        if aliases and src.layout.get("tree") is None and not isinstance(src.layout.get("shards"), dict):
            # where each alias stood among the source's tensors, so dcunpack restores the order (the
            # index lists aliases last); a tree or a shard map already says it. The index, metadata
            # included, is written when the writer closes.
            from .restore import ALIAS_POSITIONS

            writer.metadata[LAYOUT_KEY] = metadata_json({**(src.layout or {}),
                                                         ALIAS_POSITIONS: {a: order[a] for a in aliases}})
            meta[LAYOUT_KEY] = writer.metadata[LAYOUT_KEY]
    for name, target in aliases.items():  # the reader lists aliases after the tensors
        expected[name] = expected[target]
    if verify:
        verify_file(out, {name: digest for name, (digest, _) in expected.items()}, progress=progress)
    file_bytes = os.path.getsize(out)
    notes = [n for n in src.notes if "are not packed: keep them beside the .dcf" not in n] + attachment_notes
    if aliases:
        shown = ", ".join(f"{a} = {t}" for a, t in list(aliases.items())[:3])
        notes.append(f"{len(aliases)} tensors hold the same values as an earlier one (tied weights) and are stored "
                     f"once, as aliases: {shown}{' …' if len(aliases) > 3 else ''}")
    return PackResult(
        path=os.fspath(out), source=source_name, recipe=recipe, file_bytes=file_bytes,
        original_bytes=sum(entries[n].nbytes for n in names), parameters=total,
        nonzeros=sum(n for _, n in expected.values()), seconds=time.perf_counter() - start, tensors=reports,
        metadata=meta, notes=notes, warnings=list(src.warnings),
    )


MMAP_THRESHOLD = 1 << 20


def _return_large_blocks() -> None:
    """Have glibc's malloc give blocks of 1 MiB and more back to the system as soon as they are
    freed (``mallopt(M_MMAP_THRESHOLD)``). By default the threshold rises to the largest block
    freed so far (up to 32 MiB), after which the packer's block-sized working arrays (a few MiB
    each, on two threads) stay in per-thread heaps: 50-80 MB more peak RSS in the search of a
    187.5 MB tensor. Elsewhere (or if it fails) nothing is done."""
    global _RETURNING
    if _RETURNING:
        return
    _RETURNING = True
    try:
        import ctypes
        import sys

        if sys.platform.startswith("linux"):
            ctypes.CDLL("libc.so.6").mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


_RETURNING = False


class _Tied:
    """What ``prepare`` returns for a tensor tied to an earlier one: written as an alias of it."""

    def __init__(self, target: str):
        self.target = target


SEARCH_WORKING_SET = 4.0
"""Memory an error-budget search of a tensor holds at its peak, in tensor sizes, the tensor
included (:mod:`.budget`: its sorted distinct values and counts, one candidate's kept values, then
one candidate's indices and streams; measured 3.5-4x on MiniLM's word embedding)."""
WRITE_WORKING_SET = 2.0
"""The same for a tensor packed by a fixed policy: the tensor and what is written for it."""
AHEAD_SLACK = 64 * 10**6
"""Bytes of run-ahead allowed beside the largest tensor's working set (small tensors keep both
cores busy while a large one is searched)."""


def run_ahead(function, items, sizes, threads: int, *, limit: float):
    """``function(item)`` for each of ``items``, yielded in order, computed ahead on ``threads``
    threads while the ``sizes`` of the items in flight (started and not yet taken) stay within
    ``limit`` (an item larger than that runs alone): :func:`dcformat.parallel.imap_ordered` with a
    memory bound instead of a window. A failure leaves only running items to finish (the rest are
    cancelled); Ctrl-C asks them to stop."""
    return imap_ordered(function, items, sizes, threads, limit=limit)


def _metadata(recipe, source_name, source_format, source_metadata, extra, layout=None) -> dict[str, str]:
    from .. import __version__

    meta = {METADATA_KEY: recipe.to_json(), "dcformat.packer": f"dcformat {__version__}"}
    if source_name:
        meta["dcformat.source"] = source_name
    if source_format:
        meta["dcformat.source_format"] = source_format
    if source_metadata:
        meta["dcformat.source_metadata"] = metadata_json(source_metadata)
    if layout:
        meta[LAYOUT_KEY] = metadata_json(layout)
    for key, value in (extra or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise PackError("metadata must map strings to strings")
        if key.startswith(RESERVED_PREFIX):
            raise PackError(f"metadata key {key!r}: keys starting with {RESERVED_PREFIX!r} are reserved")
        meta[key] = value
    return meta


def _global_masks(src, entries, policies) -> dict[str, np.ndarray]:
    """Masks of the tensors pruned globally: one magnitude threshold per group of equal sparsity
    (the group's tensors are read together for it)."""
    groups: dict[float, list[str]] = {}
    for name, policy in policies.items():
        if policy.prune == "global" and is_float(entries[name]):
            groups.setdefault(policy.sparsity, []).append(name)
    masks = {}
    for sparsity, names in groups.items():
        masks.update(global_masks({name: src.get(name) for name in names}, sparsity))
    return masks


def verify_file(path, digests: dict[str, bytes], *, progress: bool = False) -> None:
    """Check that the dcf file holds exactly the tensors whose digests are given."""
    from .. import open as open_dcf

    with open_dcf(path) as reader:
        names = reader.keys()
        if names != list(digests):
            raise PackError(f"{os.fspath(path)!r}: verification failed: the file holds other tensors than were packed")
        for name in names:
            decoded = reader.get_tensor(name)
            reader.release_pages()  # the mapped pages of this tensor leave the process's memory
            if _digest(decoded) != digests[name]:
                raise PackError(f"{os.fspath(path)!r}: verification failed: {name!r} decodes to other values "
                                "than were packed")


def compare(path, source) -> list[TensorReport]:
    """Fidelity of a dcf file against a source checkpoint (path or dict): one report per tensor."""
    from .. import open as open_dcf

    if isinstance(source, (str, os.PathLike)):
        source, _ = load_checkpoint(source)
    reports = []
    with open_dcf(path) as reader:
        for info in reader.tensors_info():
            decoded = reader.get_tensor(info.name)
            original = source.get(info.name)
            if original is None:
                raise PackError(f"tensor {info.name!r} of the dcf file is not in the source checkpoint")
            if original.shape != decoded.shape:
                raise PackError(f"tensor {info.name!r}: shape {decoded.shape} in the file, "
                                f"{original.shape} in the source")
            kept = _nonzero_bits(decoded)
            exact = original.dtype == decoded.dtype and _digest(original) == _digest(decoded)
            reports.append(TensorReport(
                name=info.name, shape=tuple(decoded.shape), dtype=decoded.dtype.name, policy="", rule=None,
                parameters=int(decoded.size), nonzeros=int(np.count_nonzero(kept)),
                pruned=float(np.count_nonzero(_nonzero_bits(original) & ~kept)) / max(1, decoded.size),
                relative_error=0.0 if exact or not is_float(original) else relative_error(original, decoded),
                codebook_size=info.codebook_size or None, bytes=info.stored_bytes, lossless=exact,
            ))
    return reports


# ----------------------------------------------------------------------------------------------
# Unpacking


def source_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """The source's own metadata recorded in ``dcformat.source_metadata`` (spec §4.1.1), or {}.

    Restored only from a JSON object whose member names are unique and whose members are all
    strings with no unpaired surrogate escape (what the packer writes); from anything else,
    nothing."""
    import json

    class Members(tuple):
        """One JSON object's (name, value) pairs, in order."""

    def pairs(items):
        if len({name for name, _ in items}) != len(items):
            raise ValueError("duplicate member names")
        return Members(items)

    try:
        members = json.loads(metadata.get("dcformat.source_metadata", ""), object_pairs_hook=pairs)
        if not isinstance(members, Members) or not all(isinstance(v, str) for _, v in members):
            return {}
        for name, value in members:
            (name + value).encode("utf-8")  # an unpaired surrogate escape cannot be written out
    except ValueError:  # not JSON, a duplicate name, or UnicodeEncodeError (a ValueError too)
        return {}
    return dict(members)


def unpack(path, out, *, progress: bool = False, max_shard_size=None, weights_format: str | None = None,
           flat: bool = False, external_data: bool = False) -> dict:
    """Decode every tensor of a dcf file into a checkpoint shaped as its source was.

    ``out``: a ``.safetensors`` file (streamed: its header comes from the dcf index, then each
    tensor is decoded, written and dropped; the file is the one ``safetensors.numpy.save_file``
    would write), a ``.pt``/``.pth``/``.bin``/``.ckpt`` (a training checkpoint comes back whole:
    nesting and non-tensor entries), an ``.npz``, or a directory (a model folder: the source's
    shards and index, or shards of ``max_shard_size`` split as ``save_pretrained`` splits them;
    ``weights_format``: ``"safetensors"`` or ``"torch"``, default the source's). Torch and npz
    outputs hold every tensor (a torch shard: its own) before writing. Files appear atomically.
    ``flat``: names as stored (no ``module.`` prefix put back, no nesting). A safetensors file
    carries the dcf metadata and the source's own. A file packed from an ONNX model comes back as
    one in ``out.onnx`` (``external_data``: its large initializers in ``out.onnx.data``). Returns
    ``{"tensors", "parameters", "bytes", "seconds", "files", "notes"}`` (see :mod:`.restore`).
    """
    from .restore import unpack as restore

    return restore(path, out, progress=progress, max_shard_size=max_shard_size, weights_format=weights_format,
                   flat=flat, external_data=external_data)
