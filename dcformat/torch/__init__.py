"""Training-time compression for torch models, in the user's own training loop.

Each method wraps a model's Linear and Conv layers and acts through hooks: a hook on each weight
during ``backward``, and :meth:`step` after ``optimizer.step()`` (automatic after
``wrapper.attach(optimizer)``):

- :class:`Pruner`: iterative magnitude pruning with retraining (Deep Compression §2), with
  :func:`prune_schedule` and :func:`sensitivity_scan`;
- :class:`TrainedQuantizer`: k-means weight sharing with fine-tuned centroids (§3);
- :class:`DynamicSurgery`: Dynamic Network Surgery (Guo et al. 2016);
- :class:`INQuantizer`: Incremental Network Quantization (Zhou et al. 2017);
- :func:`to_dcf_tensors`, :func:`load_dcf_tensors`, :func:`save_dcf`, :func:`load_dcf`: the exact
  trained values to and from a .dcf file;
- :func:`save_file`, :func:`load_file`, :func:`save`, :func:`load`, :func:`open`: torch tensors to
  and from .dcf files, as ``safetensors.torch`` (:mod:`dcformat.torch.io`).

A typical loop::

    pruner = Pruner(model)
    pruner.attach(optimizer)                  # masks re-applied after every optimizer.step()
    for target in prune_schedule(0.9, iterations=4):
        pruner.prune(target)
        train(model, optimizer, epochs=2)     # the user's loop, unchanged
    pruner.remove()
    TrainedQuantizer(model, bits=5)           # weights = codebook[labels] from now on
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)  # trains the centroids
    train(model, optimizer, epochs=2)
    save_dcf(model, "model.dcf")              # codebooks and labels exactly as trained
    load_dcf(fresh_model, "model.dcf")

The core codec does not need torch: ``import dcformat`` works without it.
"""
from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("dcformat.torch needs PyTorch: pip install 'dcformat[torch]'") from exc

from .base import COMPRESSIBLE, find_layers
from .calibrate import calibrate
from .dns import DynamicSurgery
from .export import load_dcf, load_dcf_tensors, save_dcf, to_dcf_tensors
from .inq import INQuantizer
from .io import TorchReader, TorchSlice, load, load_file, open, save, save_file, to_torch  # noqa: A004
from .masks import Pruner, prune_schedule, sensitivity_scan
from .quantization import SharedWeights, TrainedQuantizer, share_layer

__all__ = [
    "COMPRESSIBLE",
    "calibrate",
    "find_layers",
    "Pruner",
    "prune_schedule",
    "sensitivity_scan",
    "TrainedQuantizer",
    "SharedWeights",
    "share_layer",
    "DynamicSurgery",
    "INQuantizer",
    "to_dcf_tensors",
    "load_dcf_tensors",
    "save_dcf",
    "load_dcf",
    "save_file",
    "load_file",
    "save",
    "load",
    "open",
    "TorchReader",
    "TorchSlice",
    "to_torch",
]
