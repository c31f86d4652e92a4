/* Error codes, their descriptions, and the per-call error details (dcf_error_info). */
#include <stdio.h>

#include "dcf_internal.h"

const char *dcf_strerror(dcf_error code)
{
    switch (code) {
    case DCF_OK: return "success";
    case DCF_ERR_TRUNCATED: return "the file or a structure inside it ends early";
    case DCF_ERR_BAD_MAGIC: return "not a dcf file (bad magic)";
    case DCF_ERR_BAD_END_MAGIC: return "trailer magic missing: the file is truncated or not a dcf file";
    case DCF_ERR_UNSUPPORTED_VERSION: return "unsupported format version";
    case DCF_ERR_RESERVED: return "a reserved field is not zero";
    case DCF_ERR_INDEX_CHECKSUM: return "index checksum mismatch";
    case DCF_ERR_STREAM_CHECKSUM: return "stream checksum mismatch";
    case DCF_ERR_OFFSET: return "a stream lies outside the data section, or padding or a hole is wrong";
    case DCF_ERR_INDEX_LEFTOVER: return "bytes left over at the end of the index";
    case DCF_ERR_BAD_UTF8: return "a name, key or value is not valid UTF-8";
    case DCF_ERR_DUPLICATE_NAME: return "a tensor name appears twice";
    case DCF_ERR_DUPLICATE_KEY: return "a metadata key appears twice";
    case DCF_ERR_BAD_ENUM: return "an unknown dtype, layout, value coding, codebook dtype or codec";
    case DCF_ERR_BAD_FIELD: return "a field is out of its range or inconsistent with the others";
    case DCF_ERR_COUNT_MISMATCH: return "declared counts or lengths do not add up";
    case DCF_ERR_LIMIT_INDEX_LENGTH: return "index length outside its limit";
    case DCF_ERR_LIMIT_TENSORS: return "too many tensors";
    case DCF_ERR_LIMIT_METADATA: return "too many metadata entries";
    case DCF_ERR_LIMIT_RANK: return "rank over the limit";
    case DCF_ERR_LIMIT_ELEMENTS: return "a tensor has more elements than the limit";
    case DCF_ERR_LIMIT_CHUNK_ELEMENTS: return "a chunk covers more elements than the limit";
    case DCF_ERR_LIMIT_CODEBOOK_SIZE: return "codebook size outside its limit";
    case DCF_ERR_LIMIT_EXPANSION: return "a ZSTD stream claims more than 65536 bytes per stored byte";
    case DCF_ERR_LIMIT_EMPTY_SHAPE: return "an empty tensor's dimensions multiply past this decoder's limit";
    case DCF_ERR_LIMIT_EXTENSIONS: return "too many extension records, attachments or tensor names";
    case DCF_ERR_LIMIT_ATTACHMENT_BYTES: return "an attachment is larger than the limit";
    case DCF_ERR_BAD_EXTENSION: return "an extension record breaks its rules";
    case DCF_ERR_CRITICAL_EXTENSION: return "a critical extension record of a type this libdcf does not know";
    case DCF_ERR_LIMIT_TENSOR_BYTES: return "a tensor decodes to more bytes than this decoder's limit (max_tensor_bytes)";
    case DCF_ERR_LIMIT_SCRATCH: return "decoding needs more scratch memory than this decoder's limit (max_scratch_bytes)";
    case DCF_ERR_BAD_CODEC_PARAM: return "a codec parameter or codec header field is invalid";
    case DCF_ERR_HUFFMAN_TABLE: return "invalid Huffman table";
    case DCF_ERR_HUFFMAN_CODE: return "Huffman bits that match no code";
    case DCF_ERR_PADDING: return "non-zero padding bits";
    case DCF_ERR_VALUE_BOUND: return "an element is outside its bound";
    case DCF_ERR_CSR_POSITION: return "a CSR entry lies past the last column";
    case DCF_ERR_ZSTD: return "invalid ZSTD stream";
    case DCF_ERR_ZSTD_UNSUPPORTED: return "this libdcf was built without zstd";
    case DCF_ERR_BUFFER_TOO_SMALL: return "output buffer too small";
    case DCF_ERR_BAD_ARGUMENT: return "bad argument";
    case DCF_ERR_OUT_TYPE: return "output type not available for this tensor";
    case DCF_ERR_NOT_FOUND: return "not found";
    case DCF_ERR_NO_MEMORY: return "out of memory";
    case DCF_ERR_IO: return "the file could not be read";
    case DCF_ERROR_COUNT: break;
    }
    return "unknown error code";
}

dcf_error dcf_fail(dcf_error_info *err, dcf_error code, const char *fmt, ...)
{
    if (err != NULL) {
        va_list args;
        int n;
        err->code = code;
        va_start(args, fmt);
        n = vsnprintf(err->message, sizeof err->message, fmt, args);
        va_end(args);
        if (n < 0)
            err->message[0] = '\0';
    }
    return code;
}

void dcf_quote(char out[DCF_QUOTED_SIZE], const char *s, size_t length)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, i;
    const size_t room = DCF_QUOTED_SIZE - 6; /* closing quote, "...", NUL */
    out[o++] = '\'';
    for (i = 0; i < length; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F && c != '\\' && c != '\'') {
            if (o + 1 > room)
                break;
            out[o++] = (char)c;
        } else {
            if (o + 4 > room)
                break;
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o++] = '\'';
    if (i < length) {
        out[o++] = '.';
        out[o++] = '.';
        out[o++] = '.';
    }
    out[o] = '\0';
}
