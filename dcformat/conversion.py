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
A codebook of the tensor's own dtype is copied bit for bit (the only codebook a float8 tensor of
version 1.2 has, spec §7.2).

Float8 (version 1.2, spec §4.3): :func:`float8_to_float32_bits` is the spec's conversion of every
one of the 256 codes of F8_E4M3 and F8_E5M2 to float32 (exact for numbers; a NaN keeps its sign and
significand, not quieted), computed from the bits here, not by a library; :func:`float32_to_float8`
is the writer's rounding (to nearest, ties to even) of float32 values, such as the centroids of a
lossy codebook, to a float8 type.
"""
from __future__ import annotations

import numpy as np

from .constants import DTYPE_SIZE, ELEMENT_DTYPE, FLOAT8_DTYPES, CodebookDType, DType

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
    if source in FLOAT8_DTYPES or target in FLOAT8_DTYPES:  # spec §7.2: a float8 codebook, copied
        if int(source) != int(target):
            raise ValueError(f"no conversion from codebook {source.name} to {target.name}")
        return np.ascontiguousarray(raw).view(np.uint8).copy()
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


# --------------------------------------------------------------------------------------------
# float8 (version 1.2, spec §4.3)

FLOAT8_FORMATS = {DType.F8_E4M3: (4, 3), DType.F8_E5M2: (5, 2)}
"""float8 dtype -> (exponent bits, significand bits). The exponent bias is 2 ** (E - 1) - 1."""


def _float8_float32_table(dtype: DType) -> np.ndarray:
    """The float32 bit pattern of each of the 256 codes of ``dtype`` (spec §4.3), from the bits."""
    exponent_bits, significand_bits = FLOAT8_FORMATS[DType(dtype)]
    bias = (1 << (exponent_bits - 1)) - 1
    top = (1 << exponent_bits) - 1
    out = np.zeros(256, np.uint32)
    for code in range(256):
        sign = (code >> 7) << 31
        e = (code >> significand_bits) & top
        m = code & ((1 << significand_bits) - 1)
        nan = (e == top and m == (1 << significand_bits) - 1) if dtype == DType.F8_E4M3 else (e == top and m)
        if nan:  # sign kept, significand shifted into place, not quieted
            out[code] = sign | 0x7F80_0000 | (m << (23 - significand_bits))
        elif dtype == DType.F8_E5M2 and e == top:
            out[code] = sign | 0x7F80_0000
        elif e == 0 and m == 0:
            out[code] = sign
        else:
            if e == 0:  # subnormal: m x 2^(1 - bias - significand_bits); normalise it
                e = 1
                while not m & (1 << significand_bits):
                    m <<= 1
                    e -= 1
            out[code] = sign | ((e - bias + 127) << 23) | ((m & ((1 << significand_bits) - 1)) << (23 - significand_bits))
    return out


_FLOAT8_TABLES: dict = {}


def float8_float32_table(dtype) -> np.ndarray:
    """The spec's float32 bits of each code 0 ... 255 of the float8 ``dtype`` (read-only)."""
    dtype = DType(dtype)
    if dtype not in _FLOAT8_TABLES:
        table = _float8_float32_table(dtype)
        table.flags.writeable = False
        _FLOAT8_TABLES[dtype] = table
    return _FLOAT8_TABLES[dtype]


def float8_to_float32_bits(codes: np.ndarray, dtype) -> np.ndarray:
    """float8 elements (their codes: uint8, or an ml_dtypes float8 array) converted to float32 by
    the rules of spec §4.3, returned as uint32 bit patterns of the same shape."""
    shape = np.shape(codes)  # ascontiguousarray would make a 0-d array 1-d
    codes = np.ascontiguousarray(codes).reshape(-1)
    return float8_float32_table(dtype)[codes.view(np.uint8)].reshape(shape)


def float8_to_float32(array: np.ndarray) -> np.ndarray:
    """An ml_dtypes float8 array (float8_e4m3fn or float8_e5m2) as float32 by spec §4.3 (NaNs keep
    their sign and significand, which ml_dtypes' own cast does not)."""
    from .structures import dtype_of

    return float8_to_float32_bits(array, dtype_of(array.dtype)).view(np.float32)


def float32_to_float8(values: np.ndarray, dtype) -> np.ndarray:
    """float32 ``values`` rounded to the float8 ``dtype`` (to nearest, ties to the even code), as
    uint8 codes. -0.0 and negative values that round to zero keep the sign; a NaN becomes the NaN
    code of its sign with the largest significand (0x7F: the only one F8_E4M3 has). A finite
    magnitude above the type's largest finite value (448, 57344) is a ValueError: F8_E4M3 has no
    infinity, and a writer should not make one by rounding."""
    dtype = DType(dtype)
    table = float8_float32_table(dtype)
    largest = 0x7E if dtype == DType.F8_E4M3 else 0x7B  # the largest finite positive code
    magnitudes = table[:largest + 1].view(np.float32).astype(np.float64)  # increasing with the code
    x = np.ascontiguousarray(values, np.float32).reshape(-1)
    sign = (x.view(np.uint32) >> 31).astype(np.uint8) << 7
    a = np.abs(x.astype(np.float64))
    nan = np.isnan(a)
    inf = np.isinf(a)
    finite = ~nan & ~inf
    if (a[finite] > magnitudes[-1]).any():
        worst = float(x[finite][np.argmax(a[finite])])
        raise ValueError(f"{worst!r} is outside the range of {dtype.name} (largest {float(magnitudes[-1])})")
    if dtype == DType.F8_E4M3 and inf.any():
        raise ValueError(f"{dtype.name} has no infinity")
    hi = np.clip(np.searchsorted(magnitudes, np.where(finite, a, 0)), 0, largest)
    lo = np.maximum(hi - 1, 0)
    down, up = np.where(finite, a, 0) - magnitudes[lo], magnitudes[hi] - np.where(finite, a, 0)
    pick = np.where((up < down) | ((up == down) & (hi % 2 == 0)), hi, lo).astype(np.uint8)
    code = sign | pick
    code[inf] = sign[inf] | 0x7C  # F8_E5M2's infinity
    code[nan] = sign[nan] | 0x7F
    return code.reshape(np.shape(values))
