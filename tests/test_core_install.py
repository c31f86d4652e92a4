"""`pip install <checkout>` without extras, in a fresh venv: dcpack, dcunpack, dcinfo and dctable work
on .safetensors and .npz; a torch file, a .pt output and --plot each fail in one line naming the
extra to install. Slow: builds a venv and installs the package with its core dependencies."""
import os
import subprocess
import sys

import numpy as np
import pytest
from pack_fixtures import small_model

from dcformat.pack import save_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory):
    venv = tmp_path_factory.mktemp("core") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                          "-c", os.path.join(ROOT, "constraints.txt"), ROOT], capture_output=True, text=True)
    if pip.returncode and ("No matching distribution" in pip.stderr or "Could not find a version" in pip.stderr):
        pytest.skip("the core dependencies cannot be installed here (no package index): " + pip.stderr[-300:])
    assert pip.returncode == 0, pip.stderr[-3000:]
    return venv / "bin"


def run(bin_dir, tool, *args, cwd):
    return subprocess.run([str(bin_dir / tool), *args], cwd=cwd, capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)})


@pytest.mark.slow
def test_core_install_packs_safetensors_and_npz_and_names_the_extras(core_venv, tmp_path):
    bins = core_venv
    check = subprocess.run([str(bins / "python"), "-c", "import importlib.util as u; "
                            "print([m for m in ('torch', 'matplotlib') if u.find_spec(m)])"],
                           capture_output=True, text=True)
    assert check.stdout.strip() == "[]", "the fresh venv should have neither torch nor matplotlib"
    model = small_model()
    save_checkpoint(model, tmp_path / "m.safetensors")
    save_checkpoint(model, tmp_path / "m.npz")
    save_checkpoint(model, tmp_path / "m.pt")  # written here, with torch

    for name in ("m.safetensors", "m.npz"):
        done = run(bins, "dcpack", name, "-o", name + ".dcf", "-q", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        done = run(bins, "dcunpack", name + ".dcf", "-o", "back_" + name.replace(".", "_") + ".safetensors", "-q",
                   cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    assert run(bins, "dcinfo", "m.safetensors.dcf", cwd=tmp_path).returncode == 0
    done = run(bins, "dcpack", "m.safetensors", "-o", "safe.dcf", "--preset", "safe", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = run(bins, "dctable", "--budgets", "0.01,0.05", "m.safetensors", cwd=tmp_path)
    assert done.returncode == 0 and "0.05" in done.stdout, done.stderr

    def one_line_naming(done, extra):
        lines = [line for line in done.stderr.splitlines() if "compiling kernels" not in line]
        assert done.returncode == 1 and len(lines) == 1 and f"dcformat[{extra}]" in lines[0], done.stderr
        assert "Traceback" not in done.stderr

    one_line_naming(run(bins, "dcpack", "m.pt", "-o", "t.dcf", cwd=tmp_path), "torch")
    os.rename(tmp_path / "m.pt", tmp_path / "weights.data")  # by content, whatever the name
    one_line_naming(run(bins, "dcpack", "weights.data", "-o", "t.dcf", cwd=tmp_path), "torch")
    one_line_naming(run(bins, "dcunpack", "m.safetensors.dcf", "-o", "r.pt", cwd=tmp_path), "torch")
    one_line_naming(run(bins, "dctable", "--budgets", "0.01", "m.npz", "--plot", "p.png", cwd=tmp_path), "plots")
    restored = np.load(tmp_path / "m.npz")
    assert set(restored.files) == set(model)
