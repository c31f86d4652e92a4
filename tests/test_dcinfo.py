"""dcinfo: headers only (no JIT), --json, --verify, one-line errors on bad files."""
import json
import pathlib
import subprocess
import sys

import pytest

VECTORS = pathlib.Path(__file__).parent.parent / "spec" / "vectors"
FILES = sorted(str(p) for p in VECTORS.glob("*.dcf"))


def dcinfo(*args):
    return subprocess.run([sys.executable, "-m", "dcformat.cli.dcinfo", *args], capture_output=True, text=True)


def test_text_output_on_every_vector():
    result = dcinfo(*FILES)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("dcf 1.0") == len(FILES)
    assert "bytes by part" in result.stdout


def test_json_parses_and_parts_add_up():
    result = dcinfo("--json", *FILES)
    assert result.returncode == 0, result.stderr
    summaries = json.loads(result.stdout)
    assert len(summaries) == len(FILES)
    for s in summaries:
        assert sum(s["bytes_by_part"].values()) == s["file_bytes"] == pathlib.Path(s["file"]).stat().st_size


def test_verify_passes_and_counts_nonzeros():
    result = dcinfo("--verify", "--json", *FILES)
    assert result.returncode == 0, result.stderr
    for s in json.loads(result.stdout):
        assert s["verified"] and s["nonzeros"] is not None


def test_header_only_run_does_not_import_numba():
    code = ("import sys; from dcformat.cli.dcinfo import main; main(sys.argv[1:]); "
            "assert 'numba' not in sys.modules, 'dcinfo imported numba'")
    result = subprocess.run([sys.executable, "-c", code, *FILES], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("damage", ["truncate", "flip_index", "not_dcf", "missing"])
def test_bad_file_one_line_error(tmp_path, damage):
    data = pathlib.Path(FILES[3]).read_bytes()
    path = tmp_path / "bad.dcf"
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip_index":
        path.write_bytes(data[:-20] + bytes([data[-20] ^ 0xFF]) + data[-19:])
    elif damage == "not_dcf":
        path.write_bytes(b"hello world, this is not a dcf file at all")
    result = dcinfo(str(path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dcinfo: ") and "Traceback" not in result.stderr


def test_names_are_sanitised():
    result = dcinfo(str(VECTORS / "13_metadata_unicode.dcf"))
    assert "tab\\tname" in result.stdout and "\t" not in result.stdout.split("tab")[1][:3]
