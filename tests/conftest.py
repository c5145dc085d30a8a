"""CI runs hypothesis derandomized, so that a run is repeatable and a
failure can be reproduced from the log; developers' runs keep exploring."""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
