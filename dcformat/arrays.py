"""What a writer accepts as a tensor, as the numpy array it encodes.

Besides numpy arrays and :class:`~dcformat.tensors.CodebookTensor`, the writer takes torch tensors
of any dtype the format has (bfloat16, float16, bool, every integer width), whether they require
gradients, are views with strides, or live on another device: each is detached, moved to the CPU
and made contiguous, and its bits are stored exactly. torch is never imported here: a torch tensor
is recognised by its class, and torch is already loaded whenever one exists.

Scalars, lists and objects with ``__array__`` go through ``numpy.asarray``; anything that does not
give an array of numbers is a :class:`~dcformat.errors.EncodingTypeError` naming the tensor.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import EncodingTypeError
from .structures import dtype_of
from .tensors import CodebookTensor

STORABLE = ("float32", "float16", "bfloat16", "float64", "int8", "int16", "int32", "int64",
            "uint8", "uint16", "uint32", "uint64", "bool", "float8_e4m3fn", "float8_e5m2")
"""The element types a dcf file holds (spec §4.3), by their numpy and torch names (the float8
ones, format 1.2, by ml_dtypes' and torch's names)."""


def is_torch_tensor(value: Any) -> bool:
    """Whether ``value`` is a ``torch.Tensor`` (or a subclass, such as ``nn.Parameter``)."""
    return any(cls.__name__ == "Tensor" and cls.__module__ == "torch" for cls in type(value).__mro__)


def check_tensor(name: str, value: Any) -> None:
    """Refuse, before anything is written, what :func:`as_array` would refuse without converting:
    torch tensors of a dtype the format lacks, sparse ones, and those with no data (``meta``)."""
    if is_torch_tensor(value):
        _check_torch(name, value)


def _check_torch(name: str, value: Any) -> str:
    dtype = str(value.dtype).removeprefix("torch.")
    if dtype not in STORABLE:
        raise EncodingTypeError(f"{name!r}: torch dtype {dtype} cannot be stored in a dcf file "
                                f"(it holds {', '.join(STORABLE)})")
    if str(value.layout) != "torch.strided":
        raise EncodingTypeError(f"{name!r}: a {str(value.layout).removeprefix('torch.')} tensor; store "
                                "tensor.to_dense() instead")
    if value.device.type == "meta":
        raise EncodingTypeError(f"{name!r}: a tensor on the meta device has no data to write")
    return dtype


def torch_to_numpy(name: str, value: Any) -> np.ndarray:
    """The exact elements of torch tensor ``value`` as a numpy array (bfloat16 as ``ml_dtypes``'):
    detached, on the CPU and contiguous; a view of the tensor's memory where it already is so."""
    dtype = _check_torch(name, value)
    t = value.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.resolve_conj().resolve_neg().contiguous()
    if dtype == "bfloat16":
        import ml_dtypes
        import torch

        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    if dtype in ("float8_e4m3fn", "float8_e5m2"):
        import ml_dtypes
        import torch

        return t.view(torch.uint8).numpy().view(getattr(ml_dtypes, dtype))
    return t.numpy()


def as_array(name: str, value: Any) -> np.ndarray | CodebookTensor:
    """``value`` as the writer encodes it: a numpy array of a storable dtype, or a CodebookTensor."""
    if isinstance(value, CodebookTensor):
        return value
    if is_torch_tensor(value):
        return torch_to_numpy(name, value)
    if isinstance(value, np.ndarray):
        array = value
    else:
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise EncodingTypeError(f"{name!r}: a {type(value).__name__} is not an array ({exc})") from None
        if array.dtype.kind in "OUSV":
            raise EncodingTypeError(f"{name!r}: a {type(value).__name__} object is not an array of numbers")
    try:
        dtype_of(array.dtype)
    except KeyError:
        raise EncodingTypeError(f"{name!r}: dtype {array.dtype} cannot be stored in a dcf file "
                                f"(it holds {', '.join(STORABLE)})") from None
    return array
