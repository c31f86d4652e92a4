"""The conventions every command keeps: --version, exit statuses, pipes, encodings, terminal width,
errors that name the user's path, Ctrl-C, the first run's JIT note."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import dcformat

VECTORS = pathlib.Path(__file__).parent.parent / "spec" / "vectors"
COMMANDS = ("dcinfo", "dcpack", "dcunpack", "dctable")


def cli(prog, *args, env=None, stdin=None, input=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", f"dcformat.cli.{prog}", *map(str, args)], capture_output=True,
                          env=full_env, stdin=stdin, input=input)


@pytest.fixture()
def long_names(tmp_path):
    """A small file whose tensor names are long (and one is not ASCII)."""
    path = tmp_path / "long.dcf"
    tensors = {
        "encoder.layer.11.attention.self.query.weight.with.a.very.long.suffix.that.goes.on": np.ones((4, 3), np.float32),
        "décodeur.poids": np.arange(6, dtype=np.float32).reshape(2, 3),
    }
    dcformat.save_file(tensors, path)
    return path, tensors


@pytest.mark.parametrize("prog", COMMANDS)
def test_version(prog):
    result = cli(prog, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == f"{prog} (dcformat) {dcformat.__version__}"


def test_dcinfo_into_a_closed_pipe_is_quiet():
    files = [VECTORS / "13_metadata_unicode.dcf"] * 400  # far more than a pipe buffer holds
    proc = subprocess.Popen([sys.executable, "-m", "dcformat.cli.dcinfo", *map(str, files)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()  # what `| head -1` does: one line, then the pipe closes
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait()
    assert first.startswith(str(VECTORS).encode())
    assert err == b"", err.decode()
    assert proc.returncode in (0, 141)


def test_a_long_file_path_is_printed_whole(tmp_path):
    deep = tmp_path / ("d" * 70) / "13_metadata_unicode.dcf"  # longer than 80 columns with the summary
    deep.parent.mkdir()
    deep.write_bytes((VECTORS / "13_metadata_unicode.dcf").read_bytes())
    lines = cli("dcinfo", str(deep), env={"COLUMNS": ""}).stdout.decode().splitlines()
    assert lines[0] == f"{deep}:"  # whole, never elided: the user may copy it
    assert lines[1].strip().startswith("dcf 1.0, 2 tensors, 5 parameters")
    assert all(len(line) <= 80 for line in lines[1:])


def test_ascii_only_locale(long_names):
    path, _ = long_names
    result = cli("dcinfo", path, env={"LC_ALL": "C", "PYTHONIOENCODING": "ascii"})
    assert result.returncode == 0, result.stderr.decode()
    text = result.stdout.decode("ascii")  # nothing but ASCII came out
    assert "2x3" in text and "d\\xe9codeur.poids" in text
    assert "x smaller" in text or "x larger" in text
    # the same run in UTF-8 prints the real characters
    utf8 = cli("dcinfo", path, env={"PYTHONIOENCODING": "utf-8"}).stdout.decode()
    assert "2×3" in utf8 and "décodeur.poids" in utf8


def test_ascii_locale_help_and_errors():
    env = {"LC_ALL": "C", "PYTHONIOENCODING": "ascii"}
    for prog in COMMANDS:
        result = cli(prog, "--help", env=env)
        assert result.returncode == 0, (prog, result.stderr.decode())
        result.stdout.decode("ascii")
    missing = cli("dcinfo", "nowhere/é.dcf", env=env)
    assert missing.returncode == 1 and b"Traceback" not in missing.stderr
    assert missing.stderr.decode("ascii").count("\n") == 1


def test_table_fits_80_columns_names_elided_in_the_middle(long_names):
    path, tensors = long_names
    result = cli("dcinfo", path, env={"COLUMNS": ""})
    text = result.stdout.decode()
    assert result.returncode == 0
    lines = text.splitlines()
    assert lines[0].startswith(str(path))  # the path, whole (its own line when long: CI's paths are longer)
    assert max(len(line) for line in lines[1:]) <= 80, text
    long = next(iter(tensors))
    assert long not in text
    row = next(line for line in text.splitlines() if line.strip().startswith("e.l.11."))
    shown = row.split()[0]  # segments cut to their first letter, the layer number and the end kept
    assert len(shown) < len(long) and shown.endswith(".goes.on")
    assert all(long.split(".")[i].startswith(part) for i, part in enumerate(shown.split(".")))
    assert "--wide: full names" in text


def test_wide_shows_everything_and_json_is_unchanged(long_names):
    path, tensors = long_names
    wide = cli("dcinfo", "--wide", path).stdout.decode()
    assert all(name in wide for name in tensors) and "codecs" in wide
    data = json.loads(cli("dcinfo", "--json", path).stdout)
    assert {t["name"] for t in data[0]["tensors"]} == set(tensors)
    assert set(data[0]) >= {"file_bytes", "ratio_vs_float32", "tensors", "bytes_by_part"}


def test_tiny_file_reads_larger_not_smaller(long_names):
    path, _ = long_names
    text = cli("dcinfo", path).stdout.decode()
    ratio = json.loads(cli("dcinfo", "--json", path).stdout)[0]["ratio_vs_float32"]
    assert ratio < 1
    assert f"{1 / ratio:.2f}× larger than float32" in text and "smaller" not in text


def test_dcinfo_reads_stdin(long_names):
    path, tensors = long_names
    with open(path, "rb") as f:
        result = cli("dcinfo", "--json", "-", stdin=f)
    assert result.returncode == 0, result.stderr.decode()
    data = json.loads(result.stdout)
    assert data[0]["file"] == "<stdin>" and len(data[0]["tensors"]) == len(tensors)


@pytest.mark.parametrize("argv", [
    ["dcinfo", "--no-such-flag", "x.dcf"],
    ["dcpack", "m.safetensors", "-o", "m.dcf", "--preset", "safe", "--bits", "3"],
    ["dcpack", "m.safetensors", "-o", "m.dcf", "--max-error", "0.1", "--sparsity", "0.5"],
    ["dcpack", "m.safetensors", "-o", "m.txt"],
    ["dcpack", "m.safetensors", "-o", "m.dcf", "--metadata", "novalue"],
    ["dctable", "m.dcf", "--plot", "p.png"],
    ["dctable", "m.dcf", "--bits", "4"],
    ["dctable", "m.safetensors", "--stages"],
    ["dctable", "m.safetensors", "--stages", "-d", "out", "--budgets", "0.1"],
    ["dcunpack", "m.dcf", "-o", "x.weird"],
    ["dcunpack", "m.dcf", "-o", "x.safetensors", "--max-shard-size", "2GB"],
    ["dcunpack", "m.dcf", "-o", "x.safetensors", "--external-data"],
    ["dcunpack", "m.dcf", "-o", "x.onnx", "--flat"],
    ["dcunpack", "m.dcf", "-o", "-", "--format", "torch"],
])
def test_usage_errors_exit_2_in_one_line(tmp_path, argv):
    from dcformat.pack import save_checkpoint

    save_checkpoint({"w": np.ones((64, 64), np.float32)}, tmp_path / "m.safetensors")
    dcformat.save_file({"w": np.ones((4, 4), np.float32)}, tmp_path / "m.dcf")
    prog, *args = argv
    result = subprocess.run([sys.executable, "-m", f"dcformat.cli.{prog}", *args], capture_output=True,
                            cwd=tmp_path, text=True)
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), lines


def test_an_error_names_the_path_once(tmp_path):
    """dcinfo leads each file's line with its path: an error that names it too (the OS's, the
    reader's) is not printed twice."""
    (tmp_path / "train.py").write_text("print('not a model')\n" * 3)
    for name, what in [("missing.dcf", "No such file or directory"), ("train.py", "BadMagicError: not a dcf file")]:
        result = subprocess.run([sys.executable, "-m", "dcformat.cli.dcinfo", name], capture_output=True,
                                cwd=tmp_path, text=True)
        assert result.returncode == 1
        assert result.stderr.strip() == f"dcinfo: {name}: {what}" + ("" if "No such" in what else " (bad magic)")


def test_bad_data_exits_1(tmp_path):
    (tmp_path / "bad.dcf").write_bytes(b"not a dcf file at all, not even close")
    for prog, args in [("dcinfo", ["bad.dcf"]), ("dcunpack", ["bad.dcf", "-o", "r.safetensors"]),
                       ("dctable", ["bad.dcf"])]:
        result = subprocess.run([sys.executable, "-m", f"dcformat.cli.{prog}", *args], capture_output=True,
                                cwd=tmp_path, text=True)
        assert result.returncode == 1, (prog, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_errors_name_the_target_not_the_temporary_file(tmp_path):
    from dcformat.atomic import AtomicFile
    from dcformat.cli._common import describe_error

    target = tmp_path / "x.dcf"
    atomic = AtomicFile(target)
    try:
        error = OSError(28, "No space left on device", atomic.temp)
        text = describe_error(error)
        message = describe_error(ValueError(f"cannot write {atomic.temp!r}: disk full"))
    finally:
        atomic.discard()
    assert text == f"{target}: No space left on device"
    assert ".tmp" not in message and str(target) in message
    # a temporary file of another process, known only by its name's pattern
    other = describe_error(OSError(13, "Permission denied", str(tmp_path / ".m.pt.1a2b3c4d.4242.k2j_x9ab.tmp")))
    assert other == f"{tmp_path / 'm.pt'}: Permission denied"


def test_jit_note_only_while_the_cache_is_empty(tmp_path):
    code = ("import sys; from dcformat.cli import _common; "
            "sys.exit(0 if _common.note_first_compile('dcpack') else 3)")
    # a fresh NUMBA_CACHE_DIR: Numba caches there alone, so every kernel compiles and the note is armed
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, **env})
    assert result.stderr == ""  # armed, but nothing was compiled yet: no note
    assert result.returncode == 0


ARMED = r"""
import sys
from dcformat.cli import _common
_common.kernels_cached = lambda *modules: False     # as on a fresh install
assert _common.note_first_compile("dcpack")
assert "numba" not in sys.modules                   # arming imports no Numba
print("armed", file=sys.stderr, flush=True)
if sys.argv[1] == "bar":                            # a progress bar drawn while Numba compiles
    from tqdm.auto import tqdm
    bar = tqdm(total=10, desc="packing", disable=False, mininterval=0)
    bar.update(3)
if sys.argv[1] in ("compile", "bar"):
    import numba

    @numba.njit
    def twice(x):
        return 2 * x

    @numba.njit
    def thrice(x):
        return 3 * x

    assert twice(21) == 42 and thrice(1) == 3       # two compiles, one note
"""


@pytest.mark.parametrize("what", ["compile", "nothing", "bar"])
def test_jit_note_prints_when_numba_compiles_and_only_then(what):
    result = subprocess.run([sys.executable, "-c", ARMED, what], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    note = "dcpack: compiling kernels (once for each kind of work, about half a minute)"
    if what == "bar":  # on a line of its own, not after the bar's text
        lines = result.stderr.replace("\r", "\n").splitlines()
        assert note in lines and result.stderr.count(note) == 1, repr(result.stderr)
        return
    assert result.stderr.splitlines() == ["armed"] + ([note] if what == "compile" else [])


FRESH_INSTALL = ("import importlib, sys; from dcformat.cli import _common; "
                 "_common.kernels_cached = lambda *modules: False; "  # no kernel cached, as on a fresh install
                 "sys.exit(importlib.import_module('dcformat.cli.' + sys.argv[1]).main(sys.argv[2:]))")


def test_a_usage_error_or_a_bad_file_never_says_compiling(tmp_path):
    (tmp_path / "bad.dcf").write_bytes(b"not a dcf file at all, not even close")
    dcformat.save_file({"w": np.ones(3, np.float32)}, tmp_path / "small.dcf")
    for prog, args, status in [("dctable", ["m.dcf", "--plot", "p.png"], 2), ("dcunpack", ["bad.dcf", "-o", "r.npz"], 1),
                               ("dctable", ["bad.dcf"], 1), ("dcunpack", ["small.dcf", "-o", "s.npz", "-q"], 0)]:
        result = subprocess.run([sys.executable, "-c", FRESH_INSTALL, prog, *args], capture_output=True,
                                cwd=tmp_path, text=True)
        assert result.returncode == status, (prog, result.stderr)
        assert "compiling" not in result.stderr and len(result.stderr.splitlines()) == (status > 0), result.stderr


def test_kernels_cached_reads_the_index_files(tmp_path, monkeypatch):
    from dcformat import kernels
    from dcformat.cli import _common

    fake = tmp_path / "kernels"
    (fake / "__pycache__").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    monkeypatch.setattr(kernels, "__file__", str(fake / "__init__.py"))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no user-wide cache either
    assert not _common.kernels_cached()
    for name in _common.KERNEL_MODULES:
        (fake / "__pycache__" / f"{name}.kernel-12.py311.nbi").write_bytes(b"")
    assert _common.kernels_cached()
    assert not _common.kernels_cached(_common.KERNEL_MODULES + ("kmeans",))
    # with NUMBA_CACHE_DIR, Numba reads and writes that folder alone: the package's cache does not count
    chosen = tmp_path / "chosen"
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(chosen))
    assert not _common.kernels_cached()
    (chosen / "dcformat" / "kernels").mkdir(parents=True)
    for name in _common.KERNEL_MODULES:
        (chosen / "dcformat" / "kernels" / f"{name}.kernel-12.py311.nbi").write_bytes(b"")
    assert _common.kernels_cached()


def test_elide_and_fit_columns():
    from dcformat.cli._common import elide, fit_columns

    assert elide("abcdefghij", 5) == "ab…ij" and elide("abc", 5) == "abc"
    assert len(elide("x" * 100, 17)) == 17
    lines = fit_columns(["name", "n"], [["a" * 200, "1"], ["b", "22"]], 40)
    assert max(map(len, lines)) <= 40 and lines[1].startswith("  aaaa") and "…" in lines[1]


INTERRUPTED_BODY = r"""
import os, signal, sys, time
import numpy as np
from dcformat import DCFWriter
from dcformat.cli._common import run

def body():
    writer = DCFWriter(sys.argv[1])          # not in a with block: only the exit cleanup can remove it
    writer.add("w", np.ones((64, 64), np.float32))
    with DCFWriter(sys.argv[2]) as inside:   # in a with block: abort removes it
        inside.add("w", np.ones(10, np.float32))
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(30)
        finally:
            os.kill(os.getpid(), signal.SIGINT)   # a second Ctrl-C while cleaning up
            time.sleep(0.2)
    return 0

sys.exit(run("prog", body))
"""


def test_ctrl_c_exits_130_quietly_and_leaves_no_temporary_file(tmp_path):
    result = subprocess.run([sys.executable, "-c", INTERRUPTED_BODY, str(tmp_path / "a.dcf"), str(tmp_path / "b.dcf")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 130
    assert result.stderr == "prog: interrupted\n"
    assert os.listdir(tmp_path) == []


@pytest.mark.timeout(60)
def test_an_interrupt_stops_the_jobs_running_ahead():
    import threading

    from dcformat import parallel

    started = threading.Barrier(3)

    def job(i):
        if i == 0:
            started.wait()
            raise KeyboardInterrupt  # what Ctrl-C does to the consumer waiting on item 0
        started.wait()
        while True:  # a long search: without a stop request it would never end
            parallel.check_stop()
            threading.Event().wait(0.001)

    with pytest.raises(KeyboardInterrupt):
        list(parallel.imap_ordered(job, [0, 1, 2], [1, 1, 1], threads=3))
    assert not parallel.stopping()  # cleared once the pool has drained: the next call runs normally
    assert list(parallel.imap_ordered(lambda i: i * i, [1, 2, 3], [1, 1, 1], threads=2)) == [1, 4, 9]


def test_budget_search_stops_between_candidates_and_reports_progress():
    from dcformat import parallel
    from dcformat.pack.budget import choose

    w = np.random.default_rng(0).normal(0, 0.1, (64, 96)).astype(np.float32)
    steps = []
    choice = choose(w, 0.05, progress=steps.append)
    assert len(steps) > 20  # moves per candidate, not once per tensor
    assert sum(steps) == pytest.approx(1.0) and all(s > 0 for s in steps)
    assert choice.error <= 0.05
    parallel.request_stop()
    try:
        with pytest.raises(parallel.Stopped):
            choose(w, 0.05)
    finally:
        parallel.clear_stop()


def test_packing_progress_moves_during_the_search(tmp_path):
    """The packer's bar advances as each search reports, before the tensor is written."""
    from dcformat.pack.packer import _SearchProgress

    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    progress = _SearchProgress()
    progress.bar = Bar()
    report = progress.callback("w", 1000)
    for _ in range(4):
        report(0.1)
    assert progress.bar.n == 400
    progress.finish("w", 1000)
    assert progress.bar.n == 1000


def test_a_long_path_is_whole_in_an_error_too(tmp_path):
    deep = tmp_path / ("d" * 150) / "broken.dcf"  # a checkout or a download folder deeper than usual
    deep.parent.mkdir()
    deep.write_bytes(b"not a dcf file at all, but long enough to have a preamble")
    result = cli("dcinfo", deep)
    assert result.returncode == 1
    line = result.stderr.decode()
    assert line.count("\n") == 1 and line.startswith(f"dcinfo: {deep}: ")


def test_dcunpack_to_a_closed_pipe_stops_quietly(tmp_path):
    path = tmp_path / "m.dcf"
    dcformat.save_file({"w": np.arange(1 << 20, dtype=np.float32)}, path)  # 4 MiB: more than a pipe holds
    proc = subprocess.Popen([sys.executable, "-m", "dcformat.cli.dcunpack", str(path), "-o", "-", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)  # what `| head -c 10` does
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait()
    assert err == b"", err.decode()
    assert proc.returncode == 141


BAR_INTERRUPTED = r"""
import os, signal, sys, time
from tqdm.auto import tqdm
from dcformat.cli._common import run

def body():
    bar = tqdm(total=100, desc="packing", disable=False, leave=False, mininterval=0)  # as a packer's bar,
    bar.update(45)                                                                  # not in a with block
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(30)
    return 0

sys.exit(run("prog", body))
"""


def test_ctrl_c_message_starts_its_own_line_after_a_progress_bar():
    result = subprocess.run([sys.executable, "-c", BAR_INTERRUPTED], capture_output=True, text=True, timeout=60)
    assert result.returncode == 130
    assert "packing:  45%" in result.stderr  # the bar was drawn
    before, _, after = result.stderr.rpartition("prog: interrupted")
    assert after == "\n" and before[-1:] in ("\r", "\n"), repr(result.stderr[-120:])


def bert_names(layers=12):
    parts = ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
             "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"]
    names = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
             "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
    names += [f"encoder.layer.{i}.{p}.{w}" for i in range(layers) for p in parts for w in ("weight", "bias")]
    return names + ["pooler.dense.weight", "pooler.dense.bias"]


@pytest.mark.parametrize("columns", ["80", "64"])
def test_shortened_names_still_tell_every_row_apart(tmp_path, columns):
    names = bert_names()
    path = tmp_path / "bert.dcf"
    rng = np.random.default_rng(0)
    tensors = {n: dcformat.CodebookTensor(np.linspace(-1, 1, 5).astype(np.float32),
                                          rng.integers(0, 5, (300, 2)).astype(np.int64)) for n in names}
    dcformat.save_file(tensors, path)
    text = cli("dcinfo", path, env={"COLUMNS": columns}).stdout.decode()
    lines = text.splitlines()
    assert max(map(len, lines[1:])) <= int(columns), text  # the path (first) is never cut
    start = lines.index(next(line for line in lines if line.split()[:2] == ["name", "shape"]))
    shown = [line.split()[0] for line in lines[start + 1:start + 1 + len(names)]]
    assert len(set(shown)) == len(names), text  # no two rows read the same
    for name, cut in zip(names, shown):
        if name.startswith("encoder.layer."):
            assert f".{name.split('.')[2]}." in cut, (name, cut)  # the layer number survives


def test_columns_with_nothing_to_say_give_their_room_to_the_names(long_names):
    path, _ = long_names  # lossless: no codebook, no CSR tensor
    text = cli("dcinfo", path, env={"COLUMNS": ""}).stdout.decode()
    header = next(line for line in text.splitlines() if line.split()[:1] == ["name"])
    assert header.split() == ["name", "shape", "dtype", "layout", "bytes", "bits/w"]
    assert "codebook size" not in text and "index bits" not in text
    wide = cli("dcinfo", "--wide", path).stdout.decode()
    assert {"k", "ib", "codecs"} <= set(next(line for line in wide.splitlines() if "name" in line).split())


def test_packed_with_names_each_budget_and_wraps(tmp_path):
    from dcformat.cli.dcinfo import _packed_with

    recipe = {"preset": "safe", "rules": [{"name": "embeddings", "max_error": 0.05, "search": "bits"},
                                          {"name": "safe", "max_error": 0.015, "search": "bits"}]}
    assert _packed_with(json.dumps(recipe)) == "preset safe, relative error per tensor <= 0.05 (embeddings), 0.015 (the rest)"
    assert _packed_with('{"rules": [{"name": "b", "max_error": 0.1}]}') == "relative error <= 0.1 per tensor"
    path = tmp_path / "m.dcf"
    dcformat.save_file({"w": np.ones(3, np.float32)}, path, metadata={"dcformat.recipe": json.dumps(recipe)})
    text = cli("dcinfo", path, env={"COLUMNS": "60"}).stdout.decode()
    assert "0.015 (the rest)" in text and "…" not in text.split("meta")[0]  # wrapped, never cut
    assert "1 tensor," in text


class _Terminal:
    """A stream that says it is a terminal (its width then comes from COLUMNS)."""

    def __init__(self):
        import io

        self.buffer = io.StringIO()

    def isatty(self):
        return True

    def write(self, text):
        return self.buffer.write(text)

    def flush(self):
        pass


def test_status_lines_wrap_on_a_terminal_and_stay_one_line_in_a_log(monkeypatch):
    import io

    from dcformat.cli._common import plural, say

    monkeypatch.setenv("COLUMNS", "60")
    text = f"model.dcf -> restored.safetensors: {plural(104, 'tensor')}, {plural(22713728, 'parameter')}, " \
           f"{plural(90868864, 'byte')}, 6.1\xa0s"
    terminal = _Terminal()
    say("dcunpack", text, terminal)
    lines = terminal.buffer.getvalue().splitlines()
    assert len(lines) == 2 and all(len(line) <= 60 for line in lines), lines
    assert lines[1].startswith(" " * len("dcunpack: ")) and "22,713,728 parameters" in " ".join(lines)
    log = io.StringIO()
    say("dcunpack", text, log)
    assert log.getvalue() == "dcunpack: " + text.replace("\xa0", " ") + "\n"
    assert plural(1, "tensor") == "1\xa0tensor"
    long = "/" + "d" * 90 + "/model.dcf"  # longer than the terminal: kept whole on its line
    terminal = _Terminal()
    say("dcunpack", f"{long} -> x.npz: {plural(3, 'tensor')}", terminal)
    assert long in terminal.buffer.getvalue().splitlines()[0]


def test_dcunpack_summary_names_long_paths_whole(tmp_path):
    deep = tmp_path / ("d" * 130)
    deep.mkdir()
    source = deep / "m.dcf"
    dcformat.save_file({"w": np.ones(3, np.float32)}, source)
    result = cli("dcunpack", source, "-o", deep / "m.npz")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr.decode() == (f"dcunpack: {source} -> {deep / 'm.npz'}: 1 tensor, 3 parameters, "
                                      f"{(deep / 'm.npz').stat().st_size:,} bytes, "
                                      f"{result.stderr.decode().rsplit(', ', 1)[1]}")
    assert result.stderr.decode().endswith(" s\n")


STUCK_WORKER = r"""
import os, signal, sys, threading, time
import numpy as np
from dcformat import DCFWriter
from dcformat.cli._common import run

def compile_forever():        # stands for Numba compiling a kernel: nothing can interrupt it
    time.sleep(600)

def body():
    writer = DCFWriter(sys.argv[1])
    writer.add("w", np.ones((64, 64), np.float32))
    worker = threading.Thread(target=compile_forever)  # not a daemon: the exit would wait for it
    worker.start()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(30)
    finally:
        open(sys.argv[2], "w").close()  # the first Ctrl-C is being handled
        worker.join()
    return 0

sys.exit(run("prog", body))
"""


@pytest.mark.parametrize("second", [False, True])
def test_ctrl_c_ends_the_process_even_when_a_worker_cannot_stop(tmp_path, second):
    import signal
    import time

    out, ready = tmp_path / "out", tmp_path / "ready"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", STUCK_WORKER, str(out / "a.dcf"), str(ready)],
                            stderr=subprocess.PIPE, text=True)
    if second:  # a second Ctrl-C while the first one's stop waits for the worker
        while not ready.exists() and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)  # the worker sleeps 600 s: waiting for it would time out
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err == "prog: interrupted\n"
    assert os.listdir(out) == []  # the writer's temporary file removed


@pytest.mark.parametrize("prog", COMMANDS)
def test_help_fits_80_columns(prog):
    text = cli(prog, "--help", env={"COLUMNS": "80"}).stdout.decode()
    assert max(len(line) for line in text.splitlines()) <= 80, [line for line in text.splitlines() if len(line) > 80]


def test_dcpack_status_lines_name_the_preset_not_its_json(tmp_path):
    source = tmp_path / ("p" * 150) / "m.npz"  # a path longer than any width: printed whole
    source.parent.mkdir()
    rng = np.random.default_rng(0)
    np.savez(source, w=rng.standard_normal((64, 64)).astype(np.float32))
    result = cli("dcpack", source, "--preset", "safe", "-o", tmp_path / "m.dcf")
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stderr.decode().splitlines()  # not a terminal: one line per message, as a log wants
    header = next(line for line in lines if " -> " in line)
    assert header == f"dcpack: {source} -> {tmp_path / 'm.dcf'} (preset safe)"
    assert any("--table md lists every tensor's" in line for line in lines)
