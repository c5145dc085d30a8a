#include "bmsfil/bf_math.h"

#include <stdint.h>


float bf_expf(float x)
{
    /* x = k*ln2 + r with |r| <= ln2/2, e^x = 2^k * e^r; ln2 split in a high
     * part exact in float and a low correction (Cody-Waite). */
    const float ln2_hi = 0.693145751953125f;
    const float ln2_lo = 1.42860682030941723212e-6f;
    const float inv_ln2 = 1.44269504088896341f;
    float kf, r, p;
    int32_t k;
    bf_bits32_t b;

    if (x != x) {
        return x;
    }
    if (x > 88.0f) {
        b.u = 0x7f800000u;
        return b.f;
    }
    if (x < -87.33f) {
        return 0.0f;
    }
    kf = x * inv_ln2;
    k = (int32_t)(kf < 0.0f ? kf - 0.5f : kf + 0.5f);
    kf = (float)k;
    r = (x - kf * ln2_hi) - kf * ln2_lo;
    /* Taylor to degree 7 on |r| <= 0.347: truncation < 2e-9 relative. */
    p = 1.0f + r * (1.0f + r * (0.5f + r * (1.6666667e-1f + r * (4.1666668e-2f
        + r * (8.3333338e-3f + r * (1.3888889e-3f + r * 1.9841270e-4f))))));
    b.u = (uint32_t)(k + 127) << 23;
    return p * b.f;
}

float bf_sqrtf(float x)
{
    bf_bits32_t b;
    float y;
    int i;

    if (!(x > 0.0f)) {
        return 0.0f;
    }
    if (!bf_isfinite(x)) {
        return x;
    }
    if (x < 1.17549435e-38f) {
        /* Subnormal: the exponent trick below assumes a normal float. */
        return bf_sqrtf(x * 16777216.0f) * (1.0f / 4096.0f);
    }
    /* Halving the exponent (with the mantissa shifted in) gives a guess
     * within 6 %; Newton doubles the correct bits each step, so three steps
     * reach float precision (6e-2, 2e-3, 2e-6, 2e-12). */
    b.f = x;
    b.u = (b.u >> 1) + 0x1fc00000u;
    y = b.f;
    for (i = 0; i < 3; ++i) {
        y = 0.5f * (y + x / y);
    }
    return y;
}
