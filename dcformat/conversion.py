"""Codebook conversion (spec §7.2): codebook values to the tensor's dtype, as bit patterns.

Numbers (finite values, infinities, zeros of either sign) convert as IEEE 754 conversions with
round to nearest, ties to even, and without flushing subnormals: numpy's and ml_dtypes' casts do
that on every platform. NaNs do not have one rule across platforms (numpy's float16 casts use the
CPU's conversion instructions on some builds, which quiet signalling NaNs, and software elsewhere,
which does not), so every NaN is converted here by the bit-level rules of spec §7.2, written out:

========== ========== ========================================================================
codebook   tensor     NaN ``x`` (sign ``s``, significand ``m``) becomes
========== ========== ========================================================================
F32        F16        ``s << 15 | 0x7C00 | max(m >> 13, 1)``
F32        BF16       ``s << 15 | 0x7FC0``
F32        F64        ``s << 63 | 0x7FF8_0000_0000_0000 | m << 29``
F16        F32        ``s << 31 | 0x7F80_0000 | m << 13``
F16        F64        ``s << 63 | 0x7FF0_0000_0000_0000 | m << 42``
F16        BF16       ``s << 15 | 0x7FC0``
========== ========== ========================================================================

(what the reference decoder always returned on x86-64: numpy's software float16 conversion,
ml_dtypes' bfloat16 conversion, and the CPU's float32 to float64 conversion).
A codebook of the tensor's own dtype is copied bit for bit.
"""
from __future__ import annotations

import numpy as np

from .constants import DTYPE_SIZE, ELEMENT_DTYPE, CodebookDType, DType

_SOURCE = {CodebookDType.F32: (np.dtype("<f4"), 23, 8), CodebookDType.F16: (np.dtype("<f2"), 10, 5)}
"""codebook dtype -> (numpy dtype, significand bits, exponent bits)."""


def _nan_bits(sign: np.ndarray, significand: np.ndarray, source: CodebookDType, target: DType) -> np.ndarray:
    """The spec's bit pattern of each NaN (``sign``, ``significand`` as uint64) in ``target``."""
    if target == DType.BF16:
        return (sign << 15) | 0x7FC0
    if source == CodebookDType.F32 and target == DType.F16:
        return (sign << 15) | 0x7C00 | np.maximum(significand >> 13, 1)
    if source == CodebookDType.F32 and target == DType.F64:
        return (sign << 63) | 0x7FF8_0000_0000_0000 | (significand << 29)
    if source == CodebookDType.F16 and target == DType.F32:
        return (sign << 31) | 0x7F80_0000 | (significand << 13)
    if source == CodebookDType.F16 and target == DType.F64:
        return (sign << 63) | 0x7FF0_0000_0000_0000 | (significand << 42)
    raise ValueError(f"no conversion from codebook {CodebookDType(source).name} to {DType(target).name}")


def convert_codebook(raw: np.ndarray, codebook_dtype: int, dtype: int) -> np.ndarray:
    """Codebook elements ``raw`` (unsigned bit patterns of ``codebook_dtype``) converted to
    ``dtype`` (F32, F16, BF16 or F64), returned as unsigned bit patterns of ``dtype``'s size."""
    from .structures import numpy_dtype

    source = CodebookDType(codebook_dtype)
    target = DType(dtype)
    source_dtype, significand_bits, exponent_bits = _SOURCE[source]
    target_bits = ELEMENT_DTYPE[DTYPE_SIZE[target]]
    values = np.ascontiguousarray(raw).view(source_dtype)
    if numpy_dtype(target) == source_dtype:
        return values.view(target_bits).copy()
    with np.errstate(over="ignore", invalid="ignore"):
        out = values.astype(numpy_dtype(target)).view(target_bits)
    nan = np.isnan(values)
    if nan.any():
        bits = raw[nan].astype(np.uint64)
        sign = bits >> np.uint64(significand_bits + exponent_bits)
        significand = bits & np.uint64((1 << significand_bits) - 1)
        out[nan] = _nan_bits(sign, significand, source, target).astype(target_bits)
    return out
