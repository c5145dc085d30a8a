"""The bmsfil SOC estimator as the C core (csrc/), through the native module
`bmsfil_c` (natmod/: `bmsfil_c.mpy`, built for the port's architecture).

The same interface as bmsfil_ekf.SocEkf (and `Plausibility`, the C monitor
beside it, as bmsfil_plaus.Plausibility), so that app.py runs either:
`SocEkf(params)`, `init_soc(soc, temp_C)`, `init_ocv(voltage_V, temp_C)`
(ValueError when refused) and `step(dt_s, current_A, voltage_V, temp_C)`
returning (soc, soc_sigma, v_pred, flags). Unlike bmsfil_ekf on the unix
port (double precision), this is the float32 C core: what the host's cffi
binding and the bare-metal firmware compute.

The C structs live in bytearrays owned here, never in the module: the cell
parameters (bf_cell_params_t) and the tuning (bf_soc_ekf_tuning_t) packed
once per parameter set and shared by every cell, and one bf_soc_ekf_t
(92 bytes) per cell. The parameter set is the JSON of bmsfil_ekf.Params
(checked there), packed field by field in the order of
csrc/include/bmsfil/cell_model.h and soc_ekf.h; the module's sizes catch a
layout that has moved, and tests/test_micropython_native.py checks the
packed bytes against the host binding's structs.
"""

import struct

import bmsfil_c as _c
from bmsfil_ekf import ParamsError, Params, load_params  # noqa: F401 (re-exported for main.py)
from bmsfil_plaus import CONFIG as PLAUS_CONFIG
from bmsfil_thermal import THERMAL_TUNING

# bf_cell_params_t, in declaration order.
RC_TABLES = ("r0_ohm", "r1_ohm", "tau1_s", "r2_ohm", "tau2_s")
TEMP_ROWS = ("capacity_Ah", "hyst_m0_V", "hyst_m_V", "hyst_gamma", "rn_ohm")
CELL_SCALARS = ("rn_sat_per_A", "eta_charge", "v_min_V", "v_max_V", "i_max_A")
# bf_soc_ekf_tuning_t, in declaration order.
TUNING = ("q_soc_per_s", "q_irc_A2_per_s", "q_hyst_per_s", "r_voltage_V2_s", "r_overpotential_rel2_s",
          "r_dt_min_s", "p0_soc", "p0_soc_ocv", "p0_irc_A2", "p0_hyst", "p_floor_soc", "p_floor_irc_A2",
          "p_floor_hyst", "gate_sigma", "hyst_current_A", "dt_max_s", "hold_sigma_c_rate")


NAN = float("nan")
_step = _c.step  # a global, not `_c.step`: one operand-stack slot fewer in SocEkf.step (see there)


def _put(buf, off, values):
    for i, v in enumerate(values):
        struct.pack_into("f", buf, off + 4 * i, v)


def pack_cell(p):
    """bf_cell_params_t of a Params, as a bytearray (unused table entries 0)."""
    nt_max, no_max, nr_max = _c.MAX_TEMPS, _c.OCV_MAX_POINTS, _c.RC_MAX_POINTS
    nt = len(p.temp_C)
    if nt > nt_max or p.n_ocv > no_max or p.n_rc > nr_max:
        raise ParamsError("parameter set too large for the C core: %d temperatures (max %d), %d OCV points "
                          "(max %d), %d RC points (max %d)" % (nt, nt_max, p.n_ocv, no_max, p.n_rc, nr_max))
    buf = bytearray(_c.CELL_PARAMS_SIZE)
    struct.pack_into("I", buf, 0, nt)
    off = 4
    _put(buf, off, p.temp_C)
    off += 4 * nt_max
    struct.pack_into("I", buf, off, p.n_ocv)
    off += 4
    for i, row in enumerate(p.ocv_V):
        _put(buf, off + 4 * no_max * i, row)
    off += 4 * nt_max * no_max
    struct.pack_into("I", buf, off, p.n_rc)
    off += 4
    for name in RC_TABLES:
        for i, row in enumerate(p.tables[name]):
            _put(buf, off + 4 * nr_max * i, row)
        off += 4 * nt_max * nr_max
    for name in TEMP_ROWS:
        _put(buf, off, p.rows[name])
        off += 4 * nt_max
    _put(buf, off, [getattr(p, name) for name in CELL_SCALARS])
    off += 4 * len(CELL_SCALARS)
    if off != len(buf):
        raise ParamsError("bf_cell_params_t is %d bytes in bmsfil_c, %d as packed here: the module and "
                          "bmsfil_native.py are not of the same csrc/ (rebuild natmod/)" % (len(buf), off))
    return buf


def pack_tuning(p):
    """bf_soc_ekf_tuning_t of a Params, as a bytearray."""
    buf = bytearray(_c.TUNING_SIZE)
    if 4 * len(TUNING) != len(buf):
        raise ParamsError("bf_soc_ekf_tuning_t is %d bytes in bmsfil_c, %d as packed here: the module and "
                          "bmsfil_native.py are not of the same csrc/ (rebuild natmod/)" % (len(buf), 4 * len(TUNING)))
    _put(buf, 0, [getattr(p, name) for name in TUNING])
    return buf


def packed(p):
    """(cell, tuning) of a Params, packed once and kept on it; checked by the core."""
    pair = getattr(p, "_bmsfil_c", None)
    if pair is None:
        pair = (pack_cell(p), pack_tuning(p))
        _c.check(pair[0], pair[1])  # ValueError naming what the core refused
        p._bmsfil_c = pair
    return pair


class SocEkf:
    """The SOC EKF of one cell, in the C core; the interface of bmsfil_ekf.SocEkf."""

    def __init__(self, params):
        self.p = params
        self.cell, self.tuning = packed(params)
        self.state = bytearray(_c.STATE_SIZE)
        self.ekf_out = bytearray(_c.EKF_OUT_SIZE)  # the last step's bf_soc_ekf_out_t, for the monitor
        self.bufs = (self.state, self.cell, self.tuning, self.ekf_out)
        self.init_soc(1.0, 25.0)

    def init_soc(self, soc, temp_C):
        _c.init_soc(self.state, self.cell, self.tuning, soc, temp_C)

    def init_ocv(self, voltage_V, temp_C):
        _c.init_ocv(self.state, self.cell, self.tuning, voltage_V, temp_C)

    def start(self, current_A, voltage_V, temp_C):
        _c.start(self.state, self.cell, self.tuning, current_A, voltage_V, temp_C)

    def step(self, dt_s, current_A, voltage_V, temp_C):
        # 5 locals and 6 operand-stack slots: the frame stays on the C stack
        # (MicroPython allocates frames over 11 words on the heap, per call,
        # which made this method 20 times slower than the C step it calls).
        return _step(self.bufs, dt_s, current_A, voltage_V, temp_C)

    @property
    def x(self):
        """The state [SOC, i_R1, i_R2, h] (bf_soc_ekf_t.x)."""
        return list(struct.unpack_from("4f", self.state, 0))

    @property
    def P(self):
        """The covariance, a flat row-major list of 16 (bf_soc_ekf_t.P)."""
        return list(struct.unpack_from("16f", self.state, 16))


def pack_plaus_config(config=PLAUS_CONFIG):
    """bf_plaus_config_t of the monitor's settings (bmsfil_plaus.CONFIG's order), as a bytearray."""
    buf = bytearray(_c.PLAUS_CONFIG_SIZE)
    if 4 * len(config) != len(buf):
        raise ParamsError("bf_plaus_config_t is %d bytes in bmsfil_c, %d as packed here: rebuild natmod/"
                          % (len(buf), 4 * len(config)))
    _put(buf, 0, config)
    return buf


_PLAUS_CONFIG = None


class Plausibility:
    """The plausibility monitor of one cell in the C core (bf_plaus_t); the
    interface of bmsfil_plaus.Plausibility: `step(ekf, dt_s, voltage_V)`
    after the cell's SocEkf.step returns (flags, unseen_current_A,
    unseen_current_sigma_A, stuck_for_s)."""

    def __init__(self, config=None):
        global _PLAUS_CONFIG
        if config is None:
            if _PLAUS_CONFIG is None:
                _PLAUS_CONFIG = pack_plaus_config()
            self.config = _PLAUS_CONFIG
        else:
            self.config = pack_plaus_config(config)
        self.state = bytearray(_c.PLAUS_STATE_SIZE)
        _c.plaus_init(self.state, self.config)
        self.bufs = None

    def step(self, ekf, dt_s, voltage_V):
        bufs = self.bufs
        if bufs is None or bufs[2] is not ekf.ekf_out:
            bufs = self.bufs = (self.state, self.config, ekf.ekf_out)
        return _c.plaus_step(bufs, dt_s, voltage_V)


def _pack_floats(values, size, what):
    buf = bytearray(size)
    if 4 * len(values) != size:
        raise ParamsError("%s is %d bytes in bmsfil_c, %d as packed here: rebuild natmod/" % (what, size, 4 * len(values)))
    _put(buf, 0, values)
    return buf


class CellHealth:
    """The capacity and R0 estimators of one cell in the C core (bf_capacity_t,
    bf_r0_t); the interface of bmsfil_health.CellHealth: `step(ekf, dt_s,
    current_A, voltage_V, temp_C, soc, soc_sigma, flags)` after the cell's
    SocEkf.step returns (capacity_Ah, r0_ohm), each nan until learned. The
    settings are bmsfil_health's (the host's defaults for the set)."""

    def __init__(self, params, capacity_tuning, r0_tuning):
        self.cell = packed(params)[0]
        self.ctuning = _pack_floats(capacity_tuning.values(), _c.CAP_TUNING_SIZE, "bf_capacity_tuning_t")
        self.rtuning = _pack_floats(r0_tuning.values(), _c.R0_TUNING_SIZE, "bf_r0_tuning_t")
        self.cstate = bytearray(_c.CAP_STATE_SIZE)
        self.rstate = bytearray(_c.R0_STATE_SIZE)
        _c.health_init(self.cstate, self.ctuning, self.rstate, self.rtuning)
        self.bufs = None

    def step(self, ekf, dt_s, current_A, voltage_V, temp_C, soc, soc_sigma, flags):
        bufs = self.bufs
        if bufs is None or bufs[5] is not ekf.ekf_out:
            bufs = self.bufs = (self.cstate, self.ctuning, self.rstate, self.rtuning, self.cell, ekf.ekf_out)
        return _c.health_step(bufs, (dt_s, current_A, voltage_V, temp_C))




class CellThermal:
    """The core-temperature filter of one cell in the C core (bf_thermal_t),
    run as the firmware runs it: `step(ekf, dt_s, current_A, voltage_V,
    temp_C)` after the cell's SocEkf.step returns the core temperature in
    °C, nan until a valid temperature reading has started the filter (core
    and surface at that reading, the ambient taken as it). `params.thermal`
    must be the set's thermal model (not None)."""

    def __init__(self, params):
        self.tparams = _pack_floats(params.thermal, _c.THERMAL_PARAMS_SIZE, "bf_thermal_params_t")
        self.ttuning = _pack_floats(THERMAL_TUNING, _c.THERMAL_TUNING_SIZE, "bf_thermal_tuning_t")
        self.tstate = bytearray(_c.THERMAL_STATE_SIZE)
        self.cell = packed(params)[0]
        self.ambient_C = None
        self.bufs = None

    def step(self, ekf, dt_s, current_A, voltage_V, temp_C):
        if self.ambient_C is None:
            if temp_C != temp_C or not _c.thermal_init(self.tstate, self.tparams, self.ttuning, temp_C):
                return NAN
            self.ambient_C = temp_C
        bufs = self.bufs
        if bufs is None or bufs[5] is not ekf.ekf_out:
            bufs = self.bufs = (self.tstate, self.tparams, self.ttuning, self.cell, ekf.state, ekf.ekf_out)
        return _c.thermal_step(bufs, (dt_s, current_A, voltage_V, temp_C, self.ambient_C))


# The state of power's horizons and cadence, as the firmware's (app.h):
# peak_2s, peak_10s, peak_30s; one sub-step per cell on every SOP_EVERY-th sample.
SOP_HORIZONS_S = (2.0, 10.0, 30.0)
SOP_EVERY = 2


class PowerSearch:
    """The state-of-power search of one cell in the C core (bf_sop_task_t),
    limits from the parameter set (Params.power_limits) as the firmware's: `step(ekf, sequence)`
    after the cell's SocEkf.step simulates one sub-step of the search on
    every SOP_EVERY-th sample and returns None before the first result,
    else (horizon index, discharge_W, charge_W) of the latest."""

    def __init__(self, params):
        values = []
        for horizon in SOP_HORIZONS_S:
            values += [horizon] + params.power_limits
        self.limits = _pack_floats(values, len(SOP_HORIZONS_S) * _c.SOP_LIMITS_SIZE, "bf_sop_limits_t")
        self.task = bytearray(_c.SOP_TASK_SIZE)
        _c.sop_init(self.task, self.limits)
        self.bufs = None
        self.latest = None

    def step(self, ekf, sequence):
        if sequence % SOP_EVERY == 0:
            bufs = self.bufs
            if bufs is None or bufs[2] is not ekf.state:
                bufs = self.bufs = (self.task, self.limits, ekf.state, ekf.cell)
            self.latest = _c.sop_step(bufs, 1)
        return self.latest
