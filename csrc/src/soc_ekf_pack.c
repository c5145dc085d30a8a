/* Many cells of one pack per call: bf_soc_ekf_step's arithmetic, lane by
 * lane over blocks of LANES neighbouring cells. The lane code is in
 * soc_ekf_pack_lanes.h, included below once for the portable build and, in
 * the host's build (BF_SOC_EKF_PACK_X86_DISPATCH), again for AVX2 and
 * AVX-512, chosen at run time.
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
 * never reads the floating-point status); it changes no result (every cell
 * is checked bit for bit against bf_soc_ekf_step by the tests). Set before
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
#define TEMP_MIN_C BF_TEMP_MIN_C
#define TEMP_MAX_C BF_TEMP_MAX_C
#define VOLTAGE_MARGIN_V BF_VOLTAGE_MARGIN_V
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
    F_LAST_I, F_LAST_T, F_HSIGN, F_FAILS
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

/* ---- the lane code, per instruction set ------------------------------------------ */

#define LANE_CAT2(a, b) a##b
#define LANE_CAT(a, b) LANE_CAT2(a, b)
#define LANE(name) LANE_CAT(name, LANE_SUFFIX)

/* Portable: what every build compiles (SSE2 on x86-64, any C99 target). */
#define LANE_SUFFIX _portable
#define LANE_ATTR
#include "soc_ekf_pack_lanes.h"
#undef LANE_SUFFIX
#undef LANE_ATTR

/* On x86-64 with GCC, when the build asks for it (the host's cffi build
 * does; csrc/Makefile and the firmware do not, as the CPU check needs
 * libgcc): the same code compiled again for AVX2 and for AVX-512, chosen at
 * run time by what the CPU has. Same operations, same order, no FMA
 * contraction (-ffp-contract=off; the AVX2 instance is not even allowed FMA
 * instructions): the same bits as the portable code. */
#if defined(BF_SOC_EKF_PACK_X86_DISPATCH) && defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define PACK_DISPATCH 1
#define LANE_SUFFIX _avx2
#define LANE_ATTR __attribute__((target("avx2")))
#include "soc_ekf_pack_lanes.h"
#undef LANE_SUFFIX
#undef LANE_ATTR
#define LANE_SUFFIX _avx512
#define LANE_ATTR __attribute__((target("avx2,avx512f,avx512vl,avx512bw,avx512dq")))
#include "soc_ekf_pack_lanes.h"
#undef LANE_SUFFIX
#undef LANE_ATTR
#else
#define PACK_DISPATCH 0
#endif

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
    pk->data[(size_t)F_FAILS * n + cell] = 0.0f;
    return BF_OK;
}

static bf_status_t init_cells(bf_soc_ekf_pack_t *pk, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *t,
                              const float *value, const float *temp_C, int from_ocv)
{
    bf_status_t st = check_all(pk, p, t);
    size_t cell;
    int write;
    if (st != BF_OK) {
        return st;
    }
    if (pk->n_cells > 0u && (value == 0 || temp_C == 0)) {
        return BF_E_NULL;
    }
    /* Every cell is checked before any is written: a refused value (a
     * voltage no cell can have) leaves the whole pack as it was. */
    for (write = 0; write < 2; ++write) {
        for (cell = 0; cell < pk->n_cells; ++cell) {
            bf_soc_ekf_t s;
            st = from_ocv ? bf_soc_ekf_init_ocv(&s, p, t, value[cell], temp_C[cell])
                          : bf_soc_ekf_init_soc(&s, p, t, value[cell], temp_C[cell]);
            if (st != BF_OK) {
                return st;
            }
            if (write) {
                (void)bf_soc_ekf_pack_set(pk, cell, &s);
            }
        }
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

enum { PATH_PORTABLE = 0, PATH_AVX2, PATH_AVX512 };

static int code_path(const bf_soc_ekf_pack_t *pk)
{
#if PACK_DISPATCH
    if (!(pk->options & BF_SOC_EKF_PACK_PORTABLE)) {
        __builtin_cpu_init();
        if (!(pk->options & BF_SOC_EKF_PACK_NO_AVX512) && __builtin_cpu_supports("avx512f")
            && __builtin_cpu_supports("avx512vl")
            && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")) {
            return PATH_AVX512;
        }
        if (__builtin_cpu_supports("avx2")) {
            return PATH_AVX2;
        }
    }
#else
    (void)pk;
#endif
    return PATH_PORTABLE;
}

const char *bf_soc_ekf_pack_code_path(const bf_soc_ekf_pack_t *pk)
{
    if (pk == 0) {
        return "";
    }
    switch (code_path(pk)) {
    case PATH_AVX512:
        return "avx512";
    case PATH_AVX2:
        return "avx2";
    default:
        return "portable";
    }
}

bf_status_t bf_soc_ekf_pack_run(bf_soc_ekf_pack_t *pk, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *t,
                                const float *dt_s, const float *current_A, const float *voltage_V,
                                const float *temp_C, size_t n, float *soc_out, float *sigma_out,
                                uint8_t *flags_out)
{
    ctx_t c;
    int32_t any_bad = 0;
    bf_status_t st;
    if (dt_s == 0 || current_A == 0 || voltage_V == 0 || temp_C == 0) {
        return BF_E_NULL;
    }
    st = check_all(pk, p, t);
    if (st != BF_OK) {
        return st;
    }
    make_ctx(&c, p, t);
    switch (code_path(pk)) {
#if PACK_DISPATCH
    case PATH_AVX512:
        any_bad = run_steps_avx512(pk, &c, dt_s, current_A, voltage_V, temp_C, n, soc_out, sigma_out, flags_out);
        break;
    case PATH_AVX2:
        any_bad = run_steps_avx2(pk, &c, dt_s, current_A, voltage_V, temp_C, n, soc_out, sigma_out, flags_out);
        break;
#endif
    default:
        any_bad = run_steps_portable(pk, &c, dt_s, current_A, voltage_V, temp_C, n, soc_out, sigma_out, flags_out);
        break;
    }
    return any_bad ? BF_E_NUMERIC : BF_OK;
}
