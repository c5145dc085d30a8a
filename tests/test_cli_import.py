"""`bmsfil import`: tester files to canonical recordings and back, from the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bmsfil.cli import main
from bmsfil.evaluate import evaluate
from bmsfil.importers import import_file
from bmsfil.params import bundled_params
from bmsfil.recording import Recording

from shared_data import LG, needs_data


@needs_data
def test_import_lg_raw_round_trip(tmp_path: Path):
    src = LG / "1_raw" / "n10degC" / "601_US06.csv"
    out = tmp_path / "601.npz"
    assert main(["import", str(src), "-o", str(out)]) == 0
    rec, direct = Recording.load(out), import_file(src)
    assert rec.meta == direct.meta
    for name in ("time_s", "current_A", "voltage_V", "temp_C", "ah"):
        assert np.array_equal(getattr(rec, name), getattr(direct, name))
    assert rec.meta.ambient_temp_C == -10 and rec.meta.reference_capacity_Ah == pytest.approx(2.5637)


def test_import_generic_csv_with_map_units_and_sign(tmp_path: Path):
    src = tmp_path / "tester.csv"
    rows = ["t (min);I [mA];U [mV];T [degC]"] + [f"{k / 60:.6f};{1500 if k < 50 else 0};{3700 - k};25" for k in range(100)]
    src.write_text("\n".join(rows) + "\n")
    out = tmp_path / "t.npz"
    argv = ["import", str(src), "--map", "time=t (min),current=I [mA],voltage=U [mV],temperature=T [degC]",
            "--current-sign", "discharge-positive", "--meta", "cell_id=X1", "-o", str(out)]
    assert main(argv) == 0
    rec = Recording.load(out)
    assert rec.time_s[1] == pytest.approx(1.0, abs=1e-3)
    assert rec.current_A[0] == pytest.approx(-1.5)  # discharge-positive mA -> charge-positive A
    assert rec.voltage_V[0] == pytest.approx(3.7)
    assert rec.meta.cell_id == "X1"


@pytest.mark.parametrize("meta, message", [
    ("reference_initial_soc=80", "expected a SOC in [0, 1], got '80' (a percentage? write 0.8 for 80 %)"),
    ("reference_capacity_Ah=-2.78", "reference_capacity_Ah: expected a capacity above 0 Ah"),
    ("nominal_capacity_Ah=inf", "nominal_capacity_Ah: expected a capacity above 0 Ah"),
    ("reference_capacity_Ah=2648.8", "reference_capacity_Ah: expected a capacity in Ah, up to 1000, got '2648.8' "
                                     "(mAh? write 2.6488 for 2648.8 mAh)"),
    ("ambient_temp_C=2000", "ambient_temp_C: expected a temperature in [-80, 150] °C, got '2000'"),
    ("ambient_temp_C=nan", "ambient_temp_C: expected a temperature in [-80, 150] °C, got 'nan'"),
])
def test_metadata_no_cell_can_have_is_refused_at_import(tmp_path: Path, capsys, meta: str, message: str):
    """A --meta value no cell can have is refused where it is given, naming the
    field: accepted, it made a file bmsfil's own loader refused (2000 °C as the
    constant temperature) or a score blamed on the wrong cause (SOC 80)."""
    src = tmp_path / "tester.csv"
    src.write_text("Time [s],Current [A],Voltage [V],Temperature [degC]\n"
                   + "".join(f"{k},-1.0,{3.9 - k * 1e-3:.4f},25\n" for k in range(50)))
    assert main(["import", str(src), "--meta", meta, "-o", str(tmp_path / "x.npz")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_import_error_names_the_unit_it_suggests(tmp_path: Path, capsys):
    src = tmp_path / "nounits.csv"
    src.write_text("t;I;U;T\n" + "".join(f"{k};{1500};{3700};25\n" for k in range(20)))
    assert main(["import", str(src), "--map", "time=t,current=I,voltage=U,temperature=T", "-o", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert "nounits.csv:1: column 'I'" in err and "[mA]" in err
    assert not (tmp_path / "x.npz").exists()


def test_nan_in_the_middle_is_flagged_and_skipped(tmp_path: Path):
    from bmsfil.bundled import bundled_recording

    rec = bundled_recording().slice(0, 6000)
    broken = rec.voltage_V.copy()
    broken[1000:1010] = np.nan
    broken[2000] = 1e6
    from dataclasses import replace

    clean = evaluate(rec, bundled_params())
    dirty = evaluate(replace(rec, voltage_V=broken), bundled_params())
    assert dirty.flagged_samples == 11
    assert abs(dirty.trace.soc[-1] - clean.trace.soc[-1]) < 0.002
    assert np.all(np.isfinite(dirty.trace.soc))


def test_a_map_or_meta_key_given_twice_with_two_values_is_refused(tmp_path: Path, capsys) -> None:
    """`--map current=I --map current=Current` used the last one in silence."""
    src = tmp_path / "x.csv"
    src.write_text("Time [s],I [A],Current [A],U [V],Temp [degC]\n0,-1,-1,3.9,25\n1,-1,-1,3.9,25\n")
    argv = ["import", str(src), "--map", "time=Time,current=I,voltage=U,temperature=Temp", "-o",
            str(tmp_path / "o.npz")]
    assert main([*argv, "--map", "current=Current"]) == 2
    assert "--map: current given twice, as 'I' and as 'Current': which one?" in capsys.readouterr().err
    assert main([*argv, "--meta", "cell_id=A", "--meta", "cell_id=B"]) == 2
    assert "--meta: cell_id given twice" in capsys.readouterr().err
    assert main([*argv, "--map", "current=I"]) == 0, "the same value twice is no contradiction"
