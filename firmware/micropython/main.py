"""Entry point of the MicroPython target on the unix port:

    micropython firmware/micropython/main.py [PORT] [PARAMS_JSON] [VARIANT]

PORT defaults to $BMSFIL_PORT, else 29536; PARAMS_JSON to $BMSFIL_PARAMS,
else the bundled host/bmsfil/data/lg_hg2.json of the checkout. VARIANT (else
$BMSFIL_VARIANT, else python) chooses the estimator: `python`, the pure
MicroPython bmsfil_ekf, or `native`, the C core as the native module
bmsfil_c.mpy (bmsfil_native), looked for in $BMSFIL_NATMOD_DIR, else
natmod/build/<arch>/ of the checkout, else beside this file. Serves the CAN
contract over SLCAN on 127.0.0.1:PORT (app.py) until killed.
"""

import os
import sys


def _here():
    path = sys.argv[0] if sys.argv and sys.argv[0] else "main.py"
    i = path.rfind("/")
    return path[:i] if i >= 0 else "."


# sys.implementation._mpy bits 10..15: the native architecture of the port.
_ARCHS = (None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp", "xtensa",
          "xtensawin", "rv32imc")


def native_arch():
    mpy = getattr(sys.implementation, "_mpy", 0)
    n = (mpy >> 10) & 0x3F
    return _ARCHS[n] if n < len(_ARCHS) else None


def _fail(msg):
    print("bmsfil micropython target:", msg)
    sys.exit(1)


def estimator(variant, here):
    """The estimator module of a variant (see the module's docstring)."""
    if variant == "python":
        import bmsfil_ekf

        return bmsfil_ekf
    if variant != "native":
        _fail("unknown variant %r: python or native" % variant)
    arch = native_arch()
    for d in (here + "/natmod/build/" + str(arch), os.getenv("BMSFIL_NATMOD_DIR")):  # the last first
        if d and d not in sys.path:
            sys.path.insert(0, d)
    try:
        import bmsfil_native
    except ImportError as exc:
        _fail("variant native: %s; build bmsfil_c.mpy with `make -C firmware/micropython/natmod ARCH=%s` "
              "(this port's architecture)" % (exc, arch))
    return bmsfil_native


def main(argv):
    here = _here()
    if here not in sys.path:
        sys.path.insert(0, here)
    import app
    import bmsfil_ekf

    port = int(argv[1]) if len(argv) > 1 else int(os.getenv("BMSFIL_PORT") or 29536)
    path = argv[2] if len(argv) > 2 else (os.getenv("BMSFIL_PARAMS") or here + "/../../host/bmsfil/data/lg_hg2.json")
    variant = argv[3] if len(argv) > 3 else (os.getenv("BMSFIL_VARIANT") or "python")
    est = estimator(variant, here)
    params = bmsfil_ekf.load_params(path)
    if variant == "native":
        est.packed(params)  # the C core checks the parameter set now, not at the first cell
    app.serve(params, port, estimator=est)


if __name__ == "__main__":  # bench.py imports the helpers above
    main(sys.argv)
