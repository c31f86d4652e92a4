"""Crash-safe writes: a pack interrupted at any point leaves the old file, or no file, never a
torn one; a clean failure leaves no temporary file behind.

``DCFWriter`` writes to a temporary file in the target's directory, flushes and fsyncs it, and
renames it over the target only in ``close()`` (then fsyncs the directory). Interruptions tested:
a process killed with SIGKILL while it writes a large file (at several moments), a full disk (a
file object whose ``write`` raises ENOSPC after N bytes, for many N; the kernel's own file-size
limit, RLIMIT_FSIZE, in a child process), failing ``fsync`` and ``rename``, and an exception while
a tensor is encoded. A process that is killed cannot remove its temporary file: that one stays
(a hidden ``.NAME.TAG.PID.XXXX.tmp`` beside the target), the target is still whole, and the next
writer to that target removes it once the process is gone.
"""
import errno
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import dcformat
from dcformat.errors import EncodingError

ROOT = pathlib.Path(__file__).resolve().parent.parent
OLD = {"old": np.arange(1000, dtype=np.float32)}


def _temps(directory: pathlib.Path):
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def _new_tensors(n=6, size=50_000):
    rng = np.random.default_rng(0)
    return {f"t{i}": rng.normal(size=size).astype(np.float32) for i in range(n)}


def _assert_old_or_absent(target: pathlib.Path, had_old: bool):
    if had_old:
        got = dcformat.load_file(target)
        assert got.keys() == OLD.keys() and np.array_equal(got["old"], OLD["old"])
    else:
        assert not target.exists()


# --------------------------------------------------------------------------------------------
# A process killed while it writes


_WRITER = textwrap.dedent("""
    import os, sys, time, numpy as np, dcformat
    tensors, slow = int(sys.argv[2]), float(sys.argv[3])
    if slow:  # a slow disk: every fsync takes that much longer
        real_fsync = os.fsync
        os.fsync = lambda fd: (time.sleep(slow), real_fsync(fd))
    rng = np.random.default_rng(1)
    # tensors of 4 MiB, stored PLAIN: 48 of them are about 200 MB, written in a second or two
    with dcformat.DCFWriter(sys.argv[1]) as writer:
        print("started", flush=True)
        for i in range(tensors):
            writer.add(f"t{i}", rng.integers(0, 2**32, 2**20, dtype=np.uint32).view(np.float32),
                       {"codecs": ("plain",), "codebook": "never", "layout": "dense"})
        print("closing", flush=True)  # the with block's end: index, flush, fsync, rename
    print("done", flush=True)
""")


def _start_writer(target, tensors=48, slow_fsync=0.0):
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(target), str(tensors), str(slow_fsync)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)


def _wait_for_bytes(directory: pathlib.Path, at_least: int, proc, timeout=60):
    """Wait until the writer's temporary file holds ``at_least`` bytes."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        temps = [p for p in directory.iterdir() if p.name.endswith(".tmp")]
        if temps and temps[0].stat().st_size >= at_least:
            return True
        time.sleep(0.005)
    return False


@pytest.mark.parametrize("had_old", [True, False], ids=["old-file", "no-file"])
@pytest.mark.parametrize("after_bytes", [0, 16, 30 * 2**20, 120 * 2**20])
def test_sigkill_mid_write_leaves_old_file_or_none(tmp_path, had_old, after_bytes):
    target = tmp_path / "model.dcf"
    if had_old:
        dcformat.save_file(OLD, target)
    proc = _start_writer(target)
    assert proc.stdout.readline().strip() == "started"
    assert _wait_for_bytes(tmp_path, after_bytes, proc), "the writer ended before the kill"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    _assert_old_or_absent(target, had_old)
    assert len(_temps(tmp_path)) == 1  # the killed writer's: the target was never touched


def test_the_next_writer_removes_what_a_killed_writer_left(tmp_path):
    from dcformat.atomic import owner_tag as _owner_tag

    if _owner_tag() is None:
        pytest.skip("no /proc: stale temporary files are never removed here")
    target = tmp_path / "model.dcf"
    proc = _start_writer(target)
    assert proc.stdout.readline().strip() == "started"
    assert _wait_for_bytes(tmp_path, 1 << 20, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()  # reaped: its PID no longer names a process
    [stale] = _temps(tmp_path)
    assert stale.startswith(f".model.dcf.{_owner_tag()}.{proc.pid}.")
    # Files that must survive: a live process's, another host's or namespace's, another target's.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        keep = [f".model.dcf.{_owner_tag()}.{sleeper.pid}.abcd1234.tmp", f".model.dcf.0badc0de.{proc.pid}.x.tmp",
                f".other.dcf.{_owner_tag()}.{proc.pid}.x.tmp", "model.dcf.notes.tmp"]
        for name in keep:
            (tmp_path / name).write_bytes(b"x")
        dcformat.save_file(OLD, target)
        assert _temps(tmp_path) == sorted(keep)
        _assert_old_or_absent(target, True)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_sigkill_while_closing_never_tears(tmp_path):
    """Kills at moments of close() (index written, file fsynced, renamed, directory fsynced) on a
    slow disk (each fsync 0.3 s longer): the target is the old file until the rename, then the
    complete new one, never anything else."""
    target = tmp_path / "model.dcf"
    dcformat.save_file(OLD, target)
    outcomes = []
    for delay in (0.0, 0.2, 0.45, None):
        proc = _start_writer(target, tensors=8, slow_fsync=0.3)
        assert proc.stdout.readline().strip() == "started"
        assert proc.stdout.readline().strip() == "closing"
        if delay is None:
            assert proc.stdout.readline().strip() == "done"
        else:
            time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with dcformat.open(target) as f:
            if f.keys() == ["old"]:
                outcomes.append("old")
                assert np.array_equal(f.get_tensor("old"), OLD["old"])
            else:
                outcomes.append("new")
                assert f.keys() == [f"t{i}" for i in range(8)]
                assert f.get_tensor("t7").shape == (2**20,)
        for name in _temps(tmp_path):
            (tmp_path / name).unlink()
        if outcomes[-1] == "new":
            dcformat.save_file(OLD, target)
    print("outcomes", outcomes)
    assert outcomes[:2] == ["old", "old"] and outcomes[-1] == "new"


# --------------------------------------------------------------------------------------------
# A full disk, and other failures of the file system


class _FillingFile:
    """A file object that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, raw, room):
        self.raw, self.room = raw, room

    def write(self, data):
        if len(data) > self.room:
            self.raw.write(bytes(data[:self.room]))
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.raw.write(data)

    def __getattr__(self, name):
        return getattr(self.raw, name)


def _full_disk_after(monkeypatch, room):
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _FillingFile(real_fdopen(fd, *a, **k), room))


@pytest.mark.parametrize("had_old", [True, False], ids=["old-file", "no-file"])
def test_full_disk_at_every_point(tmp_path, monkeypatch, had_old):
    """ENOSPC after N bytes, for N from 0 to the whole file: the error reaches the caller, the
    target is untouched and the temporary file is gone."""
    tensors = _new_tensors(n=3, size=300)
    size = len(dcformat.save(tensors))
    target = tmp_path / "model.dcf"
    if had_old:
        dcformat.save_file(OLD, target)
    for room in sorted({0, 1, 15, 16, 17, size // 3, size // 2, size - 17, size - 16, size - 1}
                       | set(range(0, size, max(1, size // 40)))):
        with monkeypatch.context() as m:
            _full_disk_after(m, room)
            with pytest.raises(OSError) as caught:
                dcformat.save_file(tensors, target)
        assert caught.value.errno == errno.ENOSPC
        _assert_old_or_absent(target, had_old)
        assert _temps(tmp_path) == []
    _full_disk_after(monkeypatch, size)  # exactly enough room: the write succeeds
    dcformat.save_file(tensors, target)
    assert dcformat.load_file(target).keys() == tensors.keys()
    assert _temps(tmp_path) == []


def test_file_size_limit_of_the_kernel(tmp_path):
    """A real write error from the kernel: RLIMIT_FSIZE in a child process (SIGXFSZ ignored, so
    write() fails with EFBIG, as it fails with ENOSPC on a full disk)."""
    target = tmp_path / "model.dcf"
    dcformat.save_file(OLD, target)
    script = textwrap.dedent(f"""
        import resource, signal, sys, numpy as np, dcformat
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        try:
            dcformat.save_file({{"big": np.ones(100_000, np.float64)}}, {str(target)!r},
                               encodings={{"big": {{"codecs": ("plain",), "codebook": "never"}}}})
        except OSError as e:
            print("errno", e.errno)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert f"errno {errno.EFBIG}" in result.stdout, result.stdout + result.stderr
    _assert_old_or_absent(target, True)
    assert _temps(tmp_path) == []


@pytest.mark.parametrize("failing", ["fsync", "replace", "flush"])
def test_failing_fsync_rename_or_flush(tmp_path, monkeypatch, failing):
    target = tmp_path / "model.dcf"
    dcformat.save_file(OLD, target)

    def fail(*args, **kwargs):
        raise OSError(errno.EIO, f"{failing} failed")

    if failing == "flush":
        real_fdopen = os.fdopen

        class NoFlush:
            def __init__(self, raw):
                self.raw = raw

            def flush(self):
                fail()

            def __getattr__(self, name):
                return getattr(self.raw, name)

        monkeypatch.setattr(os, "fdopen", lambda *a, **k: NoFlush(real_fdopen(*a, **k)))
    else:
        monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match=f"{failing} failed"):
        dcformat.save_file(_new_tensors(n=2, size=100), target)
    monkeypatch.undo()
    _assert_old_or_absent(target, True)
    assert _temps(tmp_path) == []


def test_exception_while_encoding_removes_the_temporary_file(tmp_path):
    target = tmp_path / "model.dcf"
    dcformat.save_file(OLD, target)
    with pytest.raises(EncodingError):
        with dcformat.DCFWriter(target) as writer:
            writer.add("fine", np.ones(10, np.float32))
            writer.add("bad", np.array(["not", "numbers"]))
    _assert_old_or_absent(target, True)
    assert _temps(tmp_path) == []


def test_keyboard_interrupt_while_writing(tmp_path):
    target = tmp_path / "model.dcf"

    class Interrupting(dict):
        def items(self):
            yield "a", np.ones(5, np.float32)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dcformat.save_file(Interrupting(), target)
    assert not target.exists() and _temps(tmp_path) == []


def test_abort_and_misuse(tmp_path):
    target = tmp_path / "model.dcf"
    writer = dcformat.DCFWriter(target)
    writer.add("a", np.ones(3))
    writer.abort()
    assert not target.exists() and _temps(tmp_path) == []
    with pytest.raises(EncodingError):
        writer.add("b", np.ones(3))
    with pytest.raises(EncodingError):
        writer.close()


def test_successful_write_is_durable_and_complete(tmp_path, monkeypatch):
    """close() fsyncs the file before the rename and the directory after it."""
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(("fsync", os.path.isdir(f"/proc/self/fd/{fd}"))),
                                                 real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append(("replace", None)), real_replace(a, b)))
    dcformat.save_file(OLD, tmp_path / "model.dcf")
    assert calls == [("fsync", False), ("replace", None), ("fsync", True)]
    assert _temps(tmp_path) == []


def test_written_file_has_the_permissions_of_a_new_file(tmp_path):
    """A file written atomically should look like one written in place: mode 0666 & ~umask."""
    umask = os.umask(0)
    os.umask(umask)
    dcformat.save_file(OLD, tmp_path / "model.dcf")
    assert (tmp_path / "model.dcf").stat().st_mode & 0o777 == 0o666 & ~umask
