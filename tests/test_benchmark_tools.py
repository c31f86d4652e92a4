"""The benchmark's own helpers keep working as the library changes (they patch its internals)."""
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import dcformat

TOOLS = pathlib.Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))

import bench_profile  # noqa: E402


def test_decode_profile_accounts_every_stage(tmp_path):
    from dcformat.compress import magnitude_mask, share_weights

    rng = np.random.default_rng(0)
    w = rng.laplace(size=(300, 784)).astype(np.float32)
    path = tmp_path / "m.dcf"
    dcformat.save_file({"w": share_weights(w, magnitude_mask(w, 0.9), bits=5), "raw": w}, path)
    total, stages, _ = bench_profile.decode_profile(str(path), repeat=1)
    labels = dict(stages)
    assert total > 0 and any(label.startswith("CRC-32 (") for label in labels)
    assert any(label.startswith("Huffman") for label in labels) and "CSR scatter (+ codebook lookup)" in labels
    assert dcformat.reader.crc32 is dcformat.checksum.crc32  # unpatched afterwards


@pytest.mark.slow
def test_benchmark_runs_on_the_smallest_model():
    run = subprocess.run([sys.executable, str(TOOLS / "benchmark.py"), "--models", "lenet-300-100", "--quick",
                          "--repeat", "1", "--no-scale"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "| dcf, default options (lossless) |" in run.stdout and "| dcf, Deep Compression |" in run.stdout
