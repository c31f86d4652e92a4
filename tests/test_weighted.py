"""Sensitivity-weighted k-means, weighted uniform grid and ECVQ (dcformat.compress.weighted), against
plain numpy loops over every weight."""
import numpy as np
import pytest

from dcformat.compress import kmeans_1d
from dcformat.compress.weighted import ecvq, ecvq_lambda, weighted_error2, weighted_grid, weighted_kmeans
from dcformat.tensors import CodebookTensor


def naive_weighted_kmeans(w, h, k, iters):
    x = w.astype(np.float64).reshape(-1)
    hh = np.broadcast_to(np.asarray(h, np.float64), w.shape).reshape(-1)
    c = np.linspace(x.min(), x.max(), k)
    for _ in range(iters):
        labels = np.abs(x[:, None] - c[None, :]).argmin(1)  # ties: the lower centroid
        new = c.copy()
        for j in range(k):
            sel = labels == j
            if sel.any() and hh[sel].sum() > 0:
                new[j] = (hh[sel] * x[sel]).sum() / hh[sel].sum()
        if (new == c).all():
            break
        c = new
    labels = np.abs(x[:, None] - c[None, :]).argmin(1)
    return c[labels].astype(np.float32).reshape(w.shape)


def naive_cell(x, step, dz):
    a = np.abs(x) / step + 1 - dz
    c = np.where(a > 0, np.floor(np.maximum(a, 0)), 0)
    return np.where(x < 0, -c, c)


def naive_weighted_grid(w, h, step, dz=0.5):
    x = w.astype(np.float64).reshape(-1)
    hh = np.broadcast_to(np.asarray(h, np.float64), w.shape).reshape(-1)
    cells = naive_cell(x, step, dz)
    out = np.zeros_like(x)
    for c in np.unique(cells):
        sel = cells == c
        if c == 0:
            continue
        out[sel] = (hh[sel] * x[sel]).sum() / hh[sel].sum() if hh[sel].sum() > 0 else x[sel].mean()
    return out.astype(np.float32).reshape(w.shape)


def naive_ecvq(w, h, lam, init_step, iters):
    x = w.astype(np.float64).reshape(-1)
    hh = np.broadcast_to(np.asarray(h, np.float64), w.shape).reshape(-1)
    cells = naive_cell(x, init_step, 0.5)
    occupied = np.unique(cells)
    c = np.array([0.0 if v == 0 else (hh[cells == v] * x[cells == v]).sum() / hh[cells == v].sum()
                  for v in occupied])
    counts = np.array([(cells == v).sum() for v in occupied], np.float64)
    previous = None
    for _ in range(iters):
        lengths = -np.log2(np.maximum(counts, 0.5) / x.size)
        cost = hh[:, None] * (x[:, None] - c[None, :]) ** 2 + lam * lengths[None, :]
        labels = cost.argmin(1)
        used = np.unique(labels)
        c = np.array([(hh[labels == j] * x[labels == j]).sum() / hh[labels == j].sum() for j in used])
        counts = np.array([(labels == j).sum() for j in used], np.float64)
        labels = np.searchsorted(used, labels)
        if previous is not None and (previous == labels).all():
            break
        previous = labels
    return c[labels].astype(np.float32).reshape(w.shape)


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.05, (24, 25)).astype(np.float32)
    h = rng.gamma(0.5, 2.0, w.shape)  # skewed, like Fisher diagonals
    return w, h


def test_weighted_kmeans_matches_the_naive_loop(data):
    w, h = data
    for k in (2, 5, 16, 40):
        got = weighted_kmeans(w, h, k, iters=300)
        assert isinstance(got, CodebookTensor) and got.codebook.size <= k
        np.testing.assert_allclose(got.decode(), naive_weighted_kmeans(w, h, k, 300), rtol=1e-6, atol=1e-9)


def test_weighted_kmeans_with_equal_sensitivities_is_plain_kmeans(data):
    w, _ = data
    for k in (4, 16):
        plain = kmeans_1d(w.reshape(-1), k)
        got = weighted_kmeans(w, 3.0, k)
        np.testing.assert_allclose(np.sort(got.codebook), np.sort(plain[0].astype(np.float32)), rtol=1e-6)


def test_weighting_lowers_the_weighted_error(data):
    w, h = data
    for k in (4, 8, 16):
        weighted = weighted_error2(w, weighted_kmeans(w, h, k).decode(), h)
        plain = weighted_error2(w, weighted_kmeans(w, None, k).decode(), h)
        assert weighted < plain
        gw = weighted_error2(w, weighted_grid(w, h, 0.02).decode(), h)
        gp = weighted_error2(w, weighted_grid(w, None, 0.02).decode(), h)
        assert gw <= gp


def test_weighted_grid_matches_the_naive_loop(data):
    w, h = data
    for step, dz in ((0.01, 0.5), (0.03, 0.5), (0.02, 1.0)):
        got = weighted_grid(w, h, step, dz)
        np.testing.assert_allclose(got.decode(), naive_weighted_grid(w, h, step, dz), rtol=1e-6, atol=1e-9)
        zero = np.abs(w.astype(np.float64)) < dz * step
        assert (got.indices[zero] < 0).all() and (got.indices[~zero] >= 0).all()


def test_ecvq_matches_the_naive_loop(data):
    w, h = data
    for lam_scale in (0.3, 1.0, 3.0):
        step = 0.01
        lam = lam_scale * ecvq_lambda(step, float(h.mean()))
        got = ecvq(w, h, lam=lam, init_step=step / 2, iters=40)
        np.testing.assert_allclose(got.decode(), naive_ecvq(w, h, lam, step / 2, 40), rtol=1e-6, atol=1e-9)


def test_ecvq_trades_error_for_rate():
    rng = np.random.default_rng(5)
    w = rng.laplace(0, 0.03, 4000).astype(np.float32)
    rates, errors = [], []
    for lam in (1e-6, 1e-5, 1e-4):
        c = ecvq(w, lam=lam, init_step=0.002)
        _, counts = np.unique(c.indices, return_counts=True)
        p = counts / counts.sum()
        rates.append(float(-(p * np.log2(p)).sum()))
        errors.append(weighted_error2(w, c.decode()))
    assert rates[0] > rates[1] > rates[2] and errors[0] < errors[1] < errors[2]


def test_bad_arguments_are_named():
    w = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="shape of w"):
        weighted_kmeans(w, np.ones(3), 2)
    with pytest.raises(ValueError, match="finite and >= 0"):
        weighted_grid(w, -np.ones((4, 4)), 0.1)
    with pytest.raises(ValueError, match="k must be"):
        weighted_kmeans(w, None, 0)
    with pytest.raises(ValueError, match="step"):
        weighted_grid(w, None, 0)
    with pytest.raises(ValueError, match="lam"):
        ecvq(w, lam=-1, init_step=0.1)
    with pytest.raises(ValueError):
        weighted_kmeans(np.array([np.nan, 1.0]), None, 2)
