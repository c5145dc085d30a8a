"""The figures of `bmsfil eval`: one PNG per recording, a panel per estimate.

Scored recordings (`write_plot`): SOC against the reference and a coulomb
counter, the error with its ±3σ band, then whichever of the other estimates
ran: the plausibility monitor's unseen current against its alarm, capacity
and R0, state of power, core temperature. Recordings without a reference SOC
(a NASA life, a field log: `write_unscored_plot`) get the same panels but the
SOC's without a reference. Long lines are thinned by `envelope`, which keeps
every spike.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bmsfil.core import SocTrace
from bmsfil.plausibility import PlausibilityConfig, PlausibilityTrace

if TYPE_CHECKING:
    from bmsfil.evaluate import Evaluation
    from bmsfil.health import HealthTrace
    from bmsfil.power import PowerTrace
    from bmsfil.thermal import CoreTempTrace

#: Points per plotted line at most: two per column of the figure (1,000
#: pixels wide) keep every bin's lowest and highest value.
PLOT_POINTS = 2000

#: Colour of each plausibility flag's marker.
FLAG_COLOURS = {"current_offset": "tab:red", "self_discharge": "tab:purple", "voltage_stuck": "tab:brown",
                "voltage_range": "tab:gray", "current_range": "tab:olive", "temp_range": "tab:cyan"}


def envelope(y: np.ndarray, points: int = PLOT_POINTS) -> np.ndarray:
    """Indices of y to draw: in each of points // 2 bins its smallest and
    largest value, in time order, so that a line through them looks like the
    full one at the figure's resolution (spikes kept); all of y when short.
    NaN (a gap) is neither smallest nor largest unless the bin has nothing else."""
    n = len(y)
    per = -(-n // max(1, points // 2))  # samples a bin, rounded up: at most points // 2 bins
    if per <= 2:
        return np.arange(n)
    m = n // per * per
    bins = np.asarray(y[:m], dtype=float).reshape(-1, per)
    base = np.arange(0, m, per)
    lo = base + np.argmin(np.where(np.isnan(bins), np.inf, bins), axis=1)
    hi = base + np.argmax(np.where(np.isnan(bins), -np.inf, bins), axis=1)
    return np.unique(np.concatenate([lo, hi, np.arange(m, n)]))


#: An interval this much longer than the median one (and at least GAP_MIN_S)
#: is time nobody recorded (a life's charges): lines break there.
GAP_FACTOR, GAP_MIN_S = 20.0, 600.0


#: Recordings longer than this are drawn against hours instead of minutes.
HOURS_FROM_S = 3 * 3600.0


class TimeAxis:
    """Lines and bands against one time axis (minutes, or hours for a long
    recording), thinned by `envelope`; a quantity that moves while nobody
    records (SOC, temperature) is broken where the recording has a gap, one
    that is held (capacity, R0, the monitor's evidence) is not."""

    def __init__(self, time_s: np.ndarray) -> None:
        t = np.asarray(time_s, dtype=float)
        hours = t.size > 0 and float(t[-1] - t[0]) > HOURS_FROM_S
        self.unit = "h" if hours else "min"
        self.t_min = t / (3600.0 if hours else 60.0)
        dt = np.diff(t)
        limit = max(GAP_MIN_S, GAP_FACTOR * float(np.median(dt))) if dt.size else np.inf
        self.gaps = np.flatnonzero(dt > limit)  # a gap follows each of these samples

    def points(self, k: np.ndarray, *ys: np.ndarray, held: bool = False) -> list[np.ndarray]:
        """t and each y at the samples k, with a NaN between two samples a gap
        separates (none if the quantity is held across gaps)."""
        cols = [self.t_min[k], *(y[k] for y in ys)]
        if held:
            return cols
        # After the j-th of k, a gap if one lies in [k[j], k[j+1]).
        cut = np.flatnonzero(np.searchsorted(self.gaps, k[1:]) > np.searchsorted(self.gaps, k[:-1]))
        return [np.insert(c.astype(float), cut + 1, np.nan) for c in cols] if cut.size else cols

    def line(self, ax: Any, y: np.ndarray, held: bool = False, **style: Any) -> None:
        t, yk = self.points(envelope(y), y, held=held)
        ax.plot(t, yk, **style)

    def band(self, ax: Any, lo: np.ndarray, hi: np.ndarray, held: bool = False, **style: Any) -> None:
        t, lk, hk = self.points(np.union1d(envelope(lo), envelope(hi)), lo, hi, held=held)
        ax.fill_between(t, lk, hk, **style)


Panel = Callable[[Any, TimeAxis], None]


def _soc_panel(trace: SocTrace, title: str, reference: np.ndarray | None = None,
               coulomb: np.ndarray | None = None) -> Panel:
    def draw(ax: Any, d: TimeAxis) -> None:
        soc, sig = trace.soc * 100, trace.soc_sigma * 100
        d.band(ax, soc - 3 * sig, soc + 3 * sig, color="tab:blue", alpha=0.2, label="EKF ±3σ")
        if reference is not None:
            d.line(ax, reference * 100, color="k", lw=1.2, label="reference (cycler Ah)")
        d.line(ax, soc, color="tab:blue", lw=1.0, label="EKF (C core)")
        if coulomb is not None:
            d.line(ax, coulomb * 100, color="tab:orange", lw=0.8, ls="--", label="coulomb counter")
        ax.set_ylabel("SOC / %")
        ax.set_ylim(-5.0, 105.0)  # the band of an unknown start spans far more
        ax.legend(loc="upper right", fontsize=8)
        ax.set_title(title, fontsize=10)
    return draw


def _error_panel(ev: Evaluation) -> Panel:
    def draw(ax: Any, d: TimeAxis) -> None:
        sig = ev.trace.soc_sigma * 100
        err = (ev.trace.soc - ev.reference) * 100
        d.band(ax, -3 * sig, 3 * sig, color="tab:blue", alpha=0.2)
        d.line(ax, err, color="tab:blue", lw=0.8, label="EKF error")
        d.line(ax, (ev.coulomb - ev.reference) * 100, color="tab:orange", lw=0.8, ls="--",
               label="coulomb counter error")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylabel("error / points")
        lim = max(3.0, float(np.nanpercentile(np.abs(err), 99.5)) * 1.3)
        ax.set_ylim(-lim, lim)
        ax.legend(loc="lower left", fontsize=8)
    return draw


def _plausibility_panel(pl: PlausibilityTrace, config: PlausibilityConfig | None = None) -> Panel:
    """The unseen current ± its alarm threshold (z σ_u plus the larger
    tolerance), and a marker where each flag was first raised."""
    cfg = config or PlausibilityConfig()

    def draw(ax: Any, d: TimeAxis) -> None:
        u = np.where(np.isfinite(pl.unseen_current_A), pl.unseen_current_A, np.nan)
        sig = np.where(np.isfinite(pl.unseen_current_sigma_A), pl.unseen_current_sigma_A, np.nan)
        alarm = cfg.unseen_z * sig + max(cfg.offset_tol_A, cfg.leak_tol_A)
        d.band(ax, -alarm, alarm, held=True, color="tab:green", alpha=0.15,
               label=f"no alarm (±{cfg.unseen_z:.2f} σ)")
        d.line(ax, u, held=True, color="tab:green", lw=0.9, label="unseen current (sensor − cell)")
        ax.axhline(0, color="k", lw=0.5)
        seen = u[np.isfinite(u)]
        lim = max(0.1, 1.5 * float(np.percentile(np.abs(seen), 99))) if seen.size else 1.0
        ax.set_ylim(-lim, lim)
        for ev in pl.events():
            x = d.t_min[ev.index]
            ax.axvline(x, color=FLAG_COLOURS.get(ev.flag, "k"), lw=1.0, ls=":")
            ax.annotate(ev.short(), (x, lim), xytext=(2, -10), textcoords="offset points", fontsize=7,
                        color=FLAG_COLOURS.get(ev.flag, "k"), rotation=0, va="top")
        ax.set_ylabel("current / A")
        flags = ", ".join(e.flag for e in pl.events()) or "none"
        ax.set_title(f"plausibility monitor (C core): flags {flags}", fontsize=9)
        ax.legend(loc="lower left", fontsize=7, ncol=2)
    return draw


def _health_panel(h: HealthTrace) -> Panel:
    """Capacity ± 3σ (left axis) and R0 ± 3σ (right axis)."""
    def draw(ax: Any, d: TimeAxis) -> None:
        cap, csig = h.capacity_Ah, h.capacity_sigma_Ah
        d.band(ax, cap - 3 * csig, cap + 3 * csig, held=True, color="tab:blue", alpha=0.15)
        d.line(ax, cap, held=True, color="tab:blue", lw=1.0, label="capacity ±3σ")
        ax.axhline(h.rated_Ah, color="tab:blue", lw=0.5, ls=":", label=f"rated {h.rated_Ah:g} Ah")
        ax.set_ylabel("capacity / Ah", color="tab:blue")
        finite_cap = cap[np.isfinite(cap)]
        last_sigma = float(csig[-1]) if np.isfinite(csig[-1]) else 0.0
        pad = max(3.0 * last_sigma, 0.05 * h.rated_Ah)
        ax.set_ylim(min(float(finite_cap.min(initial=h.rated_Ah)), h.rated_Ah) - pad,
                    max(float(finite_cap.max(initial=h.rated_Ah)), h.rated_Ah) + pad)
        r0 = ax.twinx()
        r, rsig = h.r0_ohm * 1e3, h.r0_sigma_ohm * 1e3
        stepped = h.where("r0_updated")
        if stepped.size:
            d.band(r0, r - 3 * rsig, r + 3 * rsig, held=True, color="tab:red", alpha=0.15)
            d.line(r0, r, held=True, color="tab:red", lw=1.0, label="R0 ±3σ")
            since, spread = r[stepped[0]:], rsig[stepped[0]:]
            since, spread = since[np.isfinite(since)], spread[np.isfinite(spread)]
            if since.size:
                lo, hi = np.percentile(since, [1.0, 99.0])
                pad = max(3.0 * float(np.median(spread)) if spread.size else 0.0, 0.1 * abs(float(np.median(since))))
                if pad > 0.0:
                    r0.set_ylim(lo - pad, hi + pad)
            r0_text = f"R0 {r[-1]:.1f} ± {rsig[-1]:.1f} mΩ"
        else:
            r0_text = "R0: no current step seen, the prior kept"
        r0.set_ylabel("R0 / mΩ", color="tab:red")
        learned = (f"capacity {cap[-1]:.3f} ± {csig[-1]:.3f} Ah at the end (SOH {cap[-1] / h.rated_Ah:.3f})"
                   if h.where("capacity_updated").size else "capacity: no pair of anchors learned, the prior kept")
        ax.set_title(f"state of health (C core): {learned}, {r0_text}", fontsize=9)
        lines = ax.get_legend_handles_labels()
        more = r0.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], loc="lower left", fontsize=7, ncol=3)
    return draw


def _power_panel(pw: PowerTrace) -> Panel:
    def draw(ax: Any, d: TimeAxis) -> None:
        import matplotlib.pyplot as plt

        for k, horizon in enumerate(pw.horizons_s):
            shade = 0.35 + 0.65 * k / max(1, len(pw.horizons_s) - 1)
            scale = 3600.0 if d.unit == "h" else 60.0
            ax.plot(pw.time_s / scale, pw.discharge_W[k], color=plt.cm.Reds(shade), lw=0.9,
                    label=f"discharge, {horizon:g} s")
            ax.plot(pw.time_s / scale, -pw.charge_W[k], color=plt.cm.Greens(shade), lw=0.9,
                    label=f"charge, {horizon:g} s")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylabel("power limit / W")
        ax.set_title("state of power (C core, from the filter's state; charge drawn negative)", fontsize=9)
        ax.legend(loc="lower left", fontsize=7, ncol=3)
    return draw


def _core_temp_panel(ct: CoreTempTrace) -> Panel:
    def draw(ax: Any, d: TimeAxis) -> None:
        core, csig = ct.core_C, ct.core_sigma_C
        d.band(ax, core - 3 * csig, core + 3 * csig, color="tab:red", alpha=0.2)
        d.line(ax, ct.surface_meas_C, color="k", lw=0.8, label="case (measured)")
        d.line(ax, core, color="tab:red", lw=1.0, label="core (C core, ±3σ)")
        ax.set_ylabel("temperature / °C")
        ax.set_title("core temperature (virtual sensor: thermal model and Kalman filter on the case reading)",
                     fontsize=9)
        ax.legend(loc="lower left", fontsize=7)
    return draw


def _save(time_s: np.ndarray, panels: list[tuple[Panel, float]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heights = [h for _, h in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.5 * sum(heights) - 1.0), sharex=True,
                             height_ratios=heights, layout="constrained", squeeze=False)
    d = TimeAxis(time_s)
    for ax, (draw, _) in zip(axes[:, 0], panels):
        draw(ax, d)
    axes[-1, 0].set_xlabel(f"time / {d.unit}")
    tmp = path.with_name(path.stem + ".part.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


def _estimate_panels(pl: PlausibilityTrace | None, health: HealthTrace | None, power: PowerTrace | None,
                     core: CoreTempTrace | None) -> list[tuple[Panel, float]]:
    out: list[tuple[Panel, float]] = []
    if pl is not None:
        out.append((_plausibility_panel(pl), 1.0))
    if health is not None:
        out.append((_health_panel(health), 1.0))
    if power is not None:
        out.append((_power_panel(power), 1.0))
    if core is not None:
        out.append((_core_temp_panel(core), 1.0))
    return out


def write_plot(ev: Evaluation, path: Path) -> Path:
    """A scored evaluation's figure: SOC, its error, and every other estimate the evaluation holds."""
    s = ev.score
    title = (f"{ev.name}: RMSE {s.rmse * 100:.2f} %, max after 10 min {s.max_error_after_settle * 100:.2f} %, "
             f"in ±3σ {s.within_3sigma * 100:.1f} %")
    time_s = ev.recording.time_s
    panels = [(_soc_panel(ev.trace, title, ev.reference, ev.coulomb), 2.0), (_error_panel(ev), 1.0)]
    panels += _estimate_panels(ev.plausibility, ev.health_trace, ev.power, ev.core_temp)
    return _save(time_s, panels, path)


def write_unscored_plot(name: str, time_s: np.ndarray, trace: SocTrace, why: str, pl: PlausibilityTrace | None,
                        health: HealthTrace | None, core: CoreTempTrace | None, path: Path) -> Path:
    """The figure of a recording without a reference SOC: the estimates alone."""
    panels = [(_soc_panel(trace, f"{name}: estimates, not scored ({why.split(':')[0]})"), 2.0)]
    panels += _estimate_panels(pl, health, None, core)
    return _save(time_s, panels, path)

