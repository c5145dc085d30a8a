"""Run on MicroPython's unix port by tests/test_micropython_pybcan.py, with
$BMSFIL_TEST_FRAMES set (see pyb.py beside this file):

    micropython pybcan_script.py PARAMS_JSON VARIANT

bmsfil_pybcan.PybCanLink serving the contract on the pyb.CAN stand-in;
after the frames, prints "END send_errors lost bus_events".
"""

import sys

import app
import bmsfil_ekf
import bmsfil_pybcan
import pyb


def main():
    params = bmsfil_ekf.load_params(sys.argv[1])
    estimator = app.estimator_for(sys.argv[2], params)
    link = bmsfil_pybcan.PybCanLink(pyb.CAN(1, pyb.CAN.NORMAL, baudrate=500000), params, pyb.CAN.MASK16, estimator)
    try:
        link.serve()
    except SystemExit:
        pass
    print("END %d %d %d" % (link.send_errors, link.lost, link.bus_events))


main()
