#!/usr/bin/env bash
# Set up and run the whole test suite: the C core's own tests (warnings as
# errors, sanitizers, no-libm check), the firmware build of every board and
# the emulated-firmware (QEMU) tests, and pytest including slow tests, with
# JUnit XML in test-results/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
# PyBaMM for the export check (tests/test_export_pybamm.py): about 20 s here,
# but 550 MB, so it is an extra of its own and not in `test`.
.venv/bin/python -m pip install -q -e '.[test,pybamm]'
scripts/install-firmware-tools.sh
# Here a missing toolchain or QEMU fails the firmware tests instead of skipping them.
export BMSFIL_REQUIRE_FIRMWARE_TOOLS=1
mkdir -p test-results
status=0
# xunit1: the JUnit schema that keeps the properties tests record (metrics).
.venv/bin/python -m pytest -m "" -o junit_family=xunit1 --junitxml=test-results/pytest.xml "$@" || status=$?
# The HIL regression suite (hil/tests, bmsfil_hil/pytest_plugin.py) on the
# host C core, on the firmware in QEMU and on the MicroPython port (both estimator variants); each test case's metrics are
# properties in the XML (xunit1: the schema that allows them). Not given
# "$@": those arguments name tests/ tests.
for target in host qemu micropython; do
    code=0
    .venv/bin/python -m pytest hil/ --hil-target "$target" -o junit_family=xunit1 \
        --junitxml="test-results/hil-$target.xml" || code=$?
    if [ "$status" -eq 0 ]; then status=$code; fi
done
# The MicroPython port again with the C core as a native .mpy module (built
# here: firmware/micropython/natmod, the first build downloads MicroPython's
# build files as the sdist mpy-cross-v6-3==1.1.1 with pip).
code=0
.venv/bin/python -m pytest hil/ --hil-target micropython --hil-variant native -o junit_family=xunit1 \
    --junitxml="test-results/hil-micropython-native.xml" || code=$?
if [ "$status" -eq 0 ]; then status=$code; fi
# pytest's exit 5 means no test ran: that is a failure here too.
exit "$status"
