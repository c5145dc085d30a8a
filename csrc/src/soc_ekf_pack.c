/* Many cells of one pack per call: bf_soc_ekf_step's arithmetic, lane by
 * lane over blocks of LANES neighbouring cells.
 *
 * How it stays fast and exact:
 * - The cells of a block go through one loop whose body is the whole step
 *   written without branches (every `if` of soc_ekf.c becomes a select), so
 *   GCC's loop vectoriser runs it on vector registers, LANES cells at once.
 *   LANES is a compile-time constant and a multiple of every vector width,
 *   which is what GCC's cheapest cost model (the one -O2 uses) requires:
 *   no epilogue, no run-time alias checks (the loop reads and writes
 *   block-local arrays only).
 * - Each lane performs exactly the operations of bf_soc_ekf_step, in the
 *   same order, in single precision, so the results are the same bits
 *   (bf_expf and bf_sqrtf are inlined below as the same algorithm with their
 *   special cases as selects).
 * - Table lookups are gathers (per-lane row and column); the temperature row
 *   is found by a fixed number of compares and selects instead of
 *   bf_cell_locate's search loop.
 * - The covariance repair's square roots are needed only when a variance
 *   exceeds its ceiling or a correlation its bound, which normal operation
 *   never reaches: the vector loop flags such lanes (and lanes whose step
 *   fails) and a scalar pass runs bf_soc_ekf_step itself on them.
 * - Time is the outer loop: the state of all cells (68 bytes a cell) is read
 *   and written once per sample, the inputs and outputs stream by row. */
/* GCC's default -ftrapping-math forbids if-converting a loop in which any
 * floating-point operation (or comparison) sits on one side of a branch, and
 * its own passes put some there (jump threading, code sinking), so the lane
 * loops below would not vectorise. -fno-trapping-math only allows the
 * compiler to evaluate operations whose exceptions nobody inspects (the core
 * never reads the floating-point status); it changes no result. Set before
 * the headers so that their inline functions get it too, or GCC would not
 * inline them here. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include "bmsfil/soc_ekf_pack.h"

#include "bmsfil/bf_math.h"

#define NX BF_SOC_EKF_NX
#define NF BF_SOC_EKF_PACK_FIELDS
/* Cells per block. 8 floats fill one AVX register or two SSE ones. */
#ifndef BF_SOC_EKF_PACK_LANES
#define BF_SOC_EKF_PACK_LANES 8
#endif
#define LANES BF_SOC_EKF_PACK_LANES
/* The loops over state indices inside the loop over lanes must be unrolled
 * completely before the vectoriser sees the lane loop (-O2 would not). */
#if defined(__GNUC__) && !defined(__clang__) && (__GNUC__ >= 8)
#define BF_UNROLL _Pragma("GCC unroll 8")
#define BF_UNROLL_ALL _Pragma("GCC unroll 32")
#else
#define BF_UNROLL_ALL
#define BF_UNROLL
#endif

/* The constants of soc_ekf.c (kept equal to them; test_soc_ekf_pack.c
 * compares the two on the paths they govern). */
#define SECONDS_PER_HOUR 3600.0f
#define TEMP_MIN_C (-60.0f)
#define TEMP_MAX_C (120.0f)
#define VOLTAGE_MARGIN_V 0.5f
#define P_MAX_SOC 1.0f
#define P_MAX_HYST 4.0f
#define R_MIN_REL 1e-6f
#define CORR_MAX 0.999f
/* A temperature no valid sample reaches (they are at most TEMP_MAX_C). */
#define NEVER_C 3.0e38f

/* Rows of the state. */
enum {
    F_X0 = 0, F_X1, F_X2, F_X3,
    F_P00, F_P01, F_P02, F_P03, F_P11, F_P12, F_P13, F_P22, F_P23, F_P33,
    F_LAST_I, F_LAST_T, F_HSIGN
};

/* Row of P[i][j] (either triangle). */
static const int prow[NX][NX] = {
    { F_P00, F_P01, F_P02, F_P03 },
    { F_P01, F_P11, F_P12, F_P13 },
    { F_P02, F_P12, F_P22, F_P23 },
    { F_P03, F_P13, F_P23, F_P33 },
};

/* What a call shares between its steps. */
typedef struct {
    const bf_cell_params_t *p;
    const bf_soc_ekf_tuning_t *t;
    float temp_hi[BF_MAX_TEMPS];    /* temp_C[i], padded so that [i] and [i+1] exist for every i < BF_MAX_TEMPS - 1 */
    float temp_thr[BF_MAX_TEMPS];   /* temp_C[i] where the search may go past row i, else never met */
    float temp_top, temp_bottom;    /* above the last row / the first row, never met with one row */
    int32_t t0_top;                 /* n_temps - 2 */
    float ocv_span;                 /* (float)(n_ocv - 1u) */
    float rc_span;
    float ocv_kmaxf;                /* n_ocv - 2 */
    float rc_kmaxf;
    int32_t t_step;                 /* 1 with two temperature rows or more, else 0 */
    /* The tables as flat arrays, row t column k at [t * columns + k]. */
    const float *ocv, *r0, *r1, *r2, *tau1, *tau2;
    float v_lo, v_hi;               /* plausible voltages */
    float floor_[NX], ceiling[NX];
} ctx_t;

/* A block's state and outputs for one sample. */
typedef struct {
    float s[NF][LANES];             /* state in */
    float out[NF][LANES];           /* state out */
    float v[LANES], temp[LANES];    /* inputs */
    float cur[LANES];               /* the current each cell is stepped with */
    float soc[LANES], sigma[LANES];
    uint32_t flags[LANES];
    int32_t rare[LANES];            /* the lane needs the scalar path */
} block_t;

/* ---- bf_expf and bf_sqrtf, one lane, branch-free -------------------------- */

/* (float)k for |k| < 2^22, exactly: 1.5 * 2^23 + k has a unit last place,
 * so it is exact in its bits, and subtracting 1.5 * 2^23 leaves k. Written
 * so because GCC turns (float)(int)x into trunc(x) under
 * -fno-trapping-math, which with SSE4.1 or AVX is a call the loop's
 * if-conversion refuses. */
static inline float lane_itof(int32_t k)
{
    bf_bits32_t b;
    b.u = 0x4b400000u + (uint32_t)k;
    return b.f - 12582912.0f;
}

static inline float lane_expf(float x)
{
    const float ln2_hi = 0.693145751953125f;
    const float ln2_lo = 1.42860682030941723212e-6f;
    const float inv_ln2 = 1.44269504088896341f;
    int in_range = (x <= 88.0f) & (x >= -87.33f);   /* false for NaN */
    float xc = in_range ? x : 0.0f;              /* no float-to-int conversion of NaN */
    float kf = xc * inv_ln2, r, poly, res;
    /* Every operation unconditional, then selects: GCC will not if-convert
     * (so not vectorise) a loop that does floating-point arithmetic on one
     * side of a branch only, as it might raise an exception the source
     * would not. */
    int32_t k = (int32_t)(kf + (kf < 0.0f ? -0.5f : 0.5f)); /* a - b is a + (-b), exactly */
    bf_bits32_t b;
    kf = lane_itof(k);              /* |k| <= 127 */
    r = (xc - kf * ln2_hi) - kf * ln2_lo;
    poly = 1.0f + r * (1.0f + r * (0.5f + r * (1.6666667e-1f + r * (4.1666668e-2f
           + r * (8.3333338e-3f + r * (1.3888889e-3f + r * 1.9841270e-4f))))));
    b.u = (uint32_t)(k + 127) << 23;
    res = poly * b.f;
    b.u = 0x7f800000u;
    res = x > 88.0f ? b.f : res;
    res = x < -87.33f ? 0.0f : res;
    return x != x ? x : res;
}

static inline float lane_sqrtf(float x)
{
    /* bf_sqrtf: 0 for x <= 0 (and NaN), x for +inf, subnormals scaled by
     * 2^24 and the root by 2^-12. The special inputs are swapped for 1
     * first, so that every operation after is unconditional (GCC moves an
     * operation used on one path only onto that path, and then will not
     * if-convert the loop around it); the scale factors are built from
     * their exponent bits for the same reason (x * 1 is x, exactly). */
    float xg = ((x > 0.0f) & bf_isfinite(x)) ? x : 1.0f;
    uint32_t sub;
    float xs, y;
    bf_bits32_t b, scale;
    int i;
    b.f = xg;
    sub = b.u < 0x00800000u;                      /* subnormal (xg is positive) */
    scale.u = 0x3f800000u + sub * (24u << 23);    /* 2^24 or 1 */
    xs = xg * scale.f;
    b.f = xs;
    b.u = (b.u >> 1) + 0x1fc00000u;
    y = b.f;
    BF_UNROLL
    for (i = 0; i < 3; ++i) {
        y = 0.5f * (y + xs / y);
    }
    scale.u = 0x3f800000u - sub * (12u << 23);    /* 2^-12 or 1 */
    y = y * scale.f;
    y = bf_isfinite(x) ? y : x;
    return x > 0.0f ? y : 0.0f;
}

/* c ? a : b by bit masks: both values are loaded and the choice is data,
 * which GCC cannot turn back into a branch around a load (it would then not
 * vectorise the loop: the load might fault on the path that skipped it). */
static inline float lane_pick(int32_t c, float a, float b)
{
    bf_bits32_t ua, ub;
    uint32_t m = (uint32_t)0 - (uint32_t)(c != 0);
    ua.f = a;
    ub.f = b;
    ua.u = (ua.u & m) | (ub.u & ~m);
    return ua.f;
}

static inline uint32_t lane_picki(int32_t c, uint32_t a, uint32_t b)
{
    uint32_t m = (uint32_t)0 - (uint32_t)(c != 0);
    return (a & m) | (b & ~m);
}

static inline float lane_signf(float v)
{
    return v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f);
}

/* cell_model.c's grid_cell with an int32 index (the same value: 0 <= pos < 2^31). */
static inline int32_t lane_grid(float x, float span, float kmax, float *w)
{
    float c = x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f;
    float pos = c * span;
    /* min(trunc(pos), kmax) as trunc(min(pos, kmax)): the same integer
     * (kmax is whole), and a float min vectorises where an int32 one needs
     * SSE4.1. */
    int32_t k = (int32_t)(pos < kmax ? pos : kmax);
    *w = pos - lane_itof(k);        /* 0 <= k < BF_OCV_MAX_POINTS */
    return k;
}

/* bf_cell_rc_table on flat indices i0 = row t0, column k; i1 = row t1. */
static inline float lane_rc(const float *tab, int32_t i0, int32_t i1, float wt, float w)
{
    return bf_lerp(bf_lerp(tab[i0], tab[i1], wt), bf_lerp(tab[i0 + 1], tab[i1 + 1], wt), w);
}

/* ---- one sample of one block -------------------------------------------------- */

/* The vector pass: everything of bf_soc_ekf_step but the rare repairs and
 * the final commit. Returns nonzero if any lane needs the scalar repair. */
static int32_t block_step(block_t *restrict b, const ctx_t *restrict c, float dt, float cur_in, int32_t cur_ok)
{
    const bf_cell_params_t *p = c->p;
    const bf_soc_ekf_tuning_t *t = c->t;
    const float q_soc = t->q_soc_per_s * dt;
    const float q_irc = t->q_irc_A2_per_s * dt;
    const float q_hyst = t->q_hyst_per_s * dt;
    const float r_dt = dt > t->r_dt_min_s ? dt : t->r_dt_min_s;
    const float gate2 = t->gate_sigma * t->gate_sigma;
    const float i_max = p->i_max_A;
    const float eta_charge = p->eta_charge;
    int32_t any_rare = 0;
    int l;

    /* The current, the same test for every cell; in a loop of its own, as a
     * load on one side of a branch would stop the vectoriser. */
    if (cur_ok) {
        for (l = 0; l < LANES; ++l) {
            b->cur[l] = cur_in;
        }
    } else {
        for (l = 0; l < LANES; ++l) {
            b->cur[l] = b->s[F_LAST_I][l];
        }
    }

    for (l = 0; l < LANES; ++l) {
        uint32_t flags = 0u;
        float cur, temp, v;
        int32_t t0, k, v_ok;
        int32_t tr0, tr1, to0, to1, tt1;
        float w_rc, w_ocv;
        float lo, hi, wt;
        float cap_Ah, cap_As, eta, dz, tau1, tau2, gamma, a1, a2, ah, sg;
        float x0, x1, x2, x3, hs;
        float F[NX], P[NX][NX], H[NX], PH[NX], K[NX], AP[NX][NX], Pn[NX][NX];
        float ocv, docv, r0, r1, r2, m0, m, ohmic_V, eta_V, v_pred;
        float hph, r_meas, S, innov, nis, inv_S, u, xc[NX];
        int32_t rare = 0, rep = 0;
        int i, j;

        /* Inputs: a bad current is the last good one, a bad temperature the
         * last good one, a bad voltage skips the correction. */
        cur = b->cur[l];
        flags |= cur_ok ? 0u : BF_FLAG_CURRENT_INVALID;
        b->out[F_LAST_I][l] = cur;
        temp = b->temp[l];
        {
            int32_t t_ok = bf_isfinite(temp) & !(temp < TEMP_MIN_C) & !(temp > TEMP_MAX_C);
            temp = lane_pick(t_ok, temp, b->s[F_LAST_T][l]);
            flags |= t_ok ? 0u : BF_FLAG_TEMP_INVALID;
            b->out[F_LAST_T][l] = temp;
        }
        v = b->v[l];
        v_ok = bf_isfinite(v) & !(v < c->v_lo) & !(v > c->v_hi);
        flags |= v_ok ? 0u : BF_FLAG_VOLTAGE_INVALID;

        /* bf_cell_locate: the temperature row by compares (temp is finite;
         * the thresholds of rows the search would not reach are never met). */
        t0 = 0;
        lo = c->temp_hi[0];
        hi = c->temp_hi[1];
        BF_UNROLL
        for (i = 1; i < BF_MAX_TEMPS - 1; ++i) {
            int32_t above = temp >= c->temp_thr[i];
            t0 += above;
            lo = above ? c->temp_hi[i] : lo;
            hi = above ? c->temp_hi[i + 1] : hi;
        }
        wt = (temp - lo) / (hi - lo);
        {
            int32_t top = temp >= c->temp_top;
            int32_t mid = temp > c->temp_bottom;
            t0 = (int32_t)lane_picki(top, (uint32_t)c->t0_top, lane_picki(mid, (uint32_t)t0, 0u));
            wt = lane_pick(top, 1.0f, lane_pick(mid, wt, 0.0f));
        }
        /* Flat indices of the rows (t1 = t0 + 1, or t0 with one row). */
        tr0 = t0 * BF_RC_MAX_POINTS;
        tr1 = tr0 + c->t_step * BF_RC_MAX_POINTS;
        to0 = t0 * BF_OCV_MAX_POINTS;
        to1 = to0 + c->t_step * BF_OCV_MAX_POINTS;
        tt1 = t0 + c->t_step;
        x0 = b->s[F_X0][l];
        k = lane_grid(x0, c->rc_span, c->rc_kmaxf, &w_rc);

        /* Prediction. */
        cap_Ah = bf_lerp(p->capacity_Ah[t0], p->capacity_Ah[tt1], wt);
        cap_As = cap_Ah * SECONDS_PER_HOUR;
        eta = cur > 0.0f ? eta_charge : 1.0f;
        dz = eta * cur * dt / cap_As;
        tau1 = lane_rc(c->tau1, tr0 + k, tr1 + k, wt, w_rc);
        tau2 = lane_rc(c->tau2, tr0 + k, tr1 + k, wt, w_rc);
        gamma = bf_lerp(p->hyst_gamma[t0], p->hyst_gamma[tt1], wt);
        a1 = lane_expf(-dt / tau1);
        a2 = lane_expf(-dt / tau2);
        ah = lane_expf(-bf_absf(dz * gamma));
        sg = lane_signf(cur);

        x0 += dz;
        x1 = a1 * b->s[F_X1][l] + (1.0f - a1) * cur;
        x2 = a2 * b->s[F_X2][l] + (1.0f - a2) * cur;
        x3 = ah * b->s[F_X3][l] + (1.0f - ah) * sg;
        hs = lane_pick(bf_absf(cur) > t->hyst_current_A, sg, b->s[F_HSIGN][l]);
        b->out[F_HSIGN][l] = hs;
        flags |= ((x0 < 0.0f) | (x0 > 1.0f)) ? BF_FLAG_SOC_CLAMPED : 0u;
        x0 = bf_clampf(x0, 0.0f, 1.0f);    /* x0 itself when inside, NaN stays NaN */

        F[0] = 1.0f;
        F[1] = a1;
        F[2] = a2;
        F[3] = ah;
        BF_UNROLL
        for (i = 0; i < NX; ++i) {
            BF_UNROLL
            for (j = i; j < NX; ++j) {
                P[i][j] = b->s[prow[i][j]][l] * (F[i] * F[j]);
                P[j][i] = P[i][j];
            }
        }
        P[0][0] += q_soc;
        P[1][1] += q_irc;
        P[2][2] += q_irc;
        P[3][3] += q_hyst;

        /* Correction from the terminal voltage. */
        {
            /* bf_cell_ocv */
            int32_t ko = lane_grid(x0, c->ocv_span, c->ocv_kmaxf, &w_ocv);
            float lo_o = bf_lerp(c->ocv[to0 + ko], c->ocv[to1 + ko], wt);
            float hi_o = bf_lerp(c->ocv[to0 + ko + 1], c->ocv[to1 + ko + 1], wt);
            docv = (hi_o - lo_o) * c->ocv_span;
            ocv = bf_lerp(lo_o, hi_o, w_ocv);
        }
        k = lane_grid(x0, c->rc_span, c->rc_kmaxf, &w_rc);
        r0 = lane_rc(c->r0, tr0 + k, tr1 + k, wt, w_rc);
        r1 = lane_rc(c->r1, tr0 + k, tr1 + k, wt, w_rc);
        r2 = lane_rc(c->r2, tr0 + k, tr1 + k, wt, w_rc);
        m0 = bf_lerp(p->hyst_m0_V[t0], p->hyst_m0_V[tt1], wt);
        m = bf_lerp(p->hyst_m_V[t0], p->hyst_m_V[tt1], wt);
        ohmic_V = r0 * cur + bf_lerp(p->rn_ohm[t0], p->rn_ohm[tt1], wt) * cur / (1.0f + p->rn_sat_per_A * bf_absf(cur));
        eta_V = ohmic_V + r1 * x1 + r2 * x2;
        v_pred = ocv + m0 * hs + m * x3 + eta_V;

        H[0] = docv;
        H[1] = r1;
        H[2] = r2;
        H[3] = m;
        hph = 0.0f;
        BF_UNROLL
        for (i = 0; i < NX; ++i) {
            PH[i] = 0.0f;
            BF_UNROLL
            for (j = 0; j < NX; ++j) {
                PH[i] += P[i][j] * H[j];
            }
            hph += H[i] * PH[i];
        }
        r_meas = (t->r_voltage_V2_s + t->r_overpotential_rel2_s * eta_V * eta_V) / r_dt;
        {
            float r_min = R_MIN_REL * hph;
            r_meas = r_meas < r_min ? r_min : r_meas;
        }
        S = hph + r_meas;
        {
            float dv = v - v_pred;
            innov = v_ok ? dv : 0.0f;
        }
        nis = innov * innov / S;
        {
            /* Inflate R so that the innovation sits on the gate. */
            int32_t gated = v_ok & (nis > gate2);
            float S_gate = innov * innov / gate2;
            float r_gate = S_gate - hph;
            S = gated ? S_gate : S;
            r_meas = gated ? r_gate : r_meas;
            flags |= gated ? BF_FLAG_GATED : 0u;
        }
        inv_S = 1.0f / S;
        BF_UNROLL
        for (i = 0; i < NX; ++i) {
            K[i] = PH[i] * inv_S;
        }
        xc[0] = x0 + K[0] * innov;
        xc[1] = x1 + K[1] * innov;
        xc[2] = x2 + K[2] * innov;
        xc[3] = x3 + K[3] * innov;
        BF_UNROLL
        for (i = 0; i < NX; ++i) {
            BF_UNROLL
            for (j = 0; j < NX; ++j) {
                AP[i][j] = P[i][j] - K[i] * PH[j];
            }
        }
        BF_UNROLL
        for (i = 0; i < NX; ++i) {
            u = 0.0f;
            BF_UNROLL
            for (j = 0; j < NX; ++j) {
                u += AP[i][j] * H[j];
            }
            BF_UNROLL
            for (j = 0; j < NX; ++j) {
                float joseph = AP[i][j] - u * K[j] + r_meas * K[i] * K[j];
                Pn[i][j] = v_ok ? joseph : P[i][j];
            }
        }
        flags |= (v_ok & ((xc[0] < 0.0f) | (xc[0] > 1.0f))) ? BF_FLAG_SOC_CLAMPED : 0u;
        x0 = v_ok ? bf_clampf(xc[0], 0.0f, 1.0f) : x0;
        x1 = v_ok ? xc[1] : x1;
        x2 = v_ok ? xc[2] : x2;
        x3 = v_ok ? bf_clampf(xc[3], -1.0f, 1.0f) : x3;
        x1 = bf_clampf(x1, -i_max, i_max);
        x2 = bf_clampf(x2, -i_max, i_max);
        b->out[F_X0][l] = x0;
        b->out[F_X1][l] = x1;
        b->out[F_X2][l] = x2;
        b->out[F_X3][l] = x3;

        /* repair_covariance: symmetrise, then the cheap repairs here; a
         * variance above its ceiling or a correlation beyond CORR_MAX (square
         * roots) sends the lane to the scalar pass. */
        BF_UNROLL
        for (i = 0; i < NX; ++i) {
            BF_UNROLL
            for (j = i + 1; j < NX; ++j) {
                float cij = 0.5f * (Pn[i][j] + Pn[j][i]);
                Pn[i][j] = cij;
                Pn[j][i] = cij;
            }
        }
        BF_UNROLL
        for (i = 0; i < NX; ++i) {
            float d = Pn[i][i];
            int32_t bad = !bf_isfinite(d);
            int32_t low = d < c->floor_[i];
            rare |= d > c->ceiling[i];
            rep |= bad | low;
            BF_UNROLL
            for (j = 0; j < NX; ++j) {
                Pn[i][j] = lane_pick(bad, 0.0f, Pn[i][j]);
                Pn[j][i] = lane_pick(bad, 0.0f, Pn[j][i]);
            }
            Pn[i][i] = lane_pick(bad, c->ceiling[i], lane_pick(low, c->floor_[i], d));
        }
        BF_UNROLL
        for (i = 0; i < NX; ++i) {
            BF_UNROLL
            for (j = i + 1; j < NX; ++j) {
                float cij = Pn[i][j];
                float lim2 = CORR_MAX * CORR_MAX * (Pn[i][i] * Pn[j][j]);
                float c2 = cij * cij;
                int32_t bad = !bf_isfinite(cij);
                rare |= !bad & (c2 > lim2);
                rep |= bad;
                b->out[prow[i][j]][l] = lane_pick(bad, 0.0f, cij);
            }
            b->out[prow[i][i]][l] = Pn[i][i];
        }
        flags |= rep ? BF_FLAG_COV_REPAIRED : 0u;
        /* A state that is not finite: bf_soc_ekf_step fails, so the scalar
         * pass too. */
        {
            /* x - x is 0 for a finite x and NaN otherwise (written so because
             * GCC turns the bit test of bf_isfinite on selected values into
             * selects of booleans, which it then cannot vectorise). */
            float z = ((x0 - x0) + (x1 - x1)) + ((x2 - x2) + (x3 - x3));
            rare |= !(z == 0.0f);
        }
        b->flags[l] = flags;
        b->soc[l] = x0;
        b->sigma[l] = lane_sqrtf(b->out[F_P00][l]);
        b->rare[l] = rare;
        any_rare |= rare;
    }
    return any_rare;
}

/* The scalar pass: the lanes block_step could not finish (a repair that
 * needs square roots, or a step that fails) go through bf_soc_ekf_step
 * itself, from the state they had. Returns nonzero if a lane's step failed
 * (BF_E_NUMERIC: that lane keeps its state, as the single-cell step does). */
static int32_t block_rare(block_t *b, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *t, float dt,
                          float cur_in)
{
    int32_t failed = 0;
    int l, i, j, f;
    for (l = 0; l < LANES; ++l) {
        bf_soc_ekf_t s;
        bf_soc_ekf_out_t o;
        bf_status_t st;
        if (!b->rare[l]) {
            continue;
        }
        for (i = 0; i < NX; ++i) {
            s.x[i] = b->s[F_X0 + i][l];
            for (j = 0; j < NX; ++j) {
                s.P[i][j] = b->s[prow[i][j]][l];
            }
        }
        s.last_current_A = b->s[F_LAST_I][l];
        s.last_temp_C = b->s[F_LAST_T][l];
        s.hyst_sign = b->s[F_HSIGN][l];
        st = bf_soc_ekf_step(&s, p, t, dt, cur_in, b->v[l], b->temp[l], &o);
        for (f = 0; f < NX; ++f) {
            b->out[F_X0 + f][l] = s.x[f];
        }
        for (i = 0; i < NX; ++i) {
            for (j = i; j < NX; ++j) {
                b->out[prow[i][j]][l] = s.P[i][j];
            }
        }
        b->out[F_LAST_I][l] = s.last_current_A;
        b->out[F_LAST_T][l] = s.last_temp_C;
        b->out[F_HSIGN][l] = s.hyst_sign;
        b->soc[l] = o.soc;
        b->sigma[l] = o.soc_sigma;
        b->flags[l] = o.flags | (st == BF_OK ? 0u : BF_FLAG_NUMERIC);
        failed |= st != BF_OK;
    }
    return failed;
}

/* A sample whose interval is refused: nothing moves. */
static void block_skip(block_t *restrict b)
{
    int l;
    for (l = 0; l < LANES; ++l) {
        b->soc[l] = b->s[F_X0][l];
        b->sigma[l] = lane_sqrtf(b->s[F_P00][l]);
        b->flags[l] = BF_FLAG_DT_INVALID;
    }
}

static void store_lanes(float *dst, const float *src, size_t nv)
{
    size_t l;
    if (nv == (size_t)LANES) {
        for (l = 0; l < (size_t)LANES; ++l) {
            dst[l] = src[l];
        }
    } else {
        for (l = 0; l < (size_t)LANES; ++l) {
            if (l < nv) {
                dst[l] = src[l];
            }
        }
    }
}

/* ---- the public calls ----------------------------------------------------------- */

static bf_status_t check_all(const bf_soc_ekf_pack_t *pk, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *t)
{
    bf_status_t st;
    if (pk == 0 || p == 0 || t == 0 || (pk->data == 0 && pk->n_cells > 0u)) {
        return BF_E_NULL;
    }
    st = bf_cell_params_check(p);
    if (st != BF_OK) {
        return st;
    }
    return bf_soc_ekf_tuning_check(t);
}

bf_status_t bf_soc_ekf_pack_get(const bf_soc_ekf_pack_t *pk, size_t cell, bf_soc_ekf_t *s)
{
    size_t n;
    int i, j;
    if (pk == 0 || s == 0 || pk->data == 0) {
        return BF_E_NULL;
    }
    if (cell >= pk->n_cells) {
        return BF_E_RANGE;
    }
    n = pk->n_cells;
    BF_UNROLL
    for (i = 0; i < NX; ++i) {
        s->x[i] = pk->data[(size_t)(F_X0 + i) * n + cell];
        BF_UNROLL
        for (j = 0; j < NX; ++j) {
            s->P[i][j] = pk->data[(size_t)prow[i][j] * n + cell];
        }
    }
    s->last_current_A = pk->data[(size_t)F_LAST_I * n + cell];
    s->last_temp_C = pk->data[(size_t)F_LAST_T * n + cell];
    s->hyst_sign = pk->data[(size_t)F_HSIGN * n + cell];
    return BF_OK;
}

bf_status_t bf_soc_ekf_pack_set(bf_soc_ekf_pack_t *pk, size_t cell, const bf_soc_ekf_t *s)
{
    size_t n;
    int i, j;
    if (pk == 0 || s == 0 || pk->data == 0) {
        return BF_E_NULL;
    }
    if (cell >= pk->n_cells) {
        return BF_E_RANGE;
    }
    n = pk->n_cells;
    BF_UNROLL
    for (i = 0; i < NX; ++i) {
        pk->data[(size_t)(F_X0 + i) * n + cell] = s->x[i];
        BF_UNROLL
        for (j = i; j < NX; ++j) {
            pk->data[(size_t)prow[i][j] * n + cell] = s->P[i][j];
        }
    }
    pk->data[(size_t)F_LAST_I * n + cell] = s->last_current_A;
    pk->data[(size_t)F_LAST_T * n + cell] = s->last_temp_C;
    pk->data[(size_t)F_HSIGN * n + cell] = s->hyst_sign;
    return BF_OK;
}

static bf_status_t init_cells(bf_soc_ekf_pack_t *pk, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *t,
                              const float *value, const float *temp_C, int from_ocv)
{
    bf_status_t st = check_all(pk, p, t);
    size_t cell;
    if (st != BF_OK) {
        return st;
    }
    if (pk->n_cells > 0u && (value == 0 || temp_C == 0)) {
        return BF_E_NULL;
    }
    for (cell = 0; cell < pk->n_cells; ++cell) {
        bf_soc_ekf_t s;
        st = from_ocv ? bf_soc_ekf_init_ocv(&s, p, t, value[cell], temp_C[cell])
                      : bf_soc_ekf_init_soc(&s, p, t, value[cell], temp_C[cell]);
        if (st != BF_OK) {
            return st;
        }
        (void)bf_soc_ekf_pack_set(pk, cell, &s);
    }
    return BF_OK;
}

bf_status_t bf_soc_ekf_pack_init_soc(bf_soc_ekf_pack_t *pk, const bf_cell_params_t *p,
                                     const bf_soc_ekf_tuning_t *t, const float *soc, const float *temp_C)
{
    return init_cells(pk, p, t, soc, temp_C, 0);
}

bf_status_t bf_soc_ekf_pack_init_ocv(bf_soc_ekf_pack_t *pk, const bf_cell_params_t *p,
                                     const bf_soc_ekf_tuning_t *t, const float *voltage_V, const float *temp_C)
{
    return init_cells(pk, p, t, voltage_V, temp_C, 1);
}

static void make_ctx(ctx_t *c, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *t)
{
    uint32_t i;
    const float irc_max = p->i_max_A * p->i_max_A;
    const uint32_t last = p->n_temps > 0u ? p->n_temps - 1u : 0u;
    c->p = p;
    c->t = t;
    BF_UNROLL
    for (i = 0; i < BF_MAX_TEMPS; ++i) {
        /* Rows past n_temps are never selected; repeat the last so that the
         * arithmetic on them stays finite. */
        c->temp_hi[i] = p->temp_C[i < last ? i : last];
    }
    if (p->n_temps == 1u) {
        c->temp_hi[1] = c->temp_hi[0] + 1.0f;
    }
    for (i = 0; i < BF_MAX_TEMPS; ++i) {
        c->temp_thr[i] = i + 1u < p->n_temps ? p->temp_C[i] : NEVER_C;
    }
    c->temp_top = p->n_temps > 1u ? p->temp_C[last] : NEVER_C;
    c->temp_bottom = p->n_temps > 1u ? p->temp_C[0] : NEVER_C;
    c->t0_top = (int32_t)p->n_temps - 2;
    c->ocv_span = (float)(p->n_ocv - 1u);
    c->rc_span = (float)(p->n_rc - 1u);
    c->ocv_kmaxf = (float)(p->n_ocv - 2u);
    c->rc_kmaxf = (float)(p->n_rc - 2u);
    c->t_step = p->n_temps > 1u ? 1 : 0;
    c->ocv = &p->ocv_V[0][0];
    c->r0 = &p->r0_ohm[0][0];
    c->r1 = &p->r1_ohm[0][0];
    c->r2 = &p->r2_ohm[0][0];
    c->tau1 = &p->tau1_s[0][0];
    c->tau2 = &p->tau2_s[0][0];
    c->v_lo = p->v_min_V - VOLTAGE_MARGIN_V;
    c->v_hi = p->v_max_V + VOLTAGE_MARGIN_V;
    c->floor_[0] = t->p_floor_soc;
    c->floor_[1] = t->p_floor_irc_A2;
    c->floor_[2] = t->p_floor_irc_A2;
    c->floor_[3] = t->p_floor_hyst;
    c->ceiling[0] = P_MAX_SOC;
    c->ceiling[1] = irc_max;
    c->ceiling[2] = irc_max;
    c->ceiling[3] = P_MAX_HYST;
}

bf_status_t bf_soc_ekf_pack_run(bf_soc_ekf_pack_t *pk, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *t,
                                const float *dt_s, const float *current_A, const float *voltage_V,
                                const float *temp_C, size_t n, float *soc_out, float *sigma_out,
                                uint8_t *flags_out)
{
    ctx_t c;
    block_t b;
    size_t N, k, c0;
    int32_t any_bad = 0;
    bf_status_t st;
    if (dt_s == 0 || current_A == 0 || voltage_V == 0 || temp_C == 0) {
        return BF_E_NULL;
    }
    st = check_all(pk, p, t);
    if (st != BF_OK) {
        return st;
    }
    N = pk->n_cells;
    make_ctx(&c, p, t);
    for (k = 0; k < n; ++k) {
        const float dt = dt_s[k];
        const float cur = current_A[k];
        const int32_t dt_ok = bf_isfinite(dt) && !(dt < 0.0f) && !(dt > t->dt_max_s);
        const int32_t cur_ok = bf_isfinite(cur) && !(bf_absf(cur) > p->i_max_A);
        const size_t row = k * N;
        for (c0 = 0; c0 < N; c0 += LANES) {
            /* A short last block repeats its first cell in the spare lanes.
             * The copies are written with a constant count (and, for a short
             * block, a test per lane) so that no optimiser turns them into
             * calls to memcpy, which the core must not need. */
            const size_t nv = N - c0 < (size_t)LANES ? N - c0 : (size_t)LANES;
            const int full = nv == (size_t)LANES;
            size_t l;
            int f;
            for (f = 0; f < NF; ++f) {
                const float *src = pk->data + (size_t)f * N + c0;
                if (full) {
                    for (l = 0; l < (size_t)LANES; ++l) {
                        b.s[f][l] = src[l];
                    }
                } else {
                    for (l = 0; l < (size_t)LANES; ++l) {
                        b.s[f][l] = src[l < nv ? l : 0u];
                    }
                }
            }
            if (full) {
                for (l = 0; l < (size_t)LANES; ++l) {
                    b.v[l] = voltage_V[row + c0 + l];
                    b.temp[l] = temp_C[row + c0 + l];
                }
            } else {
                for (l = 0; l < (size_t)LANES; ++l) {
                    b.v[l] = voltage_V[row + c0 + (l < nv ? l : 0u)];
                    b.temp[l] = temp_C[row + c0 + (l < nv ? l : 0u)];
                }
            }
            if (!dt_ok) {
                block_skip(&b);
            } else {
                if (block_step(&b, &c, dt, cur, cur_ok) && block_rare(&b, p, t, dt, cur)) {
                    for (l = 0; l < (size_t)LANES; ++l) {
                        any_bad |= l < nv && (b.flags[l] & BF_FLAG_NUMERIC) != 0u;
                    }
                }
                for (f = 0; f < NF; ++f) {
                    float *dst = pk->data + (size_t)f * N + c0;
                    if (full) {
                        for (l = 0; l < (size_t)LANES; ++l) {
                            dst[l] = b.out[f][l];
                        }
                    } else {
                        for (l = 0; l < (size_t)LANES; ++l) {
                            if (l < nv) {
                                dst[l] = b.out[f][l];
                            }
                        }
                    }
                }
            }
            if (soc_out != 0) {
                store_lanes(soc_out + row + c0, b.soc, nv);
            }
            if (sigma_out != 0) {
                store_lanes(sigma_out + row + c0, b.sigma, nv);
            }
            if (flags_out != 0) {
                for (l = 0; l < (size_t)LANES; ++l) {
                    if (l < nv) {
                        flags_out[row + c0 + l] = (uint8_t)b.flags[l];
                    }
                }
            }
        }
    }
    return any_bad ? BF_E_NUMERIC : BF_OK;
}
