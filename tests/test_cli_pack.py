"""dcpack, dcunpack, dctable: usage, outputs, metadata, and one-line errors without tracebacks."""
import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from pack_fixtures import bits, small_model

import dcformat
from dcformat.cli import dcpack, dctable, dcunpack
from dcformat.pack import load_checkpoint, save_checkpoint


@pytest.fixture()
def checkpoint(tmp_path):
    path = tmp_path / "model.safetensors"
    save_checkpoint(small_model(), path)
    return path


def one_line_error(capsys, prog):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{prog}: error: "), err
    return err[0]


def test_lossless_by_default(tmp_path, checkpoint, capsys):
    assert dcpack.main([str(checkpoint), "-o", str(tmp_path / "m.dcf"), "-q"]) == 0
    assert capsys.readouterr().err == ""
    loaded = dcformat.load_file(tmp_path / "m.dcf")
    assert all(bits(loaded[k]) == bits(v) for k, v in small_model().items())


def test_a_file_larger_than_its_tensors_says_larger_never_0x_smaller(tmp_path, capsys):
    """A tiny model (43 parameters) costs more in container than it saves: dcpack's status line
    and the layer table say how many times larger, as dcinfo does, not '0.2× smaller'."""
    import numpy as np

    from dcformat.pack import layer_table

    source = tmp_path / "tiny.npz"
    np.savez(source, a=np.arange(40, dtype=np.float32), b=np.ones(3, np.float32))
    out = tmp_path / "tiny.dcf"
    assert dcpack.main([str(source), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    ratio = (43 * 4) / out.stat().st_size
    assert ratio < 1 and f"{1 / ratio:.1f}× larger than the dense 172" in err and "smaller" not in err
    assert "larger than the dense 172 bytes" in layer_table(str(out)).title


def test_pack_flags_table_and_unpack(tmp_path, checkpoint, capsys):
    out = tmp_path / "m.dcf"
    code = dcpack.main([str(checkpoint), "-o", str(out), "--sparsity", "0.9", "--conv-sparsity", "0.6",
                        "--bits", "5", "--conv-bits", "6", "--keep", "emb.*", "--metadata", "run=7", "--table", "csv"])
    assert code == 0
    captured = capsys.readouterr()
    assert "non-zero" in captured.err and "smaller than the dense" in captured.err
    assert "(keep emb.*; conv: prune 60% · k-means 6 bits; fc: prune 90% · k-means 5 bits)" in captured.err
    assert '{"rules"' not in captured.err  # the recipe's JSON is the metadata's, not the status line's
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(captured.out))}
    assert rows["file on disk"]["bytes"] == str(out.stat().st_size)
    assert float(rows["fc1.weight"]["kept"]) == pytest.approx(0.1, abs=0.001)
    assert float(rows["conv.weight"]["kept"]) == pytest.approx(0.4, abs=0.001)
    assert float(rows["emb.weight"]["kept"]) == 1.0 and float(rows["emb.weight"]["relative_error"]) == 0
    with dcformat.open(out) as reader:
        meta = reader.metadata()
    recipe = json.loads(meta["dcformat.recipe"])
    assert meta["dcformat.source"] == "model.safetensors" and meta["run"] == "7"
    assert [r["name"] for r in recipe["rules"]] == ["keep", "conv", "fc"]

    for suffix in (".safetensors", ".pt", ".npz"):
        assert dcunpack.main([str(out), "-o", str(tmp_path / f"r{suffix}")]) == 0
        restored, _ = load_checkpoint(tmp_path / f"r{suffix}")
        decoded = dcformat.load_file(out)
        assert set(restored) == set(small_model())
        assert all(bits(restored[k]) == bits(decoded[k]) and restored[k].dtype == decoded[k].dtype for k in decoded)
    assert "dcunpack:" in capsys.readouterr().err


def test_recipe_file_and_recipe_from_dcf(tmp_path, checkpoint):
    recipe = {"rules": [{"match": "fc1.weight", "sparsity": 0.5, "bits": 3}], "only": ["fc1.*", "norm.*"]}
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    assert dcpack.main([str(checkpoint), "-o", str(tmp_path / "a.dcf"), "--recipe", str(tmp_path / "r.json"), "-q"]) == 0
    assert dcpack.main([str(checkpoint), "-o", str(tmp_path / "b.dcf"), "--recipe", str(tmp_path / "a.dcf"), "-q"]) == 0
    a, b = dcformat.load_file(tmp_path / "a.dcf"), dcformat.load_file(tmp_path / "b.dcf")
    assert sorted(a) == ["fc1.bias", "fc1.weight", "norm.weight"]
    assert all(bits(a[k]) == bits(b[k]) for k in a)
    assert len(np.unique(a["fc1.weight"])) <= 8


def test_dctable_layers_and_stages(tmp_path, checkpoint, capsys):
    assert dcpack.main([str(checkpoint), "-o", str(tmp_path / "m.dcf"), "--sparsity", "0.8", "--bits", "4", "-q"]) == 0
    assert dctable.main([str(tmp_path / "m.dcf")]) == 0
    md = capsys.readouterr().out
    assert "| layer |" in md and "file on disk" in md and "rel. error" not in md
    assert dctable.main([str(tmp_path / "m.dcf"), "--source", str(checkpoint), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["file_bytes"] == (tmp_path / "m.dcf").stat().st_size
    assert any(r.get("relative_error") for r in data["rows"])
    code = dctable.main(["--stages", str(checkpoint), "-d", str(tmp_path / "stages"), "--sparsity", "0.8", "--bits", "4",
                         "--baselines", "gzip", "--layers", "-q"])
    assert code == 0
    out = capsys.readouterr().out
    assert "| P+Q |" in out and "gzip -9 bytes" in out and "zstd -19 bytes" not in out and "file on disk" in out
    assert sorted(p.name for p in (tmp_path / "stages").glob("*.dcf")) == [
        "model.P.dcf", "model.PQ.dcf", "model.U.dcf", "model.UQ.dcf"]


@pytest.mark.parametrize("args,match", [
    (["{ckpt}", "-o", "{tmp}/m.dcf", "--sparsity", "1.5"], "must be in [0, 1)"),
    (["{ckpt}", "-o", "{tmp}/m.dcf", "--bits", "x"], "not an integer"),
    (["{ckpt}", "-o", "{tmp}/m.dcf", "--index-bits", "99"], "auto, paper or 1..16"),
])
def test_usage_errors_are_one_line(tmp_path, checkpoint, capsys, args, match):
    args = [a.format(ckpt=checkpoint, tmp=tmp_path) for a in args]
    with pytest.raises(SystemExit) as info:
        dcpack.main(args)
    assert info.value.code == 2
    assert match in one_line_error(capsys, "dcpack")


@pytest.mark.parametrize("args,match", [
    (["{tmp}/missing.safetensors", "-o", "{tmp}/m.dcf"], "no such file"),
    (["{tmp}/model.h5", "-o", "{tmp}/m.dcf"], "unknown content"),  # inputs are judged by content
    (["{ckpt}", "-o", "{tmp}/m.dcf", "--quality", "1", "--sparsity", "0.5"], "not both"),
    (["{ckpt}", "-o", "{tmp}/m.dcf", "--recipe", "{tmp}/none.json"], "No such file"),
    (["{ckpt}", "-o", "{tmp}/m.dcf", "--recipe", "{tmp}/bad.json"], "unknown key"),
    (["{ckpt}", "-o", "{tmp}/m.dcf", "--only", "nothing"], "no tensor matches"),
    (["{ckpt}", "-o", "{tmp}/nodir/m.dcf"], "No such file"),
])
def test_user_errors_are_one_line(tmp_path, checkpoint, capsys, args, match):
    (tmp_path / "bad.json").write_text('{"rules": [{"sparsty": 0.9}]}')
    (tmp_path / "model.h5").write_bytes(b"x")
    args = [a.format(ckpt=checkpoint, tmp=tmp_path) for a in args]
    assert dcpack.main(args) == 1
    assert match in one_line_error(capsys, "dcpack")


@pytest.mark.parametrize("args,match", [
    (["{ckpt}", "-o", "{tmp}/m.bin"], "should end in .dcf"),
    (["{ckpt}", "-o", "{tmp}/m.dcf", "--recipe", "{tmp}/bad.json", "--bits", "4"], "replaces the recipe flags"),
    (["{ckpt}", "-o", "{tmp}/m.dcf", "--metadata", "novalue"], "KEY=VALUE"),
    (["{ckpt}", "{ckpt}", "-o", "{tmp}/m.dcf"], "-o names one output"),
])
def test_usage_errors_found_after_parsing_exit_2(tmp_path, checkpoint, capsys, args, match):
    args = [a.format(ckpt=checkpoint, tmp=tmp_path) for a in args]
    assert dcpack.main(args) == 2
    assert match in one_line_error(capsys, "dcpack")


def test_unpack_and_table_errors_are_one_line(tmp_path, checkpoint, capsys):
    (tmp_path / "bad.dcf").write_bytes(b"not a dcf file at all, clearly not one")
    assert dcunpack.main([str(tmp_path / "bad.dcf"), "-o", str(tmp_path / "o.safetensors")]) == 1
    one_line_error(capsys, "dcunpack")
    dcpack.main([str(checkpoint), "-o", str(tmp_path / "m.dcf"), "-q"])
    assert dcunpack.main([str(tmp_path / "m.dcf"), "-o", str(tmp_path / "o.h5")]) == 2  # a usage error, found before decoding
    assert "unknown checkpoint suffix" in one_line_error(capsys, "dcunpack")
    assert dctable.main([str(tmp_path / "bad.dcf")]) == 1
    one_line_error(capsys, "dctable")
    assert dctable.main([str(tmp_path / "m.dcf"), "--sparsity", "0.5"]) == 2  # usage
    assert "needs --stages" in one_line_error(capsys, "dctable")
    assert dctable.main(["--stages", str(checkpoint), "--sparsity", "0.5"]) == 2
    assert "--out-dir" in one_line_error(capsys, "dctable")


def test_console_script_no_traceback_and_no_torch(tmp_path, checkpoint):
    code = ("import sys; from dcformat.cli.dcpack import main; rc = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    ok = subprocess.run([sys.executable, "-c", code, str(checkpoint), "-o", str(tmp_path / "m.dcf"),
                         "--sparsity", "0.9", "--bits", "5"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "dcformat.cli.dcpack", str(tmp_path / "nope.npz"), "-o",
                          str(tmp_path / "x.dcf")], capture_output=True, text=True)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
