#!/usr/bin/env bash
# Rebuild the bundled parameter set of the NASA PCoE 18650 cells
# (host/bmsfil/data/nasa_pcoe_18650.json) the way a user would build one for
# a new cell: `bmsfil fit` on the first two discharges of B0005 (2 A from
# full, the only tests the data set has). A 1C discharge alone cannot
# separate the OCV from the resistive drop, so the set's "OCV" is the 2 A
# discharge curve and its R0 is 0: good enough for the capacity and R0
# estimators (which learn from anchors and current steps), not for SOC under
# other loads. Run from the repository root; DATA defaults to ../shared/data.
set -euo pipefail
DATA=${DATA:-../shared/data}
BMSFIL=${BMSFIL:-.venv/bin/bmsfil}
FILE="$DATA/nasa_pcoe/B0005_discharge_timeseries.csv"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$BMSFIL" import "$FILE" --cycle 1 -o "$WORK/B0005_c001.npz"
"$BMSFIL" import "$FILE" --cycle 2 -o "$WORK/B0005_c002.npz"
"$BMSFIL" fit --ocv "$WORK/B0005_c001.npz" --dynamic "$WORK/B0005_c002.npz" --nominal-capacity 2.0 \
    --meta reference_initial_soc=1 --name nasa-pcoe-18650 -o host/bmsfil/data/nasa_pcoe_18650.json
