/* A minimal test harness for the C core's unit tests, plus the prototypes of
 * the shared fixtures in fixture.c. Each test program ends with
 * `return bf_test_finish();`, which prints the plain line "N passed, N failed"
 * and returns non-zero if anything failed. */
#ifndef BF_TEST_H
#define BF_TEST_H

#include <stdint.h>
#include <stdio.h>

#include "bmsfil/cell_model.h"
#include "bmsfil/soc_ekf.h"

static int bf_test_passed_;
static int bf_test_failed_;

static inline int bf_test_fail_(const char *file, int line, const char *what)
{
    ++bf_test_failed_;
    fprintf(stderr, "%s:%d: FAIL: %s\n", file, line, what);
    return 0;
}

/* CHECK(cond); CHECKF(cond, "printf format", args...) adds a message. */
#define CHECK(cond) ((cond) ? (void)++bf_test_passed_ : (void)bf_test_fail_(__FILE__, __LINE__, #cond))
#define CHECKF(cond, ...)                                                                          \
    do {                                                                                           \
        if (cond) {                                                                                \
            ++bf_test_passed_;                                                                     \
        } else {                                                                                   \
            bf_test_fail_(__FILE__, __LINE__, #cond);                                              \
            fprintf(stderr, "    " __VA_ARGS__);                                                   \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

static inline int bf_test_finish(void)
{
    fflush(stderr);
    printf("%d passed, %d failed\n", bf_test_passed_, bf_test_failed_);
    return bf_test_failed_ != 0;
}

/* fixture.c: a synthetic three-temperature cell with a strictly monotone OCV,
 * a sane tuning, and a deterministic PRNG. */
void fx_cell(bf_cell_params_t *p);
void fx_tuning(bf_soc_ekf_tuning_t *t);
float fx_ocv_formula(float soc, float temp_C); /* what fx_cell tabulates */

typedef struct {
    uint32_t s;
} fx_rng_t;
uint32_t fx_next(fx_rng_t *r);        /* xorshift32, never 0 */
float fx_uniform(fx_rng_t *r, float lo, float hi);
float fx_gauss(fx_rng_t *r);          /* approximately N(0, 1) (Irwin-Hall) */
float fx_absurd(fx_rng_t *r);         /* NaN, +-inf, +-huge, subnormal, -0, ... */

#endif
