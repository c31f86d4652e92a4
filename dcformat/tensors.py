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

    ``codebook``: 1-D float32 or float16 array of ``k`` values (1 <= k <= 65536).
    ``indices``: integer array with the tensor's shape; each element is an index into ``codebook``
    or ``ZERO_INDEX`` (-1) for an element that is exactly zero (a pruned weight).
    ``dtype``: the dtype of the decoded tensor (float32 by default; float16, bfloat16, float64).

    This is the exact value a model was trained with: the writer stores ``codebook`` bit for bit,
    and decoding gives ``codebook[indices]`` with zeros at ``ZERO_INDEX``.
    """

    codebook: np.ndarray
    indices: np.ndarray
    dtype: np.dtype = np.dtype(np.float32)

    def __post_init__(self):
        codebook = np.asarray(self.codebook)
        indices = np.asarray(self.indices)
        if codebook.ndim != 1 or codebook.dtype not in (np.float32, np.float16):
            raise EncodingError("CodebookTensor.codebook must be a 1-D float32 or float16 array")
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
        table = np.concatenate([self.codebook.astype(self.dtype), np.zeros(1, self.dtype)])
        return table[np.where(self.indices < 0, self.codebook.size, self.indices)]
