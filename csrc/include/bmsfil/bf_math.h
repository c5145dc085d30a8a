/* The few maths functions the core needs, without libm.
 *
 * MicroPython native modules and some bare-metal builds cannot link libm, so
 * the core carries its own single-precision exp and sqrt. Both are accurate
 * to a few float ulps over the ranges the estimators use. */
#ifndef BMSFIL_BF_MATH_H
#define BMSFIL_BF_MATH_H

/* e^x for any float x: 0 below -87.3, +inf above 88, NaN for NaN. */
float bf_expf(float x);

/* sqrt(x) for x >= 0; 0 for x <= 0 (callers only ask for variances). */
float bf_sqrtf(float x);

/* 1 if x is neither NaN nor infinite. Works under -ffast-math too. */
int bf_isfinite(float x);

static inline float bf_absf(float x) { return x < 0.0f ? -x : x; }
static inline float bf_clampf(float x, float lo, float hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

#endif
