"""In-memory forms of tensors that a writer accepts besides plain numpy arrays."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import EncodingError

ZERO_INDEX = -1
"""Index value of a :class:`CodebookTensor` element that is zero (pruned), whatever the codebook."""


@dataclass(frozen=True, eq=False)
class CodebookTensor:
    """A weight-shared tensor: a small codebook and, per element, an index into it.

    ``codebook``: 1-D float32 or float16 array of ``k`` values (1 <= k <= 65536); for a float8
    ``dtype``, also an array of that float8 type (ml_dtypes'), stored as it is.
    ``indices``: integer array with the tensor's shape; each element is an index into ``codebook``
    or ``ZERO_INDEX`` (-1) for an element that is exactly zero (a pruned weight).
    ``dtype``: the dtype of the decoded tensor (float32 by default; float16, bfloat16, float64, and
    since format 1.2 ``ml_dtypes.float8_e4m3fn`` and ``float8_e5m2``: their codebook is stored in
    that float8 type, a float32 or float16 one rounded to it to nearest, ties to even, spec §7.2).

    This is the exact value a model was trained with: the writer stores ``codebook`` bit for bit,
    and decoding gives ``codebook[indices]`` with zeros at ``ZERO_INDEX``.
    """

    codebook: np.ndarray
    indices: np.ndarray
    dtype: np.dtype = np.dtype(np.float32)

    def __post_init__(self):
        codebook = np.asarray(self.codebook)
        indices = np.asarray(self.indices)
        float8 = np.dtype(self.dtype).name in ("float8_e4m3fn", "float8_e5m2")
        if codebook.ndim != 1 or not (codebook.dtype in (np.float32, np.float16)
                                      or (float8 and codebook.dtype == np.dtype(self.dtype))):
            raise EncodingError("CodebookTensor.codebook must be a 1-D float32 or float16 array"
                                + (f" (or {np.dtype(self.dtype).name}, the tensor's dtype)" if float8 else ""))
        if not 1 <= codebook.size <= 65536:
            raise EncodingError(f"codebook size must be 1..65536, got {codebook.size}")
        if indices.dtype.kind not in "iu":
            raise EncodingError("CodebookTensor.indices must be an integer array")
        if indices.size and (indices.min() < ZERO_INDEX or indices.max() >= codebook.size):
            raise EncodingError(f"CodebookTensor.indices must lie in -1..{codebook.size - 1}")
        object.__setattr__(self, "codebook", codebook)
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "dtype", np.dtype(self.dtype))

    @property
    def shape(self) -> tuple[int, ...]:
        return self.indices.shape

    def decode(self) -> np.ndarray:
        """The dense tensor this stands for: ``codebook[indices]``, zero where the index is -1."""
        codebook = self.codebook
        if self.dtype.name in ("float8_e4m3fn", "float8_e5m2") and codebook.dtype != self.dtype:
            from .conversion import float32_to_float8  # the writer's rounding, not ml_dtypes' cast
            from .structures import dtype_of

            codebook = float32_to_float8(codebook.astype(np.float32), dtype_of(self.dtype)).view(self.dtype)
        table = np.concatenate([codebook.astype(self.dtype), np.zeros(1, self.dtype)])
        return table[np.where(self.indices < 0, self.codebook.size, self.indices)]
