"""Many recordings at once: inputs from paths, globs and directories, run on
Dask (`dask.distributed`), a `LocalCluster` of N single-threaded worker
processes or an existing scheduler.

Results come back in the order of the inputs, whatever order the workers
finish in. A worker is given one task at a time (worker-saturation 1.0), so
that a worker that dies takes down only the task it was running, which runs
again on another worker (`RETRIES` more times, the scheduler's
allowed-failures) before it counts as failed. A task that fails, or whose
recording is bad, becomes a `Failed` naming the input and the cause; the
others are kept. (An existing scheduler keeps its own settings.)
"""

from __future__ import annotations

import glob as globlib
import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from dask.distributed import Client

    from bmsfil.core import InitialSoc
    from bmsfil.inject import SensorErrors
    from bmsfil.params import ParameterSet
    from bmsfil.recording import Recording
    from bmsfil.tuning import Targets

#: Suffixes taken from a directory given as input (what `bmsfil import` reads).
RECORDING_SUFFIXES = (".npz", ".parquet", ".csv", ".gz", ".zip", ".txt")
#: Files a directory search passes over although their suffix is a recording's: a data set's own notes.
NOT_RECORDINGS = ("readme", "license", "licence", "changelog")
#: Files a data set keeps beside its recordings, which importers read from there (NASA PCoE's).
COMPANION_FILES = ("metadata.csv",)
#: Times a task is run again after its worker died.
RETRIES = 1
#: Scheduler settings of the LocalCluster (see the module docstring).
LOCAL_SCHEDULER_CONFIG = {
    "distributed.scheduler.worker-saturation": 1.0,
    "distributed.scheduler.allowed-failures": RETRIES,
    # Workers forked from this process, which has numpy and the C core loaded
    # already, start in a fraction of the time fresh interpreters take.
    "distributed.worker.multiprocessing-method": "fork",
    # Dask's sampling profiler interrupts every task 100 times a second for
    # its dashboard, which the command does not show: 10 % of each task here.
    "distributed.worker.profile.enabled": False,
}

T = TypeVar("T")


class FleetError(RuntimeError):
    """The inputs or the cluster cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Failed:
    """A task that did not give a result, with the cause."""

    source: str
    cause: str


@dataclass(frozen=True)
class Outcome(Generic[T]):
    source: str
    result: T | None
    failure: Failed | None


def expand_inputs(items: Sequence[str | Path]) -> list[Path]:
    """Files from paths, glob patterns and directories (searched recursively
    for RECORDING_SUFFIXES), sorted within each item, duplicates (the same
    file, by whatever path or link) dropped."""
    out: list[Path] = []
    seen: set[Path] = set()
    for item in items:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(RECORDING_SUFFIXES)
                           and not p.name.lower().startswith(NOT_RECORDINGS) and p.name not in COMPANION_FILES
                           and (not p.name.endswith(".zip") or _zip_of_one(p)))
            if not found:
                raise FleetError(f"{path}: a directory without recordings ({', '.join(RECORDING_SUFFIXES)})")
        elif path.is_file():
            found = [path]
        elif any(ch in text for ch in "*?["):
            found = sorted(Path(p) for p in globlib.glob(text, recursive=True) if Path(p).is_file())
            if not found:
                raise FleetError(f"{text}: no file matches")
        else:
            raise FleetError(f"{text}: no such file, directory or pattern")
        for p in found:
            if (real := p.resolve()) not in seen:
                seen.add(real)
                out.append(p)
    return out


def _zip_of_one(path: Path) -> bool:
    """A zip that holds one file, which is read as that file (a folder's other archives, a
    download of many files, are not recordings)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return len([i for i in z.infolist() if not i.is_dir()]) == 1
    except (zipfile.BadZipFile, OSError):
        return True  # not a readable zip: the run says so, as for any damaged input


def _call(fn: Callable[..., T], source: str, args: tuple[object, ...]) -> tuple[str, T | None, str | None]:
    """A task: the result, or the error as text (a bad recording is not a dead worker: no retry)."""
    try:
        return source, fn(source, *args), None
    except Exception as exc:  # noqa: BLE001 - every failure is reported with its cause
        return source, None, describe_failure(exc)


#: What an import error may tell a user to give, which only `bmsfil import` takes.
_IMPORT_OPTIONS = ("--map", "--meta", "--current-sign", "=<column>")


def describe_failure(exc: BaseException) -> str:
    """An input's failure as eval reports it: a bad recording's error as it is (its message names
    the file, line and column), anything else with its type. An import error that asks for
    import's options says where they go: eval takes none of them."""
    from bmsfil.recording import RecordingError

    if not isinstance(exc, RecordingError):
        return f"{type(exc).__name__}: {exc}"
    text = str(exc)
    if any(option in text for option in _IMPORT_OPTIONS):
        text += (" (options of bmsfil import: import the file with them, bmsfil import FILE ... -o FILE.npz, "
                 "and eval the .npz)")
    return text


@contextmanager
def dask_client(workers: int | None, scheduler: str | None) -> Iterator["Client"]:
    """A Dask client: on the scheduler at `scheduler`, else on a LocalCluster
    of `workers` single-threaded processes (closed on exit)."""
    try:
        import dask
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise FleetError("--workers and --scheduler need Dask: pip install 'bmsfil[fleet]'") from None
    if scheduler is not None and workers is not None:
        raise FleetError(f"--workers {workers} starts a local cluster, and --scheduler {scheduler} names one: give one")
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as exc:
            raise FleetError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        cluster = None
    else:
        if workers is None or workers < 1:
            raise FleetError(f"--workers: expected 1 or more, got {workers}")
        with dask.config.set(LOCAL_SCHEDULER_CONFIG):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_many(
    fn: Callable[..., T],
    sources: Sequence[str],
    args: tuple[object, ...] = (),
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Callable[[int, Outcome[T]], None] | None = None,
) -> list[Outcome[T]]:
    """``fn(source, *args)`` for every source, in that order. Without
    `workers` and `scheduler` in this process, one after the other; else on
    Dask. `progress(done, outcome)` is called as each finishes."""
    outcomes: list[Outcome[T] | None] = [None] * len(sources)

    def finished(i: int, source: str, result: T | None, error: str | None) -> None:
        outcomes[i] = Outcome(source, result, Failed(source, error) if error is not None else None)
        if progress:
            progress(sum(o is not None for o in outcomes), outcomes[i])  # type: ignore[arg-type]

    if workers is None and scheduler is None:
        for i, source in enumerate(sources):
            finished(i, *_call(fn, source, args))
        return outcomes  # type: ignore[return-value]
    with dask_client(workers, scheduler) as client:
        from dask.distributed import KilledWorker, as_completed

        def submit(i: int, attempt: int) -> object:
            key = f"bmsfil-{i}-{attempt}-{Path(sources[i]).name}"
            return client.submit(_call, fn, sources[i], args, key=key, pure=False)

        futures = {submit(i, 0): (i, 0) for i in range(len(sources))}
        pending = as_completed(list(futures))
        for future in pending:
            i, attempt = futures[future]
            if future.status == "finished":
                finished(i, *future.result())
                continue
            exc = future.exception()
            # A task whose own worker died on every try failed; one that was
            # lost with another's worker (its result not yet fetched) runs again.
            own = isinstance(exc, KilledWorker) and exc.task == future.key
            if own or attempt >= RETRIES + 1:
                finished(i, sources[i], None, describe_failure(exc))
            else:
                again = submit(i, attempt + 1)
                futures[again] = (i, attempt + 1)
                pending.add(again)
    return outcomes  # type: ignore[return-value]


@contextmanager
def cost_pool(
    recs: Sequence[Recording], targets: Targets, workers: int | None, scheduler: str | None
) -> Iterator[Callable[[list[ParameterSet]], list[float]]]:
    """For `bmsfil tune` on Dask: the training recordings sent to every worker
    once, and a function giving each recording's tuning cost under its
    parameter set (`tuning.recording_cost`), computed on the workers and
    returned in the recordings' order, so that the search is the serial one."""
    from bmsfil.tuning import recording_cost

    with dask_client(workers, scheduler) as client:
        scattered = client.scatter(list(recs), broadcast=True)

        def costs(sets: list[ParameterSet]) -> list[float]:
            futures = [client.submit(recording_cost, r, p, targets, pure=False) for r, p in zip(scattered, sets)]
            return [float(c) for c in client.gather(futures)]

        yield costs


def evaluate_path(source: str, params: ParameterSet, initial_soc: InitialSoc, errors: SensorErrors | None,
                  seed: int, out_dir: str, plot: bool) -> dict[str, object]:
    """`bmsfil eval` of one input, in whichever process runs it: the CSV and
    PNG are written there (out_dir must be reachable from the workers), and
    only the summary (`Evaluation.summary`, with the input's path and the
    sha256 of its content, by which `eval --resume` tells a replaced file)
    travels back."""
    from bmsfil.chunked import SUFFIX, ChunkedRecording, evaluate_streaming
    from bmsfil.eval_plot import write_plot
    from bmsfil.evaluate import evaluate, evaluate_unscored, mismatches, write_csv
    from bmsfil.fit import file_sha256
    from bmsfil.importers import load_any
    from bmsfil.recording import RecordingError

    # Hashed before it is read: a file replaced during the run is then redone by a --resume.
    head: dict[str, object] = {"source": source, "source_sha256": file_sha256(Path(source))}
    out = Path(out_dir)
    # Written under a name of this input's own (two inputs may share a recording's name, and
    # workers write at once); the caller gives them their names (`claim_outputs`).
    tmp = f".{hashlib.sha1(source.encode()).hexdigest()[:12]}"
    if source.endswith(SUFFIX) and errors is None:
        streamed = ChunkedRecording(source)
        if streamed.has_ah and streamed.meta.reference_capacity_Ah and "cycle_starts" not in streamed.meta.extra:
            # Streamed, never all in memory, the plausibility monitor beside
            # the EKF; no plot, health or power (they need the whole recording).
            summary = evaluate_streaming(source, params, initial_soc, out, stem=tmp)
            head["_outputs"] = {"csv": str(out / f"{tmp}.csv")}
            found = summary.pop("warnings")
            assert isinstance(found, list)
            return head | summary | _warnings([streamed.meta.reference_start_warning(),
                                                      streamed.meta.unlogged_charge_warning(), *found])
        rec = streamed.load()  # no reference or a life: the whole-recording paths below
    else:
        rec = load_any(source)
    starts = rec.cycle_starts() or []
    restarts = (f"{rec.meta.name}: --initial-soc {initial_soc} starts its first segment; each of the {len(starts) - 1} "
                "after it restarts from its own start, as the importer recorded it (a rested, full cell's OCV)"
                if initial_soc != "ocv" and len(starts) > 1 else None)
    run_notes = [restarts, errors.not_applied(rec) if errors is not None else None]
    head["_outputs"] = {"csv": str(out / f"{tmp}.csv")} | ({"png": str(out / f"{tmp}.png")} if plot else {})
    try:
        rec.reference_soc()
    except RecordingError as exc:
        # Nothing to score the SOC against: the estimates, flags, capacity and R0 all the same.
        return head | evaluate_unscored(rec, params, str(exc), initial_soc, errors, seed, out / f"{tmp}.csv",
                                        out / f"{tmp}.png" if plot else None, checks=False) \
            | _warnings([*mismatches(rec, params, scored=False), *run_notes])
    ev = evaluate(rec, params, initial_soc, errors, seed, health=True, power=True, core_temp=True, checks=False)
    write_csv(ev, out / f"{tmp}.csv")
    if plot:
        write_plot(ev, out / f"{tmp}.png")
    return head | ev.summary() | _warnings([*mismatches(rec, params), *run_notes])


def claim_stem(base: str, source: str, claimed: dict[str, str]) -> str:
    """The name `source`'s output files take: `base`, or, where another input of the run took
    it (`claimed`: stem -> source), `base` with -2, -3, ... added; recorded in `claimed`."""
    stem, k = base, 1
    while claimed.get(stem, source) != source:
        k += 1
        stem = f"{base}-{k}"
    claimed[stem] = source
    return stem


def claim_outputs(summary: dict[str, object], out_dir: Path, claimed: dict[str, str]) -> str | None:
    """Give an evaluated input's files (written by `evaluate_path` under a name of its own) their
    names, ``DIR/<name>.csv`` and ``.png``: the recording's name (`output_stem`), or, where an
    input before it in this run took that name (`claimed`: stem -> source), the name with -2,
    -3, ... added. Records the files in the summary (``outputs``); returns a warning if the name
    was taken."""
    from bmsfil.importers.names import output_stem

    written = summary.pop("_outputs", None)
    if not isinstance(written, dict):
        return None
    source = str(summary["source"])
    base = output_stem(str(summary["name"]))
    stem = claim_stem(base, source, claimed)
    outputs = {}
    for kind, path in written.items():
        final = out_dir / f"{stem}.{kind}"
        Path(path).replace(final)
        outputs[kind] = str(final)
    summary["outputs"] = outputs
    if stem == base:
        return None
    return (f"{source}: its recording is named {summary['name']}, as {claimed[base]}'s is: its files are "
            f"{out_dir}/{stem}.*")


def _warnings(found: list[str | None]) -> dict[str, list[str]]:
    """A summary's "warnings" entry: those found, none if there are none."""
    kept = [w for w in found if w]
    return {"warnings": kept} if kept else {}
