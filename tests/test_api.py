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
