"""Many cells of one series string through the C core in one call: `PackEstimator`.

Every cell shares the parameter set and tuning; each time step has one
interval and one pack current and a voltage and temperature per cell
(`bf_soc_ekf_pack_run`, csrc/include/bmsfil/soc_ekf_pack.h). Cell c's
estimates are bit for bit what `SocEstimator` gives that cell alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bmsfil._core import ffi, lib
from bmsfil.core import CoreError, STATUS_NAMES, _check, as_f32, expect_params, pack_cell_params, pack_tuning
from bmsfil.params import ParameterSet

#: Rows of the state (BF_SOC_EKF_PACK_FIELDS): x[0..3], the upper triangle
#: of P, the last good current and temperature, the hysteresis sign, the
#: count of failed steps.
PACK_FIELDS = lib.BF_SOC_EKF_PACK_FIELDS
#: PackEstimator(code=...): which lane code bf_soc_ekf_pack_run may take.
CODE_OPTIONS = {"auto": 0, "avx2": lib.BF_SOC_EKF_PACK_NO_AVX512, "portable": lib.BF_SOC_EKF_PACK_PORTABLE}


@dataclass(frozen=True)
class PackTrace:
    """Per-sample, per-cell output (n samples x N cells): SOC, its 1-sigma, the step flags."""

    soc: np.ndarray
    soc_sigma: np.ndarray
    flags: np.ndarray


class PackEstimator:
    """N cells' SOC EKFs stepped together by the C core.

    >>> pk = PackEstimator(bundled_params(), n_cells=10_000)
    >>> pk.init_ocv(voltage_V=v0, temp_C=t0)          # arrays of N
    >>> trace = pk.run(dt, current, voltage, temp)     # dt, current: (n,); voltage, temp: (n, N)
    """

    def __init__(self, params: ParameterSet, n_cells: int, code: str = "auto") -> None:
        """code="portable" runs the plain C99 lane code (SSE2 on x86-64) even on
        a CPU for which the module has AVX2 or AVX-512 code, "avx2" no wider
        than AVX2, "auto" the widest the CPU has; the results are the same bits
        either way (`code_path` says which runs)."""
        if code not in CODE_OPTIONS:
            raise ValueError(f"code must be one of {', '.join(CODE_OPTIONS)}, got {code!r}")
        if not isinstance(n_cells, (int, np.integer)) or isinstance(n_cells, bool) or n_cells < 0:
            raise ValueError(f"n_cells must be a whole number >= 0, got {n_cells!r}")
        self.params = expect_params(params, "PackEstimator")
        self.n_cells = int(n_cells)
        self._cell = pack_cell_params(params)
        self._tuning = pack_tuning(params.filter)
        #: The state, structure of arrays: row f of cell c at data[f, c].
        self.data = np.zeros((PACK_FIELDS, self.n_cells), dtype=np.float32)
        self._pack = ffi.new("bf_soc_ekf_pack_t *")
        # The C struct points into self.data (which must stay this array).
        self._data_buf = ffi.from_buffer("float[]", self.data) if self.n_cells else ffi.NULL
        self._pack.data = self._data_buf
        self._pack.n_cells = self.n_cells
        self._pack.options = CODE_OPTIONS[code]
        self.init_soc(1.0, 25.0)

    def _per_cell(self, values: np.ndarray | float, what: str) -> np.ndarray:
        """One float32 per cell (a scalar is every cell's)."""
        try:
            a = np.broadcast_to(np.asarray(values, dtype=np.float32), (self.n_cells,))
        except ValueError:
            raise ValueError(f"{what}: expected a number or {self.n_cells} values, got shape "
                             f"{np.shape(values)}") from None
        return np.ascontiguousarray(a)

    def init_soc(self, soc: np.ndarray | float, temp_C: np.ndarray | float) -> None:
        s, t = self._per_cell(soc, "soc"), self._per_cell(temp_C, "temp_C")
        _check(lib.bf_soc_ekf_pack_init_soc(self._pack, self._cell, self._tuning, ffi.from_buffer("float[]", s),
                                            ffi.from_buffer("float[]", t)), "pack init_soc")

    def init_ocv(self, voltage_V: np.ndarray | float, temp_C: np.ndarray | float) -> None:
        v, t = self._per_cell(voltage_V, "voltage_V"), self._per_cell(temp_C, "temp_C")
        _check(lib.bf_soc_ekf_pack_init_ocv(self._pack, self._cell, self._tuning, ffi.from_buffer("float[]", v),
                                            ffi.from_buffer("float[]", t)), "pack init_ocv")

    @property
    def failed_steps(self) -> np.ndarray:
        """Per cell, how many steps failed since init (BF_E_NUMERIC: the cell
        kept its state from before each)."""
        return self.data[lib.BF_SOC_EKF_PACK_FAILS].astype(np.int64)

    @property
    def code_path(self) -> str:
        """"portable", "avx2" or "avx512": the lane code `run` takes on this CPU."""
        return ffi.string(lib.bf_soc_ekf_pack_code_path(self._pack)).decode()

    def cell_state(self, cell: int) -> "ffi.CData":
        """Cell `cell`'s state as the single-cell `bf_soc_ekf_t`."""
        s = ffi.new("bf_soc_ekf_t *")
        _check(lib.bf_soc_ekf_pack_get(self._pack, cell, s), "pack get")
        return s

    @property
    def soc(self) -> np.ndarray:
        return self.data[0].astype(np.float64)

    def run(self, dt_s: np.ndarray, current_A: np.ndarray, voltage_V: np.ndarray, temp_C: np.ndarray,
            outputs: bool = True, out: PackTrace | None = None) -> PackTrace | None:
        """n samples of every cell in one C call, continuing from the current state.

        Raises CoreError if a cell's step failed (BF_E_NUMERIC) after the whole
        run (the trace is in the error's `trace` attribute, the cells in its
        `cells`; `failed_steps` counts per cell). outputs=False skips the (n, N) outputs; `out`
        (float32, float32, uint8 arrays of shape (n, N), C-contiguous) is
        written instead of new arrays, e.g. to reuse them from call to call.
        """
        dt, cur = as_f32(dt_s), as_f32(current_A)
        n = len(dt)
        volt, temp = as_f32(voltage_V), as_f32(temp_C)
        if cur.shape != (n,) or volt.shape != (n, self.n_cells) or temp.shape != (n, self.n_cells):
            raise ValueError(f"run: expected dt_s and current_A of shape ({n},) and voltage_V, temp_C of shape "
                             f"({n}, {self.n_cells}); got {cur.shape}, {volt.shape}, {temp.shape}")
        if out is not None:
            soc, sigma, flags = out.soc, out.soc_sigma, out.flags
            for a, dtype in ((soc, np.float32), (sigma, np.float32), (flags, np.uint8)):
                if a.shape != (n, self.n_cells) or a.dtype != dtype or not a.flags.c_contiguous:
                    raise ValueError(f"run: out arrays must be C-contiguous float32, float32, uint8 of shape "
                                     f"({n}, {self.n_cells})")
        elif outputs:
            soc = np.empty((n, self.n_cells), dtype=np.float32)
            sigma = np.empty((n, self.n_cells), dtype=np.float32)
            flags = np.empty((n, self.n_cells), dtype=np.uint8)
        if out is not None or outputs:
            outs = [ffi.from_buffer("float[]", soc), ffi.from_buffer("float[]", sigma),
                    ffi.from_buffer("uint8_t[]", flags)]
        else:
            outs = [ffi.NULL, ffi.NULL, ffi.NULL]
        fails_before = self.data[lib.BF_SOC_EKF_PACK_FAILS].copy()
        st = lib.bf_soc_ekf_pack_run(self._pack, self._cell, self._tuning, ffi.from_buffer("float[]", dt),
                                     ffi.from_buffer("float[]", cur), ffi.from_buffer("float[]", volt),
                                     ffi.from_buffer("float[]", temp), n, *outs)
        trace = PackTrace(soc, sigma, flags) if (outputs or out is not None) else None
        if st != lib.BF_OK:
            cells = np.flatnonzero(self.data[lib.BF_SOC_EKF_PACK_FAILS] != fails_before)
            shown = ", ".join(str(c) for c in cells[:10]) + (", ..." if len(cells) > 10 else "")
            err = CoreError(f"pack run: {STATUS_NAMES.get(st, f'status {st}')}"
                            + (f" in {len(cells)} cell(s): {shown}" if len(cells) else ""))
            err.trace = trace  # type: ignore[attr-defined]
            err.cells = cells  # type: ignore[attr-defined]
            raise err
        return trace
