"""Ctrl-C while a command starts: the process ends at once, one line, status 130, no traceback.

A command spends its first half second or more importing (numpy, then Numba, torch or scipy when
it needs them) before :func:`dcformat.cli._common.run` installs the handler that stops the work
in order. A SIGINT then would print the traceback of whatever import it hit. :func:`install` sets
a handler for that time: there is nothing to stop yet and no file to clean up (temporary files
that do exist are removed all the same), so it prints ``PROG: interrupted`` and ends the process.

It does so only in a dcformat command's process (``dcpack``, ``python -m dcformat.cli.dcpack``,
``python -m dcformat.demo``), told from ``sys.argv`` and ``sys.orig_argv``: a program or a test
that imports dcformat keeps Python's own Ctrl-C. This module imports nothing but the standard
library, so that it can run before anything heavy is imported.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

COMMANDS = ("dcpack", "dcunpack", "dctable", "dcinfo")
MODULES = {f"dcformat.cli.{name}": name for name in COMMANDS}
MODULES["dcformat.demo"] = "python -m dcformat.demo"
INTERRUPTED = 130

_prog = "dcformat"
_installed = False


def command_name() -> str | None:
    """The dcformat command this process runs (its name in messages), or None."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if name in COMMANDS:
        return name
    argv = list(getattr(sys, "orig_argv", ()))
    i = 1
    while i < len(argv) - 1:
        arg = argv[i]
        if arg == "-m":
            return MODULES.get(argv[i + 1])
        if arg == "-c" or not arg.startswith("-"):  # a script or -c code: not one of ours
            return None
        i += 2 if arg in ("-X", "-W") else 1  # options with a value of their own
    return None


def on_interrupt(signum, frame) -> None:
    """End the process now: nothing has started that needs stopping."""
    if "dcformat.atomic" not in sys.modules:
        _end()
    else:  # temporary files may exist: removed by a thread (this handler may have interrupted their lock's holder)
        try:
            threading.Thread(target=_end, daemon=True).start()
        except RuntimeError:  # the interpreter is finalizing: no new threads, and no lock held by now
            _end()


def _end() -> None:
    try:
        atomic = sys.modules.get("dcformat.atomic")
        if atomic is not None:
            atomic.remove_live_temps()
        os.write(2, f"{_prog}: interrupted\n".encode("utf-8", "replace"))
    finally:
        os._exit(INTERRUPTED)


def install(prog: str | None = None) -> bool:
    """In a dcformat command's process (or for ``prog``), make a SIGINT before :func:`run` end it
    quietly; Python's own handler must still be in place (nothing else has set one). True if set."""
    global _prog, _installed
    prog = prog or command_name()
    if prog is None or threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGINT) not in (signal.default_int_handler, on_interrupt):
        return False
    _prog = prog
    signal.signal(signal.SIGINT, on_interrupt)
    _installed = True
    return True


def own_process() -> bool:
    """Whether this process is a dcformat command's own (:func:`install` has set the handler): it
    may then end with ``os._exit`` once an interrupted command has cleaned up."""
    return _installed
