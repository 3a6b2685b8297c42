"""Labelled image sets for evaluation: read from a folder, a zip, a CSV or an archive.

What: `open_set(path)` and `set_from_zip(bytes)` return a `LabelledSet`, a list of
`Item`s (a key, the path of the image inside the set, and its truth) plus the rows that
could not become items, each with a reason. The forms:

- one sub-folder per class, in a folder or a zip: the folder names are the labels;
- a `labels.csv` with a `file` column and a `label` (classification) or `target`
  (regression, a number) column, in a folder or a zip or named directly; the file paths
  are relative to the CSV;
- a set bundled in a `.yyar` archive: a manifest file with role `eval`, which is a zip in
  one of the two forms above (`set_from_archive`).

A zip whose entries all sit under one top folder is read from inside that folder.

Why so careful: a set may be an upload from anyone. A zip is read through the archive
module's checks (`open_checked_zip`, with limits sized for thousands of images), a CSV
path that is absolute or climbs out with `..` is refused, and a folder's file is read
only when its resolved path lies inside the set's folder. Images are read lazily, one
batch at a time, so a large set never sits in memory whole. A bad row never fails the
set: it becomes a `BadItem`. Only a set that cannot be read at all raises a typed error.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from yyai_kernel.archive import (
    Limits,
    MiB,
    check_entry_name,
    open_checked_zip,
    read_listed_file,
    read_manifest,
    read_zip_entry,
)
from yyai_kernel.errors import ArchiveError, InvalidInputError, ModelNotFoundError
from yyai_kernel.types.specs import FileRole, OutputKind

CSV_NAME = "labels.csv"
# A labelled set may hold many more files than a model archive; the other checks stay.
SET_LIMITS = Limits(max_members=200_000, max_member_bytes=64 * MiB, max_total_bytes=4096 * MiB)
MAX_CSV_BYTES = 64 * MiB
# Files a set never means as items: hidden files and the folders macOS adds to zips.
_JUNK_PARTS = ("__MACOSX",)


@dataclass(frozen=True)
class Item:
    """One labelled image: its path inside the set and its truth (a label or a number)."""

    key: str
    truth: str | float


@dataclass(frozen=True)
class BadItem:
    """A row or an image that was left out of the scores, and why."""

    key: str
    reason: str

    def to_json(self) -> dict:
        return {"key": self.key, "reason": self.reason}


class UnreadableItem(Exception):
    """An item's bytes cannot be read (missing, outside the set, too large, corrupt)."""


class LabelledSet:
    """A labelled set: `kind` (the kind of output it scores), `items`, `problems`.

    `read(key)` returns an item's bytes or raises UnreadableItem. Reading is lazy; a
    zip-backed set keeps its bytes (or path) and opens the zip for each `read_many`.
    """

    def __init__(self, kind: OutputKind, items: list[Item], problems: list[BadItem], source: _Source,
                 description: str):
        self.kind = kind
        self.items = tuple(items)
        self.problems = tuple(problems)
        self.description = description
        self._source = source

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return (f"LabelledSet({self.description!r}, {self.kind.value}, {len(self.items)} items, "
                f"{len(self.problems)} problems)")

    def read_many(self, keys: list[str]) -> dict[str, bytes | UnreadableItem]:
        """Each key's bytes, or the UnreadableItem that says why it cannot be read."""
        return self._source.read_many(keys)

    def read(self, key: str) -> bytes:
        """One item's bytes; raises UnreadableItem."""
        data = self.read_many([key])[key]
        if isinstance(data, UnreadableItem):
            raise data
        return data


# --- where the bytes come from ----------------------------------------------------------


class _Source:
    """The files of a set, by their '/'-separated path relative to the set's root."""

    def names(self) -> list[str]:
        raise NotImplementedError

    def read_many(self, keys: list[str]) -> dict[str, bytes | UnreadableItem]:
        raise NotImplementedError


class _FolderSource(_Source):
    """A folder on disk; a file is read only if its resolved path lies inside the folder."""

    def __init__(self, root: Path):
        self.root = root.resolve()

    def names(self) -> list[str]:
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())

    def read_many(self, keys):
        return {key: self._read(key) for key in keys}

    def _read(self, key: str) -> bytes | UnreadableItem:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            return UnreadableItem(f"{key!r} lies outside the set's folder")
        try:
            if path.stat().st_size > SET_LIMITS.max_member_bytes:
                return UnreadableItem(f"the file is larger than {SET_LIMITS.max_member_bytes} bytes")
            return path.read_bytes()
        except FileNotFoundError:
            return UnreadableItem("the file does not exist")
        except OSError as exc:
            return UnreadableItem(f"the file cannot be read ({exc.strerror or exc})")


class _ZipSource(_Source):
    """A zip (bytes or a path); `prefix` is the one top folder all its files share, if any."""

    def __init__(self, zipped: bytes | Path):
        self.zipped = zipped
        zf, infos = open_checked_zip(zipped, SET_LIMITS)
        with zf:
            names = [i.filename for i in infos]
        self.prefix = _common_root(names)
        self._names = [n[len(self.prefix):] for n in names if n.startswith(self.prefix)]

    def names(self) -> list[str]:
        return sorted(self._names)

    def read_many(self, keys):
        zf, _ = open_checked_zip(self.zipped, SET_LIMITS)
        with zf:
            return {key: self._read(zf, key) for key in keys}

    def _read(self, zf: zipfile.ZipFile, key: str) -> bytes | UnreadableItem:
        try:
            info = zf.getinfo(self.prefix + key)
        except KeyError:
            return UnreadableItem("the zip holds no such file")
        try:
            return read_zip_entry(zf, info, SET_LIMITS)
        except ArchiveError as exc:
            return UnreadableItem(exc.message)


# --- reading a set ------------------------------------------------------------------------


def open_set(path: str | Path) -> LabelledSet:
    """Read a labelled set from a folder, a `.zip` or a `.csv` file on this machine.

    For library and CLI callers only: nothing that answers a network request may pass a
    path a client chose. Raises InvalidInputError (or an ArchiveError for an unsafe zip).
    """
    path = Path(path)
    if path.is_dir():
        return _from_source(_FolderSource(path), str(path))
    if not path.is_file():
        raise InvalidInputError(f"{path} is neither a folder nor a file.")
    if path.suffix.lower() == ".csv":
        source = _FolderSource(path.parent)
        return _csv_set(source, path.name, str(path), _read_csv_text(source, path.name))
    if path.suffix.lower() == ".zip":
        return set_from_zip(path, description=str(path))
    raise InvalidInputError(f"{path.name}: a labelled set is a folder, a .zip or a .csv file.")


def set_from_zip(zipped: bytes | str | Path, *, description: str = "the zip") -> LabelledSet:
    """Read a labelled set from a zip's bytes (an upload) or its path."""
    zipped = bytes(zipped) if isinstance(zipped, (bytes, bytearray)) else Path(zipped)
    return _from_source(_ZipSource(zipped), description)


def eval_sets(manifest) -> list[str]:
    """The names of the labelled sets an archive's manifest bundles (files with role eval)."""
    return [entry.path for entry in manifest.files if entry.role is FileRole.EVAL]


def set_from_archive(path: str | Path, arcname: str | None = None) -> LabelledSet:
    """The labelled set bundled in a `.yyar` archive (its first, or the one named `arcname`).

    Read through `read_listed_file`, so its size and sha256 are checked against the
    manifest. Raises ModelNotFoundError when the archive bundles no such set.
    """
    names = eval_sets(read_manifest(path))
    if not names or (arcname is not None and arcname not in names):
        wanted = "labelled set" if arcname is None else f"labelled set named {arcname!r}"
        raise ModelNotFoundError(f"{Path(path).name} bundles no {wanted} (manifest role {FileRole.EVAL.value!r}).")
    arcname = arcname or names[0]
    return set_from_zip(read_listed_file(path, arcname), description=f"{Path(path).name}:{arcname}")


def _from_source(source: _Source, description: str) -> LabelledSet:
    names = [n for n in source.names() if not _is_junk(n)]
    if CSV_NAME in names:
        return _csv_set(source, CSV_NAME, description, _read_csv_text(source, CSV_NAME))
    return _folder_set(names, source, description)


def _is_junk(name: str) -> bool:
    parts = name.split("/")
    return any(p.startswith(".") or p in _JUNK_PARTS for p in parts)


def _common_root(names: list[str]) -> str:
    """'top/' when every file lies in one top folder that is not itself a class folder."""
    names = [n for n in names if not _is_junk(n)]
    tops = {n.split("/")[0] for n in names}
    if len(tops) != 1 or any("/" not in n for n in names):
        return ""
    top = tops.pop() + "/"
    inner = [n[len(top):] for n in names]
    return top if CSV_NAME in inner or all("/" in n for n in inner) else ""


def _folder_set(names: list[str], source: _Source, description: str) -> LabelledSet:
    items, problems = [], []
    for name in names:
        if "/" not in name:
            problems.append(BadItem(name, "the file is not inside a class folder"))
        else:
            items.append(Item(name, name.split("/")[0]))
    if not items:
        raise InvalidInputError(
            f"{description} holds no labelled images: give one sub-folder per class, or a {CSV_NAME} "
            "with a file column and a label or target column."
        )
    return LabelledSet(OutputKind.CLASSIFICATION, items, problems, source, description)


def _read_csv_text(source: _Source, name: str) -> str:
    data = source.read_many([name])[name]
    if isinstance(data, UnreadableItem):
        raise InvalidInputError(f"{name}: {data}")
    if len(data) > MAX_CSV_BYTES:
        raise InvalidInputError(f"{name} is {len(data)} bytes; the limit is {MAX_CSV_BYTES}.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInputError(f"{name} is not UTF-8 text.") from None


def _csv_set(source: _Source, csv_name: str, description: str, text: str) -> LabelledSet:
    """Rows of `file,label` or `file,target`; paths relative to the CSV's folder."""
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    reader.fieldnames = columns
    column = "label" if "label" in columns else "target" if "target" in columns else None
    if "file" not in columns or column is None:
        raise InvalidInputError(
            f"{csv_name} needs a header with a 'file' column and a 'label' (classification) or 'target' "
            f"(regression) column; it has {columns}."
        )
    kind = OutputKind.CLASSIFICATION if column == "label" else OutputKind.REGRESSION
    folder = str(PurePosixPath(csv_name).parent)
    prefix = "" if folder == "." else folder + "/"
    items, problems, seen = [], [], set()
    for line, row in enumerate(reader, start=2):
        item = _csv_item(row, column, kind, prefix, line)
        if isinstance(item, BadItem):
            problems.append(item)
        elif item.key in seen:
            problems.append(BadItem(item.key, f"line {line}: the file is listed twice"))
        else:
            seen.add(item.key)
            items.append(item)
    if not items:
        raise InvalidInputError(f"{csv_name} lists no usable rows.")
    return LabelledSet(kind, items, problems, source, description)


def _csv_item(row: dict, column: str, kind: OutputKind, prefix: str, line: int) -> Item | BadItem:
    file = (row.get("file") or "").strip()
    value = (row.get(column) or "").strip()
    if not file:
        return BadItem(f"line {line}", "the file column is empty")
    try:
        check_entry_name(file)
    except ArchiveError:
        return BadItem(file, f"line {line}: the path is absolute or leaves the CSV's folder; refused")
    if not value:
        return BadItem(file, f"line {line}: the {column} is empty")
    if kind is OutputKind.CLASSIFICATION:
        return Item(prefix + file, value)
    try:
        target = float(value)
    except ValueError:
        target = math.nan
    if not math.isfinite(target):
        return BadItem(file, f"line {line}: the target {value!r} is not a finite number")
    return Item(prefix + file, target)
