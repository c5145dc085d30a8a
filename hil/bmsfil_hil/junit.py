"""A HIL run as JUnit XML: one test case per cell, failed when the run had
a fault or the cell's estimates strayed from the C core's (an error when the
run was interrupted while replaying it), with the run's
numbers as properties, so that CI systems show and trend them."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

def _suite(command: str, setup: dict[str, str] | None) -> ET.Element:
    """A testsuite named by the command, its options that say what ran
    (`setup`) in the name and as properties."""
    setup = setup or {}
    suite = ET.Element("testsuite", name=command + "".join(f" --{key} {value}" for key, value in setup.items()))
    if setup:
        props = ET.SubElement(suite, "properties")
        for key, value in setup.items():
            ET.SubElement(props, "property", name=key, value=value)
    return suite


def lost_in_real_time(delivery: dict[str, object]) -> str | None:
    """A real-time run's samples that got no estimate at all: the target did not keep up,
    and its scores cover only the samples it answered."""
    realtime = delivery.get("realtime")
    lost = realtime.get("lost_samples") if isinstance(realtime, dict) else None
    if not isinstance(lost, int) or lost <= 0:
        return None
    return (f"{lost} of {delivery.get('samples_sent')} samples got no estimate in real time at "
            f"{realtime.get('speed'):g}x (the scores cover the others)")  # type: ignore[union-attr]


def case_problems(delivery: dict[str, object], cell: dict[str, object], max_soc_difference: float) -> list[str]:
    """Why a cell of a `hil run` fails (none: it passes): the run's fault, the
    target's, samples lost in real time, or estimates more than
    `max_soc_difference` from the C core's, or none to compare where the
    C core estimates (None: neither the C core nor the target could start
    the cell, which is reported as not scored, not failed)."""
    problems = []
    if delivery.get("fault"):
        problems.append(str(delivery["fault"]))
    faults = delivery.get("target_faults")
    if faults:
        problems.append(f"the target reported {len(faults)} fault(s), the first: {faults[0]}")  # type: ignore[index]
    if lost := lost_in_real_time(delivery):
        problems.append(lost)
    delta = cell.get("max_abs_soc_difference_vs_eval")
    if delta is not None and not (isinstance(delta, float) and delta <= max_soc_difference):
        problems.append(f"max |dSOC| vs the C core {delta} > {max_soc_difference:g}")
    return problems


def write_junit(path: Path, runs: list[dict[str, object]], target: str, max_soc_difference: float = 1e-4,
                setup: dict[str, str] | None = None) -> None:
    """A cell fails when the run had a fault or its estimates differ from
    the C core run on the same recording by more than `max_soc_difference`
    (1e-4 is the firmware targets' bar; the float64 reference target needs
    more). `setup`: the target's options that say what ran (micropython:
    on, variant), in the suite's name and properties."""
    suite = _suite(f"bmsfil hil run --target {target}", setup)
    tests = failures = errors = 0
    for run in runs:
        delivery = run["delivery"]
        assert isinstance(delivery, dict)
        for cell in run["cells"]:  # type: ignore[attr-defined]
            tests += 1
            case = ET.SubElement(suite, "testcase", classname=f"hil.{target}.{run['name']}", name=cell["recording"])
            props = ET.SubElement(case, "properties")
            values = {
                "rmse": cell.get("rmse"), "within_3sigma": cell.get("within_3sigma"),
                "max_abs_soc_difference_vs_eval": cell.get("max_abs_soc_difference_vs_eval"),
                "samples_per_second": delivery.get("samples_per_second"),
                "round_trip_p99_ms": delivery.get("round_trip_p99_ms"),
                "bus_outages": delivery.get("bus_outages"), "bus_outage_max_s": delivery.get("bus_outage_max_s"),
            }
            realtime = delivery.get("realtime")
            if isinstance(realtime, dict):
                for key in ("speed", "latency_p50_ms", "latency_p99_ms", "late_samples", "lost_samples"):
                    values[f"realtime_{key}"] = realtime.get(key)
            ipcs = delivery.get("instructions_per_cell_step")
            if isinstance(ipcs, dict):
                values["instructions_per_cell_step_mean"] = ipcs["mean"]
                values["instructions_per_cell_step_max"] = ipcs["max"]
            by_part = delivery.get("instructions_per_cell_step_by_part")
            if isinstance(by_part, dict):
                for part, x in by_part.items():
                    if isinstance(x, dict):
                        values[f"instructions_per_cell_step_{part}_mean"] = x["mean"]
                        values[f"instructions_per_cell_step_{part}_max"] = x["max"]
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    ET.SubElement(props, "property", name=key, value=f"{value:.6g}")
            if delivery.get("interrupted"):
                errors += 1
                ET.SubElement(case, "error", type="interrupted", message=str(delivery["fault"]))
                continue
            problems = case_problems(delivery, cell, max_soc_difference)
            if problems:
                failures += 1
                ET.SubElement(case, "failure", message="; ".join(problems))
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    tmp = path.with_name(path.name + ".part")
    ET.ElementTree(suite).write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(path)


def write_fault_junit(path: Path, target: str, faults: list[dict[str, object]],
                      interrupted_during: str | None = None, setup: dict[str, str] | None = None) -> None:
    """The fault matrix as JUnit XML: a test case per fault, failed when the
    fault ended the run, gave a NaN estimate or did not show in the
    target's flags (the estimator's or the plausibility monitor's) or the
    delivery statistics; a fault no monitor can see by design passes when
    it showed in the SOC error against the reference (its system-out says
    so) and is skipped, with the reason, when it did not show at all. A
    matrix interrupted during a run
    (`interrupted_during`: its name) ends with an errored test case for it."""
    suite = _suite(f"bmsfil hil faults --target {target}", setup)
    failures = 0
    for f in faults:
        case = ET.SubElement(suite, "testcase", classname=f"hil.faults.{target}", name=str(f["fault"]))
        props = ET.SubElement(case, "properties")
        for key in ("answered", "flagged_in_window", "target_faults", "undecodable_frames", "unexpected_frames",
                    "rmse_during", "rmse_after", "recovery_s", "detected_after_s"):
            value = f.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                ET.SubElement(props, "property", name=key, value=f"{value:.6g}")
        for key in ("visible_on_bus", "error_shows"):
            if key in f:
                ET.SubElement(props, "property", name=key, value=str(bool(f[key])).lower())
        problems = []
        if f.get("fault_ended_run"):
            problems.append(f"the run ended: {f['fault_ended_run']}")
        if f.get("nan_estimates"):
            problems.append(f"{f['nan_estimates']} NaN estimates")
        skipped = not f.get("visible") and f.get("undetectable_by_design")
        if not f.get("visible") and not skipped:
            problems.append("not visible on the bus (flags or delivery statistics)")
        if skipped and not problems:
            ET.SubElement(case, "skipped", message=f"not visible: {f.get('detection_limit')}")
        elif f.get("visible") and not f.get("visible_on_bus", True):
            ET.SubElement(case, "system-out").text = (
                f"visible only in the SOC error against the reference, not on the bus: {f.get('detection_limit')}")
        if problems:
            failures += 1
            ET.SubElement(case, "failure", message="; ".join(problems))
    if interrupted_during is not None:
        case = ET.SubElement(suite, "testcase", classname=f"hil.faults.{target}", name=interrupted_during)
        ET.SubElement(case, "error", type="interrupted", message=f"interrupted during {interrupted_during}")
    suite.set("tests", str(len(faults) + (interrupted_during is not None)))
    suite.set("failures", str(failures))
    suite.set("errors", str(int(interrupted_during is not None)))
    suite.set("skipped", str(sum(1 for c in suite.iter("testcase") if c.find("skipped") is not None)))
    tmp = path.with_name(path.name + ".part")
    ET.ElementTree(suite).write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(path)
