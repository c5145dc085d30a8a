"""Entry point of the MicroPython target on the unix port:

    micropython firmware/micropython/main.py [PORT] [PARAMS_JSON]

PORT defaults to $BMSFIL_PORT, else 29536; PARAMS_JSON to $BMSFIL_PARAMS,
else the bundled host/bmsfil/data/lg_hg2.json of the checkout. Serves the CAN contract over SLCAN on
127.0.0.1:PORT (app.py) until killed.
"""

import os
import sys


def _here():
    path = sys.argv[0] if sys.argv and sys.argv[0] else "main.py"
    i = path.rfind("/")
    return path[:i] if i >= 0 else "."


def main(argv):
    here = _here()
    if here not in sys.path:
        sys.path.insert(0, here)
    import app
    import bmsfil_ekf

    port = int(argv[1]) if len(argv) > 1 else int(os.getenv("BMSFIL_PORT") or 29536)
    path = argv[2] if len(argv) > 2 else (os.getenv("BMSFIL_PARAMS") or here + "/../../host/bmsfil/data/lg_hg2.json")
    params = bmsfil_ekf.load_params(path)
    app.serve(params, port)


main(sys.argv)
