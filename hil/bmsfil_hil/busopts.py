"""python-can bus settings from the command line, shared by `bmsfil hil run
--target board` and `bmsfil monitor`."""

from __future__ import annotations

from errno import EAFNOSUPPORT, ENODEV

import can


class BusOptionError(ValueError):
    """A --bus-option that is not KEY=VALUE."""


def option_value(text: str) -> object:
    """A KEY=VALUE value as python-can wants it: integers, floats and true/false typed."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def bus_config(interface: str | None, channel: str | None, bitrate: int | None,
               options: list[str]) -> dict[str, object]:
    """Keyword arguments for `can.Bus`: interface, channel, bitrate (when
    given) and every ``KEY=VALUE`` of `options`, typed."""
    config: dict[str, object] = {"interface": interface, "channel": channel}
    if bitrate is not None:
        config["bitrate"] = bitrate
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BusOptionError(f"--bus-option {item!r}: expected KEY=VALUE")
        config[key] = option_value(value)
    return config


#: What python-can raises for a bus it cannot open: its own errors, a missing device or
#: library, and for settings an interface needs and did not get, TypeError (serial and
#: robotell without a port, socketcand without host and port, udp_multicast's channel);
#: NameError where an interface's driver is not installed (kvaser).
BUS_OPEN_ERRORS = (can.CanError, OSError, ValueError, TypeError, ImportError, NameError)


def open_failure(config: dict[str, object], exc: BaseException) -> str:
    """Why python-can could not open the bus `config` names, with what to do
    where the cause is a usual one (no SocketCAN on this machine, no such
    interface)."""
    shown = ", ".join(f"{k}={v!r}" for k, v in config.items())
    text = f"could not open the CAN bus ({shown}): {exc}"
    if isinstance(exc, TypeError):
        text += (f"; the {config.get('interface')} interface needs settings it was not given, or not of "
                 "that type: give them with --bus-option KEY=VALUE (python-can's documentation of the interface "
                 "names them)")
    errno = getattr(exc, "errno", None) or getattr(exc.__cause__, "errno", None)
    if config.get("interface") == "socketcan":
        if errno == EAFNOSUPPORT:
            text += ("; this machine's kernel has no SocketCAN (or a container hides it): load it with "
                     "`modprobe can_raw` (for a test bus also `modprobe vcan; ip link add dev vcan0 type vcan; "
                     "ip link set vcan0 up`), or use another --interface")
        elif errno == ENODEV:
            text += (f"; no network interface {config.get('channel')!r}: `ip link` lists them, and "
                     "`ip link set CHANNEL up type can bitrate B` brings one up")
    return text
