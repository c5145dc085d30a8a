#!/usr/bin/env bash
# Set up and run the whole test suite: the C core's own tests (warnings as
# errors, sanitizers, no-libm check) and pytest including slow tests, with
# JUnit XML in test-results/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
mkdir -p test-results
status=0
.venv/bin/python -m pytest -m "" --junitxml=test-results/pytest.xml "$@" || status=$?
# pytest's exit 5 means no test ran: that is a failure here too.
exit "$status"
