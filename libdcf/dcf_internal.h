/* libdcf internals shared by its source files; not part of the public API. */
#ifndef DCF_INTERNAL_H
#define DCF_INTERNAL_H

#include <stdarg.h>
#include <string.h>

#include "dcf.h"

/* ---- byte order and unaligned access (memcpy: no alignment or aliasing assumptions) ---- */

#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define DCF_BIG_ENDIAN 1
#else
#define DCF_BIG_ENDIAN 0
#endif

static inline uint16_t dcf_bswap16(uint16_t v) { return (uint16_t)((v >> 8) | (v << 8)); }
static inline uint32_t dcf_bswap32(uint32_t v)
{
    return (v >> 24) | ((v >> 8) & 0xFF00u) | ((v << 8) & 0xFF0000u) | (v << 24);
}
static inline uint64_t dcf_bswap64(uint64_t v)
{
    return ((uint64_t)dcf_bswap32((uint32_t)v) << 32) | dcf_bswap32((uint32_t)(v >> 32));
}

static inline uint16_t dcf_le16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return DCF_BIG_ENDIAN ? dcf_bswap16(v) : v;
}
static inline uint32_t dcf_le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return DCF_BIG_ENDIAN ? dcf_bswap32(v) : v;
}
static inline uint64_t dcf_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return DCF_BIG_ENDIAN ? dcf_bswap64(v) : v;
}

/* Host-order element stores/loads of 1, 2, 4 or 8 bytes at any address. */
static inline void dcf_store(uint8_t *p, size_t size, uint64_t v)
{
    switch (size) {
    case 1: { uint8_t x = (uint8_t)v; memcpy(p, &x, 1); break; }
    case 2: { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); break; }
    case 4: { uint32_t x = (uint32_t)v; memcpy(p, &x, 4); break; }
    default: memcpy(p, &v, 8); break;
    }
}
static inline uint64_t dcf_load(const uint8_t *p, size_t size)
{
    switch (size) {
    case 1: return p[0];
    case 2: { uint16_t x; memcpy(&x, p, 2); return x; }
    case 4: { uint32_t x; memcpy(&x, p, 4); return x; }
    default: { uint64_t x; memcpy(&x, p, 8); return x; }
    }
}

/* ---- the parsed index ---- */

enum { DCF_ROLE_CODEBOOK = 0, DCF_ROLE_VALUES, DCF_ROLE_ROW_COUNTS, DCF_ROLE_GAPS, DCF_ROLE_PLANE,
       DCF_ROLE_ATTACHMENT };

typedef struct dcf_stream {
    uint64_t count;
    uint64_t length;
    uint64_t offset; /* computed (spec 5) */
    uint32_t crc32;
    uint8_t codec;
    uint8_t param;
} dcf_stream;

typedef struct dcf_chunk {
    uint64_t start;  /* first element (DENSE) or row (CSR) */
    uint64_t extent; /* elements (DENSE) or rows (CSR) */
    dcf_stream streams[3]; /* DENSE: VALUES; CSR: ROW_COUNTS, GAPS, VALUES */
} dcf_chunk;

typedef struct dcf_tensor {
    const char *name; /* NUL-terminated copy in the context's string blob */
    size_t name_length;
    uint64_t shape[DCF_MAX_RANK];
    uint64_t numel, rows, cols;
    uint64_t stored_bytes, entries;
    dcf_stream codebook;
    dcf_chunk *chunks;
    uint32_t chunk_count;
    uint32_t codebook_size;
    uint8_t dtype, rank, layout, value_coding, index_bits, codebook_dtype;
} dcf_tensor;

typedef struct dcf_meta {
    const char *key, *value;
    size_t key_length, value_length;
} dcf_meta;

typedef struct dcf_alias {
    const char *name;
    size_t name_length;
    uint32_t target; /* tensor entry index */
} dcf_alias;

typedef struct dcf_attachment {
    const char *name;
    size_t name_length;
    uint64_t size;
    dcf_stream stream;
} dcf_attachment;

struct dcf_ctx {
    dcf_options options;
    int opened;  /* 1 after a successful open, -1 after a failed one */
    const uint8_t *data;
    size_t size;
    void *owned;      /* file contents read into allocator memory, or NULL */
    void *mapping;    /* mmap address, or NULL */
    size_t mapping_size;
    unsigned version_major, version_minor, alignment_log2;
    uint64_t index_offset, index_length;
    dcf_meta *metadata;
    size_t metadata_count;
    dcf_tensor *tensors;
    size_t tensor_count;
    char *strings;           /* every name, key and value, NUL-terminated */
    uint32_t *name_table;    /* open addressing: tensor index + 1, 0 = empty */
    size_t name_table_mask;
    dcf_alias *aliases;      /* version 1.1 (spec 4.6.2) */
    size_t alias_count;
    uint32_t *alias_table;   /* open addressing: alias index + 1 */
    size_t alias_table_mask;
    dcf_attachment *attachments; /* version 1.1 (spec 4.6.1) */
    size_t attachment_count;
};

/* ---- memory ---- */
void *dcf_alloc(const dcf_ctx *ctx, size_t size);
void dcf_free(const dcf_ctx *ctx, void *ptr);

/* ---- errors ---- */
dcf_error dcf_fail(dcf_error_info *err, dcf_error code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* 'name' quoted for a message: printable ASCII, escapes, shortened to fit `out`. */
#define DCF_QUOTED_SIZE 80
void dcf_quote(char out[DCF_QUOTED_SIZE], const char *s, size_t length);

/* The tensor entry that public index i names (an entry, or an alias's target); NULL if none. */
const dcf_tensor *dcf_entry_of(const dcf_ctx *ctx, size_t i, size_t *entry);

/* ---- checksums ---- */
uint32_t dcf_crc32(const uint8_t *data, size_t length);

/* ---- sizes ---- */
size_t dcf_element_size_of(const dcf_tensor *t, int role);
/* Exclusive upper bound on the elements of a role (0: none). */
uint64_t dcf_element_bound(const dcf_tensor *t, int role);
const char *dcf_role_name(int role);

/* ---- codecs: decode `count` elements of `esize` bytes (host order) into `out` ----
 * `payload` holds exactly the stream's stored bytes. `bound` is the Huffman alphabet bound of the
 * role (0: none); the callers check the other codecs' elements against their bound. `what` names
 * the stream in messages. Each codec checks lengths before it allocates. */
typedef struct dcf_stream_ctx {
    const dcf_ctx *ctx;
    dcf_error_info *err;
    const char *what; /* e.g. "tensor 'w': VALUES stream" */
} dcf_stream_ctx;

/* Elements of esize bytes, stored little-endian, to host order in place (a no-op on little-endian CPUs). */
void dcf_elements_to_host(uint8_t *out, uint64_t count, size_t esize);
dcf_error dcf_plain_decode(const dcf_stream_ctx *sc, const uint8_t *payload, uint64_t length,
                           uint64_t count, size_t esize, uint8_t *out);
dcf_error dcf_bitpack_decode(const dcf_stream_ctx *sc, const uint8_t *payload, uint64_t length,
                             uint64_t count, size_t esize, unsigned width, uint8_t *out);
dcf_error dcf_huffman_decode(const dcf_stream_ctx *sc, const uint8_t *payload, uint64_t length,
                             uint64_t count, size_t esize, uint64_t bound, uint8_t *out);
/* The same with each symbol s written as the `out_es`-byte value at map + s x out_es (out_es <= 4;
 * `esize` is the stream's symbol size, which bounds the alphabet). */
dcf_error dcf_huffman_decode_map(const dcf_stream_ctx *sc, const uint8_t *payload, uint64_t length,
                                 uint64_t count, size_t esize, uint64_t bound, const uint8_t *map, size_t out_es,
                                 uint8_t *out);
dcf_error dcf_zstd_decode(const dcf_stream_ctx *sc, const uint8_t *payload, uint64_t length,
                          uint64_t count, size_t esize, uint8_t *out);
dcf_error dcf_byteplanes_decode(const dcf_stream_ctx *sc, const uint8_t *payload, uint64_t length,
                                uint64_t count, size_t esize, uint8_t *out);

/* One stream of a tensor: CRC, codec, then the element bound (spec 4.5). */
dcf_error dcf_decode_stream(const dcf_ctx *ctx, const dcf_tensor *t, const dcf_stream *s, int role,
                            uint8_t *out, dcf_error_info *err);

/* The same for a HUFFMAN stream of symbols, each written as its entry of `map` (out_es <= 4
 * bytes each): the codebook lookup fused into decoding. */
dcf_error dcf_decode_stream_map(const dcf_ctx *ctx, const dcf_tensor *t, const dcf_stream *s, int role,
                                const uint8_t *map, size_t out_es, uint8_t *out, dcf_error_info *err);

/* ---- float conversions (bit-exact with numpy / ml_dtypes astype) ---- */
uint16_t dcf_f32_to_f16(uint32_t f);
uint16_t dcf_f32_to_bf16(uint32_t f);
uint64_t dcf_f32_to_f64(uint32_t f);
uint32_t dcf_f16_to_f32(uint16_t h);
uint64_t dcf_f16_to_f64(uint16_t h);
uint16_t dcf_f16_to_bf16(uint16_t h);
uint32_t dcf_bf16_to_f32(uint16_t b);
uint32_t dcf_f64_to_f32(uint64_t d);
/* float8 (format 1.2, spec 4.3.1) to float32: numbers and infinities exactly; a NaN keeps its
 * sign and significand (shifted to the top of float32's), not quieted. */
uint32_t dcf_f8e4m3_to_f32(uint8_t c);
uint32_t dcf_f8e5m2_to_f32(uint8_t c);
/* Whether a dtype or codebook dtype id is one of the float8 types (format 1.2). */
#define dcf_is_float8(d) ((d) == DCF_F8_E4M3 || (d) == DCF_F8_E5M2)

#endif
