"""Held-out cell models for `bmsfil tune`.

A filter tuned on recordings its cell model was fitted on learns how well the
model fits its training, and then trusts the voltage more than new data bears.
So each training recording that was an input of the fit is scored, while
tuning, with the model refitted without it (leave one out), as
`lg_hg2_params` does by cycle type for the bundled set. On the LG HG2 `full`
workflow of docs/fitting_results.md this takes the unseen HWFET and UDDS
cycles meeting the core bar from 5 of 7 to 6 of 7.

A training file is recognised as a fit input by its sha256, or by that of
its samples (the same for a CSV and the .npz `bmsfil import` made of it),
which the set's notes hold for every input (`ocv_from`, `pulse_from`, ...). The fit is
repeated from the `bmsfil fit` command in the notes (its inputs, import
options and nominal capacity), with every input checked against its sha256.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bmsfil.fit import ROLES, FitError, FitInputs, file_sha256, fit
from bmsfil.params import CellParams, ParameterSet
from bmsfil.recording import Recording


@dataclass(frozen=True)
class FitRecipe:
    """What `bmsfil fit` was given, read back from a parameter set's notes."""

    inputs: dict[str, list[Path]]  # role (fit.ROLES) -> files, as the command named them
    nominal_capacity_Ah: float | None
    name: str
    load: Callable[[list[Path]], list[Recording]]  # reads files with the fit's import options
    beside: Path | None = None  # the parameter file's folder, where the inputs are looked for too


class RecipeError(ValueError):
    """The fit cannot be repeated as it was made: the message says why."""


def _fit_entries(params: ParameterSet) -> dict[str, dict[str, tuple[str, str]]]:
    """Per role, each fit input's path (as the notes name it) -> the sha256
    prefixes of its file and of its samples ("" where the notes give none)."""
    out: dict[str, dict[str, tuple[str, str]]] = {}
    for role in ROLES:
        for item in filter(None, (part.strip() for part in params.notes.get(f"{role}_from", "").split(";"))):
            head, data_sep, data = item.rpartition(" data:")
            item, data = (head, data) if data_sep else (item, "")
            path_text, sep, digest = item.rpartition(" sha256:")
            out.setdefault(role, {})[path_text if sep else item] = (digest if sep else "", data)
    return out


def fit_digests(params: ParameterSet) -> dict[str, dict[str, str]]:
    """Per role, each fit input's path (as the notes name it) -> its file's
    sha256 prefix ("" where the notes give none)."""
    return {role: {path: file for path, (file, _) in paths.items()} for role, paths in _fit_entries(params).items()}


def fit_inputs_among(params: ParameterSet, train: list[Path], recordings: list[Recording]) -> list[str | None]:
    """For each training file (and its recording), the file sha256 prefix by
    which the notes list it as a fit input, or None if the fit did not use
    it. A training file is a fit input if its own sha256 is one the notes
    list or if its samples are (a CSV the fit read, tuned on as the .npz
    `bmsfil import` made of it, or the other way round)."""
    entries = [e for paths in _fit_entries(params).values() for e in paths.values() if e[0]]
    found: list[str | None] = []
    for path, rec in zip(train, recordings, strict=True):
        full, data = file_sha256(path), rec.data_sha256()
        found.append(next((f for f, d in entries if full.startswith(f) or (d and data.startswith(d))), None))
    return found


def locate_fit_input(params: ParameterSet, path: Path, digest: str, beside: Path | None = None) -> Path:
    """Where a fit input the notes name (`path`, as the fit command gave it) is now. A
    relative path is from the folder the fit ran in, which may have moved with its data:
    it is looked for from here, from the notes' run_in, then from the parameter file's
    folder (`beside`) and each folder above it. The first candidate whose sha256 starts
    with `digest` (the notes' prefix) wins; where none does, the first that exists (the
    caller says it changed), else `path` itself (the caller says it is not there)."""
    if path.is_absolute():
        return path
    folders = [Path.cwd()]
    if params.notes.get("run_in"):
        folders.append(Path(params.notes["run_in"]))
    if beside is not None:
        folders.extend([beside, *beside.resolve().parents])
    existing = [f / path for f in folders if (f / path).is_file()]
    if digest:
        matching = (p for p in existing if file_sha256(p).startswith(digest))
        if (found := next(matching, None)) is not None:
            return found
    return existing[0] if existing else path


def check_inputs(params: ParameterSet, recipe: FitRecipe) -> dict[str, list[Path]]:
    """Where each input of the recipe is (`locate_fit_input`), per role in the recipe's
    order; a RecipeError where one is not there or is not what the fit read."""
    digests = fit_digests(params)
    found: dict[str, list[Path]] = {}
    for role, paths in recipe.inputs.items():
        for named in paths:
            digest = digests.get(role, {}).get(str(named), "")
            path = locate_fit_input(params, named, digest, recipe.beside)
            if not path.is_file():
                raise RecipeError(f"{role} input {named} of the fit is not there (looked for from here, from the "
                                  "folder the fit ran in and from the parameter file's folder and those above it)")
            if not digest or not file_sha256(path).startswith(digest):
                raise RecipeError(f"{role} input {path} is not the file the fit read (its sha256 differs from "
                                  "the notes)")
            found.setdefault(role, []).append(path)
    return found


def held_out_cells(
    params: ParameterSet, recipe: FitRecipe, train: list[Path], in_fit: list[str | None],
    progress: Callable[[str], None] | None = None,
) -> list[CellParams]:
    """One cell model per training file: refitted without that file where the
    fit used it (`in_fit`, from fit_inputs_among), the set's own model where it
    did not. Raises RecipeError if the fit's inputs are not what it read, and
    FitError naming the file if a refit cannot be made (the file was the
    fit's only pulse or dynamic input, say)."""
    say = progress or (lambda _msg: None)
    located = check_inputs(params, recipe)
    digests = fit_digests(params)
    say("reading the fit's inputs")
    loaded = {role: [(digests[role][str(p)], rec) for p, rec in zip(paths, recipe.load(located.get(role, [])))]
              for role, paths in recipe.inputs.items()}
    cells: list[CellParams] = []
    total, done = sum(d is not None for d in in_fit), 0
    for path, digest in zip(train, in_fit):
        if digest is None:
            cells.append(params.cell)
            continue
        done += 1
        say(f"refitting the model without {path.name} ({done} of {total})")
        kept = FitInputs(**{role: [rec for d, rec in loaded.get(role, []) if d != digest] for role in ROLES})
        try:
            refit, _ = fit(kept, recipe.name, recipe.nominal_capacity_Ah)
        except FitError as exc:
            raise FitError(f"cannot refit the model without the training recording {path} to tune on it held "
                           f"out ({exc}); give --in-sample to tune on the model as fitted") from None
        cells.append(refit.cell)
    return cells
