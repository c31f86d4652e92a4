/* BITPACK (spec 8.2): each element in `width` bits (1 ... 32), least significant bit first, one
 * bit stream; length = ceil(count x width / 8); the padding bits of the last byte are zero. */
#include "dcf_internal.h"

/* Elements [i0, i1): one unaligned 8-byte load each while 8 bytes remain (a field of at most
 * 32 bits starting at bit 0 ... 7 of a byte fits in 39 bits), byte by byte after. */
#define DCF_UNPACK_LOOP(T)                                                                       \
    do {                                                                                         \
        for (i = 0; i < fast; i++) {                                                             \
            uint64_t bit = i * width;                                                            \
            T v = (T)((dcf_le64(p + (bit >> 3)) >> (bit & 7)) & mask);                           \
            memcpy(out + i * sizeof(T), &v, sizeof(T));                                          \
        }                                                                                        \
        for (; i < count; i++) {                                                                 \
            uint64_t bit = i * width, acc = 0;                                                   \
            size_t b = (size_t)(bit >> 3), k;                                                    \
            T v;                                                                                 \
            for (k = 0; k < 8 && b + k < n; k++)                                                 \
                acc |= (uint64_t)p[b + k] << (8 * k);                                            \
            v = (T)((acc >> (bit & 7)) & mask);                                                  \
            memcpy(out + i * sizeof(T), &v, sizeof(T));                                          \
        }                                                                                        \
    } while (0)

dcf_error dcf_bitpack_decode(const dcf_stream_ctx *sc, const uint8_t *p, uint64_t length, uint64_t count,
                             size_t esize, unsigned width, uint8_t *out)
{
    uint64_t expected, i, fast, mask, used;
    size_t n = (size_t)length;
    if (width < 1 || width > DCF_MAX_BITPACK_WIDTH || width > 8 * esize)
        return dcf_fail(sc->err, DCF_ERR_BAD_CODEC_PARAM,
                        "%s: BITPACK width %u: must be 1 ... %d and at most %u for %u-byte elements", sc->what, width,
                        DCF_MAX_BITPACK_WIDTH, (unsigned)(8 * esize), (unsigned)esize);
    /* count <= 8 x length (checked with the index), so count x width cannot overflow */
    expected = (count * width + 7) / 8;
    if (length != expected)
        return dcf_fail(sc->err, DCF_ERR_COUNT_MISMATCH,
                        "%s: BITPACK stream of %llu elements of %u bits has %llu bytes, not %llu", sc->what,
                        (unsigned long long)count, width, (unsigned long long)length, (unsigned long long)expected);
    used = (count * width) % 8;
    if (used && (p[n - 1] >> used) != 0)
        return dcf_fail(sc->err, DCF_ERR_PADDING, "%s: BITPACK stream: non-zero padding bits in its last byte",
                        sc->what);
    mask = ((uint64_t)1 << width) - 1;
    /* element i may use the fast load while (i * width) / 8 + 8 <= n */
    fast = n >= 8 ? ((uint64_t)(n - 8) * 8) / width + 1 : 0;
    if (fast > count)
        fast = count;
    switch (esize) {
    case 1: DCF_UNPACK_LOOP(uint8_t); break;
    case 2: DCF_UNPACK_LOOP(uint16_t); break;
    case 4: DCF_UNPACK_LOOP(uint32_t); break;
    default: DCF_UNPACK_LOOP(uint64_t); break;
    }
    return DCF_OK;
}
