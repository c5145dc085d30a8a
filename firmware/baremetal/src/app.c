#include "fw/app.h"

#include <math.h>    /* NAN and INFINITY only: nothing from libm is called */
#include <string.h>

#include "bmsfil_can.h"
#include "bmsfil_e2e.h"
#include "fw/board.h"
#include "fw/crc32.h"

#define HOST_COMMAND_KEY 0xB5F1u
#define EST_FLAG_MASK 0x1Fu          /* the core flags EstCell carries */
#define SIGMA_RAW_MAX 2047u          /* soc_sigma saturates at 0.4094 */
#define UNSEEN_RAW_MAX 16383u        /* EstCellFlags.unseen_current_A saturates at +-16.383 A */
#define UNSEEN_SIGMA_RAW_MAX 1023u   /* unseen_current_sigma_A saturates at 2.046 A */
#define STUCK_RAW_MAX 63u            /* stuck_for_s saturates at 63 s */
#define CAPACITY_RAW_MAX 65535u      /* EstCellHealth.capacity_Ah saturates at 65.535 Ah */
#define R0_RAW_MAX 2047u             /* EstCellHealth.r0_ohm saturates at 0.2047 ohm */
#define POWER_RAW_MAX 65535u         /* EstCellPower powers saturate at 6553.5 W */
#define CORE_TEMP_RAW_MAX 255u       /* EstCellHealth.core_temp_C: raw (T + 40) / 0.5, -40 .. 87.5 degC */
#define PROFILE_RAW_MAX 65535u       /* TargetProfile's counts saturate at 65535 */

uint32_t fw_round_scaled(float x, uint32_t mult)
{
    uint32_t bits, man, biased;
    int32_t e;
    uint64_t prod;
    memcpy(&bits, &x, sizeof bits);
    biased = (bits >> 23) & 0xFFu;
    man = bits & 0x7FFFFFu;
    if ((bits >> 31) != 0u || biased == 0xFFu) return 0;
    if (biased == 0u) {
        e = -149;
    } else {
        man |= 0x800000u;
        e = (int32_t)biased - 150;
    }
    prod = (uint64_t)man * mult;  /* x * mult = prod * 2^e exactly */
    if (e >= 0) return (uint32_t)(prod << e);
    if (e <= -63) return 0;
    return (uint32_t)((prod + ((uint64_t)1 << (-e - 1))) >> -e);
}

/* --- persistence ----------------------------------------------------------- */

static size_t saved_size(uint32_t n_cells)
{
    return offsetof(fw_saved_t, body.cells) - offsetof(fw_saved_t, body) + (size_t)n_cells * sizeof(fw_cell_t);
}

static uint32_t saved_crc(const fw_saved_t *s)
{
    return fw_crc32(0, &s->body, saved_size(s->body.n_cells));
}

static void saved_commit(fw_saved_t *s)
{
    s->size = (uint32_t)saved_size(s->body.n_cells);
    s->crc = saved_crc(s);
}

/* 1: restored; 0: no saved state (fresh); -1: a saved state failed its check. */
static int saved_restore(fw_saved_t *s)
{
    if (s->magic != FW_SAVED_MAGIC) return 0;
    if (s->version != FW_SAVED_VERSION || s->body.n_cells > FW_MAX_CELLS ||
        s->size != saved_size(s->body.n_cells) || s->crc != saved_crc(s))
        return -1;
    return 1;
}

static void saved_reset(fw_saved_t *s)
{
    memset(s, 0, sizeof *s);
    s->magic = FW_SAVED_MAGIC;
    s->version = FW_SAVED_VERSION;
    saved_commit(s);
}

/* --- frames out ------------------------------------------------------------ */

static void send_frame(fw_app_t *app, uint32_t id, const uint8_t data[8])
{
    fw_frame_t f;
    f.id = id;
    f.dlc = 8;
    f.extended = 0;
    f.remote = 0;
    memcpy(f.data, data, 8);
    if (app->transport->send(app->transport->ctx, &f) != 0) app->send_errors++;
}

static void send_status(fw_app_t *app)
{
    struct bmsfil_can_target_status_t m;
    uint8_t data[8];
    const fw_saved_t *s = app->saved;
    bmsfil_can_target_status_init(&m);
    m.counter = app->counter++;
    m.state = app->state;
    m.start = app->start;
    m.last_sequence_valid = s->body.last_sequence_valid;
    m.last_sequence = s->body.last_sequence_valid ? s->body.last_sequence : 0u;
    m.fault_code = app->fault;
    m.crc_errors = (uint8_t)(app->crc_errors & 0x0Fu);
    m.instructions_per_cell_step = app->instructions_per_cell_step > 0xFFFFFFu ? 0xFFFFFFu
                                                                               : app->instructions_per_cell_step;
    if (bmsfil_can_target_status_pack(data, &m, sizeof data) == 8) send_frame(app, BMSFIL_CAN_TARGET_STATUS_FRAME_ID, data);
    app->fault = FW_FAULT_NONE;
    app->last_status_tick = board_ticks();
}

/* TargetProfile: each part's instructions per cell step of the sample just
 * closed (its ticks over all the sample's cell steps, as the total), 0 for
 * a part that ran on no cell (not measured). */
static void send_profile(fw_app_t *app)
{
    struct bmsfil_can_target_profile_t m;
    uint8_t data[8];
    uint32_t per_step[FW_PARTS];
    for (uint32_t p = 0; p < FW_PARTS; p++) {
        uint32_t insns = board_ticks_to_instructions(app->part_ticks[p]);
        per_step[p] = app->part_runs[p] > 0u ? (insns + app->steps / 2u) / app->steps : 0u;
        /* A part that ran on few of the sample's cells may round to 0, which
         * says "not measured": it cost something, so at least 1. */
        if (per_step[p] == 0u && app->part_runs[p] > 0u && insns > 0u) per_step[p] = 1u;
        if (per_step[p] > PROFILE_RAW_MAX) per_step[p] = PROFILE_RAW_MAX;
    }
    bmsfil_can_target_profile_init(&m);
    m.soc_filter = (uint16_t)per_step[FW_PART_SOC_FILTER];
    m.monitor = (uint16_t)per_step[FW_PART_MONITOR];
    m.health_and_power = (uint16_t)per_step[FW_PART_HEALTH_AND_POWER];
    m.core_temp = (uint16_t)per_step[FW_PART_CORE_TEMP];
    if (bmsfil_can_target_profile_pack(data, &m, sizeof data) == 8)
        send_frame(app, BMSFIL_CAN_TARGET_PROFILE_FRAME_ID, data);
}

static void send_estimate(fw_app_t *app, uint16_t cell_index, const bf_soc_ekf_out_t *out, uint32_t flags, int valid)
{
    struct bmsfil_can_est_cell_t m;
    uint8_t data[8];
    bmsfil_can_est_cell_init(&m);
    m.sequence = app->sequence;
    m.cell_index = cell_index;
    m.soc_valid = valid ? 1u : 0u;
    if (valid) {
        uint32_t sigma = fw_round_scaled(out->soc_sigma, 5000u);
        m.soc = fw_round_scaled(out->soc, 1000000u);
        m.soc_sigma = (uint16_t)(sigma > SIGMA_RAW_MAX ? SIGMA_RAW_MAX : sigma);
    }
    m.voltage_invalid = (flags & BF_FLAG_VOLTAGE_INVALID) ? 1u : 0u;
    m.current_invalid = (flags & BF_FLAG_CURRENT_INVALID) ? 1u : 0u;
    m.temp_invalid = (flags & BF_FLAG_TEMP_INVALID) ? 1u : 0u;
    m.dt_invalid = (flags & BF_FLAG_DT_INVALID) ? 1u : 0u;
    m.gated = (flags & BF_FLAG_GATED) ? 1u : 0u;
    m.restored = (flags & FW_FLAG_RESTORED) ? 1u : 0u;
    if (bmsfil_can_est_cell_pack(data, &m, sizeof data) == 8) send_frame(app, BMSFIL_CAN_EST_CELL_FRAME_ID, data);
}

/* round(x * mult) saturated at raw_max, for finite x >= 0 (fw_round_scaled
 * needs x * mult below 2^32: compare first). */
static uint32_t scaled_sat(float x, uint32_t mult, uint32_t raw_max)
{
    if (!(x < (float)raw_max / (float)mult)) return raw_max;
    uint32_t raw = fw_round_scaled(x, mult);
    return raw > raw_max ? raw_max : raw;
}

/* EstCellFlags: the monitor's flags and evidence. The unsigned raw codes are
 * formed here, not with the generated *_encode() (double soft-float, see
 * csrc/can/README.md). */
static void send_flags(fw_app_t *app, uint16_t cell_index, const bf_plaus_out_t *po)
{
    struct bmsfil_can_est_cell_flags_t m;
    uint8_t data[8];
    float u = po->unseen_current_A, sigma = po->unseen_current_sigma_A, stuck = po->stuck_for_s;
    bmsfil_can_est_cell_flags_init(&m);
    m.sequence = app->sequence;
    m.cell_index = cell_index;
    m.current_offset = (po->flags & BF_PLAUS_CURRENT_OFFSET) ? 1u : 0u;
    m.self_discharge = (po->flags & BF_PLAUS_SELF_DISCHARGE) ? 1u : 0u;
    m.voltage_stuck = (po->flags & BF_PLAUS_VOLTAGE_STUCK) ? 1u : 0u;
    m.voltage_range = (po->flags & BF_PLAUS_VOLTAGE_RANGE) ? 1u : 0u;
    m.current_range = (po->flags & BF_PLAUS_CURRENT_RANGE) ? 1u : 0u;
    m.temp_range = (po->flags & BF_PLAUS_TEMP_RANGE) ? 1u : 0u;
    /* Valid when the sigma is finite (+inf: no window yet); u - u rejects a non-finite u. */
    if (sigma >= 0.0f && sigma - sigma == 0.0f && u - u == 0.0f) {
        uint32_t mag = scaled_sat(u < 0.0f ? -u : u, 1000u, UNSEEN_RAW_MAX);
        m.unseen_current_valid = 1u;
        m.unseen_current_a = (int16_t)(u < 0.0f ? -(int32_t)mag : (int32_t)mag);
        m.unseen_current_sigma_a = (uint16_t)scaled_sat(sigma, 500u, UNSEEN_SIGMA_RAW_MAX);
    }
    m.stuck_for_s = (uint8_t)(stuck > 0.0f ? scaled_sat(stuck, 1u, STUCK_RAW_MAX) : 0u);
    if (bmsfil_can_est_cell_flags_pack(data, &m, sizeof data) == 8)
        send_frame(app, BMSFIL_CAN_EST_CELL_FLAGS_FRAME_ID, data);
}

#if FW_HEALTH
#if FW_THERMAL
/* EstCellHealth.core_temp_C's raw code, round((c + 40) / 0.5) with ties to
 * even as the host encodes it, saturated at both ends of the signal; exact
 * (in integers: c + 40 in single precision would round). */
static uint32_t core_temp_raw(float c)
{
    uint32_t bits, man, half, rem;
    int32_t shift;
    int64_t num;
    uint64_t q;
    if (!(c > -40.0f)) return 0u;
    if (!(c < 87.5f)) return CORE_TEMP_RAW_MAX;
    if (c > -0.25f && c < 0.25f) return 80u;  /* 2c + 80 within 0.5 of 80, never a tie */
    memcpy(&bits, &c, sizeof bits);
    man = (bits & 0x7FFFFFu) | 0x800000u;
    /* |2c| = man * 2^-shift; 0.25 <= |c| < 87.5 puts shift in 17 .. 24. */
    shift = 150 - (int32_t)((bits >> 23) & 0xFFu) - 1;
    num = ((bits >> 31) != 0u ? -(int64_t)man : (int64_t)man) + ((int64_t)80 << shift);  /* (2c + 80) 2^shift > 0 */
    q = (uint64_t)num >> shift;
    rem = (uint32_t)((uint64_t)num & (((uint64_t)1 << shift) - 1u));
    half = (uint32_t)1 << (shift - 1);
    if (rem > half || (rem == half && (q & 1u) != 0u)) q++;
    return q > CORE_TEMP_RAW_MAX ? CORE_TEMP_RAW_MAX : (uint32_t)q;
}
#endif

/* EstCellHealth: capacity once a pair of anchors has taught it, R0 once a
 * current step has, core temperature once the cell's thermal filter runs
 * (from its first valid temperature reading, when the set has a thermal
 * model). */
static void send_health(fw_app_t *app, uint16_t cell_index, const fw_cell_t *cell, const bf_capacity_out_t *co,
                        const bf_r0_out_t *ro)
{
    struct bmsfil_can_est_cell_health_t m;
    uint8_t data[8];
    bmsfil_can_est_cell_health_init(&m);
    m.sequence = app->sequence;
    m.cell_index = cell_index;
    if (cell->capacity.fit.updates > 0u) {
        m.capacity_valid = 1u;
        m.capacity_ah = (uint16_t)scaled_sat(co->capacity_Ah, 1000u, CAPACITY_RAW_MAX);
    }
    if (cell->r0.updates > 0u) {
        m.r0_valid = 1u;
        m.r0_ohm = (uint16_t)scaled_sat(ro->r0_ohm, 10000u, R0_RAW_MAX);
    }
#if FW_THERMAL
    if (cell->thermal_initialised) {
        m.core_temp_valid = 1u;
        m.core_temp_c = (uint8_t)core_temp_raw(cell->thermal.x[0]);
    }
#endif
    if (bmsfil_can_est_cell_health_pack(data, &m, sizeof data) == 8)
        send_frame(app, BMSFIL_CAN_EST_CELL_HEALTH_FRAME_ID, data);
}
#endif

#if FW_SOP_EVERY > 0
/* EstCellPower: the latest horizon the cell's search has published (none
 * before the first). */
static void send_power(fw_app_t *app, uint16_t cell_index, const bf_sop_task_t *sop)
{
    struct bmsfil_can_est_cell_power_t m;
    uint8_t data[8];
    bmsfil_can_est_cell_power_init(&m);
    m.sequence = app->sequence;
    m.cell_index = cell_index;
    if (sop->latest >= 0) {
        const bf_sop_t *r = &sop->result[sop->latest];
        m.horizon = (uint8_t)(sop->latest + 1);   /* 1 peak_2s, 2 peak_10s, 3 peak_30s */
        m.discharge_power_valid = 1u;
        m.charge_power_valid = 1u;
        m.discharge_power_w = (uint16_t)scaled_sat(r->discharge_W, 10u, POWER_RAW_MAX);
        m.charge_power_w = (uint16_t)scaled_sat(r->charge_W, 10u, POWER_RAW_MAX);
    }
    if (bmsfil_can_est_cell_power_pack(data, &m, sizeof data) == 8)
        send_frame(app, BMSFIL_CAN_EST_CELL_POWER_FRAME_ID, data);
}
#endif

/* --- frames in ------------------------------------------------------------- */

/* A sequence gap, unless the gap is the consequence of a frame just refused
 * for its crc, or of a pack too large to open (its cells then come for a
 * sample that was not opened): the status then says why (crc_error,
 * n_cells_unsupported), not what followed. */
static void sequence_gap(fw_app_t *app)
{
    if (app->fault != FW_FAULT_CRC_ERROR && app->fault != FW_FAULT_N_CELLS_UNSUPPORTED)
        app->fault = FW_FAULT_SEQUENCE_GAP;
}

/* End-to-end check of a measurement frame received with `frame_id` (the
 * crc covers the ID as its Data ID): one whose crc does not match is
 * refused as a lost frame would be (nothing of it is used), counted and
 * reported. 0: intact. */
static int refused_by_crc(fw_app_t *app, uint16_t frame_id, const uint8_t *data)
{
    if (bmsfil_e2e_check(frame_id, data) == 0) return 0;
    app->crc_errors++;
    app->frames_bad++;
    app->fault = FW_FAULT_CRC_ERROR;
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    /* Fuzz builds only (fuzz/Makefile; never a firmware build): the frame
     * goes on past its crc, counted as refused all the same, so that the
     * fuzzer reaches what lies behind without guessing a checksum per frame. */
    return 0;
#else
    return 1;
#endif
}

/* Measurements are scaled by exact division (raw / 10^k is correctly rounded
 * in single precision), which gives the float nearest the decimal value the
 * host decodes; the generated *_decode() multiply by an inexact 0.001f. */
static void on_meas_pack(fw_app_t *app, const uint8_t *data)
{
    struct bmsfil_can_meas_pack_t m;
    fw_saved_t *s = app->saved;
    if (refused_by_crc(app, BMSFIL_CAN_MEAS_PACK_FRAME_ID, data)) return;
    if (bmsfil_can_meas_pack_unpack(&m, data, 8) != 0) {
        app->fault = FW_FAULT_FRAME_ERROR;
        return;
    }
    if (app->in_sample && app->n_answered < app->n_cells) sequence_gap(app);  /* cells lost */
    if (s->body.last_sequence_valid && m.sequence != (uint16_t)((s->body.last_sequence + 1u) & 0x0FFFu))
        sequence_gap(app);
    app->in_sample = 0;
    if ((uint32_t)m.n_cells + 1u > FW_MAX_CELLS) {
        app->fault = FW_FAULT_N_CELLS_UNSUPPORTED;
        return;
    }
    app->sequence = m.sequence;
    app->n_cells = (uint16_t)(m.n_cells + 1u);
    /* dt_valid 0: a gap longer than 65.535 s, in whole seconds; its
     * largest code for that or longer (infinity: over every dt_max_s and
     * gap_s, so the SOC filter restarts and the capacity fit drops its
     * anchor); 0 for not known (the filter skips the sample). */
    app->dt_s = m.dt_valid ? (float)m.dt_s / 1000.0f
                           : (m.dt_s == 0u ? NAN : (m.dt_s == 0xFFFFu ? INFINITY : (float)m.dt_s));
    app->current_A = m.current_valid ? (float)m.current_a / 1000.0f : NAN;
    memset(app->answered, 0, sizeof app->answered);
    app->n_answered = 0;
    app->step_ticks = 0;
    app->steps = 0;
    memset(app->part_ticks, 0, sizeof app->part_ticks);
    memset(app->part_runs, 0, sizeof app->part_runs);
    app->in_sample = 1;
    app->state = FW_STATE_RUNNING;
}

static void on_meas_cell(fw_app_t *app, const uint8_t *data)
{
    struct bmsfil_can_meas_cell_t m;
    fw_saved_t *s = app->saved;
    fw_cell_t *cell;
    bf_soc_ekf_out_t out;
    bf_plaus_out_t po;
    bf_capacity_out_t co;
    bf_r0_out_t ro;
    float v, t;
    uint32_t flags;
    if (refused_by_crc(app, BMSFIL_CAN_MEAS_CELL_FRAME_ID, data)) return;
    if (bmsfil_can_meas_cell_unpack(&m, data, 8) != 0) {
        app->fault = FW_FAULT_FRAME_ERROR;
        return;
    }
    if (!app->in_sample || m.sequence != app->sequence) {
        sequence_gap(app);  /* a cell of a sample that was not opened */
        return;
    }
    if (m.cell_index >= app->n_cells) {
        app->fault = FW_FAULT_CELL_INDEX_OUT_OF_RANGE;
        return;
    }
    if (app->answered[m.cell_index / 32u] & (1u << (m.cell_index % 32u))) {
        app->fault = FW_FAULT_FRAME_ERROR;  /* the same cell twice in one sample */
        return;
    }
    app->answered[m.cell_index / 32u] |= 1u << (m.cell_index % 32u);
    app->n_answered++;
    v = m.voltage_valid ? (float)m.voltage_v / 100000.0f : NAN;
    t = m.temp_valid ? (float)((int32_t)m.temp_c - 6000) / 100.0f : NAN;
    while (s->body.n_cells <= m.cell_index) {
        memset(&s->body.cells[s->body.n_cells], 0, sizeof(fw_cell_t));
        s->body.n_cells++;
    }
    cell = &s->body.cells[m.cell_index];
    memset(&out, 0, sizeof out);
    memset(&po, 0, sizeof po);
    if (!cell->initialised) {
        /* No reading, or one the cell cannot have (bf_soc_ekf_start says
         * BF_E_RANGE): no OCV to start from yet; only the reading is judged.
         * Under load the start is an unknown SOC (soc_ekf.h). */
        bf_status_t init = bf_soc_ekf_start(&cell->ekf, app->params, app->tuning, app->current_A, v,
                                            m.temp_valid ? t : 25.0f);
        if (init == BF_E_RANGE) {
            send_estimate(app, m.cell_index, &out, BF_FLAG_VOLTAGE_INVALID, 0);
            po.flags = BF_PLAUS_VOLTAGE_RANGE;
            send_flags(app, m.cell_index, &po);
            return;
        }
        if (init != BF_OK ||
            bf_plaus_init(&cell->plaus, app->plaus_config) != BF_OK ||
            bf_capacity_init(&cell->capacity, app->capacity_tuning) != BF_OK ||
            bf_r0_init(&cell->r0, app->r0_tuning) != BF_OK
#if FW_SOP_EVERY > 0
            || bf_sop_task_init(&app->sop[m.cell_index]) != BF_OK
#endif
        ) {
            app->fault = FW_FAULT_ESTIMATOR_ERROR;
            send_estimate(app, m.cell_index, &out, 0, 0);
            return;
        }
        cell->initialised = 1;
        cell->restored = 0;
    }
#if FW_THERMAL
    /* The thermal filter starts at the cell's first valid temperature
     * reading, core and surface at it, the ambient taken as it (a rested
     * cell is at its surroundings' temperature); a reading the filter
     * finds implausible waits for the next. */
    if (app->thermal_params != 0 && !cell->thermal_initialised && m.temp_valid) {
        bf_status_t ist = bf_thermal_init(&cell->thermal, app->thermal_params, app->thermal_tuning, t, t);
        if (ist == BF_OK) {
            cell->thermal_initialised = 1;
            cell->ambient_C = t;
        } else if (ist != BF_E_RANGE) {
            app->fault = FW_FAULT_ESTIMATOR_ERROR;
        }
    }
#endif
    {
        /* The step is timed part by part (FW_PART_*), part p from tick[p]
         * to tick[p + 1]. Each interval holds one board_ticks() read, as
         * the calibrated empty interval does, so each loses tick_overhead,
         * and the parts add up to the whole step. */
        uint64_t tick[FW_PARTS + 1], total = 0;
        uint32_t ran[FW_PARTS] = {1u, 0u, 0u, 0u};
        uint32_t held = board_irq_hold();
        tick[FW_PART_SOC_FILTER] = board_ticks();
        bf_status_t st = bf_soc_ekf_step(&cell->ekf, app->params, app->tuning, app->dt_s, app->current_A, v, t, &out);
        tick[FW_PART_MONITOR] = board_ticks();
        bf_status_t pst = st == BF_OK ? bf_plaus_step(&cell->plaus, app->plaus_config, app->dt_s, v, &out, &po)
                                      : st;
        tick[FW_PART_HEALTH_AND_POWER] = board_ticks();
#if FW_HEALTH
        bf_status_t hst = st == BF_OK ? bf_capacity_step(&cell->capacity, app->params, app->capacity_tuning,
                                                         app->dt_s, app->current_A, v, t, &out, &co)
                                      : st;
        if (hst == BF_OK)
            hst = bf_r0_step(&cell->r0, app->params, app->r0_tuning, app->dt_s, app->current_A, v, t, out.soc, &ro);
#else
        bf_status_t hst = st;
        (void)co;
        (void)ro;
#endif
#if FW_SOP_EVERY > 0
        /* The filter started again (an interval beyond dt_max_s; a NaN one
         * is skipped): a search under way, and its results, are of the
         * state before, so the cell's search starts afresh (horizon none
         * until its first result), as at power-on. */
        if ((out.flags & BF_FLAG_DT_INVALID) != 0u && app->dt_s >= 0.0f)
            (void)bf_sop_task_init(&app->sop[m.cell_index]);
        if (hst == BF_OK && app->sequence % FW_SOP_EVERY == 0u) {
            int32_t finished;
            ran[FW_PART_HEALTH_AND_POWER] = 1u;
            hst = bf_sop_task_step(&app->sop[m.cell_index], &cell->ekf, app->params, cell->ekf.last_temp_C,
                                   app->sop_limits, FW_SOP_HORIZONS, 1u, &finished);
        }
#endif
        tick[FW_PART_CORE_TEMP] = board_ticks();
#if FW_THERMAL
        /* Core temperature: the heat i (v - OCV) at the filter's SOC over the
         * sample (none, the last one kept, when the filter refused its
         * current, voltage or interval), the surface reading, the ambient. */
        if (hst == BF_OK && cell->thermal_initialised) {
            bf_thermal_out_t to;
            float q = NAN;
            ran[FW_PART_CORE_TEMP] = 1u;
            if ((out.flags & (BF_FLAG_VOLTAGE_INVALID | BF_FLAG_CURRENT_INVALID | BF_FLAG_DT_INVALID)) == 0u)
                q = bf_thermal_heat_W(app->params, out.soc, cell->ekf.last_temp_C, app->current_A, v);
            hst = bf_thermal_step(&cell->thermal, app->thermal_params, app->thermal_tuning, app->dt_s, q, t,
                                  cell->ambient_C, &to);
        }
#endif
        tick[FW_PARTS] = board_ticks();
        board_irq_release(held);
        if (st == BF_OK) {
            ran[FW_PART_MONITOR] = 1u;
#if FW_HEALTH
            ran[FW_PART_HEALTH_AND_POWER] = 1u;
#endif
        }
        for (uint32_t p = 0; p < FW_PARTS; p++) {
            uint64_t ticks = tick[p + 1] - tick[p];
            ticks = ticks > app->tick_overhead ? ticks - app->tick_overhead : 0u;
            app->part_ticks[p] += ticks;
            app->part_runs[p] += ran[p];
            total += ticks;
        }
        app->step_ticks += total;
        app->steps++;
        flags = out.flags;
        if (cell->restored) {
            flags |= FW_FLAG_RESTORED;
            cell->restored = 0;
        }
        if (st != BF_OK) {
            app->fault = FW_FAULT_ESTIMATOR_ERROR;
            send_estimate(app, m.cell_index, &out, flags, 0);
            return;
        }
        send_estimate(app, m.cell_index, &out, flags, 1);
        if (pst != BF_OK || hst != BF_OK) {
            app->fault = FW_FAULT_ESTIMATOR_ERROR;  /* the monitor or a health estimator refused */
            if (pst == BF_OK) send_flags(app, m.cell_index, &po);
            return;
        }
    }
    send_flags(app, m.cell_index, &po);
#if FW_HEALTH
    send_health(app, m.cell_index, cell, &co, &ro);
#endif
#if FW_SOP_EVERY > 0
    send_power(app, m.cell_index, &app->sop[m.cell_index]);
#endif
}

static void finish_sample(fw_app_t *app)
{
    fw_saved_t *s = app->saved;
    if (app->steps > 0u) {
        uint32_t insns = board_ticks_to_instructions(app->step_ticks);
        app->instructions_per_cell_step = (insns + app->steps / 2u) / app->steps;
    } else {
        app->instructions_per_cell_step = 0u; /* no cell stepped: not measured, as its profile says */
    }
    s->body.last_sequence = app->sequence;
    s->body.last_sequence_valid = 1;
    saved_commit(s);
    app->in_sample = 0;
    send_status(app);
    send_profile(app);
}

static void on_host_command(fw_app_t *app, const uint8_t *data)
{
    struct bmsfil_can_host_command_t m;
    if (bmsfil_can_host_command_unpack(&m, data, 8) != 0 || m.key != HOST_COMMAND_KEY) {
        app->fault = FW_FAULT_FRAME_ERROR;
        return;
    }
    if (m.command == 1u) {
        board_reset();
    } else if (m.command == 2u) {
        /* A power loss as far as the saved state can tell: its body decays. */
        uint8_t *body = (uint8_t *)&app->saved->body;
        for (size_t i = 0; i < sizeof app->saved->body; i++) body[i] ^= (uint8_t)(0xA5u + i);
        board_reset();
    } else if (m.command == 3u) {
        app->saved->magic = 0;  /* no saved state: the next boot starts fresh */
        board_reset();
    }
}

void fw_app_on_frame(fw_app_t *app, const fw_frame_t *f)
{
    app->frames_in++;
    if (f->extended) return;  /* not the contract's; someone else's on a shared bus */
    switch (f->id) {
    case BMSFIL_CAN_MEAS_PACK_FRAME_ID:
    case BMSFIL_CAN_MEAS_CELL_FRAME_ID:
    case BMSFIL_CAN_HOST_COMMAND_FRAME_ID:
        break;
    default:
        return;  /* estimates of another target, or traffic that is not ours */
    }
    if (f->remote || f->dlc != 8u) {
        app->frames_bad++;
        app->fault = FW_FAULT_FRAME_ERROR;
        return;
    }
    if (!app->params_ok) {
        app->fault = FW_FAULT_BAD_PARAMS;
        return;
    }
    if (f->id == BMSFIL_CAN_MEAS_PACK_FRAME_ID) {
        on_meas_pack(app, f->data);
    } else if (f->id == BMSFIL_CAN_MEAS_CELL_FRAME_ID) {
        on_meas_cell(app, f->data);
        if (app->in_sample && app->n_answered == app->n_cells) finish_sample(app);
    } else {
        on_host_command(app, f->data);
    }
}

void fw_app_init(fw_app_t *app, const bf_cell_params_t *params, const bf_soc_ekf_tuning_t *tuning,
                 const bf_plaus_config_t *plaus_config, const bf_capacity_tuning_t *capacity_tuning,
                 const bf_r0_tuning_t *r0_tuning, const bf_sop_limits_t *sop_limits,
                 const bf_thermal_params_t *thermal_params, const bf_thermal_tuning_t *thermal_tuning,
                 const fw_transport_t *transport, void *retained, size_t retained_size)
{
    int restored;
    memset(app, 0, sizeof *app);
    app->params = params;
    app->tuning = tuning;
    app->plaus_config = plaus_config;
    app->capacity_tuning = capacity_tuning;
    app->r0_tuning = r0_tuning;
    app->thermal_params = thermal_params;
    app->thermal_tuning = thermal_tuning;
    app->transport = transport;
    app->saved = (fw_saved_t *)retained;
    app->state = FW_STATE_BOOTING;
    app->params_ok = bf_cell_params_check(params) == BF_OK && bf_soc_ekf_tuning_check(tuning) == BF_OK &&
                     bf_plaus_config_check(plaus_config) == BF_OK &&
                     bf_capacity_tuning_check(capacity_tuning) == BF_OK && bf_r0_tuning_check(r0_tuning) == BF_OK;
#if FW_SOP_EVERY > 0
    for (uint32_t h = 0; h < FW_SOP_HORIZONS; h++) {
        static const float horizon_s[FW_SOP_HORIZONS] = {2.0f, 10.0f, 30.0f};
        bf_sop_limits_t *lim = &app->sop_limits[h];
        *lim = *sop_limits;
        lim->horizon_s = horizon_s[h];
        /* e.g. v_min_V <= 0, or a limit beyond what the filter reads of the cell */
        if (bf_sop_limits_cell_check(lim, params) != BF_OK) app->params_ok = 0;
    }
    for (uint32_t i = 0; i < FW_MAX_CELLS; i++) (void)bf_sop_task_init(&app->sop[i]);
#else
    (void)sop_limits;
#endif
#if FW_THERMAL
    if (!(thermal_params == 0 && thermal_tuning == 0) &&
        (bf_thermal_params_check(thermal_params) != BF_OK || bf_thermal_tuning_check(thermal_tuning) != BF_OK))
        app->params_ok = 0;
#endif
    if (retained_size < sizeof(fw_saved_t)) {
        /* The board's retained region is too small for FW_MAX_CELLS: a build error in practice. */
        app->state = FW_STATE_FAULT;
        app->fault = FW_FAULT_PERSIST_ERROR;
        app->params_ok = 0;
        send_status(app);
        return;
    }
    restored = saved_restore(app->saved);
    if (restored == 1) {
        app->start = FW_START_RESTORED;
        for (uint32_t i = 0; i < app->saved->body.n_cells; i++)
            app->saved->body.cells[i].restored = app->saved->body.cells[i].initialised;
        saved_commit(app->saved);
    } else {
        app->start = restored == 0 ? FW_START_POWER_ON : FW_START_SAVED_STATE_BAD;
        if (restored < 0) app->fault = FW_FAULT_PERSIST_ERROR;
        saved_reset(app->saved);
    }
    /* What measuring an empty interval costs, subtracted from every step. */
    app->tick_overhead = ~(uint64_t)0;
    for (int i = 0; i < 8; i++) {
        uint32_t held = board_irq_hold();
        uint64_t t0 = board_ticks();
        uint64_t dt = board_ticks() - t0;
        board_irq_release(held);
        if (dt < app->tick_overhead) app->tick_overhead = dt;
    }
    if (!app->params_ok) {
        app->state = FW_STATE_FAULT;
        app->fault = FW_FAULT_BAD_PARAMS;
    } else {
        app->state = FW_STATE_IDLE;
    }
    send_status(app);
}

void fw_app_poll(fw_app_t *app)
{
    fw_frame_t f;
    int r;
    while ((r = app->transport->poll(app->transport->ctx, &f)) != 0) {
        if (r < 0) {
            app->transport_faults++;
            app->fault = FW_FAULT_RX_OVERFLOW;
            continue;
        }
        fw_app_on_frame(app, &f);
    }
    if (board_ticks() - app->last_status_tick >= board_tick_hz()) send_status(app);
}
