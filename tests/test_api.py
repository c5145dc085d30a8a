"""The Python API at the package's top level: its example runs and gives the
documented answer, every public name resolves, and `import bmsfil` alone
loads nothing heavy (the names are imported when first used)."""

from __future__ import annotations

import doctest
import subprocess
import sys

import bmsfil

from shared_data import nasa_discharges, needs_nasa


def test_the_package_example_runs() -> None:
    result = doctest.testmod(bmsfil, verbose=False)
    assert result.attempted >= 5 and result.failed == 0


def test_every_public_name_is_a_class_or_function_also_after_the_modules_load() -> None:
    import importlib

    for module in sorted(set(bmsfil._API.values())) + ["bmsfil.cli", "bmsfil.evaluate", "bmsfil.fit"]:
        importlib.import_module(module)  # a submodule import rebinds its name on the package
    for name in bmsfil.__all__:
        assert callable(getattr(bmsfil, name)), name
    assert set(bmsfil.__all__) <= set(dir(bmsfil))


def test_importing_the_package_loads_nothing_heavy() -> None:
    code = ("import sys, bmsfil\n"
            "print(' '.join(sorted(m for m in ('numpy', 'scipy', 'matplotlib', 'bmsfil._core') if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_the_readme_example_runs() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("## Python API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict[str, object] = {}
    exec(compile(block, "README.md (Python API)", "exec"), scope)
    assert 0.0 < scope["ev"].score.rmse < 0.01  # type: ignore[attr-defined]
    assert 0.99 < scope["out"].soc <= 1.0  # type: ignore[attr-defined]


def test_a_wrong_argument_gets_a_message_that_says_what_was_expected() -> None:
    import pytest

    for make in (bmsfil.SocEstimator, bmsfil.HealthEstimator):
        with pytest.raises(TypeError, match="expected a ParameterSet"):
            make("lg-hg2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="whole number"):
        bmsfil.PackEstimator(bmsfil.bundled_params(), 2.5)  # type: ignore[arg-type]


@needs_nasa
def test_a_recording_without_a_reference_is_evaluated_unscored() -> None:
    import pytest

    life, _ = nasa_discharges(3)
    params = bmsfil.bundled_params("nasa-pcoe-18650")
    with pytest.raises(bmsfil.RecordingError, match="no reference SOC.*evaluate_unscored"):
        bmsfil.evaluate_recording(life, params)
    doc = bmsfil.evaluate_unscored(life, params)
    assert doc["ekf"] is None and doc["not_scored"] == "no reference SOC"
    assert [c["cycle"] for c in doc["capacity_cycles"]] == [1, 2, 3]  # type: ignore[index]


def test_a_frozen_recording_or_parameter_set_cannot_be_changed_in_place() -> None:
    """A notebook user's `rec.current_A *= -1` flipped the data, then raised
    FrozenInstanceError; `set.cell.r0_ohm *= 1.2` changed the set and every set
    `with_filter` had made from it (a red team's). Their arrays are read-only."""
    import numpy as np
    import pytest

    rec = bmsfil.bundled_recording().slice(0, 100)
    before = rec.current_A.copy()
    with pytest.raises(ValueError, match="read-only"):
        rec.current_A *= -1
    assert np.array_equal(rec.current_A, before)
    base = bmsfil.bundled_params()
    tuned = base.with_filter(q_soc_per_s=1e-8)
    r0 = base.cell.r0_ohm.copy()
    with pytest.raises(ValueError, match="read-only"):
        tuned.cell.r0_ohm *= 1.2
    assert np.array_equal(base.cell.r0_ohm, r0)
    # A user's own array is copied, not frozen under them.
    mine = np.arange(5.0)
    own = bmsfil.Recording(mine, mine, mine + 3.6, mine, bmsfil.RecordingMeta("mine"))
    mine[0] = 99.0
    assert own.time_s[0] == 0.0 and mine.flags.writeable


def test_arrays_of_the_wrong_shape_or_kind_are_named() -> None:
    """A table's column (n, 1) broadcast to n x n inside the run (1.2 GB at 12,000
    samples); (n, 2) arrays ran on their first n interleaved values; lists failed
    later in slice. Each field is now a 1-D float64 array or a RecordingError naming it."""
    import numpy as np
    import pytest

    t = np.arange(50.0)
    meta = bmsfil.RecordingMeta("x")
    with pytest.raises(bmsfil.RecordingError, match=r"voltage_V: expected one value per sample .* \(50, 1\)"):
        bmsfil.Recording(t, t, (t + 3.6).reshape(-1, 1), t, meta)
    with pytest.raises(bmsfil.RecordingError, match="temp_C: expected real numbers"):
        bmsfil.Recording(t, t, t + 3.6, t.astype(complex), meta)
    with pytest.raises(TypeError, match="meta: expected a RecordingMeta"):
        bmsfil.Recording(t, t, t + 3.6, t, "x")  # type: ignore[arg-type]
    listed = bmsfil.Recording(list(t), [0.0] * 50, list(t * 0 + 3.6), [25.0] * 50, meta)
    assert listed.time_s.dtype == np.float64 and len(listed.slice(10, 20)) == 10
    est = bmsfil.SocEstimator(bmsfil.bundled_params())
    with pytest.raises(ValueError, match=r"voltage_V: expected a 1-D array, got shape \(50, 2\)"):
        est.run_arrays(np.zeros(50), np.zeros(50), np.full((50, 2), 3.6), np.full(50, 25.0))


def test_a_start_soc_in_percent_is_refused_and_a_copy_steps_on_its_own() -> None:
    import copy

    import pytest

    rec = bmsfil.bundled_recording().slice(0, 50)
    est = bmsfil.SocEstimator(bmsfil.bundled_params())
    with pytest.raises(ValueError, match=r"initial_soc 85: .* 85 % is 0.85"):
        est.run(rec, initial_soc=85)
    with pytest.raises(ValueError, match="expected 'ocv'"):
        est.run(rec, initial_soc="OCV")
    est.run(rec)
    twin = copy.copy(est)
    first = twin.step(0.1, -3.0, 3.9, 25.0).soc
    assert est.step(0.1, -3.0, 3.9, 25.0).soc == first  # the copy's step left the original where it was
    assert copy.deepcopy(est).x.tolist() == est.x.tolist()


def test_an_unknown_flag_or_event_name_says_which_there_are() -> None:
    import pytest

    from bmsfil.health import HealthEstimator
    from bmsfil.plausibility import run_monitored

    rec = bmsfil.bundled_recording().slice(0, 50)
    params = bmsfil.bundled_params()
    with pytest.raises(ValueError, match="no event 'typo'; expected one of anchor_full"):
        HealthEstimator(params).run(rec).where("typo")
    _, monitor = run_monitored(rec, params)
    with pytest.raises(ValueError, match="no flag 'current offset'; expected one of"):
        monitor.first_time_s("current offset")


def test_the_package_says_it_is_typed() -> None:
    from importlib import resources
    from pathlib import Path

    assert resources.files("bmsfil").joinpath("py.typed").is_file()
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"py.typed"' in pyproject.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]


def test_pickled_or_deep_copied_arrays_stay_read_only() -> None:
    import copy
    import pickle

    import numpy as np
    import pytest

    rec = bmsfil.bundled_recording().slice(0, 10)
    for twin in (pickle.loads(pickle.dumps(rec)), copy.deepcopy(rec)):
        with pytest.raises(ValueError, match="read-only"):
            twin.current_A *= -1
    params = pickle.loads(pickle.dumps(bmsfil.bundled_params()))
    assert not params.cell.r0_ohm.flags.writeable
    with pytest.raises(bmsfil.RecordingError, match="time_s: expected seconds as numbers, got timedelta64"):
        bmsfil.Recording(np.arange(3).astype("timedelta64[s]"), np.zeros(3), np.full(3, 3.6), np.zeros(3),
                         bmsfil.RecordingMeta("x"))


def test_a_testers_file_without_params_is_told_which_set_it_got(tmp_path, capsys) -> None:
    """A red team's CSV life of a 2 Ah cell ran under the LG HG2 set (3 Ah) without a word;
    the bundled LG HG2 recording (the README's first command) and NASA files say nothing new."""
    from bmsfil.cli import main

    rows = ["Time [s],Current [A],Voltage [V],Temperature [degC]"]
    rows += [f"{k},{-1.0 if k else 0.0},{4.1 - 0.001 * k},25" for k in range(300)]
    path = tmp_path / "mine.csv"
    path.write_text("\n".join(rows) + "\n")
    assert main(["eval", str(path), "--no-plot", "--out-dir", str(tmp_path)]) == 0
    assert "no bundled set known for these recordings' cell" in capsys.readouterr().err
    assert main(["eval", "--no-plot", "--out-dir", str(tmp_path)]) == 0
    assert "no bundled set known" not in capsys.readouterr().err
    # A recording saved through the API records no format: its cell is not known either.
    import numpy as np

    t = np.arange(300.0)
    saved = tmp_path / "api.npz"
    bmsfil.Recording(t, -np.ones(300), 4.1 - 1e-3 * t, np.full(300, 25.0), bmsfil.RecordingMeta("api")).save(saved)
    assert main(["eval", str(saved), "--no-plot", "--out-dir", str(tmp_path)]) == 0
    assert "no bundled set known for these recordings' cell" in capsys.readouterr().err


def test_the_modules_examples_run() -> None:
    """The examples in the modules' docstrings are doctests that pass, or plain usage blocks
    (they were prompts without outputs, failing under doctest)."""
    import bmsfil.core
    import bmsfil.health
    import bmsfil.thermal

    for module in (bmsfil.core, bmsfil.health, bmsfil.thermal):
        assert doctest.testmod(module, verbose=False).failed == 0, module.__name__
    assert doctest.testmod(bmsfil.core, verbose=False).attempted >= 4


def test_evaluate_warns_of_what_bmsfil_eval_warns_of() -> None:
    """A reversed current scored 0.07 % RMSE, another cell's set 0.06 %, both without a word,
    through the API; bmsfil eval warned of both (a red team's)."""
    from dataclasses import replace

    import pytest

    rec = bmsfil.bundled_recording().slice(0, 6000)
    lg = bmsfil.bundled_params()
    with pytest.warns(bmsfil.RecordingWarning, match="positive on discharge"):
        bmsfil.evaluate_recording(replace(rec, current_A=-rec.current_A), lg)
    with pytest.warns(bmsfil.RecordingWarning, match="nasa-pcoe-18650"):
        bmsfil.evaluate_recording(rec, bmsfil.bundled_params("nasa-pcoe-18650"))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bmsfil.evaluate_recording(rec, lg)  # the right set, the right sign: nothing


def test_tune_filter_warns_of_a_training_recording_as_eval_does() -> None:
    """bmsfil tune refuses a reversed current; the API's tune_filter tuned on it without a word."""
    from dataclasses import replace

    import pytest

    rec = bmsfil.bundled_recording().slice(0, 6000)
    with pytest.warns(bmsfil.RecordingWarning, match="positive on discharge"):
        bmsfil.tune_filter(bmsfil.bundled_params(), [replace(rec, current_A=-rec.current_A)], iterations=0)
