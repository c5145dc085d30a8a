"""`bmsfil report`: one self-contained HTML page for a parameter set.

Figures (PNG, embedded in the page): the OCV curves with the low-rate tests'
legs and the residual of their average, the model's voltage against each
pulse or dynamic recording (open loop, SOC from the recording's reference),
the parameter maps over SOC and temperature, and, for recordings given to
score, the evaluation plots of `bmsfil eval`. Tables: where the set came from
(its notes: inputs with their sha256, the command, assumptions) and the
scores.

The fit's inputs are found from the set's notes (`<role>_from`: paths and
sha256 prefixes written by `bmsfil fit`) when the files are still there and
unchanged, or given again with the same options as `bmsfil fit`.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from bmsfil.ecm_fit import hysteresis_states, rc_current
from bmsfil.eval_plot import write_plot
from bmsfil.evaluate import Evaluation, evaluate, mismatches
from bmsfil.fit import (
    ROLES,
    FitError,
    FitInputs,
    charge_counter,
    file_sha256,
    initial_soc,
    temperature_of,
)
from bmsfil.held_out import fit_digests, locate_fit_input
from bmsfil.importers.names import output_stem
from bmsfil.ocv import OcvFitError, ocv_from_low_rate
from bmsfil.params import ParameterSet
from bmsfil.recording import Recording, RecordingError
from bmsfil.table_lookup import bilinear

#: Samples plotted per time series at most.
PLOT_POINTS = 4000


@dataclass
class ReportInputs:
    fit: FitInputs = field(default_factory=FitInputs)
    evaluate: list[Recording] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


def inputs_from_notes(params: ParameterSet, load: Callable[[Path], Recording],
                      beside: Path | None = None) -> tuple[FitInputs, list[str]]:
    """The fit's inputs as listed in the set's notes, each checked against its sha256 prefix
    and looked for as `locate_fit_input` says (the fit writes the paths as it was given
    them; `beside` is the parameter file's folder)."""
    found: dict[str, list[Recording]] = {role: [] for role in ROLES}
    notices: list[str] = []
    for role, inputs in fit_digests(params).items():
        for path_text, digest in inputs.items():
            path = locate_fit_input(params, Path(path_text), digest, beside)
            if not path.is_file():
                notices.append(f"{role} input {path} (from the notes) is not there: left out of the figures")
                continue
            if digest and not file_sha256(path).startswith(digest):
                notices.append(f"{role} input {path} changed since the fit (sha256 differs): left out")
                continue
            found[role].append(load(path))
    return FitInputs(**found), notices


def _png(fig) -> str:  # type: ignore[no-untyped-def]
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def model_voltage(params: ParameterSet, rec: Recording, soc: np.ndarray) -> np.ndarray:
    """Terminal voltage of the cell model driven open loop by the recording's
    current and temperature, at the given SOC (the equation bmsfil fit fits)."""
    c = params.cell
    temp = np.where(np.isfinite(rec.temp_C), rec.temp_C, np.nanmedian(rec.temp_C))
    i = np.nan_to_num(rec.current_A)
    dt = rec.dt_s
    z = np.clip(soc, 0.0, 1.0)
    tau1 = bilinear(c.tau1_s, c.temp_C, z, temp)
    tau2 = bilinear(c.tau2_s, c.temp_C, z, temp)
    i1 = rc_current(i, dt, tau1)
    i2 = rc_current(i, dt, tau2)
    kt = np.interp(temp, c.temp_C, np.arange(len(c.temp_C)))
    row = lambda values: np.interp(kt, np.arange(len(c.temp_C)), values)  # noqa: E731
    s, h = hysteresis_states(i, dt, float(np.mean(c.capacity_Ah)), float(np.mean(c.hyst_gamma)))
    return (bilinear(c.ocv_V, c.temp_C, z, temp) + bilinear(c.r0_ohm, c.temp_C, z, temp) * i
            + bilinear(c.r1_ohm, c.temp_C, z, temp) * i1 + bilinear(c.r2_ohm, c.temp_C, z, temp) * i2
            + row(c.hyst_m0_V) * s + row(c.hyst_m_V) * h + row(c.rn_ohm) * i / (1.0 + c.rn_sat_per_A * np.abs(i)))


def recording_soc(params: ParameterSet, rec: Recording) -> np.ndarray:
    """SOC of a fit input as the fit saw it: its start (metadata or rest OCV) plus its charge over the capacity."""
    c = params.cell
    k = int(np.argmin(np.abs(c.temp_C - temperature_of(rec))))
    cap = float(c.capacity_Ah[k])
    soc0, _ = initial_soc(rec, c.ocv_V[k], cap)
    return soc0 + charge_counter(rec) / cap


def _every(n: int) -> slice:
    return slice(None, None, max(1, n // PLOT_POINTS))


def ocv_figure(params: ParameterSet, ocv_recs: list[Recording]) -> str:
    plt = _plt()
    c = params.cell
    fig, (ax, res) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, height_ratios=(2, 1))
    colors = plt.cm.coolwarm(np.linspace(0, 1, len(c.temp_C)))
    for k, t in enumerate(c.temp_C):
        ax.plot(c.ocv_soc * 100, c.ocv_V[k], color=colors[k], lw=1.5, label=f"OCV {t:g} °C")
    for rec in ocv_recs:
        try:
            curve = ocv_from_low_rate(rec)
        except OcvFitError:
            continue
        k = int(np.argmin(np.abs(c.temp_C - temperature_of(rec))))
        ax.plot(curve.soc * 100, curve.discharge_V, ls=":", color=colors[k], lw=1)
        ax.plot(curve.soc * 100, curve.charge_V, ls="--", color=colors[k], lw=1)
        both = 0.5 * (curve.discharge_V + curve.charge_V)
        res.plot(curve.soc * 100, (both - c.ocv_V[k]) * 1e3, color=colors[k], lw=1, label=rec.meta.name)
    ax.set_ylabel("voltage / V")
    ax.set_title("OCV(SOC, T); dotted: low-rate discharge leg, dashed: charge leg", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    res.axhline(0, color="k", lw=0.5)
    res.set_ylabel("legs' mean − OCV / mV")
    res.set_xlabel("SOC / %")
    if ocv_recs:
        res.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def voltage_figure(params: ParameterSet, rec: Recording) -> tuple[str, float]:
    """Measured against model voltage for one recording; returns the PNG and the RMS residual."""
    plt = _plt()
    soc = recording_soc(params, rec)
    v_model = model_voltage(params, rec, soc)
    ok = np.isfinite(rec.voltage_V) & (soc >= 0) & (soc <= 1)
    resid = (v_model - rec.voltage_V)[ok]
    rms = float(np.sqrt(np.mean(resid**2))) if resid.size else float("nan")
    sl = _every(len(rec))
    t_h = rec.time_s[sl] / 3600.0
    fig, (ax, res) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True, height_ratios=(2, 1))
    ax.plot(t_h, rec.voltage_V[sl], color="k", lw=0.8, label="measured")
    ax.plot(t_h, v_model[sl], color="tab:red", lw=0.8, label="model (open loop, reference SOC)")
    ax.set_ylabel("voltage / V")
    ax.set_title(f"{rec.meta.name} ({temperature_of(rec):g} °C): residual {rms * 1e3:.1f} mV rms", fontsize=10)
    ax.legend(fontsize=8)
    res.plot(t_h, (v_model - rec.voltage_V)[sl] * 1e3, color="tab:red", lw=0.6)
    res.axhline(0, color="k", lw=0.5)
    res.set_ylabel("model − measured / mV")
    res.set_xlabel("time / h")
    fig.tight_layout()
    return _png(fig), rms


def maps_figure(params: ParameterSet) -> str:
    plt = _plt()
    c = params.cell
    colors = plt.cm.coolwarm(np.linspace(0, 1, len(c.temp_C)))
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for ax, (name, table, scale, unit) in zip(axes.flat, (
        ("R0", c.r0_ohm, 1e3, "mΩ"), ("R1", c.r1_ohm, 1e3, "mΩ"), ("R2", c.r2_ohm, 1e3, "mΩ"),
        ("τ1", c.tau1_s, 1.0, "s"), ("τ2", c.tau2_s, 1.0, "s"),
    )):
        for k, t in enumerate(c.temp_C):
            ax.plot(c.rc_soc * 100, table[k] * scale, color=colors[k], marker=".", lw=1, label=f"{t:g} °C")
        ax.set_title(f"{name} / {unit}", fontsize=10)
        ax.set_xlabel("SOC / %")
    axes[0, 0].legend(fontsize=7)
    ax = axes[1, 2]
    ax.plot(c.temp_C, c.capacity_Ah, marker="o", label="capacity / Ah")
    ax.plot(c.temp_C, c.hyst_m_V * 100, marker="s", label="hysteresis M / 10 mV")
    ax.plot(c.temp_C, c.rn_ohm * 100, marker="^", label="Rn / 10 mΩ")
    ax.set_xlabel("T / °C")
    ax.legend(fontsize=7)
    ax.set_title("per temperature", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _table(head: list[str], rows: list[list[str]]) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows]
    return "\n".join(out) + "</table>"


def _pct(x: float) -> str:
    return f"{x * 100:.2f}" if np.isfinite(x) else "—"


def build_report(params: ParameterSet, inputs: ReportInputs, progress: Callable[[str], None] | None = None) -> str:
    """The HTML page (a str, every figure inside it)."""
    say = progress or (lambda _msg: None)
    parts = [f"<h1>{html.escape(params.name)}</h1>"]
    c = params.cell
    parts.append(_table(["field", "value"], [
        ["temperatures / °C", ", ".join(f"{t:g}" for t in c.temp_C)],
        ["capacity / Ah", ", ".join(f"{q:.4f}" for q in c.capacity_Ah)],
        ["voltage limits / V", f"{c.v_min_V:g} to {c.v_max_V:g}"],
        ["OCV points, RC points", f"{c.ocv_V.shape[1]}, {c.r0_ohm.shape[1]}"],
    ] + [[k, v] for k, v in params.notes.items()]))
    if inputs.notices:
        parts.append("<h2>Notices</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in inputs.notices) + "</ul>")
    say("OCV figure")
    parts += ["<h2>Open-circuit voltage</h2>", _img(ocv_figure(params, inputs.fit.ocv), "OCV")]
    dyn = inputs.fit.pulse + inputs.fit.dynamic
    if dyn:
        parts.append("<h2>Model voltage against the pulse and dynamic recordings</h2>")
        rows = []
        for rec in dyn:
            say(f"voltage fit of {rec.meta.name}")
            try:
                png, rms = voltage_figure(params, rec)
            except FitError as exc:
                parts.append(f"<p>{html.escape(str(exc))}</p>")
                continue
            parts.append(_img(png, rec.meta.name))
            rows.append([rec.meta.name, f"{temperature_of(rec):g}", f"{rms * 1e3:.1f}"])
        parts.insert(len(parts) - len(rows), _table(["recording", "T / °C", "residual / mV rms"], rows))
    say("parameter maps")
    parts += ["<h2>Parameters over SOC and temperature</h2>", _img(maps_figure(params), "parameter maps")]
    if inputs.evaluate:
        parts.append("<h2>Evaluation (SOC EKF, C core, against the reference SOC)</h2>")
        evals: list[tuple[Evaluation, list[str]]] = []
        for rec in inputs.evaluate:
            say(f"evaluating {rec.meta.name}")
            # As eval warns: a reversed current, a set of another cell or temperature, gaps under load.
            warned = mismatches(rec, params)
            inputs.notices += [f"warning: {w}" for w in warned]
            try:
                evals.append((evaluate(rec, params, "ocv", checks=False), warned))
            except RecordingError as exc:  # no reference SOC, say: the page says so and goes on
                notice = f"{rec.meta.name} not evaluated: {exc}"
                inputs.notices.append(notice)
                parts.append(f"<p>{html.escape(notice)}</p>")
        parts.append(_table(
            ["recording", "T / °C", "RMSE %", "max >10 min %", "in ±3σ %", "coulomb counter RMSE %", "warnings"],
            [[e.name, f"{e.recording.meta.ambient_temp_C}", _pct(e.score.rmse), _pct(e.score.max_error_after_settle),
              f"{e.score.within_3sigma * 100:.1f}", _pct(e.coulomb_score.rmse), "; ".join(warned) or "none"]
             for e, warned in evals]))
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            for e, _ in evals:
                path = write_plot(e, Path(tmp) / f"{output_stem(e.name)}.png")
                parts.append(_img(base64.b64encode(path.read_bytes()).decode("ascii"), e.name))
    style = ("body{font-family:sans-serif;max-width:1150px;margin:auto}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #bbb;padding:2px 8px;text-align:left;font-size:90%}img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(params.name)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def with_fit_inputs(base: FitInputs, extra: FitInputs) -> FitInputs:
    """The inputs found from the notes plus those given on the command line."""
    return replace(base, **{role: getattr(base, role) + getattr(extra, role) for role in ROLES})
