"""python-can bus settings from the command line, shared by `bmsfil hil run
--target board` and `bmsfil monitor`."""

from __future__ import annotations


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
