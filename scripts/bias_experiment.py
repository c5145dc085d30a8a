#!/usr/bin/env python3
"""Experiment: a current-sensor bias state in the SOC EKF (float64, Python only).

    .venv/bin/python scripts/bias_experiment.py [--qb 1e-7,1e-6] [--sb 0.5,1.0] [--hold 0.05]
        [--soc-only] [--baseline] [--runs clean,from07,inject,offset] [--only NAME] [-o runs.jsonl]
    .venv/bin/python scripts/bias_experiment.py --table runs.jsonl [--main SETTING]

Augments the reference EKF (host/bmsfil/reference.py) with a fifth state b,
the current sensor's offset in A (measured = true + b; current positive on
charge), a random walk with process noise q_b (A^2/s) and initial sigma
sigma_b (A). The true current i_meas - b drives SOC, both RC currents, the
hysteresis and the ohmic terms of the voltage, and the Jacobians carry it.
Everything else is the reference EKF with the bundled parameters and tuning.

For every LG HG2 drive cycle and each setting: the clean run from the OCV
of the first sample (RMSE, max after 10 min, share inside +-3 sigma, and the
bias estimate at the end), the run from SOC 0.7 (convergence time), the run
with accuracy_report.py's injection (seed 0, RMSE and x coulomb counter),
the run with only current_offset_A=0.5 (bias estimate and sigma at 10 min
and at the end, when |b| first exceeds 0.25 A), and (--runs offsetneg) the
same with -0.5 A. Results and conclusions: docs/bias_experiment.md. --baseline runs the reference EKF without the bias
state on the same runs. Results go to a JSON-lines file, one record per run;
--table FILE... prints the per-cycle table of docs/bias_experiment.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from shared_data import lg_drive_cycles  # noqa: E402

from bmsfil.core import SocTrace, StepResult  # noqa: E402
from bmsfil.evaluate import score_trace  # noqa: E402
from bmsfil.importers import import_file  # noqa: E402
from bmsfil.inject import SensorErrors  # noqa: E402
from bmsfil.metrics import SETTLE_S  # noqa: E402
from bmsfil.params import bundled_params  # noqa: E402
from bmsfil.reference import (  # noqa: E402
    FLAG_COV_REPAIRED,
    FLAG_DT_INVALID,
    FLAG_GATED,
    FLAG_SOC_CLAMPED,
    P_MAX_HYST,
    P_MAX_SOC,
    R_MIN_REL,
    TEMP_MAX_C,
    TEMP_MIN_C,
    ReferenceSocEstimator,
    repair_covariance,
    sign,
)

INJECT = "current_offset_A=0.1,voltage_noise_V=0.004,temp_offset_C=2"  # as accuracy_report.py
OFFSET = "current_offset_A=0.5"  # issue 7; offsetneg: the same reading low
NXB = 5
B_MAX_A = 2.0          # the bias state is clamped to +-B_MAX_A
P_MAX_B = B_MAX_A**2   # and its variance to B_MAX_A^2
P_FLOOR_B = 1e-8       # (1e-4 A)^2
FLAG_B_A = 0.25        # a candidate flag: |b| above this


class BiasSocEstimator(ReferenceSocEstimator):
    """ReferenceSocEstimator with state [z, i_R1, i_R2, h, b]."""

    def __init__(self, params, q_b: float, sigma_b: float, hold_sigma_soc: float = math.inf,
                 soc_only: bool = False) -> None:
        # soc_only: b corrects only the charge integration; the RC currents,
        # the hysteresis and the ohmic terms see the measured current (the
        # classic coulomb-counter bias state), so b is seen only through OCV(z)
        # hold_sigma_soc: until the SOC's sigma first falls below it, b is
        # left out of the filter (held at 0 with its initial variance and no
        # correlation: the filter is the 4-state reference); then released
        self.q_b, self.sigma_b, self.hold, self.soc_only = q_b, sigma_b, hold_sigma_soc, soc_only
        super().__init__(params)

    def _init(self, soc: float, p_soc: float, temp_C: float) -> None:
        t = self.t
        self.x = np.array([min(max(soc, 0.0), 1.0), 0.0, 0.0, 0.0, 0.0])
        self.P = np.diag([p_soc, t.p0_irc_A2, t.p0_irc_A2, t.p0_hyst, self.sigma_b**2])
        self._repair()
        self.last_current_A = 0.0
        self.last_temp_C = min(max(temp_C, TEMP_MIN_C), TEMP_MAX_C) if math.isfinite(temp_C) else 25.0
        self.hyst_sign = 0.0
        self.released = p_soc <= self.hold * self.hold

    def _repair(self) -> bool:
        t = self.t
        irc_max = self.params.cell.i_max_A**2
        self.P, repaired = repair_covariance(
            self.P, [t.p_floor_soc, t.p_floor_irc_A2, t.p_floor_irc_A2, t.p_floor_hyst, P_FLOOR_B],
            [P_MAX_SOC, irc_max, irc_max, P_MAX_HYST, P_MAX_B])
        return repaired

    def step(self, dt_s: float, current_A: float, voltage_V: float, temp_C: float) -> StepResult:
        cell, t, m, x = self.params.cell, self.t, self.model, self.x
        if not math.isfinite(dt_s) or dt_s < 0 or dt_s > t.dt_max_s:
            return StepResult(x[0], math.sqrt(self.P[0, 0]), 0.0, FLAG_DT_INVALID)
        flags, current_A, temp_C, v_ok = self._sensor_inputs(current_A, voltage_V, temp_C)

        i = current_A - x[4]  # the true current as the filter believes it
        at = m.locate(x[0], temp_C)
        cap_As = m.row("capacity_Ah", at) * 3600.0
        eta = cell.eta_charge if i > 0 else 1.0
        dz = eta * i * dt_s / cap_As
        ddz_db = -eta * dt_s / cap_As
        a1 = math.exp(-dt_s / m.rc("tau1_s", at))
        a2 = math.exp(-dt_s / m.rc("tau2_s", at))
        gamma = m.row("hyst_gamma", at)
        if self.soc_only:  # the other states as in the reference, from the measured current
            i = current_A
            eta_m = cell.eta_charge if i > 0 else 1.0
            ah = math.exp(-abs(eta_m * i * dt_s / cap_As * gamma))
        else:
            ah = math.exp(-abs(dz * gamma))
        s_i = sign(i)
        h_old = x[3]
        # d(ah)/db = -gamma*sign(dz)*ah*ddz_db; d(h')/db = d(ah)/db * (h - sgn(i))
        dh_db = -gamma * sign(dz) * ah * ddz_db * (h_old - s_i)
        x[0] += dz
        x[1] = a1 * x[1] + (1 - a1) * i
        x[2] = a2 * x[2] + (1 - a2) * i
        x[3] = ah * x[3] + (1 - ah) * s_i
        if abs(i) > t.hyst_current_A:
            self.hyst_sign = s_i
        if not 0.0 <= x[0] <= 1.0:
            x[0] = min(max(x[0], 0.0), 1.0)
            flags |= FLAG_SOC_CLAMPED
        F = np.diag([1.0, a1, a2, ah, 1.0])
        F[0, 4] = ddz_db
        if not self.soc_only:
            F[1, 4] = -(1 - a1)
            F[2, 4] = -(1 - a2)
            F[3, 4] = dh_db
        if not self.released:
            F[:4, 4] = 0.0
        self.P = F @ self.P @ F.T
        self.P += np.diag([t.q_soc_per_s, t.q_irc_A2_per_s, t.q_irc_A2_per_s, t.q_hyst_per_s, self.q_b]) * dt_s
        self.P[0, 0] += (t.hold_sigma_c_rate * dt_s / 3600.0) ** 2  # a sampled current, as the reference

        at = m.locate(x[0], temp_C)
        i = current_A if self.soc_only else current_A - x[4]
        ocv, docv = m.ocv(at)
        r0, rn = m.rc("r0_ohm", at), m.row("rn_ohm", at)
        r1, r2, mh = m.rc("r1_ohm", at), m.rc("r2_ohm", at), m.row("hyst_m_V", at)
        ksat = cell.rn_sat_per_A
        eta_V = r0 * i + rn * i / (1.0 + ksat * abs(i)) + r1 * x[1] + r2 * x[2]
        v_pred = ocv + m.row("hyst_m0_V", at) * self.hyst_sign + mh * x[3] + eta_V
        if v_ok:
            # d(rn*i/(1+k|i|))/di = rn/(1+k|i|)^2; di/db = -1
            H = np.array([docv, r1, r2, mh, 0.0 if self.soc_only else -(r0 + rn / (1.0 + ksat * abs(i)) ** 2)])
            if not self.released:
                H[4] = 0.0
            PH = self.P @ H
            hph = float(H @ PH)
            r_meas = (t.r_voltage_V2_s + t.r_overpotential_rel2_s * eta_V * eta_V) / max(dt_s, t.r_dt_min_s)
            r_meas = max(r_meas, R_MIN_REL * hph)
            S = hph + r_meas
            innov = voltage_V - v_pred
            if innov * innov / S > t.gate_sigma**2:
                S = innov * innov / t.gate_sigma**2
                r_meas = S - hph
                flags |= FLAG_GATED
            K = PH / S
            x += K * innov
            A = np.eye(NXB) - np.outer(K, H)
            self.P = A @ self.P @ A.T + r_meas * np.outer(K, K)
            if not 0.0 <= x[0] <= 1.0:
                x[0] = min(max(x[0], 0.0), 1.0)
                flags |= FLAG_SOC_CLAMPED
            x[3] = min(max(x[3], -1.0), 1.0)
        x[1] = min(max(x[1], -cell.i_max_A), cell.i_max_A)
        x[2] = min(max(x[2], -cell.i_max_A), cell.i_max_A)
        x[4] = min(max(x[4], -B_MAX_A), B_MAX_A)
        if not self.released:
            self.P[4, :4] = self.P[:4, 4] = 0.0
            self.P[4, 4] = self.sigma_b**2
        if self._repair():
            flags |= FLAG_COV_REPAIRED
        if not self.released and self.P[0, 0] < self.hold * self.hold:
            self.released = True
        return StepResult(float(x[0]), math.sqrt(self.P[0, 0]), v_pred, flags)

    def run_arrays(self, dt_s, current_A, voltage_V, temp_C) -> SocTrace:
        n = len(dt_s)
        soc, sigma, flags = np.empty(n), np.empty(n), np.empty(n, dtype=np.uint8)
        self.bias, self.bias_sigma = np.empty(n), np.empty(n)
        for k, args in enumerate(zip(dt_s.tolist(), current_A.tolist(), voltage_V.tolist(), temp_C.tolist())):
            r = self.step(*args)
            soc[k], sigma[k], flags[k] = r.soc, r.soc_sigma, r.flags
            self.bias[k], self.bias_sigma[k] = self.x[4], math.sqrt(self.P[4, 4])
        return SocTrace(soc, sigma, flags)


def make(params, setting):
    return ReferenceSocEstimator(params) if setting is None else BiasSocEstimator(params, *setting)


def run_one(rec, params, setting, initial, errors):
    measured = errors.apply(rec, 0) if errors else rec
    est = make(params, setting)
    trace = est.run(measured, initial)
    ev = score_trace(rec, measured, trace, params)
    out = {
        "rmse": ev.score.rmse, "max10": ev.score.max_error_after_settle, "in3s": ev.score.within_3sigma,
        "conv_s": ev.score.convergence_time_s, "cc_rmse": ev.coulomb_score.rmse,
    }
    if setting is not None:
        t = rec.time_s - rec.time_s[0]
        k10 = min(int(np.searchsorted(t, SETTLE_S)), len(t) - 1)
        b, sb = est.bias, est.bias_sigma
        out |= {"b10": b[k10], "sb10": sb[k10], "bend": b[-1], "sbend": sb[-1],
                "bmax_after10": float(np.max(np.abs(b[k10:]))), "zmax_after10": float(np.max(np.abs(b[k10:]) / sb[k10:])),
                "bmax_all": float(np.max(np.abs(b)))}
        over = np.flatnonzero(np.abs(b) > FLAG_B_A)
        out["b_over_flag_at_s"] = float(t[over[0]]) if over.size else math.inf
        if errors is not None and errors.current_offset_A:
            off = errors.current_offset_A
            bad = np.flatnonzero(np.abs(b - off) > 0.1)
            out["within_0.1A_from_s"] = 0.0 if not bad.size else (math.inf if bad[-1] == len(b) - 1 else float(t[bad[-1] + 1]))
            det = np.flatnonzero(np.sign(off) * b / sb > 3.0)
            out["b_over_3sigma_at_s"] = float(t[det[0]]) if det.size else math.inf
    return out


def _pct(v):
    return f"{v * 100:.2f}"


def _secs(v):
    return "never" if not math.isfinite(v) else f"{v:.0f}"


def table(files: list[Path], main_setting: str) -> str:
    """Markdown: the per-cycle table for one setting beside the 4-state
    filter, then one line per setting with the worst cases."""
    rows = [json.loads(line) for f in files for line in open(f)]
    by = {(r["setting"], r["name"], r["run"]): r for r in rows}
    names = list(dict.fromkeys(r["name"] for r in rows))
    settings = list(dict.fromkeys(r["setting"] for r in rows if r["setting"] != "none"))
    out = [
        f"Per cycle, 4-state reference → with the bias state ({main_setting}):",
        "",
        "| recording | T °C | clean RMSE % | max after 10 min % | in ±3σ % | from 0.7: converged s "
        "| injected RMSE % | × coulomb | +0.5 A: b̂ ± σ at 10 min A | at end A | \\|b̂\\| > 0.25 A at s "
        "| SOC RMSE with +0.5 A % | −0.5 A: b̂ at 10 min A | \\|b̂\\| > 0.25 A at s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n in names:
        g = lambda s, run: by.get((s, n, run))  # noqa: E731
        c0, c1 = g("none", "clean"), g(main_setting, "clean")
        if not (c0 and c1):
            continue
        cold = c1["T"] < 0
        f0, f1 = g("none", "from07"), g(main_setting, "from07")
        i0, i1 = g("none", "inject"), g(main_setting, "inject")
        o0, o1 = g("none", "offset"), g(main_setting, "offset")
        n1 = g(main_setting, "offsetneg")
        inj = ("(not required)", "") if cold else (
            f"{_pct(i0['rmse'])} → {_pct(i1['rmse'])}",
            f"{i0['cc_rmse'] / i0['rmse']:.1f} → {i1['cc_rmse'] / i1['rmse']:.1f}")
        out.append("| " + " | ".join([
            n, f"{c1['T']:g}", f"{_pct(c0['rmse'])} → {_pct(c1['rmse'])}",
            f"{_pct(c0['max10'])} → {_pct(c1['max10'])}", f"{c0['in3s'] * 100:.1f} → {c1['in3s'] * 100:.1f}",
            f"{_secs(f0['conv_s'])} → {_secs(f1['conv_s'])}", *inj,
            f"{o1['b10']:+.2f} ± {o1['sb10']:.2f}", f"{o1['bend']:+.2f} ± {o1['sbend']:.2f}",
            _secs(o1["b_over_flag_at_s"]), f"{_pct(o0['rmse'])} → {_pct(o1['rmse'])}",
            f"{n1['b10']:+.2f} ± {n1['sb10']:.2f}" if n1 else "", _secs(n1["b_over_flag_at_s"]) if n1 else "",
        ]) + " |")
    out += [
        "",
        "Every setting tried (worst over the 13 cycles; bars: clean RMSE ≤ 1 % at ≥ 0 °C, ≤ 2 % below; "
        "max ≤ 3 %; ≥ 95 % in ±3σ; from 0.7 converged ≤ 600 s, ≤ 1800 s below 0 °C; injected ≤ 1.5 % and ≥ 3× "
        "coulomb at ≥ 0 °C):",
        "",
        "| setting | clean RMSE % ≥0 °C / <0 °C | max after 10 min % | min in ±3σ % | from 0.7: worst s ≥0 °C / <0 °C "
        "| injected RMSE % worst ≥0 °C | × coulomb min ≥0 °C | +0.5 A: \\|b̂−0.5\\| ≤ 0.1 A at 10 min | +0.5 A: b̂ > 3σ by 10 min "
        "| \\|b̂\\| max clean / injected 0.1 A |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in ["none"] + settings:
        rs = [by.get((s, n, run)) for n in names for run in ("clean",)]
        cl = [r for r in rs if r]
        if not cl:
            continue
        warm = [r for r in cl if r["T"] >= 0]
        cold = [r for r in cl if r["T"] < 0]
        fr = [r for n in names if (r := by.get((s, n, "from07")))]
        inj = [r for n in names if (r := by.get((s, n, "inject"))) and r["T"] >= 0]
        off = [r for n in names if (r := by.get((s, n, "offset")))]
        injall = [r for n in names if (r := by.get((s, n, "inject")))]
        mx = lambda xs, k: max(x[k] for x in xs) if xs else float("nan")  # noqa: E731
        cell = [
            s, f"{_pct(mx(warm, 'rmse'))} / {_pct(mx(cold, 'rmse'))}", _pct(mx(cl, "max10")),
            f"{min(r['in3s'] for r in cl) * 100:.1f}",
            (f"{_secs(mx([r for r in fr if r['T'] >= 0], 'conv_s'))} / {_secs(mx([r for r in fr if r['T'] < 0], 'conv_s'))}"
             if fr else ""),
            _pct(mx(inj, "rmse")) if inj else "", f"{min(r['cc_rmse'] / r['rmse'] for r in inj):.1f}" if inj else "",
        ]
        if s != "none" and off:
            cell += [f"{sum(abs(r['b10'] - 0.5) <= 0.1 for r in off)}/{len(off)}",
                     f"{sum(r['b_over_3sigma_at_s'] <= 600 for r in off)}/{len(off)}",
                     f"{mx(cl, 'bmax_all'):.3f} / {mx(injall, 'bmax_all'):.3f}" if "bmax_all" in cl[0] else
                     f"(after 10 min) {mx(cl, 'bmax_after10'):.3f} / {mx(injall, 'bmax_after10'):.3f}"]
        else:
            cell += ["", "", ""]
        out.append("| " + " | ".join(cell) + " |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--qb", default="1e-6", help="comma-separated q_b values, A^2/s")
    ap.add_argument("--sb", default="0.5", help="comma-separated initial sigma_b values, A")
    ap.add_argument("--hold", type=float, default=math.inf,
                    help="no bias correction while the SOC sigma is above this (fraction); default never")
    ap.add_argument("--soc-only", action="store_true", help="b corrects only the charge integration")
    ap.add_argument("--baseline", action="store_true", help="also run the reference EKF without the bias state")
    ap.add_argument("--runs", default="clean,from07,inject,offset")
    ap.add_argument("--only", default="", help="substring filter on recording names")
    ap.add_argument("--table", nargs="+", type=Path, help="print the Markdown tables from these result files")
    ap.add_argument("--main", default="qb=1e-06,sb=0.5,hold=0.05", help="the setting of the per-cycle table")
    ap.add_argument("-o", "--output", type=Path, default=Path("/tmp/bias_experiment.jsonl"))
    args = ap.parse_args()
    if args.table:
        print(table(args.table, args.main))
        return 0
    params = bundled_params()
    settings = ([None] if args.baseline else []) + [
        (float(q), float(s), args.hold, args.soc_only) for q in args.qb.split(",") if q for s in args.sb.split(",") if s
    ]
    runs = {
        "clean": ("ocv", None), "from07": (0.7, None),
        "inject": ("ocv", SensorErrors.parse(INJECT)), "offset": ("ocv", SensorErrors.parse(OFFSET)),
        "offsetneg": ("ocv", SensorErrors(current_offset_A=-0.5)),
    }
    runs = {k: runs[k] for k in args.runs.split(",")}
    with open(args.output, "a") as fh:
        for path in lg_drive_cycles():
            rec = import_file(path)
            if args.only and args.only not in rec.meta.name:
                continue
            for setting in settings:
                for run, (initial, errors) in runs.items():
                    t0 = time.perf_counter()
                    r = run_one(rec, params, setting, initial, errors)
                    r |= {"name": rec.meta.name, "T": rec.meta.ambient_temp_C, "n": len(rec),
                          "setting": "none" if setting is None else f"qb={setting[0]:g},sb={setting[1]:g}"
                          + (f",hold={setting[2]:g}" if math.isfinite(setting[2]) else "")
                          + (",soc-only" if setting[3] else ""),
                          "run": run, "wall_s": time.perf_counter() - t0}
                    fh.write(json.dumps(r) + "\n")
                    fh.flush()
                    print(json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
