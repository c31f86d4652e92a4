/* Streams (spec 4.5, 8): element sizes and bounds of each role, PLAIN, and the dispatch that
 * checks a stream's CRC, decodes it with its codec and checks its elements' bound. */
#include "dcf_internal.h"

size_t dcf_element_size_of(const dcf_tensor *t, int role)
{
    switch (role) {
    case DCF_ROLE_CODEBOOK: return t->codebook_dtype == DCF_F32 ? 4 : dcf_is_float8(t->codebook_dtype) ? 1 : 2;
    case DCF_ROLE_ROW_COUNTS: return 4;
    case DCF_ROLE_GAPS: return t->index_bits <= 8 ? 1 : 2;
    case DCF_ROLE_VALUES:
        if (t->value_coding == DCF_CODEBOOK)
            return t->codebook_size <= 256 ? 1 : 2;
        return dcf_dtype_size((dcf_dtype)t->dtype);
    default: return 1;
    }
}

uint64_t dcf_element_bound(const dcf_tensor *t, int role)
{
    switch (role) {
    case DCF_ROLE_ROW_COUNTS: return t->cols + 1;
    case DCF_ROLE_GAPS: return (uint64_t)1 << t->index_bits;
    case DCF_ROLE_VALUES:
        if (t->value_coding == DCF_CODEBOOK)
            return t->codebook_size;
        return t->dtype == DCF_BOOL ? 2 : 0;
    case DCF_ROLE_PLANE: return 256;
    default: return 0;
    }
}

dcf_error dcf_plain_decode(const dcf_stream_ctx *sc, const uint8_t *payload, uint64_t length, uint64_t count,
                           size_t esize, uint8_t *out)
{
    if (count > UINT64_MAX / esize || length != count * esize)
        return dcf_fail(sc->err, DCF_ERR_COUNT_MISMATCH, "%s: PLAIN stream of %llu elements of %u bytes has %llu bytes",
                        sc->what, (unsigned long long)count, (unsigned)esize, (unsigned long long)length);
    memcpy(out, payload, (size_t)length);
    dcf_elements_to_host(out, count, esize);
    return DCF_OK;
}

void dcf_elements_to_host(uint8_t *out, uint64_t count, size_t esize)
{
    uint64_t i;
    if (!DCF_BIG_ENDIAN || esize < 2)
        return;
    for (i = 0; i < count; i++) {
        uint8_t *p = out + i * esize;
        size_t a = 0, b = esize - 1;
        while (a < b) {
            uint8_t x = p[a];
            p[a++] = p[b];
            p[b--] = x;
        }
    }
}

/* The largest of `count` host-order elements of `esize` bytes, and where it first is. */
static uint64_t max_element(const uint8_t *p, uint64_t count, size_t esize)
{
    uint64_t i, m = 0;
    switch (esize) {
    case 1:
        for (i = 0; i < count; i++)
            m = p[i] > m ? p[i] : m;
        break;
    case 2:
        for (i = 0; i < count; i++) {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            m = v > m ? v : m;
        }
        break;
    case 4:
        for (i = 0; i < count; i++) {
            uint32_t v;
            memcpy(&v, p + 4 * i, 4);
            m = v > m ? v : m;
        }
        break;
    default:
        for (i = 0; i < count; i++) {
            uint64_t v;
            memcpy(&v, p + 8 * i, 8);
            m = v > m ? v : m;
        }
        break;
    }
    return m;
}

static const char *const ROLE_TITLES[5] = {"codebook", "values", "row_counts", "gaps", "plane"};

dcf_error dcf_decode_stream(const dcf_ctx *ctx, const dcf_tensor *t, const dcf_stream *s, int role, uint8_t *out,
                            dcf_error_info *err)
{
    return dcf_decode_stream_map(ctx, t, s, role, NULL, 0, out, err);
}

dcf_error dcf_decode_stream_map(const dcf_ctx *ctx, const dcf_tensor *t, const dcf_stream *s, int role,
                                const uint8_t *map, size_t out_es, uint8_t *out, dcf_error_info *err)
{
    const uint8_t *payload = ctx->data + s->offset;
    size_t esize = dcf_element_size_of(t, role);
    uint64_t bound = dcf_element_bound(t, role);
    char q[DCF_QUOTED_SIZE], what[DCF_QUOTED_SIZE + 32];
    dcf_stream_ctx sc;
    dcf_error e;

    dcf_quote(q, t->name, t->name_length);
    /* "'name': values stream" */
    memcpy(what, q, strlen(q));
    {
        size_t n = strlen(q);
        const char *r = ROLE_TITLES[role];
        what[n++] = ':';
        what[n++] = ' ';
        memcpy(what + n, r, strlen(r));
        n += strlen(r);
        memcpy(what + n, " stream", 8);
    }
    if (!ctx->options.skip_checksums && dcf_crc32(payload, (size_t)s->length) != s->crc32)
        return dcf_fail(err, DCF_ERR_STREAM_CHECKSUM, "%s checksum mismatch", what);
    if (s->count == 0)
        return DCF_OK;
    sc.ctx = ctx;
    sc.err = err;
    sc.what = what;
    switch (s->codec) {
    case DCF_CODEC_PLAIN: e = dcf_plain_decode(&sc, payload, s->length, s->count, esize, out); break;
    case DCF_CODEC_BITPACK: e = dcf_bitpack_decode(&sc, payload, s->length, s->count, esize, s->param, out); break;
    case DCF_CODEC_HUFFMAN:
        e = map == NULL ? dcf_huffman_decode(&sc, payload, s->length, s->count, esize, bound, out)
                        : dcf_huffman_decode_map(&sc, payload, s->length, s->count, esize, bound, map, out_es, out);
        break;
    case DCF_CODEC_ZSTD: e = dcf_zstd_decode(&sc, payload, s->length, s->count, esize, out); break;
    case DCF_CODEC_BYTEPLANES: e = dcf_byteplanes_decode(&sc, payload, s->length, s->count, esize, out); break;
    default: e = dcf_fail(err, DCF_ERR_BAD_ENUM, "%s: unknown codec %u", what, s->codec); break;
    }
    if (e != DCF_OK)
        return e;
    if (map != NULL && s->codec != DCF_CODEC_HUFFMAN)
        return dcf_fail(err, DCF_ERR_BAD_ARGUMENT, "%s: internal: a symbol map for a %s stream", what,
                        s->codec == DCF_CODEC_PLAIN ? "PLAIN" : "non-Huffman");
    if (bound != 0 && s->codec != DCF_CODEC_HUFFMAN) {
        uint64_t m = max_element(out, s->count, esize);
        if (m >= bound)
            return dcf_fail(err, DCF_ERR_VALUE_BOUND, "%s: element %llu exceeds its bound %llu", what,
                            (unsigned long long)m, (unsigned long long)(bound - 1));
    }
    return DCF_OK;
}
