/*
 * libdcf: a portable C99 decoder for .dcf files (spec/FORMAT.md, versions 1.0, 1.1 and 1.2:
 * tensors, metadata, 1.1's attachments and aliases, and 1.2's float8 tensors).
 *
 * Depends on libc and, for ZSTD streams, on libzstd's decompression API; compiled with
 * -DDCF_NO_ZSTD it needs libc only, and refuses ZSTD streams with DCF_ERR_ZSTD_UNSUPPORTED.
 *
 * Use:
 *
 *     dcf_ctx *ctx = dcf_ctx_new(NULL);                 // default options and limits
 *     dcf_error_info err;
 *     if (dcf_open_file(ctx, "model.dcf", &err) != DCF_OK) { puts(err.message); ... }
 *     for (size_t i = 0; i < dcf_tensor_count(ctx); i++) {
 *         dcf_tensor_info t;
 *         dcf_get_tensor_info(ctx, i, &t);
 *         uint64_t bytes;
 *         dcf_decoded_size(ctx, i, DCF_OUT_F32, &bytes, NULL);   // t.dtype must be a float type
 *         float *w = my_alloc(bytes);
 *         if (dcf_decode_tensor(ctx, i, w, bytes, DCF_OUT_F32, &err) != DCF_OK) ...
 *     }
 *     dcf_ctx_free(ctx);
 *
 * Guarantees:
 * - Every rule of spec/FORMAT.md is enforced, as the Python reader (dcformat) enforces it: a file
 *   either decodes to exactly the values the Python reader returns, or a call fails with an error
 *   code and a message naming what is wrong. After a failed decode call the output buffer holds
 *   unspecified bytes; never use them.
 * - No global state. No undefined behaviour on any input. All memory comes from the allocator in
 *   dcf_options (default malloc/free); the hooks are never asked for 0 bytes (what needs none
 *   costs none), so the bounds below hold exactly.
 * - Memory: opening allocates the parsed index (a small multiple of the index length, which is at
 *   most max_index_length); dcf_open_file also maps the file (POSIX mmap) or, where mmap is not
 *   available or DCF_NO_MMAP is defined, reads it into allocator memory. A decode call allocates
 *   scratch memory for the duration of the call only (dcf_scratch_size gives the exact bound of a
 *   tensor), per chunk at most:
 *       the codebook, converted:   k x (codebook element size + output element size) bytes;
 *       CSR chunk:                 4 x rows + (gap size + value size) x entries;
 *       DENSE chunk:               nothing, but codebook symbols not Huffman-coded (1 or 2 bytes
 *                                  per element) and, converting a RAW F16/BF16/F64 tensor to
 *                                  DCF_OUT_F32, the chunk in its own dtype (<= 8 bytes per element);
 *       inside one stream:         BYTEPLANES: its elements' bytes (<= 8 per element);
 *                                  HUFFMAN: its tables, at most 64 KiB + 528 KiB;
 *   where value size is the stored element size (1 or 2 for codebook symbols, the dtype's size
 *   for RAW values) and entries <= elements of the chunk. So scratch stays below about 20 bytes
 *   per element of the largest chunk plus 1 MiB, and at most max_scratch_bytes
 *   (DCF_ERR_LIMIT_SCRATCH beyond). libzstd allocates its own decompression context (about
 *   100 KiB) per ZSTD stream, with malloc (not the hooks).
 * - Threads: opening writes the context; after a successful open the context is read-only, so
 *   any number of threads may call the query and decode functions on one context at once (each
 *   with its own output buffer and dcf_error_info). The allocator hooks must then be thread-safe.
 *
 * Errors: every function that can fail returns a dcf_error (DCF_OK = 0 on success). Functions
 * that read the file take an optional `dcf_error_info *err` (may be NULL): on failure it receives
 * the code and a one-line message, e.g. "tensor 'fc.weight': VALUES stream checksum mismatch".
 * dcf_strerror(code) gives a fixed description of each code.
 */
#ifndef DCF_H
#define DCF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DCF_LIB_VERSION_MAJOR 0
#define DCF_LIB_VERSION_MINOR 1
#define DCF_LIB_VERSION_PATCH 0
#define DCF_LIB_VERSION_STRING "0.1.0"

/* The format version this library implements: 1.2 (1.0 files; 1.1's extension records:
 * attachments and aliases, spec 4.6; 1.2's float8 dtypes, spec 4.3.1). Files of a newer minor
 * version are read as 1.2: unknown enum values are rejected where they are met, unknown critical
 * extension records refuse the file. A float8 dtype in a file of version 1.0 or 1.1 is corrupted
 * (DCF_ERR_BAD_ENUM, naming the version it needs). */
#define DCF_FORMAT_VERSION_MAJOR 1
#define DCF_FORMAT_VERSION_MINOR 2

/* Limits of spec/FORMAT.md section 9. */
#define DCF_MAX_INDEX_LENGTH 104857600u
#define DCF_MAX_TENSORS 1048576u
#define DCF_MAX_METADATA_ENTRIES 65536u
#define DCF_MAX_NAME_LENGTH 4096u
#define DCF_MAX_RANK 8
#define DCF_MAX_TENSOR_ELEMENTS ((uint64_t)1 << 40)
#define DCF_MAX_CHUNK_ELEMENTS ((uint64_t)1 << 28)
#define DCF_MAX_CODEBOOK_SIZE 65536u
#define DCF_MAX_INDEX_BITS 16
#define DCF_MAX_CODE_LENGTH 16
#define DCF_MAX_HUFFMAN_LANES 8
#define DCF_MAX_HUFFMAN_ALPHABET 65536u
#define DCF_MAX_BITPACK_WIDTH 32
#define DCF_MAX_ZSTD_EXPANSION 65536u
#define DCF_MAX_ALIGNMENT_LOG2 12
#define DCF_MAX_EXTENSION_RECORDS 2097152u
#define DCF_MAX_ATTACHMENTS 65536u
#define DCF_MAX_ATTACHMENT_BYTES ((uint64_t)1 << 31)
#define DCF_DEFAULT_MAX_ATTACHMENT_BYTES ((uint64_t)1 << 30)
/* The reference decoder's own limits (spec section 9), also this library's defaults. */
#define DCF_DEFAULT_MAX_TENSOR_BYTES ((uint64_t)1 << 34)
#define DCF_DEFAULT_MAX_SCRATCH_BYTES ((uint64_t)1 << 34)
#define DCF_MAX_EMPTY_SHAPE_PRODUCT (((uint64_t)1 << 60) - 1)

/* Element types of decoded tensors (spec 4.3). */
typedef enum dcf_dtype {
    DCF_F32 = 1,
    DCF_F16 = 2,
    DCF_BF16 = 3,
    DCF_F64 = 4,
    DCF_I8 = 5,
    DCF_I16 = 6,
    DCF_I32 = 7,
    DCF_I64 = 8,
    DCF_U8 = 9,
    DCF_U16 = 10,
    DCF_U32 = 11,
    DCF_U64 = 12,
    DCF_BOOL = 13,
    /* format 1.2 (spec 4.3.1): one byte each; safetensors F8_E4M3 / F8_E5M2, torch float8_e4m3fn /
     * float8_e5m2. A float8 tensor with a codebook has a codebook of its own dtype. */
    DCF_F8_E4M3 = 14, /* 4 exponent bits (bias 7), 3 significand bits; no infinity, NaN 0x7F/0xFF */
    DCF_F8_E5M2 = 15  /* 5 exponent bits (bias 15), 2 significand bits; IEEE-like: the top byte of an F16 */
} dcf_dtype;

/* What a decode call writes: the tensor's own dtype (DCF_OUT_NATIVE, or the tensor's dtype
 * given explicitly), or float32 (DCF_OUT_F32: floating tensors only, converted with IEEE
 * round-to-nearest-even as numpy's astype(float32) does; float8 tensors exactly, by spec 4.3.1,
 * each NaN keeping its sign and significand: F8_E4M3 0x7F -> 0x7FF00000; integer and BOOL tensors
 * refuse it with DCF_ERR_OUT_TYPE). Elements are written in the host's byte order, packed, C order. */
#define DCF_OUT_NATIVE 0
#define DCF_OUT_F32 DCF_F32

typedef enum dcf_layout { DCF_DENSE = 0, DCF_CSR = 1 } dcf_layout;
typedef enum dcf_value_coding { DCF_RAW = 0, DCF_CODEBOOK = 1 } dcf_value_coding;
typedef enum dcf_codec {
    DCF_CODEC_PLAIN = 0,
    DCF_CODEC_BITPACK = 1,
    DCF_CODEC_HUFFMAN = 2,
    DCF_CODEC_ZSTD = 3,
    DCF_CODEC_BYTEPLANES = 4
} dcf_codec;

typedef enum dcf_error {
    DCF_OK = 0,
    /* the file's structure */
    DCF_ERR_TRUNCATED,          /* the file, the index or a structure in it ends early */
    DCF_ERR_BAD_MAGIC,          /* the file does not start with the dcf magic */
    DCF_ERR_BAD_END_MAGIC,      /* the last 4 bytes are not the dcf magic (truncated file?) */
    DCF_ERR_UNSUPPORTED_VERSION,/* a major version other than 1 */
    DCF_ERR_RESERVED,           /* a reserved field is not zero */
    DCF_ERR_INDEX_CHECKSUM,     /* the index CRC-32 does not match */
    DCF_ERR_STREAM_CHECKSUM,    /* a stream's CRC-32 does not match */
    DCF_ERR_OFFSET,             /* a stream past the data section, non-zero padding, a hole */
    DCF_ERR_INDEX_LEFTOVER,     /* bytes left over at the end of the index */
    DCF_ERR_BAD_UTF8,           /* a name, key or value is not valid UTF-8 */
    DCF_ERR_DUPLICATE_NAME,     /* a tensor name appears twice */
    DCF_ERR_DUPLICATE_KEY,      /* a metadata key appears twice */
    DCF_ERR_BAD_ENUM,           /* unknown dtype, layout, value coding, codebook dtype or codec */
    DCF_ERR_BAD_FIELD,          /* a field out of its range or inconsistent with the others */
    DCF_ERR_COUNT_MISMATCH,     /* counts that do not add up (chunks, rows, entries, lengths) */
    /* limits of the spec (section 9) */
    DCF_ERR_LIMIT_INDEX_LENGTH,
    DCF_ERR_LIMIT_TENSORS,
    DCF_ERR_LIMIT_METADATA,
    DCF_ERR_LIMIT_RANK,
    DCF_ERR_LIMIT_ELEMENTS,      /* numel > MAX_TENSOR_ELEMENTS */
    DCF_ERR_LIMIT_CHUNK_ELEMENTS,/* a chunk covers more than MAX_CHUNK_ELEMENTS */
    DCF_ERR_LIMIT_CODEBOOK_SIZE,
    DCF_ERR_LIMIT_EXPANSION,     /* a ZSTD stream claims more than 65536 bytes per stored byte */
    DCF_ERR_LIMIT_EMPTY_SHAPE,   /* empty tensor with non-zero dims multiplying past 2^60 - 1 */
    DCF_ERR_LIMIT_EXTENSIONS,    /* too many extension records, attachments, or names */
    DCF_ERR_LIMIT_ATTACHMENT_BYTES, /* an attachment over MAX_ATTACHMENT_BYTES or max_attachment_bytes */
    DCF_ERR_BAD_EXTENSION,       /* an extension record breaks its rules (flags, payload, names) */
    DCF_ERR_CRITICAL_EXTENSION,  /* a critical extension record of a type this library does not know */
    /* this decoder's own limits (dcf_options) */
    DCF_ERR_LIMIT_TENSOR_BYTES,  /* a tensor decodes to more than max_tensor_bytes */
    DCF_ERR_LIMIT_SCRATCH,       /* decoding needs more scratch than max_scratch_bytes */
    /* codecs */
    DCF_ERR_BAD_CODEC_PARAM,     /* a codec's param or header field is invalid */
    DCF_ERR_HUFFMAN_TABLE,       /* code lengths: no symbol, over-subscribed, incomplete, bounds */
    DCF_ERR_HUFFMAN_CODE,        /* bits that match no code */
    DCF_ERR_PADDING,             /* non-zero padding bits */
    DCF_ERR_VALUE_BOUND,         /* an element breaks its bound (symbol >= k, BOOL byte > 1,
                                    row count > cols, gap >= 2^index_bits) */
    DCF_ERR_CSR_POSITION,        /* a CSR entry lies at a column >= cols */
    DCF_ERR_ZSTD,                /* a ZSTD stream is not one valid frame of the stated size */
    DCF_ERR_ZSTD_UNSUPPORTED,    /* this libdcf was built without zstd (DCF_NO_ZSTD) */
    /* the caller */
    DCF_ERR_BUFFER_TOO_SMALL,    /* out_size is smaller than the decoded size */
    DCF_ERR_BAD_ARGUMENT,        /* a NULL pointer, an index out of range, a context misused */
    DCF_ERR_OUT_TYPE,            /* out_type is neither the tensor's dtype nor F32 of a float */
    DCF_ERR_NOT_FOUND,           /* no tensor or metadata key of that name */
    DCF_ERR_NO_MEMORY,           /* the allocator returned NULL */
    DCF_ERR_IO,                  /* the file could not be opened, mapped or read */
    DCF_ERROR_COUNT              /* the number of codes above; not an error */
} dcf_error;

/* A fixed English description of `code` (never NULL). */
const char *dcf_strerror(dcf_error code);

/* Optional per-call error details. */
#define DCF_ERROR_MESSAGE_SIZE 320
typedef struct dcf_error_info {
    dcf_error code;
    char message[DCF_ERROR_MESSAGE_SIZE]; /* one line, NUL-terminated, printable ASCII: names
                                             from the file are escaped and shortened */
} dcf_error_info;

/* Allocator hooks: both set, or both NULL for malloc/free. free_fn(user, NULL) must be a no-op. */
typedef struct dcf_allocator {
    void *(*malloc_fn)(void *user, size_t size);
    void (*free_fn)(void *user, void *ptr);
    void *user;
} dcf_allocator;

typedef struct dcf_options {
    dcf_allocator allocator;
    /* Limits the caller may lower (values above the spec's limit are treated as the spec's;
     * 0 means the default). Exceeding one gives the DCF_ERR_LIMIT_* error that names it. */
    uint64_t max_index_length;  /* default and cap: DCF_MAX_INDEX_LENGTH */
    uint64_t max_tensors;       /* default and cap: DCF_MAX_TENSORS */
    uint64_t max_tensor_bytes;  /* decoded bytes of one tensor (numel x dtype size, checked
                                   in the tensor's own dtype); default 2^34 (16 GiB) */
    uint64_t max_scratch_bytes; /* scratch of one decode call; default 2^34 */
    int skip_checksums;         /* non-zero: do not verify the index and stream CRC-32s
                                   (default 0: verify, as the Python reader does) */
    uint64_t max_attachment_bytes; /* bytes of one attachment decoded; default 2^30 (1 GiB) */
} dcf_options;

/* Fill `options` with the defaults (malloc/free, the limits above, checksums verified). */
void dcf_options_init(dcf_options *options);

typedef struct dcf_ctx dcf_ctx;

/* A new context with a copy of `options` (NULL: the defaults); NULL if out of memory or if the
 * allocator hooks are half set. */
dcf_ctx *dcf_ctx_new(const dcf_options *options);
/* Free the context, its parsed index and its file mapping (the caller's buffer is not touched).
 * NULL is allowed. */
void dcf_ctx_free(dcf_ctx *ctx);

/* Open a file held in memory: `buf` (size bytes) must stay valid and unchanged until
 * dcf_ctx_free. Parses and checks the preamble, trailer, index (CRC included) and the placement
 * of every stream (spec 3-5); streams are read only when decoded. A context opens one file once:
 * a second open gives DCF_ERR_BAD_ARGUMENT. After a failed open the context can only be freed. */
dcf_error dcf_open_buffer(dcf_ctx *ctx, const void *buf, size_t size, dcf_error_info *err);
/* Open the file at `path` (memory-mapped read-only on POSIX; else read into allocator memory). */
dcf_error dcf_open_file(dcf_ctx *ctx, const char *path, dcf_error_info *err);

/* File-level facts (0 before a successful open). */
unsigned dcf_version_major(const dcf_ctx *ctx);
unsigned dcf_version_minor(const dcf_ctx *ctx);
unsigned dcf_alignment_log2(const dcf_ctx *ctx);
/* The bytes of the open file (the mapping or the caller's buffer); NULL before open. */
const uint8_t *dcf_file_data(const dcf_ctx *ctx, size_t *size);

/* Metadata (spec 4.1), in file order. Strings point into the context (valid until
 * dcf_ctx_free), are NUL-terminated for convenience, and may hold NUL characters: use the
 * lengths. */
size_t dcf_metadata_count(const dcf_ctx *ctx);
dcf_error dcf_metadata_get(const dcf_ctx *ctx, size_t j, const char **key, size_t *key_length,
                           const char **value, size_t *value_length);
dcf_error dcf_metadata_find(const dcf_ctx *ctx, const char *key, size_t key_length,
                            const char **value, size_t *value_length);

typedef struct dcf_tensor_info {
    const char *name;         /* valid until dcf_ctx_free; NUL-terminated, may hold NULs */
    size_t name_length;       /* bytes */
    dcf_dtype dtype;
    unsigned rank;            /* 0 ... DCF_MAX_RANK */
    uint64_t shape[DCF_MAX_RANK]; /* shape[0 ... rank-1]; the rest 0 */
    dcf_layout layout;
    dcf_value_coding value_coding;
    unsigned index_bits;      /* CSR: 1 ... 16; DENSE: 0 */
    unsigned codebook_dtype;  /* CODEBOOK: 1 (F32) or 2 (F16), or a float8 tensor's own dtype (14, 15); RAW: 0 */
    uint32_t codebook_size;   /* CODEBOOK: k; RAW: 0 */
    uint64_t numel;           /* product of the dimensions (1 for rank 0) */
    uint64_t rows, cols;      /* CSR: the matrix view; DENSE: rows = numel, cols = 1 */
    uint64_t decoded_bytes;   /* numel x size of dtype */
    uint64_t stored_bytes;    /* sum of the lengths of the tensor's streams */
    uint64_t entries;         /* CSR: stored entries (fillers included); DENSE: numel */
    uint32_t chunk_count;
} dcf_tensor_info;

/* Tensors: the tensor entries (0 ... count - aliases - 1) in index order, then the aliases of a
 * 1.1 file (second names of entries, for tied weights) in record order. An alias's info is its
 * target's, under the alias's name, and it decodes as its target. */
size_t dcf_tensor_count(const dcf_ctx *ctx);
size_t dcf_alias_count(const dcf_ctx *ctx);
/* The tensor entry decoded under index i: i itself for an entry, the target for an alias. */
dcf_error dcf_tensor_entry(const dcf_ctx *ctx, size_t i, size_t *entry);
dcf_error dcf_get_tensor_info(const dcf_ctx *ctx, size_t i, dcf_tensor_info *info);
/* Index of the tensor named `name` (name_length bytes, compared byte for byte). */
dcf_error dcf_find_tensor(const dcf_ctx *ctx, const char *name, size_t name_length, size_t *i);
/* Size in bytes of a dtype's element (0 for an unknown dtype), and its name ("F32", ...). */
size_t dcf_dtype_size(dcf_dtype dtype);
const char *dcf_dtype_name(dcf_dtype dtype);

/* Bytes that dcf_decode_tensor writes for tensor i with out_type: numel x element size.
 * Fails with DCF_ERR_OUT_TYPE for a refused out_type, DCF_ERR_LIMIT_TENSOR_BYTES over the limit. */
dcf_error dcf_decoded_size(const dcf_ctx *ctx, size_t i, int out_type, uint64_t *bytes,
                           dcf_error_info *err);

/* Decode tensor i into `out` (out_size bytes, at least dcf_decoded_size; any alignment).
 * Checks every stream's CRC (unless skip_checksums) and every rule before values are returned. */
dcf_error dcf_decode_tensor(const dcf_ctx *ctx, size_t i, void *out, size_t out_size, int out_type,
                            dcf_error_info *err);

/* Progressive decoding: chunk c of tensor i covers elements [first_element, first_element +
 * element_count) of the tensor in C order (CSR: whole rows). Chunks decode independently (each
 * call decodes and checks the tensor's codebook again, at most 65,536 values). */
typedef struct dcf_chunk_info {
    uint64_t first_element;
    uint64_t element_count;
    uint64_t first_row;       /* CSR: first row; DENSE: = first_element */
    uint64_t row_count;       /* CSR: rows (the chunk's extent); DENSE: = element_count */
    uint64_t entries;         /* CSR: entries of the chunk; DENSE: element_count */
    uint64_t stored_bytes;    /* the chunk's streams (the codebook not included) */
} dcf_chunk_info;

dcf_error dcf_get_chunk_info(const dcf_ctx *ctx, size_t i, size_t c, dcf_chunk_info *info);
/* Decode chunk c of tensor i into `out` (at least element_count x element size of out_type). */
dcf_error dcf_decode_chunk(const dcf_ctx *ctx, size_t i, size_t c, void *out, size_t out_size,
                           int out_type, dcf_error_info *err);

/* The scratch bytes a dcf_decode_tensor / dcf_decode_chunk call of tensor i with out_type needs
 * at most (the largest over its chunks; see the bound above). */
dcf_error dcf_scratch_size(const dcf_ctx *ctx, size_t i, int out_type, uint64_t *bytes);

/* Attachments of a 1.1 file (spec 4.6.1: files stored byte-exact, e.g. a model's config.json),
 * in record order. The name is a relative POSIX path checked by the spec's rules (no "..", no
 * absolute path, no backslash, colon or control character); a program that writes attachments
 * to a folder must still write only inside it. */
size_t dcf_attachment_count(const dcf_ctx *ctx);
dcf_error dcf_get_attachment_info(const dcf_ctx *ctx, size_t j, const char **name, size_t *name_length,
                                  uint64_t *size);
/* Why `name` (n bytes) is not an attachment name by spec 4.6.1's rules (1 to 4096 bytes of UTF-8,
 * a relative POSIX path without '.', '..' or empty components, no backslash, colon or control
 * character), as a constant string, or NULL if it is one. dcf_open_* already refuse a file with a
 * bad name; a program that writes attachments to a folder checks each name again with this. */
const char *dcf_attachment_name_problem(const char *name, size_t n);
/* The attachment's bytes into `out` (out_size >= its size; at most max_attachment_bytes). */
dcf_error dcf_decode_attachment(const dcf_ctx *ctx, size_t j, void *out, size_t out_size, dcf_error_info *err);

/* Non-zero if this library was built with zstd support. */
int dcf_has_zstd(void);
/* The library version, DCF_LIB_VERSION_STRING. */
const char *dcf_lib_version(void);

#ifdef __cplusplus
}
#endif
#endif /* DCF_H */
