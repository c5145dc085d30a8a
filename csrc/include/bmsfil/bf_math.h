/* The few maths functions the core needs, without libm.
 *
 * MicroPython native modules and some bare-metal builds cannot link libm, so
 * the core carries its own single-precision exp and sqrt. Both are accurate
 * to a few float ulps over the ranges the estimators use. */
#ifndef BMSFIL_BF_MATH_H
#define BMSFIL_BF_MATH_H

#include <stdint.h>

/* e^x for any float x: 0 below -87.3, +inf above 88, NaN for NaN. */
float bf_expf(float x);

/* sqrt(x) for x >= 0; 0 for x <= 0 (callers only ask for variances). */
float bf_sqrtf(float x);

/* Type punning through a union is defined in C99 (TC3) and, unlike memcpy,
 * needs no libc in a native module. */
typedef union {
    float f;
    uint32_t u;
} bf_bits32_t;

/* 1 if x is neither NaN nor infinite. Works under -ffast-math too. Inline:
 * the filter asks about twenty times a step. */
static inline int bf_isfinite(float x)
{
    bf_bits32_t b;
    b.f = x;
    return (b.u & 0x7f800000u) != 0x7f800000u;
}

static inline float bf_absf(float x) { return x < 0.0f ? -x : x; }
static inline float bf_clampf(float x, float lo, float hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

#endif
