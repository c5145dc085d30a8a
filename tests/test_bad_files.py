"""Broken inputs for every importer and loader: each gives the project's error, naming the file and what is wrong.

The corpus is tests/data/bad_files/ (made by its make_corpus.py from a few
lines of the real data; its README.md says what is wrong with each file).
Each table below maps a file to fragments that its message must contain;
``{name}`` stands for the file's name, so ``"{name}:34:"`` asks for line 34.
Huge inputs are made here at run time, small on disk or sparse. The older
corpus of generic CSV files, tests/data/bad/, is checked by test_importers.py.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from bmsfil.cli import main
from bmsfil.importers import import_file, load_any, textfile
from bmsfil.params import ParameterSet, ParamsError
from bmsfil.recording import Recording, RecordingError

CORPUS = Path(__file__).parent / "data" / "bad_files"

# --- tables: file -> fragments of its message ----------------------------------------

LG_HG2_RAW = {
    "601_US06_truncated_in_header.csv": ["starts as a Digatron export", "no column row", "ends at line 17", "truncated"],
    "601_US06_truncated_column_row.csv": ["starts as a Digatron export", "ends at line 29", "truncated", "'Prog Ti'"],
    "601_US06_truncated_mid_row.csv": ["{name}:34:", "last line is truncated", "7 of 14 fields", "'Procedure'"],
    "601_US06_header_only.csv": ["no data rows", "line 29"],
    "601_US06_utf16_no_bom.csv": ["UTF-16", "without a byte-order mark"],
    "601_US06_binary_after_header.csv": ["not a text CSV", "binary"],
    "601_US06_millivolts_as_volts.csv": ["{name}:29: column 'Voltage'", "look like mV", "[mV]"],
    "601_US06_milliamps_as_amps.csv": ["{name}:29: column 'Current'", "look like mA", "[mA]"],
    "601_US06_volts_as_millivolts.csv": ["column 'Voltage'", "header says 'mV'", "write the unit as [V]"],
    "601_US06_voltage_current_swapped.csv": ["column 'Voltage'", "not a cell voltage", "swapped"],
    "601_US06_kelvin_as_celsius.csv": ["column 'Temperature'", "kelvin", "[K]"],
    "601_US06_garbled_clock.csv": ["{name}:33: column 'Prog Time'", "hh:mm:ss", "'06:47:4x.882'"],
    "601_US06_time_backwards.csv": ["{name}:34: column 'Prog Time'", "time goes backwards", "line 33"],
    "601_US06_infinite_current.csv": ["{name}:35: column 'Current'", "expected a finite number, got -inf"],
}
LG_HG2_FORMATTED = {
    "589_US06_parsed_truncated_mid_row.csv": ["{name}:5:", "last line is truncated", "'Voltage [V]'"],
    "589_US06_parsed_utf16_truncated.csv": ["utf-16 byte-order mark", "odd number of bytes", "truncated"],
    "589_US06_parsed_whitespace_only.csv": ["the file is empty"],
    "589_US06_parsed_bom_only.csv": ["the file is empty", "byte-order mark"],
    "589_US06_parsed_milliamps_as_amps.csv": ["{name}:1: column 'Current [A]'", "look like mA", "[mA]"],
    "589_US06_parsed_milliamp_hours_as_amp_hours.csv": ["{name}:1: column 'Capacity [Ah]'", "look like mAh", "[mAh]"],
    "589_US06_parsed_voltage_current_swapped.csv": ["{name}:2: column 'Voltage [V]'", "-6.85007 V is outside", "swapped"],
    "589_US06_parsed_voltage_temperature_swapped.csv": ["{name}:2: column 'Voltage [V]'", "outside [0, 10] V", "swapped"],
    "589_US06_parsed_time_backwards.csv": ["{name}:4: column 'Time [min]'", "time goes backwards", "line 3"],
    "589_US06_parsed_nan_time.csv": ["{name}:3: column 'Time [min]'", "every sample needs its time"],
    "589_US06_parsed_infinite_time.csv": ["{name}:5: column 'Time [min]'", "expected a finite time, got inf"],
    "589_US06_parsed_extra_field.csv": ["{name}:3:", "7 fields", "has 6"],
    "589_US06_parsed_nul_in_number.csv": ["{name}:4: column 'Voltage [V]'", "expected a number"],
}
LG_HG2_PROCESSED = {
    "610_UDDS_truncated.csv.gz": ["gzip data is truncated or corrupt", "end-of-stream"],
    "610_UDDS_bad_crc.csv.gz": ["gzip data is truncated or corrupt", "CRC"],
    "610_UDDS_size_claim.csv.gz": ["gzip data is truncated or corrupt", "length"],
    "610_UDDS_header_only.csv.gz": ["no data rows", "line 1"],
    "610_UDDS_kelvin_as_celsius.csv.gz": ["{name}:1: column 'Temperature [degC]'", "kelvin"],
    "610_UDDS_gzip_of_garbage.csv.gz": ["not a text CSV"],
    "610_UDDS_no_voltage_column.csv.gz": ["not a layout bmsfil recognises", "'Open Circuit Voltage [V]'", "--map"],
}
NASA_PCOE = {
    "B0005_discharge_timeseries_truncated.csv": ["{name}:6:", "last line is truncated", "'Temperature_measured'"],
    "B0005_discharge_timeseries_header_only.csv": ["no data rows", "line 1"],
    "B0005_discharge_timeseries_voltage_current_swapped.csv": ["{name}:2: column 'Voltage_measured'", "swapped"],
    "B0005_discharge_timeseries_millivolts.csv": ["column 'Voltage_measured'", "look like mV", "read in 'V'", "no unit"],
    "B0005_discharge_timeseries_kelvin.csv": ["column 'Temperature_measured'", "kelvin"],
    "B0005_discharge_timeseries_cycle_not_whole.csv": ["{name}:5: column 'cycle_idx'", "whole cycle number, got 1.5"],
    "B0005_discharge_timeseries_time_backwards.csv": ["{name}:6: column 'Time'", "time goes backwards"],
    "B0005_discharge_timeseries_infinite_time.csv": ["{name}:10: column 'Time'", "expected a finite time, got inf"],
    "B0005_discharge_timeseries_utf16_no_bom.csv": ["UTF-16", "without a byte-order mark"],
    "B0005_discharge_timeseries_no_cycle_column.csv": ["not a layout bmsfil recognises", "'Voltage_measured'", "--map"],
    # The data file is fine; the metadata.csv beside it is what the message must name.
    "bad_metadata/B0005_discharge_timeseries.csv": ["metadata.csv:2:", "'ambient_temperature'", "'warm'"],
}
GENERIC_CSV = {
    "latin1_german_names.csv": ["not a layout bmsfil recognises", "'Temperatur [°C]'", "--map"],
    "utf16_no_bom.csv": ["UTF-16", "without a byte-order mark"],
    "milliamps_as_amps.csv": ["{name}:1: column 'Current [A]'", "look like mA"],
    "milliamp_hours_as_amp_hours.csv": ["{name}:1: column 'Capacity [Ah]'", "look like mAh"],
    "volts_as_millivolts.csv": ["{name}:1: column 'Voltage [mV]'", "write the unit as [V]"],
    "voltage_temperature_swapped.csv": ["{name}:2: column 'Voltage [V]'", "swapped"],
    "infinite_voltage.csv": ["{name}:3: column 'Voltage [V]'", "expected a finite number, got inf"],
    "infinite_time.csv": ["{name}:4: column 'Time [s]'", "expected a finite time, got inf"],
    "unknown_unit.csv": ["not a layout bmsfil recognises", "'Voltage [kV]'"],
    "semicolons_truncated.csv": ["{name}:4:", "last line is truncated", "'Voltage [V]'"],
    "unterminated_quote.csv": ["{name}:4:", "last line is truncated"],
    "gzip_magic_then_garbage.csv.gz": ["gzip data is truncated or corrupt"],
}
NPZ = {
    "truncated.npz": ["not a readable bmsfil recording", "truncated or corrupt"],
    "corrupt_member.npz": ["truncated or corrupt", "CRC", "time_s.npy"],
    "wrong_format_tag.npz": ["format 'other-tool/2'", "expected 'bmsfil-recording/1'"],
    "no_header.npz": ["not a bmsfil recording", "no header array"],
    "zip_of_text.npz": ["not a bmsfil recording", "no header array"],
    "header_not_json.npz": ["header: not valid JSON"],
    "header_not_object.npz": ["header: expected a JSON object, got list"],
    "header_without_meta.npz": ["header: 'meta'"],
    "meta_unknown_field.npz": ["unknown metadata field(s) colour", "expected ambient_temp_C"],
    "meta_wrong_type.npz": ["metadata nominal_capacity_Ah: expected a number", "'3 Ah'"],
    "missing_array.npz": ["missing arrays voltage_V"],
    "unequal_lengths.npz": ["current_A has 3 samples, time_s has 5"],
    "time_backwards.npz": ["time goes backwards at sample 2", "0.095 s then 0.05 s"],
    "nan_time.npz": ["time_s is NaN at sample 1"],
    "millivolts.npz": ["array 'voltage_V', sample 0", "4186.32 V is outside [0, 10] V", "millivolts"],
    "kelvin.npz": ["array 'temp_C', sample 0", "kelvin"],
    "two_dimensional.npz": ["array 'time_s'", "shape (5, 1)"],
    "text_array.npz": ["array 'current_A'", "expected one number per sample"],
    "empty_arrays.npz": ["no samples"],
    "size_claim.npz": ["array 'time_s' claims", "1000000000000", "at most 40 bytes", "truncated or corrupt"],
}
PARAMS = {
    "empty.json": ["the file is empty"],
    "truncated.json": ["{name}:20:", "not valid JSON"],
    "utf16.json": ["UTF-16", "UTF-8"],
    "latin1_name.json": ["{name}:3:", "not UTF-8", "0xfc"],
    "binary.json": ["not UTF-8"],
    "not_an_object.json": ["expected a JSON object", "got a list"],
    "wrong_format_tag.json": ["format 'bmsfil-params/0'", "expected 'bmsfil-params/1'"],
    "missing_cell.json": ["missing section 'cell'"],
    "cell_not_object.json": ["cell: expected an object", "a list [1, 2]"],
    "missing_field.json": ["missing cell field(s) ocv_V"],
    "missing_nominal_capacity.json": ["missing cell field(s) nominal_capacity_Ah"],
    "nominal_capacity_zero.json": ["cell.nominal_capacity_Ah: must be >= 0.001 Ah", "got 0"],
    "unknown_cell_field.json": ["unknown cell field(s) ocv_v"],
    "unknown_top_level_field.json": ["unknown field(s) celll", "expected format, name, notes, cell, filter"],
    "table_is_text.json": ["cell.ocv_V: expected a list of numbers", '"3.7"'],
    "number_as_text.json": ["cell.eta_charge: expected a number", '"1.0"'],
    "text_in_table.json": ["cell.r0_ohm: row 1, value 0: expected a number", '"0.02"'],
    "ragged_table.json": ["cell.ocv_V: row 1 has 2 values, row 0 has 3"],
    "null_filter_value.json": ["filter.gate_sigma: expected a number, got null"],
    "nan_in_table.json": ["cell.ocv_V: every value must be finite"],
    "ocv_falls.json": ["cell.ocv_V: the row at 25 °C (row 1) falls by 670 mV from 3.720000 V at index 0 (SOC 0)",
                       "to 3.050000 V at index 1 (SOC 0.5)", "by more than 1 mV"],
    "nan_temperature.json": ["cell.temp_C: every value must be finite"],
    "infinite_scalar.json": ["cell.v_max_V: expected a finite number, got inf"],
    "temperatures_descending.json": ["cell.temp_C: must be strictly ascending"],
    "negative_filter_value.json": ["filter.q_soc_per_s", ">= 0"],
    "notes_not_object.json": ["notes: expected an object"],
    "ocv_in_millivolts.json": ["cell.ocv_V: 3000 V is outside [0, 10] V", "millivolts"],
    "temperatures_in_kelvin.json": ["cell.temp_C: 273.15 °C is outside", "kelvin"],
    "capacity_in_mah.json": ["cell.capacity_Ah: 2900 Ah is outside", "mAh"],
}
IMPORTED = {
    **{f"lg_hg2_raw/{k}": v for k, v in LG_HG2_RAW.items()},
    **{f"lg_hg2_formatted/{k}": v for k, v in LG_HG2_FORMATTED.items()},
    **{f"lg_hg2_processed/{k}": v for k, v in LG_HG2_PROCESSED.items()},
    **{f"nasa_pcoe/{k}": v for k, v in NASA_PCOE.items()},
    **{f"csv/{k}": v for k, v in GENERIC_CSV.items()},
    **{f"npz/{k}": v for k, v in NPZ.items()},
}
NAMED_INSTEAD = {"nasa_pcoe/bad_metadata/B0005_discharge_timeseries.csv": "metadata.csv"}
WORKS = {
    "lg_hg2_raw/works_601_US06_latin1_degree_sign.csv",
    "lg_hg2_formatted/works_589_US06_parsed_latin1_degree_sign.csv",
    "params/works_utf8_bom.json",
    "params/works_ocv_flat_step.json",
}


def corpus_files() -> set[str]:
    return {
        str(p.relative_to(CORPUS))
        for p in CORPUS.rglob("*")
        if p.is_file() and p.name not in ("README.md", "make_corpus.py", "metadata.csv")
    }


def check_message(message: str, rel: str, fragments: list[str]) -> None:
    name = NAMED_INSTEAD.get(rel, Path(rel).name)
    assert name in message, f"the message does not name the file {name!r}: {message}"
    for fragment in fragments:
        expected = fragment.format(name=name)
        assert expected in message, f"{expected!r} not in: {message}"
    assert "Traceback" not in message


def test_every_corpus_file_has_an_expectation() -> None:
    expected = set(IMPORTED) | {f"params/{k}" for k in PARAMS} | WORKS
    assert corpus_files() == expected


def test_corpus_files_are_small() -> None:
    assert max((CORPUS / rel).stat().st_size for rel in corpus_files()) < 8192


# --- each broken file --------------------------------------------------------------


@pytest.mark.parametrize("rel", sorted(IMPORTED))
def test_broken_file_fails_with_a_clear_message(rel: str) -> None:
    with pytest.raises(RecordingError) as info:
        import_file(CORPUS / rel)
    check_message(str(info.value), rel, IMPORTED[rel])


@pytest.mark.parametrize("name", sorted(NPZ))
def test_broken_recording_fails_to_load(name: str) -> None:
    """Recording.load itself (not only import_file, which sniffs first) says what is wrong."""
    with pytest.raises(RecordingError) as info:
        Recording.load(CORPUS / "npz" / name)
    check_message(str(info.value), f"npz/{name}", NPZ[name])


@pytest.mark.parametrize(
    "name, data, expected",
    [
        ("empty.npz", b"", "the file is empty"),
        ("table.npz", b"Time [s],Current [A]\n0,1\n", "an .npz is a zip archive; this is not one"),
        # A lone .npy whose header claims 10**12 samples: refused before numpy allocates them.
        ("huge.npy", b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }"
         + b" " * 50 + b"\n" + bytes(40), "a single NumPy array (.npy), not a bmsfil recording"),
    ],
)
def test_recording_load_of_what_is_not_an_npz(tmp_path: Path, name: str, data: bytes, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(RecordingError) as info:
        Recording.load(path)
    check_message(str(info.value), name, [expected])


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_broken_parameter_file_fails_with_a_clear_message(name: str) -> None:
    with pytest.raises(ParamsError) as info:
        ParameterSet.load(CORPUS / "params" / name)
    check_message(str(info.value), f"params/{name}", PARAMS[name])


def test_awkward_but_valid_files_load() -> None:
    raw = import_file(CORPUS / "lg_hg2_raw" / "works_601_US06_latin1_degree_sign.csv")
    assert raw.temp_C[0] == -9.8849 and raw.voltage_V[0] == 4.18582 and len(raw) == 6
    formatted = load_any(CORPUS / "lg_hg2_formatted" / "works_589_US06_parsed_latin1_degree_sign.csv")
    assert formatted.temp_C[0] == -0.63095 and len(formatted) == 4
    params = ParameterSet.load(CORPUS / "params" / "works_utf8_bom.json")
    assert params.name == "small test cell" and params.cell.ocv_V.shape == (2, 3)


def test_latin1_names_import_with_a_column_map() -> None:
    rec = import_file(
        CORPUS / "csv" / "latin1_german_names.csv",
        column_map={"time": "Zeit", "current": "Strom", "voltage": "Spannung", "temperature": "Temperatur"},
    )
    assert rec.voltage_V.tolist() == [4.18632, 4.18396] and rec.temp_C[0] == -0.63095


def test_unknown_unit_named_with_a_column_map() -> None:
    path = CORPUS / "csv" / "unknown_unit.csv"
    with pytest.raises(RecordingError) as info:
        import_file(path, column_map={"time": "Time", "current": "Current", "voltage": "Voltage", "temperature": "Temperature"})
    check_message(str(info.value), "csv/unknown_unit.csv", ["{name}:1: column 'Voltage [kV]'", "unit 'kV' is not one for voltage", "V, mV"])


# --- huge inputs, made here --------------------------------------------------------


def test_huge_single_line(tmp_path: Path) -> None:
    path = tmp_path / "one_line.csv"
    path.write_bytes(b"Time [s],Current [A]," * 500_000)  # 10.5 MB, no line end
    with pytest.raises(RecordingError, match=r"one_line\.csv:1: no line end in the first 65536 bytes"):
        import_file(path)


def test_two_million_fields_in_a_row(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("Time [s],Current [A],Voltage [V],Temperature [degC]\n0,-1,3.7,25\n" + ",".join(["1"] * 2_000_000) + "\n")
    with pytest.raises(RecordingError, match=r"wide\.csv:3: 2000000 fields, but the column row \(line 1\) has 4"):
        import_file(path)


def test_huge_field(tmp_path: Path) -> None:
    path = tmp_path / "field.csv"
    path.write_text("Time [s],Current [A],Voltage [V],Temperature [degC]\n0,-1,3.7,25\n1,-1," + "3" * 300_000 + ",25\n")
    with pytest.raises(RecordingError, match=r"field\.csv:3: not readable as CSV \(field larger than field limit"):
        import_file(path)


def test_gzip_that_decompresses_beyond_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(textfile, "MAX_TEXT_BYTES", 1 << 20)
    bomb = tmp_path / "bomb.csv.gz"
    bomb.write_bytes(gzip.compress(b"Time [s],Current [A],Voltage [V]\n" + b"0,0,3.7\n" * 400_000, mtime=0))
    assert bomb.stat().st_size < 50_000
    with pytest.raises(RecordingError, match=r"bomb\.csv\.gz: decompresses to more than the 1048576 bytes"):
        import_file(bomb)


def test_file_beyond_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(textfile, "MAX_TEXT_BYTES", 1 << 20)
    path = tmp_path / "big.csv"
    with open(path, "wb") as fh:
        fh.write(b"Time [s],Current [A],Voltage [V]\n")
        fh.truncate(2 << 20)  # sparse: takes no disk space
    with pytest.raises(RecordingError, match=r"big\.csv: 2097152 bytes, more than the 1048576"):
        import_file(path)


def test_huge_parameter_file(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with open(path, "wb") as fh:
        fh.write(b'{"format": "bmsfil-params/1", ')
        fh.truncate(100 << 20)  # sparse
    with pytest.raises(ParamsError, match=r"huge\.json: 104857600 bytes, not a parameter set"):
        ParameterSet.load(path)


def test_deeply_nested_parameter_file(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ParamsError, match=r"deep\.json: not valid JSON .*nested too deeply"):
        ParameterSet.load(path)


def test_parameter_with_a_number_of_five_thousand_digits(tmp_path: Path) -> None:
    data = json.loads((CORPUS / "params" / "works_utf8_bom.json").read_text(encoding="utf-8-sig"))
    text = json.dumps(data).replace('"i_max_A": 30.0', '"i_max_A": ' + "9" * 5000)
    path = tmp_path / "digits.json"
    path.write_text(text)
    with pytest.raises(ParamsError, match=r"digits\.json: not valid JSON .*digits"):
        ParameterSet.load(path)


def test_parameter_table_far_too_long(tmp_path: Path) -> None:
    data = json.loads((CORPUS / "params" / "works_utf8_bom.json").read_text(encoding="utf-8-sig"))
    data["cell"]["ocv_V"] = [[3.0 + i * 1e-6 for i in range(100_000)]] * 2
    path = tmp_path / "long.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ParamsError, match=r"long\.json: cell\.ocv_V: expected 2 rows of 2\.\.101 points, got shape \(2, 100000\)"):
        ParameterSet.load(path)


@pytest.mark.parametrize("key, value, want", [("p_floor_irc_A2", 1e-61, "> 0"), ("dt_max_s", 0.0, "> 0"),
                                             ("q_soc_per_s", 1e39, ">= 0")])
def test_tuning_the_c_core_would_refuse_is_refused_at_load(tmp_path: Path, key: str, value: float,
                                                           want: str) -> None:
    """Found by fuzz/fuzz_params.py: a floor of 1e-61 passed the loader (>= 0)
    but is 0 in single precision, which the C core refuses without naming
    the field."""
    data = json.loads((CORPUS / "params" / "works_utf8_bom.json").read_text(encoding="utf-8-sig"))
    data.setdefault("filter", {})[key] = value
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ParamsError, match=rf"tiny\.json: filter\.{key}: expected a value {want} that single precision"):
        ParameterSet.load(path)


@pytest.mark.parametrize("key, value, want", [("tau2_s", 1.2e64, r"1\.2e\+64 is beyond single precision"),
                                             ("i_max_A", 1e-50, r"must be > 0 \(in single precision\)"),
                                             ("hyst_gamma", -1.0, r"every value must be >= 0")])
def test_cell_values_the_c_core_would_refuse_are_refused_at_load(tmp_path: Path, key: str, value: float,
                                                                 want: str) -> None:
    """Found by fuzz/fuzz_params.py: a time constant of 1.2e64 passed the
    loader (finite in double precision) but is infinite in the C core's
    single precision, which refused the set without naming the field."""
    data = json.loads((CORPUS / "params" / "works_utf8_bom.json").read_text(encoding="utf-8-sig"))
    cell = data["cell"]
    if isinstance(cell[key], list):
        rows = cell[key]
        cell[key] = [[value, *row[1:]] if isinstance(row, list) else value for row in rows]
    else:
        cell[key] = value
    path = tmp_path / "cell.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ParamsError, match=rf"cell\.json: cell\.{key}\b.*{want}"):
        ParameterSet.load(path)


# --- the command line: exit 2, the message on stderr, nothing recorded lost -------


@pytest.mark.parametrize(
    "rel",
    [
        "lg_hg2_raw/601_US06_truncated_mid_row.csv",
        "lg_hg2_formatted/589_US06_parsed_milliamps_as_amps.csv",
        "lg_hg2_processed/610_UDDS_truncated.csv.gz",
        "nasa_pcoe/B0005_discharge_timeseries_voltage_current_swapped.csv",
        "csv/utf16_no_bom.csv",
        "npz/size_claim.npz",
    ],
)
def test_cli_import_of_a_broken_file(rel: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.npz"
    out.write_bytes(b"an earlier recording")
    assert main(["import", str(CORPUS / rel), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bmsfil import: error: ")
    check_message(err, rel, IMPORTED[rel])
    assert out.read_bytes() == b"an earlier recording"  # the earlier output is untouched
    assert not list(tmp_path.glob("*.part"))


def test_cli_eval_with_a_broken_parameter_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rel = "params/ocv_in_millivolts.json"
    argv = ["eval", "--params", str(CORPUS / rel), "--no-plot", "--out-dir", str(tmp_path / "eval")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("bmsfil eval: error: ")
    check_message(err, rel, PARAMS["ocv_in_millivolts.json"])


def test_cli_eval_of_a_broken_recording(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rel = "npz/millivolts.npz"
    assert main(["eval", str(CORPUS / rel), "--no-plot", "--out-dir", str(tmp_path / "eval")]) == 2
    check_message(capsys.readouterr().err, rel, NPZ["millivolts.npz"])


def test_cli_export_of_a_broken_parameter_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rel = "params/text_in_table.json"
    out = tmp_path / "params.c"
    assert main(["export", str(CORPUS / rel), "-o", str(out)]) == 2
    check_message(capsys.readouterr().err, rel, PARAMS["text_in_table.json"])
    assert not out.exists()


def test_a_firmware_export_given_as_the_parameter_set_is_named(tmp_path: Path) -> None:
    """`--params cellx.c` said only 'not valid JSON'."""
    from bmsfil.export_c import params_to_c
    from bmsfil.params import ParameterSet, ParamsError, bundled_params

    c = tmp_path / "cell.c"
    c.write_text(params_to_c(bundled_params(), "lg_hg2.json"))
    with pytest.raises(ParamsError, match=r"cell\.c:1: not valid JSON .*this is an export of a parameter set "
                                          r"\(written by bmsfil\.export_c\), for firmware: give the JSON set"):
        ParameterSet.load(c)
