"""The fidelity benchmark's reference quantizers (tools/bench_fidelity.py), on known blocks."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import bench_fidelity as bf  # noqa: E402

from dcformat.compress import relative_error  # noqa: E402


def test_int8_per_channel_rounds_each_row_on_its_own_scale():
    w = np.array([[127.0, -63.5, 0.2], [1.0, 0.5, -0.25]], np.float32)
    decoded, payload = bf.int8_per_channel(w)
    np.testing.assert_allclose(decoded[0], [127, -64, 0], atol=1e-6)  # scale 1: rint(-63.5) = -64 (to even)
    np.testing.assert_allclose(decoded[1], np.rint(w[1] * 127) / 127, atol=1e-7)
    assert len(payload) == w.size + 4 * w.shape[0]


def test_nf4_maps_a_block_onto_the_published_levels():
    levels = bf.NF4_LEVELS
    assert levels.size == 16 and levels[0] == -1 and levels[7] == 0 and levels[-1] == 1
    w = (np.tile(levels, 4) * 3.0).astype(np.float32)  # one block of 64: the levels times absmax 3
    decoded, payload = bf.nf4(w)
    np.testing.assert_allclose(decoded, w, rtol=1e-6)
    assert len(payload) == 32 + 4  # 64 codes of 4 bits, one float32 absmax
    nudged = w + np.float32(0.01)  # still nearest to the same levels
    np.testing.assert_allclose(bf.nf4(nudged)[0] / np.abs(nudged).max(), levels.repeat(1).tolist() * 4, atol=1e-6)


def test_nf4_double_quantization_stores_fewer_bytes_at_about_the_same_error():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.05, (256, 256)).astype(np.float32)
    single, p1 = bf.nf4(w)
    double, p2 = bf.nf4(w, double=True)
    assert 8 * len(p1) / w.size == pytest.approx(4.5)
    assert 8 * len(p2) / w.size == pytest.approx(4 + 8 / 64 + 32 / 64 / 256, abs=1e-3)
    e1, e2 = relative_error(w, single), relative_error(w, double)
    assert abs(e2 - e1) < 0.02 * e1  # rounded absmaxes: the error moves either way, a little
    assert not np.array_equal(single, double)
    with pytest.raises(ValueError, match="blocks"):
        bf.nf4(np.ones(65, np.float32))


def test_gguf_q8_0_and_q4_0_blocks_decode_as_the_layout_says():
    pytest.importorskip("gguf")
    w = np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32)
    decoded, payload = bf.gguf_quant(w, "Q8_0")
    assert len(payload) == 2 * (2 + 32)  # per 32 weights: a float16 scale, 32 int8
    scale = np.float16(1 / 127)
    assert np.abs(decoded - w).max() <= float(scale) / 2 + 1e-3
    decoded4, payload4 = bf.gguf_quant(w, "Q4_0")
    assert len(payload4) == 2 * (2 + 16)  # a float16 scale, 32 nibbles
    assert relative_error(w, decoded) < relative_error(w, decoded4) < 0.2


def test_ecsq_midpoint_is_within_budget_and_uses_grid_points():
    rng = np.random.default_rng(1)
    w = rng.laplace(0, 0.02, (128, 96)).astype(np.float32)
    for budget in (0.01, 0.1):
        c = bf.ecsq_midpoint(w, budget)
        assert 0.95 * budget < relative_error(w, c.decode()) <= budget
        steps = np.diff(c.codebook.astype(np.float64))
        assert np.allclose(steps / steps.min(), np.rint(steps / steps.min()), atol=1e-3)  # on one grid
