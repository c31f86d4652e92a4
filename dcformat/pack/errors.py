"""Errors of the packing tools. Each is a user error: the CLIs print its message as one line."""
from __future__ import annotations

import os

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


class PickledObjectsError(CheckpointError):
    """A torch file holds pickled Python objects (a whole ``nn.Module``, an optimizer object, a
    class of the user's), which ``torch.load(weights_only=True)`` refuses and dcformat never
    unpickles. :attr:`objects` names them (``torch.nn.modules.linear.Linear``), read from the
    pickle's opcodes without running any of it."""

    def __init__(self, path, objects):
        self.path, self.objects = os.fspath(path), list(objects)
        shown = ", ".join(self.objects[:3]) + (f" and {len(self.objects) - 3} more" if len(self.objects) > 3 else "")
        super().__init__(f"{self.path!r}: holds pickled Python objects ({shown}), which dcformat never "
                         "unpickles (torch.load(weights_only=True)); save the state dict instead: "
                         "torch.save(model.state_dict(), path)")


class TargetTooSmall(PackError):
    """``dcpack --target-size``: the target is below the smallest file the checkpoint reaches
    (:attr:`smallest`, in bytes); nothing was written."""

    def __init__(self, smallest: int, target: int):
        self.smallest, self.target = int(smallest), int(target)
        super().__init__(f"--target-size {self.target:,} bytes is below the smallest file this checkpoint reaches, "
                         f"{self.smallest:,} bytes (every searched tensor pruned to its cheapest encoding)")
