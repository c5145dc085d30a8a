"""The bmsfil MicroPython target on a pyboard v1.1: the board's boot script.

`bmsfil flash --board pyboard-v11` copies this file to the board as
main.py, with the application (firmware/micropython, as .mpy), the native
module bmsfil_c.mpy for the `native` variant, the parameter file and
bmsfil_config.py (generated: VARIANT, PARAMS, CAN_BUS, BAUDRATE). At boot
it serves the CAN contract on CAN(1) (Y3 = PB8 RX, Y4 = PB9 TX) through a
transceiver until the board is reset (bmsfil_pybcan.py).
"""

import app
import bmsfil_config
import bmsfil_ekf
import bmsfil_pybcan


def main():
    params = bmsfil_ekf.load_params(bmsfil_config.PARAMS)
    estimator = app.estimator_for(bmsfil_config.VARIANT, params)
    bmsfil_pybcan.run(params, estimator, bus=bmsfil_config.CAN_BUS, baudrate=bmsfil_config.BAUDRATE)


main()
