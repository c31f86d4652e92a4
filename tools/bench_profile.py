"""Where the decoder's time goes: CPU time per stage of ``dcformat.load_file``, on one thread.

Each stage is a function of the decode path, wrapped for the duration of the measurement with a
timer that counts *exclusive* time (a stage nested in another, a Huffman byte plane in BYTEPLANES
say, is taken out of its parent). What no stage claims is Python: index parsing, planning, codec
headers, the thread pool. Run as a script: ``python tools/bench_profile.py FILE.dcf``.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import gc
import sys
import time

import numpy as np

_clock = time.thread_time


def _stages():
    """(label, module, attribute) of every wrapped stage; modules are imported here."""
    import dcformat.codecs.bitpack as bitpack_codec
    import dcformat.codecs.byteplanes as byteplanes_codec
    import dcformat.codecs.huffman as huffman_codec
    import dcformat.codecs.plain as plain_codec
    import dcformat.codecs.zstd as zstd_codec
    import dcformat.reader as reader
    from dcformat.kernels import jit

    huffman, csr, elements, bitpack = jit("huffman"), jit("csr"), jit("elements"), jit("bitpack")
    return [
        ("index (read_header)", reader, "read_header"),
        ("codebook", reader, "_codebook_bits"),
        ("Huffman: table checks", huffman_codec, "parse_table"),
        ("Huffman: table build", huffman, "build_table"),
        ("Huffman: decode lanes", huffman, "decode_lanes"),
        ("Huffman: other", huffman_codec, "decode"),
        ("bit unpacking", bitpack, "unpack"),
        ("BITPACK: other", bitpack_codec, "decode"),
        ("zstd", zstd_codec, "decode"),
        ("PLAIN copy", plain_codec, "decode"),
        ("byte planes: merge", elements, "_merge4"),
        ("byte planes: merge", elements, "_merge2"),
        ("byte planes: merge", elements, "_merge8"),
        ("byte planes: other", byteplanes_codec, "decode"),
        ("CSR scatter (+ codebook lookup)", csr, "scatter_take"),
        ("CSR scatter (+ codebook lookup)", csr, "scatter"),
        ("dense codebook lookup", elements, "take"),
    ]


@contextlib.contextmanager
def no_gc():
    """Like ``timeit``: no cyclic garbage collection while timing (after Numba is loaded, a full
    collection walks its hundreds of thousands of objects: tens of milliseconds at random). One
    collection runs first, so garbage from before does not wait for the timed code."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextlib.contextmanager
def _instrumented(totals):
    stack = []

    def wrap(label, function):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            stack.append(0.0)
            start = _clock()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = _clock() - start
                children = stack.pop()
                totals[label] += elapsed - children
                if stack:
                    stack[-1] += elapsed
        return timed

    saved = []
    for label, module, name in _stages():
        original = getattr(module, name)
        saved.append((module, name, original))
        setattr(module, name, wrap(label, original))
    import dcformat.reader as reader
    from dcformat import checksum

    saved.append((reader, "crc32", reader.crc32))
    reader.crc32 = wrap(f"CRC-32 ({checksum.IMPLEMENTATION})", reader.crc32)
    try:
        yield
    finally:
        for module, name, original in reversed(saved):
            setattr(module, name, original)


def decode_profile(path, repeat: int = 3) -> tuple[float, list[tuple[str, float]], float]:
    """``(total, [(stage, seconds)], first_touch)``: mean CPU seconds of ``load_file(path,
    threads=1)``, each stage's share (means over ``repeat`` runs, largest first, "Python and other"
    last), and the CPU time of merely writing zeros once over fresh memory of the output's size
    (the first-touch page faults that the first stage to write each page pays)."""
    import dcformat

    dcformat.load_file(path, threads=1)  # warm: kernels compiled, file in the page cache
    totals = collections.Counter()
    runs = []
    with _instrumented(totals), no_gc():
        for _ in range(repeat):
            gc.collect()
            start = _clock()
            tensors = dcformat.load_file(path, threads=1)
            runs.append(_clock() - start)
            nbytes = sum(a.nbytes for a in tensors.values())
            del tensors
    stages = sorted(((k, v / repeat) for k, v in totals.items()), key=lambda kv: -kv[1])
    mean = sum(runs) / len(runs)
    stages.append(("Python and other (index, planning, headers)", max(0.0, mean - sum(v for _, v in stages))))
    touches = []
    for _ in range(repeat):
        start = _clock()
        fresh = np.empty(nbytes, np.uint8)
        fresh[:] = 0
        touches.append(_clock() - start)
        del fresh
    return mean, stages, float(np.median(touches))


def main(argv=None) -> int:
    path = (argv or sys.argv[1:])[0]
    total, stages, touch = decode_profile(path)
    print(f"{path}: {total * 1e3:.1f} ms CPU on one thread")
    for label, seconds in stages:
        print(f"  {label:45s} {seconds * 1e3:8.2f} ms  {100 * seconds / total:5.1f} %")
    print(f"  (first touch of fresh output memory alone: {touch * 1e3:.2f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
