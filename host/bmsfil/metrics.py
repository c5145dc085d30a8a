"""How good a SOC estimate is against the reference: the numbers of DESIGN.md."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: Errors before this are start-up, not tracking (DESIGN.md: "once converged").
SETTLE_S = 600.0
#: "Within 2 points" in DESIGN.md.
CONVERGED_BAND = 0.02


@dataclass(frozen=True)
class SocScore:
    rmse: float                 # fraction (0.01 = 1 point)
    max_error_after_settle: float
    within_3sigma: float        # share of samples with |error| <= 3 sigma
    convergence_time_s: float   # first time after which |error| stays <= 2 points (inf if never)
    final_error: float
    n_samples: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def score_soc(time_s: np.ndarray, soc: np.ndarray, reference: np.ndarray, sigma: np.ndarray | None = None) -> SocScore:
    err = soc - reference
    ok = np.isfinite(err)
    if not ok.any():
        raise ValueError("no sample has both an estimate and a reference")
    abs_err = np.abs(err)
    after = ok & (time_s >= time_s[0] + SETTLE_S)
    outside = np.flatnonzero(ok & (abs_err > CONVERGED_BAND))
    if not outside.size:
        conv = 0.0
    elif outside[-1] == len(err) - 1:
        conv = float("inf")
    else:
        conv = float(time_s[outside[-1] + 1] - time_s[0])
    within = float(np.mean(abs_err[ok] <= 3.0 * sigma[ok])) if sigma is not None else float("nan")
    return SocScore(
        rmse=float(np.sqrt(np.mean(err[ok] ** 2))),
        max_error_after_settle=float(abs_err[after].max()) if after.any() else float("nan"),
        within_3sigma=within,
        convergence_time_s=conv,
        final_error=float(err[ok][-1]),
        n_samples=int(ok.sum()),
    )
