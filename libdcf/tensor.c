/* Tensor assembly (spec 6, 7): the codebook converted to the output type, DENSE chunks (values
 * straight into the output, or symbols looked up in the codebook), CSR chunks (row counts, gaps
 * and values scattered into zeroed rows), conversion to float32, and the decode API. */
#include "dcf_internal.h"

/* Scratch a Huffman stream allocates inside its decoder: its code lengths and lookup table. */
#define HUFFMAN_SCRATCH ((uint64_t)65536 + 8 * (2048 + 65536))

static int is_float(unsigned dtype)
{
    return dtype == DCF_F32 || dtype == DCF_F16 || dtype == DCF_BF16 || dtype == DCF_F64 || dcf_is_float8(dtype);
}

static dcf_error get_tensor(const dcf_ctx *ctx, size_t i, const dcf_tensor **t, dcf_error_info *err)
{
    if (ctx == NULL || ctx->opened != 1)
        return dcf_fail(err, DCF_ERR_BAD_ARGUMENT, "no file is open in this context");
    *t = dcf_entry_of(ctx, i, NULL);
    if (*t == NULL)
        return dcf_fail(err, DCF_ERR_BAD_ARGUMENT, "tensor index %lu out of range (%lu tensors)", (unsigned long)i,
                        (unsigned long)(ctx->tensor_count + ctx->alias_count));
    return DCF_OK;
}

/* The output element size for out_type, and whether values are converted to float32. */
static dcf_error out_type_of(const dcf_tensor *t, int out_type, size_t *out_es, int *convert, dcf_error_info *err)
{
    if (out_type == DCF_OUT_NATIVE || out_type == (int)t->dtype) {
        *out_es = dcf_dtype_size((dcf_dtype)t->dtype);
        *convert = 0;
        return DCF_OK;
    }
    if (out_type == DCF_OUT_F32 && is_float(t->dtype)) {
        *out_es = 4;
        *convert = 1;
        return DCF_OK;
    }
    {
        char q[DCF_QUOTED_SIZE];
        dcf_quote(q, t->name, t->name_length);
        if (out_type == DCF_OUT_F32)
            return dcf_fail(err, DCF_ERR_OUT_TYPE, "%s is %s: only floating tensors convert to F32", q,
                            dcf_dtype_name((dcf_dtype)t->dtype));
        return dcf_fail(err, DCF_ERR_OUT_TYPE, "%s: output type %d is neither its dtype %s nor F32", q, out_type,
                        dcf_dtype_name((dcf_dtype)t->dtype));
    }
}

static dcf_error check_tensor_bytes(const dcf_ctx *ctx, const dcf_tensor *t, dcf_error_info *err)
{
    uint64_t size = t->numel * dcf_dtype_size((dcf_dtype)t->dtype); /* numel <= 2^40 */
    if (size > ctx->options.max_tensor_bytes) {
        char q[DCF_QUOTED_SIZE];
        dcf_quote(q, t->name, t->name_length);
        return dcf_fail(err, DCF_ERR_LIMIT_TENSOR_BYTES,
                        "%s decodes to %llu bytes, over this reader's limit of %llu (max_tensor_bytes)", q,
                        (unsigned long long)size, (unsigned long long)ctx->options.max_tensor_bytes);
    }
    return DCF_OK;
}

/* A value of the tensor's dtype (bits) as float32 bits. */
static uint32_t to_f32(unsigned dtype, uint64_t bits)
{
    switch (dtype) {
    case DCF_F16: return dcf_f16_to_f32((uint16_t)bits);
    case DCF_BF16: return dcf_bf16_to_f32((uint16_t)bits);
    case DCF_F64: return dcf_f64_to_f32(bits);
    case DCF_F8_E4M3: return dcf_f8e4m3_to_f32((uint8_t)bits);
    case DCF_F8_E5M2: return dcf_f8e5m2_to_f32((uint8_t)bits);
    default: return (uint32_t)bits;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* scratch accounting */

static uint64_t stream_internal(const dcf_stream *s, size_t esize)
{
    if (s->codec == DCF_CODEC_HUFFMAN)
        return HUFFMAN_SCRATCH;
    if (s->codec == DCF_CODEC_BYTEPLANES)
        return s->count * esize + HUFFMAN_SCRATCH;
    return 0;
}

static uint64_t codebook_scratch(const dcf_tensor *t, size_t out_es)
{
    if (t->value_coding != DCF_CODEBOOK)
        return 0;
    return (uint64_t)t->codebook_size * (dcf_element_size_of(t, DCF_ROLE_CODEBOOK) + out_es) + HUFFMAN_SCRATCH;
}

/* Scratch of one chunk, beyond the codebook table. */
static uint64_t chunk_scratch(const dcf_tensor *t, const dcf_chunk *c, int convert)
{
    size_t dsize = dcf_dtype_size((dcf_dtype)t->dtype);
    if (t->layout == DCF_DENSE) {
        const dcf_stream *v = &c->streams[0];
        size_t vs = dcf_element_size_of(t, DCF_ROLE_VALUES);
        uint64_t own = 0;
        if (t->value_coding == DCF_CODEBOOK && !(v->codec == DCF_CODEC_HUFFMAN && dcf_dtype_size((dcf_dtype)t->dtype) <= 4))
            own = c->extent * vs;
        else if (convert)
            own = c->extent * dsize;
        return own + stream_internal(v, vs);
    } else {
        size_t gs = dcf_element_size_of(t, DCF_ROLE_GAPS), vs = dcf_element_size_of(t, DCF_ROLE_VALUES);
        uint64_t entries = c->streams[1].count, own = 4 * c->extent + entries * (gs + vs), inner = 0, x;
        x = stream_internal(&c->streams[0], 4);
        inner = x > inner ? x : inner;
        x = stream_internal(&c->streams[1], gs);
        inner = x > inner ? x : inner;
        x = stream_internal(&c->streams[2], vs);
        inner = x > inner ? x : inner;
        return own + inner;
    }
}

static dcf_error check_scratch(const dcf_ctx *ctx, const dcf_tensor *t, uint64_t need, dcf_error_info *err)
{
    if (need > ctx->options.max_scratch_bytes || need > (uint64_t)SIZE_MAX) {
        char q[DCF_QUOTED_SIZE];
        dcf_quote(q, t->name, t->name_length);
        return dcf_fail(err, DCF_ERR_LIMIT_SCRATCH,
                        "%s: decoding a chunk needs %llu bytes of scratch, over this reader's limit of %llu "
                        "(max_scratch_bytes)", q, (unsigned long long)need,
                        (unsigned long long)ctx->options.max_scratch_bytes);
    }
    return DCF_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* the codebook: k values converted to the output type (spec 7.2) */

static dcf_error load_codebook(const dcf_ctx *ctx, const dcf_tensor *t, size_t out_es, int convert, uint8_t **table,
                               dcf_error_info *err)
{
    uint32_t k = t->codebook_size, s;
    size_t cs = dcf_element_size_of(t, DCF_ROLE_CODEBOOK);
    uint8_t *raw = (uint8_t *)dcf_alloc(ctx, (size_t)k * cs);
    uint8_t *out = (uint8_t *)dcf_alloc(ctx, (size_t)k * out_es);
    dcf_error e;
    if (raw == NULL || out == NULL) {
        dcf_free(ctx, raw);
        dcf_free(ctx, out);
        return dcf_fail(err, DCF_ERR_NO_MEMORY, "out of memory for a codebook");
    }
    e = dcf_decode_stream(ctx, t, &t->codebook, DCF_ROLE_CODEBOOK, raw, err);
    if (e != DCF_OK) {
        dcf_free(ctx, raw);
        dcf_free(ctx, out);
        return e;
    }
    for (s = 0; s < k; s++) {
        uint64_t v; /* the value in the tensor's dtype */
        if (dcf_is_float8(t->codebook_dtype)) {
            v = raw[s]; /* a float8 codebook is of the tensor's own dtype (spec 4.2): copied */
        } else if (t->codebook_dtype == DCF_F32) {
            uint32_t f = (uint32_t)dcf_load(raw + 4 * (size_t)s, 4);
            switch (t->dtype) {
            case DCF_F16: v = dcf_f32_to_f16(f); break;
            case DCF_BF16: v = dcf_f32_to_bf16(f); break;
            case DCF_F64: v = dcf_f32_to_f64(f); break;
            default: v = f; break;
            }
        } else {
            uint16_t h = (uint16_t)dcf_load(raw + 2 * (size_t)s, 2);
            switch (t->dtype) {
            case DCF_F32: v = dcf_f16_to_f32(h); break;
            case DCF_BF16: v = dcf_f16_to_bf16(h); break;
            case DCF_F64: v = dcf_f16_to_f64(h); break;
            default: v = h; break;
            }
        }
        if (convert)
            v = to_f32(t->dtype, v);
        dcf_store(out + (size_t)s * out_es, out_es, v);
    }
    dcf_free(ctx, raw);
    *table = out;
    return DCF_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* chunks */

#define DCF_LOOKUP(S, O)                                                                         \
    do {                                                                                         \
        uint64_t i_;                                                                             \
        for (i_ = 0; i_ < n; i_++) {                                                             \
            S s_;                                                                                \
            O v_;                                                                                \
            memcpy(&s_, sym + i_ * sizeof(S), sizeof(S));                                        \
            memcpy(&v_, table + (size_t)s_ * sizeof(O), sizeof(O));                              \
            memcpy(out + i_ * sizeof(O), &v_, sizeof(O));                                        \
        }                                                                                        \
    } while (0)

static void lookup(const uint8_t *sym, size_t ss, const uint8_t *table, size_t out_es, uint64_t n, uint8_t *out)
{
    if (ss == 1) {
        if (out_es == 1) DCF_LOOKUP(uint8_t, uint8_t);
        else if (out_es == 2) DCF_LOOKUP(uint8_t, uint16_t);
        else if (out_es == 4) DCF_LOOKUP(uint8_t, uint32_t);
        else DCF_LOOKUP(uint8_t, uint64_t);
    } else {
        if (out_es == 1) DCF_LOOKUP(uint16_t, uint8_t);
        else if (out_es == 2) DCF_LOOKUP(uint16_t, uint16_t);
        else if (out_es == 4) DCF_LOOKUP(uint16_t, uint32_t);
        else DCF_LOOKUP(uint16_t, uint64_t);
    }
}

/* CSR scatter of codebook symbols: G gap type, S symbol type, O output type. Returns the row of a
 * bad position + 1, or 0. */
#define DCF_SCATTER(name, G, S, O)                                                               \
    static uint64_t name(const uint32_t *counts, uint64_t rows, uint64_t cols, const uint8_t *gaps, \
                         const uint8_t *syms, const uint8_t *table, uint8_t *out)                 \
    {                                                                                            \
        uint64_t r, e = 0;                                                                       \
        for (r = 0; r < rows; r++) {                                                             \
            uint8_t *row = out + r * cols * sizeof(O);                                           \
            uint64_t next = 0, k, n = counts[r];                                                 \
            for (k = 0; k < n; k++, e++) {                                                       \
                G g;                                                                             \
                S s;                                                                             \
                O v;                                                                             \
                uint64_t col;                                                                    \
                memcpy(&g, gaps + e * sizeof(G), sizeof(G));                                     \
                memcpy(&s, syms + e * sizeof(S), sizeof(S));                                     \
                col = next + g;                                                                  \
                if (col >= cols)                                                                 \
                    return r + 1;                                                                \
                memcpy(&v, table + (size_t)s * sizeof(O), sizeof(O));                            \
                memcpy(row + col * sizeof(O), &v, sizeof(O));                                    \
                next = col + 1;                                                                  \
            }                                                                                    \
        }                                                                                        \
        return 0;                                                                                \
    }

DCF_SCATTER(scatter_8_8_32, uint8_t, uint8_t, uint32_t)
DCF_SCATTER(scatter_8_16_32, uint8_t, uint16_t, uint32_t)
DCF_SCATTER(scatter_16_8_32, uint16_t, uint8_t, uint32_t)
DCF_SCATTER(scatter_16_16_32, uint16_t, uint16_t, uint32_t)
DCF_SCATTER(scatter_8_8_16, uint8_t, uint8_t, uint16_t)
DCF_SCATTER(scatter_8_16_16, uint8_t, uint16_t, uint16_t)
DCF_SCATTER(scatter_16_8_16, uint16_t, uint8_t, uint16_t)
DCF_SCATTER(scatter_16_16_16, uint16_t, uint16_t, uint16_t)

/* Any combination, values given as stored bits of `vs` bytes: RAW values (converted to float32
 * when `convert`) or codebook symbols looked up in `table` (of `out_es`-byte entries). */
static uint64_t scatter_generic(const dcf_tensor *t, const uint32_t *counts, uint64_t rows, uint64_t cols,
                                const uint8_t *gaps, size_t gs, const uint8_t *vals, size_t vs, const uint8_t *table,
                                int convert, size_t out_es, uint8_t *out)
{
    uint64_t r, e = 0;
    for (r = 0; r < rows; r++) {
        uint8_t *row = out + r * cols * out_es;
        uint64_t next = 0, k, n = counts[r];
        for (k = 0; k < n; k++, e++) {
            uint64_t g = dcf_load(gaps + e * gs, gs), v = dcf_load(vals + e * vs, vs), col = next + g;
            if (col >= cols)
                return r + 1;
            if (table != NULL)
                v = dcf_load(table + (size_t)v * out_es, out_es);
            else if (convert)
                v = to_f32(t->dtype, v);
            dcf_store(row + col * out_es, out_es, v);
            next = col + 1;
        }
    }
    return 0;
}

static void convert_to_f32(unsigned dtype, const uint8_t *src, uint64_t n, uint8_t *out)
{
    size_t dsize = dcf_dtype_size((dcf_dtype)dtype);
    uint64_t i;
    for (i = 0; i < n; i++) {
        uint32_t v = to_f32(dtype, dcf_load(src + i * dsize, dsize));
        memcpy(out + 4 * i, &v, 4);
    }
}

/* Decode chunk c into `out` (the chunk's elements, out_es bytes each); `table` is the converted
 * codebook of a CODEBOOK tensor. */
static dcf_error decode_chunk(const dcf_ctx *ctx, const dcf_tensor *t, const dcf_chunk *c, const uint8_t *table,
                              size_t out_es, int convert, uint8_t *out, dcf_error_info *err)
{
    dcf_error e;
    uint64_t need = chunk_scratch(t, c, convert) + codebook_scratch(t, out_es);
    e = check_scratch(ctx, t, need, err);
    if (e != DCF_OK)
        return e;
    if (t->layout == DCF_DENSE) {
        const dcf_stream *v = &c->streams[0];
        size_t vs = dcf_element_size_of(t, DCF_ROLE_VALUES);
        uint8_t *buf;
        if (t->value_coding == DCF_RAW && !convert)
            return dcf_decode_stream(ctx, t, v, DCF_ROLE_VALUES, out, err);
        if (t->value_coding == DCF_CODEBOOK && v->codec == DCF_CODEC_HUFFMAN && out_es <= 4)
            return dcf_decode_stream_map(ctx, t, v, DCF_ROLE_VALUES, table, out_es, out, err);
        buf = (uint8_t *)dcf_alloc(ctx, (size_t)(c->extent * vs));
        if (buf == NULL)
            return dcf_fail(err, DCF_ERR_NO_MEMORY, "out of memory for a chunk's values");
        e = dcf_decode_stream(ctx, t, v, DCF_ROLE_VALUES, buf, err);
        if (e == DCF_OK) {
            if (t->value_coding == DCF_CODEBOOK)
                lookup(buf, vs, table, out_es, c->extent, out);
            else
                convert_to_f32(t->dtype, buf, c->extent, out);
        }
        dcf_free(ctx, buf);
        return e;
    } else {
        size_t gs = dcf_element_size_of(t, DCF_ROLE_GAPS), vs = dcf_element_size_of(t, DCF_ROLE_VALUES);
        uint64_t entries = c->streams[1].count, sum = 0, r, bad;
        uint32_t *counts = (uint32_t *)dcf_alloc(ctx, (size_t)(4 * c->extent));
        uint8_t *gaps = NULL, *vals = NULL;
        char q[DCF_QUOTED_SIZE];
        if (counts == NULL)
            return dcf_fail(err, DCF_ERR_NO_MEMORY, "out of memory for a chunk's row counts");
        e = dcf_decode_stream(ctx, t, &c->streams[0], DCF_ROLE_ROW_COUNTS, (uint8_t *)counts, err);
        if (e != DCF_OK)
            goto done;
        for (r = 0; r < c->extent; r++)
            sum += counts[r];
        if (sum != entries) {
            dcf_quote(q, t->name, t->name_length);
            e = dcf_fail(err, DCF_ERR_COUNT_MISMATCH, "%s: row counts add up to %llu, but the chunk has %llu entries", q,
                         (unsigned long long)sum, (unsigned long long)entries);
            goto done;
        }
        if (entries) { /* none: the chunk's rows are all zero */
            gaps = (uint8_t *)dcf_alloc(ctx, (size_t)(entries * gs));
            vals = (uint8_t *)dcf_alloc(ctx, (size_t)(entries * vs));
        }
        if (entries && (gaps == NULL || vals == NULL)) {
            e = dcf_fail(err, DCF_ERR_NO_MEMORY, "out of memory for a chunk's entries");
            goto done;
        }
        e = dcf_decode_stream(ctx, t, &c->streams[1], DCF_ROLE_GAPS, gaps, err);
        if (e == DCF_OK)
            e = dcf_decode_stream(ctx, t, &c->streams[2], DCF_ROLE_VALUES, vals, err);
        if (e != DCF_OK)
            goto done;
        memset(out, 0, (size_t)(c->extent * t->cols * out_es));
        if (t->value_coding == DCF_CODEBOOK && out_es == 4) {
            bad = gs == 1 ? (vs == 1 ? scatter_8_8_32 : scatter_8_16_32)(counts, c->extent, t->cols, gaps, vals, table, out)
                          : (vs == 1 ? scatter_16_8_32 : scatter_16_16_32)(counts, c->extent, t->cols, gaps, vals, table, out);
        } else if (t->value_coding == DCF_CODEBOOK && out_es == 2) {
            bad = gs == 1 ? (vs == 1 ? scatter_8_8_16 : scatter_8_16_16)(counts, c->extent, t->cols, gaps, vals, table, out)
                          : (vs == 1 ? scatter_16_8_16 : scatter_16_16_16)(counts, c->extent, t->cols, gaps, vals, table, out);
        } else {
            bad = scatter_generic(t, counts, c->extent, t->cols, gaps, gs, vals, vs,
                                  t->value_coding == DCF_CODEBOOK ? table : NULL, convert, out_es, out);
        }
        if (bad) {
            dcf_quote(q, t->name, t->name_length);
            e = dcf_fail(err, DCF_ERR_CSR_POSITION, "%s: CSR row %llu: an entry lies at a column >= %llu", q,
                         (unsigned long long)(c->start + bad - 1), (unsigned long long)t->cols);
        }
    done:
        dcf_free(ctx, counts);
        dcf_free(ctx, gaps);
        dcf_free(ctx, vals);
        return e;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* the API */

dcf_error dcf_decoded_size(const dcf_ctx *ctx, size_t i, int out_type, uint64_t *bytes, dcf_error_info *err)
{
    const dcf_tensor *t = NULL;
    size_t out_es = 0;
    int convert = 0;
    dcf_error e = get_tensor(ctx, i, &t, err);
    if (e == DCF_OK)
        e = out_type_of(t, out_type, &out_es, &convert, err);
    if (e == DCF_OK)
        e = check_tensor_bytes(ctx, t, err);
    if (e != DCF_OK)
        return e;
    if (bytes == NULL)
        return dcf_fail(err, DCF_ERR_BAD_ARGUMENT, "dcf_decoded_size: NULL bytes");
    *bytes = t->numel * out_es;
    return DCF_OK;
}

dcf_error dcf_scratch_size(const dcf_ctx *ctx, size_t i, int out_type, uint64_t *bytes)
{
    const dcf_tensor *t = NULL;
    size_t out_es = 0;
    int convert = 0;
    uint32_t c;
    uint64_t most = 0;
    dcf_error e = get_tensor(ctx, i, &t, NULL);
    if (e == DCF_OK)
        e = out_type_of(t, out_type, &out_es, &convert, NULL);
    if (e != DCF_OK)
        return e;
    if (bytes == NULL)
        return DCF_ERR_BAD_ARGUMENT;
    for (c = 0; c < t->chunk_count; c++) {
        uint64_t x = chunk_scratch(t, &t->chunks[c], convert);
        most = x > most ? x : most;
    }
    *bytes = most + codebook_scratch(t, out_es);
    return DCF_OK;
}

static uint64_t chunk_elements(const dcf_tensor *t, const dcf_chunk *c)
{
    return t->layout == DCF_CSR ? c->extent * t->cols : c->extent;
}

dcf_error dcf_decode_tensor(const dcf_ctx *ctx, size_t i, void *out, size_t out_size, int out_type,
                            dcf_error_info *err)
{
    const dcf_tensor *t = NULL;
    size_t out_es = 0;
    int convert = 0;
    uint8_t *table = NULL;
    uint32_t c;
    uint64_t bytes;
    dcf_error e = dcf_decoded_size(ctx, i, out_type, &bytes, err);
    if (e != DCF_OK)
        return e;
    t = dcf_entry_of(ctx, i, NULL);
    out_type_of(t, out_type, &out_es, &convert, NULL);
    if (out_size < bytes)
        return dcf_fail(err, DCF_ERR_BUFFER_TOO_SMALL, "output buffer of %lu bytes, the tensor needs %llu",
                        (unsigned long)out_size, (unsigned long long)bytes);
    if (out == NULL && bytes != 0)
        return dcf_fail(err, DCF_ERR_BAD_ARGUMENT, "dcf_decode_tensor: NULL output buffer");
    if (t->value_coding == DCF_CODEBOOK) {
        e = check_scratch(ctx, t, codebook_scratch(t, out_es), err);
        if (e == DCF_OK)
            e = load_codebook(ctx, t, out_es, convert, &table, err);
        if (e != DCF_OK)
            return e;
    }
    for (c = 0; c < t->chunk_count && e == DCF_OK; c++) {
        const dcf_chunk *ch = &t->chunks[c];
        uint64_t first = t->layout == DCF_CSR ? ch->start * t->cols : ch->start;
        e = decode_chunk(ctx, t, ch, table, out_es, convert, (uint8_t *)out + first * out_es, err);
    }
    dcf_free(ctx, table);
    return e;
}

dcf_error dcf_get_chunk_info(const dcf_ctx *ctx, size_t i, size_t c, dcf_chunk_info *info)
{
    const dcf_tensor *t = NULL;
    const dcf_chunk *ch;
    unsigned r;
    dcf_error e = get_tensor(ctx, i, &t, NULL);
    if (e != DCF_OK)
        return e;
    if (c >= t->chunk_count || info == NULL)
        return DCF_ERR_BAD_ARGUMENT;
    ch = &t->chunks[c];
    memset(info, 0, sizeof *info);
    info->first_row = ch->start;
    info->row_count = ch->extent;
    info->first_element = t->layout == DCF_CSR ? ch->start * t->cols : ch->start;
    info->element_count = chunk_elements(t, ch);
    info->entries = t->layout == DCF_CSR ? ch->streams[1].count : ch->extent;
    for (r = 0; r < (t->layout == DCF_CSR ? 3u : 1u); r++)
        info->stored_bytes += ch->streams[r].length;
    return DCF_OK;
}

dcf_error dcf_decode_chunk(const dcf_ctx *ctx, size_t i, size_t c, void *out, size_t out_size, int out_type,
                           dcf_error_info *err)
{
    const dcf_tensor *t = NULL;
    size_t out_es = 0;
    int convert = 0;
    uint8_t *table = NULL;
    uint64_t bytes;
    dcf_error e = get_tensor(ctx, i, &t, err);
    if (e == DCF_OK)
        e = out_type_of(t, out_type, &out_es, &convert, err);
    if (e != DCF_OK)
        return e;
    if (c >= t->chunk_count)
        return dcf_fail(err, DCF_ERR_BAD_ARGUMENT, "chunk index %lu out of range (%lu chunks)", (unsigned long)c,
                        (unsigned long)t->chunk_count);
    bytes = chunk_elements(t, &t->chunks[c]) * out_es;
    if (out_size < bytes)
        return dcf_fail(err, DCF_ERR_BUFFER_TOO_SMALL, "output buffer of %lu bytes, the chunk needs %llu",
                        (unsigned long)out_size, (unsigned long long)bytes);
    if (out == NULL)
        return dcf_fail(err, DCF_ERR_BAD_ARGUMENT, "dcf_decode_chunk: NULL output buffer");
    if (t->value_coding == DCF_CODEBOOK) {
        e = check_scratch(ctx, t, codebook_scratch(t, out_es), err);
        if (e == DCF_OK)
            e = load_codebook(ctx, t, out_es, convert, &table, err);
        if (e != DCF_OK)
            return e;
    }
    e = decode_chunk(ctx, t, &t->chunks[c], table, out_es, convert, (uint8_t *)out, err);
    dcf_free(ctx, table);
    return e;
}
