"""The .yyar archive format: write, read and verify model archives safely.

What: a `.yyar` file is a zip holding `MANIFEST.json` at its root, one or more Keras
members under `models/` (`.h5` or `.keras`) and any other file the manifest lists
(labels, sample inputs). `pack` writes one; `read_manifest` reads only the manifest
(cheap, for the store scan); `open_archive` extracts and checks everything; `verify`
also loads every member through `kerasload` to prove it is a Keras model that fits the
manifest's input and output specs.

Why so careful: an archive may come from anyone (an upload to the server), so reading
one is hostile-input handling. Nothing is trusted from the zip headers alone: names are
checked before anything is written, links and special files are refused, sizes and
compression ratios are bounded, every byte is stream-copied under a cap into a private
temporary folder, and every checksum is verified. Every refusal raises a typed error
from `yyai_kernel.errors` whose message says what is wrong.

This module never imports Keras or TensorFlow at import time: `kerasload` is imported
inside `verify` and `pack` only.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import stat
import struct
import tempfile
import weakref
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path

from yyai_kernel import jsonparse
from yyai_kernel.errors import (
    ArchiveError,
    ArchiveLimitError,
    ChecksumError,
    FormatVersionError,
    ManifestError,
    MissingMemberError,
    ModelLoadError,
    NotAnArchiveError,
    StoreWriteError,
    UnexpectedMemberError,
    UnsafeMemberError,
    ZipBombError,
)

FORMAT = "yyar"
FORMAT_VERSION = 1
MANIFEST_NAME = "MANIFEST.json"
SUFFIX = ".yyar"

MiB = 1024 * 1024
_CHUNK = 64 * 1024
# Zip errors that mean "corrupt or truncated": a CRC mismatch is a BadZipFile; zipfile raises
# NotImplementedError for a header that claims a newer zip version or feature, and
# UnicodeDecodeError for a name flagged UTF-8 that is not.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, struct.error, NotImplementedError,
               UnicodeDecodeError)
_COMPRESSIONS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


@dataclass
class Limits:
    """Bounds applied while reading an archive; the defaults suit any sane model archive.

    `max_ratio` (uncompressed / compressed size) is only judged for entries larger than
    `ratio_min_bytes` uncompressed, since tiny files compress arbitrarily well.
    """

    max_members: int = 64
    max_member_bytes: int = 512 * MiB
    max_total_bytes: int = 1024 * MiB
    max_ratio: float = 200.0
    max_manifest_bytes: int = 1 * MiB
    ratio_min_bytes: int = 1 * MiB


# --- the manifest --------------------------------------------------------------------


@lru_cache(maxsize=1)
def _validator():
    import jsonschema

    text = resources.files("yyai_kernel").joinpath("schemas/manifest.schema.json").read_text("utf-8")
    return jsonschema.Draft202012Validator(json.loads(text))


def _field_of(error) -> str:
    """The JSON path of a schema error, e.g. "input.shape" or "members[0].sha256"."""
    parts = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [k for k in error.validator_value if k not in error.instance]
        parts += missing[:1]
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = error.schema.get("properties", {})
        extra = [k for k in error.instance if k not in allowed]
        parts += extra[:1]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(root)"


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Manifest:
    """A validated MANIFEST.json. `.data` is the dict; the properties are views on it."""

    def __init__(self, data: dict):
        self.data = data

    @classmethod
    def from_dict(cls, d) -> "Manifest":
        """Validate `d` against the schema and the rules JSON Schema cannot say.

        Raises FormatVersionError for an unknown format or format_version, and
        ManifestError (with `.field` set to the JSON path at fault) for anything else.
        """
        if not isinstance(d, dict):
            raise ManifestError("MANIFEST.json must hold a JSON object")
        if d.get("format") != FORMAT:
            raise FormatVersionError(
                f"format {d.get('format')!r} is not a yyai archive format (expected {FORMAT!r})",
                field="format",
            )
        if type(d.get("format_version")) is not int or d["format_version"] != FORMAT_VERSION:
            raise FormatVersionError(
                f"format_version {d.get('format_version')!r} is not supported: this yyai reads "
                f"format_version {FORMAT_VERSION}; upgrade yyai or re-pack the archive",
                field="format_version",
            )
        from jsonschema.exceptions import best_match

        err = best_match(_validator().iter_errors(d))
        if err is not None:
            where = _field_of(err)
            raise ManifestError(f"invalid manifest: {where}: {_short(err.message)}", field=where)
        d = copy.deepcopy(d)
        d["version"] = int(d["version"])
        d["input"]["shape"] = [int(n) for n in d["input"]["shape"]]
        _check_rules(d)
        return cls(d)

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def version(self) -> int:
        return self.data["version"]

    @property
    def description(self) -> str:
        return self.data.get("description", "")

    @property
    def created(self) -> str | None:
        return self.data.get("created")

    @property
    def members(self) -> list[dict]:
        return self.data["members"]

    @property
    def input(self) -> dict:
        """The input spec with its defaults filled in (name, resize, scale, offset)."""
        return {"name": "input", "resize": "stretch", "scale": 1.0, "offset": 0.0, **self.data["input"]}

    @property
    def output(self) -> dict:
        return self.data["output"]

    @property
    def combine(self) -> str:
        return self.data.get("combine", "mean")

    @property
    def batching(self) -> dict:
        return self.data.get("batching", {})

    @property
    def files(self) -> list[dict]:
        return self.data.get("files", [])

    def entries(self) -> list[dict]:
        """Every file the archive must hold besides the manifest: members, then files."""
        return self.members + self.files

    def to_json(self) -> str:
        """The manifest as written into an archive."""
        return json.dumps(self.data, indent=2, sort_keys=False) + "\n"

    def __repr__(self) -> str:
        return f"Manifest({self.name!r}, version={self.version})"


def _check_rules(d: dict) -> None:
    if ".." in d["name"]:
        raise ManifestError(f"invalid manifest: name: {d['name']!r} must not contain '..'", field="name")
    seen_names: set[str] = set()
    for i, m in enumerate(d["members"]):
        if m["name"] in seen_names:
            where = f"members[{i}].name"
            raise ManifestError(f"invalid manifest: {where}: member name {m['name']!r} is used twice", field=where)
        seen_names.add(m["name"])
    seen_paths: set[str] = set()
    for key in ("members", "files"):
        for i, entry in enumerate(d.get(key, [])):
            where = f"{key}[{i}].path"
            path = entry["path"]
            if ".." in path.split("/") or path == MANIFEST_NAME:
                raise ManifestError(f"invalid manifest: {where}: {path!r} is not allowed", field=where)
            if path in seen_paths:
                raise ManifestError(f"invalid manifest: {where}: {path!r} is listed twice", field=where)
            seen_paths.add(path)
    shape, color = d["input"]["shape"], d["input"]["color"]
    if len(shape) == 3:
        want = 1 if color == "grayscale" else 3
        first = d["input"].get("layout") == "channels_first"
        if shape[0 if first else -1] != want:
            axis = "first" if first else "last"
            raise ManifestError(
                f"invalid manifest: input.color: {color!r} needs {want} channel(s) but input.shape is {shape} "
                f"(channels {axis}; input.layout says where the channel axis is)",
                field="input.color",
            )
    elif len(shape) == 2 and color != "grayscale":
        raise ManifestError(
            f"invalid manifest: input.color: a 2-D input shape {shape} must be 'grayscale'", field="input.color"
        )
    out = d["output"]
    values = out.get("labels") or out.get("names")
    key = "labels" if "labels" in out else "names"
    if out["kind"] == "regression" and len(set(values)) != len(values):
        raise ManifestError(f"invalid manifest: output.{key}: names must be unique", field=f"output.{key}")


# --- reading zips safely -------------------------------------------------------------


def _check_name(name: str) -> None:
    """Refuse any zip entry name that could land outside the extraction folder."""
    bad = None
    if not name or "\x00" in name or any(ord(c) < 32 for c in name):
        bad = "has an empty name or control characters"
    elif "\\" in name:
        bad = "contains a backslash"
    elif name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        bad = "is an absolute path"
    else:
        parts = name.rstrip("/").split("/")
        if ".." in parts:
            bad = "climbs out of the archive with '..'"
        elif any(p in ("", ".") for p in parts):
            bad = "has an empty or '.' path component"
    if bad:
        raise UnsafeMemberError(f"unsafe archive member {name!r}: it {bad}; refusing to extract")


def _check_entries(zf: zipfile.ZipFile, limits: Limits) -> list[zipfile.ZipInfo]:
    """Check the central directory: count, names, links, duplicates, sizes, ratios.

    Returns the file entries (directory entries are checked, then ignored).
    """
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise ArchiveLimitError(
            f"archive has {len(infos)} entries; the limit is {limits.max_members}"
        )
    seen: set[str] = set()
    files = []
    total = 0
    for info in infos:
        name = info.filename
        _check_name(name)
        if name in seen:
            raise UnsafeMemberError(f"archive member {name!r} appears twice; refusing an ambiguous archive")
        seen.add(name)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UnsafeMemberError(f"archive member {name!r} is a symbolic link; links are refused")
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeMemberError(f"archive member {name!r} is a special file; only plain files are allowed")
        if info.header_offset < 0:  # bytes cut from the front: zipfile would seek before the file start
            raise NotAnArchiveError(f"archive member {name!r} starts before the beginning of the file; it is truncated")
        if info.flag_bits & 0x1:
            raise NotAnArchiveError(f"archive member {name!r} is encrypted; yyai archives are never encrypted")
        if info.compress_type not in _COMPRESSIONS:
            raise NotAnArchiveError(f"archive member {name!r} uses an unsupported compression method")
        if info.is_dir():
            continue
        if info.file_size > limits.max_member_bytes:
            raise ArchiveLimitError(
                f"archive member {name!r} is {info.file_size} bytes; the limit is {limits.max_member_bytes}"
            )
        _check_ratio(name, info.file_size, info.compress_size, limits)
        total += info.file_size
        files.append(info)
    if total > limits.max_total_bytes:
        raise ArchiveLimitError(f"archive unpacks to {total} bytes; the limit is {limits.max_total_bytes}")
    return files


def _check_ratio(name: str, size: int, compressed: int, limits: Limits) -> None:
    if size > limits.ratio_min_bytes and size / max(compressed, 1) > limits.max_ratio:
        raise ZipBombError(
            f"archive member {name!r} expands {size / max(compressed, 1):.0f}x "
            f"(limit {limits.max_ratio:.0f}x); refusing what looks like a zip bomb"
        )


class _MemberReader:
    """A zip member's stream whose corrupt compressed data reads as BadZipFile.

    bz2 reports a corrupt stream as a bare OSError and lzma as LZMAError, neither of which
    says "zip"; wrapping only the reads keeps a disk error on the writing side an OSError.
    """

    def __init__(self, src):
        self._src = src

    def read(self, n: int = -1) -> bytes:
        try:
            return self._src.read(n)
        except (OSError, lzma.LZMAError) as exc:
            raise zipfile.BadZipFile(f"corrupt compressed data: {exc}") from exc


def _open_zip(path) -> zipfile.ZipFile:
    path = Path(path)
    try:
        return zipfile.ZipFile(path)
    except _ZIP_ERRORS as exc:
        raise NotAnArchiveError(f"{path.name} is not a zip archive, or it is truncated ({exc})") from exc
    except OSError as exc:
        raise NotAnArchiveError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _read_manifest_from(zf: zipfile.ZipFile, path, limits: Limits) -> Manifest:
    name = Path(path).name
    try:
        info = zf.getinfo(MANIFEST_NAME)
    except KeyError:
        raise ManifestError(f"{name} has no {MANIFEST_NAME} at its root; is it a yyai archive?") from None
    if info.file_size > limits.max_manifest_bytes:
        raise ArchiveLimitError(f"{MANIFEST_NAME} is {info.file_size} bytes; the limit is {limits.max_manifest_bytes}")
    try:
        with zf.open(info) as src:
            raw = _MemberReader(src).read(limits.max_manifest_bytes + 1)
    except _ZIP_ERRORS as exc:
        raise NotAnArchiveError(f"{name}: {MANIFEST_NAME} is corrupt or truncated ({exc})") from exc
    if len(raw) > limits.max_manifest_bytes:
        raise ArchiveLimitError(f"{MANIFEST_NAME} exceeds the limit of {limits.max_manifest_bytes} bytes")
    # the size was capped above; a manifest's numbers (scale, offset) must be finite
    data = jsonparse.loads(raw, what=f"{name}: {MANIFEST_NAME}", error=ManifestError, max_bytes=None, finite=True)
    return Manifest.from_dict(data)


def read_manifest(path, limits: Limits | None = None) -> Manifest:
    """Read and validate only MANIFEST.json (cheap: no extraction, no Keras).

    Also checks the zip's central directory (names, links, counts, sizes), so an
    archive it accepts can only fail later on content (checksums, models).
    Raises NotAnArchiveError, ManifestError, FormatVersionError or another ArchiveError.
    """
    limits = limits or Limits()
    with _open_zip(path) as zf:
        _check_entries(zf, limits)
        return _read_manifest_from(zf, path, limits)


def copy_capped(src, dst, cap: int) -> tuple[int, str]:
    """Copy the stream `src` to `dst`, reading at most `cap + 1` bytes.

    Returns (bytes copied, sha256 hex). When the source holds more than `cap` bytes the
    count returned is `cap + 1`: the caller refuses it without reading the rest.
    """
    digest = hashlib.sha256()
    n = 0
    while n <= cap:
        chunk = src.read(min(_CHUNK, cap + 1 - n))
        if not chunk:
            break
        digest.update(chunk)
        dst.write(chunk)
        n += len(chunk)
    return n, digest.hexdigest()


class OpenedArchive:
    """An archive extracted and checked into a private temporary folder.

    Use as a context manager; `close()` (or leaving the `with` block, or garbage
    collection) removes the folder. Construction raises a typed ArchiveError for any
    refusal and leaves nothing behind.
    """

    def __init__(self, path, limits: Limits | None = None):
        self.path = Path(path)
        self.limits = limits or Limits()
        self.root = Path(tempfile.mkdtemp(prefix="yyai-"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.root), ignore_errors=True)
        try:
            self.manifest = self._extract()
        except BaseException:
            self.close()
            raise

    def _extract(self) -> Manifest:
        with _open_zip(self.path) as zf:
            infos = _check_entries(zf, self.limits)
            manifest = _read_manifest_from(zf, self.path, self.limits)
            expected = {e["path"]: e for e in manifest.entries()}
            present = {i.filename: i for i in infos if i.filename != MANIFEST_NAME}
            missing = sorted(set(expected) - set(present))
            if missing:
                raise MissingMemberError(
                    f"{self.path.name}: the manifest lists {missing[0]!r} but the archive does not hold it"
                )
            extra = sorted(set(present) - set(expected))
            if extra:
                raise UnexpectedMemberError(
                    f"{self.path.name}: the archive holds {extra[0]!r}, which the manifest does not list"
                )
            budget = self.limits.max_total_bytes
            for arcname, entry in expected.items():
                budget -= self._extract_one(zf, present[arcname], entry, budget)
        return manifest

    def _extract_one(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, entry: dict, budget: int) -> int:
        name, declared = info.filename, entry["size"]
        if info.file_size > declared:
            raise ArchiveLimitError(
                f"archive member {name!r} holds {info.file_size} bytes but the manifest declares {declared}"
            )
        cap = min(declared, self.limits.max_member_bytes, budget)
        dest = self.root / name
        if self.root.resolve() not in dest.resolve().parents:  # belt and braces after _check_name
            raise UnsafeMemberError(f"unsafe archive member {name!r}: it leaves the extraction folder")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            with os.fdopen(fd, "wb") as out, zf.open(info) as src:
                n, sha = copy_capped(_MemberReader(src), out, cap)
        except _ZIP_ERRORS as exc:
            raise NotAnArchiveError(f"archive member {name!r} is corrupt or truncated ({exc})") from exc
        except OSError as exc:  # the temporary folder is full or unwritable: the server's fault
            raise StoreWriteError(
                f"could not unpack archive member {name!r} to check it: {exc.strerror or exc}"
            ) from exc
        _check_ratio(name, n, info.compress_size, self.limits)
        if n > cap:
            if n > declared:
                raise ArchiveLimitError(
                    f"archive member {name!r} holds more than the {declared} bytes its manifest declares"
                )
            raise ArchiveLimitError(f"archive member {name!r} exceeds the archive size limits")
        if n != declared:
            raise ChecksumError(f"archive member {name!r} is {n} bytes but the manifest says {declared}")
        if sha != entry["sha256"]:
            raise ChecksumError(
                f"archive member {name!r} fails its sha256 check (manifest {entry['sha256'][:12]}..., "
                f"actual {sha[:12]}...); the archive is corrupt or was altered"
            )
        return n

    def member_path(self, member: dict) -> Path:
        """Where a member (or a `files` entry) of the manifest was extracted."""
        return self.root / member["path"]

    def close(self) -> None:
        """Remove the extraction folder. Safe to call more than once."""
        self._finalizer()

    def __enter__(self) -> "OpenedArchive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_archive(path, limits: Limits | None = None) -> OpenedArchive:
    """Extract and check an archive; see OpenedArchive. Use it in a `with` block."""
    return OpenedArchive(path, limits)


# --- verification --------------------------------------------------------------------


@dataclass
class VerifyReport:
    """The result of `verify`: the manifest and what each member turned out to be."""

    manifest: Manifest
    members: list[dict] = field(default_factory=list)
    ok: bool = True


def check_model_fits(model, member_name: str, input_spec: dict, output_spec: dict) -> None:
    """Refuse a loaded model whose input or output does not match the manifest specs."""
    inputs, outputs = list(getattr(model, "inputs", None) or []), list(getattr(model, "outputs", None) or [])
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelLoadError(
            f"member {member_name!r} has {len(inputs)} inputs and {len(outputs)} outputs; yyai serves "
            "models with exactly one input and one output"
        )
    got = tuple(inputs[0].shape)[1:]
    want = tuple(input_spec["shape"])
    if len(got) != len(want) or any(g is not None and g != w for g, w in zip(got, want)):
        raise ManifestError(
            f"member {member_name!r} expects input shape {got} but input.shape is {list(want)}",
            field="input.shape",
        )
    key = "labels" if output_spec["kind"] == "classification" else "names"
    width = tuple(outputs[0].shape)[-1]
    if len(outputs[0].shape) != 2 or width != len(output_spec[key]):
        raise ManifestError(
            f"member {member_name!r} outputs shape {tuple(outputs[0].shape)} but output.{key} has "
            f"{len(output_spec[key])} entries",
            field=f"output.{key}",
        )


def verify(path, *, trusted: bool = False, load_models: bool = True, limits: Limits | None = None) -> VerifyReport:
    """Open an archive, check everything, and (load_models) load each member with Keras.

    Returns a VerifyReport whose members are {name, path, format, keras_version, params}
    (format/keras_version/params are None when load_models is False). Raises the typed
    error of the first problem found; `trusted` allows Lambda layers with Python code.
    """
    with open_archive(path, limits) as opened:
        manifest = opened.manifest
        members = []
        for m in manifest.members:
            row = {"name": m["name"], "path": m["path"], "format": None,
                   "keras_version": m.get("keras_version"), "params": None}
            if load_models:
                from yyai_kernel import kerasload

                file = opened.member_path(m)
                info = kerasload.member_info(file)
                model = kerasload.load_member(file, trusted=trusted)
                check_model_fits(model, m["name"], manifest.input, manifest.output)
                row.update(format=info["format"], keras_version=info["keras_version"] or row["keras_version"],
                           params=int(model.count_params()))
                del model
            members.append(row)
        return VerifyReport(manifest=manifest, members=members, ok=True)


# --- writing -------------------------------------------------------------------------


def sha256_file(path) -> str:
    """The sha256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def member_name_for(stem: str) -> str:
    """A valid member name from a file stem: lower case, other characters -> '_'."""
    name = re.sub(r"[^a-z0-9_.-]", "_", stem.lower()).strip("._-")[:64]
    name = name.replace("..", "_")
    return name or "model"


def _model_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        return ".h5"
    if suffix == ".keras":
        return ".keras"
    raise ModelLoadError(f"{path.name}: a model member must be a .h5 or .keras file")


def fsync_dir(path) -> None:
    """fsync a directory so a rename inside it survives a crash (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def pack(
    *,
    name: str,
    version: int,
    models: list,
    input_spec: dict,
    output_spec: dict,
    description: str = "",
    combine: str = "mean",
    batching: dict | None = None,
    extra_files=(),
    out_dir,
    convert: bool = False,
    trusted: bool = False,
) -> Path:
    """Write `out_dir/<name>-<version>.yyar` from model files and metadata; returns its path.

    Every model is loaded (through kerasload, safe_mode unless `trusted`) and checked
    against the input/output specs before anything is written. Member names come from
    the file stems (made unique); `convert=True` re-saves `.h5` members as `.keras` and
    records the original file under "source". `extra_files` is a sequence of
    (file, arcname, role). The file appears atomically (temp file, fsync, rename);
    an existing archive of the same name is replaced. ``yyai archive`` is its command line.
    """
    out_dir = Path(out_dir)
    if not models:
        raise ManifestError("an archive needs at least one model member", field="members")
    input_spec = {"name": "input", "resize": "stretch", "scale": 1.0, "offset": 0.0, **input_spec}
    placeholder = {"name": "m", "path": "models/m.h5", "sha256": "0" * 64, "size": 0}
    Manifest.from_dict({  # refuse bad metadata before loading any model
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": name, "version": version,
        "description": description, "members": [placeholder], "input": input_spec,
        "output": output_spec, "combine": combine, "batching": dict(batching or {}),
    })
    work = Path(tempfile.mkdtemp(prefix="yyai-pack-"))
    try:
        members, sources, used = [], {}, set()
        for src in map(Path, models):
            entry, file = _pack_member(src, used, input_spec, output_spec, work, convert=convert, trusted=trusted)
            members.append(entry)
            sources[entry["path"]] = file
        files = []
        for file, arcname, role in extra_files:
            file = Path(file)
            files.append({"path": arcname, "sha256": sha256_file(file), "size": file.stat().st_size, "role": role})
            sources[arcname] = file
        data = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "name": name, "version": version,
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "description": description, "members": members, "input": input_spec, "output": output_spec,
            "combine": combine, "batching": dict(batching or {}), "files": files,
        }
        manifest = Manifest.from_dict(data)
        for entry in manifest.entries():
            _check_name(entry["path"])
        return _write_zip(manifest, sources, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _pack_member(src: Path, used: set, input_spec: dict, output_spec: dict, work: Path, *,
                 convert: bool, trusted: bool) -> tuple[dict, Path]:
    """One member's manifest entry and the file to store: loaded, checked against the specs,
    named uniquely (``used`` collects the names), converted to .keras when asked."""
    from yyai_kernel import kerasload

    if not src.is_file():
        raise ModelLoadError(f"model file {src} does not exist")
    suffix = _model_suffix(src)
    base = member_name_for(src.stem)
    mname, k = base, 2
    while mname in used:
        mname, k = f"{base}_{k}", k + 1
    used.add(mname)
    model = kerasload.load_member(src, trusted=trusted)
    check_model_fits(model, mname, input_spec, output_spec)
    del model
    info = kerasload.member_info(src)
    file, source = src, None
    if convert and suffix == ".h5":
        file = kerasload.convert_to_keras(src, work / f"{mname}.keras", trusted=trusted)
        source = {"path": f"models/{mname}.h5", "sha256": sha256_file(src),
                  "size": src.stat().st_size, "keras_version": info["keras_version"]}
        info = kerasload.member_info(file)
        suffix = ".keras"
    entry = {"name": mname, "path": f"models/{mname}{suffix}", "sha256": sha256_file(file),
             "size": file.stat().st_size, "keras_version": info["keras_version"]}
    if source:
        entry["source"] = source
    return entry, file


def _write_zip(manifest: Manifest, sources: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{manifest.name}-{manifest.version}{SUFFIX}"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=SUFFIX, dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as raw:
            with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                zf.writestr(_zip_info(MANIFEST_NAME), manifest.to_json().encode("utf-8"))
                for entry in manifest.entries():
                    with open(sources[entry["path"]], "rb") as src, zf.open(_zip_info(entry["path"]), "w") as dst:
                        shutil.copyfileobj(src, dst, 1024 * 1024)
            raw.flush()
            os.fsync(raw.fileno())
        open_archive(tmp).close()  # self-check: the file we wrote reads back cleanly
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a server running as another user reads it
        os.replace(tmp, target)
        fsync_dir(out_dir)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _zip_info(arcname: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    return info


def read_listed_file(path, arcname: str, limits: Limits | None = None) -> bytes:
    """Read one file the manifest lists (a sample image, a labels file), checked against it.

    Only names in the manifest are readable, the size is capped at the declared size and
    the sha256 must match, so this serves bundled files without extracting the archive.
    """
    limits = limits or Limits()
    with _open_zip(path) as zf:
        _check_entries(zf, limits)
        manifest = _read_manifest_from(zf, path, limits)
        entry = next((e for e in manifest.entries() if e["path"] == arcname), None)
        if entry is None:
            raise MissingMemberError(f"{Path(path).name}: the manifest lists no file {arcname!r}")
        buffer = io.BytesIO()
        try:
            with zf.open(arcname) as src:
                n, sha = copy_capped(_MemberReader(src), buffer, min(entry["size"], limits.max_member_bytes))
        except KeyError:
            raise MissingMemberError(f"{Path(path).name}: the archive does not hold {arcname!r}") from None
        except _ZIP_ERRORS as exc:
            raise NotAnArchiveError(f"archive member {arcname!r} is corrupt or truncated ({exc})") from exc
    if n != entry["size"] or sha != entry["sha256"]:
        raise ChecksumError(f"{Path(path).name}: {arcname!r} does not match its manifest checksum")
    return buffer.getvalue()


# --- other zips under the same checks (labelled data sets) ---------------------------


def check_entry_name(name: str) -> None:
    """Refuse a relative path that could leave its folder (absolute, '..', backslash...).

    The rule archive members obey, for other relative names from outside, such as the file
    column of an evaluation set's CSV. Raises UnsafeMemberError.
    """
    _check_name(name)


def open_checked_zip(source: bytes | str | Path, limits: Limits) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    """Open any zip (a path, or its bytes) and check its directory as an archive's is checked.

    Returns the open ZipFile (the caller closes it) and its file entries. The same refusals
    as for archives: names, links, counts, sizes and ratios, each a typed ArchiveError.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        try:
            zf = zipfile.ZipFile(io.BytesIO(bytes(source)))
        except _ZIP_ERRORS as exc:
            raise NotAnArchiveError(f"the upload is not a zip file, or it is truncated ({exc})") from exc
    else:
        zf = _open_zip(source)
    try:
        return zf, _check_entries(zf, limits)
    except BaseException:
        zf.close()
        raise


def read_zip_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits) -> bytes:
    """The bytes of one entry that `open_checked_zip` returned, read under a cap.

    Raises NotAnArchiveError when the data is corrupt, ArchiveLimitError or ZipBombError
    when it holds more than its header says or expands past the ratio limit.
    """
    buffer = io.BytesIO()
    cap = min(info.file_size, limits.max_member_bytes)
    try:
        with zf.open(info) as src:
            n, _ = copy_capped(_MemberReader(src), buffer, cap)
    except _ZIP_ERRORS as exc:
        raise NotAnArchiveError(f"zip entry {info.filename!r} is corrupt or truncated ({exc})") from exc
    _check_ratio(info.filename, n, info.compress_size, limits)
    if n > cap:
        raise ArchiveLimitError(f"zip entry {info.filename!r} holds more than the {cap} bytes its header declares")
    return buffer.getvalue()


__all__ = [
    "FORMAT", "FORMAT_VERSION", "MANIFEST_NAME", "Limits", "Manifest", "OpenedArchive", "VerifyReport",
    "ArchiveError", "open_archive", "pack", "read_manifest", "verify", "sha256_file", "fsync_dir",
    "read_listed_file", "check_entry_name", "open_checked_zip", "read_zip_entry",
]
