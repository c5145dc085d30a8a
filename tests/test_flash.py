"""`bmsfil flash`: board checks, commands and error messages, without a probe,
pyocd or a build (the build and pyocd are replaced where a test gets that far)."""

from __future__ import annotations

import argparse
import stat
import sys
from pathlib import Path

import pytest

from bmsfil.params import bundled_params
from bmsfil_hil import flash


def run(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bmsfil")
    flash.register(ap.add_subparsers(dest="command", required=True))
    args = ap.parse_args(argv)
    return int(args.func(args))


def no_pyocd(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = flash.shutil.which
    monkeypatch.setattr(flash.shutil, "which", lambda name, *a, **k: None if name == "pyocd" else real_which(name, *a, **k))
    monkeypatch.setattr(flash.importlib.util, "find_spec", lambda name, *a, **k: None)


def test_unknown_board_is_a_clear_error(capsys):
    assert run(["flash", "--board", "no-such-board"]) == flash.EXIT_USAGE
    err = capsys.readouterr().err
    assert "unknown board 'no-such-board'" in err
    assert "nucleo-f446re" in err


def test_emulated_board_is_refused(capsys):
    assert run(["flash", "--board", "qemu-mps2-an386"]) == flash.EXIT_USAGE
    err = capsys.readouterr().err
    assert "emulated" in err and "bmsfil hil run --target qemu" in err


def test_dry_run_prints_make_and_pyocd(capsys, monkeypatch):
    monkeypatch.setattr(flash.subprocess, "run", lambda *a, **k: pytest.fail("dry run ran a command"))
    monkeypatch.setattr(flash.subprocess, "Popen", lambda *a, **k: pytest.fail("dry run ran a command"))
    assert run(["flash", "--board", "nucleo-f446re", "--dry-run", "--probe", "0668FF"]) == 0
    lines = capsys.readouterr().out.splitlines()
    folder, params_c, _ = flash.params_build(flash.FIRMWARE_DIR, "nucleo-f446re", bundled_params())
    assert lines[0].startswith("parameter set: LG INR18650HG2")
    assert params_c.is_file(), "the make command printed reads it"
    assert lines[1] == f"make -C {flash.FIRMWARE_DIR} BOARD=nucleo-f446re OUT={folder} PARAMS_C={params_c}"
    assert "flash --no-wait -t stm32f446retx --probe 0668FF" in lines[2]
    assert lines[2].endswith(str(folder / "bmsfil.elf"))


def test_the_set_given_is_the_set_built_in(capsys, monkeypatch):
    """A red team's: flash for a bare-metal board refused --params and built with
    the Makefile's default set (or whichever set the build folder held), saying
    nothing of which. The set given (a file or a bundled name) is exported into a
    build folder of its own, named on the terminal, and built in."""
    monkeypatch.setattr(flash.subprocess, "run", lambda *a, **k: pytest.fail("dry run ran a command"))
    assert run(["flash", "--board", "nucleo-f446re", "--dry-run", "--params", "nasa-pcoe-18650"]) == 0
    lines = capsys.readouterr().out.splitlines()
    folder, params_c, text = flash.params_build(flash.FIRMWARE_DIR, "nucleo-f446re",
                                                bundled_params("nasa-pcoe-18650"))
    assert lines[0].startswith("parameter set: nasa-pcoe-18650") and f"PARAMS_C={params_c}" in lines[1]
    default, _, _ = flash.params_build(flash.FIRMWARE_DIR, "nucleo-f446re", bundled_params())
    assert folder != default and "nasa-pcoe-18650" in text


def test_missing_pyocd_says_how_to_install(capsys, monkeypatch):
    no_pyocd(monkeypatch)
    monkeypatch.setattr(flash, "build", lambda cmd: pytest.fail("built although pyocd is missing"))
    assert run(["flash", "--board", "nucleo-f446re"]) == flash.EXIT_FAILED
    assert "pip install 'bmsfil[board]'" in capsys.readouterr().err


def test_missing_toolchain_says_how_to_install(capsys, monkeypatch):
    monkeypatch.setattr(flash, "find_pyocd", lambda: ["pyocd"])
    monkeypatch.setattr(flash.shutil, "which", lambda name, *a, **k: None)
    assert run(["flash", "--board", "nucleo-f446re"]) == flash.EXIT_FAILED
    err = capsys.readouterr().err
    assert "arm-none-eabi-gcc" in err and "scripts/install-firmware-tools.sh" in err


def fake_pyocd(tmp_path: Path, output: str, status: int) -> list[str]:
    script = tmp_path / "pyocd"
    script.write_text(f"import sys\nprint({output!r})\nsys.exit({status})\n")
    return [sys.executable, str(script)]


@pytest.fixture
def built(monkeypatch, tmp_path):
    """Skip the build; point the ELF at a file that exists."""
    elf = tmp_path / "bmsfil.elf"
    elf.write_bytes(b"\x7fELF")
    monkeypatch.setattr(flash, "check_toolchain", lambda: None)
    monkeypatch.setattr(flash, "build", lambda cmd: None)
    monkeypatch.setattr(flash, "elf_path", lambda build_dir: elf)
    return elf


def test_no_probe_is_a_clear_error(capsys, monkeypatch, tmp_path, built):
    cmd = fake_pyocd(tmp_path, "0000700 C No available debug probes are connected [__main__]", 1)
    monkeypatch.setattr(flash, "find_pyocd", lambda: cmd)
    assert run(["flash", "--board", "nucleo-f446re"]) == flash.EXIT_FAILED
    err = capsys.readouterr().err
    assert "no debug probe found: connect the Nucleo's ST-LINK USB" in err


def test_missing_target_pack_names_the_pack(capsys, monkeypatch, tmp_path, built):
    cmd = fake_pyocd(tmp_path, "0000512 C Target type 'stm32f446retx' not recognized. Use 'pyocd list --targets'", 1)
    monkeypatch.setattr(flash, "find_pyocd", lambda: cmd)
    assert run(["flash", "--board", "nucleo-f446re"]) == flash.EXIT_FAILED
    assert "pyocd pack install stm32f446re" in capsys.readouterr().err


def test_flash_success_passes_probe_and_elf(capsys, monkeypatch, tmp_path, built):
    script = tmp_path / "pyocd"
    script.write_text("import sys\nprint('ARGS', *sys.argv[1:])\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(flash, "find_pyocd", lambda: [sys.executable, str(script)])
    assert run(["flash", "--board", "nucleo-f446re", "--probe", "ABC"]) == 0
    out = capsys.readouterr().out
    assert f"ARGS flash --no-wait -t stm32f446retx --probe ABC {built}" in out
