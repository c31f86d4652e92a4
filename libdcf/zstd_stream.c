/* ZSTD (spec 8.4): exactly one Zstandard frame whose content is the PLAIN form of the elements.
 *
 * Checked in order, as the Python reader does: the expansion bound (count x element_size <= 65536
 * x length) before anything else; the frame magic 0xFD2FB528 (a skippable frame is refused); the
 * frame header, which must state Frame_Content_Size equal to count x element_size and name no
 * dictionary; the frame's compressed size, which must be the whole payload; then one-shot
 * decompression straight into the output (libzstd verifies the content checksum when the frame
 * has one), which must produce exactly the stated size. One-shot decoding needs no window
 * buffer, so the frame's window size costs no memory beyond the output. Built with -DDCF_NO_ZSTD,
 * every ZSTD stream is refused with DCF_ERR_ZSTD_UNSUPPORTED. */
#include "dcf_internal.h"

#if !defined(DCF_NO_ZSTD)
#include <zstd.h>
#endif

dcf_error dcf_zstd_decode(const dcf_stream_ctx *sc, const uint8_t *payload, uint64_t length, uint64_t count,
                          size_t esize, uint8_t *out)
{
    uint64_t expected;
    /* count <= 65536 x length (checked with the index): no overflow below for any real file */
    expected = count * esize;
    if (count > UINT64_MAX / esize || length > UINT64_MAX / DCF_MAX_ZSTD_EXPANSION
        || expected > (uint64_t)DCF_MAX_ZSTD_EXPANSION * length)
        return dcf_fail(sc->err, DCF_ERR_LIMIT_EXPANSION,
                        "%s: ZSTD stream of %llu bytes cannot hold %llu elements of %u bytes (more than %u per stored byte)",
                        sc->what, (unsigned long long)length, (unsigned long long)count, (unsigned)esize,
                        DCF_MAX_ZSTD_EXPANSION);
    if (length < 4 || dcf_le32(payload) != 0xFD2FB528u)
        return dcf_fail(sc->err, DCF_ERR_ZSTD, "%s: ZSTD stream does not start with a Zstandard frame", sc->what);
#if defined(DCF_NO_ZSTD)
    (void)out;
    return dcf_fail(sc->err, DCF_ERR_ZSTD_UNSUPPORTED, "%s: this libdcf was built without zstd", sc->what);
#else
    {
        unsigned long long content = ZSTD_getFrameContentSize(payload, (size_t)length);
        size_t frame, got;
        ZSTD_DCtx *dctx;
        if (content == ZSTD_CONTENTSIZE_ERROR)
            return dcf_fail(sc->err, DCF_ERR_ZSTD, "%s: ZSTD stream: bad frame header", sc->what);
        if (content == ZSTD_CONTENTSIZE_UNKNOWN)
            return dcf_fail(sc->err, DCF_ERR_ZSTD, "%s: ZSTD frame does not state its content size", sc->what);
        if (content != expected)
            return dcf_fail(sc->err, DCF_ERR_COUNT_MISMATCH, "%s: ZSTD frame states %llu bytes of content, not %llu",
                            sc->what, content, (unsigned long long)expected);
        if (ZSTD_getDictID_fromFrame(payload, (size_t)length) != 0)
            return dcf_fail(sc->err, DCF_ERR_ZSTD, "%s: ZSTD frame names a dictionary", sc->what);
        frame = ZSTD_findFrameCompressedSize(payload, (size_t)length);
        if (ZSTD_isError(frame))
            return dcf_fail(sc->err, DCF_ERR_ZSTD, "%s: ZSTD stream: %s", sc->what, ZSTD_getErrorName(frame));
        if (frame != length)
            return dcf_fail(sc->err, DCF_ERR_ZSTD, "%s: ZSTD stream: %llu bytes after the frame", sc->what,
                            (unsigned long long)(length - frame));
        dctx = ZSTD_createDCtx();
        if (dctx == NULL)
            return dcf_fail(sc->err, DCF_ERR_NO_MEMORY, "%s: out of memory for a zstd context", sc->what);
        got = ZSTD_decompressDCtx(dctx, out, (size_t)expected, payload, (size_t)length);
        ZSTD_freeDCtx(dctx);
        if (ZSTD_isError(got))
            return dcf_fail(sc->err, DCF_ERR_ZSTD, "%s: ZSTD stream: %s", sc->what, ZSTD_getErrorName(got));
        if (got != expected)
            return dcf_fail(sc->err, DCF_ERR_ZSTD, "%s: ZSTD frame decoded to %llu bytes, not %llu", sc->what,
                            (unsigned long long)got, (unsigned long long)expected);
        dcf_elements_to_host(out, count, esize);
        return DCF_OK;
    }
#endif
}
