"""A parameter set as PyBaMM parameter values: a self-contained Python module
that builds a `pybamm.ParameterValues` for PyBaMM's equivalent-circuit
("Thevenin") model, so that a fitted cell can be simulated in PyBaMM.

    bmsfil export PARAMS.json --format pybamm -o lg_hg2_pybamm.py

The module needs numpy and pybamm only (not bmsfil). It holds the tables
and defines `model()` (a `pybamm.equivalent_circuit.Thevenin` with the
right number of RC elements) and `parameter_values(initial_soc,
ambient_temp_C, initial_hysteresis)`. Current in PyBaMM is positive on
discharge, bmsfil's on charge: a bmsfil recording's current goes into a
PyBaMM experiment negated.

What PyBaMM's ECM holds of bmsfil's model (csrc/include/bmsfil/cell_model.h)
and how the rest is approximated:

- R0 and the two RC pairs as tables over (T, SOC), interpolated bilinearly
  with the end values held outside the grid, as in the C core; an RC pair's
  capacitance is tau/R. PyBaMM's RC state is the pair's voltage, bmsfil's
  its resistor current: the two agree while R is constant; when R changes
  with SOC or T, bmsfil's voltage follows at once and PyBaMM's within tau.
- The current-dependent resistance Rn(T)*i/(1 + kn*|i|) exactly: PyBaMM's
  R0 is a function of current, so R0 [Ohm] = R0(T, SOC) + Rn(T)/(1 + kn*|I|).
- Plett's dynamic hysteresis M(T)*h exactly as its ODE, as one more RC
  element: with R = M/|I| and C = 3600*Q/(gamma*M), the element's voltage
  obeys d(M*h)/dt = gamma*|i|/(3600*Q)*(M*sign(i) - M*h), bmsfil's
  hysteresis state equation (with eta_charge on charge) times M.
- The instantaneous hysteresis M0(T)*s, where s is the sign of the last
  current above the filter's hyst_current_A, is a latch, not an ODE: it is
  approximated by a fast element of the same form that moves 63 % of the
  way to the new sign per HYST_SIGN_CHARGE_AS of charge (1 A*s); present
  only when some M0 is not zero.
- OCV(SOC, T) and capacity(T): PyBaMM's OCV is a function of SoC only and
  its capacity one number, so both read the ambient temperature
  ("Ambient temperature [K]", which may change with time).
- Temperature: bmsfil's cell model takes the measured cell temperature as
  an input; a set's thermal section (the two-state model of the
  core-temperature filter, thermal.h) is not exported. The module makes the
  cell isothermal at
  the ambient temperature: small thermal masses and large heat-transfer
  coefficients, so that PyBaMM's cell temperature follows the ambient within
  about a second and 0.2 K at 10 W of heat; no entropic heat. Replace the
  four thermal parameters to simulate self-heating.
- Coulombic efficiency on charge (eta_charge): PyBaMM's SoC has none; it
  is dropped (exact for eta_charge = 1).
- v_min_V and v_max_V become the voltage cut-offs.
"""

from __future__ import annotations

import keyword

import numpy as np

from bmsfil.params import ParameterSet

#: Charge over which the instantaneous-hysteresis element moves 63 % of the way to a new sign.
HYST_SIGN_CHARGE_AS = 1.0
#: Modules the exported module imports, itself or through PyBaMM: a file of one of these names would be
#: imported in their place.
SHADOWED = ("pybamm", "numpy", "typing", "__future__", "scipy", "casadi")

_TEMPLATE = '''"""PyBaMM parameter values for the bmsfil parameter set {doc_name}{origin}.

Written by `bmsfil export --format pybamm` (bmsfil.export_pybamm, whose
docstring says what of bmsfil's cell model PyBaMM's equivalent-circuit model
holds and how the rest is approximated). Do not edit: export again.

    import pybamm
    import {module}

    values = {module}.parameter_values(initial_soc=0.9, ambient_temp_C=25.0)
    sim = pybamm.Simulation({module}.model(), parameter_values=values, experiment=...)

Current in PyBaMM is positive on discharge (bmsfil's: on charge).
Elements: 0 is R0 with the current-dependent Rn, 1 and 2 the RC pairs{elements}.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pybamm

NAME = {name!r}
TEMP_C = {temp_C}
OCV_V = {ocv_V}
R0_OHM = {r0_ohm}
R1_OHM = {r1_ohm}
TAU1_S = {tau1_s}
R2_OHM = {r2_ohm}
TAU2_S = {tau2_s}
CAPACITY_AH = {capacity_Ah}
HYST_M0_V = {hyst_m0_V}
HYST_M_V = {hyst_m_V}
HYST_GAMMA = {hyst_gamma}
RN_OHM = {rn_ohm}
RN_SAT_PER_A = {rn_sat_per_A!r}
#: What a C-rate in a PyBaMM experiment is a multiple of: the set's nominal capacity, else its largest.
NOMINAL_CAPACITY_AH = {nominal_capacity_Ah!r}
ETA_CHARGE = {eta_charge!r}
V_MIN_V = {v_min_V!r}
V_MAX_V = {v_max_V!r}
#: The RC element numbers of the dynamic and the instantaneous hysteresis (None: not in this cell).
HYST_ELEMENT = {hyst_element!r}
HYST_SIGN_ELEMENT = {hyst_sign_element!r}
HYST_SIGN_CHARGE_AS = {hyst_sign_charge_As!r}
NUMBER_OF_RC_ELEMENTS = {n_rc_elements!r}
#: Floors that keep an element's R, C and time constant finite when a table holds 0.
_R_FLOOR_OHM = 1e-9
_M_FLOOR_V = 1e-9
_RATE_FLOOR = 1e-12
_CURRENT_FLOOR_A = 1e-6


def model() -> pybamm.BaseModel:
    """PyBaMM's Thevenin model with this cell's RC elements."""
    return pybamm.equivalent_circuit.Thevenin(options={{"number of rc elements": NUMBER_OF_RC_ELEMENTS}})


def _clamp(x: Any, lo: float, hi: float) -> Any:
    return pybamm.maximum(pybamm.minimum(x, hi), lo)


def _table(values: np.ndarray, temp_C: Any, soc: Any) -> Any:
    """A (T x SOC) table on a uniform SOC grid, bilinear, end values held (bf_cell_rc_table)."""
    soc_grid = np.linspace(0.0, 1.0, values.shape[1])
    soc = _clamp(soc, 0.0, 1.0)
    if len(TEMP_C) == 1:
        return pybamm.Interpolant(soc_grid, values[0], soc)
    return pybamm.Interpolant((TEMP_C, soc_grid), values, [_clamp(temp_C, TEMP_C[0], TEMP_C[-1]), soc])


def _row(values: np.ndarray, temp_C: Any) -> Any:
    """A per-temperature row, linear in T, end values held."""
    if len(TEMP_C) == 1:
        return pybamm.Scalar(float(values[0]))
    return pybamm.Interpolant(TEMP_C, values, _clamp(temp_C, TEMP_C[0], TEMP_C[-1]))


def _ambient_C() -> Any:
    return pybamm.FunctionParameter("Ambient temperature [K]", {{"Time [s]": pybamm.t}}) - 273.15


def _capacity_As(temp_C: Any) -> Any:
    return 3600.0 * _row(CAPACITY_AH, temp_C)


def _hysteresis_element(amplitude_V: np.ndarray, rate: Any) -> tuple[Any, Any]:
    """R [Ohm] and C [F] of an element whose voltage follows
    d(u)/dt = rate*|I|*(-M*sign(I) - u): R = M/|I|, C = 1/(rate*M)."""

    def resistance(T_cell: Any, I: Any, soc: Any) -> Any:
        m = pybamm.maximum(_row(amplitude_V, T_cell), _M_FLOOR_V)
        return m / pybamm.maximum(pybamm.AbsoluteValue(I), _CURRENT_FLOOR_A)

    def capacitance(T_cell: Any, I: Any, soc: Any) -> Any:
        m = pybamm.maximum(_row(amplitude_V, T_cell), _M_FLOOR_V)
        return 1.0 / (pybamm.maximum(rate(T_cell, I), _RATE_FLOOR) * m)

    return resistance, capacitance


def _eta(I: Any) -> Any:
    """Coulombic efficiency of the charge that moves the hysteresis (bmsfil: eta_charge on charge, I < 0 here)."""
    return 1.0 + (ETA_CHARGE - 1.0) * (I < 0)


def parameter_values(
    initial_soc: float = 1.0,
    ambient_temp_C: float | tuple[np.ndarray, np.ndarray] = 25.0,
    initial_hysteresis: float = 0.0,
) -> pybamm.ParameterValues:
    """This cell's parameter values for `model()`.

    ambient_temp_C: a temperature, or (time_s, temp_C) arrays that PyBaMM
    interpolates (the cell follows it: see the module docstring).
    initial_hysteresis: the hysteresis states h and s at the start, from -1
    (after discharge) to 1 (after charge); bmsfil's filter starts at 0."""
    if not 0.0 <= initial_soc <= 1.0:
        raise ValueError(f"initial_soc: expected a value in [0, 1], got {{initial_soc}}")
    if not -1.0 <= initial_hysteresis <= 1.0:
        raise ValueError(f"initial_hysteresis: expected a value in [-1, 1], got {{initial_hysteresis}}")
    if isinstance(ambient_temp_C, tuple):
        time_s, temp_C = (np.asarray(a, dtype=float) for a in ambient_temp_C)
        if time_s.shape != temp_C.shape or time_s.ndim != 1 or len(time_s) < 2:
            raise ValueError("ambient_temp_C: expected (time_s, temp_C) arrays of the same length >= 2")

        def ambient_K(t: Any) -> Any:
            return pybamm.Interpolant(time_s, temp_C + 273.15, t, interpolator="linear")

        initial_temp_C = float(temp_C[0])
    else:
        initial_temp_C = float(ambient_temp_C)

        def ambient_K(t: Any) -> Any:
            return pybamm.Scalar(initial_temp_C + 273.15)

    values: dict[str, Any] = {{
        "Cell capacity [A.h]": _row(CAPACITY_AH, _ambient_C()),
        "Nominal cell capacity [A.h]": NOMINAL_CAPACITY_AH,
        "Initial SoC": initial_soc,
        "Open-circuit voltage [V]": lambda soc: _table(OCV_V, _ambient_C(), soc),
        "Entropic change [V/K]": 0.0,
        "R0 [Ohm]": lambda T_cell, I, soc: _table(R0_OHM, T_cell, soc)
        + _row(RN_OHM, T_cell) / (1.0 + RN_SAT_PER_A * pybamm.AbsoluteValue(I)),
        "Element-0 initial overpotential [V]": 0.0,
        "Upper voltage cut-off [V]": V_MAX_V,
        "Lower voltage cut-off [V]": V_MIN_V,
        "Ambient temperature [K]": ambient_K,
        "Initial temperature [K]": initial_temp_C + 273.15,
        "Cell thermal mass [J/K]": 100.0,
        "Cell-jig heat transfer coefficient [W/K]": 100.0,
        "Jig thermal mass [J/K]": 100.0,
        "Jig-air heat transfer coefficient [W/K]": 100.0,
        "Current function [A]": 0.0,
    }}
    for k, (r_table, tau_table) in ((1, (R1_OHM, TAU1_S)), (2, (R2_OHM, TAU2_S))):
        values[f"R{{k}} [Ohm]"] = lambda T_cell, I, soc, r=r_table: pybamm.maximum(_table(r, T_cell, soc), _R_FLOOR_OHM)
        values[f"C{{k}} [F]"] = lambda T_cell, I, soc, r=r_table, tau=tau_table: _table(tau, T_cell, soc) / pybamm.maximum(
            _table(r, T_cell, soc), _R_FLOOR_OHM
        )
        values[f"Element-{{k}} initial overpotential [V]"] = 0.0
    if HYST_ELEMENT is not None:
        r, c = _hysteresis_element(HYST_M_V, lambda T_cell, I: _row(HYST_GAMMA, T_cell) * _eta(I) / _capacity_As(T_cell))
        values.update({{
            f"R{{HYST_ELEMENT}} [Ohm]": r,
            f"C{{HYST_ELEMENT}} [F]": c,
            f"Element-{{HYST_ELEMENT}} initial overpotential [V]": initial_hysteresis
            * float(np.interp(initial_temp_C, TEMP_C, HYST_M_V)),
        }})
    if HYST_SIGN_ELEMENT is not None:
        r, c = _hysteresis_element(HYST_M0_V, lambda T_cell, I: pybamm.Scalar(1.0 / HYST_SIGN_CHARGE_AS))
        values.update({{
            f"R{{HYST_SIGN_ELEMENT}} [Ohm]": r,
            f"C{{HYST_SIGN_ELEMENT}} [F]": c,
            f"Element-{{HYST_SIGN_ELEMENT}} initial overpotential [V]": initial_hysteresis
            * float(np.interp(initial_temp_C, TEMP_C, HYST_M0_V)),
        }})
    return pybamm.ParameterValues(values)
'''


def _array(values: np.ndarray) -> str:
    """A numpy array literal, one table row a line; float64 repr, so the values are the file's exactly."""
    if values.ndim == 1:
        return f"np.array({values.tolist()!r})"
    return "np.array([\n" + "".join(f"    {row!r},\n" for row in values.tolist()) + "])"


def _in_docstring(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def params_to_pybamm(params: ParameterSet, source: str = "", module: str = "cell_pybamm") -> str:
    """Python source of a module building PyBaMM parameter values for ``params`` (see this
    module's docstring); ``module`` is the name it will be imported under (its file's stem)."""
    if not module.isidentifier() or keyword.iskeyword(module):
        raise ValueError(f"{module!r} cannot be imported as a Python module: "
                         "name the file with letters, digits and underscores, e.g. cell_pybamm.py")
    if module in SHADOWED:
        raise ValueError(f"{module!r} is the name of a module the export imports ({module}.py would import itself "
                         "in its place): name the file otherwise, e.g. cell_pybamm.py")
    c = params.cell
    hyst = bool(np.any(c.hyst_m_V != 0.0))
    hyst_sign = bool(np.any(c.hyst_m0_V != 0.0))
    hyst_element = 3 if hyst else None
    hyst_sign_element = (4 if hyst else 3) if hyst_sign else None
    elements = ""
    if hyst_element is not None:
        elements += f", {hyst_element} the dynamic hysteresis"
    if hyst_sign_element is not None:
        elements += f", {hyst_sign_element} the instantaneous hysteresis"
    return _TEMPLATE.format(
        name=params.name,
        doc_name=_in_docstring(repr(params.name)),
        origin=_in_docstring(f" (from {source})") if source else "",
        module=module,
        elements=elements,
        temp_C=_array(c.temp_C),
        ocv_V=_array(c.ocv_V),
        r0_ohm=_array(c.r0_ohm),
        r1_ohm=_array(c.r1_ohm),
        tau1_s=_array(c.tau1_s),
        r2_ohm=_array(c.r2_ohm),
        tau2_s=_array(c.tau2_s),
        capacity_Ah=_array(c.capacity_Ah),
        hyst_m0_V=_array(c.hyst_m0_V),
        hyst_m_V=_array(c.hyst_m_V),
        hyst_gamma=_array(c.hyst_gamma),
        rn_ohm=_array(c.rn_ohm),  # type: ignore[arg-type]
        rn_sat_per_A=float(c.rn_sat_per_A),
        nominal_capacity_Ah=float(c.nominal_capacity_Ah if c.nominal_capacity_Ah > 0 else np.max(c.capacity_Ah)),
        eta_charge=float(c.eta_charge),
        v_min_V=float(c.v_min_V),
        v_max_V=float(c.v_max_V),
        hyst_element=hyst_element,
        hyst_sign_element=hyst_sign_element,
        hyst_sign_charge_As=HYST_SIGN_CHARGE_AS,
        n_rc_elements=2 + hyst + hyst_sign,
    )
