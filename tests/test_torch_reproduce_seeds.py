"""The seeds' experiments: data builders, CIFAR-10's binary reader, per-filter pruning at a compress
rate, decode-and-evaluate, and the whole command (slow)."""
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dcformat.torch import Pruner, TrainedQuantizer, find_layers  # noqa: E402
from dcformat.torch import reproduce_seeds as rs  # noqa: E402
from dcformat.torch.data import Digits  # noqa: E402
from dcformat.torch.seeds_data import (  # noqa: E402
    CIFAR10_RECORD, digit_masks, noisy_digits, point_clouds, read_cifar10, read_cifar10_batch)
from dcformat.torch.seeds_models import VGGBN, PointNet, ResNetSmall, UNet  # noqa: E402
from dcformat.torch.seeds_tasks import build_tasks  # noqa: E402


def _digits(n_train=96, n_test=40, seed=0):
    """Synthetic 28×28 'digits': a class-dependent bar of ink on a faint random background."""
    rng = np.random.default_rng(seed)

    def make(n):
        y = rng.integers(0, 10, n)
        x = rng.random((n, 1, 28, 28), dtype=np.float32) * 0.2
        for i, c in enumerate(y):
            x[i, 0, 2 + 2 * c: 5 + 2 * c, 4:24] = 1.0
        return x, y.astype(np.int64)

    x_tr, y_tr = make(n_train)
    x_te, y_te = make(n_test)
    return Digits(x_tr, y_tr, x_te, y_te, "synthetic bars: test")


# ------------------------------------------------------------------------------------------------
# Data builders


def test_digit_masks_are_the_pixels_above_the_threshold():
    x = np.array([[[0.0, 0.5], [0.51, 1.0]]], dtype=np.float32)
    m = digit_masks(x, 0.5)
    assert m.dtype == np.float32 and m.shape == (1, 2, 2)
    assert m.tolist() == [[[0.0, 0.0], [1.0, 1.0]]]
    assert digit_masks(x[:, None], 0.5).shape == (1, 2, 2)  # (N, 1, H, W) accepted too
    with pytest.raises(ValueError):
        digit_masks(x * 2)  # outside [0, 1]


def test_noisy_digits_are_deterministic_by_seed():
    x = _digits().x_train[:8]
    a, b, c = noisy_digits(x, 0.6, 1), noisy_digits(x, 0.6, 1), noisy_digits(x, 0.6, 2)
    assert a.shape == (8, 1, 28, 28) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert abs(float((a - x).std()) - 0.6) < 0.02  # the noise has the σ asked for


def test_point_clouds_shape_range_determinism_and_ink():
    x = _digits().x_train[:20]
    pc = point_clouds(x, points=128, jitter=0.25, seed=3)
    assert pc.shape == (20, 2, 128) and pc.dtype == np.float32
    assert pc.min() >= -1.0 and pc.max() <= 1.0
    assert np.array_equal(pc, point_clouds(x, points=128, jitter=0.25, seed=3))
    assert not np.array_equal(pc, point_clouds(x, points=128, jitter=0.25, seed=4))
    # Without jitter every point lies inside a pixel with ink, in proportion to its intensity.
    img = np.zeros((1, 28, 28), np.float32)
    img[0, 4:8, 4:24] = 1.0  # 80 pixels of ink 1.0
    img[0, 20:24, 4:24] = 0.25  # 80 pixels of ink 0.25: a fifth of the points
    clean = point_clouds(img, points=4000, jitter=0.0, seed=5)[0]
    cols = np.clip(((clean[0] + 1) / 2 * 28).astype(int), 0, 27)
    rows = np.clip(((clean[1] + 1) / 2 * 28).astype(int), 0, 27)
    ink = img[0][rows, cols]
    assert ink.min() > 0
    assert abs(float((ink == 0.25).mean()) - 0.2) < 0.03
    with pytest.raises(ValueError, match="no ink"):
        point_clouds(np.zeros((2, 28, 28), np.float32))


# ------------------------------------------------------------------------------------------------
# CIFAR-10, binary version


def _write_batch(path, labels, rng):
    pixels = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    records = np.concatenate([np.asarray(labels, np.uint8)[:, None], pixels], 1)
    path.write_bytes(records.tobytes())
    return pixels


def test_cifar10_binary_reader(tmp_path):
    rng = np.random.default_rng(0)
    pixels = [_write_batch(tmp_path / f"data_batch_{i}.bin", [i, 9, 0], rng) for i in range(1, 6)]
    test_pixels = _write_batch(tmp_path / "test_batch.bin", [7, 3], rng)
    data = read_cifar10(tmp_path)
    assert data.x_train.shape == (15, 3, 32, 32) and data.x_test.shape == (2, 3, 32, 32)
    assert data.y_train.tolist() == [1, 9, 0, 2, 9, 0, 3, 9, 0, 4, 9, 0, 5, 9, 0]
    assert data.y_test.tolist() == [7, 3]
    # Record layout: 1024 red bytes, then green, then blue, each plane row by row.
    assert data.x_test[1, 0, 0, 1] == np.float32(test_pixels[1, 1] / 255.0)
    assert data.x_test[1, 1, 0, 0] == np.float32(test_pixels[1, 1024] / 255.0)
    assert data.x_train[14, 2, 31, 31] == np.float32(pixels[4][2, 3071] / 255.0)
    assert data.x_train.min() >= 0 and data.x_train.max() <= 1


def test_cifar10_reader_refuses_bad_files(tmp_path):
    bad = tmp_path / "short.bin"
    bad.write_bytes(b"\x01" * (CIFAR10_RECORD + 5))
    with pytest.raises(ValueError, match="whole number"):
        read_cifar10_batch(bad)
    label = tmp_path / "label.bin"
    label.write_bytes(b"\x0c" + b"\x00" * (CIFAR10_RECORD - 1))
    with pytest.raises(ValueError, match="outside 0..9"):
        read_cifar10_batch(label)
    (tmp_path / "data_batch_1.bin").write_bytes(b"\x00" * CIFAR10_RECORD)
    with pytest.raises(FileNotFoundError, match="data_batch_2.bin"):
        read_cifar10(tmp_path)


# ------------------------------------------------------------------------------------------------
# Per-filter pruning at a compress rate


@pytest.mark.parametrize("make", [VGGBN, ResNetSmall, UNet, PointNet])
@pytest.mark.parametrize("rate", [0.5, 0.7, 0.95])
def test_filter_pruning_keeps_the_same_count_in_every_filter(make, rate):
    torch.manual_seed(0)
    model = make()
    first = next(iter(find_layers(model)))
    before = model.get_submodule(first).weight.detach().clone()
    pruner = Pruner(model)
    pruner.prune_filters(rs.filter_rates(model, rate))
    for name, layer in find_layers(model).items():
        rows = layer.weight.detach().reshape(layer.weight.shape[0], -1)
        nonzero = (rows != 0).sum(1)
        if name == first:
            assert torch.equal(layer.weight.detach(), before)  # the input layer stays whole
            continue
        n = rows.shape[1]
        assert nonzero.tolist() == [n - math.floor(rate * n + 1e-9)] * rows.shape[0], name  # the seed's count
        assert nonzero.min() >= 1
        # the kept weights of each filter are its largest in magnitude
        w0 = rows.abs()
        assert bool((w0.masked_fill(rows == 0, float("inf")).min(1).values
                     >= w0.masked_fill(rows != 0, 0).max(1).values).all())


@pytest.mark.parametrize("make", [VGGBN, ResNetSmall, UNet, PointNet])
def test_spare_output_keeps_the_output_layer_whole(make):
    torch.manual_seed(0)
    model = make()
    names = list(find_layers(model))
    seed_rule, spared = rs.filter_rates(model, 0.9), rs.filter_rates(model, 0.9, spare_output=True)
    assert names[0] not in seed_rule and names[-1] in seed_rule  # the seed prunes the output layer
    assert set(spared) == set(seed_rule) - {names[-1]}
    name, inputs = rs.output_layer_of(model)
    assert name == names[-1] and inputs == model.get_submodule(name).weight[0].numel()
    assert seed_rule[name] == math.floor(0.9 * inputs + 1e-9) / inputs


def test_unet_has_two_class_output_and_iou_counts_foreground():
    tasks = build_tasks(_digits(n_train=16, n_test=8), seed=0, segment_train=8)
    task = tasks["U-Net"]
    model = task.make_model()
    assert model(task.x_test[:3]).shape == (3, 2, 28, 28)
    assert rs.output_layer_of(model) == ("head", 8)

    class Oracle(torch.nn.Module):  # logits that put the target mask's pixels in class 1
        def __init__(self, masks):
            super().__init__()
            self.masks, self.seen = masks, 0

        def forward(self, x):
            m = self.masks[self.seen:self.seen + len(x)]
            self.seen += len(x)
            return torch.stack([1 - m, m], 1)

    perfect = task.evaluate(Oracle(task.y_test))
    assert perfect == {"IoU": 100.0, "pixel accuracy": 100.0}
    background = task.evaluate(Oracle(torch.zeros_like(task.y_test)))
    assert background["IoU"] == 0.0
    assert background["pixel accuracy"] == pytest.approx(100.0 * float((task.y_test == 0).float().mean()))
    loss = task.loss(torch.stack([1 - task.y_train, task.y_train], 1) * 20.0, task.y_train)
    assert float(loss) < 1e-6  # the float masks are the class indices


def test_trained_quantizer_takes_any_k():
    torch.manual_seed(0)
    model = VGGBN()
    Pruner(model).prune(0.5)
    quantizer = TrainedQuantizer(model, k=13)
    for name in quantizer.layers:
        assert quantizer.codebook(name).numel() == 13
        values = torch.unique(model.get_submodule(name).weight.detach())
        assert len(values) == 14  # 13 centroids and the zero of pruned weights
    with pytest.raises(ValueError, match="bits or k"):
        TrainedQuantizer(VGGBN(), bits=4, k=9)


# ------------------------------------------------------------------------------------------------
# Decode-and-evaluate


@pytest.mark.parametrize("network", ["PointNet", pytest.param("VGG-BN", marks=pytest.mark.slow),
                                     pytest.param("U-Net", marks=pytest.mark.slow)])
def test_metric_from_the_dcf_equals_the_in_memory_one(tmp_path, network):
    tasks = build_tasks(_digits(n_train=48, n_test=24), seed=0, segment_train=24)
    task = tasks[network]
    settings = rs.Settings(epochs=1, retrain_epochs=1, quant_epochs=1, bits=4)
    trainer = rs.Trainer(task, 0, progress=False)
    torch.manual_seed(0)
    model = task.make_model()
    trainer.fit(model, rs.adam(model, 2e-3), 1, "train")
    total = sum(p.numel() for p in model.parameters())
    row = rs.compress_at_rate(task, model, 0.8, settings, trainer, tmp_path, total)
    assert row["metric_from_dcf"] == row["metric_shared"]
    assert row["dcf_file_bytes"] == (tmp_path / f"{network.lower()}-rate0.8.dcf").stat().st_size
    assert row["dcf_file_bytes"] < row["sizes"]["float32"]
    assert 0 < row["parameters_kept"] < total
    sparsity = rs.filter_rates(model, 0.8)
    for name, kept in row["kept_per_layer"].items():
        assert kept == pytest.approx(1.0 - sparsity.get(name, 0.0))


def test_network_rows_with_the_output_layer_whole_and_the_report(tmp_path):
    task = build_tasks(_digits(n_train=48, n_test=24), seed=0)["PointNet"]
    settings = rs.Settings(epochs=1, retrain_epochs=1, quant_epochs=1, bits=4)
    result, model = rs.run_network(task, settings, [0.9], 0, False, tmp_path, output_layer="both")
    assert [(row["rate"], row["output_layer"]) for row in result["rates"]] == [(0.9, "pruned")]
    (whole,) = result["rates_output_whole"]
    assert whole["rate"] == 0.9 and whole["output_layer"] == "whole"
    out_name = result["output_layer"]["name"]
    assert out_name == "fc2" and whole["kept_per_layer"][out_name] == 1.0
    assert result["rates"][0]["kept_per_layer"][out_name] == pytest.approx(5 / 48)  # 48 - floor(0.9 * 48)
    assert whole["parameters_kept"] - result["rates"][0]["parameters_kept"] == 10 * (48 - 5)
    assert whole["metric_from_dcf"] == whole["metric_shared"]
    assert (tmp_path / whole["dcf_file"]).stat().st_size == whole["dcf_file_bytes"]
    for row in result["rates"] + [whole]:
        assert set(row["phases"]) == {"prune and retrain", "share", "sizes, write and reload"}
        assert row["cpu_seconds"] > 0 and row["seconds"] > 0
    assert {"train", "rates", "rates, output layer whole"} == set(result["phases"])
    text = rs.report({"PointNet": result}, None, settings, {"wall": 1.0, "cpu": 2.0}, 1,
                     {"PointNet": {"wall": 1.0, "cpu": 2.0}})
    assert "| 0.9, output layer whole |" in text and "c7fb494" in text
    assert "Output layer `fc2`: 48 inputs per filter (the seed's: 256); at 0.9 each of its filters keeps 5" in text


def test_command_line_errors():
    with pytest.raises(SystemExit):
        rs.main(["--networks", "AlexNet"])
    with pytest.raises(SystemExit):
        rs.main(["--rates", "0.5,1.2"])
    with pytest.raises(SystemExit):
        rs.main(["--quick", "--full"])


# ------------------------------------------------------------------------------------------------
# The whole command


@pytest.mark.slow
def test_quick_run_writes_the_seeds_tables(tmp_path):
    pytest.importorskip("mlxtend")
    assert rs.main(["--quick", "--no-progress", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["networks"]) == list(rs.NETWORKS)
    for name, r in results["networks"].items():
        assert [row["rate"] for row in r["rates"]] == list(rs.RATES)
        for row in r["rates"]:
            assert row["metric_from_dcf"] == row["metric_shared"]
            assert row["dcf_file_bytes"] < r["uncompressed"]["sizes"]["float32"]
        kept = [row["parameters_kept"] for row in r["rates"]]
        assert kept == sorted(kept, reverse=True)
        assert [row["rate"] for row in r["rates_output_whole"]] == list(rs.WHOLE_OUTPUT_RATES)
        for row in r["rates_output_whole"]:
            assert row["metric_from_dcf"] == row["metric_shared"]
            assert row["kept_per_layer"][r["output_layer"]["name"]] == 1.0
    assert set(results["stages"]) == {"data", *rs.NETWORKS, "k sweep", "figures"}
    assert results["cpu_seconds"] > 0
    sweep = results["k_sweep"]
    assert [row.get("k") for row in sweep["shared"]][:4] == list(rs.K_SWEEP)
    for row in sweep["shared"]:
        assert row["accuracy_from_dcf"] == row["accuracy"]
    for name in ("report.md", "rates.png", "k-sweep.png", "tasks.png", "vgg-bn-pruned-weights.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "85.16%" in (tmp_path / "report.md").read_text()
