"""What every dcformat command shares: the conventions of gzip, zstd and the safetensors tools.

- ``--version``; exit status 0 (done), 1 (bad data: a file that cannot be read or written), 2
  (bad usage: argparse's errors and :class:`UsageError`), 130 (interrupted).
- Output that survives pipes and any encoding: ``dcinfo x.dcf | head -1`` stops quietly; on a
  stream that cannot encode a character, ``×`` becomes ``x`` (and the like, :data:`ASCII_FALLBACK`)
  and anything else a backslash escape, so an ASCII-only locale prints tensor names escaped.
- Tables that fit the terminal: names elided in the middle (:func:`elide`, :func:`fit_columns`).
- Errors in one line that name the user's path: an error about an atomic writer's hidden
  temporary file (``.x.dcf.<tag>.tmp``) names the target instead (:func:`describe_error`).
- Ctrl-C: the first one stops the work (the budget search's threads see
  :func:`dcformat.parallel.request_stop`), temporary files are removed, the command prints
  ``interrupted`` and exits with 130; if that takes over :data:`FORCE_EXIT_AFTER` seconds (a
  worker thread inside a compile cannot be stopped), or on a second Ctrl-C, the process ends there
  and then, temporary files removed, the same one line, no traceback. A thread of its own sees the
  signal as it arrives (:func:`signal.set_wakeup_fd`), so the stop request and that deadline do not
  wait for the main thread to leave a long compiled call; worker threads still inside one when the
  main thread is done are not waited for (:func:`dcformat.parallel.set_stop_wait`). Before
  :func:`run` (the imports), :mod:`._startup`'s handler ends the process at once, as quietly.
- A "compiling kernels (once for each kind of work)" line when Numba's cache lacks the kernels a command needs.
"""
from __future__ import annotations

import argparse
import codecs
import errno
import os
import re
import signal
import sys
import threading

OK, DATA_ERROR, USAGE_ERROR, INTERRUPTED = 0, 1, 2, 130
"""Exit statuses: done, bad data (a file that cannot be read or written), bad usage, Ctrl-C."""

DEFAULT_WIDTH = 80
"""Columns a table fits when the width is unknown (output to a pipe or a file, no ``COLUMNS``)."""

ASCII_FALLBACK = {
    "×": "x", "≤": "<=", "≥": ">=", "‖": "||", "−": "-", "…": "...", "—": "--", "–": "-", "→": "->",
    "µ": "u", "±": "+-", "·": ".", "Ŵ": "W'", "²": "^2", "≈": "~", "“": '"', "”": '"', "‘": "'", "’": "'",
}
"""What a character becomes on an output stream that cannot encode it (others: backslash escapes)."""

ERROR_HANDLER = "dcformat.ascii"


def _ascii_fallback(error: UnicodeError):
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = error.object[error.start:error.end]
    out = "".join(ASCII_FALLBACK.get(ch) or ch.encode("ascii", "backslashreplace").decode("ascii") for ch in text)
    return out, error.end


codecs.register_error(ERROR_HANDLER, _ascii_fallback)


class UsageError(Exception):
    """A command line that cannot work (conflicting flags, a pattern that matches no tensor): exit 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (status 2), and ``--version`` is built in."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from .. import __version__

        self.add_argument("--version", action="version", version=f"%(prog)s (dcformat) {__version__}")

    def error(self, message):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def setup_streams() -> None:
    """Make stdout and stderr print what they cannot encode as ASCII stand-ins or escapes."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors=ERROR_HANDLER)
            except (ValueError, OSError):  # a closed or detached stream
                pass


def can_encode(text: str, stream=None) -> bool:
    """Whether ``stream`` (stdout by default) can print ``text`` as it is."""
    encoding = getattr(stream or sys.stdout, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def terminal_width(stream=None) -> int:
    """The terminal's columns when ``stream`` is one, else ``COLUMNS`` or :data:`DEFAULT_WIDTH`."""
    stream = stream or sys.stdout
    try:
        if stream.isatty():
            return max(40, os.get_terminal_size(stream.fileno()).columns)
    except (AttributeError, OSError, ValueError):
        pass
    try:
        return max(40, int(os.environ.get("COLUMNS", "")))
    except ValueError:
        return DEFAULT_WIDTH


def elide(text: str, width: int, mark: str = "…") -> str:
    """``text`` cut to ``width`` characters by replacing its middle with ``mark``."""
    if len(text) <= width:
        return text
    if width <= len(mark):
        return text[:width]
    keep = width - len(mark)
    head = (keep + 1) // 2
    return text[:head] + mark + text[len(text) - (keep - head):]


def _abbreviated(name: str, width: int) -> str:
    """``encoder.layer.0.attention.self.query.weight`` -> ``e.l.0.a.self.query.weight``: dotted
    segments from the left cut to their first letter until the name fits ``width``; numbers (layer
    indices) and the last two segments are kept whole."""
    parts = name.split(".")
    for i in range(len(parts) - 2):
        if len(".".join(parts)) <= width:
            break
        if not parts[i].isdigit() and len(parts[i]) > 1:
            parts[i] = parts[i][0]
    return ".".join(parts)


def shorten_names(names, width: int, mark: str = "…") -> list[str]:
    """Tensor names cut to ``width``, each still telling its row apart: dotted names abbreviated
    segment by segment (:func:`_abbreviated`, what loggers do with class names), then elided in the
    middle if still too long; where two shortened names would read the same, plain middle elision."""
    names = list(names)
    short = [n if len(n) <= width else elide(_abbreviated(n, width), width, mark) for n in names]
    seen: dict[str, set] = {}
    for name, cut in zip(names, short):
        seen.setdefault(cut, set()).add(name)
    return [cut if len(seen[cut]) == 1 else elide(name, width, mark) for name, cut in zip(names, short)]


def fit_columns(headers, rows, width: int, *, elide_column: int = 0, min_width: int = 12, indent: int = 2,
                mark: str = "…", names: bool = False) -> list[str]:
    """Lines of a left-aligned table; cells of ``elide_column`` elided in the middle so that every
    line fits ``width`` (down to ``min_width`` for that column); ``names``: that column holds dotted
    tensor names, shortened so that rows stay distinct (:func:`shorten_names`)."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    total = indent + sum(widths) + 2 * (len(widths) - 1)
    if total > width:
        widths[elide_column] = max(min_width, len(headers[elide_column]), widths[elide_column] - (total - width))
    rows = [list(headers)] + [list(r) for r in rows]
    column = [r[elide_column] for r in rows[1:]]
    column = shorten_names(column, widths[elide_column], mark) if names else \
        [elide(c, widths[elide_column], mark) for c in column]
    rows[0][elide_column] = elide(rows[0][elide_column], widths[elide_column], mark)
    for r, cell in zip(rows[1:], column):
        r[elide_column] = cell
    return [(" " * indent + "  ".join(c.ljust(widths[i]) for i, c in enumerate(r))).rstrip() for r in rows]


def wrap(text: str, width: int, indent: str = "  ") -> list[str]:
    """``text`` in lines of at most ``width`` columns; a no-break space (U+00A0) keeps two words
    together and prints as a plain space."""
    import textwrap

    lines = textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=indent + " ",
                          break_on_hyphens=False, break_long_words=False) or [indent]
    return [line.replace("\xa0", " ") for line in lines]


def say(prog: str, text: str, stream=None) -> None:
    """A status line on stderr: ``prog: text``, wrapped at spaces to the terminal's width when the
    stream is a terminal (continuation lines indented under the text), one line otherwise (a log
    keeps one line per message). A no-break space (U+00A0) keeps a number and its unit together;
    a path longer than the width is never cut."""
    import textwrap

    stream = stream or sys.stderr
    head = f"{prog}: "
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    if tty:
        lines = textwrap.wrap(text, width=terminal_width(stream), initial_indent=head,
                              subsequent_indent=" " * len(head), break_on_hyphens=False,
                              break_long_words=False) or [head]
    else:
        lines = [head + text]
    print("\n".join(line.replace("\xa0", " ") for line in lines), file=stream)


def plural(n: int, word: str) -> str:
    """``1 tensor``, ``104 tensors``, with a no-break space (see :func:`say`)."""
    return f"{n:,}\xa0{word}{'' if n == 1 else 's'}"


def ellipsis(stream=None) -> str:
    return "…" if can_encode("…", stream) else "..."


# ----------------------------------------------------------------------------------------------
# Errors that name the user's path


def _map_temps(text: str) -> str:
    from ..atomic import target_of_temp

    return target_of_temp(text)


def describe_error(exc: BaseException) -> str:
    """One line: the path (the target, not an atomic writer's temporary file) and what is wrong."""
    from ..report import sanitize

    if isinstance(exc, OSError) and not isinstance(exc, _library_errors()):
        filename = getattr(exc, "filename", None)
        what = exc.strerror or str(exc)
        text = f"{os.fsdecode(filename)}: {what}" if filename is not None else what
    else:
        text = str(exc) or type(exc).__name__
    text = " ".join(_map_temps(_ANSI.sub("", text)).split())
    return sanitize(text, ERROR_LIMIT)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
"""Terminal escapes (torch's bold text) that a one-line error leaves out."""
ERROR_LIMIT = 2000
"""Characters an error line is cut to: far above the library's own messages with long paths in them
(which are never cut), a bound only for foreign text."""


def _library_errors() -> tuple:
    from ..errors import DCFormatError

    return (DCFormatError,)


# ----------------------------------------------------------------------------------------------
# Running a command


FORCE_EXIT_AFTER = 0.75
"""Seconds the first Ctrl-C's orderly stop may take before the process is ended anyway (the same
cleanup: temporary files removed, one line, 130): a thread inside a compiled step (Numba compiling
a kernel on the first run, a sort of a large tensor) cannot be interrupted, and the main thread, or
the interpreter's exit, would wait for it. The orderly stop takes 0.02-0.4 s on MiniLM."""
STOP_WAIT = 0.1
"""Seconds an interrupted command's thread pools wait for jobs still running before the main
thread goes on with the cleanup (:func:`dcformat.parallel.set_stop_wait`); the process then ends
without waiting for them."""


class _Interrupt:
    prog = "dcformat"
    said = False
    deadline_set = False
    lock = threading.Lock()


def _say_interrupted() -> None:
    with _Interrupt.lock:
        if _Interrupt.said:
            return
        _Interrupt.said = True
    _end_progress_bars()
    try:
        start = "\r\x1b[K" if sys.stderr.isatty() else ""  # a bar another thread drew: erased, from column 0
    except (AttributeError, ValueError):
        start = ""
    sys.stderr.write(f"{start}{_Interrupt.prog}: interrupted\n")  # one write: a force exit cannot cut it
    sys.stderr.flush()


_ending = threading.Lock()


def _force_exit() -> None:
    """End the process now: temporary files removed, the one line printed, status 130. Runs on a
    thread of its own (never inside a signal handler, which may have interrupted a lock's holder);
    the first caller ends it, any other returns."""
    from ..atomic import remove_live_temps

    if not _ending.acquire(blocking=False):
        return
    try:
        remove_live_temps()
        _say_interrupted()
    finally:
        _flush_and_exit()


def _flush_and_exit() -> None:
    """Flush stdout and stderr (whatever fails) and end the process with status 130."""
    try:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
    finally:
        os._exit(INTERRUPTED)


def _exit_interrupted() -> None:
    """End a command's own process after an interrupt, cleanup done: the atexit functions (temporary
    files) run, the streams are flushed, and the interpreter's finalization is skipped: it frees
    what the process holds one object at a time (Numba's compiled code, large arrays), 0.3-0.5 s
    of a 0.45-0.6 s stop measured on MiniLM, for nothing the system would not do at once."""
    import atexit

    try:
        atexit._run_exitfuncs()
    finally:
        _flush_and_exit()


def _start_force_exit(delay: float) -> None:
    timer = threading.Timer(delay, _force_exit)
    timer.daemon = True
    timer.start()


def _on_second_interrupt(signum, frame) -> None:
    """Ctrl-C while the first one's cleanup runs: end now, quietly (no traceback from inside it)."""
    _start_force_exit(0.0)


def _set_deadline() -> None:
    """The first Ctrl-C: ask the jobs to stop, and end the process :data:`FORCE_EXIT_AFTER` seconds
    from now if the orderly stop (or the exit's thread joins) hangs. Once, whoever sees it first."""
    from .. import parallel

    parallel.request_stop()
    with _Interrupt.lock:
        if _Interrupt.deadline_set:
            return
        _Interrupt.deadline_set = True
    # What the interrupt leaves behind is no error of its own: an object whose constructor it cut
    # short (llvmlite's, mid-compile) fails in __del__, a thread's step fails; not a line of it shown.
    sys.unraisablehook = _ignore
    threading.excepthook = _ignore
    _start_force_exit(FORCE_EXIT_AFTER)


def _ignore(args) -> None:
    pass


def _on_interrupt(signum, frame) -> None:
    signal.signal(signal.SIGINT, _on_second_interrupt)
    _set_deadline()
    raise KeyboardInterrupt


class _SignalWatch:
    """A thread that sees each SIGINT when it arrives: the C-level handler writes the signal's number
    to a pipe (:func:`signal.set_wakeup_fd`) at once, while the Python-level handler runs only when
    the main thread next runs Python code, which a long compiled call (a Numba kernel, a sort, a
    compile) can put off for seconds. The first SIGINT sets the stop request and the deadline, a
    second ends the process, as the handlers do."""

    def __init__(self):
        self.read, self.write = os.pipe()
        try:
            os.set_blocking(self.write, False)  # (Windows before 3.12 has no set_blocking, and wants a socket)
            self.previous = signal.set_wakeup_fd(self.write, warn_on_full_buffer=False)
        except (ValueError, OSError, AttributeError):
            os.close(self.read)
            os.close(self.write)
            raise OSError("no wakeup fd")
        self.thread = threading.Thread(target=self._watch, name="dcformat-sigint", daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        seen = 0
        while True:
            try:
                data = os.read(self.read, 64)
            except OSError:
                return
            for number in data:
                if number == 0:  # close()'s sentinel
                    return
                if number == signal.SIGINT:
                    seen += 1
                    if seen == 1:
                        _set_deadline()
                    else:
                        _start_force_exit(0.0)
            if not data:
                return

    def close(self) -> None:
        try:
            signal.set_wakeup_fd(self.previous)
        except (ValueError, OSError):
            pass
        try:
            os.write(self.write, b"\0")
        except OSError:
            pass
        self.thread.join(1.0)
        if not self.thread.is_alive():
            os.close(self.read)
        os.close(self.write)


def _end_progress_bars() -> None:
    """Close the progress bars still drawn (a bar left mid-line would lead the next message)."""
    if "tqdm" not in sys.modules:
        return
    try:
        from tqdm.std import tqdm

        bars = list(getattr(tqdm, "_instances", ()))
    except Exception:
        return
    for bar in bars:
        try:
            bar.close()
        except Exception:
            pass


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so that the flush at exit cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def run(prog: str, body) -> int:
    """Run ``body()`` as a command: errors become one line on stderr and an exit status."""
    from ..errors import DCFormatError

    from .. import parallel
    from . import _startup

    setup_streams()
    installed = interrupted = False
    watch = None
    _Interrupt.prog, _Interrupt.said, _Interrupt.deadline_set = prog, False, False
    before = signal.getsignal(signal.SIGINT)
    if before in (signal.default_int_handler, _startup.on_interrupt):
        try:
            signal.signal(signal.SIGINT, _on_interrupt)
            installed = True
        except ValueError:  # not the main thread
            pass
    if installed:
        try:
            watch = _SignalWatch()
        except (ValueError, OSError):  # a wakeup fd already in use, or no pipe: the handler alone
            watch = None
    stop_wait = parallel.set_stop_wait(STOP_WAIT) if installed else None
    try:
        try:
            return body()
        except Exception:
            if _Interrupt.deadline_set:  # what a Ctrl-C turned into (cut short in an import: a RuntimeError)
                raise KeyboardInterrupt from None
            raise
    except KeyboardInterrupt:
        interrupted = True
        try:
            signal.signal(signal.SIGINT, _on_second_interrupt)
        except ValueError:
            pass
        _say_interrupted()
        return INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return 128 + getattr(signal, "SIGPIPE", 13)
    except UsageError as exc:
        print(f"{prog}: error: {describe_error(exc)} (see --help)", file=sys.stderr)
        return USAGE_ERROR
    except (DCFormatError, ValueError, OSError, MemoryError) as exc:
        print(f"{prog}: error: {describe_error(exc)}", file=sys.stderr)
        return DATA_ERROR
    finally:
        if watch is not None:
            watch.close()
        if installed:
            parallel.set_stop_wait(stop_wait)
        if installed and not _Interrupt.said:  # once interrupted, a Ctrl-C during the exit ends it quietly
            try:  # in a command's process, _startup's: a Ctrl-C during the exit ends it as quietly
                signal.signal(signal.SIGINT, before)
            except ValueError:
                pass
        if interrupted and parallel.busy():
            _force_exit()  # a job inside a long compiled call: the interpreter's exit would wait for it
        parallel.clear_stop()
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _quiet_stdout()
        except (OSError, ValueError):
            pass
        if interrupted and _startup.own_process():
            _exit_interrupted()


# ----------------------------------------------------------------------------------------------
# The first run's JIT


KERNEL_MODULES = ("bitpack", "csr", "elements", "huffman")
"""The Numba modules every encode and large decode uses (``kmeans`` joins them for lossy packing)."""


def kernels_cached(modules=KERNEL_MODULES) -> bool:
    """Whether Numba's on-disk cache holds compiled kernels of each of ``modules`` (``*.nbi`` index
    files): only a directory listing, no Numba import."""
    from .. import kernels

    here = os.path.dirname(kernels.__file__)
    chosen = os.environ.get("NUMBA_CACHE_DIR")
    places = [] if chosen else [os.path.join(here, "__pycache__")]  # NUMBA_CACHE_DIR: Numba looks there alone
    user = chosen or os.path.join(os.path.expanduser("~"), ".cache", "numba")
    found = set()
    for place in places:
        try:
            names = os.listdir(place)
        except OSError:
            continue
        found.update(n.split(".", 1)[0] for n in names if n.endswith(".nbi"))
    if not set(modules) <= found and os.path.isdir(user):  # numba's user-wide cache (read-only install)
        for root, _, names in os.walk(user):
            if "kernels" in root:
                found.update(n.split(".", 1)[0] for n in names if n.endswith(".nbi"))
    return set(modules) <= found


COMPILING = "compiling kernels (once for each kind of work, about half a minute)"
"""The note while Numba compiles: a lossless pack compiles some kernels, a lossy one more."""


def note_first_compile(prog: str, modules=KERNEL_MODULES, quiet: bool = False) -> bool:
    """When the cache lacks ``modules``' kernels: print :data:`COMPILING` on stderr as Numba starts
    compiling one (its ``numba:compile`` event, which a cache hit does not raise), so that a usage
    error, a bad file or a small file decoded without Numba prints no such line. True if armed."""
    if quiet or os.environ.get("NUMBA_DISABLE_JIT") == "1" or kernels_cached(modules):
        return False
    _CompileNote.arm(prog)
    return True


class _CompileNote:
    """Prints the JIT note once, at Numba's first compile in this process (numba imported or not yet:
    an import watcher installs the listener once numba is loaded, without importing it itself)."""

    prog = None
    printed = False
    listening = False
    lock = threading.Lock()

    @classmethod
    def arm(cls, prog: str) -> None:
        cls.prog = prog
        if "numba" in sys.modules:
            cls._listen()
        elif not any(isinstance(f, _NumbaImportWatch) for f in sys.meta_path):
            sys.meta_path.insert(0, _NumbaImportWatch())

    @classmethod
    def _listen(cls) -> None:
        if cls.listening:
            return
        cls.listening = True
        from numba.core import event

        class Listener(event.Listener):
            def on_start(self, ev):
                with cls.lock:
                    if cls.printed or cls.prog is None:
                        return
                    cls.printed = True
                _note_line(f"{cls.prog}: {COMPILING}")

            def on_end(self, ev):
                pass

        event.register("numba:compile", Listener())


def _note_line(text: str) -> None:
    """A line on stderr that a progress bar being drawn does not swallow (tqdm clears and redraws it)."""
    if "tqdm" in sys.modules:
        try:
            from tqdm.std import tqdm

            if len(getattr(tqdm, "_instances", ())):
                tqdm.write(text, file=sys.stderr)
                return
        except Exception:
            pass
    print(text, file=sys.stderr, flush=True)


class _NumbaImportWatch:
    """A meta-path finder that lets the normal finders import numba, then starts the listener."""

    def find_spec(self, name, path=None, target=None):
        if name != "numba":
            return None
        import importlib.util

        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("numba")
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_then_listen(module):
            exec_module(module)
            try:
                _CompileNote._listen()
            except Exception:  # a numba without the event API: no note, nothing else changes
                pass

        loader.exec_module = exec_then_listen
        return spec


# ----------------------------------------------------------------------------------------------
# Output files


def check_overwrite(path: str, force: bool, inputs=()) -> None:
    """Refuse to replace an existing ``path`` without ``--force`` (as gzip and zstd do), and
    refuse outright to write over one of ``inputs``."""
    from ..pack.errors import PackError

    if path == "-":
        return
    for source in inputs:
        if source != "-" and os.path.exists(source) and os.path.exists(path) and os.path.samefile(source, path):
            raise PackError(f"{path}: the output would overwrite the input")
    if os.path.lexists(path) and not force:
        raise PackError(f"{path}: already exists; use -f/--force to overwrite it")


def replace_suffix(path: str, suffixes, new: str) -> str:
    """``model.safetensors`` -> ``model.dcf``: the default output name beside the input."""
    lower = path.lower()
    for suffix in suffixes:
        if lower.endswith(suffix):
            return path[: len(path) - len(suffix)] + new
    return path + new


def each(prog: str, jobs, work) -> int:
    """``work(source, target)`` for each job, as gzip does with several files: a bad file gets one
    line naming it (status 1) and the others still run; usage errors and Ctrl-C stop everything."""
    from ..errors import DCFormatError

    from ..pack.errors import PatternError

    status = OK
    for source, target in jobs:
        try:
            try:
                work(source, target)
            except Exception:
                if _Interrupt.deadline_set:  # a Ctrl-C, whatever it became: no error line, no next file
                    raise KeyboardInterrupt from None
                raise
        except UsageError:
            raise
        except OSError as exc:
            if target == "-" and (isinstance(exc, BrokenPipeError) or exc.errno == errno.EPIPE):
                raise BrokenPipeError(errno.EPIPE, "Broken pipe") from None  # `| head`: stop quietly
            print(f"{prog}: error: {_naming(exc, source, target)}", file=sys.stderr)
            status = DATA_ERROR
        except PatternError as exc:  # a recipe pattern that matches no tensor: the command line is wrong
            raise UsageError(describe_error(exc)) from None
        except (DCFormatError, ValueError, OSError, MemoryError) as exc:
            print(f"{prog}: error: {_naming(exc, source, target)}", file=sys.stderr)
            status = DATA_ERROR
        except RuntimeError as exc:
            if not _raised_in_torch(exc):
                raise
            print(f"{prog}: error: {_torch_write_error(exc, target)}", file=sys.stderr)
            status = DATA_ERROR
    return status


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EPIPE}
"""Errors of writing: they name the output (the input when reading failed)."""


def _naming(exc: BaseException, source: str, target: str) -> str:
    """The error's line, led by the file it concerns when the message names none."""
    message = describe_error(exc)
    if any(p and p != "-" and (p in message or os.path.basename(p) in message) for p in (source, target)):
        return message
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        return f"{'<stdout>' if target == '-' else target}: {message}"
    return f"{'<stdin>' if source == '-' else source}: {message}"


def _raised_in_torch(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if f"{os.sep}torch{os.sep}" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _torch_write_error(exc: BaseException, target: str) -> str:
    """torch.save's C++ errors (``[enforce fail at inline_container.cc:672] . unexpected pos``) as a
    line a user can act on: the target and, when its file system is full, that."""
    import re

    directory = os.path.dirname(os.path.abspath(target))
    try:
        st = os.statvfs(directory)
        full = st.f_bavail * st.f_frsize < (1 << 20)
    except OSError:
        full = False
    if full:
        return f"{target}: No space left on device"
    detail = re.sub(r"\[enforce fail at [^\]]*\]\s*\.?\s*", "", str(exc)).strip().splitlines()
    return f"{target}: torch.save failed to write the file ({(detail or ['unknown error'])[0][:200]})"
