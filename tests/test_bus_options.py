"""python-can bus settings from the command line, and what is said when the
bus does not open."""

from __future__ import annotations

import errno

import pytest

from bmsfil_hil.busopts import BusOptionError, bus_config, open_failure


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
