/* BYTEPLANES (spec 8.5): the elements split into element_size byte planes, each stored with its
 * own codec (PLAIN, HUFFMAN or ZSTD), optionally after rotating each element left by one bit.
 *
 * Payload: transform u8 (0 none, 1 rotate), plane_count u8 (= element_size: 2, 4 or 8), reserved
 * u16, plane_count descriptors (codec u8, 3 reserved bytes, length u32), then the planes.
 * Scratch: the HUFFMAN and ZSTD planes, count bytes each, allocated once the header is valid and
 * every plane's length can hold `count` bytes under its codec; PLAIN planes are read in place. */
#include "dcf_internal.h"

/* Four planes into 4-byte elements (restrict: the planes and the output never overlap, so the
 * compiler may vectorize). */
static void merge4(const uint8_t *restrict a, const uint8_t *restrict b, const uint8_t *restrict c,
                   const uint8_t *restrict d, uint8_t *restrict out, uint64_t n)
{
    uint64_t i;
    for (i = 0; i < n; i++) {
        uint32_t v = a[i] | (uint32_t)b[i] << 8 | (uint32_t)c[i] << 16 | (uint32_t)d[i] << 24;
        memcpy(out + 4 * i, &v, 4);
    }
}

static void merge4_rotate(const uint8_t *restrict a, const uint8_t *restrict b, const uint8_t *restrict c,
                          const uint8_t *restrict d, uint8_t *restrict out, uint64_t n)
{
    uint64_t i;
    for (i = 0; i < n; i++) {
        uint32_t v = a[i] | (uint32_t)b[i] << 8 | (uint32_t)c[i] << 16 | (uint32_t)d[i] << 24;
        v = (v >> 1) | ((v & 1u) << 31);
        memcpy(out + 4 * i, &v, 4);
    }
}

dcf_error dcf_byteplanes_decode(const dcf_stream_ctx *sc, const uint8_t *p, uint64_t length, uint64_t count,
                                size_t esize, uint8_t *out)
{
    unsigned transform, plane_count, j;
    uint64_t start, offsets[8], lengths[8], i;
    uint8_t codecs[8];
    uint8_t *planes;
    const uint8_t *q[8];
    uint64_t coded;
    dcf_error e = DCF_OK;

    if (esize != 2 && esize != 4 && esize != 8)
        return dcf_fail(sc->err, DCF_ERR_BAD_CODEC_PARAM, "%s: BYTEPLANES stream of %u-byte elements: must be 2, 4 or 8",
                        sc->what, (unsigned)esize);
    if (length < 4)
        return dcf_fail(sc->err, DCF_ERR_TRUNCATED, "%s: BYTEPLANES stream of %llu bytes: no header", sc->what,
                        (unsigned long long)length);
    transform = p[0];
    plane_count = p[1];
    if (transform > 1)
        return dcf_fail(sc->err, DCF_ERR_BAD_CODEC_PARAM, "%s: unknown BYTEPLANES transform %u", sc->what, transform);
    if (plane_count != esize)
        return dcf_fail(sc->err, DCF_ERR_BAD_CODEC_PARAM, "%s: BYTEPLANES plane_count %u, element_size %u", sc->what,
                        plane_count, (unsigned)esize);
    if (dcf_le16(p + 2) != 0)
        return dcf_fail(sc->err, DCF_ERR_RESERVED, "%s: BYTEPLANES header: non-zero reserved bytes", sc->what);
    start = 4 + 8 * (uint64_t)plane_count;
    if (length < start)
        return dcf_fail(sc->err, DCF_ERR_TRUNCATED, "%s: BYTEPLANES stream ends inside its plane descriptors", sc->what);
    for (j = 0; j < plane_count; j++) {
        const uint8_t *d = p + 4 + 8 * j;
        codecs[j] = d[0];
        if (d[0] != DCF_CODEC_PLAIN && d[0] != DCF_CODEC_HUFFMAN && d[0] != DCF_CODEC_ZSTD)
            return dcf_fail(sc->err, DCF_ERR_BAD_ENUM, "%s: BYTEPLANES plane %u: codec %u is not PLAIN, HUFFMAN or ZSTD",
                            sc->what, j, d[0]);
        if (d[1] || d[2] || d[3])
            return dcf_fail(sc->err, DCF_ERR_RESERVED, "%s: BYTEPLANES plane %u: non-zero reserved bytes", sc->what, j);
        offsets[j] = start;
        lengths[j] = dcf_le32(d + 4);
        start += lengths[j];
    }
    if (start != length)
        return dcf_fail(sc->err, DCF_ERR_COUNT_MISMATCH,
                        "%s: BYTEPLANES plane lengths add up to %llu bytes with the header, the payload has %llu",
                        sc->what, (unsigned long long)start, (unsigned long long)length);
    /* each plane's length must be able to hold count bytes before the planes are allocated */
    for (j = 0; j < plane_count; j++) {
        uint64_t per_byte = codecs[j] == DCF_CODEC_PLAIN ? 1 : codecs[j] == DCF_CODEC_HUFFMAN ? 8 : DCF_MAX_ZSTD_EXPANSION;
        if (count > per_byte * lengths[j]) {
            if (codecs[j] == DCF_CODEC_PLAIN)
                return dcf_fail(sc->err, DCF_ERR_COUNT_MISMATCH,
                                "%s: BYTEPLANES plane %u: PLAIN stream of %llu bytes for %llu elements", sc->what, j,
                                (unsigned long long)lengths[j], (unsigned long long)count);
            if (codecs[j] == DCF_CODEC_HUFFMAN)
                return dcf_fail(sc->err, DCF_ERR_COUNT_MISMATCH,
                                "%s: BYTEPLANES plane %u: HUFFMAN stream of %llu bytes cannot hold %llu symbols", sc->what,
                                j, (unsigned long long)lengths[j], (unsigned long long)count);
            return dcf_fail(sc->err, DCF_ERR_LIMIT_EXPANSION,
                            "%s: BYTEPLANES plane %u: ZSTD stream of %llu bytes cannot hold %llu bytes", sc->what, j,
                            (unsigned long long)lengths[j], (unsigned long long)count);
        }
    }
    /* PLAIN planes are read where they lie (their length must be count); the others are decoded
     * into scratch, count bytes each */
    for (j = 0, coded = 0; j < plane_count; j++) {
        if (codecs[j] == DCF_CODEC_PLAIN && lengths[j] != count)
            return dcf_fail(sc->err, DCF_ERR_COUNT_MISMATCH,
                            "%s: BYTEPLANES plane %u: PLAIN stream of %llu bytes for %llu elements", sc->what, j,
                            (unsigned long long)lengths[j], (unsigned long long)count);
        coded += codecs[j] != DCF_CODEC_PLAIN;
    }
    if (coded && count > SIZE_MAX / coded)
        return dcf_fail(sc->err, DCF_ERR_NO_MEMORY, "%s: BYTEPLANES planes too large for this platform", sc->what);
    planes = coded ? (uint8_t *)dcf_alloc(sc->ctx, (size_t)(count * coded)) : NULL;
    if (coded && planes == NULL)
        return dcf_fail(sc->err, DCF_ERR_NO_MEMORY, "%s: out of memory for BYTEPLANES planes", sc->what);
    for (j = 0, coded = 0; j < plane_count && e == DCF_OK; j++) {
        const uint8_t *src = p + offsets[j];
        uint8_t *plane;
        if (codecs[j] == DCF_CODEC_PLAIN) {
            q[j] = src;
            continue;
        }
        plane = planes + (size_t)coded++ * (size_t)count;
        q[j] = plane;
        if (codecs[j] == DCF_CODEC_HUFFMAN)
            e = dcf_huffman_decode(sc, src, lengths[j], count, 1, 256, plane);
        else
            e = dcf_zstd_decode(sc, src, lengths[j], count, 1, plane);
    }
    if (e == DCF_OK) {
        const uint8_t *q0 = q[0], *q1 = q[1];
        if (esize == 2) {
            for (i = 0; i < count; i++) {
                uint16_t v = (uint16_t)(q0[i] | (unsigned)q1[i] << 8);
                if (transform)
                    v = (uint16_t)((v >> 1) | ((v & 1u) << 15));
                memcpy(out + 2 * i, &v, 2);
            }
        } else if (esize == 4) {
            if (transform)
                merge4_rotate(q[0], q[1], q[2], q[3], out, count);
            else
                merge4(q[0], q[1], q[2], q[3], out, count);
        } else {
            for (i = 0; i < count; i++) {
                uint64_t v = 0;
                for (j = 0; j < 8; j++)
                    v |= (uint64_t)q[j][i] << (8 * j);
                if (transform)
                    v = (v >> 1) | ((v & 1u) << 63);
                memcpy(out + 8 * i, &v, 8);
            }
        }
    }
    dcf_free(sc->ctx, planes);
    return e;
}
