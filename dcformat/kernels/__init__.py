"""Kernels: the compiled (Numba) loops of the codecs, and numpy versions for small streams.

The Numba modules (``bitpack``, ``huffman``, ``csr``, ``elements``, and ``kmeans`` for packing) are imported on first use, never
by ``import dcformat``. :func:`for_count` picks, for a stream about to be decoded, between them and
:mod:`dcformat.kernels.small` (numpy, identical results and error codes): while Numba is not loaded
in the process, a decode call of up to :data:`SMALL_COUNT` elements uses numpy, so that opening a
small file costs no JIT start-up (about a second, cached or not); a larger call loads Numba first
(:func:`plan_for`), and from then on every stream uses the compiled kernels.
"""
from __future__ import annotations

import importlib
import sys

SMALL_COUNT = 1 << 19
"""Most elements a decode call (a tensor, or a whole file) may hold to be decoded with numpy while
Numba is not loaded. A Python loop follows Huffman codes at about 0.15 µs a symbol, so the worst
case costs a few tenths of a second, against about a second of Numba start-up."""


_loaded: dict = {}


def jit(name: str):
    """The Numba kernel module ``name`` (``"bitpack"``, ``"huffman"``, ``"csr"``, ``"elements"``, ``"kmeans"``)."""
    module = _loaded.get(name)
    if module is None:
        module = _loaded[name] = importlib.import_module(f"{__name__}.{name}")
    return module


def for_count(name: str, count: int):
    """The kernels to decode ``count`` elements with: :mod:`.small` or the Numba module ``name``."""
    if count <= SMALL_COUNT and "numba" not in sys.modules:
        from . import small

        return small
    return jit(name)


def plan_for(elements: int) -> None:
    """Before decoding ``elements`` elements in one call: above :data:`SMALL_COUNT`, load Numba now,
    so that every stream of the call, small ones included, uses the compiled kernels."""
    if elements > SMALL_COUNT and "numba" not in sys.modules:
        import numba  # noqa: F401
