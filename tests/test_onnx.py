"""ONNX models through dcpack/dcunpack (dcformat.pack.onnx_source): real exported models run in ONNX
Runtime before and after, bit-identical for the lossless preset, within the stated error for safe.

Stated error of ``--preset safe`` on a restored model: the relative output error
``||y' - y|| / ||y||`` over a batch stays within 0.05 and within twice the sum of the per-tensor
weight errors the packer reports (to first order each layer adds its own relative weight error,
and ReLU and batch norm do not amplify it). Measured: the MLP 0.021 (file 340,652 -> 74,149 B),
the conv net 0.0099 (1,407,580 -> 271,888 B); lossless 264,780 and 1,150,885 B.
"""
import os
import shutil
import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install 'dcformat[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'dcformat[onnx]')")

from onnx import TensorProto, helper  # noqa: E402

import dcformat  # noqa: E402
from dcformat.cli.dcpack import main as dcpack_main  # noqa: E402
from dcformat.cli.dcunpack import main as dcunpack_main  # noqa: E402
from dcformat.pack.errors import CheckpointError, PackError  # noqa: E402
from dcformat.pack.onnx_source import GRAPH_ATTACHMENT, looks_like_onnx  # noqa: E402
from dcformat.pack.packer import pack  # noqa: E402
from dcformat.pack.recipe import preset_recipe  # noqa: E402
from dcformat.pack.restore import unpack  # noqa: E402
from dcformat.pack.sources import sniff  # noqa: E402



def _run(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _same_bits(a, b) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An MLP and a small conv net (batch norm included) exported by torch.onnx.export."""
    torch = pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)

    class Conv(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv2d(1, 16, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(16)
            self.c2 = torch.nn.Conv2d(16, 32, 3, stride=2)
            self.fc = torch.nn.Linear(32 * 13 * 13, 64)
            self.out = torch.nn.Linear(64, 10)

        def forward(self, x):
            x = torch.relu(self.bn(self.c1(x)))
            x = torch.relu(self.c2(x))
            return self.out(torch.relu(self.fc(x.flatten(1))))

    mlp = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 10))
    conv = Conv()
    with torch.no_grad():  # batch-norm statistics that are not the identity
        conv.bn.running_mean.uniform_(-0.5, 0.5)
        conv.bn.running_var.uniform_(0.5, 2.0)
    rng = np.random.default_rng(1)
    models = {}
    for name, model, shape in (("mlp", mlp, (64,)), ("conv", conv, (1, 28, 28))):
        model.eval()
        path = folder / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros((2,) + shape),), str(path), dynamo=False, input_names=["x"],
                              output_names=["y"], dynamic_axes={"x": {0: "n"}})
        models[name] = (path, {"x": rng.normal(size=(64,) + shape).astype(np.float32)})
    return models


@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_lossless_round_trip_runs_bit_identical(exported, tmp_path, name):
    path, feeds = exported[name]
    assert sniff(str(path)) == "onnx"
    result = pack(path, tmp_path / "m.dcf")
    original = onnx.load_model(str(path))
    with dcformat.open(tmp_path / "m.dcf") as f:
        assert f.keys() == [t.name for t in original.graph.initializer]
        assert f.attachments() == [GRAPH_ATTACHMENT]
        graph = onnx.ModelProto()
        graph.ParseFromString(f.get_attachment(GRAPH_ATTACHMENT))
        assert all(not t.raw_data for t in graph.graph.initializer)  # the weights are the tensors, not the graph
        assert len(graph.SerializeToString()) < 2000
    assert result.warnings == []
    unpack(tmp_path / "m.dcf", tmp_path / "restored.onnx")
    for before, after in zip(_run(path, feeds), _run(tmp_path / "restored.onnx", feeds)):
        assert _same_bits(before, after)
    # the exporter writes raw_data with default locations: the model comes back byte for byte
    assert (tmp_path / "restored.onnx").read_bytes() == path.read_bytes()


def test_safe_preset_within_stated_error(exported, tmp_path):
    for name in ("mlp", "conv"):
        path, feeds = exported[name]
        result = pack(path, tmp_path / f"{name}.dcf", preset_recipe("safe"))
        unpack(tmp_path / f"{name}.dcf", tmp_path / f"{name}.onnx")
        (before,), (after,) = _run(path, feeds), _run(tmp_path / f"{name}.onnx", feeds)
        rel = np.linalg.norm(after - before) / np.linalg.norm(before)
        weight_errors = sum(t.relative_error for t in result.tensors if not t.lossless)
        assert 0 < rel <= 0.05, (name, rel)
        assert rel <= 2 * weight_errors, (name, rel, weight_errors)
        assert np.mean(after.argmax(1) == before.argmax(1)) >= 0.95
        assert os.path.getsize(tmp_path / f"{name}.dcf") < path.stat().st_size / 3


def test_external_data_round_trip_with_the_tools(exported, tmp_path):
    path, feeds = exported["conv"]
    model = onnx.load_model(str(path))
    source = tmp_path / "src"
    (source / "weights").mkdir(parents=True)
    onnx.save_model(model, str(source / "conv.onnx"), save_as_external_data=True, location="weights/conv.bin",
                    size_threshold=0)
    assert (source / "weights" / "conv.bin").stat().st_size > 500_000
    renamed = source / "model.bin"  # judged by content, not by name
    shutil.copy(source / "conv.onnx", renamed)
    assert sniff(str(renamed)) == "onnx"
    dcf = tmp_path / "conv.dcf"
    assert dcpack_main([str(renamed), "-o", str(dcf), "-q"]) == 0
    out = tmp_path / "out"
    out.mkdir()
    assert dcunpack_main([str(dcf), "-o", str(out / "r.onnx"), "--external-data", "-q"]) == 0
    assert sorted(os.listdir(out)) == ["r.onnx", "r.onnx.data"]
    restored = onnx.load_model(str(out / "r.onnx"), load_external_data=False)
    locations = {e.value for t in restored.graph.initializer for e in t.external_data if e.key == "location"}
    assert locations == {"r.onnx.data"}
    assert os.path.getsize(out / "r.onnx") < 5000
    unpack(dcf, tmp_path / "inline.onnx")
    expected = _run(path, feeds)
    for model_path in (out / "r.onnx", tmp_path / "inline.onnx"):
        for before, after in zip(expected, _run(model_path, feeds)):
            assert _same_bits(before, after)


def _helper_model(tmp_path, initializers, extra_nodes=()):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    nodes = [helper.make_node("Add", ["x", "w"], ["a"]), helper.make_node("Cast", ["h"], ["hf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["a", "hf"], ["y"]), *extra_nodes]
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "h.onnx"
    onnx.save_model(model, str(path))
    return path


def test_typed_fields_and_kept_types(tmp_path):
    w = helper.make_tensor("w", TensorProto.FLOAT, [3], [0.5, -1.25, 3.0])  # float_data, not raw_data
    h = helper.make_tensor("h", TensorProto.FLOAT16, [3], [1.5, 2.0, -0.5])  # int32_data bit patterns
    names = helper.make_tensor("labels", TensorProto.STRING, [2], [b"cat", b"dog"])
    path = _helper_model(tmp_path, [w, h, names])
    result = pack(path, tmp_path / "h.dcf")
    assert any("labels (STRING)" in note for note in result.notes)
    with dcformat.open(tmp_path / "h.dcf") as f:
        assert f.keys() == ["w", "h"]
        assert f.get_tensor("h").dtype == np.float16
    unpack(tmp_path / "h.dcf", tmp_path / "r.onnx")
    restored = onnx.load_model(str(tmp_path / "r.onnx"))
    kept = {t.name: t for t in restored.graph.initializer}["labels"]
    assert list(kept.string_data) == [b"cat", b"dog"]
    feeds = {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}
    assert _same_bits(_run(path, feeds)[0], _run(tmp_path / "r.onnx", feeds)[0])



def test_every_mapped_type_comes_back_bit_for_bit(tmp_path):
    import ml_dtypes
    from onnx import numpy_helper

    rng = np.random.default_rng(5)
    arrays = {
        "f32": rng.normal(size=(4, 5)).astype(np.float32), "f16": rng.normal(size=(7,)).astype(np.float16),
        "bf16": rng.normal(size=(3, 3)).astype(ml_dtypes.bfloat16), "f64": rng.normal(size=(2, 2, 2)),
        "i8": rng.integers(-128, 127, 9, dtype=np.int8), "u8": rng.integers(0, 255, 9, dtype=np.uint8),
        "i16": rng.integers(-999, 999, 5, dtype=np.int16), "u16": rng.integers(0, 65535, 5, dtype=np.uint16),
        "i32": rng.integers(-10**9, 10**9, 5, dtype=np.int32), "u32": rng.integers(0, 2**32 - 1, 5, dtype=np.uint32),
        "i64": rng.integers(-2**62, 2**62, 5, dtype=np.int64), "u64": rng.integers(0, 2**63, 5, dtype=np.uint64),
        "bool": rng.integers(0, 2, 6).astype(bool), "scalar": np.array(2.5, np.float32),
        "empty": np.zeros((0, 3), np.float32),
    }
    inits = [numpy_helper.from_array(a, name) for name, a in arrays.items()]  # raw_data, little-endian
    graph = helper.make_graph([helper.make_node("Identity", ["f32"], ["y"])], "g", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 5])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "types.onnx"
    onnx.save_model(model, str(path))
    pack(path, tmp_path / "t.dcf")
    with dcformat.open(tmp_path / "t.dcf") as f:
        assert f.keys() == list(arrays)
    unpack(tmp_path / "t.dcf", tmp_path / "r.onnx")
    assert (tmp_path / "r.onnx").read_bytes() == path.read_bytes()
    restored = {t.name: numpy_helper.to_array(t) for t in onnx.load_model(str(tmp_path / "r.onnx")).graph.initializer}
    for name, array in arrays.items():
        assert _same_bits(restored[name], array), name



def test_a_constant_node_with_external_data_is_read_into_the_graph(tmp_path):
    from onnx import numpy_helper

    c = numpy_helper.from_array(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3), "c")
    w = helper.make_tensor("w", TensorProto.FLOAT, [3], [0.5, -1.25, 3.0])
    h = helper.make_tensor("h", TensorProto.FLOAT16, [3], [1.5, 2.0, -0.5])
    path = _helper_model(tmp_path, [w, h], [helper.make_node("Constant", [], ["k"], value=c)])
    model = onnx.load_model(str(path))
    model.graph.output.append(helper.make_tensor_value_info("k", TensorProto.FLOAT, [2, 3]))
    (tmp_path / "src").mkdir()
    onnx.save_model(model, str(tmp_path / "src" / "m.onnx"), save_as_external_data=True, location="m.data",
                    size_threshold=0, convert_attribute=True)
    stored = onnx.load_model(str(tmp_path / "src" / "m.onnx"), load_external_data=False)
    assert stored.graph.node[-1].attribute[0].t.data_location == TensorProto.EXTERNAL
    pack(tmp_path / "src" / "m.onnx", tmp_path / "m.dcf")
    with dcformat.open(tmp_path / "m.dcf") as f:
        graph = onnx.ModelProto()
        graph.ParseFromString(f.get_attachment(GRAPH_ATTACHMENT))
    assert not any(t.data_location == TensorProto.EXTERNAL for n in graph.graph.node for a in n.attribute for t in [a.t])
    unpack(tmp_path / "m.dcf", tmp_path / "r.onnx")
    feeds = {"x": np.ones((2, 3), np.float32)}
    for before, after in zip(_run(tmp_path / "src" / "m.onnx", feeds), _run(tmp_path / "r.onnx", feeds)):
        assert _same_bits(before, after)


def test_external_data_that_leaves_the_folder_is_refused(tmp_path):
    w = helper.make_tensor("w", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
    h = helper.make_tensor("h", TensorProto.FLOAT16, [3], [1.0, 1.0, 1.0])
    path = _helper_model(tmp_path, [w, h])
    model = onnx.load_model(str(path))
    inner = tmp_path / "inner"
    inner.mkdir()
    (tmp_path / "secret.bin").write_bytes(np.arange(3, dtype=np.float32).tobytes())
    os.symlink(tmp_path / "secret.bin", inner / "link.bin")
    for location, message in (("../secret.bin", "leaves the model's folder"), ("link.bin", "leaves the model's folder"),
                              (str(tmp_path / "secret.bin"), "not a relative path"), ("gone.bin", "no such file")):
        tensor = model.graph.initializer[0]
        tensor.ClearField("raw_data")
        tensor.ClearField("float_data")
        del tensor.external_data[:]
        tensor.data_location = TensorProto.EXTERNAL
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", location
        onnx.save_model(model, str(inner / "m.onnx"))
        with pytest.raises(CheckpointError, match=message):
            pack(inner / "m.onnx", tmp_path / "x.dcf")
    (inner / "short.bin").write_bytes(b"\0" * 8)  # 12 bytes expected
    tensor.external_data[0].value = "short.bin"
    onnx.save_model(model, str(inner / "m.onnx"))
    with pytest.raises(CheckpointError, match="past the end|bytes, 12 expected"):
        pack(inner / "m.onnx", tmp_path / "x.dcf")
    assert not (tmp_path / "x.dcf").exists()


def test_detection_and_refusals(tmp_path, exported):
    path, _ = exported["mlp"]
    head = path.read_bytes()[:64]
    assert looks_like_onnx(head)
    assert not looks_like_onnx(b'{"weight_map": {}}') and not looks_like_onnx(b"\x08\x00\x00\x00{}")
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(path.read_bytes()[:1000])  # cut inside the graph
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        pack(bad, tmp_path / "b.dcf")
    other = tmp_path / "t.dcf"
    pack({"w": np.ones((4, 4), np.float32)}, other)
    with pytest.raises(PackError, match="not packed from an ONNX model"):
        unpack(other, tmp_path / "t.onnx")
    ok = tmp_path / "m.dcf"
    pack(path, ok, preset_recipe("lossless"))
    with pytest.raises(PackError, match="external data applies to an .onnx output"):
        unpack(ok, tmp_path / "m.safetensors", external_data=True)
    folder = tmp_path / "restored"
    unpack(ok, str(folder) + "/")  # a folder output: the model under its source's name
    assert os.listdir(folder) == ["mlp.onnx"]



def test_without_the_onnx_package_one_line_names_the_extra(tmp_path, exported, monkeypatch):
    path, _ = exported["mlp"]
    monkeypatch.setitem(sys.modules, "onnx", None)  # what `import onnx` does when it is not installed
    with pytest.raises(CheckpointError, match=r"^ONNX models need the onnx package: pip install 'dcformat\[onnx\]'$"):
        pack(path, tmp_path / "m.dcf")
    assert sniff(str(path)) == "onnx"  # judged without the package


@pytest.mark.slow
def test_dynamo_exported_model_with_its_external_data(tmp_path):
    """torch.onnx.export(dynamo=True) (needs onnxscript; about 15 s) writes the weights to an
    external-data file beside the model: they are packed from it and come back inline."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 26 * 26, 10)).eval()
    path = tmp_path / "dyn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(2, 1, 28, 28),), str(path), dynamo=True, input_names=["x"],
                          output_names=["y"])
    stored = onnx.load_model(str(path), load_external_data=False)
    assert any(t.data_location == TensorProto.EXTERNAL for t in stored.graph.initializer)
    pack(path, tmp_path / "dyn.dcf")
    unpack(tmp_path / "dyn.dcf", tmp_path / "r.onnx")
    feeds = {"x": np.random.default_rng(3).normal(size=(2, 1, 28, 28)).astype(np.float32)}
    assert _same_bits(_run(path, feeds)[0], _run(tmp_path / "r.onnx", feeds)[0])
