"""Pruner: masks keep pruned weights exactly zero in the user's loop; schedule; sensitivity scan."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # tiny models: one thread is as fast, and never waits on a busy core

from dcformat.compress import pruning  # noqa: E402
from dcformat.torch import Pruner, prune_schedule, sensitivity_scan  # noqa: E402
from dcformat.torch.models import LeNet5, TinyResNet  # noqa: E402

F = torch.nn.functional


def batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def train(model, optimizer, steps, wrapper=None, seed=0):
    for i in range(steps):
        x, y = batch(seed=seed + i)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        if wrapper is not None:
            wrapper.step()


OPTIMIZERS = {
    "sgd-momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=True),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-2),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-1),
}


@pytest.mark.parametrize("make_optimizer", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
@pytest.mark.parametrize("attached", [True, False], ids=["attach", "explicit-step"])
def test_pruned_weights_stay_exactly_zero(make_optimizer, attached):
    torch.manual_seed(0)
    model = LeNet5()
    optimizer = make_optimizer(model.parameters())
    train(model, optimizer, 3)  # momentum and Adam moments are non-zero everywhere now
    pruner = Pruner(model)
    if attached:
        pruner.attach(optimizer)
    for target in prune_schedule(0.8, 2):
        pruner.prune(target)
        for _ in range(3):
            train(model, optimizer, 1, None if attached else pruner)
            for name, layer in pruner.layers.items():
                pruned = layer.weight[~pruner.masks[name]]
                assert pruned.numel() > 0
                assert torch.equal(pruned, torch.zeros_like(pruned))  # +0.0, not merely small
                assert not torch.signbit(pruned).any()
                assert torch.equal(layer.weight.grad[~pruner.masks[name]], torch.zeros_like(pruned))
    assert all(abs(k - 0.2) < 1e-3 for k in pruner.kept().values())
    # The weights that are kept did train.
    assert all(layer.weight[pruner.masks[n]].ne(0).all() for n, layer in pruner.layers.items())


def test_prune_uses_the_shared_primitives_and_masks_only_shrink():
    torch.manual_seed(1)
    model = LeNet5()
    w0 = model.conv2.weight.detach().numpy().copy()
    pruner = Pruner(model)
    kept = pruner.prune({"conv2": 0.5})
    assert kept["conv1"] == 1.0 and kept["conv2"] == 0.5
    assert np.array_equal(pruner.masks["conv2"].numpy(), pruning.magnitude_mask(w0, 0.5))
    first = pruner.masks["conv2"].clone()
    with torch.no_grad():  # a pruned weight cannot come back, even if it were large now
        model.conv2.weight.add_(torch.where(first, 0.0, 100.0))
    pruner.prune({"conv2": 0.75})
    assert not (pruner.masks["conv2"] & ~first).any()
    assert pruner.kept()["conv2"] == 0.25

    w = model.ip1.weight.detach().numpy().copy()
    pruner.prune(quality={"ip1": 1.0})
    assert np.array_equal(pruner.masks["ip1"].numpy(), pruning.threshold_mask(w, 1.0))
    with pytest.raises(ValueError):
        pruner.prune(0.5, quality=1.0)
    with pytest.raises(ValueError):
        pruner.prune({"nope": 0.5})


def test_zeros_at_wrap_time_count_as_pruned():
    model = LeNet5()
    with torch.no_grad():
        model.ip2.weight[:, :100] = 0
    pruner = Pruner(model)
    assert pruner.kept()["ip2"] == pytest.approx(0.8)


def test_prune_filters_prunes_every_filter_alike():
    torch.manual_seed(2)
    model = TinyResNet()
    pruner = Pruner(model)
    kept = pruner.prune_filters(0.5)
    assert kept["fc"] == 1.0  # a float applies to convolutions only
    for name, layer in pruner.layers.items():
        if layer.weight.dim() > 2:
            per_filter = pruner.masks[name].reshape(layer.weight.shape[0], -1).sum(1)
            assert per_filter.unique().numel() == 1
            assert kept[name] == pytest.approx(0.5, abs=0.07)


def test_prune_schedule():
    geometric = prune_schedule(0.9, 3)
    assert geometric[-1] == pytest.approx(0.9)
    kept = [1 - s for s in geometric]
    assert kept[1] / kept[0] == pytest.approx(kept[2] / kept[1])
    assert prune_schedule(0.9, 3, "linear") == pytest.approx([0.3, 0.6, 0.9])
    per_layer = prune_schedule({"a": 0.5, "b": 0.75}, 2)
    assert per_layer[-1] == pytest.approx({"a": 0.5, "b": 0.75})
    with pytest.raises(ValueError):
        prune_schedule(1.0, 2)


def test_sensitivity_scan_restores_the_weights():
    torch.manual_seed(3)
    model = LeNet5()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, _ = batch(8)
    reference = model(x).detach()

    def evaluate(m):  # agreement with the unpruned model's predictions
        return float((m(x).argmax(1) == reference.argmax(1)).float().mean())

    scan = sensitivity_scan(model, evaluate, sparsities=(0.0, 0.5, 0.99), layers=["conv1", "ip1"])
    assert list(scan) == ["conv1", "ip1"]
    assert scan["conv1"][0] == (0.0, 1.0)
    assert [s for s, _ in scan["ip1"]] == [0.0, 0.5, 0.99]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
