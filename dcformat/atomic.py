"""Replace a file atomically: write under a temporary name beside it, fsync, rename over it.

:class:`AtomicFile` is what :class:`dcformat.DCFWriter` and the checkpoint writers of
:mod:`dcformat.pack` write through. The temporary file lives in the target's directory (a rename
across file systems would not be atomic) under a hidden name, ``.TARGET.TAG.PID.XXXXXXXX.tmp``;
:meth:`AtomicFile.commit` flushes and fsyncs it, renames it over the target and fsyncs the
directory; :meth:`AtomicFile.discard` removes it. A crash at any point leaves the old target (or
none), never a torn one.

A process that is killed (SIGKILL, power loss) cannot remove its temporary file. The next
:class:`AtomicFile` for the same target removes it once process PID is gone: TAG hashes the host
name and the PID namespace, so only files whose PID means the same process here are judged
(without ``/proc``, nothing is removed).

An interrupted process (Ctrl-C, an exception nobody catches) leaves nothing either: writers used
as context managers discard their file on any exception, KeyboardInterrupt included, and whatever
temporary file is still open when the interpreter exits is removed then (:func:`remove_live_temps`).
Errors about a temporary file are reported under its target's name (:func:`target_of_temp`).
"""
from __future__ import annotations

import atexit
import hashlib
import os
import re
import socket
import tempfile
import threading

TEMP_STEM_LENGTH = 96
"""Characters of the target's name kept in its temporary file's name."""


_live: dict[str, str] = {}
"""Temporary files not yet committed or discarded (temp -> target), removed at exit."""
_seen: dict[str, str] = {}
"""Every temporary file's target (bounded), to name the target in errors about the temporary file."""
_SEEN_MAX = 256
_lock = threading.Lock()


def _register(temp: str, target: str) -> None:
    with _lock:
        _live[temp] = target
        _seen[temp] = target
        while len(_seen) > _SEEN_MAX:
            del _seen[next(iter(_seen))]


def _unregister(temp: str) -> None:
    with _lock:
        _live.pop(temp, None)


@atexit.register
def remove_live_temps() -> None:
    """Remove the temporary files of writers that were neither committed nor discarded."""
    with _lock:
        temps = list(_live)
        _live.clear()
    for temp in temps:
        try:
            os.unlink(temp)
        except OSError:
            pass


_TEMP_NAME = re.compile(r"(?P<dir>(?:[^\s'\"]*/)?)\.(?P<stem>[^/\s'\"]+?)\.(?:[0-9a-f]{8}\.)?(?:\d+\.)?[a-z0-9_]{8}\.tmp\b")


def target_of_temp(text: str) -> str:
    """``text`` with every temporary file's path replaced by its target's (the path the user gave):
    those this process made exactly, others by the ``.NAME.TAG.PID.XXXX.tmp`` pattern."""
    with _lock:
        known = sorted(_seen.items(), key=lambda item: -len(item[0]))
    for temp, target in known:
        if temp in text:
            text = text.replace(temp, target)
        base = os.path.basename(temp)
        if base in text:
            text = text.replace(base, os.path.basename(target))
    return _TEMP_NAME.sub(lambda m: m.group("dir") + m.group("stem"), text)


def owner_tag() -> str | None:
    """8 hex digits naming this host and PID namespace (where a PID means one process), or None
    where the namespace cannot be read."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return hashlib.sha256(f"{socket.gethostname()}\0{namespace}".encode()).hexdigest()[:8]


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError, ValueError):  # e.g. another user's process: it exists
        return True
    return True


def remove_stale_temps(directory: str, prefix: str) -> None:
    """Remove ``PREFIX<pid>.<random>.tmp`` files of writers whose process is gone."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _process_exists(int(pid)):
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            pass


def fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable (where the platform allows opening a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicFile:
    """A new version of ``path``, written to :attr:`file` (binary, open) or to :attr:`temp` by name.

    It replaces ``path`` on :meth:`commit`; :meth:`discard` drops it. The temporary file gets the
    mode a file created in place would have (``mkstemp`` makes it 0600).
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self.directory = os.path.dirname(os.path.abspath(self.path))
        stem = os.path.basename(self.path)[:TEMP_STEM_LENGTH]
        tag = owner_tag()
        if tag is not None:
            remove_stale_temps(self.directory, f".{stem}.{tag}.")
        prefix = f".{stem}.{tag}.{os.getpid()}." if tag is not None else f".{stem}."
        try:
            fd, self.temp = tempfile.mkstemp(dir=self.directory, prefix=prefix, suffix=".tmp")
        except OSError as exc:  # name the target, not the temporary file that could not be made
            raise type(exc)(exc.errno, exc.strerror, self.path) from None
        _register(self.temp, self.path)
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
            self.file = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            os.unlink(self.temp)
            _unregister(self.temp)
            raise

    def commit(self) -> None:
        """Flush and fsync the temporary file (by name, if :attr:`file` was closed), rename it over
        the target, fsync the directory. On failure the caller should :meth:`discard`."""
        if not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
        else:
            fd = os.open(self.temp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(self.temp, self.path)
        _unregister(self.temp)
        self.temp = None
        fsync_directory(self.directory)

    def discard(self) -> None:
        """Close and remove the temporary file (nothing happens after :meth:`commit`)."""
        try:
            self.file.close()
        except OSError:
            pass
        if self.temp is not None:
            try:
                os.unlink(self.temp)
            except FileNotFoundError:
                pass
            _unregister(self.temp)
            self.temp = None


class AtomicWriter:
    """The life of a writer whose output replaces a file atomically (a mixin).

    Subclasses set ``self._atomic`` (an :class:`AtomicFile`, or None when they write to a file
    object given to them) and ``self._state = "open"``, and define :meth:`_finish` (what closing
    writes or checks) and :meth:`_closed_error` (the exception for closing an aborted writer).
    :meth:`close` finishes and commits; an exception while doing so aborts; :meth:`abort` removes
    the temporary file. As a context manager, an exception in the block aborts.
    """

    _atomic: AtomicFile | None = None
    _state = "open"

    def _finish(self) -> None:
        raise NotImplementedError

    def _closed_error(self) -> Exception:
        raise NotImplementedError

    def close(self) -> None:
        """Finish the file and, for a path, fsync it and rename it into place."""
        if self._state != "open":
            if self._state == "closed":
                return
            raise self._closed_error()
        try:
            self._finish()
            if self._atomic is not None:
                self._atomic.commit()
        except BaseException:
            self.abort()
            raise
        self._state = "closed"

    def abort(self) -> None:
        """Give up: remove the temporary file; the target is left as it was."""
        if self._state == "closed":
            return
        self._state = "aborted"
        if self._atomic is not None:
            self._atomic.discard()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
