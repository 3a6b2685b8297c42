"""pack: write a .yyar archive from Keras model files and the specs of its manifest.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from yyai_kernel.archive.manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    SUFFIX,
    Manifest,
    _check_name,
)
from yyai_kernel.archive.reader import fsync_dir, open_archive, sha256_file
from yyai_kernel.archive.verify import check_model_fits
from yyai_kernel.errors import (
    ManifestError,
    ModelLoadError,
)
from yyai_kernel.types.specs import (
    Combine,
    FileRole,
    FileSpec,
    InputSpec,
    MemberSource,
    MemberSpec,
    OutputSpec,
)


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


def pack(
    *,
    name: str,
    version: int,
    models: Sequence[str | os.PathLike[str]],
    input_spec: InputSpec | dict[str, Any],
    output_spec: OutputSpec | dict[str, Any],
    description: str = "",
    combine: Combine | str = Combine.MEAN,
    batching: dict[str, Any] | None = None,
    extra_files: Iterable[tuple[str | os.PathLike[str], str, FileRole | str]] = (),
    out_dir: str | os.PathLike[str],
    convert: bool = False,
    trusted: bool = False,
) -> Path:
    """Write `out_dir/<name>-<version>.yyar` from model files and metadata; returns its path.

    Every model is loaded (through kerasload, safe_mode unless `trusted`) and checked
    against the input/output specs before anything is written. Member names come from
    the file stems (made unique); `convert=True` re-saves `.h5` members as `.keras` and
    records the original file under "source". The specs may be given as their JSON (the
    manifest's ``input`` and ``output`` objects); the input is written with its defaults
    stated. `extra_files` is a sequence of (file, arcname, role). The file appears
    atomically (temp file, fsync, rename); an existing archive of the same name is
    replaced. ``yyai archive`` is its command line.
    """
    out_dir = Path(out_dir)
    if not models:
        raise ManifestError("an archive needs at least one model member", field="members")
    placeholder = {"name": "m", "path": "models/m.h5", "sha256": "0" * 64, "size": 0}
    checked = Manifest.from_dict({  # refuse bad metadata before loading any model
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": name, "version": version,
        "description": description, "members": [placeholder], "input": _json(input_spec),
        "output": _json(output_spec), "combine": str(combine), "batching": dict(batching or {}),
    })
    input_spec, output_spec = checked.input, checked.output
    extra_files = list(extra_files)
    roles = [_role(i, role) for i, (_, _, role) in enumerate(extra_files)]
    work = Path(tempfile.mkdtemp(prefix="yyai-pack-"))
    try:
        members: list[MemberSpec] = []
        sources: dict[str, Path] = {}
        used: set[str] = set()
        for src in map(Path, models):
            entry, file = _pack_member(src, used, input_spec, output_spec, work, convert=convert, trusted=trusted,
                                       model_name=name)
            members.append(entry)
            sources[entry.path] = file
        files = []
        for (name_or_path, arcname, _), role in zip(extra_files, roles):
            path = Path(name_or_path)
            files.append(FileSpec(arcname, sha256_file(path), path.stat().st_size, role))
            sources[arcname] = path
        data = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "name": name, "version": version,
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "description": description, "members": [m.to_json() for m in members], "input": input_spec.to_json(),
            "output": output_spec.to_json(), "combine": checked.combine.value, "batching": dict(batching or {}),
            "files": [f.to_json() for f in files],
        }
        manifest = Manifest.from_dict(data)
        for listed in manifest.entries():
            _check_name(listed.path)
        return _write_zip(manifest, sources, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _json(spec: InputSpec | OutputSpec | dict[str, Any]) -> dict[str, Any]:
    return spec.to_json() if isinstance(spec, (InputSpec, OutputSpec)) else spec


def _role(i: int, role: FileRole | str) -> FileRole:
    """The role of the i-th extra file, checked before any model loads."""
    try:
        return FileRole(role)
    except ValueError:
        known = ", ".join(repr(r.value) for r in FileRole)
        raise ManifestError(f"invalid manifest: files[{i}].role: {role!r} is not one of {known}",
                            field=f"files[{i}].role") from None


def _pack_member(src: Path, used: set[str], input_spec: InputSpec, output_spec: OutputSpec, work: Path, *,
                 convert: bool, trusted: bool, model_name: str) -> tuple[MemberSpec, Path]:
    """One member's manifest entry and the file to store: loaded, checked against the specs,
    named uniquely (``used`` collects the names), converted to .keras when asked."""
    from yyai_kernel.archive import kerasload

    if not src.is_file():
        raise ModelLoadError(f"model file {src} does not exist")
    suffix = _model_suffix(src)
    base = member_name_for(src.stem)
    mname, k = base, 2
    while mname in used:
        mname, k = f"{base}_{k}", k + 1
    used.add(mname)
    model = kerasload.load_member(src, trusted=trusted, model_name=model_name)
    check_model_fits(model, mname, input_spec, output_spec)
    del model
    info = kerasload.member_info(src)
    file, source = src, None
    if convert and suffix == ".h5":
        file = kerasload.convert_to_keras(src, work / f"{mname}.keras", trusted=trusted)
        source = MemberSource(f"models/{mname}.h5", sha256_file(src), src.stat().st_size, info["keras_version"])
        info = kerasload.member_info(file)
        suffix = ".keras"
    entry = MemberSpec(mname, f"models/{mname}{suffix}", sha256_file(file), file.stat().st_size,
                       info["keras_version"], source)
    return entry, file


def _write_zip(manifest: Manifest, sources: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{manifest.name}-{manifest.version}{SUFFIX}"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=SUFFIX, dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as raw:
            with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                zf.writestr(_zip_info(MANIFEST_NAME), manifest.to_json().encode("utf-8"))
                for entry in manifest.entries():
                    with open(sources[entry.path], "rb") as src, zf.open(_zip_info(entry.path), "w") as dst:
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

