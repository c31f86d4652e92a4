"""libdcf's CRC-32 (libdcf/crc32.c): the fast paths (PCLMULQDQ folding on x86-64, chosen at run
time; ARMv8 CRC32 instructions where built for them) and the portable slicing-by-16 path give
zlib.crc32's value for every length (0, odd tails, around the 64-byte fast-path threshold, long
buffers) and every alignment; the same under AddressSanitizer and UBSan with buffers of exactly
the length (an over-read is an error), and with the portable path compiled alone."""
from __future__ import annotations

import ctypes
import os
import random
import shutil
import subprocess
import zlib

import pytest

from libdcf_helpers import LIB_PATH, NOZSTD_LIB_PATH, ROOT, build_native

LENGTHS = [*range(0, 300), 511, 512, 513, 1023, 4095, 4096, 4097, 65535, 65536, 65537, 1 << 20, (1 << 20) + 15]


@pytest.fixture(scope="module", autouse=True)
def built():
    build_native()


def _functions(path):
    lib = ctypes.CDLL(path)
    out = []
    for name in ("dcf_crc32", "dcf_crc32_portable"):
        f = getattr(lib, name)
        f.restype, f.argtypes = ctypes.c_uint32, [ctypes.c_void_p, ctypes.c_size_t]
        out.append(f)
    return out


@pytest.mark.parametrize("path", [LIB_PATH, NOZSTD_LIB_PATH], ids=["zstd", "nozstd"])
def test_crc32_equals_zlib_for_every_length_and_alignment(path):
    rng = random.Random(7)
    data = rng.randbytes((1 << 20) + 200)
    buf = ctypes.create_string_buffer(data, len(data))
    base = ctypes.addressof(buf)
    cases = [(n, off) for n in LENGTHS for off in (0, 1, 3, 8, 15, rng.randrange(64))]
    cases += [(rng.randrange(100_000), rng.randrange(64)) for _ in range(500)]
    for n, off in cases:
        want = zlib.crc32(data[off:off + n])
        for f in _functions(path):
            assert f(base + off, n) == want, (f.__name__, n, off)


def test_crc32_of_known_values():
    fast, portable = _functions(LIB_PATH)
    for data, want in [(b"", 0), (b"123456789", 0xCBF43926), (b"hi\n", 0xED6F7A7A),
                       (bytes(64), 0x758D6336), (b"\xff" * 1000, zlib.crc32(b"\xff" * 1000))]:
        assert fast(data, len(data)) == portable(data, len(data)) == want


HARNESS = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
uint32_t dcf_crc32(const uint8_t *p, size_t n);
uint32_t dcf_crc32_portable(const uint8_t *p, size_t n);
/* the bitwise definition: reflected 0xEDB88320, init and final XOR 0xFFFFFFFF */
static uint32_t slow(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    int k;
    while (n--) {
        c ^= *p++;
        for (k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}
int main(void)
{
    size_t n, off;
    uint32_t seed = 12345;
    for (n = 0; n <= 1100; n++)
        for (off = 0; off < 16; off++) {
            /* an allocation that ends exactly at p + n: reading past it is an ASan error */
            uint8_t *block = (uint8_t *)malloc(n + off ? n + off : 1), *p = block + off;
            size_t i;
            uint32_t want;
            for (i = 0; i < n; i++) {
                seed = seed * 1103515245u + 12345u;
                p[i] = (uint8_t)(seed >> 16);
            }
            want = slow(p, n);
            if (dcf_crc32(p, n) != want || dcf_crc32_portable(p, n) != want) {
                printf("mismatch n=%lu off=%lu\n", (unsigned long)n, (unsigned long)off);
                return 1;
            }
            free(block);
        }
    {
        uint8_t *exact = (uint8_t *)malloc(100003);
        for (n = 0; n < 100003; n++)
            exact[n] = (uint8_t)(n * 7 + 3);
        if (dcf_crc32(exact, 100003) != slow(exact, 100003) || dcf_crc32(exact + 1, 100002) != slow(exact + 1, 100002))
            return 1;
        free(exact);
    }
    puts("ok");
    return 0;
}
"""


@pytest.mark.parametrize("flags", [["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-O1", "-g"],
                                   ["-O2", "-DDCF_CRC_PORTABLE_ONLY"], ["-O2", "-DDCF_NO_ZSTD"]],
                         ids=["asan-ubsan", "portable-only", "nozstd"])
def test_crc32_under_sanitizers_and_each_build(tmp_path, flags):
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler")
    harness = tmp_path / "crc_harness.c"
    harness.write_text(HARNESS)
    exe = tmp_path / "crc_harness"
    build = subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", *flags,
                            "-I", os.path.join(ROOT, "libdcf"), os.path.join(ROOT, "libdcf", "crc32.c"), str(harness),
                            "-o", str(exe)], capture_output=True, text=True)
    if build.returncode != 0 and "sanitize" in " ".join(flags) and "asan" in build.stderr.lower():
        pytest.skip(f"no sanitizer runtime: {build.stderr[-300:]}")
    assert build.returncode == 0, build.stderr
    done = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr
