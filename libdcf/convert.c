/* Floating-point conversions on bit patterns, bit-exact with what the Python reader returns:
 * numpy's astype for float16/float32/float64 and ml_dtypes' for bfloat16 (IEEE round to nearest,
 * ties to even; overflow to infinity; subnormals kept). NaNs follow those libraries, measured:
 *   F16 -> F32, F16 -> F64, BF16 -> F32: the payload is kept as it is (shifted), not quieted;
 *   F32 -> F16: the top 10 payload bits are kept, 1 if they are all zero (numpy);
 *   F32 -> F64, F64 -> F32: the payload is shifted and the quiet bit set (the x86 conversions);
 *   F32 -> BF16, F16 -> BF16: the quiet NaN 0x7FC0 with the sign (ml_dtypes).
 * Float8 (format 1.2) to float32 follows spec 4.3.1 (numbers exact, NaN sign and significand kept,
 * not quieted), which is not what ml_dtypes' cast gives for NaNs.
 * No floating-point arithmetic, so no dependence on the compiler or the FPU's modes. */
#include "dcf_internal.h"

/* x >> shift rounded to nearest, ties to even (1 <= shift <= 63). */
static uint64_t shift_rne(uint64_t x, unsigned shift)
{
    uint64_t result = x >> shift, rem = x & (((uint64_t)1 << shift) - 1), half = (uint64_t)1 << (shift - 1);
    if (rem > half || (rem == half && (result & 1)))
        result++;
    return result;
}

uint16_t dcf_f32_to_f16(uint32_t f)
{
    uint32_t sign = (f >> 16) & 0x8000u, a = f & 0x7FFFFFFFu, e;
    if (a >= 0x7F800000u) {
        if (a == 0x7F800000u)
            return (uint16_t)(sign | 0x7C00u);
        {
            uint32_t r = 0x7C00u + ((a & 0x007FFFFFu) >> 13);
            if (r == 0x7C00u)
                r++;
            return (uint16_t)(sign | r);
        }
    }
    if (a >= 0x477FF000u) /* 65520 and up round to infinity */
        return (uint16_t)(sign | 0x7C00u);
    if (a <= 0x33000000u) /* 2^-25 and below round to zero */
        return (uint16_t)sign;
    e = a >> 23;
    if (e < 113) { /* a half subnormal: units of 2^-24 */
        uint32_t m = (a & 0x007FFFFFu) | 0x00800000u;
        return (uint16_t)(sign | (uint32_t)shift_rne(m, 126 - e));
    }
    return (uint16_t)(sign | (uint32_t)shift_rne(((uint64_t)(e - 112) << 23) | (a & 0x007FFFFFu), 13));
}

uint16_t dcf_f32_to_bf16(uint32_t f)
{
    if ((f & 0x7FFFFFFFu) > 0x7F800000u)
        return (uint16_t)((f & 0x80000000u) ? 0xFFC0u : 0x7FC0u);
    return (uint16_t)((f + 0x7FFFu + ((f >> 16) & 1u)) >> 16);
}

uint64_t dcf_f32_to_f64(uint32_t f)
{
    uint64_t sign = (uint64_t)(f & 0x80000000u) << 32;
    uint32_t e = (f >> 23) & 0xFFu, m = f & 0x007FFFFFu;
    if (e == 0xFF) {
        if (m == 0)
            return sign | 0x7FF0000000000000u;
        return sign | 0x7FF8000000000000u | ((uint64_t)m << 29);
    }
    if (e == 0) {
        int shift = 0;
        if (m == 0)
            return sign;
        while (!(m & 0x00800000u)) {
            m <<= 1;
            shift++;
        }
        return sign | ((uint64_t)(1023 - 126 - shift) << 52) | ((uint64_t)(m & 0x007FFFFFu) << 29);
    }
    return sign | ((uint64_t)(e - 127 + 1023) << 52) | ((uint64_t)m << 29);
}

uint32_t dcf_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 31u, m = h & 0x3FFu;
    if (e == 31)
        return sign | 0x7F800000u | (m << 13);
    if (e == 0) {
        int shift = 0;
        if (m == 0)
            return sign;
        while (!(m & 0x400u)) {
            m <<= 1;
            shift++;
        }
        return sign | ((uint32_t)(127 - 14 - shift) << 23) | ((m & 0x3FFu) << 13);
    }
    return sign | ((e - 15 + 127) << 23) | (m << 13);
}

uint64_t dcf_f16_to_f64(uint16_t h)
{
    uint64_t sign = (uint64_t)(h & 0x8000u) << 48;
    uint32_t e = (h >> 10) & 31u, m = h & 0x3FFu;
    if (e == 31)
        return sign | 0x7FF0000000000000u | ((uint64_t)m << 42);
    if (e == 0) {
        int shift = 0;
        if (m == 0)
            return sign;
        while (!(m & 0x400u)) {
            m <<= 1;
            shift++;
        }
        return sign | ((uint64_t)(1023 - 14 - shift) << 52) | ((uint64_t)(m & 0x3FFu) << 42);
    }
    return sign | ((uint64_t)(e - 15 + 1023) << 52) | ((uint64_t)m << 42);
}

uint16_t dcf_f16_to_bf16(uint16_t h)
{
    return dcf_f32_to_bf16(dcf_f16_to_f32(h)); /* exact widening; a NaN becomes 0x7FC0 either way */
}

uint32_t dcf_bf16_to_f32(uint16_t b) { return (uint32_t)b << 16; }

uint32_t dcf_f64_to_f32(uint64_t d)
{
    uint32_t sign = (uint32_t)(d >> 32) & 0x80000000u;
    uint64_t a = d & 0x7FFFFFFFFFFFFFFFu, m = a & 0x000FFFFFFFFFFFFFu;
    uint32_t e = (uint32_t)(a >> 52);
    if (a >= 0x7FF0000000000000u) {
        if (a == 0x7FF0000000000000u)
            return sign | 0x7F800000u;
        return sign | 0x7FC00000u | (uint32_t)(m >> 29);
    }
    if (a >= 0x47EFFFFFF0000000u) /* halfway to 2^128 and up round to infinity */
        return sign | 0x7F800000u;
    if (e >= 897) /* a float32 normal: 2^-126 and up */
        return sign | (uint32_t)shift_rne(((uint64_t)(e - 896) << 52) | m, 29);
    if (e == 0)
        return sign; /* float64 subnormals are far below 2^-150 */
    {
        unsigned shift = 926 - e; /* units of 2^-149; shift >= 30 */
        if (shift >= 64)
            return sign;
        return sign | (uint32_t)shift_rne(m | ((uint64_t)1 << 52), shift);
    }
}

/* A float8 code with `mbits` significand bits and exponent bias `bias` as float32 bits; `e4m3`:
 * the fn variant (no infinity, NaN only for e = 15, m = 7). */
static uint32_t f8_to_f32(uint8_t c, unsigned mbits, unsigned ebits, unsigned bias, int e4m3)
{
    uint32_t sign = (uint32_t)(c & 0x80u) << 24, top = (1u << ebits) - 1, mmask = (1u << mbits) - 1;
    uint32_t e = ((uint32_t)c >> mbits) & top, m = c & mmask;
    if (e == top && (e4m3 ? m == mmask : 1))
        return sign | 0x7F800000u | (m << (23 - mbits)); /* NaN, or E5M2's infinity (m = 0) */
    if (e == 0) {
        if (m == 0)
            return sign;
        e = 1;
        while (!(m & (1u << mbits))) { /* a float8 subnormal is a float32 normal */
            m <<= 1;
            e--;
        }
        m &= mmask;
    }
    return sign | ((e + 127 - bias) << 23) | (m << (23 - mbits));
}

uint32_t dcf_f8e4m3_to_f32(uint8_t c) { return f8_to_f32(c, 3, 4, 7, 1); }
uint32_t dcf_f8e5m2_to_f32(uint8_t c) { return f8_to_f32(c, 2, 5, 15, 0); }
