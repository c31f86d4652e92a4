/* The container (spec 3-5): preamble, trailer, index parsing and stream placement; the context,
 * file opening and the query functions. Every check is made in the order the Python reader
 * (dcformat/index_reader.py) makes it, before anything depending on the field is allocated. */
#if !defined(_WIN32) && !defined(DCF_NO_MMAP)
#define _POSIX_C_SOURCE 200809L
#define DCF_USE_MMAP 1
#endif

#include <stdio.h>
#include <stdlib.h>

#include "dcf_internal.h"

#if defined(DCF_USE_MMAP)
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

static const uint8_t MAGIC[4] = {0x89, 'D', 'C', 'F'};

/* ------------------------------------------------------------------------------------------ */
/* options, memory, context */

void dcf_options_init(dcf_options *o)
{
    if (o == NULL)
        return;
    memset(o, 0, sizeof *o);
    o->max_index_length = DCF_MAX_INDEX_LENGTH;
    o->max_tensors = DCF_MAX_TENSORS;
    o->max_tensor_bytes = DCF_DEFAULT_MAX_TENSOR_BYTES;
    o->max_scratch_bytes = DCF_DEFAULT_MAX_SCRATCH_BYTES;
    o->max_attachment_bytes = DCF_DEFAULT_MAX_ATTACHMENT_BYTES;
}

static void *default_malloc(void *user, size_t size)
{
    (void)user;
    return malloc(size);
}

static void default_free(void *user, void *ptr)
{
    (void)user;
    free(ptr);
}

/* What dcf_alloc returns for a request of 0 bytes (an index without metadata, a stream without
 * elements): a valid non-NULL address that costs nothing, so the hooks are never asked
 * for a byte that dcf.h's bounds (dcf_scratch_size) do not count. Never written (0 bytes), never
 * passed to free_fn; read-only, so no state is shared between contexts. */
static const unsigned char no_bytes[1] = {0};

void *dcf_alloc(const dcf_ctx *ctx, size_t size)
{
    if (size == 0)
        return (void *)no_bytes;
    return ctx->options.allocator.malloc_fn(ctx->options.allocator.user, size);
}

void dcf_free(const dcf_ctx *ctx, void *ptr)
{
    if (ptr != NULL && ptr != (const void *)no_bytes)
        ctx->options.allocator.free_fn(ctx->options.allocator.user, ptr);
}

dcf_ctx *dcf_ctx_new(const dcf_options *options)
{
    dcf_options o;
    dcf_ctx *ctx;
    if (options == NULL)
        dcf_options_init(&o);
    else
        o = *options;
    if ((o.allocator.malloc_fn == NULL) != (o.allocator.free_fn == NULL))
        return NULL;
    if (o.allocator.malloc_fn == NULL) {
        o.allocator.malloc_fn = default_malloc;
        o.allocator.free_fn = default_free;
        o.allocator.user = NULL;
    }
    if (o.max_index_length == 0 || o.max_index_length > DCF_MAX_INDEX_LENGTH)
        o.max_index_length = DCF_MAX_INDEX_LENGTH;
    if (o.max_tensors == 0 || o.max_tensors > DCF_MAX_TENSORS)
        o.max_tensors = DCF_MAX_TENSORS;
    if (o.max_tensor_bytes == 0)
        o.max_tensor_bytes = DCF_DEFAULT_MAX_TENSOR_BYTES;
    if (o.max_scratch_bytes == 0)
        o.max_scratch_bytes = DCF_DEFAULT_MAX_SCRATCH_BYTES;
    if (o.max_attachment_bytes == 0)
        o.max_attachment_bytes = DCF_DEFAULT_MAX_ATTACHMENT_BYTES;
    ctx = (dcf_ctx *)o.allocator.malloc_fn(o.allocator.user, sizeof *ctx);
    if (ctx == NULL)
        return NULL;
    memset(ctx, 0, sizeof *ctx);
    ctx->options = o;
    return ctx;
}

static void release_index(dcf_ctx *ctx)
{
    size_t i;
    if (ctx->tensors != NULL) {
        for (i = 0; i < ctx->tensor_count; i++)
            dcf_free(ctx, ctx->tensors[i].chunks);
    }
    dcf_free(ctx, ctx->tensors);
    dcf_free(ctx, ctx->metadata);
    dcf_free(ctx, ctx->strings);
    dcf_free(ctx, ctx->name_table);
    dcf_free(ctx, ctx->aliases);
    dcf_free(ctx, ctx->alias_table);
    dcf_free(ctx, ctx->attachments);
    ctx->aliases = NULL;
    ctx->alias_table = NULL;
    ctx->attachments = NULL;
    ctx->alias_count = ctx->attachment_count = 0;
    ctx->tensors = NULL;
    ctx->metadata = NULL;
    ctx->strings = NULL;
    ctx->name_table = NULL;
    ctx->tensor_count = ctx->metadata_count = 0;
}

void dcf_ctx_free(dcf_ctx *ctx)
{
    if (ctx == NULL)
        return;
    release_index(ctx);
#if defined(DCF_USE_MMAP)
    if (ctx->mapping != NULL)
        munmap(ctx->mapping, ctx->mapping_size);
#endif
    dcf_free(ctx, ctx->owned);
    ctx->options.allocator.free_fn(ctx->options.allocator.user, ctx);
}

/* ------------------------------------------------------------------------------------------ */
/* UTF-8 (strict, as Python's bytes.decode("utf-8"): no overlongs, surrogates or > U+10FFFF) */

static int valid_utf8(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            if (n - i < 2 || (s[i + 1] & 0xC0) != 0x80)
                return 0;
            i += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            uint8_t lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
            if (n - i < 3 || s[i + 1] < lo || s[i + 1] > hi || (s[i + 2] & 0xC0) != 0x80)
                return 0;
            i += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            uint8_t lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
            if (n - i < 4 || s[i + 1] < lo || s[i + 1] > hi || (s[i + 2] & 0xC0) != 0x80
                || (s[i + 3] & 0xC0) != 0x80)
                return 0;
            i += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* index cursor */

typedef struct cursor {
    const uint8_t *p;
    size_t n, pos;
    dcf_error_info *err;
    char *strings; /* output blob */
    size_t strings_used;
} cursor;

static dcf_error take(cursor *c, size_t size, const char *what, const uint8_t **out)
{
    if (size > c->n - c->pos)
        return dcf_fail(c->err, DCF_ERR_TRUNCATED, "index ends inside %s", what);
    *out = c->p + c->pos;
    c->pos += size;
    return DCF_OK;
}

#define TAKE(c, size, what, ptr)                                                               \
    do {                                                                                       \
        dcf_error e_ = take((c), (size), (what), &(ptr));                                      \
        if (e_ != DCF_OK)                                                                      \
            return e_;                                                                         \
    } while (0)

/* A UTF-8 string of `size` bytes, copied NUL-terminated into the blob. */
static dcf_error text(cursor *c, size_t size, const char *what, const char *whose, const char **out)
{
    const uint8_t *raw = NULL;
    char *dst;
    TAKE(c, size, what, raw);
    if (!valid_utf8(raw, size))
        return dcf_fail(c->err, DCF_ERR_BAD_UTF8, "%s%s is not valid UTF-8", what, whose);
    dst = c->strings + c->strings_used;
    memcpy(dst, raw, size);
    dst[size] = '\0';
    c->strings_used += size + 1;
    *out = dst;
    return DCF_OK;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603u;
    size_t i;
    for (i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211u;
    }
    return h;
}

/* ------------------------------------------------------------------------------------------ */
/* stream descriptors and tensor entries */

static const uint64_t MAX_COUNT_PER_BYTE[5] = {1, 8, 8, DCF_MAX_ZSTD_EXPANSION, DCF_MAX_ZSTD_EXPANSION};
static const char *const CODEC_NAMES[5] = {"PLAIN", "BITPACK", "HUFFMAN", "ZSTD", "BYTEPLANES"};

const char *dcf_role_name(int role)
{
    switch (role) {
    case DCF_ROLE_CODEBOOK: return "codebook";
    case DCF_ROLE_VALUES: return "values";
    case DCF_ROLE_ROW_COUNTS: return "row_counts";
    case DCF_ROLE_GAPS: return "gaps";
    default: return "plane";
    }
}

static dcf_error parse_stream(cursor *c, int role, dcf_stream *s)
{
    const uint8_t *d = NULL;
    unsigned codec, param;
    TAKE(c, 24, "stream descriptor", d);
    codec = d[0];
    param = d[1];
    if (codec > DCF_CODEC_BYTEPLANES)
        return dcf_fail(c->err, DCF_ERR_BAD_ENUM, "%s stream codec has unknown value %u", dcf_role_name(role), codec);
    if (dcf_le16(d + 2) != 0)
        return dcf_fail(c->err, DCF_ERR_RESERVED, "reserved field of a %s stream descriptor is not zero",
                        dcf_role_name(role));
    s->codec = (uint8_t)codec;
    s->param = (uint8_t)param;
    s->crc32 = dcf_le32(d + 4);
    s->count = dcf_le64(d + 8);
    s->length = dcf_le64(d + 16);
    s->offset = 0;
    if (codec == DCF_CODEC_BITPACK) {
        if (param < 1 || param > DCF_MAX_BITPACK_WIDTH)
            return dcf_fail(c->err, DCF_ERR_BAD_CODEC_PARAM, "bit width %u outside 1..%d", param, DCF_MAX_BITPACK_WIDTH);
    } else if (param != 0) {
        return dcf_fail(c->err, DCF_ERR_BAD_CODEC_PARAM, "param of a %s stream must be zero", CODEC_NAMES[codec]);
    }
    if (s->count == 0 && (codec != DCF_CODEC_PLAIN || s->length != 0))
        return dcf_fail(c->err, DCF_ERR_BAD_FIELD, "an empty %s stream must be PLAIN with length 0", dcf_role_name(role));
    /* count > per_byte x length, without overflow */
    if (s->length < UINT64_MAX / MAX_COUNT_PER_BYTE[codec] && s->count > MAX_COUNT_PER_BYTE[codec] * s->length)
        return dcf_fail(c->err, DCF_ERR_COUNT_MISMATCH, "a %s %s stream of %llu bytes cannot hold %llu elements",
                        CODEC_NAMES[codec], dcf_role_name(role), (unsigned long long)s->length,
                        (unsigned long long)s->count);
    return DCF_OK;
}

static int is_float(unsigned dtype)
{
    return dtype == DCF_F32 || dtype == DCF_F16 || dtype == DCF_BF16 || dtype == DCF_F64 || dcf_is_float8(dtype);
}

/* The first minor version of a dtype or codebook dtype id (spec 3.3, 4.3): 2 for the float8 ones. */
static unsigned dtype_minor(unsigned dtype) { return dcf_is_float8(dtype) ? 2u : 0u; }

static dcf_error parse_tensor(dcf_ctx *ctx, cursor *c, dcf_tensor *t)
{
    const uint8_t *d = NULL;
    char q[DCF_QUOTED_SIZE];
    unsigned k, rank, roles;
    uint64_t numel = 1, nonzero = 1, start = 0;
    int nonzero_over = 0;
    uint32_t chunk_count, j;
    dcf_error e;
    size_t name_length;

    TAKE(c, 2, "tensor name length", d);
    name_length = dcf_le16(d);
    if (name_length < 1 || name_length > DCF_MAX_NAME_LENGTH)
        return dcf_fail(c->err, DCF_ERR_BAD_FIELD, "tensor name length %u outside 1..%u", (unsigned)name_length,
                        DCF_MAX_NAME_LENGTH);
    e = text(c, name_length, "tensor name", "", &t->name);
    if (e != DCF_OK)
        return e;
    t->name_length = name_length;
    dcf_quote(q, t->name, name_length);
    TAKE(c, 1, "dtype", d);
    t->dtype = d[0];
    if (t->dtype < DCF_F32 || t->dtype > DCF_F8_E5M2)
        return dcf_fail(c->err, DCF_ERR_BAD_ENUM, "dtype of %s has unknown value %u", q, t->dtype);
    if (dtype_minor(t->dtype) > ctx->version_minor) /* a value of a later version than the file's */
        return dcf_fail(c->err, DCF_ERR_BAD_ENUM,
                        "dtype of %s has value %u (%s), which needs format version 1.%u, but the file is version 1.%u",
                        q, t->dtype, dcf_dtype_name((dcf_dtype)t->dtype), dtype_minor(t->dtype), ctx->version_minor);
    TAKE(c, 1, "rank", d);
    rank = d[0];
    if (rank > DCF_MAX_RANK)
        return dcf_fail(c->err, DCF_ERR_LIMIT_RANK, "rank %u of %s exceeds %d", rank, q, DCF_MAX_RANK);
    t->rank = (uint8_t)rank;
    for (k = 0; k < rank; k++) {
        TAKE(c, 8, "shape", d);
        t->shape[k] = dcf_le64(d);
    }
    /* numel (spec 4.2): 0 if any dimension is 0, whatever the others; else the running product,
     * stopped as soon as it exceeds the limit. An empty tensor's non-zero dimensions must
     * multiply to at most MAX_EMPTY_SHAPE_PRODUCT (computed the same way). */
    for (k = 0; k < rank; k++)
        if (t->shape[k] == 0)
            numel = 0;
    for (k = 0; k < rank; k++) {
        uint64_t dim = t->shape[k];
        if (numel != 0) {
            if (dim > DCF_MAX_TENSOR_ELEMENTS / numel)
                return dcf_fail(c->err, DCF_ERR_LIMIT_ELEMENTS, "%s has more than %llu elements", q,
                                (unsigned long long)DCF_MAX_TENSOR_ELEMENTS);
            numel *= dim;
        } else if (dim != 0) {
            if (nonzero_over || dim > DCF_MAX_EMPTY_SHAPE_PRODUCT / nonzero)
                nonzero_over = 1;
            else
                nonzero *= dim;
        }
    }
    if (numel == 0 && nonzero_over)
        return dcf_fail(c->err, DCF_ERR_LIMIT_EMPTY_SHAPE,
                        "%s: empty tensor whose non-zero dimensions multiply past MAX_EMPTY_SHAPE_PRODUCT (%llu)", q,
                        (unsigned long long)DCF_MAX_EMPTY_SHAPE_PRODUCT);
    t->numel = numel;
    TAKE(c, 1, "layout", d);
    t->layout = d[0];
    if (t->layout > DCF_CSR)
        return dcf_fail(c->err, DCF_ERR_BAD_ENUM, "layout of %s has unknown value %u", q, t->layout);
    TAKE(c, 1, "value_coding", d);
    t->value_coding = d[0];
    if (t->value_coding > DCF_CODEBOOK)
        return dcf_fail(c->err, DCF_ERR_BAD_ENUM, "value coding of %s has unknown value %u", q, t->value_coding);
    TAKE(c, 1, "index_bits", d);
    t->index_bits = d[0];
    TAKE(c, 1, "codebook_dtype", d);
    t->codebook_dtype = d[0];
    TAKE(c, 4, "codebook_size", d);
    t->codebook_size = dcf_le32(d);
    TAKE(c, 4, "chunk_count", d);
    chunk_count = dcf_le32(d);

    if (t->layout == DCF_CSR) {
        if (rank < 2)
            return dcf_fail(c->err, DCF_ERR_BAD_FIELD, "%s: CSR needs rank >= 2, got rank %u", q, rank);
        if (t->index_bits < 1 || t->index_bits > DCF_MAX_INDEX_BITS)
            return dcf_fail(c->err, DCF_ERR_BAD_FIELD, "%s: index_bits %u outside 1..%d", q, t->index_bits,
                            DCF_MAX_INDEX_BITS);
    } else if (t->index_bits != 0) {
        return dcf_fail(c->err, DCF_ERR_BAD_FIELD, "%s: index_bits must be zero for a dense tensor", q);
    }
    if (t->value_coding == DCF_CODEBOOK) {
        if (!is_float(t->dtype))
            return dcf_fail(c->err, DCF_ERR_BAD_FIELD, "%s: codebook coding needs a float dtype, got %s", q,
                            dcf_dtype_name((dcf_dtype)t->dtype));
        if (t->codebook_dtype != DCF_F32 && t->codebook_dtype != DCF_F16 && !dcf_is_float8(t->codebook_dtype))
            return dcf_fail(c->err, DCF_ERR_BAD_ENUM, "codebook dtype of %s has unknown value %u", q, t->codebook_dtype);
        if (dtype_minor(t->codebook_dtype) > ctx->version_minor)
            return dcf_fail(c->err, DCF_ERR_BAD_ENUM,
                            "codebook dtype of %s has value %u (%s), which needs format version 1.%u, but the file "
                            "is version 1.%u", q, t->codebook_dtype, dcf_dtype_name((dcf_dtype)t->codebook_dtype),
                            dtype_minor(t->codebook_dtype), ctx->version_minor);
        /* spec 4.2: a float8 tensor's codebook is of its own dtype, and a float8 codebook is only its */
        if ((dcf_is_float8(t->dtype) || dcf_is_float8(t->codebook_dtype)) && t->codebook_dtype != t->dtype)
            return dcf_fail(c->err, DCF_ERR_BAD_FIELD, "%s: a %s tensor cannot have a %s codebook", q,
                            dcf_dtype_name((dcf_dtype)t->dtype), dcf_dtype_name((dcf_dtype)t->codebook_dtype));
        if (t->codebook_size < 1 || t->codebook_size > DCF_MAX_CODEBOOK_SIZE)
            return dcf_fail(c->err, DCF_ERR_LIMIT_CODEBOOK_SIZE, "%s: codebook size %lu outside 1..%u", q,
                            (unsigned long)t->codebook_size, DCF_MAX_CODEBOOK_SIZE);
    } else if (t->codebook_dtype != 0 || t->codebook_size != 0) {
        return dcf_fail(c->err, DCF_ERR_BAD_FIELD, "%s: codebook fields must be zero for raw values", q);
    }
    if (numel == 0) {
        if (t->layout != DCF_DENSE || t->value_coding != DCF_RAW || chunk_count != 0)
            return dcf_fail(c->err, DCF_ERR_BAD_FIELD, "%s: an empty tensor must be dense, raw, with no chunks", q);
    } else if (chunk_count == 0) {
        return dcf_fail(c->err, DCF_ERR_COUNT_MISMATCH, "%s has elements but no chunks", q);
    }
    if (t->value_coding == DCF_CODEBOOK) {
        e = parse_stream(c, DCF_ROLE_CODEBOOK, &t->codebook);
        if (e != DCF_OK)
            return e;
        if (t->codebook.count != t->codebook_size)
            return dcf_fail(c->err, DCF_ERR_COUNT_MISMATCH, "%s: codebook stream has %llu values, expected %lu", q,
                            (unsigned long long)t->codebook.count, (unsigned long)t->codebook_size);
    }
    if (t->layout == DCF_CSR) {
        t->rows = t->shape[0];
        t->cols = t->shape[0] ? numel / t->shape[0] : 0;
    } else {
        t->rows = numel;
        t->cols = 1;
    }
    roles = t->layout == DCF_CSR ? 3 : 1;
    /* every chunk entry takes at least 8 + 24 bytes per stream: refuse a count the index cannot
     * hold before allocating for it */
    if ((uint64_t)chunk_count * (8 + 24 * roles) > c->n - c->pos)
        return dcf_fail(c->err, DCF_ERR_TRUNCATED, "%s: index too short for %lu chunks", q, (unsigned long)chunk_count);
    t->chunk_count = chunk_count;
    if (chunk_count) {
        t->chunks = (dcf_chunk *)dcf_alloc(ctx, (size_t)chunk_count * sizeof(dcf_chunk));
        if (t->chunks == NULL)
            return dcf_fail(c->err, DCF_ERR_NO_MEMORY, "out of memory for the chunks of %s", q);
        memset(t->chunks, 0, (size_t)chunk_count * sizeof(dcf_chunk));
    }
    t->entries = t->layout == DCF_CSR ? 0 : numel;
    for (j = 0; j < chunk_count; j++) {
        dcf_chunk *ch = &t->chunks[j];
        uint64_t extent;
        unsigned r;
        TAKE(c, 8, "chunk extent", d);
        extent = dcf_le64(d);
        if (extent == 0)
            return dcf_fail(c->err, DCF_ERR_BAD_FIELD, "%s: chunk with zero extent", q);
        if (t->layout == DCF_CSR ? extent > DCF_MAX_CHUNK_ELEMENTS / t->cols : extent > DCF_MAX_CHUNK_ELEMENTS)
            return dcf_fail(c->err, DCF_ERR_LIMIT_CHUNK_ELEMENTS, "%s: chunk covers more than %llu elements", q,
                            (unsigned long long)DCF_MAX_CHUNK_ELEMENTS);
        if (extent > t->rows - start)
            return dcf_fail(c->err, DCF_ERR_COUNT_MISMATCH, "%s: chunk extents exceed %s (%llu)", q,
                            t->layout == DCF_CSR ? "rows" : "elements", (unsigned long long)t->rows);
        for (r = 0; r < roles; r++) {
            int role = t->layout == DCF_CSR ? DCF_ROLE_ROW_COUNTS + (int)r : DCF_ROLE_VALUES;
            if (t->layout == DCF_CSR && r == 2)
                role = DCF_ROLE_VALUES;
            e = parse_stream(c, role, &ch->streams[r]);
            if (e != DCF_OK)
                return e;
        }
        if (t->layout == DCF_DENSE && ch->streams[0].count != extent)
            return dcf_fail(c->err, DCF_ERR_COUNT_MISMATCH, "%s: values stream has %llu elements, chunk has %llu", q,
                            (unsigned long long)ch->streams[0].count, (unsigned long long)extent);
        if (t->layout == DCF_CSR) {
            if (ch->streams[0].count != extent)
                return dcf_fail(c->err, DCF_ERR_COUNT_MISMATCH, "%s: row count stream has %llu rows, chunk has %llu", q,
                                (unsigned long long)ch->streams[0].count, (unsigned long long)extent);
            if (ch->streams[1].count != ch->streams[2].count)
                return dcf_fail(c->err, DCF_ERR_COUNT_MISMATCH, "%s: %llu gaps but %llu values", q,
                                (unsigned long long)ch->streams[1].count, (unsigned long long)ch->streams[2].count);
            if (ch->streams[1].count > extent * t->cols) /* extent x cols <= 2^28: checked above */
                return dcf_fail(c->err, DCF_ERR_COUNT_MISMATCH, "%s: %llu entries in a chunk of %llu elements", q,
                                (unsigned long long)ch->streams[1].count, (unsigned long long)(extent * t->cols));
            t->entries += ch->streams[1].count;
        }
        ch->start = start;
        ch->extent = extent;
        start += extent;
    }
    if (numel != 0 && start != t->rows)
        return dcf_fail(c->err, DCF_ERR_COUNT_MISMATCH, "%s: chunk extents add up to %llu, expected %llu", q,
                        (unsigned long long)start, (unsigned long long)t->rows);
    return DCF_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* stream placement (spec 5) */

static dcf_error place_named(dcf_ctx *ctx, const char *what, const char *name, size_t name_length, dcf_stream *s,
                             uint64_t *position, dcf_error_info *err);

static dcf_error place(dcf_ctx *ctx, const dcf_tensor *t, dcf_stream *s, uint64_t *position, dcf_error_info *err)
{
    return place_named(ctx, "", t->name, t->name_length, s, position, err);
}

static dcf_error place_named(dcf_ctx *ctx, const char *what, const char *name, size_t name_length, dcf_stream *s,
                             uint64_t *position, dcf_error_info *err)
{
    uint64_t align = (uint64_t)1 << ctx->alignment_log2;
    uint64_t index_offset = ctx->index_offset;
    char q[DCF_QUOTED_SIZE];
    if (s->length) {
        uint64_t start = (*position + align - 1) / align * align; /* position <= file size: no overflow */
        uint64_t p;
        int bad = start > index_offset;
        for (p = *position; !bad && p < start; p++)
            bad = ctx->data[p] != 0;
        if (bad) {
            dcf_quote(q, name, name_length);
            return dcf_fail(err, DCF_ERR_OFFSET, "%s%s: padding before a stream is not zero", what, q);
        }
        *position = start;
    }
    if (s->length > index_offset - *position) {
        dcf_quote(q, name, name_length);
        return dcf_fail(err, DCF_ERR_OFFSET, "%s%s: a stream runs past the data section", what, q);
    }
    s->offset = *position;
    *position += s->length;
    return DCF_OK;
}

static dcf_error place_streams(dcf_ctx *ctx, dcf_error_info *err)
{
    uint64_t position = 16;
    size_t i;
    for (i = 0; i < ctx->tensor_count; i++) {
        dcf_tensor *t = &ctx->tensors[i];
        uint32_t j;
        unsigned r, roles = t->layout == DCF_CSR ? 3 : 1;
        dcf_error e;
        t->stored_bytes = 0;
        if (t->value_coding == DCF_CODEBOOK) {
            e = place(ctx, t, &t->codebook, &position, err);
            if (e != DCF_OK)
                return e;
            t->stored_bytes += t->codebook.length;
        }
        for (j = 0; j < t->chunk_count; j++) {
            for (r = 0; r < roles; r++) {
                e = place(ctx, t, &t->chunks[j].streams[r], &position, err);
                if (e != DCF_OK)
                    return e;
                t->stored_bytes += t->chunks[j].streams[r].length;
            }
        }
    }
    for (i = 0; i < ctx->attachment_count; i++) {
        dcf_attachment *a = &ctx->attachments[i];
        dcf_error e = place_named(ctx, "attachment ", a->name, a->name_length, &a->stream, &position, err);
        if (e != DCF_OK)
            return e;
    }
    if (position != ctx->index_offset)
        return dcf_fail(err, DCF_ERR_OFFSET, "data section has %llu bytes that belong to no stream",
                        (unsigned long long)(ctx->index_offset - position));
    return DCF_OK;
}


/* ------------------------------------------------------------------------------------------ */
/* extension records (version 1.1, spec 4.6) */

/* The path rules of spec 4.6.1 for a name `s` of n bytes of valid UTF-8 (checked before: the walk
 * steps by each lead byte's length). */
static const char *name_path_problem(const uint8_t *s, size_t n)
{
    size_t i = 0, start = 0;
    while (i < n) {
        uint32_t cp;
        uint8_t c = s[i];
        if (c < 0x80) {
            cp = c;
            i++;
        } else if (c < 0xE0) {
            cp = ((uint32_t)(c & 0x1F) << 6) | (s[i + 1] & 0x3F);
            i += 2;
        } else if (c < 0xF0) {
            cp = 0x800; /* no control character or separator up here */
            i += 3;
        } else {
            cp = 0x10000;
            i += 4;
        }
        if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))
            return "holds a control character";
        if (cp == '\\' || cp == ':')
            return "holds a backslash or a colon (a path separator or drive mark outside POSIX)";
    }
    if (s[0] == '/')
        return "is an absolute path (starts with '/')";
    for (i = 0; i <= n; i++) {
        if (i == n || s[i] == '/') {
            size_t len = i - start;
            if (len == 0)
                return "has an empty path component ('//' or a trailing '/')";
            if ((len == 1 && s[start] == '.') || (len == 2 && s[start] == '.' && s[start + 1] == '.'))
                return "has a '.' or '..' path component";
            start = i + 1;
        }
    }
    return NULL;
}

/* Why `name` (n bytes) is not an attachment name by the rules of spec 4.6.1, or NULL (dcf.h). */
const char *dcf_attachment_name_problem(const char *name, size_t n)
{
    const uint8_t *s = (const uint8_t *)name;
    if (name == NULL || n < 1 || n > DCF_MAX_NAME_LENGTH)
        return "must be 1 ... 4096 bytes of UTF-8";
    if (!valid_utf8(s, n))
        return "is not valid UTF-8";
    return name_path_problem(s, n);
}

static size_t table_size_for(size_t n)
{
    size_t size = 1;
    while (size < 2 * n)
        size <<= 1;
    return size;
}

static int find_entry_name(const dcf_ctx *ctx, const char *name, size_t n)
{
    size_t h;
    if (ctx->tensor_count == 0)
        return 0;
    for (h = (size_t)hash_bytes(name, n) & ctx->name_table_mask; ctx->name_table[h]; h = (h + 1) & ctx->name_table_mask) {
        const dcf_tensor *t = &ctx->tensors[ctx->name_table[h] - 1];
        if (t->name_length == n && memcmp(t->name, name, n) == 0)
            return 1;
    }
    return 0;
}

/* Copy `n` bytes of valid UTF-8 into the string blob, NUL-terminated. */
static const char *keep(cursor *c, const uint8_t *raw, size_t n)
{
    char *dst = c->strings + c->strings_used;
    memcpy(dst, raw, n);
    dst[n] = '\0';
    c->strings_used += n + 1;
    return dst;
}

static dcf_error parse_attachment(dcf_ctx *ctx, cursor *c, const uint8_t *p, size_t n, uint32_t *names,
                                  size_t names_mask)
{
    dcf_attachment *a = &ctx->attachments[ctx->attachment_count];
    size_t name_length, h;
    const uint8_t *d;
    const char *problem;
    char q[DCF_QUOTED_SIZE];
    unsigned codec;
    uint64_t per_byte;
    if (n < 2)
        return dcf_fail(c->err, DCF_ERR_BAD_EXTENSION, "an attachment record ends inside its name length");
    name_length = dcf_le16(p);
    if (name_length < 1 || name_length > DCF_MAX_NAME_LENGTH)
        return dcf_fail(c->err, DCF_ERR_BAD_EXTENSION, "attachment name length %u outside 1..%u", (unsigned)name_length,
                        DCF_MAX_NAME_LENGTH);
    if (n != 2 + name_length + 8 + 24)
        return dcf_fail(c->err, DCF_ERR_BAD_EXTENSION,
                        "an attachment record with a name of %u bytes has %u bytes of payload, not %lu",
                        (unsigned)name_length, (unsigned)(2 + name_length + 32), (unsigned long)n);
    if (!valid_utf8(p + 2, name_length))
        return dcf_fail(c->err, DCF_ERR_BAD_UTF8, "attachment name is not valid UTF-8");
    dcf_quote(q, (const char *)p + 2, name_length);
    problem = dcf_attachment_name_problem((const char *)p + 2, name_length);
    if (problem != NULL)
        return dcf_fail(c->err, DCF_ERR_BAD_EXTENSION, "attachment name %s %s", q, problem);
    d = p + 2 + name_length;
    a->size = dcf_le64(d);
    if (a->size > DCF_MAX_ATTACHMENT_BYTES)
        return dcf_fail(c->err, DCF_ERR_LIMIT_ATTACHMENT_BYTES, "attachment %s has %llu bytes, over MAX_ATTACHMENT_BYTES",
                        q, (unsigned long long)a->size);
    d += 8;
    codec = d[0];
    if (codec > DCF_CODEC_BYTEPLANES)
        return dcf_fail(c->err, DCF_ERR_BAD_ENUM, "stream codec of attachment %s has unknown value %u", q, codec);
    if (codec != DCF_CODEC_PLAIN && codec != DCF_CODEC_HUFFMAN && codec != DCF_CODEC_ZSTD)
        return dcf_fail(c->err, DCF_ERR_BAD_EXTENSION, "attachment %s: an attachment stream is PLAIN, HUFFMAN or ZSTD", q);
    if (d[1] != 0 || dcf_le16(d + 2) != 0)
        return dcf_fail(c->err, DCF_ERR_BAD_EXTENSION, "param and reserved field of attachment %s's stream must be zero", q);
    a->stream.codec = (uint8_t)codec;
    a->stream.param = 0;
    a->stream.crc32 = dcf_le32(d + 4);
    a->stream.count = dcf_le64(d + 8);
    a->stream.length = dcf_le64(d + 16);
    a->stream.offset = 0;
    if (a->stream.count != a->size)
        return dcf_fail(c->err, DCF_ERR_COUNT_MISMATCH, "attachment %s has %llu bytes but its stream %llu elements", q,
                        (unsigned long long)a->size, (unsigned long long)a->stream.count);
    if (a->stream.count == 0 && (codec != DCF_CODEC_PLAIN || a->stream.length != 0))
        return dcf_fail(c->err, DCF_ERR_BAD_FIELD, "the stream of the empty attachment %s must be PLAIN with length 0", q);
    per_byte = MAX_COUNT_PER_BYTE[codec];
    if (a->stream.length < UINT64_MAX / per_byte && a->stream.count > per_byte * a->stream.length)
        return dcf_fail(c->err, DCF_ERR_COUNT_MISMATCH, "a %s attachment stream of %llu bytes cannot hold %llu bytes",
                        CODEC_NAMES[codec], (unsigned long long)a->stream.length, (unsigned long long)a->stream.count);
    for (h = (size_t)hash_bytes((const char *)p + 2, name_length) & names_mask; names[h]; h = (h + 1) & names_mask) {
        const dcf_attachment *o = &ctx->attachments[names[h] - 1];
        if (o->name_length == name_length && memcmp(o->name, p + 2, name_length) == 0)
            return dcf_fail(c->err, DCF_ERR_DUPLICATE_NAME, "attachment name %s appears twice", q);
    }
    if (ctx->attachment_count >= DCF_MAX_ATTACHMENTS)
        return dcf_fail(c->err, DCF_ERR_LIMIT_EXTENSIONS, "more than MAX_ATTACHMENTS (%u) attachments", DCF_MAX_ATTACHMENTS);
    a->name = keep(c, p + 2, name_length);
    a->name_length = name_length;
    names[h] = (uint32_t)ctx->attachment_count + 1;
    ctx->attachment_count++;
    return DCF_OK;
}

static dcf_error parse_alias(dcf_ctx *ctx, cursor *c, const uint8_t *p, size_t n)
{
    dcf_alias *a = &ctx->aliases[ctx->alias_count];
    size_t name_length, h;
    char q[DCF_QUOTED_SIZE];
    if (n < 2)
        return dcf_fail(c->err, DCF_ERR_BAD_EXTENSION, "an alias record of %lu bytes ends inside a field", (unsigned long)n);
    name_length = dcf_le16(p);
    if (name_length < 1 || name_length > DCF_MAX_NAME_LENGTH)
        return dcf_fail(c->err, DCF_ERR_BAD_EXTENSION, "alias name length %u outside 1..%u", (unsigned)name_length,
                        DCF_MAX_NAME_LENGTH);
    if (n < 2 + name_length)
        return dcf_fail(c->err, DCF_ERR_BAD_EXTENSION, "an alias record of %lu bytes ends inside a field", (unsigned long)n);
    if (!valid_utf8(p + 2, name_length))
        return dcf_fail(c->err, DCF_ERR_BAD_UTF8, "alias name is not valid UTF-8");
    if (n < 2 + name_length + 4)
        return dcf_fail(c->err, DCF_ERR_BAD_EXTENSION, "an alias record of %lu bytes ends inside a field", (unsigned long)n);
    dcf_quote(q, (const char *)p + 2, name_length);
    if (n != 2 + name_length + 4)
        return dcf_fail(c->err, DCF_ERR_BAD_EXTENSION, "alias record of %s has %lu bytes left over", q,
                        (unsigned long)(n - 2 - name_length - 4));
    a->target = dcf_le32(p + 2 + name_length);
    if (a->target >= ctx->tensor_count)
        return dcf_fail(c->err, DCF_ERR_BAD_EXTENSION, "alias %s targets tensor %lu, but the file has %lu tensors", q,
                        (unsigned long)a->target, (unsigned long)ctx->tensor_count);
    if (find_entry_name(ctx, (const char *)p + 2, name_length))
        return dcf_fail(c->err, DCF_ERR_DUPLICATE_NAME, "alias name %s is already the name of a tensor", q);
    for (h = (size_t)hash_bytes((const char *)p + 2, name_length) & ctx->alias_table_mask; ctx->alias_table[h];
         h = (h + 1) & ctx->alias_table_mask) {
        const dcf_alias *o = &ctx->aliases[ctx->alias_table[h] - 1];
        if (o->name_length == name_length && memcmp(o->name, p + 2, name_length) == 0)
            return dcf_fail(c->err, DCF_ERR_DUPLICATE_NAME, "alias name %s is already the name of an alias", q);
    }
    if (ctx->tensor_count + ctx->alias_count >= DCF_MAX_TENSORS)
        return dcf_fail(c->err, DCF_ERR_LIMIT_EXTENSIONS, "tensors and aliases together exceed MAX_TENSORS (%u)",
                        DCF_MAX_TENSORS);
    a->name = keep(c, p + 2, name_length);
    a->name_length = name_length;
    ctx->alias_table[h] = (uint32_t)ctx->alias_count + 1;
    ctx->alias_count++;
    return DCF_OK;
}

static dcf_error parse_extensions(dcf_ctx *ctx, cursor *c)
{
    const uint8_t *d = NULL;
    uint32_t count, r;
    size_t names_size;
    uint32_t *names = NULL;
    dcf_error e = DCF_OK;
    TAKE(c, 4, "extension_count", d);
    count = dcf_le32(d);
    if (count > DCF_MAX_EXTENSION_RECORDS)
        return dcf_fail(c->err, DCF_ERR_LIMIT_EXTENSIONS, "extension_count %lu exceeds %u", (unsigned long)count,
                        DCF_MAX_EXTENSION_RECORDS);
    if ((uint64_t)count * 8 > c->n - c->pos)
        return dcf_fail(c->err, DCF_ERR_TRUNCATED, "index too short for %lu extension records", (unsigned long)count);
    if (count == 0)
        return DCF_OK;
    names_size = table_size_for(count);
    ctx->aliases = (dcf_alias *)dcf_alloc(ctx, (size_t)count * sizeof(dcf_alias));
    ctx->attachments = (dcf_attachment *)dcf_alloc(ctx, (size_t)count * sizeof(dcf_attachment));
    ctx->alias_table = (uint32_t *)dcf_alloc(ctx, names_size * sizeof(uint32_t));
    names = (uint32_t *)dcf_alloc(ctx, names_size * sizeof(uint32_t));
    if (!ctx->aliases || !ctx->attachments || !ctx->alias_table || !names) {
        dcf_free(ctx, names);
        return dcf_fail(c->err, DCF_ERR_NO_MEMORY, "out of memory for the extension records");
    }
    memset(ctx->alias_table, 0, names_size * sizeof(uint32_t));
    memset(names, 0, names_size * sizeof(uint32_t));
    ctx->alias_table_mask = names_size - 1;
    for (r = 0; r < count && e == DCF_OK; r++) {
        unsigned type, flags;
        uint32_t length;
        const uint8_t *payload = NULL;
        e = take(c, 2, "extension record type", &d);
        if (e != DCF_OK)
            break;
        type = dcf_le16(d);
        e = take(c, 2, "extension record flags", &d);
        if (e != DCF_OK)
            break;
        flags = dcf_le16(d);
        e = take(c, 4, "extension record length", &d);
        if (e != DCF_OK)
            break;
        length = dcf_le32(d);
        e = take(c, length, "an extension record", &payload);
        if (e != DCF_OK)
            break;
        if (flags & ~1u)
            e = dcf_fail(c->err, DCF_ERR_BAD_EXTENSION, "extension record of type %u: reserved flag bits 0x%04x set", type,
                         flags);
        else if (type == 0)
            e = dcf_fail(c->err, DCF_ERR_BAD_EXTENSION, "extension record type 0 is reserved");
        else if (type != 1 && type != 2) {
            if (flags & 1u)
                e = dcf_fail(c->err, DCF_ERR_CRITICAL_EXTENSION,
                             "critical extension record of unknown type %u: this libdcf implements format %d.%d and "
                             "must not read a file it would misread", type, DCF_FORMAT_VERSION_MAJOR,
                             DCF_FORMAT_VERSION_MINOR);
            /* else: skipped */
        } else if (flags != (type == 2 ? 1u : 0u))
            e = dcf_fail(c->err, DCF_ERR_BAD_EXTENSION, "%s extension record has flags %u, not %u",
                         type == 1 ? "ATTACHMENT" : "ALIAS", flags, type == 2 ? 1u : 0u);
        else if (type == 1)
            e = parse_attachment(ctx, c, payload, length, names, names_size - 1);
        else
            e = parse_alias(ctx, c, payload, length);
    }
    dcf_free(ctx, names);
    return e;
}

/* ------------------------------------------------------------------------------------------ */
/* the index (spec 4) */

static dcf_error parse_index(dcf_ctx *ctx, const uint8_t *index, size_t length, dcf_error_info *err)
{
    cursor c;
    const uint8_t *d = NULL;
    uint32_t tensor_count, metadata_count, i;
    size_t table_size = 1, mask, meta_mask;
    uint32_t *meta_table = NULL;
    dcf_error e = DCF_OK;

    memset(&c, 0, sizeof c);
    c.p = index;
    c.n = length;
    c.err = err;
    TAKE(&c, 4, "tensor_count", d);
    tensor_count = dcf_le32(d);
    TAKE(&c, 4, "metadata_count", d);
    metadata_count = dcf_le32(d);
    if (tensor_count > DCF_MAX_TENSORS)
        return dcf_fail(err, DCF_ERR_LIMIT_TENSORS, "tensor_count %lu exceeds %u", (unsigned long)tensor_count,
                        DCF_MAX_TENSORS);
    if (tensor_count > ctx->options.max_tensors)
        return dcf_fail(err, DCF_ERR_LIMIT_TENSORS, "tensor_count %lu exceeds this reader's limit of %llu (max_tensors)",
                        (unsigned long)tensor_count, (unsigned long long)ctx->options.max_tensors);
    if (metadata_count > DCF_MAX_METADATA_ENTRIES)
        return dcf_fail(err, DCF_ERR_LIMIT_METADATA, "metadata_count %lu exceeds %u", (unsigned long)metadata_count,
                        DCF_MAX_METADATA_ENTRIES);
    /* Each metadata entry takes at least 7 bytes and each tensor entry at least 17: counts the
     * index cannot hold end in a truncated index (as parsing them would) before we allocate. */
    if ((uint64_t)metadata_count * 7 > length - 8)
        return dcf_fail(err, DCF_ERR_TRUNCATED, "index ends inside metadata (%lu entries declared)",
                        (unsigned long)metadata_count);
    if ((uint64_t)metadata_count * 7 + (uint64_t)tensor_count * 17 > length - 8)
        return dcf_fail(err, DCF_ERR_TRUNCATED, "index ends inside the tensor entries (%lu declared)",
                        (unsigned long)tensor_count);

    /* strings: every name, key and value plus a NUL each: at most length bytes */
    ctx->strings = (char *)dcf_alloc(ctx, length + 1);
    ctx->metadata = (dcf_meta *)dcf_alloc(ctx, (size_t)metadata_count * sizeof(dcf_meta));
    ctx->tensors = (dcf_tensor *)dcf_alloc(ctx, (size_t)tensor_count * sizeof(dcf_tensor));
    while (table_size < 2 * (size_t)tensor_count)
        table_size <<= 1;
    mask = table_size - 1;
    ctx->name_table = (uint32_t *)dcf_alloc(ctx, table_size * sizeof(uint32_t));
    meta_mask = 1;
    while (meta_mask < 2 * (size_t)metadata_count)
        meta_mask <<= 1;
    meta_table = (uint32_t *)dcf_alloc(ctx, meta_mask * sizeof(uint32_t));
    meta_mask -= 1;
    if (!ctx->strings || !ctx->metadata || !ctx->tensors || !ctx->name_table || !meta_table) {
        dcf_free(ctx, meta_table);
        return dcf_fail(err, DCF_ERR_NO_MEMORY, "out of memory for the index");
    }
    memset(ctx->tensors, 0, (size_t)tensor_count * sizeof(dcf_tensor));
    memset(ctx->name_table, 0, table_size * sizeof(uint32_t));
    memset(meta_table, 0, (meta_mask + 1) * sizeof(uint32_t));
    ctx->name_table_mask = mask;
    c.strings = ctx->strings;

    for (i = 0; i < metadata_count; i++) {
        dcf_meta *m = &ctx->metadata[i];
        size_t key_length, value_length, h;
        char q[DCF_QUOTED_SIZE], whose[DCF_QUOTED_SIZE + 4];
        e = take(&c, 2, "metadata key length", &d);
        if (e != DCF_OK)
            goto done;
        key_length = dcf_le16(d);
        if (key_length < 1 || key_length > DCF_MAX_NAME_LENGTH) {
            e = dcf_fail(err, DCF_ERR_BAD_FIELD, "metadata key length %u outside 1..%u", (unsigned)key_length,
                         DCF_MAX_NAME_LENGTH);
            goto done;
        }
        e = text(&c, key_length, "metadata key", "", &m->key);
        if (e != DCF_OK)
            goto done;
        m->key_length = key_length;
        dcf_quote(q, m->key, key_length);
        e = take(&c, 4, "metadata value length", &d);
        if (e != DCF_OK)
            goto done;
        value_length = dcf_le32(d);
        snprintf(whose, sizeof whose, " of %s", q);
        e = text(&c, value_length, "metadata value", whose, &m->value);
        if (e != DCF_OK)
            goto done;
        m->value_length = value_length;
        for (h = (size_t)hash_bytes(m->key, key_length) & meta_mask; meta_table[h]; h = (h + 1) & meta_mask) {
            const dcf_meta *o = &ctx->metadata[meta_table[h] - 1];
            if (o->key_length == key_length && memcmp(o->key, m->key, key_length) == 0) {
                e = dcf_fail(err, DCF_ERR_DUPLICATE_KEY, "metadata key %s appears twice", q);
                goto done;
            }
        }
        meta_table[h] = i + 1;
        ctx->metadata_count = i + 1;
    }
    for (i = 0; i < tensor_count; i++) {
        dcf_tensor *t = &ctx->tensors[i];
        size_t h;
        ctx->tensor_count = i + 1; /* so release_index frees a partly parsed tensor's chunks */
        e = parse_tensor(ctx, &c, t);
        if (e != DCF_OK)
            goto done;
        for (h = (size_t)hash_bytes(t->name, t->name_length) & mask; ctx->name_table[h]; h = (h + 1) & mask) {
            const dcf_tensor *o = &ctx->tensors[ctx->name_table[h] - 1];
            if (o->name_length == t->name_length && memcmp(o->name, t->name, t->name_length) == 0) {
                char q[DCF_QUOTED_SIZE];
                dcf_quote(q, t->name, t->name_length);
                e = dcf_fail(err, DCF_ERR_DUPLICATE_NAME, "tensor name %s appears twice", q);
                goto done;
            }
        }
        ctx->name_table[h] = i + 1;
    }
    if (ctx->version_minor >= 1) {
        e = parse_extensions(ctx, &c);
        if (e != DCF_OK)
            goto done;
    }
    if (c.pos != length)
        e = dcf_fail(err, DCF_ERR_INDEX_LEFTOVER, "%llu bytes left over at the end of the index",
                     (unsigned long long)(length - c.pos));
done:
    dcf_free(ctx, meta_table);
    return e;
}

/* ------------------------------------------------------------------------------------------ */
/* opening */

dcf_error dcf_open_buffer(dcf_ctx *ctx, const void *buf, size_t size, dcf_error_info *err)
{
    const uint8_t *v = (const uint8_t *)buf;
    uint64_t index_length, index_offset;
    uint32_t index_crc;
    dcf_error e;
    if (ctx == NULL || (buf == NULL && size != 0))
        return dcf_fail(err, DCF_ERR_BAD_ARGUMENT, "dcf_open_buffer: NULL context or buffer");
    if (ctx->opened != 0)
        return dcf_fail(err, DCF_ERR_BAD_ARGUMENT, "dcf_open_buffer: this context has already opened a file");
    ctx->opened = -1;
    ctx->data = v;
    ctx->size = size;
    if (size < 32) {
        if (size >= 4 && memcmp(v, MAGIC, 4) != 0)
            return dcf_fail(err, DCF_ERR_BAD_MAGIC, "not a dcf file (bad magic)");
        return dcf_fail(err, DCF_ERR_TRUNCATED, "file is %lu bytes, shorter than preamble and trailer (32)",
                        (unsigned long)size);
    }
    if (memcmp(v, MAGIC, 4) != 0)
        return dcf_fail(err, DCF_ERR_BAD_MAGIC, "not a dcf file (bad magic)");
    ctx->version_major = dcf_le16(v + 4);
    ctx->version_minor = dcf_le16(v + 6);
    if (ctx->version_major != DCF_FORMAT_VERSION_MAJOR)
        return dcf_fail(err, DCF_ERR_UNSUPPORTED_VERSION,
                        "format version %u.%u is not supported (this reader implements %d.x)", ctx->version_major,
                        ctx->version_minor, DCF_FORMAT_VERSION_MAJOR);
    {
        int k;
        for (k = 9; k < 16; k++)
            if (v[k] != 0)
                return dcf_fail(err, DCF_ERR_RESERVED, "reserved bytes of the preamble are not zero");
    }
    ctx->alignment_log2 = v[8];
    if (ctx->alignment_log2 > DCF_MAX_ALIGNMENT_LOG2)
        return dcf_fail(err, DCF_ERR_BAD_FIELD, "alignment_log2 %u exceeds %d", ctx->alignment_log2,
                        DCF_MAX_ALIGNMENT_LOG2);
    index_length = dcf_le64(v + size - 16);
    index_crc = dcf_le32(v + size - 8);
    if (memcmp(v + size - 4, MAGIC, 4) != 0)
        return dcf_fail(err, DCF_ERR_BAD_END_MAGIC, "trailer magic missing: the file is truncated or not a dcf file");
    if (index_length < 8 || index_length > DCF_MAX_INDEX_LENGTH)
        return dcf_fail(err, DCF_ERR_LIMIT_INDEX_LENGTH, "index length %llu outside 8..%u",
                        (unsigned long long)index_length, DCF_MAX_INDEX_LENGTH);
    if (index_length > ctx->options.max_index_length)
        return dcf_fail(err, DCF_ERR_LIMIT_INDEX_LENGTH, "index length %llu exceeds this reader's limit of %llu "
                        "(max_index_length)", (unsigned long long)index_length,
                        (unsigned long long)ctx->options.max_index_length);
    if (index_length + 32 > size)
        return dcf_fail(err, DCF_ERR_TRUNCATED, "index length %llu is larger than the file allows",
                        (unsigned long long)index_length);
    index_offset = size - 16 - index_length;
    ctx->index_offset = index_offset;
    ctx->index_length = index_length;
    if (!ctx->options.skip_checksums && dcf_crc32(v + index_offset, (size_t)index_length) != index_crc)
        return dcf_fail(err, DCF_ERR_INDEX_CHECKSUM, "index checksum mismatch");
    e = parse_index(ctx, v + index_offset, (size_t)index_length, err);
    if (e == DCF_OK)
        e = place_streams(ctx, err);
    if (e != DCF_OK) {
        release_index(ctx);
        return e;
    }
    ctx->opened = 1;
    return DCF_OK;
}

dcf_error dcf_open_file(dcf_ctx *ctx, const char *path, dcf_error_info *err)
{
    if (ctx == NULL || path == NULL)
        return dcf_fail(err, DCF_ERR_BAD_ARGUMENT, "dcf_open_file: NULL context or path");
    if (ctx->opened != 0)
        return dcf_fail(err, DCF_ERR_BAD_ARGUMENT, "dcf_open_file: this context has already opened a file");
#if defined(DCF_USE_MMAP)
    {
        struct stat st;
        int fd = open(path, O_RDONLY);
        void *map;
        if (fd < 0)
            return dcf_fail(err, DCF_ERR_IO, "cannot open: %s", strerror(errno));
        if (fstat(fd, &st) != 0) {
            int saved = errno;
            close(fd);
            return dcf_fail(err, DCF_ERR_IO, "cannot stat: %s", strerror(saved));
        }
        if (!S_ISREG(st.st_mode)) {
            close(fd);
            return dcf_fail(err, DCF_ERR_IO, "not a regular file");
        }
        if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
            close(fd);
            return dcf_fail(err, DCF_ERR_IO, "file too large for this platform");
        }
        if (st.st_size == 0) {
            close(fd);
            return dcf_open_buffer(ctx, "", 0, err);
        }
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        if (map == MAP_FAILED)
            return dcf_fail(err, DCF_ERR_IO, "cannot map: %s", strerror(errno));
        ctx->mapping = map;
        ctx->mapping_size = (size_t)st.st_size;
        return dcf_open_buffer(ctx, map, (size_t)st.st_size, err);
    }
#else
    {
        FILE *f = fopen(path, "rb");
        size_t cap = 1 << 16, n = 0;
        uint8_t *buf;
        if (f == NULL)
            return dcf_fail(err, DCF_ERR_IO, "cannot open the file");
        buf = (uint8_t *)dcf_alloc(ctx, cap);
        while (buf != NULL) {
            size_t got = fread(buf + n, 1, cap - n, f);
            n += got;
            if (n < cap)
                break;
            {
                uint8_t *bigger = cap > SIZE_MAX / 2 ? NULL : (uint8_t *)dcf_alloc(ctx, cap * 2);
                if (bigger != NULL)
                    memcpy(bigger, buf, n);
                dcf_free(ctx, buf);
                buf = bigger;
                cap *= 2;
            }
        }
        if (buf == NULL) {
            fclose(f);
            return dcf_fail(err, DCF_ERR_NO_MEMORY, "out of memory reading the file");
        }
        if (ferror(f)) {
            fclose(f);
            dcf_free(ctx, buf);
            return dcf_fail(err, DCF_ERR_IO, "read error");
        }
        fclose(f);
        ctx->owned = buf;
        return dcf_open_buffer(ctx, buf, n, err);
    }
#endif
}

/* ------------------------------------------------------------------------------------------ */
/* queries */

unsigned dcf_version_major(const dcf_ctx *ctx) { return ctx && ctx->opened == 1 ? ctx->version_major : 0; }
unsigned dcf_version_minor(const dcf_ctx *ctx) { return ctx && ctx->opened == 1 ? ctx->version_minor : 0; }
unsigned dcf_alignment_log2(const dcf_ctx *ctx) { return ctx && ctx->opened == 1 ? ctx->alignment_log2 : 0; }

const uint8_t *dcf_file_data(const dcf_ctx *ctx, size_t *size)
{
    if (ctx == NULL || ctx->opened != 1) {
        if (size)
            *size = 0;
        return NULL;
    }
    if (size)
        *size = ctx->size;
    return ctx->data;
}

size_t dcf_metadata_count(const dcf_ctx *ctx) { return ctx && ctx->opened == 1 ? ctx->metadata_count : 0; }

dcf_error dcf_metadata_get(const dcf_ctx *ctx, size_t j, const char **key, size_t *key_length,
                           const char **value, size_t *value_length)
{
    const dcf_meta *m;
    if (ctx == NULL || ctx->opened != 1 || j >= ctx->metadata_count)
        return DCF_ERR_BAD_ARGUMENT;
    m = &ctx->metadata[j];
    if (key)
        *key = m->key;
    if (key_length)
        *key_length = m->key_length;
    if (value)
        *value = m->value;
    if (value_length)
        *value_length = m->value_length;
    return DCF_OK;
}

dcf_error dcf_metadata_find(const dcf_ctx *ctx, const char *key, size_t key_length, const char **value,
                            size_t *value_length)
{
    size_t j;
    if (ctx == NULL || ctx->opened != 1 || (key == NULL && key_length))
        return DCF_ERR_BAD_ARGUMENT;
    for (j = 0; j < ctx->metadata_count; j++) {
        const dcf_meta *m = &ctx->metadata[j];
        if (m->key_length == key_length && memcmp(m->key, key, key_length) == 0)
            return dcf_metadata_get(ctx, j, NULL, NULL, value, value_length);
    }
    return DCF_ERR_NOT_FOUND;
}

size_t dcf_tensor_count(const dcf_ctx *ctx)
{
    return ctx && ctx->opened == 1 ? ctx->tensor_count + ctx->alias_count : 0;
}

size_t dcf_alias_count(const dcf_ctx *ctx) { return ctx && ctx->opened == 1 ? ctx->alias_count : 0; }

const dcf_tensor *dcf_entry_of(const dcf_ctx *ctx, size_t i, size_t *entry)
{
    size_t e;
    if (ctx == NULL || ctx->opened != 1 || i >= ctx->tensor_count + ctx->alias_count)
        return NULL;
    e = i < ctx->tensor_count ? i : ctx->aliases[i - ctx->tensor_count].target;
    if (entry)
        *entry = e;
    return &ctx->tensors[e];
}

dcf_error dcf_tensor_entry(const dcf_ctx *ctx, size_t i, size_t *entry)
{
    if (entry == NULL || dcf_entry_of(ctx, i, entry) == NULL)
        return DCF_ERR_BAD_ARGUMENT;
    return DCF_OK;
}

dcf_error dcf_get_tensor_info(const dcf_ctx *ctx, size_t i, dcf_tensor_info *info)
{
    const dcf_tensor *t;
    unsigned k;
    size_t entry = 0;
    if (info == NULL || (t = dcf_entry_of(ctx, i, &entry)) == NULL)
        return DCF_ERR_BAD_ARGUMENT;
    memset(info, 0, sizeof *info);
    if (i >= ctx->tensor_count) {
        info->name = ctx->aliases[i - ctx->tensor_count].name;
        info->name_length = ctx->aliases[i - ctx->tensor_count].name_length;
    } else {
        info->name = t->name;
        info->name_length = t->name_length;
    }
    info->dtype = (dcf_dtype)t->dtype;
    info->rank = t->rank;
    for (k = 0; k < t->rank; k++)
        info->shape[k] = t->shape[k];
    info->layout = (dcf_layout)t->layout;
    info->value_coding = (dcf_value_coding)t->value_coding;
    info->index_bits = t->index_bits;
    info->codebook_dtype = t->codebook_dtype;
    info->codebook_size = t->codebook_size;
    info->numel = t->numel;
    info->rows = t->rows;
    info->cols = t->cols;
    info->decoded_bytes = t->numel * dcf_dtype_size((dcf_dtype)t->dtype); /* <= 2^43 */
    info->stored_bytes = t->stored_bytes;
    info->entries = t->entries;
    info->chunk_count = t->chunk_count;
    return DCF_OK;
}

dcf_error dcf_find_tensor(const dcf_ctx *ctx, const char *name, size_t name_length, size_t *i)
{
    size_t h;
    if (ctx == NULL || ctx->opened != 1 || (name == NULL && name_length) || i == NULL)
        return DCF_ERR_BAD_ARGUMENT;
    if (ctx->tensor_count == 0)
        return DCF_ERR_NOT_FOUND;
    for (h = (size_t)hash_bytes(name, name_length) & ctx->name_table_mask; ctx->name_table[h];
         h = (h + 1) & ctx->name_table_mask) {
        const dcf_tensor *t = &ctx->tensors[ctx->name_table[h] - 1];
        if (t->name_length == name_length && memcmp(t->name, name, name_length) == 0) {
            *i = ctx->name_table[h] - 1;
            return DCF_OK;
        }
    }
    if (ctx->alias_count == 0)
        return DCF_ERR_NOT_FOUND;
    for (h = (size_t)hash_bytes(name, name_length) & ctx->alias_table_mask; ctx->alias_table[h];
         h = (h + 1) & ctx->alias_table_mask) {
        const dcf_alias *a = &ctx->aliases[ctx->alias_table[h] - 1];
        if (a->name_length == name_length && memcmp(a->name, name, name_length) == 0) {
            *i = ctx->tensor_count + ctx->alias_table[h] - 1;
            return DCF_OK;
        }
    }
    return DCF_ERR_NOT_FOUND;
}

size_t dcf_attachment_count(const dcf_ctx *ctx) { return ctx && ctx->opened == 1 ? ctx->attachment_count : 0; }

dcf_error dcf_get_attachment_info(const dcf_ctx *ctx, size_t j, const char **name, size_t *name_length, uint64_t *size)
{
    const dcf_attachment *a;
    if (ctx == NULL || ctx->opened != 1 || j >= ctx->attachment_count)
        return DCF_ERR_BAD_ARGUMENT;
    a = &ctx->attachments[j];
    if (name)
        *name = a->name;
    if (name_length)
        *name_length = a->name_length;
    if (size)
        *size = a->size;
    return DCF_OK;
}

dcf_error dcf_decode_attachment(const dcf_ctx *ctx, size_t j, void *out, size_t out_size, dcf_error_info *err)
{
    const dcf_attachment *a;
    const dcf_stream *s;
    dcf_stream_ctx sc;
    char q[DCF_QUOTED_SIZE], what[DCF_QUOTED_SIZE + 16];
    uint64_t limit;
    if (ctx == NULL || ctx->opened != 1 || j >= ctx->attachment_count)
        return dcf_fail(err, DCF_ERR_BAD_ARGUMENT, "attachment index out of range");
    a = &ctx->attachments[j];
    s = &a->stream;
    dcf_quote(q, a->name, a->name_length);
    snprintf(what, sizeof what, "attachment %s", q);
    limit = ctx->options.max_attachment_bytes;
    if (a->size > limit)
        return dcf_fail(err, DCF_ERR_LIMIT_ATTACHMENT_BYTES,
                        "%s has %llu bytes, over this reader's limit of %llu (max_attachment_bytes)", what,
                        (unsigned long long)a->size, (unsigned long long)limit);
    if (out_size < a->size)
        return dcf_fail(err, DCF_ERR_BUFFER_TOO_SMALL, "output buffer of %lu bytes, %s needs %llu",
                        (unsigned long)out_size, what, (unsigned long long)a->size);
    if (out == NULL && a->size)
        return dcf_fail(err, DCF_ERR_BAD_ARGUMENT, "dcf_decode_attachment: NULL output buffer");
    if (!ctx->options.skip_checksums && dcf_crc32(ctx->data + s->offset, (size_t)s->length) != s->crc32)
        return dcf_fail(err, DCF_ERR_STREAM_CHECKSUM, "%s: stream checksum mismatch", what);
    if (s->count == 0)
        return DCF_OK;
    sc.ctx = ctx;
    sc.err = err;
    sc.what = what;
    switch (s->codec) {
    case DCF_CODEC_PLAIN: return dcf_plain_decode(&sc, ctx->data + s->offset, s->length, s->count, 1, (uint8_t *)out);
    case DCF_CODEC_HUFFMAN:
        return dcf_huffman_decode(&sc, ctx->data + s->offset, s->length, s->count, 1, 256, (uint8_t *)out);
    default: return dcf_zstd_decode(&sc, ctx->data + s->offset, s->length, s->count, 1, (uint8_t *)out);
    }
}

size_t dcf_dtype_size(dcf_dtype dtype)
{
    static const unsigned char sizes[16] = {0, 4, 2, 2, 8, 1, 2, 4, 8, 1, 2, 4, 8, 1, 1, 1};
    return (unsigned)dtype < 16 ? sizes[dtype] : 0;
}

const char *dcf_dtype_name(dcf_dtype dtype)
{
    static const char *const names[16] = {"?", "F32", "F16", "BF16", "F64", "I8", "I16", "I32",
                                          "I64", "U8", "U16", "U32", "U64", "BOOL", "F8_E4M3", "F8_E5M2"};
    return (unsigned)dtype < 16 ? names[dtype] : "?";
}

int dcf_has_zstd(void)
{
#if defined(DCF_NO_ZSTD)
    return 0;
#else
    return 1;
#endif
}

const char *dcf_lib_version(void) { return DCF_LIB_VERSION_STRING; }
