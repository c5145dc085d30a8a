"""`bmsfil tune`: the settings its search leaves at a bound of SEARCH_SPACE are named."""

from __future__ import annotations

from pathlib import Path

import pytest

import bmsfil.cli as cli
from bmsfil.bundled import bundled_recording
from bmsfil.params import bundled_params
from bmsfil.tuning import SEARCH_SPACE, at_search_bounds


def test_settings_at_a_bound_in_the_log_scale():
    mid = {name: (low * high) ** 0.5 for name, (low, high) in SEARCH_SPACE.items()}
    assert at_search_bounds(bundled_params().with_filter(**mid).filter) == []
    # r_overpotential_rel2_s spans 1e-3..1e2, 5 decades: 1 % of it is 0.05 decades (x1.12).
    near = mid | {"r_overpotential_rel2_s": 100.0 / 1.1, "p_floor_soc": 1e-5 * 1.01}
    assert at_search_bounds(bundled_params().with_filter(**near).filter) == [
        ("r_overpotential_rel2_s", pytest.approx(100.0 / 1.1), 100.0, "upper"),
        ("p_floor_soc", pytest.approx(1.01e-5), 1e-5, "lower"),
    ]
    apart = mid | {"r_overpotential_rel2_s": 100.0 / 1.2}
    assert at_search_bounds(bundled_params().with_filter(**apart).filter) == []


def test_limits_by_design_are_not_pinned_settings():
    """The bundled tuning sits at the upper bounds of p0_soc (an unknown
    start, sigma 0.5) and p_floor_soc (the 1 % floor) by design: every tune
    from it would warn of them."""
    tuning = bundled_params().filter
    assert (tuning.p0_soc, tuning.p_floor_soc) == (SEARCH_SPACE["p0_soc"][1], SEARCH_SPACE["p_floor_soc"][1])
    assert at_search_bounds(tuning) == []


def test_tune_warns_of_a_setting_left_at_its_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]):
    def pinned(params, recs, **kwargs):  # the red team's runs: always at the top of its range
        return params.with_filter(r_overpotential_rel2_s=100.0), 0.5

    monkeypatch.setattr(cli, "tune_filter", pinned)
    train = bundled_recording().slice(0, 600).save(tmp_path / "train.npz")
    assert cli.main(["tune", "--params", "lg-hg2", "--train", str(train), "--iterations", "1",
                     "-o", str(tmp_path / "t.json")]) == 0
    err = capsys.readouterr().err
    assert "bmsfil tune: warning: r_overpotential_rel2_s ended at 100, at the upper bound 100" in err
    assert "r_voltage_V2_s ended" not in err
