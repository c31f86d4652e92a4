"""libdcf under AddressSanitizer and UBSan, cross-checked with the Python reader (issue 11).

The driver (``libdcf/fuzz/fuzz_decode.c``, built by ``make native-asan``) decodes each input whole,
chunk by chunk, as float32, with and without checksums and with one allocation failing, and aborts
on any broken promise; ``tools/fuzz_libdcf.py`` compares its results with the Python reader's. The
default suite runs every truncation of every golden vector and a few thousand mutated files; the
100,000-file campaign and valgrind runs are slow tests.
"""
from __future__ import annotations

import itertools
import os
import pathlib
import random
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import fuzz_libdcf as fl  # noqa: E402

REGRESSIONS = [ROOT / "tests" / "fuzz_regressions_libdcf", ROOT / "tests" / "fuzz_regressions"]
CODEC_ERRORS = {"DCF_ERR_HUFFMAN_TABLE", "DCF_ERR_HUFFMAN_CODE", "DCF_ERR_ZSTD", "DCF_ERR_VALUE_BOUND",
                "DCF_ERR_PADDING", "DCF_ERR_CSR_POSITION", "DCF_ERR_BAD_CODEC_PARAM"}


def _make(target: str) -> None:
    if shutil.which("gcc") is None or shutil.which("make") is None:
        pytest.skip("gcc and make are needed to build libdcf under sanitizers")
    result = subprocess.run(["make", "-s", target], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"make {target} failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def driver() -> pathlib.Path:
    _make("native-asan")
    return fl.DRIVER


@pytest.fixture(scope="module")
def seeds():
    return fl.seed_files(quick=True)


def _assert_clean(summary: dict, zstd_ok: bool = False) -> None:
    """No finding; with ``zstd_ok``, except disagreements on ZSTD data while libdcf's libzstd and
    the Python reader's zstd are different versions (tests/fuzz_regressions_libdcf/README.md)."""
    c_zstd, py_zstd = fl.zstd_versions()
    tolerated = zstd_ok and c_zstd != py_zstd
    bad = {k: v for k, v in summary["findings"].items() if not (tolerated and k.endswith(":zstd"))}
    assert not bad, "libdcf findings:\n" + "\n\n".join(
        f"{k} ({summary['findings'][k]}x): {summary['first_finding'][k]}" for k in bad)


def test_every_truncation_of_every_vector(driver):
    """The driver cuts every vector itself (every prefix, every cut of the data section with the
    index kept: each in a buffer of exactly its size) and decodes each cut: all refused, cleanly."""
    vectors = fl.vectors()
    result = subprocess.run([str(driver), "--truncations", *map(str, vectors)], capture_output=True, text=True,
                            env=dict(os.environ, **fl.SANITIZER_ENV))
    assert result.returncode == 0, result.stderr[-3000:]
    names = fl.error_names()
    lines = result.stdout.splitlines()
    assert len(lines) == len(vectors)
    whole = subprocess.run([str(driver), *map(str, vectors)], capture_output=True, text=True,
                           env=dict(os.environ, **fl.SANITIZER_ENV))
    assert whole.returncode == 0, whole.stderr[-3000:]
    refused = [fl.parse_line(line, names)["open"] for line in whole.stdout.splitlines()]
    for path, line, own in zip(vectors, lines, refused):
        data = path.read_bytes()
        index_at = len(data) - 16 - int.from_bytes(data[-16:-8], "little")
        fields = line.split()
        assert fields[0] == str(path) and fields[1] == "truncations"
        assert int(fields[2]) == len(data) + index_at - 16, line
        assert fields[3:5] == ["accepted", "0"], line
        codes = {names[int(c)] for c, _ in (f.split(":") for f in fields[5:])}
        # the cut's own errors, or (a vector of a file to refuse) the whole vector's
        assert codes <= {"DCF_ERR_TRUNCATED", "DCF_ERR_BAD_END_MAGIC", "DCF_ERR_OFFSET", "DCF_ERR_BAD_MAGIC", own}, line


def test_truncations_agree_with_the_python_reader(driver, tmp_path):
    """A sample of the truncations (every 11th) through both decoders."""
    vectors = [(p.name, p.read_bytes()) for p in fl.vectors()]
    inputs = list(itertools.islice(fl.truncations(vectors), 0, None, 11))
    summary = fl.run_campaign(inputs, driver=driver, findings=tmp_path, quiet=True)
    _assert_clean(summary)
    assert summary["inputs"] == len(inputs) and summary["accepted"] == 0


def test_seed_files_decode_identically(driver, seeds, tmp_path):
    """Every seed (golden vectors, writer files of every codec, layout and dtype) decodes in both
    decoders to the same values, with checksums checked and skipped."""
    inputs = [(name, data, skip) for name, data in seeds for skip in (False, True)]
    vectors = [i for i in inputs if not i[0].startswith("writer_")]
    _assert_clean(fl.run_campaign(vectors, driver=driver, findings=tmp_path, quiet=True))
    written = [i for i in inputs if i[0].startswith("writer_")]
    summary = fl.run_campaign(written, driver=driver, findings=tmp_path, quiet=True)
    _assert_clean(summary)
    assert summary["accepted"] == len(written) > 200


def test_mutated_files(driver, seeds, tmp_path):
    """A few thousand mutated files: each a clean error or the Python reader's values; the
    mutations behind recomputed CRCs reach the codecs (their errors are among the refusals)."""
    mutator = fl.Mutator(seeds, variants=4)
    summary = fl.run_campaign(fl.mutations(mutator, seed=20261201, count=2500), driver=driver,
                              findings=tmp_path, quiet=True)
    _assert_clean(summary)
    assert summary["inputs"] == 2500
    assert 0 < summary["accepted"] < 2500
    refusals = set(summary["refused_at_open"]) | set(summary["refused_at_decode"])
    assert len(refusals) >= 15, refusals
    assert len(CODEC_ERRORS & set(summary["refused_at_decode"])) >= 4, summary["refused_at_decode"]
    assert "DCF_ERR_STREAM_CHECKSUM" in summary["refused_at_decode"]


def test_regression_inputs(driver, tmp_path):
    """Every saved fuzzing reproducer (libdcf's and the Python reader's) ends in a clean error or
    the Python reader's values, with checksums checked and skipped."""
    files = sorted(p for d in REGRESSIONS if d.is_dir() for p in d.glob("*.dcf"))
    assert files
    inputs = [(p.name, p.read_bytes(), skip) for p in files for skip in (False, True)]
    _assert_clean(fl.run_campaign(inputs, driver=driver, findings=tmp_path, quiet=True))


def test_zstd_version_differences(driver, tmp_path):
    """Malformed ZSTD frames that libzstd 1.5.4 and zstd 1.5.7 decode differently: no sanitizer
    report, and disagreements only on the ZSTD tensors, only while the versions differ."""
    files = sorted((REGRESSIONS[0] / "zstd_versions").glob("*.dcf"))
    assert len(files) == 4
    inputs = [(p.name, p.read_bytes(), skip) for p in files for skip in (False, True)]
    summary = fl.run_campaign(inputs, driver=driver, findings=tmp_path, quiet=True)
    _assert_clean(summary, zstd_ok=True)
    if fl.zstd_versions()[0] != fl.zstd_versions()[1]:
        assert summary["findings"]  # still a difference: else these files can move to the regressions


def test_driver_without_zstd_refuses_zstd_files_cleanly(driver):
    nozstd = fl.DRIVER.parent / "nozstd" / "dcf_fuzz_driver"
    result = subprocess.run([str(nozstd), str(fl.fh.VECTORS / "09_zstd.dcf"), str(fl.fh.VECTORS / "01_dense_raw.dcf")],
                            capture_output=True, text=True, env=dict(os.environ, **fl.SANITIZER_ENV))
    assert result.returncode == 0, result.stderr
    names = fl.error_names()
    zstd_line, raw_line = (fl.parse_line(line, names) for line in result.stdout.splitlines())
    assert zstd_line["open"] is None and "DCF_ERR_ZSTD_UNSUPPORTED" in [t[0] for t in zstd_line["tensors"]]
    assert fl.accepted(raw_line)


def test_the_checks_catch_a_wrong_decode(driver):
    """--selftest changes one bit of every chunk decode: the driver must stop with a report."""
    result = subprocess.run([str(driver), "--selftest", str(fl.fh.VECTORS / "08_multichunk.dcf")],
                            capture_output=True, text=True, env=dict(os.environ, **fl.SANITIZER_ENV))
    assert result.returncode != 0
    assert "LIBDCF BUG" in result.stderr and "chunked and whole decodes differ" in result.stderr


def test_compare_names_every_disagreement(driver):
    """The cross-check flags changed values, float32 values, metadata, tensor tables and refusals."""
    path = fl.fh.VECTORS / "13_metadata_unicode.dcf"
    data = path.read_bytes()
    line, died = fl.Driver(driver, 20).run(data, False)
    assert died is None
    c, py = fl.parse_line(line, fl.error_names()), fl.python_result(data, False)
    assert fl.compare(c, py) == []
    t0 = c["tensors"][0]
    cases = {
        "values": dict(c, tensors=[(None, t0[1] ^ 1, *t0[2:])] + c["tensors"][1:]),
        "f32-values": dict(c, tensors=[(*t0[:3], t0[3] ^ 1, "")] + c["tensors"][1:]),
        "metadata": dict(c, meta_crc=c["meta_crc"] ^ 1),
        "tensor-table": dict(c, info_crc=c["info_crc"] ^ 1),
        "attachments": dict(c, attach_crc=c["attach_crc"] ^ 1),
        "accept-refuse:py:DCF_ERR_HUFFMAN_CODE": dict(c, tensors=[("DCF_ERR_HUFFMAN_CODE", None, None, None, "")]
                                                         + c["tensors"][1:]),
        "accept-refuse:py:DCF_ERR_OFFSET": {"open": "DCF_ERR_OFFSET", "message": "x"},
    }
    for signature, doctored in cases.items():
        assert signature in [s for s, _ in fl.compare(doctored, py)], signature


def test_index_walk_finds_every_field():
    data = (fl.fh.VECTORS / "04_csr_codebook_huffman.dcf").read_bytes()
    fields = {name for _, _, name in fl.index_fields(data)}
    for name in ("tensor_count", "metadata_count", "name_length", "dtype", "rank", "shape", "layout",
                 "value_coding", "index_bits", "codebook_dtype", "codebook_size", "chunk_count",
                 "codebook.codec", "codebook.count", "extent", "row_counts.length", "gaps.param",
                 "values.crc32", "index_length", "index_crc32"):
        assert name in fields, name
    # the walk ends exactly at the trailer
    last_offset, last_size, _ = max((f for f in fl.index_fields(data) if f[0] < len(data) - 16))
    assert last_offset + last_size == len(data) - 16


@pytest.mark.slow
def test_campaign_of_100000_mutated_files(driver, tmp_path):
    inputs = itertools.chain(fl.truncations([(p.name, p.read_bytes()) for p in fl.vectors()]),
                             fl.mutations(fl.Mutator(fl.seed_files()), seed=1, count=100_000))
    summary = fl.run_campaign(inputs, driver=driver, findings=tmp_path, quiet=True)
    _assert_clean(summary, zstd_ok=True)
    assert summary["inputs"] >= 100_000


# ------------------------------------------------------------------------------------------------
# valgrind


def _valgrind(cmd, **kw):
    return subprocess.run(["valgrind", "-q", "--error-exitcode=97", "--leak-check=full",
                           "--errors-for-leak-kinds=definite,indirect", "--show-leak-kinds=definite,indirect",
                           *cmd], capture_output=True, text=True, **kw)


@pytest.mark.slow
def test_dcfdecode_under_valgrind(tmp_path, seeds):
    """dcfdecode on every vector and on mutated files: no memory error, no leak (exit 97 is
    valgrind's; dcfdecode's own are 0 for a decoded file and 1 for a refused one)."""
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed (apt-get install -y valgrind)")
    _make("native")
    dcfdecode = ROOT / "build" / "native" / "dcfdecode"
    mutator = fl.Mutator(seeds, variants=2)
    rng = random.Random(5)
    files = list(fl.vectors())
    for k in rng.sample(range(100_000), 40):
        _, data, _ = mutator.input(9, k)
        path = tmp_path / f"mutated_{k}.dcf"
        path.write_bytes(data)
        files.append(path)
    outcomes = []
    for path in files:
        for cmd in ([str(dcfdecode), "--list", str(path)],
                    [str(dcfdecode), str(path), "-o", str(tmp_path / "out.safetensors")]):
            result = _valgrind(cmd)
            assert result.returncode in (0, 1), f"{path}: {result.returncode}\n{result.stderr[-3000:]}"
            assert "==" not in result.stderr, f"{path}: valgrind reported:\n{result.stderr[-3000:]}"
            outcomes.append(result.returncode)
    assert 0 in outcomes and 1 in outcomes


@pytest.mark.slow
def test_driver_under_valgrind(driver, tmp_path, seeds):
    """The harness without sanitizers, under valgrind, on the seeds and mutated files."""
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed (apt-get install -y valgrind)")
    plain = fl.DRIVER.parent / "dcf_fuzz_driver_plain"
    mutator = fl.Mutator(seeds, variants=2)
    paths = []
    for i, (name, data) in enumerate(seeds[:40]):
        paths.append(tmp_path / f"seed_{i}.dcf")
        paths[-1].write_bytes(data)
    for k in range(200):
        _, data, _ = mutator.input(3, k)
        paths.append(tmp_path / f"mutated_{k}.dcf")
        paths[-1].write_bytes(data)
    result = _valgrind([str(plain), *map(str, paths)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "==" not in result.stderr, result.stderr[-3000:]
