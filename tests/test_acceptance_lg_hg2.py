"""The issue's bar on every LG HG2 drive cycle in the shared data, full length (slow).

These are the numbers of docs/accuracy.md; `scripts/accuracy_report.py` prints
the same table. The bar is DESIGN.md's: RMSE <= 1 % at 0 °C and above, <= 2 %
below; largest error after 10 minutes <= 3 %; >= 95 % of samples inside ±3σ;
from SOC 0.7 within 2 points after 10 minutes (30 below 0 °C); with sensor
errors injected RMSE <= 1.5 % and three times better than coulomb counting.
"""

from __future__ import annotations

import pytest

from bmsfil.evaluate import evaluate
from bmsfil.importers import import_file
from bmsfil.inject import SensorErrors
from bmsfil.params import bundled_params

from shared_data import lg_drive_cycles, needs_data

pytestmark = [pytest.mark.slow, needs_data]

CYCLES = lg_drive_cycles()
INJECT = SensorErrors.parse("current_offset_A=0.1,voltage_noise_V=0.004,temp_offset_C=2")


@pytest.fixture(scope="module", params=CYCLES, ids=[p.name for p in CYCLES])
def recording(request):
    return import_file(request.param)


def cold(rec) -> bool:
    return rec.meta.ambient_temp_C < 0


def test_accuracy_from_ocv(recording):
    s = evaluate(recording, bundled_params()).score
    assert s.rmse <= (0.02 if cold(recording) else 0.01)
    assert s.max_error_after_settle <= 0.03
    assert s.within_3sigma >= 0.95


def test_convergence_from_30_points_off(recording):
    s = evaluate(recording, bundled_params(), initial_soc=0.7).score
    assert s.convergence_time_s <= (1800 if cold(recording) else 600)


#: Known misses of the bar, each explained in docs/accuracy.md. strict: the
#: day one passes, the marker must go.
KNOWN_MISSES = {
    ("injected", "576_HWFET_10degC"): "a 0.1 A current offset on a highway cycle with few stops: "
    "the filter corrects the drift only at rests (2.3x better than coulomb counting, not 3x); "
    "needs the current-offset state of the SOH/virtual-sensor issue",
}


def test_injected_sensor_errors(recording):
    if cold(recording):
        pytest.skip("the bar for injected errors is set at 0 °C and above")
    reason = KNOWN_MISSES.get(("injected", recording.meta.name))
    ev = evaluate(recording, bundled_params(), errors=INJECT, seed=0)
    assert ev.score.rmse <= 0.015
    if reason and ev.coulomb_score.rmse < 3 * ev.score.rmse:
        pytest.xfail(reason)
    assert ev.coulomb_score.rmse >= 3 * ev.score.rmse
    assert not reason, f"known miss {recording.meta.name} now passes: remove it from KNOWN_MISSES"
