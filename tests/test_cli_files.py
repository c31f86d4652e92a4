"""dcpack and dcunpack with files as gzip and zstd treat them: -f/--force, default output names,
several inputs, - for stdin/stdout, errors that name the file, write failures in one line."""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from pack_fixtures import small_model

import dcformat
import dcformat.pack
from dcformat.pack import save_checkpoint


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture()
def cli(capsysbinary, monkeypatch):
    """Run a command in this process: ``cli(prog, *args, cwd=, stdin=bytes)`` -> Result."""
    import io

    from dcformat.cli import dcpack, dcunpack

    mains = {"dcpack": dcpack.main, "dcunpack": dcunpack.main}

    def run(prog, *args, cwd=None, stdin=None):
        if cwd is not None:
            monkeypatch.chdir(cwd)
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        capsysbinary.readouterr()
        code = mains[prog]([str(a) for a in args])
        out, err = capsysbinary.readouterr()
        return Result(code, out, err)

    return run


def one_line(result, prog):
    err = result.stderr.decode().strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in result.stderr.decode()
    return err[0]


@pytest.fixture()
def model(tmp_path):
    path = tmp_path / "model.safetensors"
    save_checkpoint(small_model(), path)
    return path


def _mount_tmpfs(path, options):
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


@pytest.fixture()
def readonly_dir(tmp_path):
    path = tmp_path / "ro"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        path.mkdir()
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    if not _mount_tmpfs(path, "ro,size=1m"):
        pytest.skip("cannot make a read-only directory here (root without mount)")
    yield path
    subprocess.run(["umount", str(path)])


@pytest.fixture()
def full_dir(tmp_path):
    path = tmp_path / "full"
    if not _mount_tmpfs(path, "size=32k"):
        pytest.skip("a full file system needs root and tmpfs")
    yield path
    subprocess.run(["umount", str(path)])


def test_existing_output_is_kept_without_force(tmp_path, model, cli):
    out = tmp_path / "model.dcf"
    out.write_bytes(b"precious")
    result = cli("dcpack", model, "-o", out, "-q")
    assert result.returncode == 1
    line = one_line(result, "dcpack")
    assert str(out) in line and "--force" in line
    assert out.read_bytes() == b"precious"
    assert cli("dcpack", model, "-o", out, "-q", "-f").returncode == 0
    assert sorted(dcformat.load_file(out)) == sorted(small_model())

    restored = tmp_path / "r.safetensors"
    restored.write_bytes(b"precious")
    result = cli("dcunpack", out, "-o", restored, "-q")
    assert result.returncode == 1 and "--force" in one_line(result, "dcunpack")
    assert restored.read_bytes() == b"precious"
    assert cli("dcunpack", out, "-o", restored, "-q", "--force").returncode == 0
    assert restored.read_bytes() != b"precious"


def test_default_names_and_several_inputs(tmp_path, cli):
    for name, seed in (("a", 1), ("b", 2)):
        save_checkpoint(small_model(seed), tmp_path / f"{name}.safetensors")
    result = cli("dcpack", "a.safetensors", "b.safetensors", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    for name, seed in (("a", 1), ("b", 2)):
        loaded = dcformat.load_file(tmp_path / f"{name}.dcf")
        assert all(np.array_equal(loaded[k], v) for k, v in small_model(seed).items())
        (tmp_path / f"{name}.safetensors").rename(tmp_path / f"{name}.orig.safetensors")
    result = cli("dcunpack", "a.dcf", "b.dcf", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    for name, seed in (("a", 1), ("b", 2)):
        restored = dcformat.pack.load_checkpoint(tmp_path / f"{name}.safetensors")[0]
        assert all(np.array_equal(restored[k], v) for k, v in small_model(seed).items())


def test_o_with_several_inputs_is_a_usage_error(tmp_path, model, cli):
    for prog, args in (("dcpack", [model, model, "-o", "x.dcf"]), ("dcunpack", ["a.dcf", "b.dcf", "-o", "x.npz"])):
        result = cli(prog, *args, cwd=tmp_path)
        assert result.returncode == 2 and "-o" in one_line(result, prog)


def test_one_bad_input_does_not_stop_the_others(tmp_path, model, cli):
    (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    result = cli("dcpack", "bad.safetensors", model.name, "-q", cwd=tmp_path)
    assert result.returncode == 1
    assert "bad.safetensors" in one_line(result, "dcpack")
    assert (tmp_path / "model.dcf").exists() and not (tmp_path / "bad.dcf").exists()


def test_stdin_and_stdout(tmp_path, model, cli):
    result = cli("dcpack", "-", "-o", tmp_path / "s.dcf", "-q", stdin=model.read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    assert cli("dcunpack", tmp_path / "s.dcf", "-o", tmp_path / "file.safetensors", "-q").returncode == 0
    piped = cli("dcunpack", tmp_path / "s.dcf", "-o", "-")
    assert piped.returncode == 0 and piped.stderr == b""
    assert piped.stdout == (tmp_path / "file.safetensors").read_bytes()
    result = cli("dcunpack", "-", "-o", tmp_path / "in.npz", "-q", stdin=(tmp_path / "s.dcf").read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    assert sorted(np.load(tmp_path / "in.npz").files) == sorted(small_model())
    assert cli("dcpack", "-").returncode == 2  # stdin needs -o


def test_stdout_on_a_full_device(tmp_path, model):
    assert subprocess.run([sys.executable, "-m", "dcformat.cli.dcpack", str(model), "-q"]).returncode == 0
    with open("/dev/full", "wb") as full:
        result = subprocess.run([sys.executable, "-m", "dcformat.cli.dcunpack", str(tmp_path / "model.dcf"), "-o", "-"],
                                stdout=full, stderr=subprocess.PIPE)
    assert result.returncode == 1
    assert one_line(result, "dcunpack") == "dcunpack: error: <stdout>: No space left on device"


def test_dcunpack_errors_name_the_file(tmp_path, cli):
    (tmp_path / "bad.dcf").write_bytes(b"DCF but not really, and far too short")
    result = cli("dcunpack", "bad.dcf", "-o", "x.safetensors", cwd=tmp_path)
    assert result.returncode == 1 and "bad.dcf" in one_line(result, "dcunpack")
    result = cli("dcunpack", "missing.dcf", cwd=tmp_path)
    assert result.returncode == 1 and "missing.dcf" in one_line(result, "dcunpack")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".npz"])
def test_read_only_directory(tmp_path, model, readonly_dir, suffix, cli):
    assert cli("dcpack", model, "-q").returncode == 0
    target = readonly_dir / f"r{suffix}"
    result = cli("dcunpack", tmp_path / "model.dcf", "-o", target, "-q")
    assert result.returncode == 1
    line = one_line(result, "dcunpack")
    assert str(target) in line and ".tmp" not in line
    result = cli("dcpack", model, "-o", readonly_dir / "m.dcf", "-q")
    assert result.returncode == 1 and str(readonly_dir / "m.dcf") in one_line(result, "dcpack")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, model, full_dir, suffix, cli):
    assert cli("dcpack", model, "-q").returncode == 0
    target = full_dir / f"r{suffix}"
    result = cli("dcunpack", tmp_path / "model.dcf", "-o", target, "-q")
    assert result.returncode == 1
    assert one_line(result, "dcunpack") == f"dcunpack: error: {target}: No space left on device"
    assert os.listdir(full_dir) == []


def test_pickled_module_refusal_is_one_clean_sentence(tmp_path, cli):
    torch = pytest.importorskip("torch")
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(4, 3), path)
    result = cli("dcpack", path, "-q")
    assert result.returncode == 1
    line = one_line(result, "dcpack")
    assert "\\x1b" not in line and "\x1b" not in line
    # the library's own sentence, whole, naming the object (the CLI matches no torch text)
    assert line == (f"dcpack: error: {str(path)!r}: holds pickled Python objects (torch.nn.modules.linear.Linear), "
                    "which dcformat never unpickles (torch.load(weights_only=True)); save the state dict instead: "
                    "torch.save(model.state_dict(), path)")


def test_fp8_safetensors_packs_bit_exact(tmp_path, cli):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    path = tmp_path / "fp8.safetensors"
    w = torch.randn(64, 64).to(torch.float8_e4m3fn)
    save_file({"w": w, "b": torch.zeros(3)}, str(path))
    result = cli("dcpack", path, "-q")
    assert result.returncode == 0, result.stderr  # format 1.2: float8 is packed, not refused
    import ml_dtypes

    loaded = dcformat.load_file(tmp_path / "fp8.dcf")
    assert loaded["w"].dtype == ml_dtypes.float8_e4m3fn
    assert loaded["w"].view(np.uint8).tobytes() == w.view(torch.uint8).numpy().tobytes()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs a pseudo-terminal")
def test_binary_output_is_not_written_to_a_terminal(tmp_path):
    import pty

    dcformat.save_file({"w": np.ones((4, 4), np.float32)}, tmp_path / "m.dcf")
    pid, fd = pty.fork()
    if pid == 0:  # the child: stdout is the terminal
        os.execv(sys.executable, [sys.executable, "-m", "dcformat.cli.dcunpack", str(tmp_path / "m.dcf"), "-o", "-"])
    out = b""
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        out += data
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 2
    assert out.decode().strip().startswith("dcunpack: error: -o - would write binary safetensors to the terminal")
