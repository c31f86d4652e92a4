"""Post-training Deep Compression of whole checkpoints, and its accounting.

    from dcformat.pack import pack, unpack, layer_table
    result = pack("model.safetensors", "model.dcf", {"rules": [{"rank": 2, "sparsity": 0.9, "bits": 5}]})
    print(layer_table("model.dcf", result.tensors).to_markdown())
    unpack("model.dcf", "restored.safetensors")

- :mod:`.checkpoints`: read/write ``.safetensors``, ``.pt``/``.pth`` and ``.npz``;
- :mod:`.recipe`: rules (name pattern, rank, size) that give each tensor a policy;
- :mod:`.packer`: prune, share weights, write, verify; unpack;
- :mod:`.tables`: the per-layer table, the U / U+Q / P / P+Q stage table, fidelity;
- :mod:`.budget` and :mod:`.sweep`: error budgets, per tensor and swept over many budgets.

The command-line tools ``dcpack``, ``dcunpack`` and ``dctable`` wrap these functions.
"""
from .checkpoints import load_checkpoint, save_checkpoint
from .errors import CheckpointError, PackError, PatternError, PickledObjectsError, RecipeError, TargetTooSmall
from .packer import PackResult, TensorReport, compare, compress_tensor, pack, unpack
from .recipe import Policy, Recipe, Rule, budget_recipe, preset_recipe
from .sweep import Sweep, allocation_table, budget_sweep, plot_sweep, sweep_table
from .tables import Table, analyze_file, fidelity_table, layer_table, stage_table

__all__ = [
    "CheckpointError", "PackError", "PackResult", "PatternError", "PickledObjectsError", "Policy", "Recipe",
    "RecipeError", "Rule", "Sweep", "Table", "TargetTooSmall",
    "TensorReport", "allocation_table", "analyze_file", "budget_recipe", "budget_sweep", "compare", "compress_tensor",
    "fidelity_table", "layer_table", "load_checkpoint", "pack", "plot_sweep", "preset_recipe", "save_checkpoint",
    "stage_table", "sweep_table", "unpack",
]
