"""python-can bus settings from the command line, and what is said when the
bus does not open."""

from __future__ import annotations

import errno
import json
import threading

import can
import pytest

from bmsfil import can_contract as cc
from bmsfil.cli import main
from bmsfil_hil.busopts import BusOptionError, bus_config, open_failure, option_keys, resolve_bus


def test_options_are_typed_as_python_can_wants_them() -> None:
    config = bus_config("pcan", "PCAN_USBBUS1", 500000, ["fd=true", "data_bitrate=2000000", "f_clock_mhz=80.0"])
    assert config == {"interface": "pcan", "channel": "PCAN_USBBUS1", "bitrate": 500000, "fd": True,
                      "data_bitrate": 2000000, "f_clock_mhz": 80.0}
    with pytest.raises(BusOptionError, match="expected KEY=VALUE"):
        bus_config("pcan", "x", None, ["fd"])


def test_a_bus_that_does_not_open_is_explained() -> None:
    config = {"interface": "socketcan", "channel": "can0"}
    no_socketcan = open_failure(config, OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol"))
    assert "no SocketCAN" in no_socketcan and "modprobe" in no_socketcan and "channel='can0'" in no_socketcan
    no_device = open_failure(config, OSError(errno.ENODEV, "No such device"))
    assert "no network interface 'can0'" in no_device and "ip link" in no_device
    other = open_failure({"interface": "pcan", "channel": "x"}, OSError(errno.EACCES, "Permission denied"))
    assert other.endswith("Permission denied")


@pytest.fixture
def no_can_config(tmp_path, monkeypatch):
    """No python-can configuration but what a test writes: no CAN_* variables,
    a HOME without ~/.canrc."""
    for name in ("CAN_INTERFACE", "CAN_CHANNEL", "CAN_BITRATE", "CAN_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_the_bus_comes_from_python_cans_configuration_as_its_tools_take_it(no_can_config, monkeypatch) -> None:
    (no_can_config / ".canrc").write_text("[default]\ninterface = virtual\nchannel = from-canrc\nbitrate = 250000\n")
    assert resolve_bus({}) == {"interface": "virtual", "channel": "from-canrc", "bitrate": 250000}
    monkeypatch.setenv("CAN_CHANNEL", "from-env")
    assert resolve_bus({})["channel"] == "from-env"
    # the command line wins over both
    assert resolve_bus({"channel": "given", "bitrate": 500000}) == {"interface": "virtual", "channel": "given",
                                                                    "bitrate": 500000}


def test_no_bus_anywhere_or_an_unknown_interface_is_said(no_can_config) -> None:
    with pytest.raises(BusOptionError, match=r"no CAN bus given: .*--interface and --channel.*CAN_INTERFACE"):
        resolve_bus({})
    with pytest.raises(BusOptionError, match=r"--interface 'vcan': python-can has no such interface; it knows .*socketcan"):
        resolve_bus({"interface": "vcan", "channel": "x"})
    with pytest.raises(BusOptionError, match=r"python-can's configuration \(CAN_INTERFACE or ~/.canrc\) names "
                                             "interface 'socketcan_native': python-can has no such interface"):
        (no_can_config / ".canrc").write_text("[default]\ninterface = socketcan_native\nchannel = can0\n")
        resolve_bus({})
    (no_can_config / ".canrc").write_text("interface = virtual\n")  # no [section]
    with pytest.raises(BusOptionError, match="python-can refused the bus settings .*MissingSectionHeaderError"):
        resolve_bus({})
    (no_can_config / ".canrc").unlink()
    with pytest.raises(BusOptionError, match="python-can refused the bus settings .*Port config must be string or "
                                             "integer"):
        resolve_bus({"interface": "socketcand", "channel": "can0", "host": "h", "port": 29536.0})
    # an interface with a default channel of its own opens it, as python-can does
    assert resolve_bus({"interface": "virtual"}) == {"interface": "virtual"}


def test_a_misspelt_bus_option_is_refused_and_an_unknown_one_passed_on(no_can_config) -> None:
    given = bus_config("virtual", "a", None, ["recieve_own_messages=true"])
    with pytest.raises(BusOptionError, match="did you mean 'receive_own_messages'"):
        resolve_bus(given, option_keys(["recieve_own_messages=true"]))
    # a setting no interface reads is passed on, as python-can does
    given = bus_config("virtual", "a", None, ["app_name=bench"])
    assert resolve_bus(given, ["app_name"])["app_name"] == "bench"
    # kvaser reads no_samp from its keyword arguments: a setting, not a misspelt nof_samples
    assert resolve_bus({"interface": "kvaser", "channel": 0, "no_samp": 3}, ["no_samp"])["no_samp"] == 3
    # slcan's deprecated ttyBaudrate (python-can maps it to tty_baudrate)
    assert resolve_bus({"interface": "slcan", "channel": "/dev/ttyACM0", "ttyBaudrate": 115200}, ["ttyBaudrate"])


def test_monitor_reads_a_live_bus_named_only_in_the_environment(no_can_config, monkeypatch, tmp_path) -> None:
    channel = "bmsfil-test-env-bus"
    monkeypatch.setenv("CAN_INTERFACE", "virtual")
    monkeypatch.setenv("CAN_CHANNEL", channel)
    sender = can.Bus(interface="virtual", channel=channel, receive_own_messages=False)
    out = tmp_path / "live.json"
    timer = threading.Timer(0.2, lambda: [sender.send(cc.encode_est_cell(k, 0, 0.4, 0.02)) for k in range(3)])
    timer.start()
    try:
        assert main(["monitor", "--once", "--window", "0.6", "--json", str(out)]) == 0
    finally:
        timer.join()
        sender.shutdown()
    (cell,) = json.loads(out.read_text())["cells"]
    assert cell["soc"] == pytest.approx(0.4) and cell["sequence"] == 2


@pytest.mark.parametrize("command", [["monitor", "--once"], ["hil", "run", "--target", "board", "--samples", "5"]])
def test_without_a_bus_the_commands_say_where_to_name_one(no_can_config, capsys, command) -> None:
    argv = [*command] + (["--out-dir", str(no_can_config / "out")] if command[0] == "hil" else [])
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = " ".join((captured.err + captured.out).split())
    assert "no CAN bus given" in err and "~/.canrc" in err and "Traceback" not in err
    assert main([*argv, "--interface", "virtual", "--channel", "x", "--bus-option", "recieve_own_messages=1"]) == 2
    captured = capsys.readouterr()
    assert "did you mean 'receive_own_messages'" in " ".join((captured.err + captured.out).split())


def test_a_config_context_reads_that_section_of_python_cans_configuration(no_can_config) -> None:
    """--bus-option config_context=SECTION was passed to the bus as a setting,
    and the [default] section read."""
    (no_can_config / ".canrc").write_text("[default]\ninterface = virtual\nchannel = a\n"
                                          "[bench]\ninterface = virtual\nchannel = b\nbitrate = 250000\n")
    given = bus_config(None, None, None, ["config_context=bench"])
    assert resolve_bus(given, option_keys(["config_context=bench"])) == {"interface": "virtual", "channel": "b",
                                                                         "bitrate": 250000}
    assert resolve_bus({}) == {"interface": "virtual", "channel": "a"}


def test_a_config_context_no_configuration_has_is_refused(no_can_config, monkeypatch, capsys) -> None:
    """A section no configuration file has was read as [default] alone, in silence (a review's)."""
    (no_can_config / ".canrc").write_text("[default]\ninterface = virtual\nchannel = a\n")
    given = bus_config(None, None, None, ["config_context=bnech"])
    with pytest.raises(BusOptionError) as refused:
        resolve_bus(given, option_keys(["config_context=bnech"]))
    said = str(refused.value)
    assert said.startswith("--bus-option config_context=bnech: no section [bnech] in python-can's configuration "
                           "files (searched ") and f"only {no_can_config / '.canrc'} exist" in said
    assert "nor CAN_INTERFACE_bnech, CAN_CHANNEL_bnech, CAN_BITRATE_bnech, CAN_CONFIG_bnech in the environment" in said
    assert main(["monitor", "--once", "--bus-option", "config_context=bnech"]) == 2
    assert "no section [bnech]" in capsys.readouterr().err
    monkeypatch.setenv("CAN_CHANNEL_bnech", "from-env")  # python-can's environment of a context: taken
    assert resolve_bus(given) == {"interface": "virtual", "channel": "from-env"}


def test_python_cans_short_bus_options_are_taken(tmp_path, capsys) -> None:
    """-i, -c and -b, as python-can's own tools take them, were refused."""
    channel = "bmsfil-test-short-options"
    sender = can.Bus(interface="virtual", channel=channel, receive_own_messages=False)
    out = tmp_path / "live.json"
    timer = threading.Timer(0.2, lambda: sender.send(cc.encode_est_cell(3, 0, 0.4, 0.02)))
    timer.start()
    try:
        assert main(["monitor", "-i", "virtual", "-c", channel, "-b", "500000", "--once", "--window", "0.5",
                     "--json", str(out)]) == 0
    finally:
        timer.join()
        sender.shutdown()
    assert json.loads(out.read_text())["cells"][0]["sequence"] == 3
    assert main(["hil", "run", "-i", "virtual", "-c", channel, "--out-dir", str(tmp_path / "o")]) == 2
    assert "--interface/--channel open the bus of a board, and the target is host" in capsys.readouterr().out
