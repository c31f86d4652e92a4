"""Fuzz the dcf reader: structure-aware mutations of the golden vectors, checked by an oracle.

Every input either decodes to arrays of the declared shape and dtype, or raises a DCFormatError
subclass. Anything else is a *finding*: another exception, a wrong-size result, a disagreement
between two decoders of the same bytes (Numba kernels and their numpy twins, the slow reference
decoders), a hang, a crash of the process, or a memory limit hit. The mutations and the oracle
live in ``tests/fuzz_helpers.py``; this is the driver.

    python tools/fuzz_reader.py --inputs 100000 --variants 16   # what the test suite runs
    python tools/fuzz_reader.py --replay FINDING.dcf            # re-run one saved input

The long campaign, single process at low priority, both engines in turn (10 minutes each):

    nohup nice -n 10 .venv/bin/python tools/fuzz_reader.py --engine mixed --minutes 60 \
        --findings /tmp/dcformat-fuzz/findings > /tmp/fuzz_long.log 2>&1 &
    grep -E "elapsed|FINDING|SUMMARY" /tmp/fuzz_long.log    # progress: inputs, inputs/s, findings

``--engine mutator`` (the default) is the structure-aware mutator alone, reproducible;
``--engine atheris`` is coverage-guided (libFuzzer, with the same mutator as its custom mutator
and libFuzzer's byte mutations besides; its corpus persists beside ``--findings``).

A supervisor process runs the fuzzing in a child process and watches it: a child that dies (a
segfault in a kernel) or stops making progress (a hang in a kernel, which no Python signal can
interrupt) is replaced, and the input it was on is saved. The child's address space is capped, so
an allocation no file should cause fails loudly instead of swapping. With the default engine each
input is a pure function of ``(seed, index)``, so ``--seed S --start I --inputs 1`` repeats input I.

Findings go to ``--findings`` (one file per distinct failure, with its traceback); minimize one by
hand and keep it in ``tests/fuzz_regressions/``, where a test decodes it forever.
"""
from __future__ import annotations

import argparse
import json
import mmap
import os
import pathlib
import re
import resource
import signal
import struct
import subprocess
import sys
import time
import traceback

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

# Shared state between supervisor and child: current input index, inputs done, decoded, stream
# inputs done, child's heartbeat.
_STATE = struct.Struct("<qqqqd")
STREAM_EVERY = 4  # every 4th input is a stream-level input (a codec's decode), the rest files


def _signature(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    inner = [f for f in frames if "/dcformat/" in f.filename] or frames
    where = f"{pathlib.Path(inner[-1].filename).name}:{inner[-1].lineno}" if inner else "?"
    return f"{type(error).__name__}@{where}"


def _save_finding(findings: pathlib.Path, signature: str, name: str, data: bytes, text: str) -> bool:
    """Save one input per signature; returns True if the signature is new."""
    findings.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.@-]", "_", signature)
    if any(findings.glob(f"{stem}--*")):
        return False
    (findings / f"{stem}--{name}").write_bytes(data)
    (findings / f"{stem}--{name}.txt").write_text(text, encoding="utf-8")
    return True


def _stream_record(args) -> bytes:
    codec, payload, count, size, param, bound = args
    return json.dumps({"codec": int(codec), "count": count, "element_size": size, "param": param,
                       "bound": bound, "payload": bytes(payload).hex()}).encode()


def make_input(corpus, seed: int, index: int):
    """``("file", (data, verify))`` or ``("stream", args)`` for input ``index`` of ``seed``."""
    key = (seed << 40) | index
    if index % STREAM_EVERY == STREAM_EVERY - 1:
        return "stream", corpus.stream_input(key)
    return "file", corpus.file_input(key)


def run_input(kind, value):
    import fuzz_helpers as fh

    if kind == "stream":
        return fh.check_stream(*value)
    return fh.check_file(*value)


# --------------------------------------------------------------------------------------------
# The child: fuzz from --start until --inputs are done or --deadline passes


def _cap_memory(extra_mb: int) -> None:
    """Cap the address space at what the process uses now plus ``extra_mb``."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[0])
    limit = pages * os.sysconf("SC_PAGE_SIZE") + extra_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def child(args) -> int:
    import faulthandler

    faulthandler.enable()  # a crash in a kernel prints the Python stack into the log
    state_file = open(args.state, "r+b")
    state = mmap.mmap(state_file.fileno(), _STATE.size)
    if args.engine == "atheris":
        return atheris_main(args, state)  # libFuzzer caps memory itself (-rss_limit_mb)
    import fuzz_helpers as fh

    corpus = fh.Corpus(variants=args.variants)
    _cap_memory(args.memory_mb)
    findings = pathlib.Path(args.findings)
    index = args.start
    end = args.start + args.inputs if args.inputs else None
    done = decoded = streams = 0
    inject = {int(at): what for what, at in (item.split(":") for item in args.inject.split(","))} \
        if args.inject else {}
    while (end is None or index < end) and time.time() < args.deadline:
        _STATE.pack_into(state, 0, index, done, decoded, streams, time.time())
        try:
            kind, value = make_input(corpus, args.seed, index)
        except Exception:  # noqa: BLE001 - a bug of the mutator, not of the reader: note it, go on
            print(f"mutator error at input {index}:\n{traceback.format_exc()}", flush=True)
            with open(findings / "mutator-errors.log", "a") as log:
                log.write(f"{args.seed} {index}\n")
            index += 1
            continue
        try:
            if index in inject:
                _inject(inject[index])
            decoded += bool(run_input(kind, value))
        except Exception as error:  # noqa: BLE001 - everything but DCFormatError is a finding
            signature = _signature(error)
            data = _stream_record(value) if kind == "stream" else value[0]
            name = f"seed{args.seed}-input{index}.{'json' if kind == 'stream' else 'dcf'}"
            text = f"{signature}\nseed {args.seed} input {index} ({kind})\n\n{traceback.format_exc()}"
            if _save_finding(findings, signature, name, data, text):
                print(f"FINDING {signature} at input {index}: {error!s:.300}", flush=True)
            with open(findings / "findings.log", "a") as log:
                log.write(f"{signature} {args.seed} {index}\n")
        done += 1
        streams += kind == "stream"
        index += 1
    _STATE.pack_into(state, 0, index, done, decoded, streams, time.time())
    state.flush()
    return 0


def _inject(what: str) -> None:
    """--inject (tests of this driver): fail at one input the way a reader bug would."""
    if what == "crash":
        import ctypes

        ctypes.string_at(0)  # a segfault, as from a kernel's out-of-bounds access
    elif what == "hang":
        while True:
            pass
    elif what == "memory":
        import numpy as np

        np.ones(2**40, np.uint8)  # a terabyte
    else:
        raise RuntimeError("injected error")


# --------------------------------------------------------------------------------------------
# The supervisor


class Totals:
    def __init__(self):
        self.inputs = self.decoded = self.streams = 0
        self.findings: dict[str, int] = {}
        self.fatal: dict[str, int] = {}
        self.children = 0
        self.start = time.time()

    def line(self) -> str:
        elapsed = time.time() - self.start
        return (f"{time.strftime('%H:%M:%S')} elapsed {elapsed:7.0f} s  inputs {self.inputs:>10,} "
                f"({self.inputs / max(elapsed, 1e-9):6.0f}/s; {self.streams:,} stream-level, "
                f"{self.decoded:,} decoded)  findings {sum(self.findings.values())} "
                f"({len(self.findings)} distinct)")


def supervise(args) -> int:
    findings = pathlib.Path(args.findings)
    state_path = findings.parent / f".fuzz-state-{os.getpid()}"
    findings.mkdir(parents=True, exist_ok=True)
    state_path.write_bytes(bytes(_STATE.size))
    totals = Totals()
    deadline = time.time() + 60 * args.minutes if args.minutes else float("inf")
    index = args.start
    end = args.start + args.inputs if args.inputs else None
    seed = args.seed
    print(f"fuzzing the dcf reader: seed {seed}, "
          f"{'%d inputs' % args.inputs if args.inputs else '%g minutes' % args.minutes}, "
          f"findings in {findings}", flush=True)
    last_report = time.time()
    log = findings / "findings.log"
    log_start = log.stat().st_size if log.exists() else 0
    proc = None
    failed_starts = 0
    try:
        while (end is None or index < end) and time.time() < deadline:
            # A child runs for at most --restart-every seconds, then a fresh one picks up any
            # change to the library (and the next range of inputs).
            child_deadline = min(deadline, time.time() + args.restart_every)
            engine = args.engine if args.engine != "mixed" else ("mutator", "atheris")[totals.children % 2]
            cmd = [sys.executable, __file__, "--child", "--engine", engine, "--state", str(state_path),
                   "--seed", str(seed),
                   "--start", str(index), "--inputs", str(end - index if end is not None else 0),
                   "--deadline", repr(child_deadline), "--findings", str(findings),
                   "--memory-mb", str(args.memory_mb)]
            if args.variants is not None:
                cmd += ["--variants", str(args.variants)]
            if args.inject:
                cmd += ["--inject", args.inject]
            _STATE.pack_into(state := bytearray(_STATE.size), 0, index, 0, 0, 0, time.time())
            state_path.write_bytes(bytes(state))
            proc = subprocess.Popen(cmd)
            totals.children += 1
            last_index, last_change = index, time.time()
            started = time.time()
            hang = False
            while proc.poll() is None:
                time.sleep(0.2)
                cur, *_ = _STATE.unpack_from(state_path.read_bytes())
                if cur != last_index:
                    last_index, last_change = cur, time.time()
                # the first input of a child also pays for imports and JIT cache loads
                patience = args.timeout + (60 if cur == index else 0)
                if time.time() - last_change > patience:
                    hang = True
                    proc.kill()
                    proc.wait()
                    break
                if time.time() - last_report > args.report_every:
                    _count_findings(log, log_start, totals)
                    print(totals.line() + f"  [child at input {cur:,}]", flush=True)
                    last_report = time.time()
            cur, done, decoded, streams, _ = _STATE.unpack_from(state_path.read_bytes())
            totals.inputs += done
            totals.decoded += decoded
            totals.streams += streams
            if hang or proc.returncode != 0:
                if proc.returncode and time.time() - started < 5 and done == 0 and not hang:
                    failed_starts += 1
                    if failed_starts >= 5:
                        print("the child failed to start 5 times in a row: giving up", flush=True)
                        totals.fatal["ChildStartFailure"] = 1
                        break
                    print(f"child failed to start (exit {proc.returncode}); retrying in 30 s", flush=True)
                    time.sleep(30)  # the library may be half-edited: try again soon
                    continue
                failed_starts = 0
                what = "Hang" if hang else f"Crash(exit {proc.returncode})"
                if engine == "atheris":  # libFuzzer saved the input itself (crash-*, timeout-*)
                    totals.fatal[f"{what}@atheris"] = totals.fatal.get(f"{what}@atheris", 0) + 1
                    print(f"FINDING {what}@atheris; libFuzzer's artifact is in {findings}", flush=True)
                else:
                    _record_fatal(args, totals, findings, what, seed, cur)
                    totals.inputs += 1
                index = cur + 1
            else:
                index = cur
            if engine == "atheris":
                seed += 1  # a fresh libFuzzer seed for the next atheris slice
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    finally:
        state_path.unlink(missing_ok=True)
    _count_findings(findings / "findings.log", log_start, totals)
    print(totals.line(), flush=True)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = {"inputs": totals.inputs, "stream_inputs": totals.streams, "decoded": totals.decoded,
               "seconds": round(time.time() - totals.start, 1),
               "cpu_seconds": round(children.ru_utime + children.ru_stime, 1), "findings": totals.findings,
               "seed": seed, "first_input": args.start, "next_input": index}
    print("SUMMARY " + json.dumps(summary), flush=True)
    return 1 if totals.findings else 0


def _count_findings(log: pathlib.Path, start: int, totals: Totals) -> None:
    """Findings the children logged (in ``log`` after byte ``start``), plus hangs and crashes."""
    counts = dict(totals.fatal)
    if log.exists():
        with open(log) as f:
            f.seek(start)
            for line in f:
                signature = line.split()[0]
                counts[signature] = counts.get(signature, 0) + 1
    totals.findings = counts


def _record_fatal(args, totals, findings, what, seed, index) -> None:
    """Save the input a child died or hung on (regenerated from seed and index)."""
    import fuzz_helpers as fh

    corpus = fh.Corpus(variants=args.variants)
    try:
        kind, value = make_input(corpus, seed, index)
        data = _stream_record(value) if kind == "stream" else value[0]
    except Exception:  # noqa: BLE001 - the child died in the mutator: keep what we know
        kind, data = "mutator", traceback.format_exc().encode()
    name = f"seed{seed}-input{index}.{'json' if kind == 'stream' else 'dcf'}"
    signature = f"{what}@{kind}"
    _save_finding(findings, signature, name, data, f"{signature}\nseed {seed} input {index} ({kind})\n")
    totals.fatal[signature] = totals.fatal.get(signature, 0) + 1
    print(f"FINDING {signature} at input {index}", flush=True)


# --------------------------------------------------------------------------------------------
# atheris: coverage-guided, libFuzzer's own loop (it saves crash-*, timeout-* and oom-* files)


_STREAM_HEAD = struct.Struct("<cBBBIQ")  # b"S", codec, element size, param, bound, count


def atheris_main(args, state=None) -> int:
    """libFuzzer's loop over :func:`fuzz_helpers.check_file` (and, for inputs starting with
    ``S``, :func:`fuzz_helpers.check_stream`), with the structure-aware mutator as its custom
    mutator and libFuzzer's byte mutations mixed in. ``state``: the supervisor's shared state."""
    import atheris

    # Instrument the library, not its Numba kernels (Numba cannot compile instrumented bytecode);
    # codecs and kernels load lazily, so import them all here.
    with atheris.instrument_imports(include=["dcformat"], exclude=["dcformat.kernels"]):
        import dcformat  # noqa: F401
        import dcformat.codecs.bitpack  # noqa: F401
        import dcformat.codecs.byteplanes  # noqa: F401
        import dcformat.codecs.huffman  # noqa: F401
        import dcformat.codecs.plain  # noqa: F401
        import dcformat.codecs.zstd  # noqa: F401
        import dcformat.csr  # noqa: F401
        import dcformat.index_reader  # noqa: F401
        import dcformat.reader  # noqa: F401
    import random

    import fuzz_helpers as fh

    corpus = fh.Corpus(variants=None)
    counters = [args.start, 0, 0, 0]  # index, done, decoded, stream inputs

    def one_input(data: bytes) -> None:
        counters[0] += 1
        counters[1] += 1
        if state is not None:
            _STATE.pack_into(state, 0, counters[0], counters[1], counters[2], counters[3], time.time())
        if data[:1] == b"S" and len(data) >= _STREAM_HEAD.size:
            _, codec, size, param, bound, count = _STREAM_HEAD.unpack_from(data)
            counters[3] += 1
            if codec > 4 or size not in (1, 2, 4, 8) or not 1 <= count <= 1 << 24:
                return
            counters[2] += fh.check_stream(codec, data[_STREAM_HEAD.size:], count, size, param,
                                           None if bound == 0xFFFFFFFF else bound)
            return
        counters[2] += fh.check_file(data, bool(len(data) & 1), fh.BACKENDS[len(data) >> 1 & 1])

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        r = rng.random()
        if r < 0.3:
            out = bytearray(atheris.Mutate(data, max_size))
            fh.fix_index_crc(out)
            return bytes(out)
        if r < 0.4:
            codec, payload, count, size, param, bound = corpus.stream_input(seed)
            head = _STREAM_HEAD.pack(b"S", codec & 0xFF, size, param & 0xFF,
                                     0xFFFFFFFF if bound is None else min(bound, 0xFFFFFFFE),
                                     count & 0xFFFFFFFFFFFFFFFF)
            return (head + payload)[:max_size]
        try:
            model = fh.parse_model(data)
        except Exception:  # noqa: BLE001 - not a valid file: start from a seed
            model = fh.copy_model(rng.choice(corpus.models))
        for _ in range(rng.choice((1, 1, 2, 3))):
            fh.mutate_model(rng, model, corpus.models)
        return fh.serialize(model)[:max_size]

    pathlib.Path(args.findings).mkdir(parents=True, exist_ok=True)
    corpus_dir = pathlib.Path(args.findings).parent / "atheris-corpus"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    for p in fh.VECTORS.glob("*.dcf"):
        (corpus_dir / p.name).write_bytes(p.read_bytes())
    seconds = max(1, int(min(args.deadline - time.time(), 1e9))) if args.deadline != float("inf") \
        else int(60 * args.minutes) or 600
    argv = [sys.argv[0], str(corpus_dir), f"-max_total_time={seconds}", f"-timeout={args.timeout}",
            f"-rss_limit_mb={args.memory_mb + 1024}", f"-artifact_prefix={args.findings}/",
            "-print_final_stats=1", "-max_len=65536", f"-seed={args.seed}",
            "-report_slow_units=60"]  # not 10 s: a fresh process may JIT-compile the kernels first
    atheris.Setup(argv, one_input, custom_mutator=mutator)
    atheris.Fuzz()  # exits the process when done
    return 0


def replay(path: pathlib.Path) -> int:
    import fuzz_helpers as fh

    if path.suffix == ".json":
        record = json.loads(path.read_text())
        result = fh.check_stream(record["codec"], bytes.fromhex(record["payload"]), record["count"],
                                 record["element_size"], record["param"], record["bound"])
    else:
        data = path.read_bytes()
        result = [fh.check_file(data, verify, backend) for verify in (True, False) for backend in fh.BACKENDS]
    outcomes = result if isinstance(result, list) else [result]
    print(f"{path}: " + ", ".join("decoded" if r else "refused (DCFormatError)" for r in outcomes)
          + ("  [verify on/off x numba/numpy kernels]" if len(outcomes) > 1 else ""))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=0, help="run this long (0: until --inputs)")
    parser.add_argument("--inputs", type=int, default=0, help="run this many inputs (0: until --minutes)")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000,
                        help="campaign seed (default: from the clock)")
    parser.add_argument("--start", type=int, default=0, help="first input index")
    parser.add_argument("--engine", choices=("mutator", "atheris", "mixed"), default="mutator",
                        help="mutator: structure-aware, reproducible from (seed, index); atheris: "
                             "coverage-guided libFuzzer with the same mutator; mixed: alternate "
                             "the two, one child process each")
    parser.add_argument("--variants", type=int, default=None,
                        help="re-encoded variants per seed stream (default: fresh each time)")
    parser.add_argument("--findings", default="/tmp/dcformat-fuzz/findings")
    parser.add_argument("--timeout", type=int, default=20, help="seconds one input may take")
    parser.add_argument("--memory-mb", type=int, default=2048,
                        help="address space a child may add after start-up")
    parser.add_argument("--restart-every", type=float, default=600, help="seconds per child process")
    parser.add_argument("--report-every", type=float, default=60)
    parser.add_argument("--replay", type=pathlib.Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--inject", help=argparse.SUPPRESS)  # crash|hang|memory|error:INDEX,...
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, default=float("inf"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.replay:
        return replay(args.replay)
    if args.child:
        return child(args)
    if not args.minutes and not args.inputs:
        parser.error("give --minutes or --inputs")
    if args.engine in ("atheris", "mixed"):
        try:
            import atheris  # noqa: F401
        except ImportError:
            if args.engine == "atheris":
                parser.error("--engine atheris needs atheris (pip install atheris; Linux x86-64)")
            print("atheris is not installed: the mutator engine only", flush=True)
            args.engine = "mutator"
    signal.signal(signal.SIGTERM, _interrupt)
    return supervise(args)


def _interrupt(*_):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
