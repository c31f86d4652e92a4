/*
 * Fuzz target and sanitizer driver for libdcf (see README.md beside this file).
 *
 * One input is a byte string handed to dcf_open_buffer. The target lists every metadata entry
 * and tensor, decodes every tensor whole (in its own dtype and, for floating types, as float32)
 * and chunk by chunk, each into a buffer of exactly the checked size (so AddressSanitizer sees
 * any write past it), and checks the library's promises:
 *
 * - every call returns a dcf_error; err->code equals it; the message is one non-empty line of
 *   printable ASCII;
 * - whole and chunked decodes agree byte for byte, and so do a decode with the index and stream
 *   CRCs checked and one without (when the checked one succeeds); the float32 output is the
 *   native output converted (IEEE round-to-nearest-even; any NaN for a NaN);
 * - a buffer one byte short is refused; unknown output types are refused;
 * - every allocation through the hooks is freed by the end of each call that made it (scratch)
 *   or by dcf_ctx_free (the index), and the scratch of a decode call stays within what
 *   dcf_scratch_size promises;
 * - an allocation that fails (one chosen per input) ends in DCF_ERR_NO_MEMORY, never in a
 *   crash, a leak or a different decode.
 *
 * A broken promise calls abort() with a line on stderr: that is a bug of libdcf.
 *
 * Built two ways:
 * - with clang -fsanitize=fuzzer,address,undefined: libFuzzer's LLVMFuzzerTestOneInput;
 * - with -DDCF_FUZZ_DRIVER (gcc or clang, -fsanitize=address,undefined): a main() that decodes
 *   the files named on its command line, or with --stdin a stream of length-prefixed inputs
 *   (u64 length, u32 flags, the bytes; flags bit 0: skip checksums), printing one result line
 *   per input (the format is in print_result) for tools/fuzz_libdcf.py to compare with the
 *   Python reader.
 */
#define _POSIX_C_SOURCE 200809L
#include "../dcf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DCF_FUZZ_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define DCF_FUZZ_ASAN 1
#endif
#ifdef DCF_FUZZ_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* ------------------------------------------------------------------------------------------ */
/* Failing loudly */

static const char *g_input_name = "(libFuzzer input)";
/* The driver's --selftest: every chunk decode is changed by one bit after the call, so that the
 * harness must report it (a check of the checker, tests/test_libdcf_fuzz.py). */
static int g_selftest = 0;

static void bug(const char *what, const char *detail) {
    fprintf(stderr, "\nLIBDCF BUG on %s: %s%s%s\n", g_input_name, what, detail ? ": " : "",
            detail ? detail : "");
    fflush(stderr);
    abort();
}

#define CHECK(cond, what) \
    do {                  \
        if (!(cond)) bug(what, #cond); \
    } while (0)

/* ------------------------------------------------------------------------------------------ */
/* CRC-32 (zlib's), for the result lines */

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static uint32_t crc_update(uint32_t crc, const void *data, size_t n) {
    const uint8_t *p = (const uint8_t *)data;
    crc = ~crc;
    while (n--) crc = crc_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

static uint32_t crc_u64(uint32_t crc, uint64_t v, int bytes) {
    uint8_t b[8];
    for (int i = 0; i < bytes; i++) b[i] = (uint8_t)(v >> (8 * i));
    return crc_update(crc, b, (size_t)bytes);
}

/* ------------------------------------------------------------------------------------------ */
/* Counting allocator hooks, with one chosen allocation made to fail */

typedef struct counting {
    size_t live;        /* bytes handed out and not yet freed */
    size_t peak;        /* the most `live` reached since reset_peak */
    size_t blocks;      /* blocks handed out and not yet freed */
    size_t calls;       /* malloc_fn calls */
    size_t fail_at;     /* 1-based index of the malloc_fn call that returns NULL; 0: none */
    int failed;         /* that call happened */
} counting;

#define HEADER 16

static void *hook_malloc(void *user, size_t size) {
    counting *c = (counting *)user;
    c->calls++;
    if (c->fail_at && c->calls == c->fail_at) {
        c->failed = 1;
        return NULL;
    }
    if (size > SIZE_MAX - HEADER) return NULL;
    uint8_t *p = (uint8_t *)malloc(size + HEADER);
    if (!p) return NULL;
    memcpy(p, &size, sizeof size);
    POISON(p, HEADER);
    c->live += size;
    c->blocks++;
    if (c->live > c->peak) c->peak = c->live;
    return p + HEADER;
}

static void hook_free(void *user, void *ptr) {
    counting *c = (counting *)user;
    if (!ptr) return;
    uint8_t *p = (uint8_t *)ptr - HEADER;
    UNPOISON(p, HEADER);
    size_t size;
    memcpy(&size, p, sizeof size);
    CHECK(c->blocks > 0 && c->live >= size, "free of a block the hooks did not hand out");
    c->live -= size;
    c->blocks--;
    free(p);
}

/* ------------------------------------------------------------------------------------------ */
/* Float conversions, the reference for DCF_OUT_F32 */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static uint32_t half_to_f32_bits(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1F, man = h & 0x3FF;
    if (exp == 0x1F) return sign | 0x7F800000u | (man << 13);
    if (exp != 0) return sign | ((exp + 112) << 23) | (man << 13);
    if (man == 0) return sign;
    int e = -1;
    do { /* subnormal: normalise */
        man <<= 1;
        e++;
    } while (!(man & 0x400));
    return sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3FF) << 13);
}

static int is_nan_bits(uint32_t u) { return (u & 0x7F800000u) == 0x7F800000u && (u & 0x7FFFFFu); }

/* float8 (format 1.2) to float32 from the value: (-1)^s x 2^(e - bias) x (1 + m / 2^M), subnormals
 * 2^(1 - bias) x m / 2^M, computed in float (exact: every float8 value is a float32), so independent of
 * the library's bit arithmetic; NaNs by spec 4.3.1's rule, infinities of E5M2. */
static uint32_t f8_to_f32_bits(uint8_t c, int e4m3) {
    int mbits = e4m3 ? 3 : 2, ebits = e4m3 ? 4 : 5, bias = e4m3 ? 7 : 15, top = (1 << ebits) - 1;
    int e = (c >> mbits) & top, m = c & ((1 << mbits) - 1);
    uint32_t sign = (uint32_t)(c >> 7) << 31;
    if (e == top && (e4m3 ? m == 7 : 1)) return sign | 0x7F800000u | ((uint32_t)m << (23 - mbits));
    float v = (float)(e == 0 ? m : (1 << mbits) + m);
    int scale = (e == 0 ? 1 : e) - bias - mbits; /* v x 2^scale, by exact halvings and doublings */
    for (; scale < 0; scale++) v *= 0.5f;
    for (; scale > 0; scale--) v *= 2.0f;
    return sign | f32_bits(v);
}

/* Is `f32` (count float32s) the conversion of `native` (count elements of dtype)? */
static int f32_matches(dcf_dtype dtype, const uint8_t *native, const uint8_t *f32, uint64_t count) {
    for (uint64_t i = 0; i < count; i++) {
        uint32_t want, got;
        memcpy(&got, f32 + 4 * i, 4);
        if (dtype == DCF_F32) {
            memcpy(&want, native + 4 * i, 4);
        } else if (dtype == DCF_F8_E4M3 || dtype == DCF_F8_E5M2) {
            want = f8_to_f32_bits(native[i], dtype == DCF_F8_E4M3);
        } else if (dtype == DCF_F16 || dtype == DCF_BF16) {
            uint16_t h;
            memcpy(&h, native + 2 * i, 2);
            want = dtype == DCF_F16 ? half_to_f32_bits(h) : (uint32_t)h << 16;
        } else {
            double d;
            memcpy(&d, native + 8 * i, 8);
            want = f32_bits((float)d);
        }
        if (want != got && !(is_nan_bits(want) && is_nan_bits(got))) return 0;
    }
    return 1;
}

static int is_float(dcf_dtype d) {
    return d == DCF_F32 || d == DCF_F16 || d == DCF_BF16 || d == DCF_F64 || d == DCF_F8_E4M3 || d == DCF_F8_E5M2;
}

/* ------------------------------------------------------------------------------------------ */
/* One input */

typedef struct tensor_result {
    int code, f32_code;     /* whole-tensor decodes: native, float32 (DCF_ERR_OUT_TYPE: not float) */
    uint32_t crc, f32_crc;  /* CRC-32 of the decoded bytes (when the code is DCF_OK) */
} tensor_result;

typedef struct file_result {
    int open_code;
    size_t tensors;          /* dcf_tensor_count */
    uint32_t info_crc;       /* of the tensor table (see tensor_table_crc) */
    uint32_t meta_crc;       /* of the metadata (see metadata_crc) */
    uint32_t attach_crc;     /* of the attachments: names, sizes, outcomes and bytes */
    tensor_result *t;        /* `tensors` entries (plain malloc) */
    char message[DCF_ERROR_MESSAGE_SIZE]; /* of the open error */
} file_result;

typedef struct limits {
    uint64_t max_index_length, max_tensors, max_tensor_bytes, max_scratch_bytes;
    int skip_checksums;
} limits;

static void check_err(dcf_error rc, const dcf_error_info *err) {
    CHECK((int)rc >= 0 && rc < DCF_ERROR_COUNT, "an error code outside the enum");
    if (!err || rc == DCF_OK) return;
    CHECK(err->code == rc, "err->code differs from the returned code");
    size_t n = 0;
    while (n < DCF_ERROR_MESSAGE_SIZE && err->message[n]) n++;
    CHECK(n < DCF_ERROR_MESSAGE_SIZE, "error message not NUL-terminated");
    CHECK(n > 0, "empty error message");
    for (size_t i = 0; i < n; i++)
        CHECK(err->message[i] >= 0x20 && err->message[i] <= 0x7E, "error message is not printable ASCII");
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) bug("the harness is out of memory", NULL);
    return p;
}

/* The tensor table and metadata as bytes, hashed the same way by tools/fuzz_libdcf.py:
 *   per tensor: u32 name length, name, u8 dtype, u8 rank, u64 dims, u8 layout, u8 value coding,
 *               u8 index bits, u8 codebook dtype, u32 codebook size, u32 chunk count, u64 numel
 *   per entry:  u32 key length, key, u32 value length, value  (all little-endian) */
static uint32_t tensor_info_crc(uint32_t crc, const dcf_tensor_info *t) {
    crc = crc_u64(crc, t->name_length, 4);
    crc = crc_update(crc, t->name, t->name_length);
    crc = crc_u64(crc, (uint64_t)t->dtype, 1);
    crc = crc_u64(crc, t->rank, 1);
    for (unsigned d = 0; d < t->rank; d++) crc = crc_u64(crc, t->shape[d], 8);
    crc = crc_u64(crc, (uint64_t)t->layout, 1);
    crc = crc_u64(crc, (uint64_t)t->value_coding, 1);
    crc = crc_u64(crc, t->index_bits, 1);
    crc = crc_u64(crc, t->codebook_dtype, 1);
    crc = crc_u64(crc, t->codebook_size, 4);
    crc = crc_u64(crc, t->chunk_count, 4);
    crc = crc_u64(crc, t->numel, 8);
    return crc;
}

typedef struct pass {
    const limits *lim;
    counting *alloc;
    const file_result *ref;  /* a pass to agree with (same bytes, other settings), or NULL */
    int ref_same_checks;     /* ref ran with the same checksum setting: refusals must agree too */
    int use_err;             /* pass a dcf_error_info (else NULL) */
} pass;

/* Bytes a decode call may allocate beyond dcf_scratch_size: libdcf allocates 1 byte for a request
 * of 0 (a stream of no elements), which the bound counts as 0. */
#define SCRATCH_SLACK 16

static void check_scratch(size_t used, uint64_t promised, const char *call, size_t i, int out_type) {
    if (used <= promised + SCRATCH_SLACK) return;
    char detail[160];
    snprintf(detail, sizeof detail, "%s of tensor %zu (out_type %d) allocated %zu bytes, dcf_scratch_size says %llu",
             call, i, out_type, used, (unsigned long long)promised);
    bug("a decode used more scratch than dcf_scratch_size", detail);
}

/* dcf_decode_tensor into a fresh buffer of exactly `bytes`; checks the scratch bound. */
static dcf_error decode_whole(const dcf_ctx *ctx, size_t i, int out_type, uint64_t bytes, uint8_t **out,
                              const pass *ps) {
    dcf_error_info err;
    dcf_error_info *e = ps->use_err ? &err : NULL;
    *out = NULL;
    if (bytes > SIZE_MAX / 2) return DCF_ERR_LIMIT_TENSOR_BYTES;
    uint8_t *buf = (uint8_t *)xmalloc((size_t)bytes);
    size_t base = ps->alloc->live, blocks = ps->alloc->blocks;
    ps->alloc->peak = base;
    dcf_error rc = dcf_decode_tensor(ctx, i, buf, (size_t)bytes, out_type, e);
    check_err(rc, e);
    CHECK(ps->alloc->live == base && ps->alloc->blocks == blocks, "decode_tensor did not free its scratch");
    uint64_t scratch = 0;
    if (dcf_scratch_size(ctx, i, out_type, &scratch) == DCF_OK && rc == DCF_OK)
        check_scratch(ps->alloc->peak - base, scratch, "decode_tensor", i, out_type);
    if (rc != DCF_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    return DCF_OK;
}

/* Decode tensor i chunk by chunk with out_type and compare with `whole` (NULL if the whole
 * decode failed with code `whole_code`). */
static void decode_chunks(const dcf_ctx *ctx, size_t i, const dcf_tensor_info *t, int out_type, size_t esize,
                          const uint8_t *whole, int whole_code, const pass *ps) {
    uint64_t next = 0;
    int any_failed = 0;
    for (size_t c = 0; c < t->chunk_count; c++) {
        dcf_chunk_info ci;
        dcf_error rc = dcf_get_chunk_info(ctx, i, c, &ci);
        check_err(rc, NULL);
        if (rc != DCF_OK) {
            any_failed = 1;
            continue;
        }
        if (ci.element_count > ps->lim->max_tensor_bytes / esize) {
            /* a tensor over the limit: the chunk is refused too (asked with a 1-byte buffer, which
             * is all it can be given without allocating what the limit forbids) */
            uint8_t one;
            CHECK(dcf_decode_chunk(ctx, i, c, &one, 1, out_type, NULL) != DCF_OK,
                  "a chunk of a tensor over max_tensor_bytes decodes into 1 byte");
            any_failed = 1;
            continue;
        }
        size_t n = (size_t)ci.element_count * esize;
        uint8_t *buf = (uint8_t *)xmalloc(n);
        dcf_error_info err;
        dcf_error_info *e = ps->use_err ? &err : NULL;
        size_t base = ps->alloc->live, blocks = ps->alloc->blocks;
        ps->alloc->peak = base;
        rc = dcf_decode_chunk(ctx, i, c, buf, n, out_type, e);
        check_err(rc, e);
        CHECK(ps->alloc->live == base && ps->alloc->blocks == blocks, "decode_chunk did not free its scratch");
        uint64_t scratch = 0;
        if (rc == DCF_OK && dcf_scratch_size(ctx, i, out_type, &scratch) == DCF_OK)
            check_scratch(ps->alloc->peak - base, scratch, "decode_chunk", i, out_type);
        if (rc == DCF_ERR_NO_MEMORY && ps->alloc->failed) {
            free(buf);
            return; /* the injected failure: nothing to compare */
        }
        if (g_selftest && rc == DCF_OK && n) buf[n - 1] ^= 1;
        if (rc != DCF_OK) {
            any_failed = 1;
            if (whole) bug("a chunk fails to decode, the whole tensor decodes", dcf_strerror(rc));
        } else if (whole) {
            CHECK(ci.first_element == next, "chunks do not follow each other");
            CHECK(ci.first_element + ci.element_count <= t->numel, "a chunk past the end of its tensor");
            if (n && memcmp(buf, whole + (size_t)ci.first_element * esize, n) != 0)
                bug("chunked and whole decodes differ", out_type == DCF_OUT_F32 ? "float32" : "native");
        }
        next = ci.first_element + ci.element_count;
        free(buf);
    }
    if (whole) {
        CHECK(next == t->numel || (t->numel == 0 && t->chunk_count == 0), "chunks do not cover the tensor");
    } else if (!any_failed && t->chunk_count > 0 && whole_code != DCF_ERR_LIMIT_TENSOR_BYTES &&
               whole_code != DCF_ERR_LIMIT_SCRATCH && whole_code != DCF_ERR_NO_MEMORY) {
        bug("every chunk decodes, the whole tensor does not", dcf_strerror((dcf_error)whole_code));
    }
}

static void run_pass(const uint8_t *data, size_t size, const pass *ps, file_result *res) {
    memset(res, 0, sizeof *res);
    CHECK(ps->lim->max_tensor_bytes > 0, "the harness needs a max_tensor_bytes");
    dcf_options opt;
    dcf_options_init(&opt);
    opt.allocator.malloc_fn = hook_malloc;
    opt.allocator.free_fn = hook_free;
    opt.allocator.user = ps->alloc;
    opt.max_index_length = ps->lim->max_index_length;
    opt.max_tensors = ps->lim->max_tensors;
    opt.max_tensor_bytes = ps->lim->max_tensor_bytes;
    opt.max_scratch_bytes = ps->lim->max_scratch_bytes;
    opt.skip_checksums = ps->lim->skip_checksums;
    opt.max_attachment_bytes = ps->lim->max_tensor_bytes;
    dcf_ctx *ctx = dcf_ctx_new(&opt);
    if (!ctx) {
        CHECK(ps->alloc->failed, "dcf_ctx_new returned NULL with memory to spare");
        res->open_code = DCF_ERR_NO_MEMORY;
        return;
    }
    dcf_error_info err;
    memset(&err, 0x55, sizeof err);
    dcf_error rc = dcf_open_buffer(ctx, data, size, ps->use_err ? &err : NULL);
    check_err(rc, ps->use_err ? &err : NULL);
    res->open_code = rc;
    if (rc != DCF_OK) {
        if (ps->use_err) memcpy(res->message, err.message, sizeof res->message);
        dcf_ctx_free(ctx);
        CHECK(ps->alloc->live == 0 && ps->alloc->blocks == 0, "a failed open leaks memory");
        return;
    }
    CHECK(dcf_open_buffer(ctx, data, size, NULL) == DCF_ERR_BAD_ARGUMENT, "a second open was not refused");
    size_t got_size = 0;
    CHECK(dcf_file_data(ctx, &got_size) == data && got_size == size, "dcf_file_data is not the buffer");
    CHECK(dcf_version_major(ctx) == DCF_FORMAT_VERSION_MAJOR, "opened a file of another major version");
    CHECK(dcf_alignment_log2(ctx) <= DCF_MAX_ALIGNMENT_LOG2, "alignment_log2 over the limit");

    /* metadata */
    uint32_t mcrc = 0;
    size_t mcount = dcf_metadata_count(ctx);
    CHECK(mcount <= DCF_MAX_METADATA_ENTRIES, "metadata count over the limit");
    for (size_t j = 0; j < mcount; j++) {
        const char *k, *v;
        size_t kl, vl;
        CHECK(dcf_metadata_get(ctx, j, &k, &kl, &v, &vl) == DCF_OK, "dcf_metadata_get failed");
        CHECK(k[kl] == 0 && v[vl] == 0, "metadata strings not NUL-terminated");
        mcrc = crc_u64(mcrc, kl, 4);
        mcrc = crc_update(mcrc, k, kl);
        mcrc = crc_u64(mcrc, vl, 4);
        mcrc = crc_update(mcrc, v, vl);
        const char *v2;
        size_t vl2;
        CHECK(dcf_metadata_find(ctx, k, kl, &v2, &vl2) == DCF_OK && v2 == v && vl2 == vl,
              "dcf_metadata_find does not find a key");
    }
    {
        const char *k, *v;
        size_t kl, vl;
        CHECK(dcf_metadata_get(ctx, mcount, &k, &kl, &v, &vl) != DCF_OK, "metadata index out of range accepted");
    }
    res->meta_crc = mcrc;

    /* attachments (1.1): per attachment u32 name length, name, u64 size, u8 outcome (0 decoded,
     * 1 refused, 2 over the limit: not asked), then its bytes when decoded */
    uint32_t acrc = 0;
    size_t acount = dcf_attachment_count(ctx);
    for (size_t j = 0; j < acount; j++) {
        const char *name;
        size_t nl;
        uint64_t asize;
        CHECK(dcf_get_attachment_info(ctx, j, &name, &nl, &asize) == DCF_OK, "dcf_get_attachment_info failed");
        CHECK(name[nl] == 0, "attachment name not NUL-terminated");
        acrc = crc_u64(acrc, nl, 4);
        acrc = crc_update(acrc, name, nl);
        acrc = crc_u64(acrc, asize, 8);
        if (asize > ps->lim->max_tensor_bytes) {
            uint8_t one;
            CHECK(dcf_decode_attachment(ctx, j, &one, 1, NULL) != DCF_OK, "an attachment over the limit decodes into 1 byte");
            acrc = crc_u64(acrc, 2, 1);
            continue;
        }
        uint8_t *buf = (uint8_t *)xmalloc((size_t)asize);
        dcf_error_info ea;
        size_t base = ps->alloc->live, blocks = ps->alloc->blocks;
        if (asize > 0 && asize <= (1u << 20))
            CHECK(dcf_decode_attachment(ctx, j, buf, (size_t)asize - 1, NULL) != DCF_OK,
                  "an attachment buffer one byte short was accepted");
        dcf_error arc = dcf_decode_attachment(ctx, j, buf, (size_t)asize, ps->use_err ? &ea : NULL);
        check_err(arc, ps->use_err ? &ea : NULL);
        CHECK(ps->alloc->live == base && ps->alloc->blocks == blocks, "dcf_decode_attachment did not free its scratch");
        if (arc == DCF_ERR_NO_MEMORY && ps->alloc->failed) arc = DCF_ERR_STREAM_CHECKSUM; /* only the code differs */
        acrc = crc_u64(acrc, arc == DCF_OK ? 0 : 1, 1);
        if (arc == DCF_OK) acrc = crc_update(acrc, buf, (size_t)asize);
        free(buf);
    }
    {
        const char *name;
        size_t nl;
        uint64_t asize;
        CHECK(dcf_get_attachment_info(ctx, acount, &name, &nl, &asize) != DCF_OK, "attachment index out of range accepted");
    }
    res->attach_crc = acrc;

    /* tensors */
    size_t n = dcf_tensor_count(ctx);
    CHECK(n <= DCF_MAX_TENSORS, "tensor count over the limit");
    res->tensors = n;
    res->t = (tensor_result *)xmalloc(n * sizeof *res->t);
    uint32_t icrc = 0;
    {
        dcf_tensor_info t;
        CHECK(dcf_get_tensor_info(ctx, n, &t) != DCF_OK, "tensor index out of range accepted");
    }
    for (size_t i = 0; i < n; i++) {
        dcf_tensor_info t;
        tensor_result *r = &res->t[i];
        memset(r, 0, sizeof *r);
        r->code = r->f32_code = DCF_ERR_BAD_ARGUMENT;
        CHECK(dcf_get_tensor_info(ctx, i, &t) == DCF_OK, "dcf_get_tensor_info failed");
        icrc = tensor_info_crc(icrc, &t);
        CHECK(t.name[t.name_length] == 0, "tensor name not NUL-terminated");
        size_t found = (size_t)-1;
        CHECK(dcf_find_tensor(ctx, t.name, t.name_length, &found) == DCF_OK && found == i,
              "dcf_find_tensor does not find a tensor");
        CHECK(t.rank <= DCF_MAX_RANK, "rank over the limit");
        uint64_t numel = 1;
        int empty = 0;
        for (unsigned d = 0; d < DCF_MAX_RANK; d++) {
            if (d >= t.rank) {
                CHECK(t.shape[d] == 0, "shape beyond the rank not zero");
                continue;
            }
            if (t.shape[d] == 0) empty = 1;
        }
        if (empty) {
            numel = 0;
        } else {
            for (unsigned d = 0; d < t.rank; d++) {
                CHECK(numel <= DCF_MAX_TENSOR_ELEMENTS / t.shape[d], "numel over the limit after open");
                numel *= t.shape[d];
            }
        }
        CHECK(t.numel == numel, "numel is not the product of the shape");
        size_t esize = dcf_dtype_size(t.dtype);
        CHECK(esize > 0 && dcf_dtype_name(t.dtype) != NULL, "an unknown dtype after open");
        CHECK(t.decoded_bytes == numel * esize, "decoded_bytes is not numel x element size");

        /* whole, native */
        uint64_t bytes = 0;
        dcf_error_info e2;
        rc = dcf_decoded_size(ctx, i, DCF_OUT_NATIVE, &bytes, ps->use_err ? &e2 : NULL);
        check_err(rc, ps->use_err ? &e2 : NULL);
        uint8_t *whole = NULL;
        if (rc == DCF_OK) {
            CHECK(bytes == t.decoded_bytes, "dcf_decoded_size differs from decoded_bytes");
            uint64_t again = 0;
            CHECK(dcf_decoded_size(ctx, i, (int)t.dtype, &again, NULL) == DCF_OK && again == bytes,
                  "the explicit dtype is not the native one");
            CHECK(dcf_decoded_size(ctx, i, 77, &again, NULL) == DCF_ERR_OUT_TYPE, "out_type 77 accepted");
            if (bytes > 0 && bytes <= (1u << 20)) {
                uint8_t *small = (uint8_t *)xmalloc((size_t)bytes - 1);
                dcf_error s = dcf_decode_tensor(ctx, i, small, (size_t)bytes - 1, DCF_OUT_NATIVE, NULL);
                CHECK(s != DCF_OK, "a buffer one byte short was accepted");
                CHECK(dcf_decode_tensor(ctx, i, NULL, (size_t)bytes, DCF_OUT_NATIVE, NULL) != DCF_OK,
                      "a NULL buffer was accepted");
                free(small);
            }
            rc = decode_whole(ctx, i, DCF_OUT_NATIVE, bytes, &whole, ps);
        }
        r->code = rc;
        if (whole) r->crc = crc_update(0, whole, (size_t)bytes);
        if (rc == DCF_ERR_NO_MEMORY && ps->alloc->failed) {
            r->f32_code = DCF_ERR_NO_MEMORY;
            goto done_tensor;
        }
        decode_chunks(ctx, i, &t, DCF_OUT_NATIVE, esize, whole, rc, ps);

        /* whole and chunked, float32 */
        uint64_t fbytes = 0;
        rc = dcf_decoded_size(ctx, i, DCF_OUT_F32, &fbytes, NULL);
        if (!is_float(t.dtype)) {
            CHECK(rc == DCF_ERR_OUT_TYPE, "float32 output of an integer or BOOL tensor accepted");
            r->f32_code = DCF_ERR_OUT_TYPE;
        } else {
            uint8_t *f32 = NULL;
            if (rc == DCF_OK) {
                CHECK(fbytes == numel * 4, "float32 decoded size is not 4 x numel");
                rc = decode_whole(ctx, i, DCF_OUT_F32, fbytes, &f32, ps);
            }
            r->f32_code = rc;
            if (f32) {
                r->f32_crc = crc_update(0, f32, (size_t)fbytes);
                if (whole) CHECK(f32_matches(t.dtype, whole, f32, numel), "float32 output is not the conversion of the native output");
            }
            if (!(rc == DCF_ERR_NO_MEMORY && ps->alloc->failed)) {
                if (whole && !f32 && rc != DCF_ERR_LIMIT_SCRATCH)
                    bug("native decode succeeds, float32 decode fails", dcf_strerror(rc));
                if (f32 && !whole && r->code != DCF_ERR_LIMIT_SCRATCH && r->code != DCF_ERR_LIMIT_TENSOR_BYTES)
                    bug("float32 decode succeeds, native decode fails", dcf_strerror((dcf_error)r->code));
                decode_chunks(ctx, i, &t, DCF_OUT_F32, 4, f32, rc, ps);
            }
            free(f32);
        }
    done_tensor:
        {
            size_t entry = i;
            CHECK(dcf_tensor_entry(ctx, i, &entry) == DCF_OK && entry <= i, "dcf_tensor_entry of a listed tensor");
            CHECK((entry == i) == (i < n - dcf_alias_count(ctx)), "an alias among the entries, or an entry among the aliases");
            if (entry != i && r->code == DCF_OK && res->t[entry].code == DCF_OK)
                CHECK(r->crc == res->t[entry].crc, "an alias decodes differently from its target");
        }
        if (ps->ref && ps->ref->open_code == DCF_OK && i < ps->ref->tensors) {
            const tensor_result *q = &ps->ref->t[i];
            if (r->code == DCF_OK && q->code == DCF_OK) CHECK(r->crc == q->crc, "two passes decode different values");
            if (r->f32_code == DCF_OK && q->f32_code == DCF_OK)
                CHECK(r->f32_crc == q->f32_crc, "two passes decode different float32 values");
            if (ps->ref_same_checks) {
                CHECK(r->code == q->code || (ps->alloc->failed && r->code == DCF_ERR_NO_MEMORY),
                      "a failed allocation changes another result, or gives an error other than DCF_ERR_NO_MEMORY");
                CHECK(r->f32_code == q->f32_code || (ps->alloc->failed && r->f32_code == DCF_ERR_NO_MEMORY),
                      "a failed allocation changes another float32 result, or gives an error other than DCF_ERR_NO_MEMORY");
            }
        }
        free(whole);
    }
    res->info_crc = icrc;
    dcf_ctx_free(ctx);
    CHECK(ps->alloc->live == 0 && ps->alloc->blocks == 0, "dcf_ctx_free left memory allocated");
}

static void free_result(file_result *r) {
    free(r->t);
    r->t = NULL;
}

/* Every pass over one input; `out` gets the first pass (checksums as `lim` says). */
static void fuzz_input(const uint8_t *data, size_t size, const limits *lim, int extra_passes, file_result *out) {
    counting a1 = {0};
    pass p1 = {lim, &a1, NULL, 0, 1};
    run_pass(data, size, &p1, out);
    if (!extra_passes) return;

    /* The other checksum setting: the pass that skips them (K) must open what the pass that
     * checks them (V) opens, and decode what it decodes, to the same values. */
    limits other = *lim;
    other.skip_checksums = !lim->skip_checksums;
    counting a2 = {0};
    file_result r2;
    pass p2 = {&other, &a2, out, 0, 1};
    run_pass(data, size, &p2, &r2);
    const file_result *v = lim->skip_checksums ? &r2 : out, *k = lim->skip_checksums ? out : &r2;
    if (v->open_code == DCF_OK) {
        CHECK(k->open_code == DCF_OK && k->tensors == v->tensors, "an open with checksums succeeds, the one without fails");
        for (size_t i = 0; i < v->tensors; i++) {
            if (v->t[i].code == DCF_OK) CHECK(k->t[i].code == DCF_OK, "a decode with checksums succeeds, the one without fails");
            if (v->t[i].f32_code == DCF_OK) CHECK(k->t[i].f32_code == DCF_OK, "a float32 decode with checksums succeeds, the one without fails");
        }
    }
    free_result(&r2);

    /* One allocation fails, the one a hash of the input chooses: that call (only) must fail with
     * DCF_ERR_NO_MEMORY, with nothing leaked; every other result stays the same. */
    if (a1.calls > 0) {
        uint32_t h = crc_update(0, data, size < 4096 ? size : 4096);
        counting a3 = {0};
        a3.fail_at = 1 + h % a1.calls;
        file_result r3;
        pass p3 = {lim, &a3, out, 1, (int)(h >> 31)};
        run_pass(data, size, &p3, &r3);
        CHECK(r3.open_code == out->open_code || (a3.failed && r3.open_code == DCF_ERR_NO_MEMORY),
              "a failed allocation gives an error other than DCF_ERR_NO_MEMORY");
        free_result(&r3);
    }
}

static void check_strerror(void) {
    for (int c = 0; c <= DCF_ERROR_COUNT + 3; c++) {
        const char *s = dcf_strerror((dcf_error)c);
        CHECK(s != NULL && s[0] != 0, "dcf_strerror gives no text");
    }
    CHECK(dcf_lib_version() != NULL && strcmp(dcf_lib_version(), DCF_LIB_VERSION_STRING) == 0, "library version");
    for (int d = 0; d < 20; d++) {
        size_t s = dcf_dtype_size((dcf_dtype)d);
        CHECK((s == 0) == (d < DCF_F32 || d > DCF_F8_E5M2), "dcf_dtype_size of an unknown dtype");
    }
}

/* ------------------------------------------------------------------------------------------ */
/* libFuzzer */

#ifndef DCF_FUZZ_DRIVER
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    crc_init();
    check_strerror();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Lowered limits so that a campaign stays within -rss_limit_mb (each tensor is decoded into
     * four buffers at once at most: native and float32, whole and one chunk). */
    limits lim = {1u << 20, 4096, 8u << 20, 64u << 20, 1};
    file_result r;
    fuzz_input(data, size, &lim, 1, &r);
    free_result(&r);
    return 0;
}
#endif

/* ------------------------------------------------------------------------------------------ */
/* The sanitizer driver */

#ifdef DCF_FUZZ_DRIVER
#include <errno.h>
#include <signal.h>
#include <unistd.h>

static unsigned g_timeout = 0;
static char g_name_buf[96];

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "\nLIBDCF HANG: an input ran past the driver's --timeout\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(124);
}

/* One result line:  TAG OPEN_CODE [TENSORS INFO_CRC META_CRC ATTACH_CRC {CODE:CRC:F32_CODE:F32_CRC}...]
 * (codes as numbers of dcf_error; CRCs in hex; a CRC is 0 where its code is not DCF_OK). */
static void print_result(const char *tag, const file_result *r) {
    printf("%s %d", tag, r->open_code);
    if (r->open_code == DCF_OK) {
        printf(" %zu %08x %08x %08x", r->tensors, r->info_crc, r->meta_crc, r->attach_crc);
        for (size_t i = 0; i < r->tensors; i++)
            printf(" %d:%08x:%d:%08x", r->t[i].code, r->t[i].crc, r->t[i].f32_code, r->t[i].f32_crc);
    } else if (r->message[0]) {
        printf(" # %s", r->message);
    }
    putchar('\n');
    fflush(stdout);
}

static int read_exact(FILE *f, void *buf, size_t n) {
    return fread(buf, 1, n, f) == n;
}

static uint8_t *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = (uint8_t *)xmalloc(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            uint8_t *b = (uint8_t *)realloc(buf, cap);
            if (!b) bug("the harness is out of memory", NULL);
            buf = b;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    fclose(f);
    /* an exact-size copy, so that a read past the end is seen */
    uint8_t *exact = (uint8_t *)xmalloc(n);
    memcpy(exact, buf, n);
    free(buf);
    *size = n;
    return exact;
}

static int accepted(const file_result *r) {
    if (r->open_code != DCF_OK) return 0;
    for (size_t i = 0; i < r->tensors; i++)
        if (r->t[i].code != DCF_OK) return 0;
    return 1;
}

/* --truncations: every prefix of the file, and every cut of its data section with the index and
 * trailer kept, each in a buffer of exactly its size. Prints one line per file:
 *   PATH truncations N accepted A CODE:COUNT...   (the open or first decode error of each) */
static void truncations(const char *path, const uint8_t *data, size_t size, const limits *lim, int extra) {
    unsigned long long count[DCF_ERROR_COUNT + 1] = {0}, n = 0, ok = 0;
    size_t index_at = size;
    if (size >= 32) {
        uint64_t index_length = 0;
        for (int b = 0; b < 8; b++) index_length |= (uint64_t)data[size - 16 + b] << (8 * b);
        if (index_length <= size - 32) index_at = size - 16 - (size_t)index_length;
    }
    for (size_t cut = 0; cut < size + (index_at < size ? index_at : 0); cut++) {
        size_t len = cut < size ? cut : (cut - size) + (size - index_at);
        if (cut >= size && cut - size < 16) continue; /* a cut inside the preamble: a prefix already */
        uint8_t *buf = (uint8_t *)xmalloc(len);
        if (cut < size) {
            memcpy(buf, data, len);
        } else {
            size_t keep = cut - size;
            memcpy(buf, data, keep);
            memcpy(buf + keep, data + index_at, size - index_at);
        }
        snprintf(g_name_buf, sizeof g_name_buf, "%s cut %zu", cut < size ? "prefix" : "data", cut < size ? cut : cut - size);
        g_input_name = g_name_buf;
        if (g_timeout) alarm(g_timeout);
        file_result r;
        fuzz_input(buf, len, lim, extra, &r);
        if (g_timeout) alarm(0);
        n++;
        if (accepted(&r)) ok++;
        else {
            int code = r.open_code;
            for (size_t i = 0; code == DCF_OK && i < r.tensors; i++) code = r.t[i].code;
            count[code]++;
        }
        free_result(&r);
        free(buf);
    }
    printf("%s truncations %llu accepted %llu", path, n, ok);
    for (int c = 0; c <= DCF_ERROR_COUNT; c++)
        if (count[c]) printf(" %d:%llu", c, count[c]);
    putchar('\n');
    fflush(stdout);
}

static void usage(void) {
    fputs("usage: dcf_fuzz_driver [--skip-checksums] [--max-tensor-bytes N] [--max-scratch-bytes N]\n"
          "                       [--timeout SECONDS] [--no-extra-passes] [--selftest]\n"
          "                       (--stdin | [--truncations] FILE...)\n"
          "--stdin reads inputs as: u64 length (little-endian), u32 flags (bit 0: skip checksums), bytes\n",
          stderr);
}

int main(int argc, char **argv) {
    crc_init();
    check_strerror();
    /* the Python reader's limits (tests/fuzz_helpers.py: FUZZ_MAX_TENSOR_BYTES) */
    limits lim = {0, 0, 64u << 20, 0, 0};
    int from_stdin = 0, extra = 1, cuts = 0, first_file = argc;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--stdin")) from_stdin = 1;
        else if (!strcmp(argv[a], "--skip-checksums")) lim.skip_checksums = 1;
        else if (!strcmp(argv[a], "--no-extra-passes")) extra = 0;
        else if (!strcmp(argv[a], "--selftest")) g_selftest = 1;
        else if (!strcmp(argv[a], "--truncations")) cuts = 1;
        else if (!strcmp(argv[a], "--max-tensor-bytes") && a + 1 < argc) lim.max_tensor_bytes = strtoull(argv[++a], NULL, 0);
        else if (!strcmp(argv[a], "--max-scratch-bytes") && a + 1 < argc) lim.max_scratch_bytes = strtoull(argv[++a], NULL, 0);
        else if (!strcmp(argv[a], "--timeout") && a + 1 < argc) g_timeout = (unsigned)strtoul(argv[++a], NULL, 0);
        else if (!strcmp(argv[a], "--help")) { usage(); return 0; }
        else if (argv[a][0] == '-' && argv[a][1]) { usage(); return 2; }
        else { first_file = a; break; }
    }
    if (g_timeout) signal(SIGALRM, on_alarm);
    if (from_stdin) {
        for (unsigned long long k = 0;; k++) {
            uint8_t head[12];
            size_t got = fread(head, 1, 12, stdin);
            if (got == 0) break;
            if (got != 12) { fputs("dcf_fuzz_driver: a truncated record header on stdin\n", stderr); return 2; }
            uint64_t len = 0;
            for (int i = 0; i < 8; i++) len |= (uint64_t)head[i] << (8 * i);
            uint32_t flags = (uint32_t)head[8] | (uint32_t)head[9] << 8 | (uint32_t)head[10] << 16 | (uint32_t)head[11] << 24;
            if (len > (1u << 30)) { fputs("dcf_fuzz_driver: a record over 1 GiB\n", stderr); return 2; }
            uint8_t *data = (uint8_t *)xmalloc((size_t)len);
            if (!read_exact(stdin, data, (size_t)len)) { fputs("dcf_fuzz_driver: a truncated record\n", stderr); return 2; }
            snprintf(g_name_buf, sizeof g_name_buf, "stdin record %llu", k);
            g_input_name = g_name_buf;
            limits l = lim;
            l.skip_checksums = (int)(flags & 1);
            if (g_timeout) alarm(g_timeout);
            file_result r;
            fuzz_input(data, (size_t)len, &l, extra, &r);
            if (g_timeout) alarm(0);
            char tag[32];
            snprintf(tag, sizeof tag, "%llu", k);
            print_result(tag, &r);
            free_result(&r);
            free(data);
        }
        return 0;
    }
    if (first_file >= argc) { usage(); return 2; }
    int status = 0;
    for (int a = first_file; a < argc; a++) {
        size_t size = 0;
        uint8_t *data = read_file(argv[a], &size);
        if (!data) {
            fprintf(stderr, "dcf_fuzz_driver: cannot read %s: %s\n", argv[a], strerror(errno));
            status = 2;
            continue;
        }
        if (cuts) {
            truncations(argv[a], data, size, &lim, extra);
            free(data);
            continue;
        }
        g_input_name = argv[a];
        if (g_timeout) alarm(g_timeout);
        file_result r;
        fuzz_input(data, size, &lim, extra, &r);
        if (g_timeout) alarm(0);
        print_result(argv[a], &r);
        free_result(&r);
        free(data);
    }
    return status;
}
#endif
