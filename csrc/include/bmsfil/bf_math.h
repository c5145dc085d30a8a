/* The few maths functions the core needs, without libm.
 *
 * MicroPython native modules and some bare-metal builds cannot link libm, so
 * the core carries its own single-precision exp and sqrt. Both are accurate
 * to a few float ulps over the ranges the estimators use. */
#ifndef BMSFIL_BF_MATH_H
#define BMSFIL_BF_MATH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The core's range tests rely on IEEE comparisons with NaN: a missing current
 * (NaN) fails `i >= -i_max` and is taken as missing, the last good one used.
 * -ffast-math (its -ffinite-math-only) lets the compiler assume there is no
 * NaN and turn those tests around: a missing current then stops the filter
 * (BF_E_NUMERIC) and a NaN rest current starts it as rested. Build the core
 * with -fno-fast-math (every build of bmsfil does, with -ffp-contract=off for
 * results bit for bit those of the host's binding). */
#if defined(__FAST_MATH__) || (defined(__FINITE_MATH_ONLY__) && __FINITE_MATH_ONLY__)
#error "bmsfil's C core must not be built with -ffast-math or -ffinite-math-only: its NaN tests rely on IEEE comparisons; use -fno-fast-math"
#endif

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

/* 1 if x is neither NaN nor infinite (bit tests, not comparisons). Inline:
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

#ifdef __cplusplus
}
#endif

#endif
