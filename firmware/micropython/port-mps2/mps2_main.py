"""The bmsfil application on the emulated Cortex-M4F (QEMU mps2-an386):
the CAN contract over SLCAN on UART0, frozen into the MicroPython firmware
of port-mps2/ and imported at boot.

The application is app.py's, unchanged (App, Slcan), with this transport
instead of the unix port's TCP socket: bytes read from UART0 (`mps2.read`)
feed the SLCAN parser, each batch of replies goes out together (app.write_lines), a
TargetStatus goes out at boot (when the harness has connected: QEMU waits
for it) and after a second without traffic. The parameter set
(mps2_config.PARAMS, the JSON of a ParameterSet) and the estimator
(mps2_config.VARIANT: `python`, bmsfil_ekf in MicroPython, or `native`, the
C core as the native module bmsfil_c.mpy built into the image) are chosen
at build time (the Makefile generates mps2_config.py).
Each cell step is timed with the board's instruction counter
(`mps2.icount`, exact under QEMU -icount); the mean per sample goes out in
TargetStatus.instructions_per_cell_step, as the bare-metal firmware does.
"""

import mps2

import app
import bmsfil_ekf
import mps2_config

HEARTBEAT_MS = 1000


def main():
    params = bmsfil_ekf.Params(mps2_config.PARAMS)
    estimator = app.estimator_for(mps2_config.VARIANT, params)
    out = []

    def send_frame(fid, data):
        out.append(app.frame_line(fid, data))

    a = app.App(params, send_frame, estimator, icount=mps2.icount)
    link = app.Slcan(a, out.append)
    print("bmsfil micropython target on mps2-an386: SLCAN on UART0 (%s, %s)" % (params.name, estimator.__name__))
    a.send_status()  # the boot status
    buf = bytearray(512)
    while True:
        if out:
            app.write_lines(mps2.write, out)
            del out[:]
        if not mps2.wait(HEARTBEAT_MS):
            a.send_status()  # heartbeat
            continue
        n = mps2.read(buf)
        if n:
            link.feed(bytes(buf[:n]))


main()
