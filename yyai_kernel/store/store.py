"""ModelStore: a folder of .yyar archives, their versions, and the persisted pins, labels and traffic.

What: the store discovers models from the archives' manifests (never from file names),
keeps several versions of a model side by side, and remembers in a small state file
(`.yyai-state.json`, see ``state.py``) which version is pinned as the default, the
version labels, and each model's traffic policy (canary and shadow). Without a pin, the
latest version is the default. A version that a label or the traffic policy names cannot
be deleted until they move (a ConflictError says which).

Why it is careful: the store is what a restart serves from, so its writes are atomic
(temp file in the same folder, fsync, os.replace, fsync the folder) and its reads are
forgiving. An unreadable archive is reported and skipped while the others still load;
two archives claiming the same name and version are both reported and neither is
chosen; a corrupt state file is logged and the latest versions serve. Scanning reads
only manifests, so it never imports Keras.

Several processes may share one store folder (a model host per GPU, each owning some of
the models: ``owns`` keeps only those in its index; ``yyai default --store`` beside a
server). Each change of the state file is a read-modify-write of the file under an
exclusive ``flock`` of the store folder, so a process that changes one model's pin never
writes back another process's older picture of the others.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO

from yyai_kernel import archive
from yyai_kernel.archive import (
    SUFFIX,
    Limits,
    Manifest,
    fsync_dir,
    read_manifest,
    sha256_file,
)
from yyai_kernel.errors import (
    ArchiveError,
    ConflictError,
    ModelNotFoundError,
    StoreWriteError,
    YyaiError,
)
from yyai_kernel.hints import Hint, Step
from yyai_kernel.protocol import jsonparse
from yyai_kernel.store.state import StoreState
from yyai_kernel.types import StoreProblemKind, TrafficPolicy, VersionDescription

log = logging.getLogger("yyai.store")

STATE_FILE = ".yyai-state.json"
TEMP_PREFIX = ".tmp-"
COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ArchiveRecord:
    """One readable archive in the store. `sha256` and `size` describe the whole file."""

    name: str
    version: int
    path: Path
    sha256: str
    size: int
    mtime: float
    manifest: Manifest

    @cached_property
    def description(self) -> VersionDescription:
        """What this version takes and gives: the manifest's input and output specs, its members.
        Built once per record, so a request that reads it costs a dictionary lookup."""
        m = self.manifest
        return VersionDescription(name=self.name, version=self.version, input=m.input, output=m.output,
                                  members=tuple(x.name for x in m.members), combine=m.combine,
                                  description=m.description)


@dataclass
class StoreProblem:
    """An archive the store skipped, and why (``kind``)."""

    path: Path
    error: str
    kind: StoreProblemKind


class ModelStore:
    """A folder of model archives with versions and persisted default pins.

    Example:
        store = ModelStore("model_archives")
        store.names()                 # ["digits", ...]
        store.default_version("digits")
        store.pin("digits", 1)        # survives a restart
    """

    def __init__(self, root: str | os.PathLike[str], limits: Limits | None = None, *, create: bool = False,
                 owns: Callable[[str], bool] | None = None):
        self.root = Path(root)
        self.limits = limits or Limits()
        self.owns = owns  # the model names this store serves (None: all); the others are left to their owners
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        if not self.root.is_dir():
            raise YyaiError(f"model store {self.root} is not a folder; create it or pass another --store")
        self._lock = threading.RLock()
        self._records: dict[tuple[str, int], ArchiveRecord] = {}
        self._index: dict[str, tuple[int, ...]] = {}  # name -> its versions, ascending (from scan)
        self._cache: dict[Path, tuple[tuple[int, int, int], ArchiveRecord]] = {}
        self._problems: list[StoreProblem] = []
        self._duplicates: set[tuple[str, int]] = set()
        self._state = StoreState()
        self.state_error: str | None = None
        self.sweep_temp()
        self.scan()

    # --- reading ---------------------------------------------------------------------

    def scan(self) -> None:
        """Re-read the folder: every `*.yyar` file whose name does not start with '.'."""
        with self._lock:
            found: dict[tuple[str, int], list[ArchiveRecord]] = {}
            problems: list[StoreProblem] = []
            cache = {}
            for path in sorted(self.root.glob(f"*{SUFFIX}")):
                if path.name.startswith(".") or not path.is_file():
                    continue
                try:
                    record = self._read(path)
                except (ArchiveError, OSError) as exc:
                    problems.append(StoreProblem(path, _message(exc), StoreProblemKind.UNREADABLE))
                    continue
                cache[path] = self._cache[path]
                if self.owns is not None and not self.owns(record.name):
                    continue
                found.setdefault((record.name, record.version), []).append(record)
            records = {}
            for key, group in found.items():
                if len(group) == 1:
                    records[key] = group[0]
                    continue
                for rec in group:
                    others = ", ".join(r.path.name for r in group if r is not rec)
                    problems.append(StoreProblem(
                        rec.path,
                        f"{rec.path.name} claims {key[0]} version {key[1]}, as does {others}; "
                        "neither is served until one is removed",
                        StoreProblemKind.DUPLICATE,
                    ))
            self._records, self._cache, self._problems = records, cache, problems
            index: dict[str, list[int]] = {}
            for name, version in sorted(records):
                index.setdefault(name, []).append(version)
            self._index = {name: tuple(versions) for name, versions in index.items()}
            self._duplicates = {key for key, group in found.items() if len(group) > 1}
            self._load_state()
            for name, version in self._state.pins.items():
                if name in self.names() and (name, version) not in records:
                    log.warning("model %r is pinned to version %s, which the store lacks; the latest serves",
                                name, version)

    def _read(self, path: Path) -> ArchiveRecord:
        st = path.stat()
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        cached = self._cache.get(path)
        if cached and cached[0] == key:
            return cached[1]
        manifest = read_manifest(path, self.limits)
        record = ArchiveRecord(manifest.name, manifest.version, path, sha256_file(path),
                               st.st_size, st.st_mtime, manifest)
        self._cache[path] = (key, record)
        return record

    @property
    def problems(self) -> list[StoreProblem]:
        """Archives skipped by the last scan (unreadable or duplicate)."""
        return list(self._problems)

    def problem_of(self, path: str | os.PathLike[str] | None) -> str | None:
        """The last scan's error for the archive at ``path``, if it could not be read."""
        for problem in self._problems:
            if path is not None and Path(problem.path) == Path(path):
                return problem.error
        return None

    def names(self) -> list[str]:
        """The model names the store holds, sorted."""
        return list(self._index)

    def versions(self, name: str) -> list[int]:
        """The versions of `name`, ascending. ModelNotFoundError when there are none."""
        found = self._index.get(name)
        if not found:
            raise ModelNotFoundError(f"the store {self.root} holds no model named {name!r}")
        return list(found)

    def record(self, name: str, version: int) -> ArchiveRecord:
        """The archive of `name` at `version`. ModelNotFoundError when absent."""
        try:
            return self._records[(name, int(version))]
        except (KeyError, ValueError, TypeError):
            self.versions(name)  # raises for an unknown name
            raise ModelNotFoundError(
                f"model {name!r} has no version {version!r}; it has {self.versions(name)}"
            ) from None

    def records(self) -> list[ArchiveRecord]:
        """Every served archive, sorted by name and version."""
        return [self._records[k] for k in sorted(self._records)]

    def default_version(self, name: str) -> int:
        """The pinned version when it is present, else the latest."""
        versions = self.versions(name)
        pinned = self._state.pins.get(name)
        return pinned if pinned in versions else versions[-1]

    # --- pins, labels and traffic (the state file) -------------------------------------

    def pins(self) -> dict[str, Any]:
        """The persisted pins, {name: version}."""
        return dict(self._state.pins)

    def pin(self, name: str, version: int) -> None:
        """Make `version` the default of `name` and persist it (survives restarts)."""
        with self._lock:
            self.record(name, version)
            self._update_state(lambda state: state.with_pin(name, version))

    def unpin(self, name: str) -> None:
        """Forget the pin of `name`, so the latest version is the default again."""
        with self._lock:
            self._update_state(lambda state: state.with_pin(name, None) if name in state.pins else state)

    def labels(self, name: str) -> dict[str, int]:
        """The version labels of `name`, {label: version}."""
        return dict(self._state.labels.get(name, {}))

    def label(self, name: str, label: str) -> int:
        """The version `label` names. ModelNotFoundError when `name` has no such label."""
        labels = self._state.labels.get(name, {})
        if label not in labels:
            known = f"its labels are {', '.join(sorted(labels))}" if labels else "it has no labels"
            raise ModelNotFoundError(f"Model {name!r} has no label {label!r}; {known}.")
        return labels[label]

    def set_label(self, name: str, label: str, version: int) -> None:
        """Point `label` of `name` at `version` (which the store must hold) and persist it."""
        with self._lock:
            self.record(name, version)
            self._update_state(lambda state: state.with_label(name, label, version))

    def delete_label(self, name: str, label: str) -> None:
        """Forget `label` of `name`. ModelNotFoundError when there is no such label."""
        with self._lock:
            self.label(name, label)
            self._update_state(lambda state: state.with_label(name, label, None))

    def traffic(self, name: str) -> TrafficPolicy | None:
        """The traffic policy (canary and shadow) of `name`, or None."""
        return self._state.traffic.get(name)

    def set_traffic(self, name: str, policy: TrafficPolicy | None) -> None:
        """Persist the traffic policy of `name` (None clears it); its versions must be in the store."""
        with self._lock:
            for version in (policy.versions().values() if policy is not None else ()):
                self.record(name, version)
            self._update_state(lambda state: state.with_traffic(name, policy)
                               if policy is not None or name in state.traffic else state)

    def recent(self) -> list[tuple[str, int]]:
        """The versions that answered requests before, most recently used first (a hint for warming)."""
        return list(self._state.recent)

    def set_recent(self, recent: list[tuple[str, int]]) -> None:
        """Persist the recently used order (atomically, like the pins); nothing is written when it is
        unchanged. The file is read again first, so that a pin or label another process wrote
        meanwhile (``yyai default --store``) is kept, never overwritten by this periodic write."""
        with self._lock:
            self._update_state(lambda state: state if tuple(recent) == state.recent else state.with_recent(recent))

    def _load_state(self) -> None:
        path = self.root / STATE_FILE
        previous, self.state_error = self.state_error, None
        try:
            data = jsonparse.loads(path.read_bytes(), what="it")
        except FileNotFoundError:
            self._state = StoreState()
            return
        except (OSError, YyaiError) as exc:  # not JSON, nested too deep, over 1 MiB: forgiven
            self._state = StoreState()
            self._state_failed(f"cannot read {path}: {exc}", previous)
            return
        self._state, problems = StoreState.parse(data)
        if problems:  # the sections that parse still apply
            self._state_failed(f"{path} {'; '.join(problems)}", previous)

    def _state_failed(self, why: str, previous: str | None) -> None:
        self.state_error = why
        if why != previous:  # once per distinct problem, not at every scan
            log.warning("ignoring the store state file, in part or whole (%s); the latest versions serve "
                        "until a pin is set again", why)

    def _update_state(self, change: Callable[[StoreState], StoreState]) -> None:
        """Read the state file again, apply ``change`` and write the result (when it changed), all
        under the folder's exclusive flock: other processes' changes meanwhile are kept."""
        fd = os.open(self.root, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._load_state()
            state = change(self._state)
            if state is not self._state:
                self._write_state(state)
        finally:
            os.close(fd)  # releases the flock

    def _write_state(self, state: StoreState) -> None:
        data = state.to_bytes()
        atomic_write(self.root, self.root / STATE_FILE, lambda f: f.write(data))
        self._state = state
        self.state_error = None

    # --- writing -------------------------------------------------------------------------

    def add(self, src_path: str | os.PathLike[str], *, trusted: bool = False, verify: bool = True,
            replace: bool = False) -> ArchiveRecord:
        """Verify an archive and copy it into the store as `<name>-<version>.yyar`.

        The copy (and its checksum, computed while copying) is written to a temporary file
        in the store folder and fsynced before the store's lock is taken; under the lock the
        file is only renamed into place, so readers and other writers never wait for a large
        archive's bytes. ConflictError when the store already holds that name and version (or
        a file of that name), unless ``replace``: then the new content takes the old file's
        place, atomically. StoreWriteError on disk errors, with nothing partial left behind.
        """
        src_path = Path(src_path)
        if verify:
            manifest = archive.verify(src_path, trusted=trusted, limits=self.limits).manifest
        else:
            manifest = read_manifest(src_path, self.limits)
        name, version = manifest.name, manifest.version
        self._target(name, version, replace)  # refuse before copying; checked again under the lock
        staged: str | None
        staged, sha256 = _stage_copy(self.root, src_path)
        try:
            with self._lock:
                self.scan()
                target = self._target(name, version, replace)
                try:
                    os.replace(staged, target)
                except OSError as exc:
                    raise StoreWriteError(f"could not write {target.name} in {self.root}: "
                                          f"{exc.strerror or exc}; nothing was changed") from exc
                staged = None
                fsync_dir(self.root)
                st = target.stat()  # known content: the scan below must not read it again
                self._cache[target] = ((st.st_size, st.st_mtime_ns, st.st_ino),
                                       ArchiveRecord(name, version, target, sha256, st.st_size, st.st_mtime, manifest))
                self.scan()
                return self.record(name, version)
        finally:
            if staged is not None:
                Path(staged).unlink(missing_ok=True)

    def find(self, name: str, version: int) -> ArchiveRecord | None:
        """The record of `name` at `version`, or None."""
        return self._records.get((name, int(version)))

    def _target(self, name: str, version: int, replace: bool) -> Path:
        """Where a new archive of `name` and `version` goes: its own file, or with ``replace`` the
        file it replaces. ConflictError when the version (or the file name) is taken."""
        existing = self._records.get((name, version))
        if replace and existing is not None:
            return existing.path
        target = self.root / f"{name}-{version}{SUFFIX}"
        if existing is not None or (name, version) in self._duplicates or target.exists():
            raise ConflictError(f"the store already holds {name} version {version} with other content",
                                hint=(Hint(Step.BUMP_VERSION, name), Hint(Step.REPLACE, name, version)))
        return target

    def check_removable(self, name: str, version: int, doing: str = "deleted") -> None:
        """ConflictError when a label or the traffic policy names this version: move them first.
        (``doing``: what the refusal says cannot be done, "deleted" or "replaced".)"""
        found = self._state.references(name, int(version))
        if found:
            labels = [label for label, v in sorted(self._state.labels.get(name, {}).items()) if v == int(version)]
            policy = self._state.traffic.get(name)
            hints = [Hint(Step.MOVE_LABEL, name, label=label) for label in labels]
            if policy is not None and int(version) in policy.versions().values():
                hints.append(Hint(Step.CLEAR_TRAFFIC, name))
            raise ConflictError(f"{name} v{version} cannot be {doing}: {' and '.join(found)} point at it",
                                hint=hints)

    def remove(self, name: str, version: int) -> None:
        """Delete the archive of `name` at `version`, and its pin if it was pinned to it.

        Refused (ConflictError) while a label or the traffic policy names the version.
        The pin goes first: on a full disk that write fails with nothing changed, where
        deleting first would leave a pin to a missing version that a re-upload revives.
        """
        with self._lock:
            record = self.record(name, version)
            self.check_removable(name, version)
            self._update_state(lambda state: state.with_pin(name, None)
                               if state.pins.get(name) == int(version) else state)
            try:
                record.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                self.scan()
                raise StoreWriteError(f"could not delete {record.path}: {exc.strerror or exc}") from exc
            fsync_dir(self.root)
            self.scan()

    def sweep_temp(self, max_age_s: float = 600.0) -> list[Path]:
        """Delete `.tmp-*` files left by interrupted writes; returns what was deleted.

        Only files untouched for `max_age_s` seconds are stale: a younger one may be a
        write still in progress in another process.
        """
        removed = []
        now = time.time()
        for path in self.root.glob(f"{TEMP_PREFIX}*"):
            try:
                if path.is_file() and now - path.stat().st_mtime >= max_age_s:
                    path.unlink()
                    removed.append(path)
            except OSError as exc:
                log.warning("could not remove leftover temp file %s: %s", path, exc)
        return removed

    def __repr__(self) -> str:
        return f"ModelStore({str(self.root)!r}, {len(self._records)} archives)"


def _message(exc: BaseException) -> str:
    if isinstance(exc, YyaiError):
        return exc.message
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or exc}"
    return str(exc)


def _stage_copy(root: Path, src: Path) -> tuple[str, str]:
    """Copy ``src`` into a fsynced temporary file in ``root``: (its path, its sha256).

    The digest is computed from the bytes as they are written, so the archive is read once.
    StoreWriteError on disk errors, with the temporary file removed.
    """
    digest = hashlib.sha256()
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=root)
        with os.fdopen(fd, "wb") as out, open(src, "rb") as source:
            for chunk in iter(lambda: source.read(COPY_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # as any file written with umask 022 would be
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise StoreWriteError(f"could not write {src.name} into {root}: {exc.strerror or exc}; "
                              "nothing was changed") from exc
    return tmp, digest.hexdigest()


def atomic_write(root: Path, target: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write `target` (in folder `root`) via a temp file in that folder, fsynced, then renamed
    over it; StoreWriteError on disk errors, with nothing changed."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=root)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # as any file written with umask 022 would be
        os.replace(tmp, target)
        tmp = None
        fsync_dir(root)
    except OSError as exc:
        raise StoreWriteError(
            f"could not write {target.name} in {root}: {exc.strerror or exc}; nothing was changed"
        ) from exc
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
