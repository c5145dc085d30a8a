"""Messages for inputs bmsfil does not read as they are: °F, a decimal comma in a comma-separated file,
an Excel workbook; and a °F column converted. Slices of a real drive cycle."""

from __future__ import annotations

import csv
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bmsfil.importers import detect_format, import_file
from bmsfil.recording import RecordingError, RecordingWarning

from shared_data import LG, needs_data

US06_10 = LG / "2_formatted" / "10degC" / "567_US06_parsed.csv"


def us06_rows(n: int = 3000) -> list[list[str]]:
    """Time [min], Voltage [V], Current [A], Temperature [degC], Capacity [Ah] of the first n samples, as written."""
    with open(US06_10, newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        return [row[1:] for _, row in zip(range(n), reader)]


@needs_data
@pytest.mark.parametrize("unit", ["°F", "F", "degF"])
def test_a_fahrenheit_column_is_converted_to_celsius(tmp_path: Path, unit: str) -> None:
    rows = us06_rows()
    celsius = np.array([float(r[3]) for r in rows])
    path = tmp_path / "log.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Time [min]", "Voltage [V]", "Current [A]", f"Temperature [{unit}]"])
        writer.writerows([r[0], r[1], r[2], repr(float(r[3]) * 1.8 + 32)] for r in rows)
    rec = import_file(path)
    np.testing.assert_allclose(rec.temp_C, celsius, atol=1e-9)


@needs_data
def test_a_quoted_decimal_comma_in_a_comma_separated_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    with open(path, "w", newline="") as fh:
        fh.write("Time [min],Voltage [V],Current [A],Temperature [degC]\n")
        fh.writelines(",".join(f'"{cell.replace(".", ",")}"' for cell in r[:4]) + "\n" for r in us06_rows(100))
    with pytest.raises(RecordingError, match=r"log.csv:2: column 'Time \[min\]': expected a number, got '0,0' "
                       r"\(a decimal comma\? .* save the file with ';' as the separator"):
        import_file(path)


def test_a_number_that_is_wrong_otherwise_gets_no_decimal_comma_hint(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("Time [s],Voltage [V],Current [A],Temperature [degC]\n0,4.1,-1,25\n1,abc,-1,25\n")
    with pytest.raises(RecordingError, match=r"expected a number, got 'abc'$"):
        import_file(path)


def test_an_excel_workbook_is_told_to_be_exported_as_csv(tmp_path: Path) -> None:
    xlsx = tmp_path / "book.xlsx"
    with zipfile.ZipFile(xlsx, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    xls = tmp_path / "book.xls"
    xls.write_bytes(bytes.fromhex("D0CF11E0A1B11AE1") + bytes(504))
    for path, what in ((xlsx, r"an Excel workbook \(.xlsx\)"), (xls, r"an Excel 97-2003 workbook \(.xls")):
        for read in (import_file, detect_format):
            with pytest.raises(RecordingError, match=rf"^{path}: {what}.*, not a CSV: export it as CSV"):
                read(path)


@needs_data
def test_a_mistyped_meta_key_warns_with_the_field_it_is_close_to() -> None:
    with pytest.warns(RecordingWarning, match=r"metadata reference_inital_soc='0\.57': not a metadata field, kept "
                      r"in extra and not used; did you mean reference_initial_soc\?"):
        rec = import_file(US06_10, meta={"reference_inital_soc": "0.57"})
    assert rec.meta.reference_initial_soc == 1.0 and rec.meta.extra["reference_inital_soc"] == "0.57"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecordingWarning)
        rec = import_file(US06_10, meta={"operator": "pk", "reference_initial_soc": "0.9"})
    assert rec.meta.extra["operator"] == "pk" and rec.meta.reference_initial_soc == 0.9


def test_a_time_column_that_never_advances_is_refused(tmp_path):
    """All samples at one time (the wrong column mapped as time): refused
    with the file, line and column, not scored."""
    from bmsfil.importers import import_file
    from bmsfil.recording import RecordingError

    src = tmp_path / "constant_time.csv"
    src.write_text("t [s],I [A],U [V],T [degC]\n" + "".join(f"5.0,-1.0,{3.9 - k * 1e-3:.4f},25\n" for k in range(20)))
    with pytest.raises(RecordingError, match=r"constant_time.csv:21: column .t \[s\].: time never advances: all 20 samples"):
        import_file(src, fmt="csv", column_map={"time": "t [s]", "current": "I [A]", "voltage": "U [V]",
                                                "temperature": "T [degC]"})


def test_an_inject_key_given_twice_is_refused():
    from bmsfil.inject import InjectSpecError, SensorErrors

    with pytest.raises(InjectSpecError, match="current_offset_A given twice"):
        SensorErrors.parse("current_offset_A=0.1,current_offset_A=0.2")


def test_a_current_in_amps_under_a_milliamp_header_is_warned_of(tmp_path: Path) -> None:
    """The reverse mistake (mA under [A]) is refused as currents no cell
    carries; this one read a C/20 test's 0.14 A as 0.14 mA in silence, and
    fit then found 'no low-rate discharge'."""
    rows = "".join(f"{k * 60},{-0.14 if k < 190 else 0},{4.2 - 1.6 * k / 200:.4f},25\n" for k in range(200))
    path = tmp_path / "c20.csv"
    path.write_text("Time [s],Current [mA],Voltage [V],Temperature [degC]\n" + rows)
    with pytest.warns(RecordingWarning, match=r"c20\.csv: column 'Current \[mA\]': read in 'mA', it moves 0\.443 mAh "
                                              r"in all, and the voltage swings by 1\.56 V on it"):
        import_file(path)
    # in mA, and the C/20 test of a small cell (46 mA: 0.44 Ah moved) is no mistake
    for current in ("-140,", "-46,"):
        path.write_text("Time [s],Current [mA],Voltage [V],Temperature [degC]\n" + rows.replace("-0.14,", current))
        with warnings.catch_warnings():
            warnings.simplefilter("error", RecordingWarning)
            import_file(path)
