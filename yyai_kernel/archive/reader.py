"""Reading an archive safely: checked zip entries, the manifest, extraction, listed files.

An archive may come from anyone, so reading one is hostile-input handling: names are
checked before anything is written, links and special files are refused, sizes and
compression ratios are bounded, every byte is stream-copied under a cap into a private
temporary folder, and every checksum is verified.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import shutil
import stat
import struct
import tempfile
import weakref
import zipfile
import zlib
from pathlib import Path
from typing import IO, Protocol

from yyai_kernel.archive.manifest import (
    MANIFEST_NAME,
    SUFFIX,
    Limits,
    Manifest,
    _check_name,
)
from yyai_kernel.errors import (
    ArchiveLimitError,
    ChecksumError,
    ManifestError,
    MissingMemberError,
    NotAnArchiveError,
    StoreWriteError,
    UnexpectedMemberError,
    UnsafeMemberError,
    ZipBombError,
)
from yyai_kernel.hints import Hint, Step
from yyai_kernel.protocol import jsonparse
from yyai_kernel.types.specs import FileSpec, MemberSpec

_CHUNK = 64 * 1024


# Zip errors that mean "corrupt or truncated": a CRC mismatch is a BadZipFile; zipfile raises
# NotImplementedError for a header that claims a newer zip version or feature, and
# UnicodeDecodeError for a name flagged UTF-8 that is not.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, struct.error, NotImplementedError,
               UnicodeDecodeError)


_COMPRESSIONS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


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


class Readable(Protocol):
    """A byte stream to read from (a file, a zip member, a request body)."""

    def read(self, n: int = -1, /) -> bytes: ...


class _MemberReader:
    """A zip member's stream whose corrupt compressed data reads as BadZipFile.

    bz2 reports a corrupt stream as a bare OSError and lzma as LZMAError, neither of which
    says "zip"; wrapping only the reads keeps a disk error on the writing side an OSError.
    """

    def __init__(self, src: IO[bytes]):
        self._src = src

    def read(self, n: int = -1) -> bytes:
        try:
            return self._src.read(n)
        except (OSError, lzma.LZMAError) as exc:
            raise zipfile.BadZipFile(f"corrupt compressed data: {exc}") from exc


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _open_zip(path: str | os.PathLike[str], *, archive: bool = True) -> zipfile.ZipFile:
    """The zip at ``path``; NotAnArchiveError when it is none. For an ``archive``, the error
    says what the file is instead (a Keras .h5 model is the usual mistake) and hints at
    packing one, without naming the file: the caller knows it, and a server's spooled
    upload has a name that means nothing to its sender."""
    path = Path(path)
    try:
        return zipfile.ZipFile(path)
    except _ZIP_ERRORS as exc:
        if not archive:
            raise NotAnArchiveError(f"{path.name} is not a zip archive, or it is truncated ({exc})") from exc
        if _starts_with(path, _HDF5_SIGNATURE):
            raise NotAnArchiveError(f"a Keras .h5 model file, not a {SUFFIX} archive", hint=Hint(Step.PACK)) from exc
        raise NotAnArchiveError(f"not a {SUFFIX} archive: not a zip archive, or a truncated one ({exc})",
                                hint=Hint(Step.PACK)) from exc
    except OSError as exc:
        raise NotAnArchiveError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _starts_with(path: Path, signature: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(signature)) == signature
    except OSError:
        return False


def _read_manifest_from(zf: zipfile.ZipFile, limits: Limits) -> Manifest:
    try:
        info = zf.getinfo(MANIFEST_NAME)
    except KeyError:
        names = set(zf.namelist())
        if "config.json" in names and names & {"metadata.json", "model.weights.h5"}:
            raise ManifestError(f"a Keras .keras model file, not a {SUFFIX} archive (which holds {MANIFEST_NAME})",
                                hint=Hint(Step.PACK)) from None
        raise ManifestError(f"not a {SUFFIX} archive: the zip has no {MANIFEST_NAME} at its root",
                            hint=Hint(Step.PACK)) from None
    if info.file_size > limits.max_manifest_bytes:
        raise ArchiveLimitError(f"{MANIFEST_NAME} is {info.file_size} bytes; the limit is {limits.max_manifest_bytes}")
    try:
        with zf.open(info) as src:
            raw = _MemberReader(src).read(limits.max_manifest_bytes + 1)
    except _ZIP_ERRORS as exc:
        raise NotAnArchiveError(f"{MANIFEST_NAME} is corrupt or truncated ({exc})") from exc
    if len(raw) > limits.max_manifest_bytes:
        raise ArchiveLimitError(f"{MANIFEST_NAME} exceeds the limit of {limits.max_manifest_bytes} bytes")
    # the size was capped above; a manifest's numbers (scale, offset) must be finite
    data = jsonparse.loads(raw, what=MANIFEST_NAME, error=ManifestError, max_bytes=None, finite=True)
    return Manifest.from_dict(data)


def read_manifest(path: str | os.PathLike[str], limits: Limits | None = None) -> Manifest:
    """Read and validate only MANIFEST.json (cheap: no extraction, no Keras).

    Also checks the zip's central directory (names, links, counts, sizes), so an
    archive it accepts can only fail later on content (checksums, models).
    Raises NotAnArchiveError, ManifestError, FormatVersionError or another ArchiveError.
    """
    limits = limits or Limits()
    with _open_zip(path) as zf:
        _check_entries(zf, limits)
        return _read_manifest_from(zf, limits)


def copy_capped(src: Readable, dst: IO[bytes], cap: int) -> tuple[int, str]:
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

    def __init__(self, path: str | os.PathLike[str], limits: Limits | None = None):
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
            manifest = _read_manifest_from(zf, self.limits)
            expected = {e.path: e for e in manifest.entries()}
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

    def _extract_one(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, entry: MemberSpec | FileSpec,
                     budget: int) -> int:
        name, declared = info.filename, entry.size
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
        if sha != entry.sha256:
            raise ChecksumError(
                f"archive member {name!r} fails its sha256 check (manifest {entry.sha256[:12]}..., "
                f"actual {sha[:12]}...); the archive is corrupt or was altered"
            )
        return n

    def member_path(self, member: MemberSpec | FileSpec) -> Path:
        """Where a member (or a `files` entry) of the manifest was extracted."""
        return self.root / member.path

    def close(self) -> None:
        """Remove the extraction folder. Safe to call more than once."""
        self._finalizer()

    def __enter__(self) -> OpenedArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_archive(path: str | os.PathLike[str], limits: Limits | None = None) -> OpenedArchive:
    """Extract and check an archive; see OpenedArchive. Use it in a `with` block."""
    return OpenedArchive(path, limits)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(path: str | os.PathLike[str]) -> None:
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


def read_listed_file(path: str | os.PathLike[str], arcname: str, limits: Limits | None = None) -> bytes:
    """Read one file the manifest lists (a sample image, a labels file), checked against it.

    Only names in the manifest are readable, the size is capped at the declared size and
    the sha256 must match, so this serves bundled files without extracting the archive.
    """
    limits = limits or Limits()
    with _open_zip(path) as zf:
        _check_entries(zf, limits)
        manifest = _read_manifest_from(zf, limits)
        entry = next((e for e in manifest.entries() if e.path == arcname), None)
        if entry is None:
            raise MissingMemberError(f"{Path(path).name}: the manifest lists no file {arcname!r}")
        buffer = io.BytesIO()
        try:
            with zf.open(arcname) as src:
                n, sha = copy_capped(_MemberReader(src), buffer, min(entry.size, limits.max_member_bytes))
        except KeyError:
            raise MissingMemberError(f"{Path(path).name}: the archive does not hold {arcname!r}") from None
        except _ZIP_ERRORS as exc:
            raise NotAnArchiveError(f"archive member {arcname!r} is corrupt or truncated ({exc})") from exc
    if n != entry.size or sha != entry.sha256:
        raise ChecksumError(f"{Path(path).name}: {arcname!r} does not match its manifest checksum")
    return buffer.getvalue()


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
        zf = _open_zip(source, archive=False)
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

