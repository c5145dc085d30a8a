"""python-can bus settings from the command line, shared by `bmsfil hil run
--target board` and `bmsfil monitor`."""

from __future__ import annotations

import configparser
import difflib
import importlib
import inspect
import logging
import os
import re
import sys
from errno import EAFNOSUPPORT, ENODEV

import can
from can.exceptions import CanInterfaceNotImplementedError
from can.interfaces import BACKENDS, VALID_INTERFACES
from can.util import CONFIG_FILES, load_config


class BusOptionError(ValueError):
    """A --bus-option that is not KEY=VALUE, or a bus that cannot be resolved
    from the options and python-can's configuration."""


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
    """Keyword arguments for `can.Bus`: interface, channel, bitrate (each
    when given) and every ``KEY=VALUE`` of `options`, typed."""
    config: dict[str, object] = {}
    if interface is not None:
        config["interface"] = interface
    if channel is not None:
        config["channel"] = channel
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


#: Settings python-can itself reads for every interface (its configuration's keys and
#: the bit-timing fields it turns into a ``timing``), beside each interface's own.
COMMON_SETTINGS = ("interface", "channel", "bitrate", "data_bitrate", "fd", "timing", "can_filters",
                   "receive_own_messages", "state", "f_clock", "brp", "tseg1", "tseg2", "sjw", "nof_samples",
                   "nom_brp", "nom_tseg1", "nom_tseg2", "nom_sjw", "data_brp", "data_tseg1", "data_tseg2",
                   "data_sjw")


#: The --bus-option that names the section of python-can's configuration file to read (as its
#: `can.Bus(config_context=...)` does), not a setting of the bus.
CONFIG_CONTEXT = "config_context"


def resolve_bus(given: dict[str, object], option_keys: list[str] | tuple[str, ...] = ()) -> dict[str, object]:
    """The bus python-can would open for `given` (what the command line
    said): completed from python-can's configuration as its own tools are
    (``can.rc``, the environment's CAN_INTERFACE, CAN_CHANNEL, CAN_BITRATE and
    CAN_CONFIG, then ``~/.canrc``, ``~/.can`` or ``/etc/can.conf``: its
    [default] section, with the one `given`'s CONFIG_CONTEXT names laid over it,
    as python-can lays it, and the environment's CAN_INTERFACE_SECTION, ...), the
    command line winning. Raises `BusOptionError` when no interface is known, or
    python-can knows none of that name, or refuses a setting, or one of
    `option_keys` (the --bus-option keys) is no setting of the interface but
    close to one, or CONFIG_CONTEXT names a section no configuration file has
    (nor the environment: python-can would read [default] alone, in silence)."""
    given = dict(given)
    context = given.pop(CONFIG_CONTEXT, None)
    if context is not None:
        _check_context(str(context))
    try:
        resolved = dict(load_config(config=given, context=None if context is None else str(context)))
    except CanInterfaceNotImplementedError as exc:
        named = re.search(r'"(.*)"', str(exc))
        name = named.group(1) if named else "None"
        if name == "None":
            raise BusOptionError(
                "no CAN bus given: name it with --interface and --channel (python-can's, e.g. --interface "
                "socketcan --channel can0), or in python-can's configuration (CAN_INTERFACE and CAN_CHANNEL, "
                "or a [default] section with interface and channel in ~/.canrc)") from None
        where = "--interface" if given.get("interface") is not None else "python-can's configuration (CAN_INTERFACE " \
            "or ~/.canrc) names interface"
        raise BusOptionError(f"{where} {name!r}: python-can has no such interface; it knows "
                             f"{', '.join(sorted(VALID_INTERFACES))}") from None
    except (ValueError, TypeError, AttributeError, configparser.Error) as exc:
        # settings python-can checks itself (port, state), a CAN_CONFIG or ~/.canrc it cannot read
        raise BusOptionError(f"python-can refused the bus settings (the command line's and its configuration's: "
                             f"CAN_CONFIG, ~/.canrc): {type(exc).__name__}: {exc}") from None
    interface = str(resolved["interface"])
    known = _interface_settings(interface)
    if known is not None:
        names, source = known
        for key in option_keys:
            literal = rf"""["']{re.escape(key)}["']"""  # read from its keyword arguments: kwargs.get("key")
            alias = rf"deprecated_args_alias\([^)]*\b{re.escape(key)}\s*="  # an old name python-can still takes
            if key in names or key == CONFIG_CONTEXT or re.search(literal, source) or re.search(alias, source):
                continue
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.75)
            if close:
                raise BusOptionError(f"--bus-option {key}: the {interface} interface has no setting {key!r}; "
                                     f"did you mean {close[0]!r}? (python-can passes settings it does not "
                                     "know to the interface, which ignores them)")
    return {key: value for key, value in resolved.items() if value is not None}


def _check_context(context: str) -> None:
    """Raise `BusOptionError` when no configuration file of python-can's has the section
    `context` and no CAN_*_CONTEXT variable of the environment is set."""
    files = [os.path.expanduser(name) for name in CONFIG_FILES]
    parser = configparser.ConfigParser()
    try:
        parser.read(files)
    except configparser.Error:
        return  # a file python-can cannot read either: load_config says so
    variables = [f"{name}_{context}" for name in ("CAN_INTERFACE", "CAN_CHANNEL", "CAN_BITRATE", "CAN_CONFIG")]
    if parser.has_section(context) or any(os.environ.get(name) for name in variables):
        return
    found = [name for name in files if os.path.isfile(name)]
    raise BusOptionError(
        f"--bus-option {CONFIG_CONTEXT}={context}: no section [{context}] in python-can's configuration files "
        f"(searched {', '.join(files)}: {'only ' + ', '.join(found) + ' exist' if found else 'none exists'}), "
        f"nor {', '.join(variables)} in the environment; python-can would read its [default] section alone")


def _interface_settings(interface: str) -> tuple[list[str], str] | None:
    """The settings `interface`'s bus class names, with python-can's common
    ones, and the source of its module (where settings read from keyword
    arguments are named); None when its module cannot be imported or read (a
    driver missing: the bus will not open, and says why)."""
    module, cls_name = BACKENDS[interface]
    quiet = logging.getLogger("can")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # a backend says at import that its driver is missing: the bus says it on opening
    try:
        cls = getattr(importlib.import_module(module), cls_name)
        source = inspect.getsource(sys.modules[cls.__module__])
    except Exception:  # noqa: BLE001 - any failure of a driver's import means: cannot check here
        return None
    finally:
        quiet.setLevel(level)
    own = [name for name, param in inspect.signature(cls.__init__).parameters.items()
           if param.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
           and name != "self"]
    return sorted({*own, *COMMON_SETTINGS}), source


def option_keys(options: list[str]) -> list[str]:
    """The keys of ``KEY=VALUE`` --bus-options."""
    return [item.partition("=")[0] for item in options]
