"""Stateful property test of the replay engine under faults (hypothesis):
one `host` target kept across rules; each rule replays a chunk of the real
recording through a FaultyBus with drawn loss, duplication, reordering,
lateness and bit flips, or with sensor values replaced by NaN or absurd
numbers. After every rule: the run was not ended by a fault, no estimate
that came back is NaN or outside [0, 1], every sample is either answered or
counted lost, and a lost or late frame shows as a lost sample."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bmsfil.bundled import bundled_recording
from bmsfil.params import bundled_params
from bmsfil_hil.faults import FaultyBus
from bmsfil_hil.replay import ReplayResult, replay_lockstep
from bmsfil_hil.targets import make_target

REC = bundled_recording().slice(0, 6000)
PARAMS = bundled_params()
probability = st.sampled_from([0.0, 0.01, 0.05, 0.2, 0.5])
bad_value = st.sampled_from([np.nan, np.inf, -np.inf, 1e30, -1e30, 0.0, -5.0])


class ReplayUnderFaults(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.target = make_target("host", PARAMS)
        self.bus = self.target.start()
        self.result: ReplayResult | None = None
        self.counts: dict[str, int] = {}

    def teardown(self) -> None:
        self.target.stop()

    def _replay(self, rec, **fault: float) -> None:
        faulty = FaultyBus(self.bus, lambda: True, seed=len(rec), delay_s=0.03, **fault)
        try:
            self.result = replay_lockstep(faulty, [rec], timeout_s=0.02, on_timeout="skip")
        finally:
            faulty.shutdown()
        self.counts = faulty.counts
        # Late answers of the last sample would land in the next rule's replay: drain them.
        while self.bus.recv(timeout=0.0) is not None:
            pass

    @rule(start=st.integers(0, len(REC) - 200), n=st.integers(1, 150), drop=probability, duplicate=probability,
          reorder=probability, corrupt=probability, delay=st.sampled_from([0.0, 0.02]))
    def bus_faults(self, start, n, drop, duplicate, reorder, corrupt, delay):
        self._replay(REC.slice(start, start + n), drop=drop, duplicate=duplicate, reorder=reorder,
                     corrupt=corrupt, delay=delay)

    @rule(start=st.integers(0, len(REC) - 200), n=st.integers(1, 150), which=st.sampled_from(
        ["voltage_V", "current_A", "temp_C"]), value=bad_value, every=st.integers(1, 10))
    def sensor_faults(self, start, n, which, value, every):
        rec = REC.slice(start, start + n)
        values = getattr(rec, which).copy()
        values[::every] = value
        try:
            altered = type(rec)(**{**{f: getattr(rec, f) for f in ("time_s", "current_A", "voltage_V", "temp_C",
                                                                     "meta", "ah")}, which: values})
        except ValueError:
            return  # a recording cannot hold it (the importers refuse such files)
        self._replay(altered)

    @precondition(lambda self: self.result is not None)
    @invariant()
    def nothing_broken_and_everything_counted(self):
        r = self.result
        d = r.delivery
        assert d.fault is None, d.fault
        soc = r.soc[:, 0]
        answered = ~np.isnan(soc)
        assert np.all((soc[answered] >= 0.0) & (soc[answered] <= 1.0))
        sigma = r.soc_sigma[:, 0]
        assert np.all(np.isfinite(sigma[answered]) & (sigma[answered] >= 0.0))
        assert d.samples_sent == len(soc) == r.samples_done
        # An estimate that never came is a sample counted lost, or one whose
        # estimate came back not valid (soc_valid 0) and is counted received.
        assert int(answered.sum()) + d.samples_lost >= len(soc) - (d.estimates_received - int(answered.sum()))
        # A lost or late frame always costs its sample (a duplicated MeasPack,
        # by contrast, changes nothing for this target: nothing to see),
        # unless it was one copy of a duplicated frame, whose other copy came.
        if (self.counts.get("dropped") or self.counts.get("delayed")) and not self.counts.get("duplicated"):
            assert d.samples_lost > 0


TestReplayUnderFaults = pytest.mark.slow(ReplayUnderFaults.TestCase)
TestReplayUnderFaults.settings = settings(max_examples=25, stateful_step_count=6, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
