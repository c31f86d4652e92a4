"""Export of the exact trained values, import back, and the whole API on a ResNet-style CNN."""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # tiny models: one thread is as fast, and never waits on a busy core

import dcformat  # noqa: E402
from dcformat.tensors import CodebookTensor  # noqa: E402
from dcformat.torch import (  # noqa: E402
    DynamicSurgery,
    INQuantizer,
    Pruner,
    TrainedQuantizer,
    load_dcf,
    load_dcf_tensors,
    prune_schedule,
    save_dcf,
    sensitivity_scan,
    to_dcf_tensors,
)
from dcformat.torch.models import LeNet5, LeNet300100, TinyResNet  # noqa: E402

F = torch.nn.functional


def train(model, optimizer, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        x, y = torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()


def assert_exported_exactly(model, tensors):
    state = {k: v for k, v in model.state_dict().items() if "parametrizations" not in k}
    for name, value in tensors.items():
        module_name, _, attr = name.rpartition(".")
        actual = getattr(model.get_submodule(module_name), attr).detach().numpy()
        decoded = value.decode() if isinstance(value, CodebookTensor) else value
        assert decoded.dtype == actual.dtype and decoded.shape == actual.shape
        assert np.array_equal(np.atleast_1d(decoded).view(np.uint8), np.atleast_1d(actual).view(np.uint8)), name
        if name in state:
            assert np.array_equal(decoded, state[name].numpy())


def test_model_sizes_match_the_paper():
    def weights(model):
        return sum(m.weight.numel() for m in model.modules() if hasattr(m, "weight"))
    assert weights(LeNet300100()) == 266_200
    assert weights(LeNet5()) == 430_500


def test_quantized_export_decodes_to_the_model_weights_and_loads_back():
    torch.manual_seed(0)
    model = LeNet5()
    pruner = Pruner(model)
    pruner.prune({"conv1": 0.3, "conv2": 0.85, "ip1": 0.92, "ip2": 0.8})
    pruner.remove()
    TrainedQuantizer(model, bits={"conv1": 8, "conv2": 8, "ip1": 5, "ip2": 5})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train(model, optimizer, 3)
    tensors = to_dcf_tensors(model)
    assert sorted(tensors) == sorted(LeNet5().state_dict())
    for name in ("conv1.weight", "conv2.weight", "ip1.weight", "ip2.weight"):
        shared = tensors[name]
        assert isinstance(shared, CodebookTensor)
        layer = model.get_submodule(name.split(".")[0])
        assert np.array_equal(shared.codebook, layer.parametrizations.weight.original.detach().numpy())
        assert np.array_equal(shared.indices == -1, layer.weight.detach().numpy() == 0)
    assert tensors["ip1.weight"].codebook.size <= 32
    assert_exported_exactly(model, tensors)

    fresh = LeNet5()
    load_dcf_tensors(fresh, tensors)
    x = torch.randn(8, 1, 28, 28)
    assert torch.equal(fresh(x), model(x))
    with pytest.raises(ValueError, match="parametrized"):
        load_dcf_tensors(model, tensors)


@pytest.mark.skipif(not hasattr(dcformat, "save_file"), reason="the .dcf writer is not there yet")
def test_dcf_file_round_trip(tmp_path):
    torch.manual_seed(1)
    model = LeNet300100()
    Pruner(model).prune(0.9)
    TrainedQuantizer(model, bits=6)
    save_dcf(model, tmp_path / "lenet.dcf", {"source": "test"})
    fresh = LeNet300100()
    load_dcf(fresh, tmp_path / "lenet.dcf")
    x = torch.randn(8, 784)
    assert torch.equal(fresh(x), model(x))


def test_the_whole_api_runs_unchanged_on_a_resnet_style_cnn():
    torch.manual_seed(2)
    model = TinyResNet()
    x = torch.randn(32, 1, 28, 28)
    y = model.eval()(x).argmax(1)

    def evaluate(m):
        m.eval()
        with torch.no_grad():
            return float((m(x).argmax(1) == y).float().mean())

    scan = sensitivity_scan(model, evaluate, sparsities=(0.0, 0.9))
    assert len(scan) == 7 and all(r[0][1] == 1.0 for r in scan.values())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    pruner = Pruner(model)
    pruner.attach(optimizer)
    for target in prune_schedule(0.7, 2):
        pruner.prune(target)
        train(model, optimizer, 2)
    pruner.prune_filters({"stem": 0.8})
    train(model, optimizer, 1)
    masks = {n: m.clone() for n, m in pruner.masks.items()}
    pruner.remove()

    surgery_model = TinyResNet()
    surgery_model.load_state_dict(model.state_dict())
    dns_optimizer = torch.optim.SGD(surgery_model.parameters(), lr=0.05)
    dns = DynamicSurgery(surgery_model, 0.5, gamma=1e-2)
    dns.attach(dns_optimizer)
    train(surgery_model, dns_optimizer, 3)
    assert_exported_exactly(surgery_model, to_dcf_tensors(surgery_model))
    dns.remove()

    inq_model = TinyResNet()
    inq_model.load_state_dict(model.state_dict())
    inq_optimizer = torch.optim.SGD(inq_model.parameters(), lr=0.01, momentum=0.9)
    inq = INQuantizer(inq_model, bits=5)
    inq.attach(inq_optimizer)
    while not inq.done:
        inq.quantize_next()
        train(inq_model, inq_optimizer, 1)
    assert_exported_exactly(inq_model, to_dcf_tensors(inq_model))

    quantizer = TrainedQuantizer(model, bits=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    quantizer.attach(optimizer)
    train(model, optimizer, 2)
    for name, layer in quantizer.layers.items():
        assert (layer.weight[~masks[name]] == 0).all()
    tensors = to_dcf_tensors(model)
    assert sum(isinstance(v, CodebookTensor) for v in tensors.values()) == 7
    assert_exported_exactly(model, tensors)
    fresh = TinyResNet()
    load_dcf_tensors(fresh, tensors)
    model.eval()
    fresh.eval()
    assert torch.equal(fresh(x), model(x))


def test_the_core_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None; import importlib, pkgutil, dcformat; "
            "[importlib.import_module(m.name) for m in pkgutil.walk_packages(dcformat.__path__, 'dcformat.') "
            "if not m.name.startswith('dcformat.torch')]")
    subprocess.run([sys.executable, "-c", code], check=True)
