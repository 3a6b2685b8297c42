"""Labelled sets for evaluation: images from a folder, a zip, a CSV or an archive; table rows from a CSV.

What: `open_set(path)`, `set_from_zip(bytes)` and `set_from_bytes(bytes)` return a
`LabelledSet`, a list of `Item`s (a key, the path of the image inside the set or the CSV
line of a row, and its truth) plus the rows that could not become items, each with a
reason. The forms for images:

- one sub-folder per class, in a folder or a zip: the folder names are the labels;
- a `labels.csv` with a `file` column and a `label` (classification) or `target`
  (regression, a number) column, in a folder or a zip or named directly; the file paths
  are relative to the CSV;
- a set bundled in a `.yyar` archive: a manifest file with role `eval`, which is a zip in
  one of the two forms above (`set_from_archive`).

A zip whose entries all sit under one top folder is read from inside that folder.

For a table model, a set is one CSV (no `file` column): a header naming the model's
features and a target column that holds the truth, `label` or `target` unless `target=`
(`--target NAME`, `?target=`) names another. Its kind is not known until a model reads it
(a column of "0", "1", "2" may be classes or numbers): the evaluated model's output kind
decides (`LabelledSet.as_kind`), and a target that is not a number in a regression set is
left out with its reason. Each item is keyed by its CSV line ("line 7"); its feature values,
as text, are `LabelledSet.rows`, so that a disagreement can show the row.

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
from yyai_kernel.protocol.records import read_csv
from yyai_kernel.types.given import Records
from yyai_kernel.types.specs import FileRole, OutputKind

CSV_NAME = "labels.csv"
# A labelled set may hold many more files than a model archive; the other checks stay.
SET_LIMITS = Limits(max_members=200_000, max_member_bytes=64 * MiB, max_total_bytes=4096 * MiB)
MAX_CSV_BYTES = 64 * MiB
MAX_TABLE_ROWS = 1_000_000  # rows of a table set
TARGET_COLUMNS = ("label", "target")  # the truth's column of a table set, unless one is named
ZIP_MAGIC = b"PK"
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

    An image set: `read(key)` returns an item's bytes or raises UnreadableItem. Reading is
    lazy; a zip-backed set keeps its bytes (or path) and opens the zip for each `read_many`.
    A table set: `rows` maps each key to its features' values (text), `records_of(keys)`
    gives them as the Records a model takes, and `kind` is None until `as_kind` fixes it.
    """

    def __init__(self, kind: OutputKind | None, items: list[Item], problems: list[BadItem], source: _Source | None,
                 description: str, rows: dict[str, dict[str, str]] | None = None, target: str | None = None):
        self.kind = kind
        self.items = tuple(items)
        self.problems = tuple(problems)
        self.description = description
        self.rows = rows
        self.target = target
        self._source = source

    @property
    def table(self) -> bool:
        """Whether the items are table rows (else images)."""
        return self.rows is not None

    def records_of(self, keys: list[str]) -> Records:
        """The rows of ``keys`` as CSV text records, each named by its line."""
        assert self.rows is not None  # a table set
        return Records(tuple(self.rows[key] for key in keys), text=True,
                       lines=tuple(int(key.removeprefix("line ")) for key in keys))

    def as_kind(self, kind: OutputKind) -> LabelledSet:
        """This table set scoring ``kind``: a regression's targets read as numbers (a row whose
        target is not one is left out, with its reason). An image set's kind is its own."""
        if self.kind is not None:
            return self
        items, problems = [], list(self.problems)
        for item in self.items:
            if kind is OutputKind.CLASSIFICATION:
                items.append(item)
                continue
            number = _finite(str(item.truth))
            if number is None:
                problems.append(BadItem(item.key, f"the {self.target} {item.truth!r} is not a finite number"))
            else:
                items.append(Item(item.key, number))
        return LabelledSet(kind, items, problems, self._source, self.description, self.rows, self.target)

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        kind = "table rows" if self.kind is None else self.kind.value
        return (f"LabelledSet({self.description!r}, {kind}, {len(self.items)} items, "
                f"{len(self.problems)} problems)")

    def read_many(self, keys: list[str]) -> dict[str, bytes | UnreadableItem]:
        """Each key's bytes, or the UnreadableItem that says why it cannot be read."""
        if self._source is None:
            raise TypeError("a table set's items are rows: read them with records_of")
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


def open_set(path: str | Path, *, target: str | None = None) -> LabelledSet:
    """Read a labelled set from a folder, a `.zip` or a `.csv` file on this machine.

    A `.csv` with a `file` column lists images; without one, it is a table set whose truth is
    the `target` column (default: `label` or `target`). For library and CLI callers only:
    nothing that answers a network request may pass a path a client chose. Raises
    InvalidInputError (or an ArchiveError for an unsafe zip).
    """
    path = Path(path)
    if path.is_dir():
        return _no_target(_from_source(_FolderSource(path), str(path)), target)
    if not path.is_file():
        raise InvalidInputError(f"{path} is neither a folder nor a file.")
    if path.suffix.lower() == ".csv":
        source = _FolderSource(path.parent)
        text = _read_csv_text(source, path.name)
        if "file" not in _header(text):
            return table_set(text.encode("utf-8"), description=str(path), target=target)
        return _no_target(_csv_set(source, path.name, str(path), text), target)
    if path.suffix.lower() == ".zip":
        return _no_target(set_from_zip(path, description=str(path)), target)
    raise InvalidInputError(f"{path.name}: a labelled set is a folder, a .zip or a .csv file.")


def set_from_bytes(data: bytes, *, description: str, target: str | None = None) -> LabelledSet:
    """A labelled set from bytes: a zip (of images), or else a table set's CSV."""
    if bytes(data[:2]) == ZIP_MAGIC:
        return _no_target(set_from_zip(data, description=description), target)
    return table_set(data, description=description, target=target)


def table_set(data: bytes, *, description: str, target: str | None = None) -> LabelledSet:
    """A table set from a CSV's bytes: each line's features, and its truth in the target column."""
    if len(data) > MAX_CSV_BYTES:
        raise InvalidInputError(f"{description} is {len(data):,} bytes; the limit is {MAX_CSV_BYTES:,}.")
    records = read_csv(bytes(data), max_rows=MAX_TABLE_ROWS, what=description)
    columns = list(records.rows[0])
    column = target or next((c for c in TARGET_COLUMNS if c in columns), None)
    if column is None or column not in columns:
        said = f"no column {target!r}" if target else "no 'label' or 'target' column"
        raise InvalidInputError(f"{description} has {said} (its columns are {', '.join(columns)}): a set of images "
                                "lists them in a 'file' column beside a 'label' or 'target' column; a table set "
                                "names the column that holds the truth (--target NAME, or ?target=NAME over REST).",
                                field="target")
    items, problems, rows = [], [], {}
    for i, row in enumerate(records.rows):
        key = records.where(i)
        truth = (row.get(column) or "").strip()
        if not truth:
            problems.append(BadItem(key, f"the {column} is empty"))
            continue
        rows[key] = {name: value for name, value in row.items() if name != column}
        items.append(Item(key, truth))
    if not items:
        raise InvalidInputError(f"{description} lists no row with a {column}.")
    return LabelledSet(None, items, problems, None, description, rows, column)


def _header(text: str) -> list[str]:
    return [c.strip() for c in next(csv.reader(io.StringIO(text)), [])]


def _no_target(dataset: LabelledSet, target: str | None) -> LabelledSet:
    """An image set, refusing a target column name (only a table set has one)."""
    if target is not None:
        raise InvalidInputError(f"{dataset.description} is a set of images; a target column names the truth of a "
                                "table set (a CSV of features without a 'file' column).", field="target")
    return dataset


def _finite(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def set_from_zip(zipped: bytes | str | Path, *, description: str = "the zip") -> LabelledSet:
    """Read a labelled set from a zip's bytes (an upload) or its path."""
    zipped = bytes(zipped) if isinstance(zipped, (bytes, bytearray)) else Path(zipped)
    return _from_source(_ZipSource(zipped), description)


def eval_sets(manifest) -> list[str]:
    """The names of the labelled sets an archive's manifest bundles (files with role eval)."""
    return [entry.path for entry in manifest.files if entry.role is FileRole.EVAL]


def set_from_archive(path: str | Path, arcname: str | None = None, *, target: str | None = None) -> LabelledSet:
    """The labelled set bundled in a `.yyar` archive (its first, or the one named `arcname`): a zip
    of images, or a table set's CSV.

    Read through `read_listed_file`, so its size and sha256 are checked against the
    manifest. Raises ModelNotFoundError when the archive bundles no such set.
    """
    names = eval_sets(read_manifest(path))
    if not names or (arcname is not None and arcname not in names):
        wanted = "labelled set" if arcname is None else f"labelled set named {arcname!r}"
        raise ModelNotFoundError(f"{Path(path).name} bundles no {wanted} (manifest role {FileRole.EVAL.value!r}).")
    arcname = arcname or names[0]
    return set_from_bytes(read_listed_file(path, arcname), description=f"{Path(path).name}:{arcname}",
                          target=target)


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
