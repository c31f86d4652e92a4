"""Errors of the packing tools. Each is a user error: the CLIs print its message as one line."""
from __future__ import annotations

from ..errors import DCFormatError


class PackError(DCFormatError, ValueError):
    """Base class: packing or unpacking was asked something it cannot do."""


class CheckpointError(PackError):
    """A checkpoint file cannot be read or written (format, content, dtype, name)."""


class RecipeError(PackError):
    """A recipe (dict, JSON file or command-line flags) is invalid."""


class PatternError(RecipeError):
    """A recipe's name pattern (``--keep``, a rule's ``match`` or ``exclude``) matches no tensor: a
    typo that would otherwise silently compress the tensor it meant to protect."""
