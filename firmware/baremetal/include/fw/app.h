/* The firmware application: the CAN contract (csrc/can/bmsfil.dbc) on the
 * C core, independent of the board.
 *
 * Per sample: a MeasPack opens sequence k, then one MeasCell per cell; each
 * cell is stepped as its frame arrives (a cell's first voltage initialises
 * it from OCV), its plausibility monitor (csrc/include/bmsfil/plausibility.h)
 * judges the step, and the cell is answered with an EstCell and an
 * EstCellFlags (the monitor's flags and evidence); when every cell of the sample
 * has been answered a TargetStatus closes it (last_sequence = k), followed
 * by a TargetProfile (the instructions per cell step of each part). A
 * HostCommand with the right key resets the board (warm) or simulates a
 * power loss.
 *
 * Persistence: the filter and monitor state of every cell and the last sequence live in
 * retained RAM (`fw_saved_t`), guarded by a CRC-32 that is brought up to
 * date after every complete sample. At boot a saved state with the right
 * magic, version, size and CRC is restored (TargetStatus.start = restored;
 * the next EstCell of each cell has restored = 1); one that fails the check
 * is discarded (start = saved_state_bad, fault persist_error) and so is a
 * sample interrupted half-way, whose CRC no longer matches. */
#ifndef FW_APP_H
#define FW_APP_H

#include <stddef.h>
#include <stdint.h>

#include "bmsfil/capacity.h"
#include "bmsfil/plausibility.h"
#include "bmsfil/power.h"
#include "bmsfil/resistance.h"
#include "bmsfil/soc_ekf.h"
#include "bmsfil/thermal.h"
#include "fw/frame.h"

#ifndef FW_MAX_CELLS
#define FW_MAX_CELLS 16
#endif

#define FW_SAVED_MAGIC 0x46534D42u   /* "BMSF" */
#define FW_SAVED_VERSION 6u          /* 2: fw_cell_t holds the monitor's state; 3: and capacity and R0; 4: and core temperature; 5: bf_thermal_t keeps how far the ambient moved; 6: the monitor's stuck run keeps currents, not drops */

/* EstCell flag bit set by the firmware itself (not a core BF_FLAG_*). */
#define FW_FLAG_RESTORED 0x80u

/* State of power: the horizons searched in turn (EstCellPower.horizon
 * peak_2s, peak_10s, peak_30s); the search (power.h) simulates one sub-step
 * per cell on every FW_SOP_EVERY-th sample (sequence divisible by it), so
 * that its cost is spread over the samples: about 560 instructions a
 * sub-step, 280 a cell step on average with 2. 0: no state of power (no
 * EstCellPower is sent). */
#define FW_SOP_HORIZONS 3u

/* 0: no capacity and R0 estimators either (no EstCellHealth; the state of
 * power's search still runs if FW_SOP_EVERY says so): for measuring what
 * they cost (scripts/power_cost.py). */
#ifndef FW_HEALTH
#define FW_HEALTH 1
#endif
#ifndef FW_SOP_EVERY
#define FW_SOP_EVERY 2u
#endif
/* 0: no core-temperature filter (EstCellHealth.core_temp_valid 0), for
 * measuring what it costs; 1: it runs when the parameter set has a thermal
 * section. Its core temperature goes out in EstCellHealth, so only with
 * FW_HEALTH. */
#ifndef FW_THERMAL
#define FW_THERMAL 1
#endif

/* The parts of a cell step the firmware times apart (TargetProfile, in
 * this order): the SOC filter, the plausibility monitor, capacity with R0
 * and the state of power's sub-step, the core temperature. */
enum { FW_PART_SOC_FILTER = 0, FW_PART_MONITOR = 1, FW_PART_HEALTH_AND_POWER = 2, FW_PART_CORE_TEMP = 3, FW_PARTS = 4 };

/* TargetStatus.start */
enum { FW_START_POWER_ON = 0, FW_START_RESTORED = 1, FW_START_SAVED_STATE_BAD = 2 };
/* TargetStatus.state */
enum { FW_STATE_BOOTING = 0, FW_STATE_IDLE = 1, FW_STATE_RUNNING = 2, FW_STATE_FAULT = 3 };
/* TargetStatus.fault_code */
enum {
    FW_FAULT_NONE = 0,
    FW_FAULT_BAD_PARAMS = 1,
    FW_FAULT_SEQUENCE_GAP = 2,
    FW_FAULT_N_CELLS_UNSUPPORTED = 3,
    FW_FAULT_CELL_INDEX_OUT_OF_RANGE = 4,
    FW_FAULT_RX_OVERFLOW = 5,
    FW_FAULT_ESTIMATOR_ERROR = 6,
    FW_FAULT_FRAME_ERROR = 7,
    FW_FAULT_PERSIST_ERROR = 8,
    FW_FAULT_CRC_ERROR = 9,
};

typedef struct {
    bf_soc_ekf_t ekf;
    bf_plaus_t plaus;      /* the plausibility monitor beside the filter */
    bf_capacity_t capacity; /* capacity (AWTLS over SOC anchors) */
    bf_r0_t r0;            /* R0 from current steps */
    bf_thermal_t thermal;  /* core temperature, from the cell's first valid temperature reading */
    float ambient_C;       /* the thermal filter's ambient: that first reading */
    uint8_t initialised;   /* ekf holds a state */
    uint8_t restored;      /* the next EstCell carries FW_FLAG_RESTORED */
    uint8_t thermal_initialised; /* thermal holds a state */
    uint8_t reserved;
} fw_cell_t;

/* What survives a warm reset. The CRC covers `body` up to and including
 * cells[n_cells - 1]; `size` is that length in bytes. */
typedef struct {
    uint32_t magic;
    uint32_t version;
    uint32_t size;
    uint32_t crc;
    struct {
        uint32_t n_cells;          /* cells that hold a state: 0 .. FW_MAX_CELLS */
        uint16_t last_sequence;
        uint8_t last_sequence_valid;
        uint8_t reserved;
        fw_cell_t cells[FW_MAX_CELLS];
    } body;
} fw_saved_t;

typedef struct {
    const bf_cell_params_t *params;
    const bf_soc_ekf_tuning_t *tuning;
    const bf_plaus_config_t *plaus_config;
    const bf_capacity_tuning_t *capacity_tuning;
    const bf_r0_tuning_t *r0_tuning;
    const bf_thermal_params_t *thermal_params;  /* NULL: no core temperature */
    const bf_thermal_tuning_t *thermal_tuning;
    const fw_transport_t *transport;
    fw_saved_t *saved;             /* in retained RAM */
    /* the sample in progress */
    uint8_t in_sample;
    uint16_t sequence;
    uint16_t n_cells;
    float dt_s, current_A;         /* NaN when not valid */
    uint32_t answered[(FW_MAX_CELLS + 31) / 32];
    uint16_t n_answered;
    /* instruction accounting over the sample's cell steps: the whole step,
     * and each part (FW_PART_*) with the cells on which it ran */
    uint64_t step_ticks;
    uint32_t steps;
    uint64_t part_ticks[FW_PARTS];
    uint32_t part_runs[FW_PARTS];
    uint64_t tick_overhead;        /* cost of an empty measurement, subtracted */
    uint32_t instructions_per_cell_step;
    /* status */
    uint8_t counter;
    uint8_t state;
    uint8_t start;
    uint8_t fault;                 /* latest fault since the last status frame (a crc_error is not
                                      overwritten by the sequence gap it causes) */
    uint8_t crc_errors;            /* measurement frames refused for a bad crc since boot (sent mod 16) */
    uint8_t params_ok;
    uint64_t last_status_tick;
    uint32_t frames_in, frames_bad, send_errors, transport_faults;
    /* state of power: limits per horizon (from the parameter set) and each
     * cell's search, not retained (a reset starts the searches again) */
#if FW_SOP_EVERY > 0
    bf_sop_limits_t sop_limits[FW_SOP_HORIZONS];
    bf_sop_task_t sop[FW_MAX_CELLS];
#endif
} fw_app_t;

/* Bring the app up: check the parameters and the monitor's settings (and
 * the thermal ones unless both are NULL: then no core temperature),
 * restore or reset the saved state (`retained`, `retained_size` bytes of
 * retained RAM), send the first TargetStatus. */
void fw_app_init(fw_app_t *app, const bf_cell_params_t *params, const bf_soc_ekf_tuning_t *tuning,
                 const bf_plaus_config_t *plaus_config, const bf_capacity_tuning_t *capacity_tuning,
                 const bf_r0_tuning_t *r0_tuning, const bf_sop_limits_t *sop_limits,
                 const bf_thermal_params_t *thermal_params, const bf_thermal_tuning_t *thermal_tuning,
                 const fw_transport_t *transport, void *retained, size_t retained_size);

/* Handle one received frame. */
void fw_app_on_frame(fw_app_t *app, const fw_frame_t *f);

/* Poll the transport until it is empty, then send a heartbeat if none went
 * out for a second. Call in a loop with board_wait_for_event() between. */
void fw_app_poll(fw_app_t *app);

/* Exact round(x * mult) for finite 0 <= x, as an unsigned integer
 * (x * mult below 2^32): the estimate frames' scaling without the rounding
 * error of a single-precision multiply. Exposed for tests. */
uint32_t fw_round_scaled(float x, uint32_t mult);

#endif
