"""dcunpack to .safetensors streams: one tensor in memory at a time, the same file the safetensors
package writes, atomic like every writer of the project."""
import json
import os
import struct
import subprocess
import sys
import textwrap

import ml_dtypes
import numpy as np
import pytest
from pack_fixtures import bits
from safetensors.numpy import load_file

import dcformat
from dcformat.cli import dcunpack
from dcformat.pack import CheckpointError, load_checkpoint, save_checkpoint, unpack
from dcformat.pack.safetensors_stream import SafetensorsStreamWriter, save_safetensors_streaming

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mixed() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "w.f32": rng.standard_normal((33, 17)).astype(np.float32),
        "w.bf16": rng.standard_normal((9, 40)).astype(ml_dtypes.bfloat16),
        "w.f16": rng.standard_normal(31).astype(np.float16),
        "a.f64": rng.standard_normal((2, 3, 5)).astype(np.float64),
        "scalar": np.array(2.5, np.float32),
        "steps": np.array(7, np.int64),
        "empty": np.zeros((0, 4), np.float32),
        "ids": rng.integers(-5, 1 << 40, (3, 11)).astype(np.int64),
        "mask": rng.random(13) < 0.5,
        "u8": rng.integers(0, 256, 10).astype(np.uint8),
        "i8": rng.integers(-128, 128, 7).astype(np.int8),
        "i16": rng.integers(-999, 999, 6).astype(np.int16),
        "u16": rng.integers(0, 60000, 5).astype(np.uint16),
        "i32": rng.integers(-9, 9, 4).astype(np.int32),
        "u32": rng.integers(0, 1 << 31, 3).astype(np.uint32),
        "u64": rng.integers(0, 1 << 62, 2).astype(np.uint64),
        "zeta é\n": np.ones(2, np.float32),  # a name JSON has to escape, and non-ASCII
    }


def entries(tensors):
    return [(name, a.dtype, a.shape) for name, a in tensors.items()]


def split(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def temp_files(directory):
    return [n for n in os.listdir(directory) if n.endswith(".tmp")]


@pytest.mark.parametrize("metadata", [None, {"only": "one ünïcode \"entry\""}])
def test_streamed_file_is_the_safetensors_package_file(tmp_path, metadata):
    tensors = mixed()
    save_checkpoint(tensors, tmp_path / "ref.safetensors", metadata=metadata)  # the safetensors package
    save_safetensors_streaming(tmp_path / "st.safetensors", entries(tensors), tensors.__getitem__, metadata)
    assert (tmp_path / "st.safetensors").read_bytes() == (tmp_path / "ref.safetensors").read_bytes()
    # in any write order (seeking), the same bytes
    with SafetensorsStreamWriter(tmp_path / "rev.safetensors", entries(tensors), metadata) as writer:
        for name in reversed(writer.names):
            writer.write(name, tensors[name])
    assert (tmp_path / "rev.safetensors").read_bytes() == (tmp_path / "ref.safetensors").read_bytes()
    loaded = load_file(tmp_path / "st.safetensors")
    assert set(loaded) == set(tensors)
    for name, array in tensors.items():
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape and bits(loaded[name]) == bits(array)


def test_several_metadata_entries_same_header_semantics(tmp_path):
    """The package writes ``__metadata__`` in an arbitrary (hash) order: the same JSON, the same bytes after it."""
    tensors, metadata = mixed(), {f"k{i}": f"v{i}" for i in range(6)}
    save_checkpoint(tensors, tmp_path / "ref.safetensors", metadata=metadata)
    save_safetensors_streaming(tmp_path / "st.safetensors", entries(tensors), tensors.__getitem__, metadata)
    (h1, d1), (h2, d2) = split(tmp_path / "ref.safetensors"), split(tmp_path / "st.safetensors")
    assert h1 == h2 and list(h1) == list(h2) and d1 == d2
    assert os.path.getsize(tmp_path / "ref.safetensors") == os.path.getsize(tmp_path / "st.safetensors")


def test_unpack_streams_the_same_checkpoint(tmp_path, capsys):
    tensors = mixed()
    dcformat.save_file(tensors, tmp_path / "m.dcf", metadata={"a": "1", "dcformat.source_metadata": '{"x": "y"}'})
    done = unpack(tmp_path / "m.dcf", tmp_path / "out.safetensors")
    assert done["tensors"] == len(tensors) and done["parameters"] == sum(a.size for a in tensors.values())
    assert done["bytes"] == os.path.getsize(tmp_path / "out.safetensors")
    # what the non-streaming path wrote: every tensor decoded, then the safetensors package
    save_checkpoint(dcformat.load_file(tmp_path / "m.dcf"), tmp_path / "ref.safetensors",
                    metadata={"a": "1", "dcformat.source_metadata": '{"x": "y"}', "x": "y"})
    assert split(tmp_path / "out.safetensors") == split(tmp_path / "ref.safetensors")
    restored, meta = load_checkpoint(tmp_path / "out.safetensors")
    assert meta == {"a": "1", "dcformat.source_metadata": '{"x": "y"}', "x": "y"}
    for name, array in tensors.items():
        assert restored[name].dtype == array.dtype and restored[name].shape == array.shape
        assert bits(restored[name]) == bits(array), name
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "out.safetensors").st_mode & 0o777 == 0o666 & ~umask
    assert dcunpack.main([str(tmp_path / "m.dcf"), "-o", str(tmp_path / "cli.safetensors")]) == 0
    assert "17 tensors" in capsys.readouterr().err
    assert split(tmp_path / "cli.safetensors") == split(tmp_path / "out.safetensors")
    assert temp_files(tmp_path) == []


def test_a_failure_midway_leaves_no_temporary_file_and_the_old_target(tmp_path, monkeypatch):
    tensors = mixed()
    dcformat.save_file(tensors, tmp_path / "m.dcf")
    target = tmp_path / "out.safetensors"
    target.write_bytes(b"old")
    calls = []
    real = dcformat.DCFReader.get_tensor

    def failing(self, name):
        calls.append(name)
        if len(calls) == 3:
            raise dcformat.CorruptFileError("stream 3 is damaged")
        return real(self, name)

    monkeypatch.setattr(dcformat.DCFReader, "get_tensor", failing)
    with pytest.raises(dcformat.CorruptFileError):
        unpack(tmp_path / "m.dcf", target)
    assert len(calls) == 3 and target.read_bytes() == b"old" and temp_files(tmp_path) == []


def test_a_killed_writers_temporary_file_is_removed_by_the_next(tmp_path):
    """Temporary files are named as DCFWriter names them, and the same cleanup applies."""
    from dcformat.atomic import owner_tag as _owner_tag

    tag = _owner_tag()
    if tag is None:
        pytest.skip("no /proc/self/ns/pid here: nothing is ever removed")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.safetensors.{tag}.{int(gone.stdout)}.abcd1234.tmp"
    stale.write_bytes(b"half a file")
    other = tmp_path / f".other.safetensors.{tag}.{int(gone.stdout)}.abcd1234.tmp"
    other.write_bytes(b"another target's")
    dcformat.save_file({"a": np.ones(3, np.float32)}, tmp_path / "m.dcf")
    unpack(tmp_path / "m.dcf", tmp_path / "out.safetensors")
    assert not stale.exists() and other.exists()


def test_writer_checks_what_it_is_given(tmp_path):
    tensors = mixed()
    path = tmp_path / "w.safetensors"
    with pytest.raises(CheckpointError, match="declared float32"):
        with SafetensorsStreamWriter(path, entries(tensors)) as writer:
            writer.write("w.f32", tensors["w.f32"].astype(np.float64))
    with pytest.raises(CheckpointError, match="not declared"):
        with SafetensorsStreamWriter(path, entries(tensors)) as writer:
            writer.write("nope", tensors["w.f32"])
    with pytest.raises(CheckpointError, match="were not written"):
        with SafetensorsStreamWriter(path, entries(tensors)) as writer:
            writer.write("w.f32", tensors["w.f32"])
    with pytest.raises(CheckpointError, match="declared twice"):
        SafetensorsStreamWriter(path, [("a", np.float32, (1,)), ("a", np.float32, (2,))])
    with pytest.raises(CheckpointError, match="cannot hold"):
        SafetensorsStreamWriter(path, [("c", np.complex64, (1,))])
    with pytest.raises(CheckpointError, match="does not exist"):
        SafetensorsStreamWriter(tmp_path / "no" / "w.safetensors", [("a", np.float32, (1,))])
    with pytest.raises(KeyError):
        save_safetensors_streaming(path, entries(tensors), {}.__getitem__)
    assert not path.exists() and temp_files(tmp_path) == []


def test_pt_and_npz_outputs_still_work(tmp_path):
    tensors = {k: v for k, v in mixed().items() if v.dtype.name != "bfloat16"}
    dcformat.save_file(tensors, tmp_path / "m.dcf")
    for suffix in (".pt", ".npz"):
        unpack(tmp_path / "m.dcf", tmp_path / f"out{suffix}")
        restored, _ = load_checkpoint(tmp_path / f"out{suffix}")
        assert all(bits(restored[k]) == bits(v) and restored[k].dtype == v.dtype for k, v in tensors.items())
    assert temp_files(tmp_path) == []


def test_the_benchmark_uses_this_writer():
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import bench_models
    finally:
        sys.path.remove(os.path.join(ROOT, "tools"))
    assert bench_models.SafetensorsWriter is SafetensorsStreamWriter


MEASURE = textwrap.dedent("""
    import json, os, resource, sys
    import numpy as np
    import dcformat
    from dcformat.pack import unpack

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key + ":"))

    src, out, warm = sys.argv[1:]
    dcformat.save_file({"w": np.arange(70000, dtype=np.float32)}, warm)   # load the decoding code first
    unpack(warm, warm + ".safetensors")
    base = status("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")                    # reset VmHWM (Linux 4.0+)
        reset = True
    except OSError:
        reset = False
    unpack(src, out)
    peak = status("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"growth": peak - base, "base": base, "peak": peak}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_unpack_peak_memory_is_about_one_tensor(tmp_path):
    """8 tensors of 4M float32 (134 MB): unpacking in a fresh process grows its resident memory by
    well under 40% of that (about two tensors: one decoded, one of decoding scratch)."""
    rng = np.random.default_rng(0)
    total = 8 * (4 << 20) * 4
    with dcformat.DCFWriter(tmp_path / "big.dcf") as writer:  # lossless, one tensor in memory at a time
        for i in range(8):
            writer.add(f"layer.{i}.weight", rng.standard_normal(4 << 20, dtype=np.float32).reshape(2048, 2048))
    script = tmp_path / "measure.py"
    script.write_text(MEASURE)
    out = tmp_path / "big.safetensors"
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "big.dcf"), str(out), str(tmp_path / "w.dcf")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    measured = json.loads(run.stdout.strip().splitlines()[-1])
    assert measured["growth"] < 0.4 * total, measured
    rng = np.random.default_rng(0)
    loaded = load_file(out)
    assert list(loaded) == [f"layer.{i}.weight" for i in range(8)]
    for i in range(8):
        want = rng.standard_normal(4 << 20, dtype=np.float32).reshape(2048, 2048)
        assert loaded[f"layer.{i}.weight"].dtype == np.float32 and bits(loaded[f"layer.{i}.weight"]) == bits(want)
