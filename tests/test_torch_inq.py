"""INQ: portions by magnitude, frozen quantized weights, power-of-two levels."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # tiny models: one thread is as fast, and never waits on a busy core

from dcformat.tensors import CodebookTensor  # noqa: E402
from dcformat.torch import INQuantizer, Pruner, to_dcf_tensors  # noqa: E402
from dcformat.torch.models import LeNet300100  # noqa: E402

F = torch.nn.functional


def train(model, optimizer, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(16, 784, generator=g), torch.randint(0, 10, (16,), generator=g)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()


@pytest.mark.parametrize("portions", [(0.5, 0.75, 0.875, 1.0), (0.3, 0.6, 0.8, 1.0)])
def test_portions_by_magnitude_frozen_and_powers_of_two(portions):
    torch.manual_seed(0)
    model = LeNet300100()
    with torch.no_grad():
        model.ip2.weight[:10] = 0  # pruned before INQ: frozen at zero, not in the portions
    eligible = {n: getattr(model, n).weight.detach() != 0 for n in ("ip1", "ip2", "ip3")}
    s = {n: float(getattr(model, n).weight.detach().abs().max()) for n in eligible}
    inq = INQuantizer(model, bits=5, portions=portions)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    inq.attach(optimizer)
    for step, portion in enumerate(portions[:-1]):
        before = {n: layer.weight.detach().clone() for n, layer in inq.layers.items()}
        was_quantized = {n: ~inq.free[n] & eligible[n] for n in inq.layers}
        assert inq.quantize_next() == portion
        for name, layer in inq.layers.items():
            quantized = ~inq.free[name] & eligible[name]
            assert int(quantized.sum()) == round(portion * int(eligible[name].sum()))
            new, still_free = quantized & ~was_quantized[name], inq.free[name]
            assert before[name][new].abs().min() >= before[name][still_free].abs().max()
        frozen = {n: (~inq.free[n], layer.weight.detach()[~inq.free[n]]) for n, layer in inq.layers.items()}
        train(model, optimizer, 3, seed=step)  # the free weights train, the quantized stay
        for name, layer in inq.layers.items():
            mask, values = frozen[name]
            assert torch.equal(layer.weight.detach()[mask], values)
            assert not torch.equal(layer.weight.detach()[~mask], before[name][~mask])
    inq.quantize_next()
    assert inq.done

    for name, layer in inq.layers.items():
        w = layer.weight.detach().numpy()
        assert (w[~eligible[name].numpy()] == 0).all()
        n1 = math.floor(math.log2(4 * s[name] / 3))
        exponents = np.log2(np.abs(w[w != 0]))
        assert np.array_equal(exponents, np.round(exponents))  # exact powers of two
        assert exponents.max() <= n1 and exponents.min() >= n1 - 7  # 5 bits: 8 exponents
        exported = to_dcf_tensors(model)[f"{name}.weight"]
        assert isinstance(exported, CodebookTensor) and exported.codebook.size == 16
        assert np.array_equal(exported.decode(), w)
    final = {n: layer.weight.detach().clone() for n, layer in inq.layers.items()}
    train(model, optimizer, 2)  # fully quantized layers do not train any more
    assert all(torch.equal(final[n], layer.weight) for n, layer in inq.layers.items())
    with pytest.raises(RuntimeError):
        inq.quantize_next()


def test_inq_after_pruning_keeps_pruned_weights_zero():
    torch.manual_seed(1)
    model = LeNet300100()
    pruner = Pruner(model)
    pruner.prune(0.9)
    pruner.remove()
    zero = {n: getattr(model, n).weight.detach() == 0 for n in ("ip1", "ip2", "ip3")}
    inq = INQuantizer(model, bits={"ip1": 4, "ip2": 5}, portions=(0.5, 1.0))
    assert list(inq.layers) == ["ip1", "ip2"]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    inq.attach(optimizer)
    inq.quantize_next()
    train(model, optimizer, 3)
    inq.quantize_next()
    for name in inq.layers:
        w = getattr(model, name).weight.detach()
        assert (w[zero[name]] == 0).all()
    assert len(inq.codebook("ip1")) == 8  # 4 bits: 4 exponents, two signs
    with pytest.raises(ValueError):
        INQuantizer(model, portions=(0.5, 0.9))
