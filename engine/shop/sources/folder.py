"""The drop-folder source: CSV files dropped into a folder are imported, one file at a time.

Owns one pass over a folder: new ``*.csv`` files in name order, each imported whole or not at
all through the importer (its kind read from its name: ``orders_export.csv``,
``2026-06-15-customers.csv``); a file that imports moves to ``done/``, one that fails to
``failed/`` with ``<file>.error.txt`` beside it naming the row and the column. A file still
being written is left for the next pass: it must end with a newline and keep its size and
modification time between two looks ``settle_seconds`` apart (writers that can, should write
under another name and rename into the folder). Must not send or render, nor read the clock
(``now`` stamps what arrived; ``sleep`` spaces the two looks).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from engine.config import FolderSource, Settings
from engine.errors import InputError
from engine.shop import importer
from engine.shop.sources.syncstate import one_line
from engine.shop.sources.types import SyncResult

_KIND_WORDS = re.compile("|".join(importer.KINDS))


def folder_of(settings: Settings, source: FolderSource) -> Path:
    return settings.base_dir / source.path


def kind_of(name: str) -> str | None:
    """The kind a file's name says it holds: the first kind word in it."""
    match = _KIND_WORDS.search(name.lower())
    return match.group(0) if match else None


def _look(path: Path) -> tuple[int, int, bool] | None:
    """(size, mtime, ends with a newline), or None if the file went away."""
    try:
        stat = path.stat()
        with open(path, "rb") as handle:
            if stat.st_size:
                handle.seek(-1, os.SEEK_END)
            last = handle.read(1)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns, last == b"\n"


def ready_files(folder: Path, settle_seconds: float,
                sleep: Callable[[float], None]) -> tuple[list[Path], list[Path]]:
    """(files complete and ready, in name order; files still being written)."""
    candidates = sorted(p for p in folder.iterdir() if p.is_file()
                        and p.suffix.lower() == ".csv" and not p.name.startswith("."))
    if not candidates:
        return [], []
    first = {path: _look(path) for path in candidates}
    sleep(settle_seconds)
    ready, waiting = [], []
    for path in candidates:
        second = _look(path)
        if second is None:
            continue
        (ready if second == first[path] and second[2] else waiting).append(path)
    return ready, waiting


def _move(path: Path, into: Path) -> Path:
    into.mkdir(exist_ok=True)
    target, n = into / path.name, 1
    while target.exists():  # the same name dropped again: keep both
        target = into / f"{path.stem}-{n}{path.suffix}"
        n += 1
    os.replace(path, target)
    return target


def sync(engine: Engine, settings: Settings, source: FolderSource, now: datetime,
         sleep: Callable[[float], None]) -> SyncResult:
    folder = folder_of(settings, source)
    if not folder.is_dir():
        raise InputError(f'the drop folder "{folder}" of source "{source.name}" does not '
                         "exist; create it or fix the source's path in config.yaml")
    result = SyncResult(source.name, source.kind)
    ready, waiting = ready_files(folder, source.settle_seconds, sleep)
    for path in waiting:
        result.notes.append(f"{path.name}: still being written; left for the next pass")
    for path in ready:
        kind = kind_of(path.name)
        try:
            if kind is None:
                raise InputError("cannot tell what the file holds: start its name with one of "
                                 f"{', '.join(importer.KINDS)} (like orders_export.csv)", path)
            imported = importer.import_file(engine, settings, kind, path, now=now)
        except InputError as exc:  # the file is wrong: it will not import as it is
            moved = _move(path, folder / "failed")
            moved.with_name(moved.name + ".error.txt").write_text(str(exc) + "\n")
            error = one_line(f"{path.name}: {exc.message if exc.path else exc}")
            result.failed_files.append(path.name)
            result.notes.append(f"{path.name}: failed ({error}); moved to failed/")
            result.error = error
            continue
        _move(path, folder / "done")
        result.applied += imported.inserted + imported.updated
        result.arrived = True
        result.notes.append(f"{path.name}: {imported.summary()}; moved to done/")
    return result
