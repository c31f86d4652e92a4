/* HUFFMAN (spec 8.3): canonical codes given by 5-bit code lengths, symbols in 1 ... 8 lanes.
 *
 * Payload: max_length u8, lane_count u8, reserved u16, alphabet_size u32, the code lengths
 * (ceil(5 x alphabet_size / 8) bytes, LSB-first), lane_count u32 lane lengths, the lanes.
 *
 * Decoding: the whole header is validated first (ranges, Kraft's equality, padding, lengths that
 * add up, no lane longer than its codes can need). Then a two-level lookup table: the first level
 * is indexed by the next min(max_length, 11) stream bits (next bit in bit 0), so a code of that
 * length or shorter owns the entries at its bit-reversal plus every multiple of 2^length; a longer
 * code's first 11 bits lead to a second-level table indexed by the following bits. An entry is
 * (value << 8) | length, the value being the symbol, or what the caller maps symbols to (the
 * codebook converted to the output type: the lookup fused into decoding), or for a first-level
 * entry leading further, (second-level base << 8) | (extra bits << 5). Lanes are decoded four
 * at a time in one loop (four independent dependency chains the CPU overlaps): each round refills
 * every 64-bit bit buffer with one unaligned 8-byte load that stays inside the lane, then decodes
 * 56 / max_length symbols per lane without checks (every entry of a complete code is valid). The
 * last symbols of each lane are decoded one at a time, reading only the lane's bytes, and the lane
 * must end with the byte of its last code, with zero padding. A one-symbol table (its code is the
 * single bit 0) is decoded by checking that the lane's bits are zero. */
#include "dcf_internal.h"

#define ENTRY_SHIFT 8
#define LENGTH_MASK 31u
#define PRIMARY_BITS 11

typedef struct htable {
    const uint64_t *t;
    unsigned pbits;  /* first-level index bits */
    uint64_t pmask;
} htable;

/* The entry of the stream bits `bits` (next bit in bit 0; at least max_length of them valid). */
static inline uint64_t lookup(const htable *h, uint64_t bits)
{
    uint64_t e = h->t[bits & h->pmask];
    if ((e & LENGTH_MASK) == 0)
        e = h->t[(e >> ENTRY_SHIFT) + ((bits >> h->pbits) & ((((uint64_t)1) << ((e >> 5) & 7)) - 1))];
    return e;
}

typedef struct lane {
    uint64_t start, end; /* byte offsets in the payload */
    uint64_t pos;        /* next byte to load */
    uint64_t buf;        /* bit buffer, next bit in bit 0 */
    unsigned nbits;      /* valid bits in buf */
    uint64_t first, last; /* output symbols [first, last) */
} lane;

/* Decode out[l->first, l->last) one symbol at a time from bit `bit` of the lane, then check the
 * lane's end and padding. */
#define DCF_TAIL(T)                                                                              \
    static dcf_error tail_##T(const dcf_stream_ctx *sc, const uint8_t *data, const lane *l,         \
                              uint64_t bit, const htable *table, uint8_t *out, unsigned j)        \
    {                                                                                            \
        uint64_t available = (l->end - l->start) * 8, o, used;                                   \
        for (o = l->first; o < l->last; o++) {                                                   \
            uint64_t byte = l->start + (bit >> 3), entry, length;                                \
            uint32_t window = 0;                                                                 \
            unsigned k;                                                                          \
            T v;                                                                                 \
            for (k = 0; k < 3; k++)                                                              \
                if (byte + k < l->end)                                                           \
                    window |= (uint32_t)data[byte + k] << (8 * k);                               \
            entry = lookup(table, window >> (bit & 7));                                          \
            length = entry & LENGTH_MASK;                                                        \
            if (bit + length > available)                                                        \
                return dcf_fail(sc->err, DCF_ERR_TRUNCATED,                                      \
                                "%s: HUFFMAN lane %u ends before its symbols are decoded", sc->what, j); \
            if (length == 0)                                                                     \
                return dcf_fail(sc->err, DCF_ERR_HUFFMAN_CODE, "%s: HUFFMAN lane %u: bits that match no code", \
                                sc->what, j);                                                    \
            v = (T)(entry >> ENTRY_SHIFT);                                                       \
            memcpy(out + o * sizeof(T), &v, sizeof(T));                                          \
            bit += length;                                                                       \
        }                                                                                        \
        used = (bit + 7) >> 3;                                                                   \
        if (l->start + used != l->end)                                                           \
            return dcf_fail(sc->err, DCF_ERR_COUNT_MISMATCH, "%s: HUFFMAN lane %u: bytes after its last code", \
                            sc->what, j);                                                        \
        if ((bit & 7) && (data[l->end - 1] >> (bit & 7)) != 0)                                   \
            return dcf_fail(sc->err, DCF_ERR_PADDING, "%s: HUFFMAN lane %u: non-zero padding bits", sc->what, j); \
        return DCF_OK;                                                                           \
    }

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
DCF_TAIL(u8)
DCF_TAIL(u16)
DCF_TAIL(u32)
DCF_TAIL(u64)

static uint64_t safe_rounds(const lane *l, uint64_t per_round)
{
    uint64_t available = l->end - l->pos, by_bytes, by_symbols;
    by_bytes = available < 8 ? 0 : (available - 8) / 7 + 1;
    by_symbols = (l->last - l->first) / per_round;
    return by_bytes < by_symbols ? by_bytes : by_symbols;
}

#define DCF_REFILL(x)                                                                            \
    do {                                                                                         \
        b##x |= dcf_le64(data + p##x) << n##x;                                                   \
        p##x += (63u - n##x) >> 3;                                                               \
        n##x |= 56u;                                                                             \
    } while (0)

#define DCF_STEP(T, x)                                                                           \
    do {                                                                                         \
        uint64_t e_ = lookup(table, b##x);                                                       \
        T v_ = (T)(e_ >> ENTRY_SHIFT);                                                           \
        memcpy(out + o##x * sizeof(T), &v_, sizeof(T));                                          \
        b##x >>= (e_ & LENGTH_MASK);                                                             \
        n##x -= (e_ & LENGTH_MASK);                                                              \
        o##x++;                                                                                  \
    } while (0)

/* Four lanes (a lane may appear more than once: it is then decoded twice, to the same values). */
#define DCF_QUAD(T)                                                                              \
    static void quad_##T(const uint8_t *data, lane *la, lane *lb, lane *lc, lane *ld,             \
                         const htable *table, unsigned max_length, uint8_t *out)                 \
    {                                                                                            \
        uint64_t per_round = 56u / max_length;                                                   \
        uint64_t p0 = la->pos, p1 = lb->pos, p2 = lc->pos, p3 = ld->pos;                         \
        uint64_t b0 = la->buf, b1 = lb->buf, b2 = lc->buf, b3 = ld->buf;                         \
        unsigned n0 = la->nbits, n1 = lb->nbits, n2 = lc->nbits, n3 = ld->nbits;                 \
        uint64_t o0 = la->first, o1 = lb->first, o2 = lc->first, o3 = ld->first;                 \
        for (;;) {                                                                               \
            uint64_t rounds, r, ra, rb, rc, rd;                                                  \
            la->pos = p0; lb->pos = p1; lc->pos = p2; ld->pos = p3;                              \
            la->first = o0; lb->first = o1; lc->first = o2; ld->first = o3;                      \
            ra = safe_rounds(la, per_round); rb = safe_rounds(lb, per_round);                    \
            rc = safe_rounds(lc, per_round); rd = safe_rounds(ld, per_round);                    \
            rounds = ra < rb ? ra : rb;                                                          \
            rounds = rc < rounds ? rc : rounds;                                                  \
            rounds = rd < rounds ? rd : rounds;                                                  \
            if (rounds == 0)                                                                     \
                break;                                                                           \
            for (r = 0; r < rounds; r++) {                                                       \
                uint64_t s;                                                                      \
                DCF_REFILL(0); DCF_REFILL(1); DCF_REFILL(2); DCF_REFILL(3);                      \
                for (s = 0; s < per_round; s++) {                                                \
                    DCF_STEP(T, 0); DCF_STEP(T, 1); DCF_STEP(T, 2); DCF_STEP(T, 3);              \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
        la->buf = b0; lb->buf = b1; lc->buf = b2; ld->buf = b3;                                  \
        la->nbits = n0; lb->nbits = n1; lc->nbits = n2; ld->nbits = n3;                          \
    }

DCF_QUAD(u8)
DCF_QUAD(u16)
DCF_QUAD(u32)
DCF_QUAD(u64)

/* One-symbol table: every code is the bit 0. */
static dcf_error one_symbol(const dcf_stream_ctx *sc, const uint8_t *data, const lane *l, unsigned j,
                            uint64_t symbol, size_t esize, uint8_t *out)
{
    uint64_t n = l->last - l->first, need = (n + 7) / 8, have = l->end - l->start, i;
    for (i = 0; i < have; i++) {
        uint8_t byte = data[l->start + i];
        if (byte != 0) {
            uint64_t bit = i * 8;
            while (!(byte & 1)) {
                byte >>= 1;
                bit++;
            }
            if (bit < n)
                return dcf_fail(sc->err, DCF_ERR_HUFFMAN_CODE, "%s: HUFFMAN lane %u: bits that match no code",
                                sc->what, j);
            break;
        }
    }
    if (have < need)
        return dcf_fail(sc->err, DCF_ERR_TRUNCATED, "%s: HUFFMAN lane %u ends before its symbols are decoded",
                        sc->what, j);
    if (have > need)
        return dcf_fail(sc->err, DCF_ERR_COUNT_MISMATCH, "%s: HUFFMAN lane %u: bytes after its last code", sc->what, j);
    if (i < have)
        return dcf_fail(sc->err, DCF_ERR_PADDING, "%s: HUFFMAN lane %u: non-zero padding bits", sc->what, j);
    for (i = l->first; i < l->last; i++)
        dcf_store(out + i * esize, esize, symbol);
    return DCF_OK;
}

static unsigned reverse_bits(unsigned code, unsigned length)
{
    unsigned r = 0, i;
    for (i = 0; i < length; i++)
        r |= ((code >> i) & 1u) << (length - 1 - i);
    return r;
}

dcf_error dcf_huffman_decode(const dcf_stream_ctx *sc, const uint8_t *data, uint64_t size, uint64_t count,
                             size_t esize, uint64_t bound, uint8_t *out)
{
    return dcf_huffman_decode_map(sc, data, size, count, esize, bound, NULL, esize, out);
}

dcf_error dcf_huffman_decode_map(const dcf_stream_ctx *sc, const uint8_t *data, uint64_t size, uint64_t count,
                                 size_t esize, uint64_t bound, const uint8_t *map, size_t out_es, uint8_t *out)
{
    unsigned max_length, lane_count, j, present = 0, longest = 0;
    uint64_t alphabet, limit, lengths_end, lanes_offset, total, per_lane, s, kraft = 0;
    unsigned counts[DCF_MAX_CODE_LENGTH + 1];
    unsigned next_code[DCF_MAX_CODE_LENGTH + 2];
    uint8_t *lengths;
    uint64_t *table;
    htable h;
    lane lanes[DCF_MAX_HUFFMAN_LANES];
    uint64_t single = 0;
    dcf_error e = DCF_OK;

    if (count < 1 || count / 8 > size || (count > 8 * size))
        return dcf_fail(sc->err, DCF_ERR_COUNT_MISMATCH, "%s: HUFFMAN stream of %llu bytes cannot hold %llu symbols",
                        sc->what, (unsigned long long)size, (unsigned long long)count);
    if (size < 8)
        return dcf_fail(sc->err, DCF_ERR_TRUNCATED, "%s: HUFFMAN payload ends inside its header", sc->what);
    max_length = data[0];
    lane_count = data[1];
    alphabet = dcf_le32(data + 4);
    if (max_length < 1 || max_length > DCF_MAX_CODE_LENGTH)
        return dcf_fail(sc->err, DCF_ERR_HUFFMAN_TABLE, "%s: Huffman max_length %u is outside 1 ... %d", sc->what,
                        max_length, DCF_MAX_CODE_LENGTH);
    if (lane_count < 1 || lane_count > DCF_MAX_HUFFMAN_LANES)
        return dcf_fail(sc->err, DCF_ERR_BAD_CODEC_PARAM, "%s: Huffman lane_count %u is outside 1 ... %d", sc->what,
                        lane_count, DCF_MAX_HUFFMAN_LANES);
    if (dcf_le16(data + 2) != 0)
        return dcf_fail(sc->err, DCF_ERR_RESERVED, "%s: non-zero reserved field in a HUFFMAN header", sc->what);
    limit = esize >= 2 ? DCF_MAX_HUFFMAN_ALPHABET : 256;
    if (alphabet < 1 || alphabet > limit)
        return dcf_fail(sc->err, DCF_ERR_HUFFMAN_TABLE, "%s: Huffman alphabet_size %llu is outside 1 ... %llu", sc->what,
                        (unsigned long long)alphabet, (unsigned long long)limit);
    if (bound != 0 && alphabet > bound)
        return dcf_fail(sc->err, DCF_ERR_HUFFMAN_TABLE, "%s: Huffman alphabet_size %llu exceeds the bound %llu", sc->what,
                        (unsigned long long)alphabet, (unsigned long long)bound);
    lengths_end = 8 + (5 * alphabet + 7) / 8;
    lanes_offset = lengths_end + 4 * (uint64_t)lane_count;
    if (size < lanes_offset)
        return dcf_fail(sc->err, DCF_ERR_TRUNCATED, "%s: HUFFMAN payload ends inside its code or lane lengths",
                        sc->what);
    /* the code lengths, 5 bits each, LSB first (scratch: one byte per symbol, at most 64 KiB) */
    lengths = (uint8_t *)dcf_alloc(sc->ctx, (size_t)alphabet);
    if (lengths == NULL)
        return dcf_fail(sc->err, DCF_ERR_NO_MEMORY, "%s: out of memory for a Huffman table", sc->what);
    memset(counts, 0, sizeof counts);
    for (s = 0; s < alphabet; s++) {
        uint64_t bit = 5 * s;
        unsigned v = data[8 + (bit >> 3)];
        if ((bit & 7) > 3)
            v |= (unsigned)data[8 + (bit >> 3) + 1] << 8;
        v = (v >> (bit & 7)) & 31u;
        lengths[s] = (uint8_t)v;
        if (v) {
            present++;
            single = s;
            if (v > longest)
                longest = v;
            if (v <= DCF_MAX_CODE_LENGTH)
                counts[v]++;
        }
    }
    {
        uint64_t used_bits = 5 * alphabet;
        if (used_bits & 7 && (data[lengths_end - 1] >> (used_bits & 7)) != 0) {
            e = dcf_fail(sc->err, DCF_ERR_PADDING, "%s: non-zero padding after the Huffman code lengths", sc->what);
            goto done_lengths;
        }
    }
    if (present == 0) {
        e = dcf_fail(sc->err, DCF_ERR_HUFFMAN_TABLE, "%s: Huffman table has no symbol", sc->what);
        goto done_lengths;
    }
    if (longest != max_length) {
        e = dcf_fail(sc->err, DCF_ERR_HUFFMAN_TABLE, "%s: Huffman code length %u but max_length %u", sc->what, longest,
                     max_length);
        goto done_lengths;
    }
    if (present == 1 && longest != 1) {
        e = dcf_fail(sc->err, DCF_ERR_HUFFMAN_TABLE, "%s: single Huffman symbol has length %u, not 1", sc->what,
                     longest);
        goto done_lengths;
    }
    if (present >= 2) {
        unsigned L;
        for (L = 1; L <= max_length; L++)
            kraft += (uint64_t)counts[L] << (max_length - L);
        if (kraft != (uint64_t)1 << max_length) {
            e = dcf_fail(sc->err, DCF_ERR_HUFFMAN_TABLE, "%s: Huffman code lengths are %s (Kraft sum %llu/%llu)",
                         sc->what, kraft > ((uint64_t)1 << max_length) ? "over-subscribed" : "incomplete",
                         (unsigned long long)kraft, (unsigned long long)((uint64_t)1 << max_length));
            goto done_lengths;
        }
    }
    /* lane lengths, then the total */
    total = lanes_offset;
    for (j = 0; j < lane_count; j++) {
        uint64_t len = dcf_le32(data + lengths_end + 4 * j);
        lanes[j].start = total;
        total += len;
        lanes[j].end = total;
    }
    if (size < total) {
        e = dcf_fail(sc->err, DCF_ERR_TRUNCATED, "%s: HUFFMAN payload has %llu bytes, its parts %llu", sc->what,
                     (unsigned long long)size, (unsigned long long)total);
        goto done_lengths;
    }
    if (size > total) {
        e = dcf_fail(sc->err, DCF_ERR_COUNT_MISMATCH, "%s: HUFFMAN payload has %llu bytes, its parts only %llu",
                     sc->what, (unsigned long long)size, (unsigned long long)total);
        goto done_lengths;
    }
    per_lane = count / lane_count + (count % lane_count != 0);
    for (j = 0; j < lane_count; j++) {
        lane *l = &lanes[j];
        uint64_t first = (uint64_t)j * per_lane, last = first + per_lane;
        l->first = first < count ? first : count;
        l->last = last < count ? last : count;
        l->pos = l->start;
        l->buf = 0;
        l->nbits = 0;
        if (l->end - l->start > ((l->last - l->first) * max_length + 7) / 8) {
            e = dcf_fail(sc->err, DCF_ERR_COUNT_MISMATCH,
                         "%s: HUFFMAN lane %u: bytes after its last code (%llu bytes for %llu symbols of at most %u bits)",
                         sc->what, j, (unsigned long long)(l->end - l->start),
                         (unsigned long long)(l->last - l->first), max_length);
            goto done_lengths;
        }
    }
    if (present == 1) {
        for (j = 0; j < lane_count && e == DCF_OK; j++)
            e = one_symbol(sc, data, &lanes[j], j, map == NULL ? single : dcf_load(map + (size_t)single * out_es, out_es),
                           out_es, out);
        goto done_lengths;
    }

    /* the lookup table (scratch: at most 8 x (2^11 + 2^max_length) bytes, 528 KiB) */
    h.pbits = max_length < PRIMARY_BITS ? max_length : PRIMARY_BITS;
    h.pmask = ((uint64_t)1 << h.pbits) - 1;
    {
        size_t entries = ((size_t)1 << h.pbits) + (max_length > h.pbits ? (size_t)1 << max_length : 0);
        table = (uint64_t *)dcf_alloc(sc->ctx, entries * sizeof(uint64_t));
    }
    if (table == NULL) {
        e = dcf_fail(sc->err, DCF_ERR_NO_MEMORY, "%s: out of memory for a Huffman table", sc->what);
        goto done_lengths;
    }
    {
        unsigned code = 0, L, extra = max_length - h.pbits;
        size_t primary = (size_t)1 << h.pbits, next_free = primary, t;
        next_code[0] = 0;
        counts[0] = 0;
        for (L = 1; L <= max_length; L++) {
            code = (code + counts[L - 1]) << 1;
            next_code[L] = code;
        }
        for (t = 0; t < primary; t++)
            table[t] = 0;
        for (s = 0; s < alphabet; s++) {
            unsigned len = lengths[s];
            if (len) {
                uint64_t value = map == NULL ? s : dcf_load(map + (size_t)s * out_es, out_es);
                uint64_t entry = (value << ENTRY_SHIFT) | len;
                size_t rev = reverse_bits(next_code[len]++, len);
                /* Kraft's equality holds: every code fits, and the tables fill exactly */
                if (len <= h.pbits) {
                    for (t = rev; t < primary; t += (size_t)1 << len)
                        table[t] = entry;
                } else {
                    size_t prefix = rev & h.pmask, base;
                    if (table[prefix] == 0) {
                        table[prefix] = ((uint64_t)next_free << ENTRY_SHIFT) | ((uint64_t)extra << 5);
                        next_free += (size_t)1 << extra;
                    }
                    base = (size_t)(table[prefix] >> ENTRY_SHIFT);
                    for (t = rev >> h.pbits; t < ((size_t)1 << extra); t += (size_t)1 << (len - h.pbits))
                        table[base + t] = entry;
                }
            }
        }
    }
    h.t = table;
    /* four lanes at a time, then each lane's tail */
    for (j = 0; j < lane_count; j += 4) {
        unsigned r = lane_count - j < 4 ? lane_count - j : 4;
        (void)esize;
        lane *a = &lanes[j], *b = &lanes[j + 1 % r], *c = &lanes[j + 2 % r], *d = &lanes[j + 3 % r];
        switch (out_es) {
        case 1: quad_u8(data, a, b, c, d, &h, max_length, out); break;
        case 2: quad_u16(data, a, b, c, d, &h, max_length, out); break;
        case 4: quad_u32(data, a, b, c, d, &h, max_length, out); break;
        default: quad_u64(data, a, b, c, d, &h, max_length, out); break;
        }
    }
    for (j = 0; j < lane_count && e == DCF_OK; j++) {
        lane *l = &lanes[j];
        uint64_t bit = (l->pos - l->start) * 8 - l->nbits;
        switch (out_es) {
        case 1: e = tail_u8(sc, data, l, bit, &h, out, j); break;
        case 2: e = tail_u16(sc, data, l, bit, &h, out, j); break;
        case 4: e = tail_u32(sc, data, l, bit, &h, out, j); break;
        default: e = tail_u64(sc, data, l, bit, &h, out, j); break;
        }
    }
    dcf_free(sc->ctx, table);
done_lengths:
    dcf_free(sc->ctx, lengths);
    return e;
}
