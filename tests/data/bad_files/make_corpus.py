"""Write the corpus of broken input files in this directory (and its README.md).

Run from the repository: ``.venv/bin/python tests/data/bad_files/make_corpus.py``.
The output is deterministic (fixed zip and gzip times, seeded garbage), so a
rerun changes no file unless this script changed.

The text files are a few lines copied from the real data in ../shared/data
(LG HG2 601_US06 raw, 589_US06 formatted, 610_UDDS processed; NASA B0005),
each broken in one way. `tests/test_bad_files.py` lists what the error for
each must say; files named ``works_*`` are awkward but valid and must import.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import shutil
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
from bmsfil.recording import FORMAT_TAG as RECORDING_TAG
from bmsfil.recording import RecordingMeta

HERE = Path(__file__).resolve().parent
FILES: dict[str, str] = {}  # path relative to HERE -> what is wrong with it, for the README

# --- real lines ----------------------------------------------------------------

# ../shared/data/lg_hg2/1_raw/n10degC/601_US06.csv, lines 1-36 (CRLF, latin-1; line 28 is a NUL).
RAW_HEADER = [
    "", "", "Measurement ID,601", "Battery Name,LG HG2 18650_SN62A4", "Battery Type,Li-ion",
    "Circuit,Circuit001", "Program,1747 - LG_HG2_CyclesA", "Start Time,12/14/2018 8:15:59 PM",
    "End Time,12/15/2018 5:23:37 PM", "Test section,US06", "Comment,", "OrderNo,", "Producer, LG",
    "Type, Li-ion", "Nominal Voltage, 3.7", "Nominal Current, 3", "Nominal Capacity, 3", "Cells, 1",
    "Maximum Voltage, 4.2", "Gassing Voltage, 0", "Break Voltage, 0", "Charge Factor, 0",
    "Impedance, 0.02", "Cold Cranking Current, 0", "Energy Density, 0",
    "Comment,HG2 cell with 10AWG wire soldered  to cell", "", "\0",
    "Time Stamp,Step,Status,Prog Time,Step Time,Cycle,Cycle Level,Procedure,Voltage,Current,Temperature,Capacity,WhAccu,Cnt,",
    ",,,,,,,,[V],[A],[C],[Ah],[Wh],[Cnt],",
]
RAW_ROWS = [
    "12/15/2018 3:03:47 AM,48,TABLE,06:47:47.676,00:00:01.522,1,1,LG_HG2_CyclesA,4.18582,-0.03576,-9.88490,-0.00000,-0.00000,2.00000,",
    "12/15/2018 3:03:47 AM,48,TABLE,06:47:47.778,00:00:01.624,1,1,LG_HG2_CyclesA,4.18211,-0.07662,-9.99006,-0.00000,-0.00001,2.00000,",
    "12/15/2018 3:03:48 AM,48,TABLE,06:47:47.882,00:00:01.728,1,1,LG_HG2_CyclesA,4.18009,-0.08939,-9.99006,-0.00000,-0.00002,2.00000,",
    "12/15/2018 3:03:48 AM,48,TABLE,06:47:47.974,00:00:01.820,1,1,LG_HG2_CyclesA,4.17823,-0.09450,-9.88490,-0.00001,-0.00003,2.00000,",
    "12/15/2018 3:03:48 AM,48,TABLE,06:47:48.075,00:00:01.921,1,1,LG_HG2_CyclesA,4.17672,-0.09450,-9.88490,-0.00001,-0.00004,2.00000,",
    "12/15/2018 3:03:48 AM,48,TABLE,06:47:48.173,00:00:02.019,1,1,LG_HG2_CyclesA,4.17554,-0.09450,-9.88490,-0.00001,-0.00005,2.00000,",
]
# The same file, lines 151-154: a current pulse of -7 A.
RAW_PULSE = [
    "12/15/2018 3:03:59 AM,48,TABLE,06:47:59.677,00:00:13.523,1,1,LG_HG2_CyclesA,3.56906,-7.21275,-9.88490,-0.00221,-0.00844,2.00000,",
    "12/15/2018 3:03:59 AM,48,TABLE,06:47:59.774,00:00:13.620,1,1,LG_HG2_CyclesA,3.53501,-7.35322,-9.88490,-0.00241,-0.00916,2.00000,",
    "12/15/2018 3:04:00 AM,48,TABLE,06:47:59.877,00:00:13.723,1,1,LG_HG2_CyclesA,3.51175,-7.44772,-9.88490,-0.00262,-0.00990,2.00000,",
    "12/15/2018 3:04:00 AM,48,TABLE,06:47:59.976,00:00:13.822,1,1,LG_HG2_CyclesA,3.49742,-7.50647,-9.88490,-0.00283,-0.01064,2.00000,",
]
RAW_VOLTAGE, RAW_CURRENT, RAW_TEMPERATURE, RAW_PROG_TIME = 8, 9, 10, 3

# ../shared/data/lg_hg2/2_formatted/0degC/589_US06_parsed.csv: line 1, lines 2-5, 122-125 and 18924-18926.
FORMATTED_HEADER = "Timestamp,Time [min],Voltage [V],Current [A],Temperature [degC],Capacity [Ah]"
FORMATTED_ROWS = [
    "2018-11-30 19:02:42,0.0,4.18632,-0.04597,-0.63095,-0.0",
    "2018-11-30 19:02:42,0.001583333333352736,4.18396,-0.07918,-0.63095,-0.0",
    "2018-11-30 19:02:42,0.0032833333333352737,4.18262,-0.08939,-0.63095,-0.0",
    "2018-11-30 19:02:43,0.004983333333317811,4.18144,-0.0945,-0.63095,-1e-05",
]
FORMATTED_PULSE = [
    "2018-11-30 19:02:54,0.19996666666678115,3.78515,-6.85007,-0.63095,-0.00204",
    "2018-11-30 19:02:54,0.20166666666676367,3.76172,-6.94968,-0.63095,-0.00223",
    "2018-11-30 19:02:54,0.2032666666666046,3.74639,-7.00331,-0.63095,-0.00242",
    "2018-11-30 19:02:55,0.2049833333333178,3.73779,-7.03396,-0.63095,-0.00262",
]
FORMATTED_LATE = [
    "2018-11-30 19:34:14,31.53665000000013,3.05395,-12.4001,1.68254,-1.50027",
    "2018-11-30 19:34:15,31.538300000000163,3.05176,-12.40777,1.68254,-1.50061",
    "2018-11-30 19:34:15,31.539949999999955,3.04956,-12.41798,1.68254,-1.50097",
]
F_TIME, F_VOLTAGE, F_CURRENT, F_TEMPERATURE, F_AH = 1, 2, 3, 4, 5

# ../shared/data/lg_hg2/3_processed_csv/n20degC/610_UDDS.csv.gz: lines 1-4 and 263-266.
PROCESSED_HEADER = FORMATTED_HEADER + ",SOC [-],Open Circuit Voltage [V]"
PROCESSED_ROWS = [
    "2018-12-24 11:30:56,0,4.18312,-0.04342,-19.87496,0,1,4.07474",
    "2018-12-24 11:30:57,0.0017,4.17722,-0.08173,-19.87496,0,1,4.07474",
    "2018-12-24 11:30:57,0.003283333333,4.17419,-0.09195,-19.87496,0,1,4.07474",
    "2018-12-24 11:31:23,0.4350333333,3.55221,-3.11088,-19.87496,-0.00276,0.9989170791,4.067740768",
    "2018-12-24 11:31:23,0.4366666667,3.54428,-3.1543,-19.87496,-0.00284,0.9988856901,4.06759482",
    "2018-12-24 11:31:23,0.43835,3.53889,-3.17473,-19.87496,-0.00293,0.9988503775,4.067430629",
]

# ../shared/data/nasa_pcoe/B0005_discharge_timeseries.csv: lines 1-8 and 199-201 (CRLF).
NASA_HEADER = "Voltage_measured,Current_measured,Temperature_measured,Current_load,Voltage_load,Time,cycle_idx"
NASA_ROWS = [
    "4.191491807505295,-0.0049015892074626,24.330033885570543,-0.0006,0.0,0.0,1",
    "4.190749067776103,-0.0014780055516425,24.325993424022467,-0.0006,4.206,16.781,1",
    "3.9748709122299895,-2.0125283240860368,24.38908512756488,-1.9982,3.062,35.703,1",
    "3.9517167075108937,-2.0139793620987403,24.544752316727223,-1.9982,3.03,53.781,1",
    "3.934352489432596,-2.011143595991146,24.731385200934103,-1.9982,3.011,71.922,1",
    "3.920058441667911,-2.0130066278129437,24.909816397303786,-1.9982,2.991,90.094,1",
    "3.907903509913092,-2.0143996570526377,25.105884152527363,-1.9982,2.977,108.281,1",
]
NASA_CYCLE_2 = [
    "4.189773213846608,2.125117981080765e-05,24.697751935729325,-0.0006,0.0,0.0,2",
    "4.188881380279099,-0.0008794712663407,24.685948163596,-0.0006,4.204,16.672,2",
    "3.979156704814032,-2.0146540312175545,24.738132083695746,-1.9984,3.056,35.703,2",
]
N_VOLTAGE, N_CURRENT, N_TEMPERATURE, N_TIME, N_CYCLE = 0, 1, 2, 5, 6
# ../shared/data/nasa_pcoe/metadata.csv: line 1 and B0005's first discharge (line 4507).
NASA_METADATA_HEADER = "type,start_time,ambient_temperature,battery_id,test_id,uid,filename,Capacity,Re,Rct"
NASA_METADATA_ROW = (
    "discharge,[2.0080e+03 4.0000e+00 2.0000e+00 1.5000e+01 2.5000e+01 4.1593e+01],24,B0005,1,5122,05122.csv,"
    "1.8564874208181574,,"
)


# --- helpers -------------------------------------------------------------------


def put(name: str, data: bytes | str, why: str, encoding: str = "utf-8") -> None:
    path = HERE / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode(encoding) if isinstance(data, str) else data)
    assert path.stat().st_size < 8192, f"{name}: keep corpus files small"
    FILES[name] = why


def crlf(lines: list[str]) -> str:
    return "".join(line + "\r\n" for line in lines)


def lf(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def edit(row: str, index: int, value: str | None = None, scale: float | None = None) -> str:
    """The row with field ``index`` replaced by ``value`` or multiplied by ``scale``."""
    cells = row.split(",")
    cells[index] = value if value is not None else f"{float(cells[index]) * scale:.6g}"  # type: ignore[operator]
    return ",".join(cells)


def swap(row: str, a: int, b: int) -> str:
    cells = row.split(",")
    cells[a], cells[b] = cells[b], cells[a]
    return ",".join(cells)


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def garbage(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(array), allow_pickle=False)
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes], compress: bool = True) -> bytes:
    """A zip of the members, with a fixed time so that the bytes never change."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            archive.writestr(info, data)
    return buf.getvalue()


# A valid recording: the first five samples of 589_US06 (formatted), as Recording.save writes them.
REC_ARRAYS = {
    "time_s": np.array([0.0, 0.095, 0.197, 0.299, 0.395]),
    "current_A": np.array([-0.04597, -0.07918, -0.08939, -0.0945, -0.0945]),
    "voltage_V": np.array([4.18632, 4.18396, 4.18262, 4.18144, 4.18076]),
    "temp_C": np.array([-0.63095] * 5),
    "ah": np.array([0.0, 0.0, 0.0, -1e-05, -1e-05]),
}
REC_META = asdict(RecordingMeta(name="589_US06_0degC", cell_id="LG INR18650HG2", ambient_temp_C=0.0))


def recording(header: object = None, meta: object = None, compress: bool = True, **arrays: object) -> bytes:
    """An .npz like Recording.save's; keyword arrays replace (None: drop) the valid ones."""
    if header is None:
        header = json.dumps({"format": RECORDING_TAG, "meta": REC_META if meta is None else meta})
    members = {"header.npy": npy(np.array(header))}
    for key, value in {**REC_ARRAYS, **arrays}.items():
        if value is not None:
            members[key + ".npy"] = npy(np.asarray(value))
    return zip_bytes(members, compress)


# A valid parameter set: two temperatures, a three-point OCV and two-point RC tables.
PARAMS = {
    "format": "bmsfil-params/1",
    "name": "small test cell",
    "notes": {"origin": "tests/data/bad_files/make_corpus.py"},
    "cell": {
        "temp_C": [0.0, 25.0],
        "ocv_V": [[3.0, 3.7, 4.2], [3.05, 3.72, 4.2]],
        "r0_ohm": [[0.03, 0.025], [0.02, 0.018]],
        "r1_ohm": [[0.02, 0.015], [0.01, 0.01]],
        "tau1_s": [[10.0, 10.0], [20.0, 20.0]],
        "r2_ohm": [[0.01, 0.01], [0.01, 0.01]],
        "tau2_s": [[500.0, 500.0], [1000.0, 1000.0]],
        "capacity_Ah": [2.9, 3.0],
        "hyst_m0_V": [0.0, 0.0],
        "hyst_m_V": [0.02, 0.01],
        "hyst_gamma": [50.0, 50.0],
        "eta_charge": 1.0,
        "v_min_V": 2.5,
        "v_max_V": 4.2,
        "i_max_A": 30.0,
        "nominal_capacity_Ah": 3.0,
        "rn_ohm": [0.0, 0.0],
        "rn_sat_per_A": 0.0,
    },
    "filter": {"q_soc_per_s": 1e-9, "r_voltage_V2_s": 0.003, "gate_sigma": 4.0},
}


def params(name: str, why: str, change=None, text: str | None = None) -> None:
    data = json.loads(json.dumps(PARAMS))
    if change is not None:
        change(data)
    put(f"params/{name}", text if text is not None else json.dumps(data, indent=1) + "\n", why)


# --- the corpus ----------------------------------------------------------------


def lg_hg2_raw() -> None:
    d = "lg_hg2_raw/601_US06_"
    good = RAW_HEADER + RAW_ROWS
    put(d + "truncated_in_header.csv", crlf(RAW_HEADER[:16]) + "Nominal Capac", "cut off in the key,value header (line 17)", "latin-1")
    put(d + "truncated_column_row.csv", crlf(RAW_HEADER[:28]) + "Time Stamp,Step,Status,Prog Ti", "cut off in the column row (line 29)", "latin-1")
    put(d + "truncated_mid_row.csv", crlf(RAW_HEADER + RAW_ROWS[:3]) + RAW_ROWS[3][:60], "last line cut off after 7 of 14 fields (line 34)", "latin-1")
    put(d + "header_only.csv", crlf(RAW_HEADER), "header, column row and units row, no samples", "latin-1")
    put(d + "utf16_no_bom.csv", crlf(good).encode("utf-16-le"), "UTF-16 LE without a byte-order mark")
    put(d + "binary_after_header.csv", crlf(RAW_HEADER).encode("latin-1") + garbage(1500, 1), "random bytes after the header (a damaged copy)")
    put(d + "millivolts_as_volts.csv", crlf(RAW_HEADER + [edit(r, RAW_VOLTAGE, scale=1000) for r in RAW_ROWS]), "Voltage in mV under the units row's [V]", "latin-1")
    put(d + "milliamps_as_amps.csv", crlf(RAW_HEADER + [edit(r, RAW_CURRENT, scale=1000) for r in RAW_PULSE]), "Current in mA (-7000) under [A]", "latin-1")
    put(d + "volts_as_millivolts.csv", crlf(RAW_HEADER[:-1] + [RAW_HEADER[-1].replace("[V]", "[mV]")] + RAW_ROWS), "units row says [mV] over values in V", "latin-1")
    put(d + "voltage_current_swapped.csv", crlf(RAW_HEADER + [swap(r, RAW_VOLTAGE, RAW_CURRENT) for r in RAW_ROWS]), "Voltage and Current values swapped", "latin-1")
    put(d + "kelvin_as_celsius.csv", crlf(RAW_HEADER + [edit(r, RAW_TEMPERATURE, scale=None, value=f"{float(r.split(',')[RAW_TEMPERATURE]) + 273.15:.5f}") for r in RAW_ROWS]), "Temperature in K under [C]", "latin-1")
    rows = list(RAW_ROWS)
    rows[2] = edit(rows[2], RAW_PROG_TIME, "06:47:4x.882")
    put(d + "garbled_clock.csv", crlf(RAW_HEADER + rows), "Prog Time '06:47:4x.882' (line 33)", "latin-1")
    rows = list(RAW_ROWS)
    rows[3] = edit(rows[3], RAW_PROG_TIME, "06:47:46.974")
    put(d + "time_backwards.csv", crlf(RAW_HEADER + rows), "Prog Time one second back (line 34)", "latin-1")
    rows = list(RAW_ROWS)
    rows[4] = edit(rows[4], RAW_CURRENT, "-inf")
    put(d + "infinite_current.csv", crlf(RAW_HEADER + rows), "Current '-inf' (line 35)", "latin-1")
    put(
        "lg_hg2_raw/works_601_US06_latin1_degree_sign.csv",
        crlf(RAW_HEADER[:-1] + [RAW_HEADER[-1].replace("[C]", "[°C]")] + RAW_ROWS),
        "latin-1 '[°C]' in the units row: must import",
        "latin-1",
    )


def lg_hg2_formatted() -> None:
    d = "lg_hg2_formatted/589_US06_parsed_"
    head = [FORMATTED_HEADER]
    put(d + "truncated_mid_row.csv", lf(head + FORMATTED_ROWS[:3]) + FORMATTED_ROWS[3][:40], "last line cut off in the Voltage field (line 5)")
    put(d + "utf16_truncated.csv", lf(head + FORMATTED_ROWS).encode("utf-16")[:-1], "UTF-16 with a byte-order mark, last byte missing")
    put(d + "whitespace_only.csv", "\r\n   \r\n\t\r\n", "only blank lines")
    put(d + "bom_only.csv", b"\xef\xbb\xbf", "a UTF-8 byte-order mark and nothing else")
    put(d + "milliamps_as_amps.csv", lf(head + [edit(r, F_CURRENT, scale=1000) for r in FORMATTED_PULSE]), "Current in mA under [A]")
    put(d + "milliamp_hours_as_amp_hours.csv", lf(head + [edit(r, F_AH, scale=1000) for r in FORMATTED_LATE]), "Capacity in mAh (-1500) under [Ah]")
    put(d + "voltage_current_swapped.csv", lf(head + [swap(r, F_VOLTAGE, F_CURRENT) for r in FORMATTED_PULSE]), "Voltage and Current values swapped")
    put(d + "voltage_temperature_swapped.csv", lf(head + [swap(r, F_VOLTAGE, F_TEMPERATURE) for r in FORMATTED_ROWS]), "Voltage and Temperature values swapped")
    rows = list(FORMATTED_ROWS)
    rows[2] = edit(rows[2], F_TIME, "0.0001")
    put(d + "time_backwards.csv", lf(head + rows), "Time [min] back from 0.00158 to 0.0001 (line 4)")
    rows = list(FORMATTED_ROWS)
    rows[1] = edit(rows[1], F_TIME, "NaN")
    put(d + "nan_time.csv", lf(head + rows), "Time [min] 'NaN' (line 3)")
    rows = list(FORMATTED_ROWS)
    rows[3] = edit(rows[3], F_TIME, "inf")
    put(d + "infinite_time.csv", lf(head + rows), "Time [min] 'inf' on the last line (line 5)")
    rows = list(FORMATTED_ROWS)
    rows[1] = rows[1] + ",0.5"
    put(d + "extra_field.csv", lf(head + rows), "a seventh value on line 3")
    rows = list(FORMATTED_ROWS)
    rows[2] = edit(rows[2], F_VOLTAGE, "4.1\x0082")
    put(d + "nul_in_number.csv", lf(head + rows), "a NUL byte inside a voltage (line 4)")
    put(
        "lg_hg2_formatted/works_589_US06_parsed_latin1_degree_sign.csv",
        lf([FORMATTED_HEADER.replace("[degC]", "[°C]")] + FORMATTED_ROWS),
        "latin-1 'Temperature [°C]': must import",
        "latin-1",
    )


def lg_hg2_processed() -> None:
    d = "lg_hg2_processed/610_UDDS_"
    good = lf([PROCESSED_HEADER] + PROCESSED_ROWS).encode()
    packed = gz(good)
    put(d + "truncated.csv.gz", packed[: len(packed) // 2], "gzip stream cut in half")
    bad_crc = bytearray(packed)
    bad_crc[-8] ^= 0xFF
    put(d + "bad_crc.csv.gz", bytes(bad_crc), "gzip CRC does not match the data")
    put(d + "size_claim.csv.gz", packed[:-4] + (10**9).to_bytes(4, "little"), "gzip trailer claims 1e9 bytes")
    put(d + "header_only.csv.gz", gz(lf([PROCESSED_HEADER]).encode()), "column row, no samples")
    rows = [edit(r, F_TEMPERATURE, f"{float(r.split(',')[F_TEMPERATURE]) + 273.15:.5f}") for r in PROCESSED_ROWS]
    put(d + "kelvin_as_celsius.csv.gz", gz(lf([PROCESSED_HEADER] + rows).encode()), "Temperature in K under [degC]")
    put(d + "gzip_of_garbage.csv.gz", gz(garbage(1500, 2)), "valid gzip of random bytes")
    header = PROCESSED_HEADER.replace("Voltage [V],", "")
    rows = [",".join(c for i, c in enumerate(r.split(",")) if i != F_VOLTAGE) for r in PROCESSED_ROWS]
    put(d + "no_voltage_column.csv.gz", gz(lf([header] + rows).encode()), "no Voltage [V] column (only the OCV)")


def nasa_pcoe() -> None:
    d = "nasa_pcoe/B0005_discharge_timeseries_"
    head = [NASA_HEADER]
    put(d + "truncated.csv", crlf(head + NASA_ROWS[:4]) + NASA_ROWS[4][:30], "last line cut off after 1 of 7 fields (line 6)")
    put(d + "header_only.csv", crlf(head), "column row, no samples")
    put(d + "voltage_current_swapped.csv", crlf(head + [swap(r, N_VOLTAGE, N_CURRENT) for r in NASA_ROWS]), "Voltage_measured and Current_measured values swapped")
    put(d + "millivolts.csv", crlf(head + [edit(r, N_VOLTAGE, scale=1000) for r in NASA_ROWS]), "Voltage_measured in mV (the data set's unit is V)")
    rows = [edit(r, N_TEMPERATURE, f"{float(r.split(',')[N_TEMPERATURE]) + 273.15:.4f}") for r in NASA_ROWS]
    put(d + "kelvin.csv", crlf(head + rows), "Temperature_measured in K")
    rows = list(NASA_ROWS)
    rows[3] = edit(rows[3], N_CYCLE, "1.5")
    put(d + "cycle_not_whole.csv", crlf(head + rows), "cycle_idx '1.5' (line 5)")
    rows = list(NASA_ROWS)
    rows[4] = edit(rows[4], N_TIME, "50.0")
    put(d + "time_backwards.csv", crlf(head + rows), "Time back from 53.781 to 50.0 within cycle 1 (line 6)")
    rows = list(NASA_ROWS) + NASA_CYCLE_2
    rows[8] = edit(rows[8], N_TIME, "inf")
    put(d + "infinite_time.csv", crlf(head + rows), "Time 'inf' in cycle 2 (line 10)")
    put(d + "utf16_no_bom.csv", crlf(head + NASA_ROWS).encode("utf-16-be"), "UTF-16 BE without a byte-order mark")
    header = NASA_HEADER.replace(",cycle_idx", "")
    put(d + "no_cycle_column.csv", crlf([header] + [r.rsplit(",", 1)[0] for r in NASA_ROWS]), "no cycle_idx column")
    put("nasa_pcoe/bad_metadata/B0005_discharge_timeseries.csv", crlf(head + NASA_ROWS), "valid (one cycle), but see metadata.csv beside it")
    put("nasa_pcoe/bad_metadata/metadata.csv", lf([NASA_METADATA_HEADER, NASA_METADATA_ROW.replace(",24,B0005", ",warm,B0005")]), "ambient_temperature 'warm' (line 2)")


def generic_csv() -> None:
    d = "csv/"
    put(
        d + "latin1_german_names.csv",
        "Zeit [s];Strom [A];Spannung [V];Temperatur [°C]\r\n0;-0,04597;4,18632;-0,63095\r\n0,095;-0,07918;4,18396;-0,63095\r\n",
        "latin-1 German column names that need a column map (decimal commas)",
        "latin-1",
    )
    good = ["Time [s],Current [A],Voltage [V],Temperature [degC]", "0,-0.04597,4.18632,-0.63095", "0.095,-0.07918,4.18396,-0.63095", "0.197,-0.08939,4.18262,-0.63095"]
    put(d + "utf16_no_bom.csv", lf(good).encode("utf-16-le"), "UTF-16 LE without a byte-order mark")
    put(d + "milliamps_as_amps.csv", lf(good[:1] + ["0,-6850.07,3.78515,-0.63095", "0.1,-6949.68,3.76172,-0.63095"]), "current in mA under [A]")
    put(d + "milliamp_hours_as_amp_hours.csv", lf([good[0] + ",Capacity [Ah]", "0,-12.4,3.05,1.68,-1500.27", "0.1,-12.4,3.05,1.68,-1500.61"]), "Ah counter in mAh under [Ah]")
    put(d + "volts_as_millivolts.csv", lf([good[0].replace("[V]", "[mV]")] + good[1:]), "[mV] over values in V")
    put(d + "voltage_temperature_swapped.csv", lf([good[0]] + [swap(r, 2, 3) for r in good[1:]]), "voltage and temperature values swapped")
    rows = list(good)
    rows[2] = edit(rows[2], 2, "inf")
    put(d + "infinite_voltage.csv", lf(rows), "voltage 'inf' (line 3)")
    rows = list(good)
    rows[3] = edit(rows[3], 0, "Infinity")
    put(d + "infinite_time.csv", lf(rows), "time 'Infinity' on the last line (line 4)")
    put(d + "unknown_unit.csv", lf([good[0].replace("[V]", "[kV]")] + good[1:]), "voltage in [kV], a unit bmsfil does not know")
    put(
        d + "semicolons_truncated.csv",
        "Time [s];Current [A];Voltage [V];Temperature [°C]\n0;-0,04597;4,18632;-0,63095\n0,095;-0,07918;4,18396;-0,63095\n0,197;-0,08",
        "semicolons and decimal commas, last line cut off (line 4)",
    )
    put(d + "unterminated_quote.csv", lf(good[:3]) + '0.197,-0.08939,"4.18262,-0.63095\n', "a quote opened on the last line and never closed (line 4)")
    put(d + "gzip_magic_then_garbage.csv.gz", b"\x1f\x8b" + garbage(600, 3), "gzip magic bytes, then random bytes")


def npz() -> None:
    d = "npz/"
    good = recording()
    put(d + "truncated.npz", good[: len(good) // 2], "zip cut in half (no central directory)")
    bad = bytearray(good)
    start = good.index(b"time_s.npy") + len("time_s.npy")
    bad[start + 20 : start + 28] = b"\0" * 8
    put(d + "corrupt_member.npz", bytes(bad), "bytes of time_s.npy overwritten")
    put(d + "wrong_format_tag.npz", recording(header=json.dumps({"format": "other-tool/2", "meta": REC_META})), "header format 'other-tool/2'")
    put(d + "no_header.npz", zip_bytes({k + ".npy": npy(v) for k, v in REC_ARRAYS.items()}), "arrays but no header (a plain numpy .npz)")
    put(d + "zip_of_text.npz", zip_bytes({"sheet1.xml": b"<sheet/>"}), "a zip archive that is not an .npz (as an .xlsx)")
    put(d + "header_not_json.npz", recording(header="{format: bmsfil-recording/1"), "header text is not JSON")
    put(d + "header_not_object.npz", recording(header=json.dumps([RECORDING_TAG])), "header is a JSON list")
    put(d + "header_without_meta.npz", recording(header=json.dumps({"format": RECORDING_TAG})), "header has no 'meta'")
    put(d + "meta_unknown_field.npz", recording(meta={**REC_META, "colour": "red"}), "metadata field 'colour'")
    put(d + "meta_wrong_type.npz", recording(meta={**REC_META, "nominal_capacity_Ah": "3 Ah"}), "nominal_capacity_Ah '3 Ah' (text)")
    put(d + "missing_array.npz", recording(voltage_V=None), "no voltage_V array")
    put(d + "unequal_lengths.npz", recording(current_A=REC_ARRAYS["current_A"][:3]), "current_A has 3 samples, time_s 5")
    put(d + "time_backwards.npz", recording(time_s=[0.0, 0.095, 0.05, 0.299, 0.395]), "time_s 0.095 then 0.05 (sample 2)")
    put(d + "nan_time.npz", recording(time_s=[0.0, np.nan, 0.197, 0.299, 0.395]), "time_s NaN at sample 1")
    put(d + "millivolts.npz", recording(voltage_V=REC_ARRAYS["voltage_V"] * 1000), "voltage_V in mV")
    put(d + "kelvin.npz", recording(temp_C=REC_ARRAYS["temp_C"] + 273.15), "temp_C in K")
    put(d + "two_dimensional.npz", recording(time_s=REC_ARRAYS["time_s"].reshape(5, 1)), "time_s of shape (5, 1)")
    put(d + "text_array.npz", recording(current_A=np.array(["a", "b", "c", "d", "e"])), "current_A holds text")
    put(d + "empty_arrays.npz", recording(**{k: np.zeros(0) for k in REC_ARRAYS}), "every array empty")
    # time_s.npy's header claims 10**12 samples; its member holds five.
    members = {"header.npy": npy(np.array(json.dumps({"format": RECORDING_TAG, "meta": REC_META})))}
    for key, value in REC_ARRAYS.items():
        if key == "time_s":
            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
            members["time_s.npy"] = buf.getvalue() + value.tobytes()
        else:
            members[key + ".npy"] = npy(value)
    put(d + "size_claim.npz", zip_bytes(members, compress=False), "time_s.npy claims 10**12 samples (8 TB), holds 5")


def parameter_sets() -> None:
    def cell(key: str, value: object):
        return lambda d: d["cell"].__setitem__(key, value)

    good = json.dumps(PARAMS, indent=1) + "\n"
    params("empty.json", "no bytes at all", text="")
    params("truncated.json", "cut off inside the ocv_V table", text=good[: good.index('"r0_ohm"') - 30])
    put("params/utf16.json", good.encode("utf-16"), "UTF-16 with a byte-order mark")
    put("params/latin1_name.json", good.replace("small test cell", "Zelle für Tests"), "latin-1 'ü' in the name (line 3)", "latin-1")
    put("params/binary.json", garbage(700, 4), "random bytes")
    params("not_an_object.json", "a JSON list, not an object", text="[1, 2, 3]\n")
    params("wrong_format_tag.json", "format 'bmsfil-params/0'", lambda d: d.__setitem__("format", "bmsfil-params/0"))
    params("missing_cell.json", "no 'cell' section", lambda d: d.pop("cell"))
    params("cell_not_object.json", "'cell' is a list", lambda d: d.__setitem__("cell", [1, 2]))
    params("missing_field.json", "cell without ocv_V", lambda d: d["cell"].pop("ocv_V"))
    params("missing_nominal_capacity.json", "cell without nominal_capacity_Ah",
           lambda d: d["cell"].pop("nominal_capacity_Ah"))
    params("nominal_capacity_zero.json", "nominal_capacity_Ah 0 (eval divides by it)", cell("nominal_capacity_Ah", 0.0))
    params("unknown_cell_field.json", "cell field 'ocv_v' (misspelt)", cell("ocv_v", [[3.0, 4.2]]))
    params("unknown_top_level_field.json", "top-level field 'celll' beside 'cell'", lambda d: d.__setitem__("celll", {}))
    params("table_is_text.json", "ocv_V is the text '3.7'", cell("ocv_V", "3.7"))
    params("number_as_text.json", "eta_charge is the text '1.0'", cell("eta_charge", "1.0"))
    params("text_in_table.json", "r0_ohm row 1, value 0 is the text '0.02'", lambda d: d["cell"]["r0_ohm"][1].__setitem__(0, "0.02"))
    params("ragged_table.json", "ocv_V row 1 has 2 values, row 0 has 3", lambda d: d["cell"]["ocv_V"][1].pop())
    params("null_filter_value.json", "filter.gate_sigma is null", lambda d: d["filter"].__setitem__("gate_sigma", None))
    params("nan_in_table.json", "NaN in ocv_V", lambda d: d["cell"]["ocv_V"][0].__setitem__(1, float("nan")))
    params("ocv_falls.json", "the 25 °C OCV row falls from SOC 0 to 0.5 (two values swapped)",
           cell("ocv_V", [[3.0, 3.7, 4.2], [3.72, 3.05, 4.2]]))
    params("nan_temperature.json", "temp_C [NaN, 25]", cell("temp_C", [float("nan"), 25.0]))
    params("infinite_scalar.json", "v_max_V Infinity", cell("v_max_V", float("inf")))
    params("temperatures_descending.json", "temp_C [25, 0]", cell("temp_C", [25.0, 0.0]))
    params("negative_filter_value.json", "filter.q_soc_per_s -1e-9", lambda d: d["filter"].__setitem__("q_soc_per_s", -1e-9))
    params("notes_not_object.json", "notes is a text", lambda d: d.__setitem__("notes", "fitted by hand"))
    params("ocv_in_millivolts.json", "ocv_V in mV", cell("ocv_V", [[3000.0, 3700.0, 4200.0], [3050.0, 3720.0, 4200.0]]))
    params("temperatures_in_kelvin.json", "temp_C in K", cell("temp_C", [273.15, 298.15]))
    params("capacity_in_mah.json", "capacity_Ah in mAh", cell("capacity_Ah", [2900.0, 3000.0]))
    params("works_ocv_flat_step.json", "an OCV row with a flat step (bmsfil fit can make one): must load",
           cell("ocv_V", [[3.0, 3.7, 4.2], [3.05, 3.05, 4.2]]))
    params("works_utf8_bom.json", "UTF-8 with a byte-order mark: must load", text="\ufeff" + good)


def readme() -> None:
    lines = [
        "# Broken input files, by importer and loader",
        "",
        "Made by `make_corpus.py` (rerun it after changing it), from a few lines of the",
        "real files in ../shared/data (beside the repository). `tests/test_bad_files.py`",
        "checks that each one fails with the project's error (`RecordingError`,",
        "`ParamsError`) naming the file and what is wrong; files named `works_*` are",
        "awkward but valid and must load. Huge inputs are made by the test at run time.",
        "The older corpus in `../bad/` (generic CSV) is checked by `tests/test_importers.py`.",
        "",
        "| file | what is wrong |",
        "| --- | --- |",
    ]
    lines += [f"| `{name}` | {why} |" for name, why in sorted(FILES.items())]
    (HERE / "README.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    for sub in ("lg_hg2_raw", "lg_hg2_formatted", "lg_hg2_processed", "nasa_pcoe", "csv", "npz", "params"):
        shutil.rmtree(HERE / sub, ignore_errors=True)
    lg_hg2_raw()
    lg_hg2_formatted()
    lg_hg2_processed()
    nasa_pcoe()
    generic_csv()
    npz()
    parameter_sets()
    readme()
    print(f"wrote {len(FILES)} files under {HERE}")


if __name__ == "__main__":
    main()
