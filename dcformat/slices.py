"""Lazy slices of a tensor, as ``safetensors``' ``get_slice``: ``f.get_slice(name)[a:b, ...]``.

An index (integers, slices with any step, one ``Ellipsis``, as a tuple) selects elements whose
C-order positions lie between the first and the last selected one. Only the chunks that overlap
that range are decoded (spec §4.4: chunks cover leading rows of a CSR tensor, C-order element
ranges of a DENSE one), so ``embed[1000:1010]`` of a large embedding decodes one or two chunks,
and the elements are then read out with numpy strides. Indices follow numpy's rules and errors:
``IndexError`` out of bounds or for too many indices, ``TypeError`` for an index of another kind
(lists, arrays, ``None``, floats: advanced indexing is left to numpy, on the result).
"""
from __future__ import annotations

import operator
from typing import TYPE_CHECKING, NamedTuple, Union

import numpy as np

from .constants import DType
from .structures import TensorInfo, numpy_dtype

if TYPE_CHECKING:
    from .reader import DCFReader

Index = Union[int, slice, "ellipsis", tuple]  # noqa: F821 - the type of Ellipsis
"""What ``TensorSlice.__getitem__`` takes."""


class Selection(NamedTuple):
    """The elements an index selects, as a strided view: the result's ``shape``, the C-order
    position of its first element, the ``strides`` (in elements, possibly negative) of each of its
    axes, and the range ``[low, high)`` of positions it touches (empty when nothing is selected)."""

    shape: tuple[int, ...]
    first: int
    strides: tuple[int, ...]
    low: int
    high: int


def _axis_index(value, axis: int, size: int):
    if isinstance(value, slice):
        return range(*value.indices(size))  # TypeError for bounds that are not integers, ValueError for step 0
    if isinstance(value, (bool, np.bool_)):
        raise TypeError("a bool is not a valid index of a tensor slice (boolean masks: index the result)")
    try:
        position = operator.index(value)
    except TypeError:
        raise TypeError(f"only integers, slices and Ellipsis are valid indices of a tensor slice, not "
                        f"{type(value).__name__}") from None
    if not -size <= position < size:
        raise IndexError(f"index {position} is out of bounds for axis {axis} with size {size}")
    return position % size


def select(key: Index, shape: tuple[int, ...]) -> Selection:
    """The :class:`Selection` of index ``key`` into a C-order tensor of ``shape``."""
    parts = key if isinstance(key, tuple) else (key,)
    ellipses = sum(part is Ellipsis for part in parts)
    if ellipses > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    given = len(parts) - ellipses
    if given > len(shape):
        raise IndexError(f"too many indices: the tensor is {len(shape)}-dimensional, but {given} were indexed")
    if ellipses:
        at = next(i for i, part in enumerate(parts) if part is Ellipsis)
        parts = parts[:at] + (slice(None),) * (len(shape) - given) + parts[at + 1:]
    else:
        parts = parts + (slice(None),) * (len(shape) - given)
    element_strides, step = [], 1
    for size in reversed(shape):
        element_strides.append(step)
        step *= size
    element_strides.reverse()
    out_shape, out_strides, first, low, high, empty = [], [], 0, 0, 0, False
    for axis, (part, size, stride) in enumerate(zip(parts, shape, element_strides)):
        index = _axis_index(part, axis, size)
        if isinstance(index, int):
            first += index * stride
            low += index * stride
            high += index * stride
            continue
        out_shape.append(len(index))
        out_strides.append(index.step * stride)
        if not len(index):
            empty = True
            continue
        first += index[0] * stride
        low += min(index[0], index[-1]) * stride
        high += max(index[0], index[-1]) * stride
    if empty:
        return Selection(tuple(out_shape), 0, tuple(out_strides), 0, 0)
    return Selection(tuple(out_shape), first, tuple(out_strides), low, high + 1)


class TensorSlice:
    """One tensor of an open file, to be read in parts: ``get_shape()``, ``get_dtype()`` and
    ``slice[index]`` (see the module). Made by :meth:`DCFReader.get_slice`; reading a part after
    the file is closed raises :class:`~dcformat.errors.ClosedFileError`."""

    def __init__(self, reader: DCFReader, info: TensorInfo) -> None:
        self._reader = reader
        self.info = info

    def get_shape(self) -> list[int]:
        """The tensor's shape, as a list (as ``safetensors`` gives it)."""
        return list(self.info.shape)

    def get_dtype(self) -> str:
        """The tensor's dtype as the spec names it (§4.3), the names ``safetensors`` uses too:
        ``"F32"``, ``"F16"``, ``"BF16"``, ``"F64"``, ``"I8"`` … ``"U64"``, ``"BOOL"``."""
        return DType(self.info.dtype).name

    @property
    def shape(self) -> tuple[int, ...]:
        """The tensor's shape, as numpy gives it."""
        return tuple(self.info.shape)

    def __len__(self) -> int:
        if not self.info.shape:
            raise TypeError("len() of a 0-dimensional tensor")
        return self.info.shape[0]

    def __getitem__(self, key: Index) -> np.ndarray:
        """The elements ``key`` selects, as a new numpy array (numpy's basic indexing rules); only
        the chunks holding them are decoded and checked."""
        selection = select(key, self.info.shape)
        dtype = numpy_dtype(self.info.dtype)
        if selection.low == selection.high:
            self._reader._check_open()
            return np.empty(selection.shape, dtype)
        values, base = self._reader._decode_range(self.info, selection.low, selection.high)
        itemsize = values.itemsize
        view = np.ndarray(selection.shape, dtype, buffer=values.view(np.uint8), offset=(selection.first - base) * itemsize,
                          strides=tuple(s * itemsize for s in selection.strides))
        if view.flags.c_contiguous and view.nbytes == values.nbytes:
            return view  # everything decoded was asked for (whole chunks): no copy
        return np.array(view, copy=True)  # a part: a copy, so the chunks' memory is not held

    def __repr__(self) -> str:
        return f"<TensorSlice {self.info.name!r} {self.get_dtype()} {self.get_shape()}>"
