"""dcformat.baselines: the yardstick's reference quantizers (int8 per channel, NF4, GGUF), on known blocks."""
import numpy as np
import pytest

from dcformat import baselines
from dcformat.compress import relative_error


def test_int8_per_channel_rounds_each_row_on_its_own_scale():
    w = np.array([[127.0, -63.5, 0.2], [1.0, 0.5, -0.25]], np.float32)
    decoded, payload = baselines.int8_per_channel(w)
    np.testing.assert_allclose(decoded[0], [127, -64, 0], atol=1e-6)  # scale 1: rint(-63.5) = -64 (to even)
    np.testing.assert_allclose(decoded[1], np.rint(w[1] * 127) / 127, atol=1e-7)
    assert len(payload) == w.size + 4 * w.shape[0]


def test_nf4_maps_a_block_onto_the_published_levels():
    levels = baselines.NF4_LEVELS
    assert levels.size == 16 and levels[0] == -1 and levels[7] == 0 and levels[-1] == 1
    w = (np.tile(levels, 4) * 3.0).astype(np.float32)  # one block of 64: the levels times absmax 3
    decoded, payload = baselines.nf4(w)
    np.testing.assert_allclose(decoded, w, rtol=1e-6)
    assert len(payload) == 32 + 4  # 64 codes of 4 bits, one float32 absmax
    nudged = w + np.float32(0.01)  # still nearest to the same levels
    np.testing.assert_allclose(baselines.nf4(nudged)[0] / np.abs(nudged).max(), levels.repeat(1).tolist() * 4, atol=1e-6)


def test_nf4_double_quantization_stores_fewer_bytes_at_about_the_same_error():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.05, (256, 256)).astype(np.float32)
    single, p1 = baselines.nf4(w)
    double, p2 = baselines.nf4(w, double=True)
    assert 8 * len(p1) / w.size == pytest.approx(4.5)
    assert 8 * len(p2) / w.size == pytest.approx(4 + 8 / 64 + 32 / 64 / 256, abs=1e-3)
    e1, e2 = relative_error(w, single), relative_error(w, double)
    assert abs(e2 - e1) < 0.02 * e1  # rounded absmaxes: the error moves either way, a little
    assert not np.array_equal(single, double)
    with pytest.raises(ValueError, match="blocks"):
        baselines.nf4(np.ones(65, np.float32))


def test_gguf_q8_0_and_q4_0_blocks_decode_as_the_layout_says():
    pytest.importorskip("gguf")
    w = np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32)
    decoded, payload = baselines.gguf_quant(w, "Q8_0")
    assert len(payload) == 2 * (2 + 32)  # per 32 weights: a float16 scale, 32 int8
    scale = np.float16(1 / 127)
    assert np.abs(decoded - w).max() <= float(scale) / 2 + 1e-3
    decoded4, payload4 = baselines.gguf_quant(w, "Q4_0")
    assert len(payload4) == 2 * (2 + 16)  # a float16 scale, 32 nibbles
    assert relative_error(w, decoded) < relative_error(w, decoded4) < 0.2


def test_references_name_what_runs_and_what_is_missing():
    refs, missing = baselines.references(gguf_types=("Q8_0", "Q4_0"), nf4_double=False)
    labels = [r.label for r in refs]
    assert labels[0] == "int8 per-channel" and labels[-1] == "NF4 (blocks of 64)"
    if baselines.gguf_available():
        assert labels[1:3] == ["GGUF Q8_0", "GGUF Q4_0"] and missing == []
    else:
        assert missing == ["GGUF Q8_0", "GGUF Q4_0"] and len(labels) == 2
    with pytest.raises(ValueError, match="Q5_K"):
        baselines.references(gguf_types=("Q5_K",))
    with pytest.raises(ValueError, match="Q5_K"):
        baselines.gguf_quant(np.zeros((2, 32), np.float32), "Q5_K")


def test_quantize_tensors_joins_the_payloads_in_order():
    rng = np.random.default_rng(2)
    tensors = {"a": rng.normal(size=(4, 64)).astype(np.float32), "b": rng.normal(size=(2, 64)).astype(np.float32),
               "skipped": np.ones(3, np.float32)}
    decoded, payload = baselines.quantize_tensors(baselines.int8_per_channel, tensors, ["b", "a"])
    assert sorted(decoded) == ["a", "b"]
    assert payload == baselines.int8_per_channel(tensors["b"])[1] + baselines.int8_per_channel(tensors["a"])[1]
    for name in ("a", "b"):
        assert decoded[name].shape == tensors[name].shape and relative_error(tensors[name], decoded[name]) < 0.01
    assert baselines.quantize_tensors(lambda w: None, tensors, ["a"]) is None
