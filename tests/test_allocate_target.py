"""dcpack --target-size / --sensitivity (dcformat.pack.target): the file lands within the target, its
bytes go where the (calibrated or data-free) distortion says, pruning only where it pays."""
import os

import numpy as np
import pytest

from dcformat.cli.dcpack import main as dcpack
from dcformat.pack.allocate import allocate_curves, pareto, tensor_points
from dcformat.pack.errors import CheckpointError, PackError
from dcformat.pack.sensitivity import load_sensitivities, save_sensitivities
from dcformat.pack.target import TargetTooSmall, pack_to_size as _pack_to_size, parse_size

FEW = (0.01, 0.03, 0.1, 0.3)
"""Grid rungs measured in these tests (dcpack measures more): fewer encodings, a faster suite."""


def pack_to_size(*args, **kw):
    return _pack_to_size(*args, budgets=FEW, **kw)


def _tensors(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "a.weight": rng.normal(0, 0.05, (96, 80)).astype(np.float32),
        "b.weight": rng.normal(0, 0.02, (80, 64)).astype(np.float32),
        "emb.word_embeddings.weight": rng.normal(0, 0.1, (128, 48)).astype(np.float32),
        "a.bias": rng.normal(size=80).astype(np.float32),
    }


def test_parse_size():
    assert parse_size("12000000") == ("bytes", 12_000_000)
    assert parse_size("12MB") == ("bytes", 12_000_000)
    assert parse_size("5MiB") == ("bytes", 5 * 2**20)
    assert parse_size("1.5 kB") == ("bytes", 1500)
    assert parse_size("8x") == ("ratio", 8.0)
    for bad in ("", "12 parsecs", "-5MB", "0", "1x", "x"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_file_lands_within_each_target_and_more_bytes_cost_less(tmp_path):
    t = _tensors()
    previous, points = None, None
    for i, target in enumerate((9000, 14000, 20000, 30000)):
        out = tmp_path / f"m{i}.dcf"
        result, plan = pack_to_size(t, out, target, points=points)
        points = plan.points  # measured once, allocated four times
        assert os.path.getsize(out) == result.file_bytes <= target
        assert result.file_bytes >= 0.9 * target  # it uses the bytes it is given
        errors = {r.name: r.relative_error for r in result.tensors}
        cost = sum((0.1 if "embeddings" in n else 1.0) * errors[n] ** 2 for n in plan.picks)
        if previous is not None:
            assert cost < previous
        previous = cost
        assert errors["a.bias"] == 0.0  # small tensors stay lossless
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temporary file left


def test_a_target_below_the_smallest_file_names_it(tmp_path):
    t = _tensors()
    _, plan = pack_to_size(t, tmp_path / "big.dcf", 40000)
    with pytest.raises(TargetTooSmall, match="smallest file this checkpoint reaches") as info:
        pack_to_size(t, tmp_path / "m.dcf", 500, points=plan.points)
    assert info.value.smallest > 500
    assert not (tmp_path / "m.dcf").exists()
    # the smallest it names is reachable
    result, _ = pack_to_size(t, tmp_path / "m.dcf", info.value.smallest + 64, points=plan.points)
    assert result.file_bytes <= info.value.smallest + 64


def test_sensitivity_moves_the_bytes(tmp_path):
    t = _tensors()
    target = 16000
    flat, plan = pack_to_size(t, tmp_path / "flat.dcf", target, sensitivity={n: np.float32(1.0) for n in t})
    skew = {"a.weight": np.float32(1000.0), "b.weight": np.float32(1.0), "emb.word_embeddings.weight": np.float32(1e-3)}
    path = tmp_path / "s.safetensors"
    assert save_sensitivities(path, skew) == "per-tensor"
    skewed, plan = pack_to_size(t, tmp_path / "skew.dcf", target, sensitivity=str(path))
    e_flat = {r.name: r.relative_error for r in flat.tensors}
    e_skew = {r.name: r.relative_error for r in skewed.tensors}
    assert e_skew["a.weight"] < e_flat["a.weight"]
    assert e_skew["emb.word_embeddings.weight"] > e_flat["emb.word_embeddings.weight"]
    assert skewed.file_bytes <= target and "per tensor" in plan.weighting


def test_pruning_is_chosen_only_where_it_pays():
    rng = np.random.default_rng(2)
    w = rng.normal(0, 0.05, (96, 96)).astype(np.float32)
    small = np.abs(w) < np.quantile(np.abs(w), 0.75)
    # the small weights do not matter to the model: pruning them costs nothing
    h_free = np.where(small, 0.0, 1.0)
    # the small weights matter most: pruning them is the worst error per byte
    h_dear = np.where(small, 100.0, 1.0)
    free, dear = tensor_points(w, h_free, budgets=FEW), tensor_points(w, h_dear, budgets=FEW)
    for pts in (free, dear):
        assert pts == pareto(pts)
    target = int(np.median([p.bytes for p in free]))
    pick_free = free[allocate_curves({"w": [(p.bytes, p.distortion) for p in free]}, target)["w"]]
    pick_dear = dear[allocate_curves({"w": [(p.bytes, p.distortion) for p in dear]}, target)["w"]]
    assert pick_free.pruned and not pick_dear.pruned


def test_per_weight_distortion_is_the_weighted_squared_error():
    from dcformat.pack.packer import compress_tensor, reconstruction

    rng = np.random.default_rng(4)
    w = rng.normal(0, 0.05, (64, 80)).astype(np.float32)
    h = rng.gamma(0.5, 2.0, w.shape)
    for p in tensor_points(w, h, budgets=FEW)[1:6]:
        decoded = reconstruction(compress_tensor(w, p.policy)[0]).astype(np.float64)
        assert p.distortion == pytest.approx(float((h * (decoded - w) ** 2).sum()), rel=1e-9)
    with pytest.raises(PackError, match="shape"):
        tensor_points(w, np.ones(5))


def test_sensitivity_file_checks(tmp_path):
    path = tmp_path / "s.safetensors"
    assert save_sensitivities(path, {"a.weight": np.ones((2, 3))}) == "per-weight"
    assert load_sensitivities(path)["a.weight"].shape == (2, 3)
    with pytest.raises(PackError, match="finite"):
        save_sensitivities(path, {"a": -np.ones(3)})
    from safetensors.numpy import save_file

    save_file({"a": np.ones(3, np.float32)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="not a sensitivity file"):
        load_sensitivities(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file at all")
    with pytest.raises(CheckpointError, match="not a sensitivity file"):
        load_sensitivities(tmp_path / "junk.safetensors")
    t = _tensors()
    save_sensitivities(path, {"a.weight": np.ones((3, 3))})
    with pytest.raises(PackError, match="shape"):
        pack_to_size(t, tmp_path / "m.dcf", 20000, sensitivity=str(path))
    save_sensitivities(path, {"other.weight": np.ones(3)})
    with pytest.raises(PackError, match="no tensor of the checkpoint"):
        pack_to_size(t, tmp_path / "m.dcf", 20000, sensitivity=str(path))


def test_dcpack_target_size(tmp_path, capsys):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(7)
    t = {"a.weight": rng.normal(0, 0.05, (64, 72)).astype(np.float32), "a.bias": rng.normal(size=72).astype(np.float32)}
    src = tmp_path / "m.safetensors"
    save_file(t, str(src))
    sens = tmp_path / "sens.safetensors"
    save_sensitivities(sens, {n: np.abs(a) + 1e-3 for n, a in t.items()})
    out = tmp_path / "m.dcf"
    assert dcpack([str(src), "-o", str(out), "--target-size", "3kB", "--sensitivity", str(sens)]) == 0
    err = capsys.readouterr().err
    assert os.path.getsize(out) <= 3000
    assert "of the target" in err and "smallest reachable" in err and "calibrated sensitivities per weight" in err
    assert "relative error ||W - W'|| / ||W||" in err and "overall" in err
    assert dcpack([str(src), "-o", str(out), "-f", "--target-size", "6x"]) == 0
    err = capsys.readouterr().err
    assert os.path.getsize(out) <= sum(a.nbytes for a in t.values()) / 6
    assert "without data" in err
    # usage errors: one line, exit 2, nothing written
    for argv, message in (
            (["--target-size", "100"], "smallest file this checkpoint reaches"),
            (["--target-size", "3kB", "--bits", "4"], "drop --bits"),
            (["--sensitivity", str(sens)], "give --target-size"),
            (["--target-size", "12 parsecs"], "unknown unit")):
        try:
            code = dcpack([str(src), "-o", str(tmp_path / "x.dcf")] + argv)
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code
        assert code == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.dcf").exists()
