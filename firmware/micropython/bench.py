"""Step time per cell of both estimator variants, in one MicroPython process:

    micropython bench.py PARAMS_JSON SAMPLES_F32 [CELLS] [VARIANTS] [REPEAT]

SAMPLES_F32 holds the samples as little-endian float32 quadruples (dt_s,
current_A, voltage_V, temp_C); scripts/micropython_bench.py writes it from a
recording and runs this on the unix port. CELLS cells (default 1) are each
started from the first sample's OCV and stepped through every sample;
VARIANTS is `python,native` (default) or one of them, each timed REPEAT
times (default 5, alternating) and reported by its fastest run. The native variant's
bmsfil_c.mpy is looked for as main.py looks for it ($BMSFIL_NATMOD_DIR,
natmod/build/<arch>/, beside this file).

Prints one JSON line per variant: cell steps, total microseconds
(time.ticks_us around the stepping only; the input is decoded before) and
microseconds per cell step; with native also `native_call`, the bare
bmsfil_c.step call on the same buffers (the wrapper's share is the
difference); then the ratio python / native when both ran.
"""

import gc
import json
import struct
import sys
import time


def _here():
    path = sys.argv[0] if sys.argv and sys.argv[0] else "bench.py"
    i = path.rfind("/")
    return path[:i] if i >= 0 else "."


def read_samples(path):
    with open(path, "rb") as f:
        data = f.read()
    n = len(data) // 16
    return [struct.unpack_from("<4f", data, 16 * k) for k in range(n)]


def bench(module, params, samples, cells):
    ekfs = []
    dt0, i0, v0, t0 = samples[0]
    for _ in range(cells):
        e = module.SocEkf(params)
        e.init_ocv(v0, t0)
        ekfs.append(e)
    gc.collect()
    start = time.ticks_us()
    soc = 0.0
    for dt, cur, v, t in samples:
        for e in ekfs:
            soc = e.step(dt, cur, v, t)[0]
    us = time.ticks_diff(time.ticks_us(), start)
    steps = len(samples) * cells
    return {"cell_steps": steps, "us": us, "us_per_cell_step": us / steps, "final_soc": soc}


def bench_call(module, params, samples, cells):
    """The native variant without bmsfil_native's method: bmsfil_c.step on the
    cells' buffers (what the wrapper adds is the difference)."""
    import bmsfil_c

    ekfs = []
    dt0, i0, v0, t0 = samples[0]
    for _ in range(cells):
        e = module.SocEkf(params)
        e.init_ocv(v0, t0)
        ekfs.append((e.state, e.cell, e.tuning))
    step = bmsfil_c.step
    gc.collect()
    start = time.ticks_us()
    for dt, cur, v, t in samples:
        for state, cell, tuning in ekfs:
            step(state, cell, tuning, dt, cur, v, t)
    us = time.ticks_diff(time.ticks_us(), start)
    steps = len(samples) * cells
    return {"cell_steps": steps, "us": us, "us_per_cell_step": us / steps}


def main(argv):
    here = _here()
    if here not in sys.path:
        sys.path.insert(0, here)
    import main as app_main  # noqa: F401 (its helpers: estimator(), native_arch())

    import bmsfil_ekf

    params = bmsfil_ekf.load_params(argv[1])
    samples = read_samples(argv[2])
    cells = int(argv[3]) if len(argv) > 3 else 1
    variants = (argv[4] if len(argv) > 4 else "python,native").split(",")
    repeat = int(argv[5]) if len(argv) > 5 else 5
    modules = [(v, app_main.estimator(v, here)) for v in variants]
    runs = {v: [] for v in variants}
    if "native" in variants:
        variants.append("native_call")
        runs["native_call"] = []
    for _ in range(repeat):
        for variant, module in modules:
            runs[variant].append(bench(module, params, samples, cells))
            if variant == "native":
                runs["native_call"].append(bench_call(module, params, samples, cells))
    results = {}
    for variant in variants:
        r = min(runs[variant], key=lambda x: x["us"])
        r["variant"] = variant
        r["arch"] = app_main.native_arch()
        r["repeat"] = repeat
        r["us_all"] = [x["us"] for x in runs[variant]]
        results[variant] = r
        print(json.dumps(r))
    if "python" in results and "native" in results:
        print(json.dumps({"ratio_python_over_native": results["python"]["us"] / results["native"]["us"]}))


main(sys.argv)
