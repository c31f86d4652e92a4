"""Dynamic Network Surgery against a naive transcription of the formulas, with the same RNG."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # tiny models: one thread is as fast, and never waits on a busy core

from dcformat.torch import DynamicSurgery, to_dcf_tensors  # noqa: E402
from dcformat.torch.models import LeNet5  # noqa: E402

F = torch.nn.functional


class NaiveSurgery:
    """Guo et al.'s Caffe rule, written out for numpy arrays of full weights."""

    def __init__(self, weights, c_rate, gamma, power, iter_stop, seed):
        self.rng = np.random.default_rng(seed)
        self.gamma, self.power, self.iter_stop = gamma, power, iter_stop
        self.t, self.masks = {}, {}
        for name, w in weights.items():
            a = np.abs(w.astype(np.float64))
            mu = a.sum() / a.size
            sigma = np.sqrt(((a - mu) ** 2).sum() / a.size)
            self.t[name] = max(mu + c_rate[name] * sigma, 0.0)
            self.masks[name] = np.ones(w.shape, dtype=bool)

    def update(self, iteration, weights):
        if iteration >= self.iter_stop:
            return
        for name, w in weights.items():
            if self.rng.random() < (1 + self.gamma * iteration) ** (-self.power):
                m = self.masks[name]
                for i in np.ndindex(w.shape):
                    if m[i] and abs(w[i]) <= np.float32(0.9 * self.t[name]):
                        m[i] = False
                    elif not m[i] and abs(w[i]) > np.float32(1.1 * self.t[name]):
                        m[i] = True


def full_weights(dns):
    return {name: layer.parametrizations.weight.original.detach().numpy().copy()
            for name, layer in dns.layers.items()}


def test_mask_updates_follow_the_formulas():
    torch.manual_seed(0)
    model = LeNet5()
    c_rate = {"conv1": 0.2, "ip2": 1.0}  # small layers: the naive loop is per element
    gamma, power, iter_stop = 0.7, 1.5, 9  # probability falls fast, so some iterations skip
    naive = NaiveSurgery({n: getattr(model, n).weight.detach().numpy() for n in c_rate},
                         c_rate, gamma, power, iter_stop, seed=3)
    naive.update(0, {n: getattr(model, n).weight.detach().numpy() for n in c_rate})
    dns = DynamicSurgery(model, c_rate, gamma=gamma, power=power, iter_stop=iter_stop, seed=3)
    assert list(dns.layers) == ["conv1", "ip2"]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)  # large: weights cross
    dns.attach(optimizer)
    g = torch.Generator().manual_seed(0)
    changes = 0
    for iteration in range(1, 13):
        before = {n: m.clone() for n, m in dns.masks.items()}
        x, y = torch.randn(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()  # the attached hook runs dns.step()
        naive.update(iteration, full_weights(dns))
        assert dns.iteration == iteration
        for name in c_rate:
            assert np.array_equal(dns.masks[name].numpy(), naive.masks[name])
            changes += int((dns.masks[name] != before[name]).sum())
    assert changes > 0
    assert 0 < dns.kept()["ip2"] < 1


def test_forward_uses_masked_weights_and_the_gradient_reaches_all():
    torch.manual_seed(1)
    model = LeNet5()
    dns = DynamicSurgery(model, 0.5, layers=["ip1"])
    mask = dns.mask("ip1")
    assert 0 < mask.float().mean() < 1
    full = model.ip1.parametrizations.weight.original
    assert torch.equal(model.ip1.weight, torch.where(mask, full, 0).detach())
    x = torch.randn(4, 1, 28, 28)
    model(x).square().sum().backward()
    # Straight-through: the gradient of the full weight is that of the masked weight it computes.
    h = F.max_pool2d(model.conv2(F.max_pool2d(model.conv1(x), 2)), 2).flatten(1).detach()
    masked = model.ip1.weight.detach().clone().requires_grad_()
    model.ip2(F.relu(F.linear(h, masked, model.ip1.bias))).square().sum().backward()
    assert torch.allclose(full.grad, masked.grad, rtol=1e-5, atol=1e-6)
    assert full.grad[~mask].abs().sum() > 0
    assert np.array_equal(to_dcf_tensors(model)["ip1.weight"], model.ip1.weight.detach().numpy())
    dns.remove()
    assert isinstance(model.ip1.weight, torch.nn.Parameter)
    assert int((model.ip1.weight == 0).sum()) == int((~mask).sum())


def test_masks_are_fixed_after_iter_stop():
    torch.manual_seed(2)
    model = LeNet5()
    dns = DynamicSurgery(model, 1.0, gamma=0.0, iter_stop=2)
    with torch.no_grad():
        for layer in dns.layers.values():
            layer.parametrizations.weight.original.mul_(-3.0)
    dns.step()  # iteration 1 < 2: an update with probability 1
    after_update = {n: m.clone() for n, m in dns.masks.items()}
    with torch.no_grad():
        for layer in dns.layers.values():
            layer.parametrizations.weight.original.mul_(0.01)
    dns.step()  # iteration 2: stopped
    assert all(torch.equal(after_update[n], m) for n, m in dns.masks.items())
