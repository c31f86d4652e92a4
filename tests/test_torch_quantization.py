"""Trained quantization: weights are codebook[labels] at every step; centroid gradient = cluster sum."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # tiny models: one thread is as fast, and never waits on a busy core

from dcformat.compress import sharing  # noqa: E402
from dcformat.torch import Pruner, TrainedQuantizer  # noqa: E402
from dcformat.torch.models import LeNet300100  # noqa: E402

F = torch.nn.functional


def data(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 784, generator=g), torch.randint(0, 10, (n,), generator=g)


def pruned_model(seed=0):
    torch.manual_seed(seed)
    model = LeNet300100()
    Pruner(model).prune({"ip1": 0.9, "ip2": 0.8})
    return model


def test_shares_weights_with_the_kmeans_primitive():
    model = pruned_model()
    w = model.ip1.weight.detach().numpy().copy()
    q = TrainedQuantizer(model, bits={"ip1": 4, "ip2": 3})
    assert list(q.layers) == ["ip1", "ip2"]
    expected = sharing.share_weights(w, None, 4)
    assert np.array_equal(q.codebook("ip1").detach().numpy(), expected.codebook)
    assert np.array_equal(q.labels("ip1").numpy(), expected.indices)
    assert np.array_equal(model.ip1.weight.detach().numpy(), expected.decode())
    assert q.codebook("ip2").numel() <= 8
    assert not hasattr(model.ip3, "parametrizations")  # not named, not quantized


@pytest.mark.parametrize("make_optimizer", [
    lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9, weight_decay=1e-2),
    lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=1e-2),
], ids=["sgd-momentum", "adam"])
def test_weights_equal_codebook_of_labels_after_steps(make_optimizer):
    model = pruned_model()
    pruned = {name: getattr(model, name).weight.detach() == 0 for name in ("ip1", "ip2", "ip3")}
    q = TrainedQuantizer(model, bits=5)
    optimizer = make_optimizer(model.parameters())
    q.attach(optimizer)
    start = {name: q.codebook(name).detach().clone() for name in q.layers}
    for step in range(4):
        x, y = data(seed=step)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        for name, layer in q.layers.items():
            codebook = q.codebook(name).detach().numpy()
            labels = q.labels(name).numpy()
            expected = np.where(labels < 0, np.float32(0), codebook[labels])
            assert np.array_equal(layer.weight.detach().numpy(), expected)
            assert np.array_equal(labels < 0, pruned[name].numpy())  # pruned stay pruned
    assert all(not torch.equal(start[name], q.codebook(name)) for name in q.layers)  # centroids trained


def test_centroid_gradient_is_the_cluster_sum_of_weight_gradients():
    model = pruned_model(1)
    q = TrainedQuantizer(model, bits=4)
    x, y = data(seed=5)
    F.cross_entropy(model(x), y).backward()

    # The same forward with plain leaf weights, to get the gradient of every weight.
    weights = {name: layer.weight.detach().clone().requires_grad_() for name, layer in q.layers.items()}
    h = F.relu(F.linear(x, weights["ip1"], model.ip1.bias))
    h = F.relu(F.linear(h, weights["ip2"], model.ip2.bias))
    F.cross_entropy(F.linear(h, weights["ip3"], model.ip3.bias), y).backward()

    for name in q.layers:
        labels = q.labels(name).numpy().ravel()
        grad = weights[name].grad.numpy().astype(np.float64).ravel()
        k = q.codebook(name).numel()
        manual = np.array([grad[labels == c].sum() for c in range(k)])
        np.testing.assert_allclose(q.codebook(name).grad.numpy(), manual, rtol=1e-4, atol=1e-6)


def test_attach_wants_an_optimizer_of_the_codebooks():
    model = pruned_model()
    pruner = Pruner(model)
    old = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x, y = data()
    F.cross_entropy(model(x), y).backward()
    old.step()  # momentum buffers of the full weights
    q = TrainedQuantizer(model, bits=3)
    with pytest.raises(ValueError, match="does not hold the codebook"):
        q.attach(old)
    with pytest.raises(RuntimeError, match="remove"):  # the pruner is still active
        pruner.step()
    pruner.remove()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    q.attach(optimizer)
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    assert all(q.codebook(name).grad is not None for name in q.layers)


def test_remove_leaves_plain_weights_with_the_shared_values():
    model = pruned_model()
    q = TrainedQuantizer(model, bits=3)
    values = {name: layer.weight.detach().clone() for name, layer in q.layers.items()}
    q.remove()
    for name, layer in q.layers.items():
        assert isinstance(layer.weight, torch.nn.Parameter)
        assert torch.equal(layer.weight, values[name])
        assert layer.weight.unique().numel() <= 9  # 8 centroids and zero
