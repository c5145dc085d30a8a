"""pytest plugin: HIL regression suites, ``pytest hil/ --hil-target NAME``.

Loaded in every pytest run through the ``pytest11`` entry point (named
``bmsfil_hil``: ``-p no:bmsfil_hil`` leaves it out), so it only adds options
and fixtures: nothing here changes what other suites collect. The harness
(the C core, the firmware build) is imported only when a test asks for one
of the fixtures below or a ``--hil-*`` option names something to check
(recordings and a parameter set are read when pytest starts).

Options (group "bmsfil HIL" in ``pytest --help``):

``--hil-target NAME``
    host (the C core, default), reference (the float64 model), qemu (the
    firmware on an emulated Cortex-M4F), micropython (the MicroPython port
    on MicroPython's unix port) or board (a running board on a real
    bus, with ``--hil-interface``, ``--hil-channel``, ``--hil-bitrate`` and
    ``--hil-bus-option KEY=VALUE``, as python-can opens it).
``--hil-variant python|native``
    target micropython only: the estimator it runs, pure MicroPython
    (python, the default) or the C core as a native .mpy module (native,
    built on demand: bmsfil_hil.natmod).
``--hil-params FILE``
    the parameter set the target runs and the host C core is compared with
    (default: the bundled one for the recordings' data set, as ``bmsfil hil
    run`` takes it; a board runs what it was built with, so give the same
    set here).
``--hil-recording PATH``
    a recording (.npz or anything ``bmsfil import`` reads); once per file;
    default: the bundled recording. Read when pytest starts: a file that is
    not a recording is a usage error. One without a reference SOC is
    replayed and compared with the host C core, and not scored.
``--hil-samples N``
    replay only each recording's first N samples (default 2000; 0: all).
``--hil-timeout S``
    seconds to wait for each sample's estimates (default 2; 10 for qemu).

Fixtures: ``hil_options``, ``hil_params``, ``hil_recordings`` (the
recordings, cut to ``--hil-samples``), ``hil_recording`` (one of them: a
test that takes it runs once per recording), ``hil_target`` (starts targets
of the chosen kind and stops each at teardown), ``hil_bus`` (a started
target's python-can bus) and ``hil_replay`` (replays a recording through a
fresh target in lock-step and scores it; see `HilRun`).

Metrics: each `hil_replay` call adds the run's numbers to the test's
``user_properties`` (what pytest's ``record_property`` does), so they land in
the JUnit XML as ``<property name=... value=.../>`` of the test case. pytest
writes those in either junit family; ``-o junit_family=xunit1`` (as
scripts/test.sh passes) keeps the file valid against the legacy schema,
which allows properties on a test case (xunit2's does not).
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the harness is imported lazily, in the fixtures
    import can
    import numpy as np

    from bmsfil.core import SocTrace
    from bmsfil.evaluate import Evaluation
    from bmsfil.params import ParameterSet
    from bmsfil.recording import Recording
    from bmsfil_hil.replay import ReplayResult
    from bmsfil_hil.targets import Target

#: The --hil-recording recordings and --hil-params set, read once when pytest starts.
_RECORDINGS = pytest.StashKey[list["Recording"]]()
_PARAMS = pytest.StashKey["ParameterSet"]()

DEFAULT_TARGET = "host"
DEFAULT_SAMPLES = 2000
#: Seconds per sample's estimates; QEMU builds and boots slower, and a
#: loaded CI machine may stall it for a moment.
DEFAULT_TIMEOUT_S = {"qemu": 10.0}
DEFAULT_TIMEOUT_OTHER_S = 2.0
#: Tools the qemu target needs (tests/firmware_tools.py: the same rule).
QEMU_TOOLS = ("arm-none-eabi-gcc", "qemu-system-arm")


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("bmsfil HIL", "bmsfil HIL regression suites (hil/tests): replay recordings over CAN")
    g.addoption("--hil-target", default=DEFAULT_TARGET, metavar="NAME",
                help="target under test: host (C core, default), reference (float64 model), "
                     "qemu (firmware on QEMU), micropython (the MicroPython port on its unix port) or board "
                     "(a running board on --hil-interface/--hil-channel)")
    g.addoption("--hil-variant", choices=("python", "native"), metavar="NAME",
                help="target micropython: its estimator, python (pure MicroPython, default) or native "
                     "(the C core as a native .mpy module, built on demand)")
    g.addoption("--hil-params", type=Path, metavar="FILE",
                help="parameter set the target runs and the host C core is compared with (default: bundled)")
    g.addoption("--hil-recording", type=Path, action="append", default=[], metavar="PATH",
                help="recording to replay (.npz or any file `bmsfil import` reads); repeatable; "
                     "default: the bundled recording")
    g.addoption("--hil-samples", type=int, default=DEFAULT_SAMPLES, metavar="N",
                help=f"replay each recording's first N samples only (0: all; default {DEFAULT_SAMPLES})")
    g.addoption("--hil-timeout", type=float, metavar="S",
                help="seconds to wait for each sample's estimates (default 2, qemu 10)")
    g.addoption("--hil-interface", metavar="NAME", help="target board: python-can interface, e.g. socketcan, pcan")
    g.addoption("--hil-channel", metavar="NAME", help="target board: python-can channel, e.g. can0")
    g.addoption("--hil-bitrate", type=int, metavar="BIT/S", help="target board: bit rate (the boards use 500000)")
    g.addoption("--hil-bus-option", action="append", default=[], metavar="KEY=VALUE",
                help="target board: any other python-can bus argument (repeatable)")


def pytest_configure(config: pytest.Config) -> None:
    # Checked here, not in each test; the harness is imported only for a
    # target other than the default, i.e. only when a HIL run is asked for.
    name = config.getoption("hil_target")
    if name != DEFAULT_TARGET:
        from bmsfil_hil.targets import TARGETS

        if name not in TARGETS:
            raise pytest.UsageError(f"--hil-target {name!r}: known targets are {', '.join(TARGETS)}")
    if config.getoption("hil_variant") and name != "micropython":
        raise pytest.UsageError(f"--hil-variant is the micropython target's, not {name}'s")
    if config.getoption("hil_samples") < 0:
        raise pytest.UsageError("--hil-samples must be 0 (all) or more")
    timeout = config.getoption("hil_timeout")
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise pytest.UsageError(f"--hil-timeout {timeout:g}: expected a number of seconds above 0")
    given = config.getoption("hil_recording")
    for path in given:
        if path.is_dir():
            raise pytest.UsageError(f"--hil-recording {path}: a directory; give each recording file "
                                    "(--hil-recording once per file)")
        if not path.is_file():
            raise pytest.UsageError(f"--hil-recording {path}: no such file")
    if given:
        # Read now, once: a file that is not a recording is a usage error, not an error in every test.
        from bmsfil.importers import load_any

        loaded = []
        for path in given:
            try:
                loaded.append(load_any(path))
            except Exception as exc:  # noqa: BLE001 - any reader's failure is the file's
                raise pytest.UsageError(f"--hil-recording {path}: not a recording bmsfil reads: {exc}") from None
        config.stash[_RECORDINGS] = loaded
    if config.getoption("hil_params") is not None or given:
        # The set given, or the bundled one for the recordings' data set, as `bmsfil hil run` takes it
        # (the NASA PCoE set for NASA files).
        from bmsfil.params import ParamsError, params_for

        try:
            config.stash[_PARAMS] = params_for(config.getoption("hil_params"), [str(p) for p in given])[0]
        except (ParamsError, OSError, ValueError) as exc:
            raise pytest.UsageError(f"--hil-params: {exc}") from None
    from bmsfil_hil.busopts import BusOptionError, bus_config, option_keys, resolve_bus

    options = config.getoption("hil_bus_option")
    try:
        given = bus_config(config.getoption("hil_interface"), config.getoption("hil_channel"),
                           config.getoption("hil_bitrate"), options)
    except BusOptionError as exc:
        raise pytest.UsageError(f"--hil-bus-option: {exc}") from None
    if name == "board":
        try:
            resolve_bus(given, option_keys(options))
        except BusOptionError as exc:
            raise pytest.UsageError(f"--hil-target board: {exc} (here --hil-interface, --hil-channel, "
                                    "--hil-bus-option)") from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes `hil_recording` runs once per --hil-recording.
    Only such tests are touched."""
    if "hil_recording" not in metafunc.fixturenames:
        return
    opts = HilOptions.from_config(metafunc.config)
    metafunc.parametrize("hil_recording", range(len(opts.recordings) or 1), indirect=True, scope="session",
                         ids=opts.recording_ids())


@dataclass(frozen=True)
class HilOptions:
    """The run's --hil-* options, resolved."""

    target: str
    variant: str | None  # the micropython target's estimator (None: its default)
    params: Path | None
    recordings: tuple[Path, ...]  # empty: the bundled recording
    samples: int
    timeout_s: float
    bus_config: dict[str, object]

    @classmethod
    def from_config(cls, config: pytest.Config) -> "HilOptions":
        target = config.getoption("hil_target")
        timeout = config.getoption("hil_timeout")
        from bmsfil_hil.busopts import bus_config

        bus = bus_config(config.getoption("hil_interface"), config.getoption("hil_channel"),
                         config.getoption("hil_bitrate"), config.getoption("hil_bus_option"))
        return cls(
            target=target,
            variant=config.getoption("hil_variant"),
            params=config.getoption("hil_params"),
            recordings=tuple(config.getoption("hil_recording")),
            samples=config.getoption("hil_samples"),
            timeout_s=timeout if timeout is not None else DEFAULT_TIMEOUT_S.get(target, DEFAULT_TIMEOUT_OTHER_S),
            bus_config=bus,
        )

    def recording_ids(self) -> list[str]:
        if not self.recordings:
            from bmsfil.bundled import BUNDLED_RECORDING

            return [Path(BUNDLED_RECORDING).stem]
        # Each file's stem, with as many of its folders as tell it from the others of that name
        # (a/data/x.csv, b/data/x.csv: a/data/x, b/data/x), not pytest's x0, x1.
        # (x.csv beside x.npz: their file names.)
        stems = [Path(p.name.removesuffix(".gz")).stem for p in self.recordings]
        paths = [(*p.absolute().parent.parts[1:], stem if stems.count(stem) == 1 or
                  len({q.name for q, t in zip(self.recordings, stems) if t == stem}) == 1 else p.name)
                 for p, stem in zip(self.recordings, stems)]
        ids = []
        for parts in paths:
            k = 1
            while k < len(parts) and sum(q[-k:] == parts[-k:] for q in paths) > 1:
                k += 1
            ids.append("/".join(parts[-k:]))
        return ids


@dataclass
class StartedTarget:
    target: "Target"
    bus: "can.BusABC"


class HilTargets:
    """Starts targets as the options say; `stop_all()` (the fixture's
    teardown) stops every one started, also after a failed test."""

    def __init__(self, opts: HilOptions, params: "ParameterSet") -> None:
        self.name = opts.target
        self.opts = opts
        self.params = params
        self._started: list["Target"] = []

    def start(self) -> StartedTarget:
        from bmsfil_hil.firmware import FirmwareError
        from bmsfil_hil.micropython import MicroPythonError
        from bmsfil_hil.qemu import QemuError
        from bmsfil_hil.targets import BusOpenError, make_target

        if self.name == "qemu":
            _require_tools(QEMU_TOOLS)
        if self.name == "board":
            target = make_target(self.name, self.params, self.opts.bus_config)
        else:
            target = make_target(self.name, self.params, variant=self.opts.variant)
        self._started.append(target)
        try:
            bus = target.start()
        except (FirmwareError, QemuError, MicroPythonError, BusOpenError) as exc:
            pytest.fail(f"target {self.name} did not start: {exc}", pytrace=False)
        return StartedTarget(target, bus)

    def stop_all(self) -> None:
        while self._started:
            self._started.pop().stop()


def _require_tools(tools: tuple[str, ...]) -> None:
    """Skip without the firmware tools, fail where they must be
    (BMSFIL_REQUIRE_FIRMWARE_TOOLS=1, as under scripts/test.sh)."""
    missing = [t for t in tools if shutil.which(t) is None]
    if not missing:
        return
    why = f"{', '.join(missing)} not installed (scripts/install-firmware-tools.sh)"
    if os.environ.get("BMSFIL_REQUIRE_FIRMWARE_TOOLS") == "1":
        pytest.fail(why, pytrace=False)
    pytest.skip(why)


@dataclass(repr=False)
class HilRun:
    """One recording replayed through a target, scored."""

    target: str
    recording: "Recording"          # as replayed (cut to --hil-samples)
    result: "ReplayResult"
    evaluation: "Evaluation | None"  # score_trace against the reference SOC, as `bmsfil hil run`;
                                     # None when no estimate arrived or the recording has no reference
    host: "SocTrace"                # the host C core on the recording as the bus carries it
    elapsed_s: float
    variant: str | None = None      # the micropython target's estimator, when chosen
    not_scored: str | None = None   # why the estimates were not scored (no reference SOC), if so
    delivery: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.delivery = self.result.delivery.summary()

    def __repr__(self) -> str:
        return (f"HilRun(target={self.target!r}, recording={self.recording.meta.name!r}, "
                f"samples_done={self.result.samples_done}/{len(self.recording)}, fault={self.delivery['fault']!r})")

    @property
    def soc(self) -> "np.ndarray":
        return self.result.soc[:, 0]

    @property
    def samples_per_second(self) -> float:
        return self.result.samples_done / self.elapsed_s if self.elapsed_s > 0 else math.nan

    @property
    def max_abs_dsoc_vs_host(self) -> float:
        """Largest |SOC(target) - SOC(host C core)| over the samples answered
        (NaN if none was)."""
        import numpy as np

        n = self.result.samples_done
        d = np.abs(self.soc[:n] - self.host.soc[:n])
        return float(np.nanmax(d)) if n and np.isfinite(d).any() else math.nan

    def properties(self) -> list[tuple[str, object]]:
        """The run's numbers, as they go into the JUnit XML."""
        d = self.delivery
        ipcs = d["instructions_per_cell_step"]
        props: list[tuple[str, object]] = [
            ("target", self.target),
            *([("variant", self.variant)] if self.variant else []),
            ("recording", self.recording.meta.name),
            *([("ambient_temp_C", self.recording.meta.ambient_temp_C)]
              if self.recording.meta.ambient_temp_C is not None else []),
            ("samples", len(self.recording)),
            ("samples_done", self.result.samples_done),
        ]
        if self.not_scored is not None:
            props.append(("not_scored", self.not_scored))
        if self.evaluation is not None:
            s = self.evaluation.score
            props += [
                ("rmse_percent", s.rmse * 100),
                ("max_error_after_settle_percent", s.max_error_after_settle * 100),
                ("within_3sigma_percent", s.within_3sigma * 100),
                ("coulomb_rmse_percent", self.evaluation.coulomb_score.rmse * 100),
            ]
        props += [
            ("max_abs_dsoc_vs_host_core", self.max_abs_dsoc_vs_host),
            ("samples_per_second", self.samples_per_second),
            ("round_trip_p50_ms", d["round_trip_p50_ms"]),
            ("round_trip_p99_ms", d["round_trip_p99_ms"]),
            ("undecodable_frames", d["undecodable_frames"]),
            ("unexpected_frames", d["unexpected_frames"]),
            ("target_faults", len(d["target_faults"])),
        ]
        if ipcs is not None:
            props += [("instructions_per_cell_step_mean", ipcs["mean"]),
                      ("instructions_per_cell_step_max", ipcs["max"])]
        for part, x in (d["instructions_per_cell_step_by_part"] or {}).items():
            if x is not None:
                props += [(f"instructions_per_cell_step_{part}_mean", x["mean"]),
                          (f"instructions_per_cell_step_{part}_max", x["max"])]
        if d["target_faults"]:
            props.append(("first_target_fault", d["target_faults"][0]))
        if d["fault"]:
            props.append(("fault", d["fault"]))
        return props


def _property_value(value: object) -> object:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return value


class _Replays:
    """Replays for the session: a recording is replayed once per command set
    and the result reused by every test that asks for it (the lock-step
    replay is deterministic, and a QEMU boot per test would be slow)."""

    def __init__(self, opts: HilOptions, params: "ParameterSet") -> None:
        self.opts = opts
        self.params = params
        self._cache: dict[tuple[int, tuple[tuple[int, int], ...]], tuple["Recording", HilRun]] = {}

    def run(self, targets: HilTargets, rec: "Recording", commands: dict[int, Any] | None,
            log: "can.Listener | None", reuse: bool) -> HilRun:
        import numpy as np

        from bmsfil import can_contract as cc
        from bmsfil.core import SocEstimator, SocTrace
        from bmsfil.evaluate import score_trace
        from bmsfil.recording import RecordingError
        from bmsfil_hil.natmod import DEFAULT_VARIANT
        from bmsfil_hil.replay import as_carried, replay_lockstep
        from bmsfil_hil.targets import RESETTABLE

        commands = dict(commands or {})
        if commands and self.opts.target not in RESETTABLE:
            pytest.fail(f"target {self.opts.target} has no reset: replay with commands on "
                        f"{', '.join(RESETTABLE)}", pytrace=False)
        if self.opts.target == "board":
            # A board keeps its state between runs: each replay starts it
            # afresh, as the other targets start (`bmsfil hil run` does the same).
            commands.setdefault(-1, cc.HostCommandCode.RESTART_FRESH)
        key = (id(rec), tuple(sorted((k, int(v)) for k, v in commands.items())))
        if reuse and log is None and key in self._cache:
            return self._cache[key][1]
        started = targets.start()
        t0 = time.perf_counter()
        try:
            result = replay_lockstep(started.bus, [rec], timeout_s=self.opts.timeout_s, log=log,
                                     commands=commands or None)
        finally:
            elapsed = time.perf_counter() - t0
            targets.stop_all()
        trace = SocTrace(result.soc[:, 0], result.soc_sigma[:, 0], result.flags[:, 0])
        evaluation, not_scored = None, None
        if np.isfinite(trace.soc).any():
            try:
                evaluation = score_trace(rec, rec, trace, self.params)
            except RecordingError as exc:  # no reference SOC: delivered and compared, not scored
                not_scored = str(exc)
        run = HilRun(
            target=self.opts.target,
            recording=rec,
            result=result,
            evaluation=evaluation,
            host=SocEstimator(self.params).run(as_carried(rec)),
            elapsed_s=elapsed,
            variant=self.opts.variant or (DEFAULT_VARIANT if self.opts.target == "micropython" else None),
            not_scored=not_scored,
        )
        if log is None:
            self._cache[key] = (rec, run)  # rec kept alive: its id stays its own
        return run


@pytest.fixture(scope="session")
def hil_options(pytestconfig: pytest.Config) -> HilOptions:
    return HilOptions.from_config(pytestconfig)


@pytest.fixture(scope="session")
def hil_params(pytestconfig: pytest.Config) -> "ParameterSet":
    from bmsfil.params import bundled_params

    return pytestconfig.stash.get(_PARAMS, None) or bundled_params()


@pytest.fixture(scope="session")
def hil_recordings(pytestconfig: pytest.Config, hil_options: HilOptions) -> list["Recording"]:
    """The --hil-recording recordings (default: the bundled one), each cut
    to its first --hil-samples samples."""
    from bmsfil.bundled import bundled_recording

    recs = pytestconfig.stash.get(_RECORDINGS, None) or [bundled_recording()]
    n = hil_options.samples
    return [r.slice(0, n) if 0 < n < len(r) else r for r in recs]


@pytest.fixture(scope="session")
def hil_recording(request: pytest.FixtureRequest, hil_options: HilOptions,
                  hil_recordings: list["Recording"]) -> "Recording":
    """One of `hil_recordings`: tests taking it are parametrized over them (over the
    --hil-recording options, at collection; a conftest's own `hil_recordings` of another
    number of recordings fails here rather than testing only some of them)."""
    if len(hil_recordings) != (len(hil_options.recordings) or 1):
        pytest.fail(f"hil_recordings holds {len(hil_recordings)} recording(s), and the tests are parametrized over "
                    f"{len(hil_options.recordings) or 1} (one per --hil-recording, at collection): give the "
                    "recordings with --hil-recording rather than by a fixture of your own", pytrace=False)
    return hil_recordings[request.param]


@pytest.fixture(scope="session")
def _hil_replays(hil_options: HilOptions, hil_params: "ParameterSet") -> _Replays:
    return _Replays(hil_options, hil_params)


@pytest.fixture
def hil_target(hil_options: HilOptions, hil_params: "ParameterSet") -> Iterator[HilTargets]:
    """Starts targets of the --hil-target kind (``hil_target.start()``
    returns a `StartedTarget`: the target and its bus); each is stopped at
    teardown."""
    targets = HilTargets(hil_options, hil_params)
    try:
        yield targets
    finally:
        targets.stop_all()


@pytest.fixture
def hil_bus(hil_target: HilTargets) -> "can.BusABC":
    """The python-can bus of a started target (stopped at teardown)."""
    return hil_target.start().bus


@pytest.fixture
def hil_replay(request: pytest.FixtureRequest, hil_options: HilOptions, hil_params: "ParameterSet",
               _hil_replays: _Replays) -> Iterator[Callable[..., HilRun]]:
    """``hil_replay(rec, commands=None, log=None, record=True, reuse=True)``:
    replay `rec` through a fresh target in lock-step and score it. The
    run's metrics become properties of the test (record=True); a run
    without a log is reused by later calls with the same recording object
    and commands (reuse=True)."""
    targets = HilTargets(hil_options, hil_params)

    def replay(rec: "Recording", commands: dict[int, Any] | None = None, log: "can.Listener | None" = None,
               record: bool = True, reuse: bool = True) -> HilRun:
        run = _hil_replays.run(targets, rec, commands, log, reuse)
        if record:
            for name, value in run.properties():
                request.node.user_properties.append((name, _property_value(value)))
        return run

    try:
        yield replay
    finally:
        targets.stop_all()
