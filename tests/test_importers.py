"""Importers: known answers from the recorded data, a corpus of broken files, round trips.

The recorded data is found at $BMSFIL_DATA, else at ../shared/data beside the
repository; the tests that need it are skipped when it is absent.
"""

from __future__ import annotations

import csv
import gzip
import os
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmsfil.importers import FORMATS, detect_format, import_cycles, import_file, load_any, nasa_pcoe
from bmsfil.importers.units import conversion, split_unit
from bmsfil.recording import Recording, RecordingError, RecordingWarning

DATA = Path(os.environ.get("BMSFIL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
BAD = Path(__file__).parent / "data" / "bad"

needs_data = pytest.mark.skipif(
    not (DATA / "lg_hg2").is_dir(), reason=f"recorded data not found at {DATA} (set BMSFIL_DATA)"
)

LG = DATA / "lg_hg2"
RAW_US06_N10 = LG / "1_raw" / "n10degC" / "601_US06.csv"
RAW_CAP_25 = LG / "1_raw" / "25degC" / "551_Cap_1C.csv"
FORMATTED_US06_0 = LG / "2_formatted" / "0degC" / "589_US06_parsed.csv"
HPPC_25 = LG / "2_formatted" / "25degC" / "549_HPPC_parsed.csv"
PROCESSED_UDDS_N20 = LG / "3_processed_csv" / "n20degC" / "610_UDDS.csv.gz"
NASA_B0005 = DATA / "nasa_pcoe" / "B0005_discharge_timeseries.csv"
NASA_B0007 = DATA / "nasa_pcoe" / "B0007_discharge_timeseries.csv"
NASA_METADATA = DATA / "nasa_pcoe" / "metadata.csv"

FORMATTED_HEADER = "Timestamp,Time [min],Voltage [V],Current [A],Temperature [degC],Capacity [Ah]\n"
FORMATTED_ROWS = (
    "2018-11-30 19:02:42,0.0,4.18632,-0.04597,-0.63095,-0.0\n"
    "2018-11-30 19:02:42,0.0015833,4.18396,-0.07918,-0.63095,-0.0\n"
    "2018-11-30 19:02:42,0.0032833,4.18211,-0.08173,-0.63095,-0.00001\n"
)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def assert_same(a: Recording, b: Recording) -> None:
    assert a.meta == b.meta
    for field in ("time_s", "current_A", "voltage_V", "temp_C"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    if a.ah is None:
        assert b.ah is None
    else:
        np.testing.assert_array_equal(a.ah, b.ah)


# --- the recorded data -------------------------------------------------------


@needs_data
@pytest.mark.parametrize(
    "path, fmt",
    [
        (RAW_US06_N10, "lg-hg2-raw"),
        (FORMATTED_US06_0, "lg-hg2-formatted"),
        (PROCESSED_UDDS_N20, "lg-hg2-processed"),
        (NASA_B0005, "nasa-pcoe"),
    ],
)
def test_detects_each_layout_of_the_data(path: Path, fmt: str) -> None:
    assert detect_format(path) == fmt


@needs_data
def test_raw_export_known_values() -> None:
    rec = import_file(RAW_US06_N10)
    assert rec.voltage_V[0] == 4.18582
    assert rec.current_A[0] == -0.03576
    assert rec.time_s[0] == 0.0
    assert rec.time_s[1] == pytest.approx(0.102, abs=1e-9)
    assert rec.ah is not None and rec.ah[0] == 0.0 and rec.ah[-1] < -2.0
    meta = rec.meta
    assert meta.name == "601_US06_n10degC"
    assert meta.ambient_temp_C == -10.0
    assert meta.reference_capacity_Ah == 2.5637
    assert meta.reference_initial_soc == 1.0
    assert meta.cell_id == "LG HG2 18650_SN62A4"  # the header's Battery Name
    assert meta.chemistry == "NMC/graphite"
    assert meta.nominal_capacity_Ah == 3.0
    assert meta.test == "US06"
    assert "cp3473x7xv" in meta.source
    assert meta.extra["measurement_id"] == "601"


@needs_data
@pytest.mark.parametrize("stem", ["589_US06_parsed", "589_US06_mid_parsed"])
def test_formatted_file_cut_mid_cycle_keeps_the_counters_origin(tmp_path: Path, stem: str) -> None:
    """A drive cycle cut mid-discharge: its reference at the cut is the whole cycle's there."""
    lines = FORMATTED_US06_0.read_text().splitlines(keepends=True)
    cut = 15000  # a data row, ~1.4 Ah into the discharge
    folder = tmp_path / "0degC"
    folder.mkdir()
    part = write(folder / f"{stem}.csv", lines[0] + "".join(lines[cut : cut + 2000]))
    whole, cut_rec = import_file(FORMATTED_US06_0), import_file(part)
    k = cut - 1  # sample index of file line cut + 1
    assert whole.ah is not None and whole.ah[k] < -1.0
    assert cut_rec.reference_soc()[0] == pytest.approx(whole.reference_soc()[k], abs=1e-12)
    np.testing.assert_allclose(cut_rec.reference_soc(), whole.reference_soc()[k : k + 2000], atol=1e-12)
    assert cut_rec.meta.reference_initial_soc == pytest.approx(1 + whole.ah[k] / 2.5986)
    assert "starts after its drive cycle did" in cut_rec.meta.extra["reference_start"]
    assert "reference_start" not in whole.meta.extra


@needs_data
def test_raw_export_cut_in_its_drive_profile_keeps_the_counters_origin(tmp_path: Path) -> None:
    lines = RAW_US06_N10.read_bytes().split(b"\r\n")
    first = next(i for i, line in enumerate(lines) if line.startswith(b"Time Stamp,")) + 2  # after the units row
    k = 12000  # samples into the TABLE step, ~0.96 Ah discharged
    folder = tmp_path / "n10degC"
    folder.mkdir()
    part = folder / RAW_US06_N10.name
    part.write_bytes(b"\r\n".join(lines[:first] + lines[first + k : first + k + 3000]) + b"\r\n")
    whole, cut_rec = import_file(RAW_US06_N10), import_file(part)
    assert whole.ah is not None and whole.ah[k] < -0.9
    np.testing.assert_allclose(cut_rec.reference_soc(), whole.reference_soc()[k : k + 3000], atol=1e-12)
    assert "reference_start" in cut_rec.meta.extra and "reference_start" not in whole.meta.extra


@needs_data
def test_raw_test_whose_start_is_not_stated_has_no_initial_soc() -> None:
    meta = import_file(RAW_CAP_25).meta
    assert meta.test == "Cap_1C"
    assert meta.reference_initial_soc is None
    assert meta.reference_capacity_Ah == 2.7807


@needs_data
def test_formatted_known_values() -> None:
    rec = import_file(FORMATTED_US06_0)
    meta = rec.meta
    assert meta.name == "589_US06_0degC"
    assert meta.reference_capacity_Ah == 2.5986
    assert meta.ambient_temp_C == 0.0
    assert meta.reference_initial_soc == 1.0
    assert meta.cell_id == "LG INR18650HG2"
    assert meta.test == "US06"
    assert rec.voltage_V[0] == 4.18632
    assert rec.time_s[1] == pytest.approx(0.001583333333352736 * 60)
    assert rec.ah is not None and rec.ah[0] == 0.0
    soc = rec.reference_soc()
    assert soc[0] == 1.0 and 0.05 < soc[-1] < 0.15


@needs_data
def test_import_of_a_drive_cycle_is_fast() -> None:
    start = time.perf_counter()
    rec = import_file(FORMATTED_US06_0)
    assert len(rec) > 30_000
    assert time.perf_counter() - start < 1.0


@needs_data
def test_processed_file_never_exposes_soc_or_ocv() -> None:
    rec = import_file(PROCESSED_UDDS_N20)
    assert rec.meta.name == "610_UDDS_n20degC"
    assert rec.voltage_V[0] == 4.18312  # not the OCV column's 4.07474
    assert rec.ah is not None and rec.ah[0] == 0.0
    assert not any("soc" in key.lower() for key in rec.meta.extra)
    assert "ignored_columns" in rec.meta.extra


@needs_data
def test_hppc_repeated_timestamps_are_allowed() -> None:
    rec = import_file(HPPC_25)
    steps = np.diff(rec.time_s)
    assert (steps >= 0).all() and (steps == 0).any()


@needs_data
def test_nasa_cycles_match_the_file_and_nasa_capacity() -> None:
    with open(NASA_B0005, newline="") as fh:
        cycle_column = [row["cycle_idx"] for row in csv.DictReader(fh)]
    n_cycles = len(dict.fromkeys(cycle_column))
    cycles = import_cycles(NASA_B0005)
    assert len(cycles) == n_cycles == 168
    assert sum(len(c) for c in cycles) == len(cycle_column)
    first = cycles[0]
    assert first.meta.name == "B0005_c001"
    assert first.meta.reference_initial_soc is None
    assert first.meta.nominal_capacity_Ah == 2.0
    assert first.meta.ambient_temp_C == 24.0
    assert first.time_s[0] == 0.0
    with open(NASA_METADATA, newline="") as fh:
        capacities = [
            float(row["Capacity"])
            for row in csv.DictReader(fh)
            if row["battery_id"] == "B0005" and row["type"] == "discharge"
        ]
    assert first.ah is not None
    assert -first.ah[-1] == pytest.approx(capacities[0], abs=0.03)
    worst = max(abs(-c.ah[-1] - q) for c, q in zip(cycles, capacities) if c.ah is not None)
    assert worst < 0.03


@needs_data
def test_nasa_file_as_one_recording_keeps_cycle_starts() -> None:
    rec = import_file(NASA_B0005)
    starts = [int(s) for s in rec.meta.extra["cycle_starts"].split(",")]
    assert len(starts) == 168 and starts[0] == 0
    assert rec.ah is None  # the charges between discharges are not in the file
    assert (np.diff(rec.time_s) > 0).all()
    # Each discharge starts when metadata.csv says it did (relative to the
    # first): the unrecorded charge between is a gap of hours or days.
    began = [row[2] for row in nasa_pcoe._metadata(NASA_B0005, "B0005", list(range(1, 169)))]
    for k, start in enumerate(starts):
        assert rec.time_s[start] == pytest.approx(began[k] - began[0], abs=1e-6)
    gaps = rec.time_s[starts[1:]] - rec.time_s[np.array(starts[1:]) - 1]
    assert gaps.min() > 3 * 3600 and gaps.max() < 14 * 86400


@needs_data
def test_nasa_life_without_metadata_has_unobserved_gaps(tmp_path: Path) -> None:
    copy = tmp_path / NASA_B0005.name
    copy.write_bytes(NASA_B0005.read_bytes())
    with pytest.warns(RecordingWarning, match=r"no metadata\.csv of the data set beside it: its ambient temperature "
                                              r"is not known \(bmsfil takes 24 °C.* with 3 h between them"):
        rec = import_file(copy)
    starts = np.array([int(s) for s in rec.meta.extra["cycle_starts"].split(",")])
    gaps = rec.time_s[starts[1:]] - rec.time_s[starts[1:] - 1]
    assert np.allclose(gaps, nasa_pcoe.UNOBSERVED_GAP_S)
    assert rec.meta.ambient_temp_C == nasa_pcoe.AMBIENT_C
    (tmp_path / "metadata.csv").write_text("type,battery_id,ambient_temperature,Capacity\ndischarge,B0018,24,1.8\n")
    with pytest.warns(RecordingWarning, match=r"metadata\.csv lists no discharge of B0005: its ambient temperature"):
        import_file(copy)


@needs_data
def test_nasa_file_of_some_discharges_finds_them_in_the_metadata(tmp_path: Path) -> None:
    """Every 10th discharge of B0005, metadata.csv beside it: each keeps its
    own row of the metadata (by cycle_idx), not the first rows of the list."""
    with open(NASA_B0005, newline="") as fh:
        rows = list(csv.DictReader(fh))
    keep = [r for r in rows if int(r["cycle_idx"]) % 10 == 1]
    subset = tmp_path / NASA_B0005.name
    with open(subset, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(keep)
    (tmp_path / NASA_METADATA.name).write_bytes(NASA_METADATA.read_bytes())
    with open(NASA_METADATA, newline="") as fh:
        capacities = [float(r["Capacity"]) for r in csv.DictReader(fh)
                      if r["battery_id"] == "B0005" and r["type"] == "discharge"]
    cycles = import_cycles(subset)
    assert [c.meta.extra["cycle_idx"] for c in cycles] == [str(n) for n in range(1, 169, 10)]
    for c in cycles:
        n = int(c.meta.extra["cycle_idx"])
        assert float(c.meta.extra["nasa_capacity_Ah"]) == capacities[n - 1]
    # a file whose cycles the metadata does not list: said, and left out
    with open(subset, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "cycle_idx": str(int(r["cycle_idx"]) + 1000)} for r in keep)
    with pytest.warns(RecordingWarning, match="lists 168 discharges of B0005"):
        cycles = import_cycles(subset)
    assert "nasa_capacity_Ah" not in cycles[0].meta.extra


@needs_data
def test_round_trip_through_the_canonical_format(tmp_path: Path) -> None:
    rec = import_file(RAW_US06_N10)
    saved = rec.save(tmp_path / "601.npz")
    assert detect_format(saved) == "bmsfil"
    assert_same(rec, Recording.load(saved))
    assert_same(rec, load_any(saved))
    assert_same(rec, import_file(saved, fmt="bmsfil"))


# --- the corpus of broken files ----------------------------------------------

# file -> (line, column) that the message must name; None where neither applies.
EXPECTED_LOCATION: dict[str, tuple[int | None, str | None]] = {
    "binary.csv": (None, None),
    "empty.csv": (None, None),
    "empty_column.csv": (1, "Temperature [degC]"),
    "empty_time_cell.csv": (3, "Time [s]"),
    "header_only.csv": (None, None),
    "kelvin_labelled_celsius.csv": (1, "Temperature [degC]"),
    "millivolts_labelled_volts.csv": (1, "Voltage [V]"),
    "misnamed_column.csv": (8, "Temperature"),
    "nasa_cycles_out_of_order.csv": (4, "cycle_idx"),
    "no_units.csv": (1, "time"),
    "short_row_in_middle.csv": (3, "Temperature [degC]"),
    "swapped_voltage_current.csv": (4, "Voltage [V]"),
    "text_in_number.csv": (5, "Voltage [V]"),
    "time_backwards.csv": (5, "Time [s]"),
    "truncated.csv": (7, "Current [A]"),
    "truncated_gzip.csv.gz": (None, None),
    "unrecognised_columns.csv": (None, None),
}
# A word of what each message must say.
EXPECTED_WORDS = {
    "binary.csv": "not a text CSV",
    "empty.csv": "empty",
    "empty_column.csv": "no values",
    "header_only.csv": "no data rows",
    "kelvin_labelled_celsius.csv": "kelvin",
    "millivolts_labelled_volts.csv": "mV",
    "misnamed_column.csv": "'Temperatur'",  # among the columns found
    "nasa_cycles_out_of_order.csv": "in order",
    "swapped_voltage_current.csv": "swapped",
    "text_in_number.csv": "expected a number, got 'abc'",
    "time_backwards.csv": "backwards",
    "truncated.csv": "truncated",
    "truncated_gzip.csv.gz": "truncated",
    "unrecognised_columns.csv": "--map",
}
BROKEN = sorted(p.name for p in BAD.iterdir() if not p.name.startswith("works_") and p.suffix != ".md")


def test_every_broken_file_has_an_expectation() -> None:
    assert set(BROKEN) == set(EXPECTED_LOCATION)


@pytest.mark.parametrize("name", BROKEN)
def test_broken_file_fails_with_a_located_message(name: str) -> None:
    with pytest.raises(RecordingError) as info:
        import_file(BAD / name)
    message = str(info.value)
    line, column = EXPECTED_LOCATION[name]
    assert name in message
    if line is not None:
        assert f"{name}:{line}:" in message
    if column is not None:
        assert repr(column) in message
    assert EXPECTED_WORDS.get(name, "") in message


def test_latin1_file_with_a_degree_sign_imports() -> None:
    rec = import_file(BAD / "works_latin1_degree_sign.csv")
    np.testing.assert_array_equal(rec.temp_C, [25.1, 25.1, 25.2])
    assert "Temp [°C]" in rec.meta.extra["columns"]


# --- generic CSV --------------------------------------------------------------


def test_column_map_with_units_and_sign(tmp_path: Path) -> None:
    path = write(
        tmp_path / "log.csv",
        "t (min),I (mA),U (mV),Tc [K],Q [mAh],note\n"
        "0,1500,3700,298.15,100,a\n"
        "0.5,1500,3710,299.15,112.5,b\n",
    )
    rec = import_file(
        path,
        column_map={"time": "t", "current": "I", "voltage": "U (mV)", "temperature": "Tc", "ah": "Q"},
        current_sign="discharge-positive",
    )
    np.testing.assert_allclose(rec.time_s, [0.0, 30.0])
    np.testing.assert_allclose(rec.current_A, [-1.5, -1.5])
    np.testing.assert_allclose(rec.voltage_V, [3.7, 3.71])
    np.testing.assert_allclose(rec.temp_C, [25.0, 26.0])
    assert rec.ah is not None
    np.testing.assert_allclose(rec.ah, [0.0, -0.0125])
    assert rec.meta.name == "log"
    assert "discharge-positive" in rec.meta.extra["current_sign"]


def test_a_current_logged_as_a_magnitude_takes_its_sign_from_the_state_column(tmp_path: Path) -> None:
    """Maccor logs Amps as a magnitude and the step in State (C, D, R); Neware its Step Type
    (CC_DChg, CCCV_Chg, Rest). A red team's Maccor life read as all charge, and import's advice
    (--current-sign discharge-positive) made it one 146 Ah discharge. Mapped, the state column
    signs the current; unmapped, the warning says to map it."""
    from bmsfil.importers.parse import direction

    assert direction(["D", "C", "R", "CC_DChg", "CCCV_Chg", "CP DChg", "Rest", "Discharge", "charge", "O"]).tolist() \
        == [-1, 1, 0, -1, 1, -1, 0, -1, 1, 0]
    rows = ["Test (Sec),Amps,Volts,State,Temp 1"]
    t = 0
    for state, amps, volts in [("R", 0.0, 4.1)] * 3 + [("D", 2.0, 3.9 - 0.005 * k) for k in range(60)] \
            + [("R", 0.001, 3.75)] * 3 + [("C", 1.5, 3.8 + 0.005 * k) for k in range(60)]:
        rows.append(f"{t},{amps},{volts},{state},24")
        t += 20
    path = write(tmp_path / "maccor.csv", "\n".join(rows) + "\n")
    mapping = {"time": "Test (Sec)", "current": "Amps", "voltage": "Volts", "temperature": "Temp 1"}
    rec = import_file(path, column_map={**mapping, "state": "State"})
    assert rec.current_A[3:63].tolist() == [-2.0] * 60 and rec.current_A[66:].tolist() == [1.5] * 60
    assert rec.current_A[63] == pytest.approx(0.001)  # a rest keeps what was logged
    assert "from the state column 'State'" in rec.meta.extra["current_sign"]
    with pytest.raises(RecordingError, match="both set the current's sign"):
        import_file(path, column_map={**mapping, "state": "State"}, current_sign="discharge-positive")
    from bmsfil.current_sign import wrong_sign

    said = wrong_sign(import_file(path, column_map=mapping))
    assert said is not None and "never negative" in said and "state=COLUMN" in said
    assert wrong_sign(rec) is None
    # A rest's -1 mA of sensor noise does not hide a magnitude (a reviewer's).
    noisy = write(tmp_path / "noisy.csv", path.read_text().replace(",0.001,3.75,R,", ",-0.001,3.75,R,"))
    said = wrong_sign(import_file(noisy, column_map=mapping))
    assert said is not None and "never negative" in said
    # Words it does not read (numbers, as BioLogic's ox/red; another language) are said, with their lines.
    numbered = write(tmp_path / "numbered.csv", path.read_text().replace(",D,", ",0,").replace(",C,", ",1,"))
    with pytest.warns(RecordingWarning, match=r"state column 'State': 120 sample\(s\) that carry current .*lines 5, 6"):
        import_file(numbered, column_map={**mapping, "state": "State"})
    # A per-step magnitude counter beside a state column cannot be signed: refused.
    with pytest.raises(RecordingError, match="both state='State' and ah='Temp 1'"):
        import_file(path, column_map={**mapping, "state": "State", "ah": "Temp 1"})


def test_bmsfils_own_column_names_import_without_a_map(tmp_path: Path) -> None:
    """A recording's fields as columns (a Parquet recording or a DataFrame written back to CSV)
    were 'not a layout bmsfil recognises' (a red team's): their units are in their names."""
    path = write(tmp_path / "mine.csv", "time_s,current_A,voltage_V,temp_C,ah\n0,0,4.1,25,0\n1,-1,4.0,25.5,-0.0003\n")
    rec = import_file(path)
    assert rec.current_A.tolist() == [0.0, -1.0] and rec.temp_C.tolist() == [25.0, 25.5]
    assert rec.ah is not None and rec.ah.tolist() == pytest.approx([0.0, -0.0003])
    # A unit in the header wins; a quantity named otherwise beside them is taken; an empty ah left out.
    mixed = write(tmp_path / "mixed.csv", "time_s,current_A [mA],voltage_V,Temperature [degC],ah\n0,0,4.1,25,\n"
                  "1,-1000,4.0,25.5,\n")
    rec = import_file(mixed)
    assert rec.current_A.tolist() == [0.0, -1.0] and rec.temp_C.tolist() == [25.0, 25.5] and rec.ah is None


def test_recognised_names_import_without_a_map(tmp_path: Path) -> None:
    path = write(
        tmp_path / "cell.csv",
        "Test_Time(s),Current(A),Voltage(V),Temperature (degC),Step\n0,0,4.1,25,1\n1,-1,4.0,25.5,2\n",
    )
    assert detect_format(path) == "csv"
    rec = import_file(path)
    np.testing.assert_allclose(rec.current_A, [0.0, -1.0])
    assert rec.ah is None


def test_clock_and_date_time_columns(tmp_path: Path) -> None:
    clock = write(tmp_path / "clock.csv", "time,current [A],voltage [V],temp [C]\n25:59:59.5,0,4,20\n26:00:00.75,0,4,20\n")
    np.testing.assert_allclose(import_file(clock).time_s, [0.0, 1.25])
    stamps = write(
        tmp_path / "stamps.csv",
        "Timestamp,current [A],voltage [V],temp [C]\n2020-01-01 23:59:59,0,4,20\n2020-01-02T00:00:01.5,0,4,20\n",
    )
    np.testing.assert_allclose(import_file(stamps).time_s, [0.0, 2.5])


@pytest.mark.parametrize(
    "first, bad, expected",
    [("00:00:01.5", "00:00:x", "hh:mm:ss"), ("2020-01-01 00:00:00", "2020-13-01 00:00:00", "date-time")],
)
def test_bad_clock_or_date_time_is_located(tmp_path: Path, first: str, bad: str, expected: str) -> None:
    path = write(tmp_path / "t.csv", f"Time,Current [A],Voltage [V],Temp [C]\n{first},0,4,20\n{bad},0,4,20\n")
    with pytest.raises(RecordingError, match=rf"t\.csv:3: column 'Time': expected .*{expected}.*, got '{bad}'"):
        import_file(path)


def test_semicolons_and_decimal_commas(tmp_path: Path) -> None:
    path = write(tmp_path / "eu.csv", "Time [s];Current [A];Voltage [V];Temperature [°C]\n0;-1,5;3,7;20,5\n1;-1,5;3,69;20,5\n")
    rec = import_file(path)
    np.testing.assert_allclose(rec.current_A, [-1.5, -1.5])
    np.testing.assert_allclose(rec.voltage_V, [3.7, 3.69])


def test_missing_cells_in_the_middle_are_nan(tmp_path: Path) -> None:
    path = write(
        tmp_path / "gaps.csv",
        "Time [s],Current [A],Voltage [V],Temperature [degC]\n0,-1,3.7,25\n1,,NA,25\n2,-1,3.6,\n",
    )
    rec = import_file(path)
    assert np.isnan(rec.current_A[1]) and np.isnan(rec.voltage_V[1]) and np.isnan(rec.temp_C[2])
    assert rec.voltage_V[2] == 3.6


def test_no_temperature_column_needs_the_ambient(tmp_path: Path) -> None:
    path = write(tmp_path / "notemp.csv", "Time [s],Current [A],Voltage [V]\n0,-1,3.7\n1,-1,3.6\n")
    with pytest.raises(RecordingError, match="ambient_temp_C"):
        import_file(path)
    rec = import_file(path, meta={"ambient_temp_C": "23.5"})
    np.testing.assert_array_equal(rec.temp_C, [23.5, 23.5])
    assert rec.meta.ambient_temp_C == 23.5
    assert "constant" in rec.meta.extra["temp_C"]


def test_column_map_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "m.csv", "a,b,c\n0,1,3.7\n")
    with pytest.raises(RecordingError, match="unknown 'power'"):
        import_file(path, column_map={"time": "a", "current": "b", "voltage": "c", "power": "d"})
    with pytest.raises(RecordingError, match="lacks 'voltage'"):
        import_file(path, column_map={"time": "a", "current": "b"})
    with pytest.raises(RecordingError, match=r"m\.csv: no column row with all of .*'x'.*columns found: 'a', 'b', 'c'"):
        import_file(path, column_map={"time": "a", "current": "b", "voltage": "x"})
    write(path, "a [s],b [A],c [V]\n0,1,3.7\n")
    with pytest.raises(RecordingError, match="the column map says 'mA'"):
        import_file(path, column_map={"time": "a", "current": "b [mA]", "voltage": "c", "temperature": "c"})


def test_blank_lines_and_quoted_newlines_keep_line_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path / "lines.csv",
        'Time [s],Current [A],Voltage [V],Temperature [degC],Note\n'
        '0,-1,3.7,25,"two\nlines"\n'
        "\n"
        "1,-1,oops,25,\n",
    )
    with pytest.raises(RecordingError, match=r"lines\.csv:5: column 'Voltage \[V\]'"):
        import_file(path)


def test_units_written_as_quantity_slash_unit(tmp_path: Path) -> None:
    """EC-Lab (BioLogic) writes 'I/mA', 'Ecell/V', 'time/s': the unit after
    the last '/' was ignored and mA read as A, a current 1000 times too
    large in silence. What follows the '/' must be a unit: 'Charge/Discharge'
    stays a name."""
    path = write(tmp_path / "eclab.txt", "time/s\tI/mA\tEcell/V\tTemperature/°C\tQ charge/discharge/mA.h\n"
                 + "".join(f"{k}\t-1500\t{3.9 - k * 1e-3:.4f}\t25\t{-1500 * k / 3600:.6f}\n" for k in range(40)))
    rec = import_file(path, column_map={"time": "time/s", "current": "I/mA", "voltage": "Ecell/V",
                                        "temperature": "Temperature/°C", "ah": "Q charge/discharge/mA.h"})
    assert rec.current_A[0] == pytest.approx(-1.5) and rec.ah is not None
    assert rec.ah[-1] == pytest.approx(-1.5 * 39 / 3600.0)
    assert split_unit("Charge/Discharge") == ("Charge/Discharge", "")
    assert split_unit("T1(℃)") == ("T1", "℃") and conversion("temperature", "℃") == (1.0, 0.0)


def test_a_time_column_coarser_than_the_sampling_is_refused(tmp_path: Path) -> None:
    """Whole-second stamps at 10 Hz: nine of ten intervals are 0 s. It was
    refused with a wrong cause (the Ah counter "does not follow the current",
    0.1 x: the integral over intervals of 0 s); now the time column is named."""
    rows = "".join(f"{k // 10},-1.5,{3.9 - k * 1e-4:.4f},25,{-1.5 * k / 36000:.6f}\n" for k in range(200))
    path = write(tmp_path / "coarse.csv", "Test Time [s],Current [A],Voltage [V],Temperature [degC],Q [Ah]\n" + rows)
    with pytest.raises(RecordingError, match=r"coarse\.csv: column 'Test Time \[s\]': 180 of 199 samples repeat "
                                             r"the time before them \(its smallest step is 1 s\)"):
        import_file(path)


def test_thousands_grouped_with_dots_in_a_file_of_decimal_commas(tmp_path: Path) -> None:
    """A ';' file writing decimals with ',' (a German export): '-1.714,5' mA
    is -1714.5 mA (it was refused); '-1.714' alone could be -1.714 or -1714
    and was read as -1.714 mA, 1000 times too small in silence: refused now,
    naming the cell. A '.' in a file whose first row writes no ',' is a
    decimal point, as before ('3.714' V in a tab-separated file)."""
    head = "Zeit [s];Strom [mA];Spannung [V];Temperatur [degC]\n"
    german = {"time": "Zeit", "current": "Strom", "voltage": "Spannung", "temperature": "Temperatur"}
    path = write(tmp_path / "de.csv", head + "0,0;-43,5;4,1848;23,9\n0,1;-1.714,5;4,1840;23,9\n")
    assert import_file(path, column_map=german).current_A.tolist() == pytest.approx([-0.0435, -1.7145])
    write(path, head + "0,0;-43;4,1848;23,9\n0,1;-1.714;4,1840;23,9\n")
    with pytest.raises(RecordingError, match=r"de\.csv:3: column 'Strom \[mA\]': expected a number whose '\.' "
                                             r"groups thousands before its decimal ',', or none .*got '-1\.714'"):
        import_file(path, column_map=german)
    tabs = write(tmp_path / "points.txt", "Time [s]\tCurrent [A]\tVoltage [V]\tTemperature [degC]\n"
                 "0.0\t-1.500\t3.714\t25.0\n1.0\t-1.500\t3.713\t25.0\n")
    rec = import_file(tabs)
    assert rec.voltage_V.tolist() == [3.714, 3.713] and rec.current_A[0] == -1.5


def test_rows_of_empty_fields_are_blank_lines(tmp_path: Path) -> None:
    """A spreadsheet saves the rows it once used as ',,,': blank, as a blank
    line is (a red team's Excel export failed on them); a row with a value
    missing is still an error at its line."""
    head = "Time [s],Current [A],Voltage [V],Temperature [degC]\n"
    path = write(tmp_path / "sheet.csv", head + "0,-1,3.7,25\n,,,\n1,-1,3.7,25\n,,,\n , ,,\n")
    assert list(import_file(path).time_s) == [0.0, 1.0]
    write(path, head + "0,-1,3.7,25\n,-1,3.7,25\n")
    with pytest.raises(RecordingError, match=r"sheet\.csv:3: column 'Time \[s\]'"):
        import_file(path)


def test_trailing_empty_fields_are_fine_but_extra_values_are_not(tmp_path: Path) -> None:
    path = write(tmp_path / "wide.csv", "Time [s],Current [A],Voltage [V],Temperature [degC]\n0,-1,3.7,25,,\n")
    assert len(import_file(path)) == 1
    write(path, "Time [s],Current [A],Voltage [V],Temperature [degC]\n0,-1,3.7,25\n1,-1,3.7,25,7\n")
    with pytest.raises(RecordingError, match=r"wide\.csv:3: 5 fields"):
        import_file(path)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_byte_order_marks(tmp_path: Path, encoding: str) -> None:
    path = write(tmp_path / "bom.csv", "Time [s],Current [A],Voltage [V],Temp [°C]\n0,-1,3.7,25\n", encoding)
    assert import_file(path).temp_C[0] == 25.0


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-50.0, 50.0),  # current, A
            st.floats(2.0, 4.5),  # voltage, V
            st.floats(-30.0, 60.0),  # temperature, °C
        ),
        min_size=1,
        max_size=20,
    )
)
def test_units_convert_any_values(tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[float, float, float]]) -> None:
    path = tmp_path_factory.mktemp("units") / "u.csv"
    lines = ["Time [min],Current [mA],Voltage [mV],Temperature [K]"]
    lines += [f"{i / 60!r},{c * 1000!r},{v * 1000!r},{t + 273.15!r}" for i, (c, v, t) in enumerate(rows)]
    write(path, "\n".join(lines) + "\n")
    rec = import_file(path)
    expected = np.array(rows, dtype=float).reshape(-1, 3)
    np.testing.assert_allclose(rec.time_s, np.arange(len(rows)), atol=1e-9)
    np.testing.assert_allclose(rec.current_A, expected[:, 0], atol=1e-9)
    np.testing.assert_allclose(rec.voltage_V, expected[:, 1], atol=1e-9)
    np.testing.assert_allclose(rec.temp_C, expected[:, 2], atol=1e-9)


# --- detection and options ----------------------------------------------------


def test_detection_ignores_file_names(tmp_path: Path) -> None:
    misleading = write(tmp_path / "B0005_discharge_timeseries.npz", FORMATTED_HEADER + FORMATTED_ROWS)
    assert detect_format(misleading) == "lg-hg2-formatted"
    packed = tmp_path / "plain.csv"
    packed.write_bytes(gzip.compress((FORMATTED_HEADER + FORMATTED_ROWS).encode()))
    assert detect_format(packed) == "lg-hg2-formatted"
    assert len(import_file(packed)) == 3


def test_chamber_temperature_from_the_first_sample(tmp_path: Path) -> None:
    rec = import_file(write(tmp_path / "589_US06_parsed.csv", FORMATTED_HEADER + FORMATTED_ROWS))
    assert rec.meta.ambient_temp_C == 0.0
    assert rec.meta.name == "589_US06_0degC"
    assert rec.meta.reference_capacity_Ah == 2.5986
    assert "first temperature sample" in rec.meta.extra["ambient_from"]


def test_chamber_temperature_from_the_directory(tmp_path: Path) -> None:
    folder = tmp_path / "n20degC"
    folder.mkdir()
    rec = import_file(write(folder / "610_HWFET_parsed.csv", FORMATTED_HEADER + FORMATTED_ROWS))
    assert rec.meta.ambient_temp_C == -20.0
    assert rec.meta.name == "610_HWFET_n20degC"
    assert rec.meta.reference_capacity_Ah == 2.4948


def test_digatron_export_of_another_cell_gets_no_lg_hg2_defaults(tmp_path: Path) -> None:
    text = (BAD / "misnamed_column.csv").read_text(encoding="latin-1")
    text = text.replace("LG HG2 18650_SN62A4", "ACME 21700").replace("Temperatur,", "Temperature,")
    text = text.replace("Nominal Capacity, 3", "Nominal Capacity, 4.5\r\nType, LFP")
    rec = import_file(write(tmp_path / "77_US06.csv", text, "latin-1"))
    meta = rec.meta
    assert (meta.cell_id, meta.chemistry, meta.nominal_capacity_Ah) == ("ACME 21700", "LFP", 4.5)
    assert meta.reference_capacity_Ah is None and meta.reference_initial_soc is None
    assert meta.ambient_temp_C is None and meta.source == ""
    np.testing.assert_allclose(rec.time_s, [0.0, 0.102])


def test_load_any_imports_text_files(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", FORMATTED_HEADER + FORMATTED_ROWS)
    assert_same(load_any(path), import_file(path))


def test_meta_overrides(tmp_path: Path) -> None:
    path = write(tmp_path / "589_US06_parsed.csv", FORMATTED_HEADER + FORMATTED_ROWS)
    rec = import_file(path, meta={"name": "mine", "reference_capacity_Ah": "2.5", "operator": "me"})
    assert (rec.meta.name, rec.meta.reference_capacity_Ah, rec.meta.extra["operator"]) == ("mine", 2.5, "me")
    with pytest.raises(RecordingError, match="expected a number"):
        import_file(path, meta={"ambient_temp_C": "warm"})


def test_bad_options(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", FORMATTED_HEADER + FORMATTED_ROWS)
    with pytest.raises(RecordingError, match="unknown format"):
        import_file(path, fmt="xlsx")
    with pytest.raises(RecordingError, match="unknown current sign"):
        import_file(path, current_sign="positive")
    with pytest.raises(RecordingError, match="column map applies to the csv format"):
        import_file(path, fmt="nasa-pcoe", column_map={"time": "Time"})
    with pytest.raises(RecordingError, match=r"x\.csv: not a Digatron export"):
        import_file(path, fmt="lg-hg2-raw")


def test_import_cycles_of_a_single_recording_file(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", FORMATTED_HEADER + FORMATTED_ROWS)
    (only,) = import_cycles(path)
    assert_same(only, import_file(path))


def test_formats_are_the_documented_ones() -> None:
    assert FORMATS == ("lg-hg2-raw", "lg-hg2-formatted", "lg-hg2-processed", "nasa-pcoe", "csv", "bmsfil")


def test_missing_file_is_named() -> None:
    with pytest.raises(RecordingError, match="nowhere.csv: no such file"):
        import_file("nowhere.csv")


@needs_data
def test_nasa_life_keeps_each_discharges_own_number(tmp_path: Path) -> None:
    """A file of every 10th discharge: `eval`'s capacity_cycles and `health`
    number each by its cycle_idx (1, 11, 21, ...), also after slicing."""
    from bmsfil.health_eval import capacity_cycles, score_discharges
    from bmsfil.health import HealthEstimator
    from bmsfil.params import bundled_params

    with open(NASA_B0005, newline="") as fh:
        rows = list(csv.DictReader(fh))
    subset = tmp_path / NASA_B0005.name
    with open(subset, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if int(r["cycle_idx"]) % 10 == 1 and int(r["cycle_idx"]) < 60)
    with pytest.warns(RecordingWarning, match="no metadata.csv"):
        rec = import_file(subset)
    assert rec.meta.extra["cycle_numbers"] == "1,11,21,31,41,51"
    starts = rec.cycle_starts()
    part = rec.slice(starts[2] + 5, len(rec))
    assert part.meta.extra["cycle_numbers"] == "21,31,41,51"
    params = bundled_params("nasa-pcoe-18650")
    trace = HealthEstimator(params).run(rec)
    assert [c["cycle"] for c in capacity_cycles(score_discharges(rec, trace, 600.0))] == [1, 11, 21, 31, 41, 51]


def _nasa_rows() -> tuple[list[str], dict[int, list[list[str]]]]:
    """B0005's column row and its rows by cycle_idx."""
    with open(NASA_B0005, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        by_cycle: dict[int, list[list[str]]] = {}
        for row in reader:
            by_cycle.setdefault(int(row[header.index("cycle_idx")]), []).append(row)
    return header, by_cycle


def _write_nasa(path: Path, header: list[str], blocks: list[list[list[str]]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for block in blocks:
            writer.writerows(block)
    return path


@needs_data
@pytest.mark.parametrize("order", [(1, 2, 2, 3), (1, 2, 3, 2)])
def test_nasa_cycle_written_twice_is_named(tmp_path: Path, order: tuple[int, ...]) -> None:
    """Cycle 2 twice, in a row or after cycle 3: the message names the cycle and both its first lines."""
    header, by_cycle = _nasa_rows()
    path = _write_nasa(tmp_path / NASA_B0005.name, header, [by_cycle[n] for n in order])
    first = 2 + len(by_cycle[1])
    again = first + len(by_cycle[2]) + (len(by_cycle[3]) if order[2] == 3 else 0)
    with pytest.raises(RecordingError) as raised:
        import_file(path)
    assert str(raised.value) == (
        f"{path}:{again}: column 'cycle_idx': cycle 2 appears twice (lines {first} and {again}): "
        "expected each cycle once, its samples together"
    )


@needs_data
def test_nasa_metadata_agrees_with_the_recorded_discharges() -> None:
    """Every discharge of B0005 and B0007 agrees with its capacity in metadata.csv: no warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for path in (NASA_B0005, NASA_B0007):
            cycles = import_cycles(path)
            worst = max(abs(-c.ah[-1] - float(c.meta.extra["nasa_capacity_Ah"])) for c in cycles)
            assert worst < nasa_pcoe.CAPACITY_TOLERANCE_AH / 2


@needs_data
@pytest.mark.parametrize("named, holds", [("B0005", "B0007"), ("B0007", "B0005")])
def test_nasa_file_of_another_cell_is_refused(tmp_path: Path, named: str, holds: str) -> None:
    """One cell's discharges saved under the other's name, metadata.csv beside
    them: the named cell's capacities, start times and sweeps are not used.
    B0005's under B0007's name disagreed on 82 of 168 discharges (the cells
    agree early in their lives), under half, and was taken as B0007's."""
    source = {"B0005": NASA_B0005, "B0007": NASA_B0007}
    renamed = tmp_path / source[named].name
    renamed.write_bytes(source[holds].read_bytes())
    (tmp_path / NASA_METADATA.name).write_bytes(NASA_METADATA.read_bytes())
    for load in (import_file, import_cycles):
        with pytest.raises(RecordingError) as raised:
            load(renamed)
        message = str(raised.value)
        assert message.startswith(f"{renamed}: the integral of the current disagrees with {named}'s capacities in "
                                  f"{tmp_path / NASA_METADATA.name} by more than 60 mAh on ")
        assert "(worst: cycle " in message and f"another cell's discharges (they agree with {holds}'s)" in message


@needs_data
def test_nasa_file_whose_capacities_no_cell_matches_is_imported_with_one_warning(tmp_path: Path) -> None:
    """Every discharge of B0005 with its current 5 % high: no cell in
    metadata.csv agrees (a capacity defined otherwise, as a cell kept aside
    might have it): one warning, not a refusal and not one per cycle."""
    header, by_cycle = _nasa_rows()
    current = header.index("Current_measured")
    scaled = [[[*row[:current], repr(1.05 * float(row[current])), *row[current + 1:]] for row in rows]
              for rows in by_cycle.values()]
    path = _write_nasa(tmp_path / NASA_B0005.name, header, scaled)
    (tmp_path / NASA_METADATA.name).write_bytes(NASA_METADATA.read_bytes())
    with pytest.warns(RecordingWarning) as caught:
        rec = import_file(path)
    assert len(caught) == 1 and "and with every other cell's" in str(caught[0].message)
    assert len(rec.meta.extra["cycle_numbers"].split(",")) == len(by_cycle)


@needs_data
def test_nasa_discharge_that_disagrees_with_its_capacity_is_warned_of(tmp_path: Path) -> None:
    """One cycle of B0005 with its current 5 % high (about 90 mAh more than NASA's capacity): a warning
    naming that cycle and both lines, and the file still imported."""
    header, by_cycle = _nasa_rows()
    current = header.index("Current_measured")
    by_cycle[30] = [[*row[:current], repr(1.05 * float(row[current])), *row[current + 1:]] for row in by_cycle[30]]
    path = _write_nasa(tmp_path / NASA_B0005.name, header, list(by_cycle.values()))
    (tmp_path / NASA_METADATA.name).write_bytes(NASA_METADATA.read_bytes())
    line = 2 + sum(len(by_cycle[n]) for n in range(1, 30))
    with pytest.warns(RecordingWarning) as caught:
        rec = import_file(path)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith(f"{path}: the integral of the current disagrees with B0005's capacity in "
                              f"{tmp_path / NASA_METADATA.name} by more than 60 mAh on 1 of ")
    assert f"(cycle 30 at line {line}: " in message and f"{tmp_path / NASA_METADATA.name}:" in message
    assert rec.meta.extra["cycle_numbers"].split(",")[29] == "30"


@needs_data
def test_nasa_sweeps_are_on_the_axis_of_a_file_starting_later(tmp_path: Path) -> None:
    """B0005's discharges 51 on: the recording's 0 is discharge 51's start, and so is the impedance sweeps'."""
    full = import_file(NASA_B0005)
    header, by_cycle = _nasa_rows()
    late = _write_nasa(tmp_path / NASA_B0005.name, header, [by_cycle[n] for n in range(51, 169)])
    (tmp_path / NASA_METADATA.name).write_bytes(NASA_METADATA.read_bytes())
    rec = import_file(late)
    shift = full.time_s[full.cycle_starts()[50]]
    np.testing.assert_allclose(rec.time_s, full.time_s[full.cycle_starts()[50]:] - shift)
    numbers = [int(n) for n in rec.meta.extra["cycle_numbers"].split(",")]
    ours = nasa_pcoe.impedance_sweeps(late, numbers)
    theirs = nasa_pcoe.impedance_sweeps(NASA_B0005, list(range(1, 169)))
    assert len(ours) == len(theirs) == 278
    np.testing.assert_allclose([t for t, _ in ours], [t - shift for t, _ in theirs], atol=1e-6)


def test_decimal_commas_first_written_after_a_row_of_integers(tmp_path: Path) -> None:
    """A ';' file whose first row is all integers (a rest at 0 mA, whole mV)
    says nothing of its decimal mark: a later ',' decides it, for the rows
    after it and before it in the same read ('-1.714,5' is -1714.5), and a
    '1.714' already read with '.' as its decimal point is refused where the
    ',' shows that it may have grouped thousands (it was read as 1.714 mA in
    silence)."""
    head = "Zeit [s];Strom [mA];Spannung [mV];Temperatur [degC]\n"
    german = {"time": "Zeit", "current": "Strom", "voltage": "Spannung", "temperature": "Temperatur"}
    path = write(tmp_path / "de.csv", head + "0;0;4185;24\n1;-1.714,5;4150;24\n2;-43,5;4148;24\n")
    assert import_file(path, column_map=german).current_A.tolist() == pytest.approx([0.0, -1.7145, -0.0435])
    rows = "".join(f"{k};-1.714;{4180 - k};24\n" for k in range(70_000)) + "70000;-43,5;4100;24\n"
    write(path, head + "0;0;4185;24\n" + rows)
    with pytest.raises(RecordingError, match=r"de\.csv:70003: column 'Strom \[mA\]': a decimal ',' in '-43,5', "
                                             r"and line 3 \(column 'Strom \[mA\]'\) wrote '-1\.714', read with '\.' "
                                             "as its decimal point"):
        import_file(path, column_map=german)
    # the ',' decides for its whole batch of rows, whichever column comes first: '-1.714' below it is refused
    for order in (german, dict(reversed(list(german.items())))):
        write(path, head + "0;0;4185;24\n1;-1714;3,9;24\n2;-1.714;3,9;24\n")
        with pytest.raises(RecordingError, match=r"de\.csv:4: column 'Strom \[mA\]': .*got '-1\.714'"):
            import_file(path, column_map=order)
    # English thousands in a file of tabs: '-1,714.5' is not -1.7145
    tabs = write(tmp_path / "t.txt", "Time [s]\tCurrent [mA]\tVoltage [mV]\tTemperature [degC]\n0\t0\t4185\t24\n"
                 "1\t-1,714.5\t4150\t24\n")
    with pytest.raises(RecordingError, match=r"t\.txt:3: column 'Current \[mA\]': .*got '-1,714\.5'"):
        import_file(tabs)


def test_clock_times_with_decimal_commas_and_days(tmp_path: Path) -> None:
    """hh:mm:ss,fff (ISO 8601's decimal comma, a German export's) and days
    before a clock ('1d 00:00:01', pandas' '1 days 00:00:01.5') were refused."""
    head = "Zeit;Strom [A];Spannung [V];Temperatur [degC]\n"
    german = {"time": "Zeit", "current": "Strom", "voltage": "Spannung", "temperature": "Temperatur"}
    path = write(tmp_path / "de.csv", head + "00:00:00,000;-1,5;3,9;25\n00:00:00,100;-1,5;3,9;25\n"
                 "00:00:01,250;-1,5;3,9;25\n")
    assert import_file(path, column_map=german).time_s.tolist() == pytest.approx([0.0, 0.1, 1.25])
    days = write(tmp_path / "days.csv", "Time,Current [A],Voltage [V],Temperature [degC]\n"
                 "0 days 23:59:59.5,-1.5,3.9,25\n1 days 00:00:00,-1.5,3.9,25\n1d 00:00:01,-1.5,3.9,25\n")
    english = {"time": "Time", "current": "Current", "voltage": "Voltage", "temperature": "Temperature"}
    assert import_file(days, column_map=english).time_s.tolist() == pytest.approx([0.0, 0.5, 1.5])
    write(days, 'Time,Current [A],Voltage [V],Temperature [degC]\n0:00:00,-1.5,3.9,25\n"1 day, 0:00:01",-1.5,3.9,25\n')
    assert import_file(days, column_map=english).time_s.tolist() == pytest.approx([0.0, 86401.0])


def test_a_zipped_export_is_read_as_the_file_it_holds(tmp_path: Path) -> None:
    """Data sets are often shared as a zip of one CSV: it was taken for a
    broken bmsfil recording ('not a bmsfil recording (no header array)')."""
    import zipfile

    text = "Time [s],Current [A],Voltage [V],Temperature [degC]\n0,-1.5,3.9,25\n1,-1.5,3.89,25\n"
    plain = write(tmp_path / "run.csv", text)
    zipped = tmp_path / "run.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("export/run.csv", text)
    assert import_file(zipped).voltage_V.tolist() == import_file(plain).voltage_V.tolist() == [3.9, 3.89]
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as archive:
        archive.writestr("a.csv", text)
        archive.writestr("b.csv", text)
    with pytest.raises(RecordingError, match=r"two\.zip: a zip archive of 2 files \(a\.csv, b\.csv\): bmsfil reads "
                                             "one recording from one file; unzip it"):
        import_file(tmp_path / "two.zip")


def test_what_a_zip_holds_beside_or_inside_its_file(tmp_path: Path) -> None:
    """A macOS zip's __MACOSX/ resource fork is not a second file; a zip
    holding a .gz, or an encrypted one, is named, not a traceback or 'not a
    text CSV'. The recording is named without .zip."""
    import zipfile

    text = "Time [s],Current [A],Voltage [V],Temperature [degC]\n0,-1.5,3.9,25\n1,-1.5,3.89,25\n"
    mac = tmp_path / "run.csv.zip"
    with zipfile.ZipFile(mac, "w") as archive:
        archive.writestr("run.csv", text)
        archive.writestr("__MACOSX/._run.csv", b"\0\5\26\7 resource fork")
    rec = import_file(mac)
    assert rec.voltage_V.tolist() == [3.9, 3.89] and rec.meta.name == "run"
    with zipfile.ZipFile(tmp_path / "gz.zip", "w") as archive:
        archive.writestr("run.csv.gz", gzip.compress(text.encode()))
    with pytest.raises(RecordingError, match=r"gz\.zip: holds run\.csv\.gz, itself compressed \(gzip\): unzip it"):
        import_file(tmp_path / "gz.zip")
    # the member's 'encrypted' flag set, in its local header and in the central directory (zipfile
    # writes no encryption; python says 'File ... is encrypted, password required' on reading it)
    encrypted = bytearray(mac.read_bytes())
    with zipfile.ZipFile(mac) as archive:
        offset = archive.getinfo("run.csv").header_offset
    encrypted[offset + 6] |= 1
    encrypted[encrypted.index(b"PK\x01\x02") + 8] |= 1
    (tmp_path / "enc.zip").write_bytes(bytes(encrypted))
    with pytest.raises(RecordingError, match=r"enc\.zip: .*encrypted"):
        import_file(tmp_path / "enc.zip")
