"""Check an artifact root for damage, and set what is damaged aside so that the next run redoes it.

What is checked (a local root; everything is read, images decoded):
    - every Parquet part under ``tables/`` reads back whole and is a LocoLab table (``Store.files``), and no file
      is of a newer schema version (such a root is refused, not repaired);
    - sweep and trace units: the cases part and the scores part of a unit (the same part name) hold the same case
      ids, and every image the cases name is present and a whole PNG;
    - edits: ``edit.json`` is the record of its folder and the tensors read back; each evaluation's summary reads
      back, its scores part is readable and its images are whole;
    - temporary files left by this host's writers that were killed mid-write.

Repair moves each damaged file, with the files that only make sense beside it (a unit's other part, an evaluation's
summary and scores), to ``<root>/damaged/<time>/`` under the same relative path, where no reader looks, and deletes
dead writers' temporary files. Rerunning the sweep, trace, edit or evaluation then redoes exactly what was moved:
resumption treats a unit or evaluation without its files as not done.

Usage::

    report = find_damage("artifacts")
    moved_to = repair("artifacts", report.damage)
"""

import datetime
import io
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from locolab.contract.errors import UserError
from locolab.contract.names import EDIT_EVALS, EDIT_RECORD, EDIT_SUMMARY, EDIT_UNITS, EDIT_WEIGHTS, EDITS_DIR, TRACE
from locolab.contract.store import SCHEMAS, Store, file_problem, is_url, remove_stale_temps, stale_temps

DAMAGED_DIR = "damaged"
_EVAL_PART = re.compile(r"^part-(?P<edit>.+)-(?P<eval>[0-9a-f]{10})\.parquet$")


@dataclass
class Damage:
    """One damaged thing in a root.

    Attributes:
        what: what is damaged, e.g. ``unit 3f2a... of run small-1a2b3c4d5e``.
        problem: what is wrong with it.
        move: root-relative paths that repair sets aside (files or folders).
        redo: what redoes it, e.g. ``locolab sweep small (run small-1a2b3c4d5e)``; empty when nothing needs redoing
            (a foreign file, a dead writer's temporary file).
    """

    what: str
    problem: str
    move: list[str] = field(default_factory=list)
    redo: str = ""


@dataclass
class Report:
    """What ``find_damage`` found and how much it read.

    Attributes:
        damage: each damaged thing.
        parts: Parquet parts read.
        images: distinct images decoded.
        edits: edit folders read.
    """

    damage: list[Damage]
    parts: int
    images: int
    edits: int


@dataclass
class _Root:
    path: Path
    store: Store
    runs: dict[str, dict] = field(default_factory=dict)
    images: dict[str, str | None] = field(default_factory=dict)

    def rel(self, path: str | Path) -> str:
        return Path(path).relative_to(self.path).as_posix()

    def movable(self, relpath: str) -> bool:
        """Whether repair may move this path: a file inside the root (a crafted path never moves anything else)."""
        path = self.path / relpath
        return path.is_file() and path.resolve().is_relative_to(self.path.resolve())

    def image_problem(self, relpath: str) -> str | None:
        """Why a stored image is not a whole PNG (checked once per path), or None."""
        if relpath not in self.images:
            path = self.path / relpath
            if not path.resolve().is_relative_to(self.path.resolve()):
                self.images[relpath] = "its path leaves the root"
            elif not path.is_file():
                self.images[relpath] = "missing"
            else:
                try:
                    with Image.open(io.BytesIO(path.read_bytes())) as image:
                        image.verify()
                    self.images[relpath] = None
                except Exception as error:  # truncated, garbled or not a PNG: PIL raises several kinds
                    self.images[relpath] = f"not a whole PNG ({type(error).__name__})"
        return self.images[relpath]

    def redo_run(self, run_id: str | None) -> str:
        """The command that redoes the units of a run."""
        run = self.runs.get(run_id or "")
        if not run:
            return f"rerun the sweep or trace that wrote run {run_id}" if run_id else "rerun its sweep or trace"
        command = "trace" if run.get("method") == TRACE else "sweep"
        return f"locolab {command} CONFIG --artifacts {self.path} (config {run.get('config_name')}, run {run_id})"


def find_damage(root: str | os.PathLike) -> Report:
    """Every damaged unit, table part, edit and evaluation of a local root (see the module docstring).

    Raises:
        UserError: the root is not a local folder, or holds files of a newer schema version.
    """
    root = os.fspath(root)
    if is_url(root):
        raise UserError(f"verify works on local roots, not {root}: sync it to a folder, verify, and sync back")
    if not Path(root).is_dir():
        raise UserError(f"artifact root {root} is not a folder: check --artifacts")
    state = _Root(Path(root).absolute(), Store(Path(root).absolute()))
    readable = {table: state.store.files(table) for table in SCHEMAS}
    state.store.check_version()
    for path in readable["runs"]:
        for row in state.store.read(path).to_pylist():
            state.runs.setdefault(row.get("run_id"), row)
    damage = [_skipped(state, path, reason) for path, reason in state.store.skipped]
    damage += _units(state, readable)
    damage += _edits(state, readable["edit_scores"])
    damage += _temporary_files(state)
    edits = state.path / EDITS_DIR
    return Report(_merged(damage), sum(map(len, readable.values())) + len(state.store.skipped), len(state.images),
                  sum(1 for e in edits.iterdir() if e.is_dir() and not e.name.startswith(".")) if edits.is_dir() else 0)


def _column(data, name: str) -> list:
    """A column's values, or [] when the file lacks it (a readable file need not hold every column)."""
    return data[name].to_pylist() if name in data.column_names else []


def _partner(relpath: str) -> str:
    """A unit's other part: ``tables/cases/...`` <-> ``tables/scores/...``."""
    table, rest = relpath.split("/", 2)[1:]
    return f"tables/{'scores' if table == 'cases' else 'cases'}/{rest}"


def _skipped(state: _Root, path: str, reason: str) -> Damage:
    """A Parquet part that does not read back, or is not a LocoLab table."""
    relpath = state.rel(path)
    table = relpath.split("/")[1]
    if not reason.startswith("unreadable"):  # readable, but not a LocoLab table (file_problem): nothing to redo
        return Damage(f"foreign file {relpath}", reason, [relpath])
    if table in ("cases", "scores"):
        partner = _partner(relpath)
        return Damage(f"unit part {relpath}", reason, [relpath] + [partner] * (state.path / partner).is_file(),
                      _unit_run(state, state.path / partner) or "rerun the sweep or trace that wrote it")
    if table == "edit_scores":
        match = _EVAL_PART.match(Path(relpath).name)
        if match and (state.path / EDITS_DIR / match["edit"] / EDIT_EVALS / match["eval"]).is_dir():
            folder = f"{EDITS_DIR}/{match['edit']}/{EDIT_EVALS}/{match['eval']}"
            return Damage(f"evaluation {match['eval']} of edit {match['edit']}", f"{relpath}: {reason}",
                          [relpath, folder], f"locolab eval-edit {match['edit']} with the same settings")
        legacy = Path(relpath).name.removeprefix("part-").removesuffix(".parquet")
        summary = f"{EDITS_DIR}/{legacy}/{EDIT_SUMMARY}"
        return Damage(f"evaluation of edit {legacy}", f"{relpath}: {reason}",
                      [relpath] + [summary] * (state.path / summary).is_file(), f"locolab eval-edit {legacy}")
    return Damage(f"{table} part {relpath}", reason, [relpath], "rewritten by the next run of its sweep or trace")


def _unit_run(state: _Root, path: Path) -> str | None:
    """The redo command of the unit a readable part belongs to, or None."""
    try:
        data = state.store.read(str(path))
    except Exception:  # the partner is damaged too, or gone
        return None
    run_ids = _column(data, "run_id")
    return state.redo_run(run_ids[0]) if run_ids else None


def _units(state: _Root, readable: dict[str, list[str]]) -> list[Damage]:
    """Units whose two parts disagree, or whose images are missing or damaged."""
    found = []
    scores = {state.rel(path) for path in readable["scores"]}
    for path in readable["cases"]:
        relpath = state.rel(path)
        data = state.store.read(path)
        partner = _partner(relpath)
        run_id = (_column(data, "run_id") or [None])[0]
        unit = f"unit {Path(relpath).stem.removeprefix('part-')} of run {run_id}"
        moved = [relpath] + [partner] * (state.path / partner).is_file()
        if partner not in scores:
            if not (state.path / partner).is_file():
                found.append(Damage(unit, "cases part without its scores part", moved, state.redo_run(run_id)))
            continue  # a damaged partner is reported by itself (and moves this part too)
        partner_ids = _column(state.store.read(str(state.path / partner)), "case_id")
        if sorted(map(str, partner_ids)) != sorted(map(str, _column(data, "case_id"))):
            found.append(Damage(unit, f"its scores part has {len(partner_ids)} rows for its {data.num_rows} cases",
                                moved, state.redo_run(run_id)))
            continue
        bad = {p: state.image_problem(p) for p in dict.fromkeys(_column(data, "image_path")) if p}
        bad = {p: problem for p, problem in bad.items() if problem}
        if bad:
            first = next(iter(bad))
            images = [p for p in bad if state.movable(p)]
            found.append(Damage(unit, f"{len(bad)} image(s) damaged, e.g. {first}: {bad[first]}", moved + images,
                                state.redo_run(run_id)))
    return found


def _edits(state: _Root, score_parts: list[str]) -> list[Damage]:
    """Edits whose record or tensors do not read back, and evaluations that are incomplete or damaged."""
    from safetensors.numpy import load_file

    found = []
    parts = {Path(path).name: path for path in score_parts}
    directory = state.path / EDITS_DIR
    for folder in sorted(directory.iterdir()) if directory.is_dir() else []:
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        relfolder = state.rel(folder)
        try:
            record = json.loads((folder / EDIT_RECORD).read_text(encoding="utf-8"))
            for tensors in (EDIT_WEIGHTS, EDIT_UNITS):
                if (folder / tensors).is_file():
                    load_file(str(folder / tensors))
            problem = None if isinstance(record, dict) and record.get("edit_id") == folder.name else (
                f"{EDIT_RECORD} is not this edit's record")
        except FileNotFoundError:
            problem = f"no {EDIT_RECORD}"
        except Exception as error:  # a cut-off JSON or safetensors file; each library raises its own kind
            problem = f"unreadable ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        if problem:
            own = [state.rel(parts[name]) for name in parts
                   if name == f"part-{folder.name}.parquet" or name.startswith(f"part-{folder.name}-")]
            found.append(Damage(f"edit {folder.name}", problem, [relfolder] + own,
                                "make the edit again (locolab edit ...), then evaluate it"))
            continue
        evaluations = [(None, folder)] if (folder / EDIT_SUMMARY).is_file() else []
        evaluations += [(e.name, e) for e in sorted((folder / EDIT_EVALS).iterdir())] \
            if (folder / EDIT_EVALS).is_dir() else []
        for eval_id, place in evaluations:
            damage = _evaluation(state, folder.name, eval_id, place, parts)
            if damage:
                found.append(damage)
    return found


def _evaluation(state: _Root, edit_id: str, eval_id: str | None, place: Path, parts: dict) -> Damage | None:
    """One evaluation's damage (its summary, scores part and images), or None."""
    name = f"part-{edit_id}.parquet" if eval_id is None else f"part-{edit_id}-{eval_id}.parquet"
    summary = place / EDIT_SUMMARY
    what = f"evaluation {eval_id} of edit {edit_id}" if eval_id else f"evaluation of edit {edit_id}"
    moved = [state.rel(summary) if eval_id is None else state.rel(place)]
    redo = f"locolab eval-edit {edit_id} with the same settings"
    try:
        json.loads(summary.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None if eval_id is None else Damage(what, "no summary (an evaluation that was interrupted)",
                                                   moved + [state.rel(parts[name])] * (name in parts), redo)
    except (OSError, ValueError) as error:
        return Damage(what, f"summary unreadable ({type(error).__name__})",
                      moved + [state.rel(parts[name])] * (name in parts), redo)
    if name not in parts:
        if (state.path / "tables" / "edit_scores" / name).is_file():
            return None  # a damaged part is reported (with this evaluation) by itself
        return Damage(what, "its scores part is missing", moved, redo)
    data = state.store.read(parts[name])
    if file_problem("edit_scores", data):
        return None
    bad = {p: state.image_problem(p) for p in dict.fromkeys(_column(data, "image_path")) if p}
    bad = {p: problem for p, problem in bad.items() if problem}
    if not bad:
        return None
    first = next(iter(bad))
    images = [p for p in bad if eval_id is None and state.movable(p)]
    return Damage(what, f"{len(bad)} image(s) damaged, e.g. {first}: {bad[first]}",
                  moved + [state.rel(parts[name])] + images, redo)


def _temporary_files(state: _Root) -> list[Damage]:
    """Temporary files of this host's writers that no longer run."""
    found = []
    for parent, _, _ in os.walk(state.path):
        if not Path(parent).is_relative_to(state.path / DAMAGED_DIR):
            found += [Damage(f"temporary file {state.rel(path)}", "left by a writer that was killed mid-write (repair "
                             "deletes it)") for path in stale_temps(parent)]
    return found


def _merged(damage: list[Damage]) -> list[Damage]:
    """One entry per damaged thing (a unit's two damaged parts are one unit), in a stable order."""
    merged: dict[tuple, Damage] = {}
    for item in damage:
        key = tuple(sorted(item.move)) or (item.what,)
        if key in merged:
            merged[key].problem += f"; {item.problem}"
        else:
            merged[key] = item
    return sorted(merged.values(), key=lambda d: (d.what, d.move))


def repair(root: str | os.PathLike, damage: list[Damage]) -> Path | None:
    """Move every damaged thing's files to ``<root>/damaged/<time>/`` (same relative paths) and delete dead
    writers' temporary files; returns the folder the files went to (None when nothing was moved)."""
    base = Path(root).absolute()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = base / DAMAGED_DIR / stamp
    moved = False
    for relpath in dict.fromkeys(p for item in damage for p in item.move):
        source = base / relpath
        if not source.exists() or not source.parent.resolve().is_relative_to(base.resolve()):
            continue  # moved with a folder listed before it, or (crafted) not inside the root
        destination = target / relpath
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, destination)
        moved = True
    for parent, _, _ in os.walk(base):
        if not Path(parent).is_relative_to(base / DAMAGED_DIR):
            remove_stale_temps(parent)
    return target if moved else None
