/* MicroPython native module `bmsfil_c`: the C core's SOC EKF and its
 * plausibility monitor (csrc/) for MicroPython, as a dynamic native module
 * (.mpy "natmod").
 *
 * Glue only: the core is compiled unchanged from csrc/src. It keeps no state
 * of its own; every struct lives in a caller-owned buffer (a bytearray made
 * by bmsfil_native.py): the cell parameters (bf_cell_params_t), the filter
 * tuning (bf_soc_ekf_tuning_t) and one filter state per cell (bf_soc_ekf_t);
 * for the monitor, its settings (bf_plaus_config_t), one state per cell
 * (bf_plaus_t) and the filter step's report it judges (bf_soc_ekf_out_t).
 * Each call checks that a buffer has exactly the struct's size and is
 * 4-byte aligned, so a bytearray packed for another layout is refused rather
 * than read wrong.
 *
 * Module contents:
 *   CELL_PARAMS_SIZE, TUNING_SIZE, STATE_SIZE   sizeof the three structs
 *   MAX_TEMPS, OCV_MAX_POINTS, RC_MAX_POINTS    the table dimensions
 *   check(cell, tuning)            -> None, or ValueError naming the part rejected
 *   init_soc(state, cell, tuning, soc, temp_C)
 *   init_ocv(state, cell, tuning, voltage_V, temp_C)
 *   start(state, cell, tuning, current_A, voltage_V, temp_C)   bf_soc_ekf_start
 *   step(state, cell, tuning, dt_s, current_A, voltage_V, temp_C)
 *   step((state, cell, tuning), dt_s, current_A, voltage_V, temp_C)
 *   step((state, cell, tuning, out), dt_s, current_A, voltage_V, temp_C)
 *                                  -> (soc, soc_sigma, voltage_pred_V, flags);
 *                                     the last form also copies the step's
 *                                     bf_soc_ekf_out_t into `out`
 *   PLAUS_STATE_SIZE, PLAUS_CONFIG_SIZE, EKF_OUT_SIZE
 *   plaus_init(pstate, config)     checks the config, starts a monitor state
 *   plaus_step((pstate, config, out), dt_s, voltage_V)
 *                                  -> (flags, unseen_current_A, unseen_current_sigma_A, stuck_for_s)
 *   CAP_STATE_SIZE, CAP_TUNING_SIZE, R0_STATE_SIZE, R0_TUNING_SIZE
 *   health_init(cstate, ctuning, rstate, rtuning)   checks both settings, starts both states
 *   health_step((cstate, ctuning, rstate, rtuning, cell, out), (dt_s, current_A, voltage_V, temp_C))
 *                                  -> (capacity_Ah or nan, r0_ohm or nan): the capacity and R0
 *                                     estimators (capacity.h, resistance.h) after the filter's
 *                                     step whose bf_soc_ekf_out_t is in `out`; nan until learned
 *   SOP_TASK_SIZE, SOP_LIMITS_SIZE
 *   sop_init(task, limits)          checks each bf_sop_limits_t of `limits` (1 to 4 of them, one
 *                                  per horizon), starts the state-of-power search (power.h)
 *   sop_step((task, limits, state, cell), budget)
 *                                  -> None before the search's first result, else (horizon index,
 *                                     discharge_W, charge_W) of the latest: at most `budget`
 *                                     sub-steps of the search from the filter state `state`
 *                                     at its last good temperature
 *   THERMAL_STATE_SIZE, THERMAL_PARAMS_SIZE, THERMAL_TUNING_SIZE
 *   thermal_init(tstate, tparams, ttuning, surface_C)
 *                                  -> True when started (core and surface at the reading, the
 *                                     ambient taken as it), False when the reading is not
 *                                     plausible (wait for the next); ValueError naming a
 *                                     rejected model or tuning
 *   thermal_step((tstate, tparams, ttuning, cell, state, out), (dt_s, current_A, voltage_V, temp_C, ambient_C))
 *                                  -> the core temperature (thermal.h): the heat i (v - OCV) at
 *                                     the filter's SOC and temperature after its step whose
 *                                     bf_soc_ekf_out_t is in `out` (none, the last kept, when the
 *                                     filter refused the sample's current, voltage or interval)
 * The second form of step is for a Python method wrapping it: MicroPython
 * keeps a function's frame on the C stack only up to 11 words (locals plus
 * operand stack, VM_MAX_STATE_ON_STACK in py/objfun.c) and allocates larger
 * ones on the heap at every call; `return step(self.bufs, dt, i, v, t)` in a
 * 5-argument method fits, the 7-argument call does not (measured: 0.4 us a
 * step from a plain loop, 7.9 us through such a method, mostly the
 * allocator's search for a free run of blocks in a fragmented heap).
 * Errors (a status other than BF_OK) raise ValueError with the status's name;
 * a failed call leaves the state as it was (the core's contract). */

#include "py/dynruntime.h"

#include "bmsfil/bf_math.h"
#include "bmsfil/capacity.h"
#include "bmsfil/cell_model.h"
#include "bmsfil/plausibility.h"
#include "bmsfil/thermal.h"
#include "bmsfil/power.h"
#include "bmsfil/resistance.h"
#include "bmsfil/soc_ekf.h"
#include "bmsfil/status.h"

/* The C library of a native module: none. The core's compiler may still
 * call memcpy or memset on its own (a struct copy at -Os on Cortex-M4 does);
 * they are served by MicroPython's, through its function table. */
void *memcpy(void *dst, const void *src, size_t n)
{
    return mp_fun_table.memmove_(dst, src, n);
}

void *memset(void *s, int c, size_t n)
{
    return mp_fun_table.memset_(s, c, n);
}

static void *struct_buffer(mp_obj_t obj, size_t size, mp_uint_t flags)
{
    mp_buffer_info_t info;
    mp_get_buffer_raise(obj, &info, flags);
    if (info.len != size) {
        mp_raise_ValueError(MP_ERROR_TEXT("buffer size is not the struct's (packed for another layout?)"));
    }
    if (((uintptr_t)info.buf & 3u) != 0u) {
        mp_raise_ValueError(MP_ERROR_TEXT("buffer not 4-byte aligned"));
    }
    return info.buf;
}

static bf_soc_ekf_t *state_arg(mp_obj_t obj)
{
    return (bf_soc_ekf_t *)struct_buffer(obj, sizeof(bf_soc_ekf_t), MP_BUFFER_RW);
}

static const bf_cell_params_t *cell_arg(mp_obj_t obj)
{
    return (const bf_cell_params_t *)struct_buffer(obj, sizeof(bf_cell_params_t), MP_BUFFER_READ);
}

static const bf_soc_ekf_tuning_t *tuning_arg(mp_obj_t obj)
{
    return (const bf_soc_ekf_tuning_t *)struct_buffer(obj, sizeof(bf_soc_ekf_tuning_t), MP_BUFFER_READ);
}

static void check_status(bf_status_t status)
{
    switch (status) {
    case BF_OK:
        return;
    case BF_E_NULL:
        mp_raise_ValueError(MP_ERROR_TEXT("null pointer"));
        break;
    case BF_E_PARAMS:
        mp_raise_ValueError(MP_ERROR_TEXT("parameter set rejected by bf_cell_params_check"));
        break;
    case BF_E_TUNING:
        mp_raise_ValueError(MP_ERROR_TEXT("filter tuning rejected by bf_soc_ekf_tuning_check"));
        break;
    case BF_E_RANGE:
        mp_raise_ValueError(MP_ERROR_TEXT("argument out of range"));
        break;
    case BF_E_NUMERIC:
        mp_raise_ValueError(MP_ERROR_TEXT("state became non-finite"));
        break;
    case BF_E_CONFIG:
        mp_raise_ValueError(MP_ERROR_TEXT("plausibility config rejected by bf_plaus_config_check"));
        break;
    default:
        mp_raise_ValueError(MP_ERROR_TEXT("unknown status"));
        break;
    }
}

static float float_arg(mp_obj_t obj)
{
    return mp_obj_get_float_to_f(obj);
}

static mp_obj_t check(mp_obj_t cell, mp_obj_t tuning)
{
    check_status(bf_cell_params_check(cell_arg(cell)));
    check_status(bf_soc_ekf_tuning_check(tuning_arg(tuning)));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(check_obj, check);

static mp_obj_t init_soc(size_t n_args, const mp_obj_t *args)
{
    (void)n_args;
    check_status(bf_soc_ekf_init_soc(state_arg(args[0]), cell_arg(args[1]), tuning_arg(args[2]),
                                     float_arg(args[3]), float_arg(args[4])));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(init_soc_obj, 5, 5, init_soc);

static mp_obj_t init_ocv(size_t n_args, const mp_obj_t *args)
{
    (void)n_args;
    check_status(bf_soc_ekf_init_ocv(state_arg(args[0]), cell_arg(args[1]), tuning_arg(args[2]),
                                     float_arg(args[3]), float_arg(args[4])));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(init_ocv_obj, 5, 5, init_ocv);

static mp_obj_t start(size_t n_args, const mp_obj_t *args)
{
    (void)n_args;
    check_status(bf_soc_ekf_start(state_arg(args[0]), cell_arg(args[1]), tuning_arg(args[2]), float_arg(args[3]),
                                  float_arg(args[4]), float_arg(args[5])));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(start_obj, 6, 6, start);

static mp_obj_t step(size_t n_args, const mp_obj_t *args)
{
    bf_soc_ekf_out_t out;
    const mp_obj_t *bufs = args;
    const mp_obj_t *in = args + 3;
    bf_soc_ekf_out_t *keep = 0;
    if (n_args == 5) {
        size_t len;
        mp_obj_t *items;
        mp_obj_get_array(args[0], &len, &items);
        if (len != 3 && len != 4) {
            mp_raise_ValueError(MP_ERROR_TEXT("step: expected (state, cell, tuning[, out])"));
        }
        if (len == 4) {
            keep = (bf_soc_ekf_out_t *)struct_buffer(items[3], sizeof(bf_soc_ekf_out_t), MP_BUFFER_RW);
        }
        bufs = items;
        in = args + 1;
    } else if (n_args != 7) {
        mp_raise_TypeError(MP_ERROR_TEXT("step: 5 or 7 arguments"));
    }
    check_status(bf_soc_ekf_step(state_arg(bufs[0]), cell_arg(bufs[1]), tuning_arg(bufs[2]), float_arg(in[0]),
                                 float_arg(in[1]), float_arg(in[2]), float_arg(in[3]), &out));
    if (keep != 0) {
        *keep = out;
    }
    mp_obj_t items[4] = {
        mp_obj_new_float_from_f(out.soc),
        mp_obj_new_float_from_f(out.soc_sigma),
        mp_obj_new_float_from_f(out.voltage_pred_V),
        mp_obj_new_int_from_uint(out.flags),
    };
    return mp_obj_new_tuple(4, items);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(step_obj, 5, 7, step);

static mp_obj_t plaus_init(mp_obj_t pstate, mp_obj_t config)
{
    check_status(bf_plaus_init((bf_plaus_t *)struct_buffer(pstate, sizeof(bf_plaus_t), MP_BUFFER_RW),
                               (const bf_plaus_config_t *)struct_buffer(config, sizeof(bf_plaus_config_t),
                                                                        MP_BUFFER_READ)));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(plaus_init_obj, plaus_init);

static mp_obj_t plaus_step(mp_obj_t bufs_obj, mp_obj_t dt_obj, mp_obj_t v_obj)
{
    size_t len;
    mp_obj_t *bufs;
    bf_plaus_out_t po;
    mp_obj_get_array(bufs_obj, &len, &bufs);
    if (len != 3) {
        mp_raise_ValueError(MP_ERROR_TEXT("plaus_step: expected (pstate, config, out)"));
    }
    check_status(bf_plaus_step((bf_plaus_t *)struct_buffer(bufs[0], sizeof(bf_plaus_t), MP_BUFFER_RW),
                               (const bf_plaus_config_t *)struct_buffer(bufs[1], sizeof(bf_plaus_config_t),
                                                                        MP_BUFFER_READ),
                               float_arg(dt_obj), float_arg(v_obj),
                               (const bf_soc_ekf_out_t *)struct_buffer(bufs[2], sizeof(bf_soc_ekf_out_t),
                                                                       MP_BUFFER_READ),
                               &po));
    mp_obj_t items[4] = {
        mp_obj_new_int_from_uint(po.flags),
        mp_obj_new_float_from_f(po.unseen_current_A),
        mp_obj_new_float_from_f(po.unseen_current_sigma_A),
        mp_obj_new_float_from_f(po.stuck_for_s),
    };
    return mp_obj_new_tuple(4, items);
}
static MP_DEFINE_CONST_FUN_OBJ_3(plaus_step_obj, plaus_step);

/* A quiet NaN without libm or a 0/0 the compiler may fold. */
static float not_a_number(void)
{
    bf_bits32_t b;
    b.u = 0x7fc00000u;
    return b.f;
}

static mp_obj_t health_init(size_t n_args, const mp_obj_t *args)
{
    (void)n_args;
    check_status(bf_capacity_init((bf_capacity_t *)struct_buffer(args[0], sizeof(bf_capacity_t), MP_BUFFER_RW),
                                  (const bf_capacity_tuning_t *)struct_buffer(args[1], sizeof(bf_capacity_tuning_t),
                                                                              MP_BUFFER_READ)));
    check_status(bf_r0_init((bf_r0_t *)struct_buffer(args[2], sizeof(bf_r0_t), MP_BUFFER_RW),
                            (const bf_r0_tuning_t *)struct_buffer(args[3], sizeof(bf_r0_tuning_t), MP_BUFFER_READ)));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(health_init_obj, 4, 4, health_init);

static mp_obj_t health_step(mp_obj_t bufs_obj, mp_obj_t in_obj)
{
    size_t len, n_in;
    mp_obj_t *bufs, *in;
    bf_capacity_out_t co;
    bf_r0_out_t ro;
    bf_capacity_t *cs;
    bf_r0_t *rs;
    const bf_cell_params_t *cell;
    const bf_soc_ekf_out_t *out;
    float dt, i, v, t;
    mp_obj_get_array(bufs_obj, &len, &bufs);
    mp_obj_get_array(in_obj, &n_in, &in);
    if (len != 6 || n_in != 4) {
        mp_raise_ValueError(MP_ERROR_TEXT("health_step: expected (cstate, ctuning, rstate, rtuning, cell, out), "
                                          "(dt_s, current_A, voltage_V, temp_C)"));
    }
    cs = (bf_capacity_t *)struct_buffer(bufs[0], sizeof(bf_capacity_t), MP_BUFFER_RW);
    rs = (bf_r0_t *)struct_buffer(bufs[2], sizeof(bf_r0_t), MP_BUFFER_RW);
    cell = cell_arg(bufs[4]);
    out = (const bf_soc_ekf_out_t *)struct_buffer(bufs[5], sizeof(bf_soc_ekf_out_t), MP_BUFFER_READ);
    dt = float_arg(in[0]);
    i = float_arg(in[1]);
    v = float_arg(in[2]);
    t = float_arg(in[3]);
    check_status(bf_capacity_step(cs, cell,
                                  (const bf_capacity_tuning_t *)struct_buffer(bufs[1], sizeof(bf_capacity_tuning_t),
                                                                              MP_BUFFER_READ),
                                  dt, i, v, t, out, &co));
    check_status(bf_r0_step(rs, cell,
                            (const bf_r0_tuning_t *)struct_buffer(bufs[3], sizeof(bf_r0_tuning_t), MP_BUFFER_READ),
                            dt, i, v, t, out->soc, &ro));
    mp_obj_t items[2] = {
        mp_obj_new_float_from_f(cs->fit.updates > 0u ? co.capacity_Ah : not_a_number()),
        mp_obj_new_float_from_f(rs->updates > 0u ? ro.r0_ohm : not_a_number()),
    };
    return mp_obj_new_tuple(2, items);
}
static MP_DEFINE_CONST_FUN_OBJ_2(health_step_obj, health_step);

/* The thermal model and tuning in two buffers, checked (bf_thermal_step
 * trusts what it is given); a ValueError naming the one refused. */
static void thermal_model(mp_obj_t params, mp_obj_t tuning, const bf_thermal_params_t **tp,
                          const bf_thermal_tuning_t **tt)
{
    *tp = (const bf_thermal_params_t *)struct_buffer(params, sizeof(bf_thermal_params_t), MP_BUFFER_READ);
    *tt = (const bf_thermal_tuning_t *)struct_buffer(tuning, sizeof(bf_thermal_tuning_t), MP_BUFFER_READ);
    if (bf_thermal_params_check(*tp) != BF_OK) {
        mp_raise_ValueError(MP_ERROR_TEXT("thermal model rejected by bf_thermal_params_check"));
    }
    if (bf_thermal_tuning_check(*tt) != BF_OK) {
        mp_raise_ValueError(MP_ERROR_TEXT("thermal tuning rejected by bf_thermal_tuning_check"));
    }
}

static mp_obj_t thermal_init(size_t n_args, const mp_obj_t *args)
{
    const bf_thermal_params_t *tp;
    const bf_thermal_tuning_t *tt;
    float surface;
    bf_status_t st;
    (void)n_args;
    thermal_model(args[1], args[2], &tp, &tt);
    surface = float_arg(args[3]);
    st = bf_thermal_init((bf_thermal_t *)struct_buffer(args[0], sizeof(bf_thermal_t), MP_BUFFER_RW), tp, tt, surface,
                         surface);
    if (st == BF_E_RANGE) {
        return mp_const_false;
    }
    check_status(st);
    return mp_const_true;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(thermal_init_obj, 4, 4, thermal_init);

static mp_obj_t thermal_step(mp_obj_t bufs_obj, mp_obj_t in_obj)
{
    size_t len, n_in;
    mp_obj_t *bufs, *in;
    bf_thermal_out_t to;
    bf_thermal_t *ts;
    const bf_thermal_params_t *tp;
    const bf_thermal_tuning_t *tt;
    const bf_cell_params_t *cell;
    const bf_soc_ekf_t *ekf;
    const bf_soc_ekf_out_t *out;
    float dt, i, v, t, heat = not_a_number();
    mp_obj_get_array(bufs_obj, &len, &bufs);
    mp_obj_get_array(in_obj, &n_in, &in);
    if (len != 6 || n_in != 5) {
        mp_raise_ValueError(MP_ERROR_TEXT("thermal_step: expected (tstate, tparams, ttuning, cell, state, out), "
                                          "(dt_s, current_A, voltage_V, temp_C, ambient_C)"));
    }
    ts = (bf_thermal_t *)struct_buffer(bufs[0], sizeof(bf_thermal_t), MP_BUFFER_RW);
    cell = cell_arg(bufs[3]);
    ekf = (const bf_soc_ekf_t *)struct_buffer(bufs[4], sizeof(bf_soc_ekf_t), MP_BUFFER_READ);
    out = (const bf_soc_ekf_out_t *)struct_buffer(bufs[5], sizeof(bf_soc_ekf_out_t), MP_BUFFER_READ);
    dt = float_arg(in[0]);
    i = float_arg(in[1]);
    v = float_arg(in[2]);
    t = float_arg(in[3]);
    if ((out->flags & (BF_FLAG_VOLTAGE_INVALID | BF_FLAG_CURRENT_INVALID | BF_FLAG_DT_INVALID)) == 0u) {
        heat = bf_thermal_heat_W(cell, out->soc, ekf->last_temp_C, i, v);
    }
    /* The buffers come from Python on every call: checked here, as at init. */
    thermal_model(bufs[1], bufs[2], &tp, &tt);
    check_status(bf_thermal_step(ts, tp, tt, dt, heat, t, float_arg(in[4]), &to));
    return mp_obj_new_float_from_f(to.core_C);
}
static MP_DEFINE_CONST_FUN_OBJ_2(thermal_step_obj, thermal_step);

/* The limits of a search: a bytearray of 1 to BF_SOP_MAX_HORIZONS structs. */
static const bf_sop_limits_t *sop_limits(mp_obj_t obj, uint32_t *n)
{
    mp_buffer_info_t info;
    mp_get_buffer_raise(obj, &info, MP_BUFFER_READ);
    if (info.len == 0 || info.len % sizeof(bf_sop_limits_t) != 0 ||
        info.len / sizeof(bf_sop_limits_t) > BF_SOP_MAX_HORIZONS || ((uintptr_t)info.buf & 3u) != 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("sop limits: expected 1 to 4 packed bf_sop_limits_t"));
    }
    *n = (uint32_t)(info.len / sizeof(bf_sop_limits_t));
    return (const bf_sop_limits_t *)info.buf;
}

static mp_obj_t sop_init(mp_obj_t task_obj, mp_obj_t limits_obj)
{
    uint32_t n, k;
    const bf_sop_limits_t *lims = sop_limits(limits_obj, &n);
    for (k = 0; k < n; k++) {
        check_status(bf_sop_limits_check(&lims[k]));
    }
    check_status(bf_sop_task_init((bf_sop_task_t *)struct_buffer(task_obj, sizeof(bf_sop_task_t), MP_BUFFER_RW)));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(sop_init_obj, sop_init);

static mp_obj_t sop_step(mp_obj_t bufs_obj, mp_obj_t budget_obj)
{
    size_t len;
    mp_obj_t *bufs;
    uint32_t n;
    int32_t finished;
    bf_sop_task_t *task;
    const bf_soc_ekf_t *state;
    const bf_sop_limits_t *lims;
    mp_obj_get_array(bufs_obj, &len, &bufs);
    if (len != 4) {
        mp_raise_ValueError(MP_ERROR_TEXT("sop_step: expected (task, limits, state, cell), budget"));
    }
    task = (bf_sop_task_t *)struct_buffer(bufs[0], sizeof(bf_sop_task_t), MP_BUFFER_RW);
    lims = sop_limits(bufs[1], &n);
    state = (const bf_soc_ekf_t *)struct_buffer(bufs[2], sizeof(bf_soc_ekf_t), MP_BUFFER_READ);
    check_status(bf_sop_task_step(task, state, cell_arg(bufs[3]), state->last_temp_C, lims, n,
                                  (uint32_t)mp_obj_get_int(budget_obj), &finished));
    if (task->latest < 0 || task->latest >= (int32_t)BF_SOP_MAX_HORIZONS) {
        return mp_const_none;   /* (a task buffer written from Python could hold anything) */
    }
    mp_obj_t items[3] = {
        MP_OBJ_NEW_SMALL_INT(task->latest),
        mp_obj_new_float_from_f(task->result[task->latest].discharge_W),
        mp_obj_new_float_from_f(task->result[task->latest].charge_W),
    };
    return mp_obj_new_tuple(3, items);
}
static MP_DEFINE_CONST_FUN_OBJ_2(sop_step_obj, sop_step);

mp_obj_t mpy_init(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args)
{
    MP_DYNRUNTIME_INIT_ENTRY

    mp_store_global(MP_QSTR_CELL_PARAMS_SIZE, MP_OBJ_NEW_SMALL_INT(sizeof(bf_cell_params_t)));
    mp_store_global(MP_QSTR_TUNING_SIZE, MP_OBJ_NEW_SMALL_INT(sizeof(bf_soc_ekf_tuning_t)));
    mp_store_global(MP_QSTR_STATE_SIZE, MP_OBJ_NEW_SMALL_INT(sizeof(bf_soc_ekf_t)));
    mp_store_global(MP_QSTR_MAX_TEMPS, MP_OBJ_NEW_SMALL_INT(BF_MAX_TEMPS));
    mp_store_global(MP_QSTR_OCV_MAX_POINTS, MP_OBJ_NEW_SMALL_INT(BF_OCV_MAX_POINTS));
    mp_store_global(MP_QSTR_RC_MAX_POINTS, MP_OBJ_NEW_SMALL_INT(BF_RC_MAX_POINTS));
    mp_store_global(MP_QSTR_check, MP_OBJ_FROM_PTR(&check_obj));
    mp_store_global(MP_QSTR_init_soc, MP_OBJ_FROM_PTR(&init_soc_obj));
    mp_store_global(MP_QSTR_init_ocv, MP_OBJ_FROM_PTR(&init_ocv_obj));
    mp_store_global(MP_QSTR_start, MP_OBJ_FROM_PTR(&start_obj));
    mp_store_global(MP_QSTR_step, MP_OBJ_FROM_PTR(&step_obj));
    mp_store_global(MP_QSTR_PLAUS_STATE_SIZE, MP_OBJ_NEW_SMALL_INT(sizeof(bf_plaus_t)));
    mp_store_global(MP_QSTR_PLAUS_CONFIG_SIZE, MP_OBJ_NEW_SMALL_INT(sizeof(bf_plaus_config_t)));
    mp_store_global(MP_QSTR_EKF_OUT_SIZE, MP_OBJ_NEW_SMALL_INT(sizeof(bf_soc_ekf_out_t)));
    mp_store_global(MP_QSTR_plaus_init, MP_OBJ_FROM_PTR(&plaus_init_obj));
    mp_store_global(MP_QSTR_plaus_step, MP_OBJ_FROM_PTR(&plaus_step_obj));
    mp_store_global(MP_QSTR_CAP_STATE_SIZE, MP_OBJ_NEW_SMALL_INT(sizeof(bf_capacity_t)));
    mp_store_global(MP_QSTR_CAP_TUNING_SIZE, MP_OBJ_NEW_SMALL_INT(sizeof(bf_capacity_tuning_t)));
    mp_store_global(MP_QSTR_R0_STATE_SIZE, MP_OBJ_NEW_SMALL_INT(sizeof(bf_r0_t)));
    mp_store_global(MP_QSTR_R0_TUNING_SIZE, MP_OBJ_NEW_SMALL_INT(sizeof(bf_r0_tuning_t)));
    mp_store_global(MP_QSTR_health_init, MP_OBJ_FROM_PTR(&health_init_obj));
    mp_store_global(MP_QSTR_health_step, MP_OBJ_FROM_PTR(&health_step_obj));
    mp_store_global(MP_QSTR_SOP_TASK_SIZE, MP_OBJ_NEW_SMALL_INT(sizeof(bf_sop_task_t)));
    mp_store_global(MP_QSTR_SOP_LIMITS_SIZE, MP_OBJ_NEW_SMALL_INT(sizeof(bf_sop_limits_t)));
    mp_store_global(MP_QSTR_sop_init, MP_OBJ_FROM_PTR(&sop_init_obj));
    mp_store_global(MP_QSTR_sop_step, MP_OBJ_FROM_PTR(&sop_step_obj));
    mp_store_global(MP_QSTR_THERMAL_STATE_SIZE, MP_OBJ_NEW_SMALL_INT(sizeof(bf_thermal_t)));
    mp_store_global(MP_QSTR_THERMAL_PARAMS_SIZE, MP_OBJ_NEW_SMALL_INT(sizeof(bf_thermal_params_t)));
    mp_store_global(MP_QSTR_THERMAL_TUNING_SIZE, MP_OBJ_NEW_SMALL_INT(sizeof(bf_thermal_tuning_t)));
    mp_store_global(MP_QSTR_thermal_init, MP_OBJ_FROM_PTR(&thermal_init_obj));
    mp_store_global(MP_QSTR_thermal_step, MP_OBJ_FROM_PTR(&thermal_step_obj));

    MP_DYNRUNTIME_INIT_EXIT
}
