/* The SOC EKF of soc_ekf.h for many cells at once: a series string (a grid
 * storage pack of thousands of cells) stepped by one call.
 *
 * Every cell shares one parameter set and one tuning; every time step has
 * one interval and one pack current (the cells are in series) and a voltage
 * and a temperature per cell. The state is the caller's, in
 * structure-of-arrays layout: BF_SOC_EKF_PACK_FIELDS rows of n_cells floats
 * (row f of cell c at data[f * n_cells + c]), so that the filter's inner
 * loops run over neighbouring cells and the compiler can vectorise them.
 * No heap, no globals.
 *
 * Each cell gets exactly what bf_soc_ekf_step gives it, bit for bit (the same
 * single-precision operations in the same order; flags included), provided
 * the core is compiled without FMA contraction (-ffp-contract=off, as every
 * build of the core is). Where bf_soc_ekf_step would fail with BF_E_NUMERIC,
 * the cell keeps its state from before the sample and gets the outputs the
 * failed step gives (as a caller that went on after the error would see),
 * its row BF_SOC_EKF_PACK_FAILS counts the failure, the other cells carry
 * on, and the call returns BF_E_NUMERIC after the last sample. */
#ifndef BMSFIL_SOC_EKF_PACK_H
#define BMSFIL_SOC_EKF_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "bmsfil/cell_model.h"
#include "bmsfil/soc_ekf.h"
#include "bmsfil/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Rows of the state: x[0..3], the upper triangle of P row by row (P00 P01
 * P02 P03 P11 P12 P13 P22 P23 P33; P is kept exactly symmetric), the last
 * good current, the last good temperature, the hysteresis sign, and the
 * number of the cell's steps that failed (BF_E_NUMERIC; 0 after init/set). */
#define BF_SOC_EKF_PACK_FIELDS 18
#define BF_SOC_EKF_PACK_FAILS 17

/* bf_soc_ekf_pack_t.options: run the portable code even where a build has
 * code for wider vectors, or no wider than AVX2 (for tests and benchmarks:
 * the results are the same bits either way). */
#define BF_SOC_EKF_PACK_PORTABLE 0x1u
#define BF_SOC_EKF_PACK_NO_AVX512 0x2u

typedef struct {
    float *data;      /* BF_SOC_EKF_PACK_FIELDS * n_cells floats, the caller's */
    size_t n_cells;
    uint32_t options; /* 0, or BF_SOC_EKF_PACK_PORTABLE, BF_SOC_EKF_PACK_NO_AVX512 */
} bf_soc_ekf_pack_t;

/* Start every cell as bf_soc_ekf_init_soc / _init_ocv would, cell c from
 * soc[c] (or voltage_V[c]) and temp_C[c]. If one cell's value is refused
 * (BF_E_RANGE: a NaN, a voltage no cell can have) no cell is changed. */
bf_status_t bf_soc_ekf_pack_init_soc(bf_soc_ekf_pack_t *pk, const bf_cell_params_t *p,
                                     const bf_soc_ekf_tuning_t *t, const float *soc, const float *temp_C);
bf_status_t bf_soc_ekf_pack_init_ocv(bf_soc_ekf_pack_t *pk, const bf_cell_params_t *p,
                                     const bf_soc_ekf_tuning_t *t, const float *voltage_V, const float *temp_C);

/* One cell's state as the single-cell struct, and back (only the upper
 * triangle of s->P is read; set zeroes the cell's failure count).
 * BF_E_RANGE if cell >= n_cells. */
bf_status_t bf_soc_ekf_pack_get(const bf_soc_ekf_pack_t *pk, size_t cell, bf_soc_ekf_t *s);
bf_status_t bf_soc_ekf_pack_set(bf_soc_ekf_pack_t *pk, size_t cell, const bf_soc_ekf_t *s);

/* n time steps of every cell: dt_s[k] and current_A[k] for the pack,
 * voltage_V[k * n_cells + c] and temp_C[k * n_cells + c] for cell c
 * (row-major n x n_cells). soc_out, sigma_out and flags_out (n x n_cells,
 * the same layout) may each be NULL. Parameters and tuning are checked once
 * per call; BF_E_NUMERIC as above. */
bf_status_t bf_soc_ekf_pack_run(bf_soc_ekf_pack_t *pk, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *t,
                                const float *dt_s, const float *current_A, const float *voltage_V,
                                const float *temp_C, size_t n, float *soc_out, float *sigma_out,
                                uint8_t *flags_out);

/* Which code bf_soc_ekf_pack_run takes for this pack on this CPU:
 * "portable" (plain C99 the compiler vectorises for its baseline: SSE2 on
 * x86-64), or, in builds made with BF_SOC_EKF_PACK_X86_DISPATCH (GCC,
 * x86-64: the host's Python module), "avx2" or "avx512". */
const char *bf_soc_ekf_pack_code_path(const bf_soc_ekf_pack_t *pk);

#ifdef __cplusplus
}
#endif

#endif
