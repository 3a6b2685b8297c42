"""Registry: model name -> versions -> live runtime, with zero-downtime hot reload.

The registry is the one place that decides which runtime answers a request. Each
version has a slot holding its live :class:`Serving` pair (runtime and batcher). Every
change follows load-before-unload: a new runtime is loaded and warmed off the serving
path, then the slot's reference is replaced in one assignment. Requests already running
keep the old pair alive until they return; requests queued in the old batcher still run
there. A failed load leaves the old pair serving and is reported as ``last_error``.

Locking: one lock per model serializes its loads (reloads that pile up while one runs
are coalesced into a single follow-up); different models load in parallel; predictions
take no lock at all beyond reading a reference.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from .archive import read_listed_file, read_manifest, verify
from .batching import BatcherClosed, DynamicBatcher
from .errors import ArchiveError, InvalidInputError, ModelNotFoundError, ModelNotReadyError, YyaiError
from .images import DEFAULT_MAX_PIXELS, preprocess
from .runtime import ArchiveRuntime, warmup_batch_sizes
from .store import ModelStore

log = logging.getLogger("yyai.registry")

LATENCY_WINDOW = 2048


@dataclass
class Prediction:
    """One answer: which version gave it, each member's ``[B, K]`` output and the combined one."""

    name: str
    version: int
    members: dict[str, np.ndarray]
    combined: np.ndarray | None
    output_spec: dict

    def rows(self) -> list[dict]:
        """Per input row, each member's output and the combined one, labelled for people."""
        return [
            {
                "members": {name: self._label(out[i]) for name, out in self.members.items()},
                "combined": None if self.combined is None else self._label(self.combined[i]),
            }
            for i in range(len(next(iter(self.members.values()))))
        ]

    def to_json(self) -> dict:
        """The JSON reply of ``POST /predictions``: model, version and labelled rows."""
        return {"model": self.name, "version": self.version, "predictions": self.rows()}

    def _label(self, row: np.ndarray):
        spec = self.output_spec
        if spec["kind"] == "classification":
            labels = spec["labels"]
            order = np.argsort(-row, kind="stable")
            return [{"label": labels[j], "probability": round(float(row[j]), 6)} for j in order]
        names = spec.get("names") or [f"y{j}" for j in range(len(row))]
        return {n: round(float(v), spec.get("rounding", 4)) for n, v in zip(names, row)}


class VersionStats:
    """Request count, errors, recent latencies and batch sizes of one version."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests = 0
        self.errors = 0
        self.latencies_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.batch_sizes: Counter[int] = Counter()

    def record(self, latency_s: float, ok: bool) -> None:
        with self._lock:
            self.requests += 1
            if ok:
                self.latencies_ms.append(latency_s * 1000.0)
            else:
                self.errors += 1

    def record_batch(self, size: int) -> None:
        with self._lock:
            self.batch_sizes[size] += 1

    def snapshot(self) -> dict:
        with self._lock:
            latencies = np.array(self.latencies_ms) if self.latencies_ms else None
            batches = dict(sorted(self.batch_sizes.items()))
            requests, errors = self.requests, self.errors
        percentiles = (
            {f"p{q}": round(float(np.percentile(latencies, q)), 3) for q in (50, 90, 99)}
            if latencies is not None
            else {"p50": None, "p90": None, "p99": None}
        )
        return {
            "requests": requests,
            "errors": errors,
            "latency_ms": percentiles,
            "batch_sizes": {str(k): v for k, v in batches.items()},
        }


@dataclass(frozen=True)
class Serving:
    """A runtime and the batcher in front of it (None when batching is off): swapped as one."""

    runtime: ArchiveRuntime
    batcher: DynamicBatcher | None

    def submit(self, batch: np.ndarray) -> Future:
        """A Future of the output: queued on the batcher, or (no batcher) run here and done."""
        if self.batcher is not None:
            return self.batcher.submit(batch)
        done: Future = Future()
        try:
            done.set_result(self.runtime(batch))
        except Exception as error:
            done.set_exception(error)
        return done

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close(wait=False)


@dataclass
class VersionSlot:
    """One version of one model: its state, its live Serving pair and its statistics."""

    version: int
    state: str = "available"  # available | loading | ready | failed | unloaded
    serving: Serving | None = None
    sha256: str | None = None
    path: Path | None = None
    load_time_s: float | None = None
    warmup_time_s: float | None = None
    loaded_at: float | None = None
    last_error: str | None = None
    stats: VersionStats = field(default_factory=VersionStats)


@dataclass
class ModelEntry:
    """All versions of one model name, and the lock that serializes their loads."""

    name: str
    slots: dict[int, VersionSlot] = field(default_factory=dict)
    load_lock: threading.Lock = field(default_factory=threading.Lock)
    pending_reload: Future | None = None
    last_error: str | None = None

    def slot(self, version: int) -> VersionSlot:
        return self.slots.setdefault(version, VersionSlot(version))


class Registry:
    """Thread-safe registry of every model and version in a :class:`ModelStore`.

    ``batching`` turns dynamic batching on; ``max_batch_size`` and ``max_delay_ms``
    override each archive's own hints. ``trusted`` names the models whose archives may
    run code when loaded (Keras Lambda layers). ``watch`` polls the store folder and
    picks up new or replaced archives by itself.
    """

    def __init__(
        self,
        store: ModelStore,
        *,
        batching: bool = True,
        max_batch_size: int | None = None,
        max_delay_ms: float | None = None,
        trusted: Iterable[str] = (),
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
        watch: bool = False,
        watch_interval: float = 2.0,
    ):
        self.store = store
        self.batching = batching
        self.max_batch_size = max_batch_size
        self.max_delay_ms = max_delay_ms
        self.trusted = set(trusted)
        self.max_image_pixels = max_image_pixels
        self._entries: dict[str, ModelEntry] = {}
        self._defaults: dict[str, int] = {}
        self._lock = threading.RLock()  # guards _entries, _defaults and every store access
        self._closed = threading.Event()
        self._watcher: threading.Thread | None = None
        with self._lock:
            self.store.scan()
            self._refresh_defaults()
        if watch:
            self._watcher = threading.Thread(
                target=self._watch, args=(watch_interval,), name="yyai-watch", daemon=True
            )
            self._watcher.start()

    # --- reading ------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every model name the store holds or the registry has loaded."""
        with self._lock:
            return sorted(set(self.store.names()) | set(self._entries))

    def list(self) -> list[dict]:
        """A short line per model: versions in the store, the default, the loaded versions."""
        with self._lock:
            return [
                {
                    "name": name,
                    "versions": self._store_versions(name),
                    "default": self._defaults.get(name),
                    "loaded": sorted(
                        v
                        for v, slot in self._entry_or_none(name).slots.items()
                        if slot.serving is not None
                    )
                    if name in self._entries
                    else [],
                }
                for name in self.names()
            ]

    def status(self, name: str | None = None) -> dict:
        """Everything known about one model, or about all of them plus the store's problems."""
        if name is not None:
            return self._model_status(name)
        with self._lock:
            problems = [
                {"path": str(p.path), "kind": p.kind, "error": p.error} for p in self.store.problems
            ]
            state_error = getattr(self.store, "state_error", None)
        return {
            "models": {n: self._model_status(n) for n in self.names()},
            "problems": problems,
            "state_error": state_error,
        }

    def describe(self, name: str, version: int | None = None) -> dict:
        """What a version takes and gives: input spec, output spec and its shape, members."""
        version = self.resolve_version(name, version)
        with self._lock:
            manifest = self.store.record(name, version).manifest
        output = manifest.output
        width = len(output["labels"]) if output["kind"] == "classification" else len(output["names"])
        return {
            "name": name,
            "version": version,
            "description": manifest.data.get("description", ""),
            "input": manifest.input,
            "output": output,
            "output_width": width,
            "members": [m["name"] for m in manifest.members],
            "combine": manifest.combine,
            "has_combined": manifest.combine == "mean" or len(manifest.members) == 1,
        }

    def resolve_version(self, name: str, version: int | str | None = None) -> int:
        """The version a request means: the given one (checked) or the model's default."""
        with self._lock:
            known = set(self._store_versions(name))
            if name in self._entries:
                known |= set(self._entries[name].slots)
            if not known:
                raise ModelNotFoundError(f"No model named {name!r}.")
            if version is None:
                default = self._defaults.get(name)
                if default is None:
                    raise ModelNotReadyError(f"Model {name!r} has no version in the store.")
                return default
            version = _as_version(version)
            if version not in known:
                raise ModelNotFoundError(
                    f"Model {name!r} has no version {version}; it has {sorted(known)}."
                )
            return version

    def samples(self, name: str, version: int | str | None = None) -> list[str]:
        """Names of the sample inputs an archive bundles (files with role "sample")."""
        version = self.resolve_version(name, version)
        with self._lock:
            manifest = self.store.record(name, version).manifest
        return [entry["path"] for entry in manifest.files if entry.get("role") == "sample"]

    def sample(self, name: str, sample: str, version: int | str | None = None) -> bytes:
        """The bytes of one bundled sample, looked up by its manifest name (never a path on disk)."""
        version = self.resolve_version(name, version)
        if sample not in self.samples(name, version):
            raise ModelNotFoundError(f"Model {name!r} v{version} bundles no sample named {sample!r}.")
        with self._lock:
            record = self.store.record(name, version)
        return read_listed_file(record.path, sample)

    # --- predicting ---------------------------------------------------------------------

    def predict(self, name: str, inputs, version: int | str | None = None) -> Prediction:
        """Run ``inputs`` (``[B, *input.shape]``) through a version (default: the model's default)."""
        return self.submit(name, inputs, version).result()

    def submit(self, name: str, inputs, version: int | str | None = None) -> Future:
        """Queue ``inputs`` on a version and return a Future of its :class:`Prediction`.

        With batching on this returns at once and the batcher's thread completes the
        Future, so an event loop can await it without parking a thread; with batching
        off the model runs here, in the calling thread (see :meth:`batches`).
        """
        version = self.resolve_version(name, version)
        slot = self._slot(name, version)
        started = time.perf_counter()
        for _attempt in range(3):  # a swap may close the batcher we just looked up
            serving = slot.serving if slot is not None else None
            if serving is None:
                raise ModelNotReadyError(_not_ready_message(name, version, slot))
            try:
                batch = serving.runtime.validate(inputs)
            except InvalidInputError:
                slot.stats.record(0.0, ok=False)
                raise
            try:
                pending = serving.submit(batch)
            except BatcherClosed:
                continue
            result: Future = Future()
            pending.add_done_callback(
                lambda done, serving=serving, rows=len(batch): self._finish(
                    done, result, name, version, slot, serving, rows, started
                )
            )
            return result
        raise ModelNotReadyError(f"Model {name!r} version {version} is being swapped; retry.")

    def batches(self, name: str, version: int | str | None = None) -> bool:
        """Whether a version serves through a batcher, so that :meth:`submit` never blocks."""
        slot = self._slot(name, self.resolve_version(name, version))
        serving = slot.serving if slot is not None else None
        return serving is not None and serving.batcher is not None

    def _slot(self, name: str, version: int) -> VersionSlot | None:
        """A resolved version's slot, or None while the registry has not seen it."""
        return self._entry(name).slots.get(version) if name in self._entries else None

    @staticmethod
    def _finish(done: Future, result: Future, name, version, slot, serving, rows: int, started: float) -> None:
        """Record a finished call's statistics and complete the caller's Future."""
        error = done.exception()
        slot.stats.record(time.perf_counter() - started, ok=error is None)
        if error is not None:
            result.set_exception(error)
            return
        if serving.batcher is None:
            slot.stats.record_batch(rows)
        output = done.result()
        result.set_result(Prediction(name, version, output.members, output.combined, serving.runtime.manifest.output))

    def predict_images(self, name: str, images: list[bytes], version: int | str | None = None) -> Prediction:
        """Preprocess image bytes as the version's manifest says, then predict on them all."""
        return self.submit_images(name, images, version).result()

    def submit_images(self, name: str, images: list[bytes], version: int | str | None = None) -> Future:
        """:meth:`submit` for image bytes: decoded and preprocessed here, then queued."""
        spec = self.describe(name, version)["input"]
        batch = np.stack([preprocess(data, spec, max_pixels=self.max_image_pixels) for data in images])
        return self.submit(name, batch, version)

    # --- managing -----------------------------------------------------------------------

    def load(self, name: str, version: int | str | None = None) -> dict:
        """Load (or re-load, if its archive changed) one version; the default if none is given."""
        version = self.resolve_version(name, version)
        entry = self._entry(name, create=True)
        with entry.load_lock:
            self._load_version(entry, version, force=False)
        return self._model_status(name)

    def load_all(self) -> dict:
        """Load every model's default version, in parallel; failures are recorded, not raised."""
        with self._lock:
            names = list(self.store.names())
        errors = {}
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="yyai-load") as pool:
            for name, future in [(n, pool.submit(self.load, n)) for n in names]:
                try:
                    future.result()
                except YyaiError as error:
                    errors[name] = error.message
                    log.error("Could not load %s: %s", name, error.message)
        return errors

    def reload(self, name: str | None = None, *, force: bool = True) -> dict:
        """Re-read the store and reload a model (or all): new versions, changed archives.

        ``force`` reloads loaded versions even when their archive is unchanged. Reloads of
        one model queue behind each other and coalesce; different models run in parallel.
        A failed load leaves the previous runtime serving and raises the load's error.
        """
        with self._lock:
            self.store.scan()
            self._refresh_defaults()
        if name is not None:
            return self._coalesced_reload(name, force)
        results = {}
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="yyai-reload") as pool:
            futures = {n: pool.submit(self._coalesced_reload, n, force) for n in self.names()}
            for n, future in futures.items():
                try:
                    results[n] = future.result()
                except YyaiError as error:
                    results[n] = {"name": n, "error": error.message}
        return results

    def set_default(self, name: str, version: int | str) -> dict:
        """Make a version the default (loading it first if needed) and persist the pin."""
        version = self.resolve_version(name, version)
        entry = self._entry(name, create=True)
        with entry.load_lock:
            self._load_version(entry, version, force=False)
            with self._lock:
                self.store.pin(name, version)
                self._defaults[name] = version
        log.info("Default of %s is now version %d", name, version)
        return self._model_status(name)

    def unload(self, name: str, version: int | str | None = None) -> dict:
        """Stop serving a version (or all versions); its archive stays in the store."""
        entry = self._entry(name)
        versions = [self.resolve_version(name, version)] if version is not None else list(entry.slots)
        with entry.load_lock:
            for v in versions:
                slot = entry.slot(v)
                serving, slot.serving = slot.serving, None
                slot.state = "unloaded"
                if serving is not None:
                    serving.close()
        return self._model_status(name)

    def remove(self, name: str, version: int | str, *, purge: bool = False) -> dict:
        """Unload a version and, with ``purge``, delete its archive from the store.

        When the removed version was the default, the new default (the latest left, or
        the pin) is loaded so that the model keeps answering.
        """
        version = self.resolve_version(name, version)
        self.unload(name, version)
        if not purge:
            return self._model_status(name)
        entry = self._entry(name)
        with entry.load_lock:
            with self._lock:
                self.store.remove(name, version)
                self.store.scan()
                entry.slots.pop(version, None)
                self._refresh_defaults()
                new_default = self._defaults.get(name)
            if new_default is not None and entry.slot(new_default).serving is None:
                try:
                    self._load_version(entry, new_default, force=False)
                except YyaiError as error:
                    log.error("After removing %s v%d, v%d failed to load: %s", name, version, new_default, error)
        if not self._store_versions(name) and not entry.slots:
            with self._lock:
                self._entries.pop(name, None)
        return self._model_status(name) if name in self.names() else {"name": name, "removed": True}

    def add_archive(self, path: str | Path) -> dict:
        """Verify an archive, move it into the store atomically, load it, and return its status.

        A new latest version becomes the default unless the model is pinned.
        """
        name = read_manifest(path).name
        verify(path, trusted=name in self.trusted)  # slow (loads Keras): outside the lock
        with self._lock:
            record = self.store.add(path, trusted=name in self.trusted, verify=False)
            self._refresh_defaults()
        entry = self._entry(record.name, create=True)
        with entry.load_lock:
            self._load_version(entry, record.version, force=False)
        return self._model_status(record.name)

    def close(self) -> None:
        """Stop the watcher and every batcher; the registry serves nothing afterwards."""
        self._closed.set()
        with self._lock:
            entries = list(self._entries.values())
        for entry in entries:
            for slot in entry.slots.values():
                serving, slot.serving = slot.serving, None
                if serving is not None:
                    serving.close()

    # --- internals ----------------------------------------------------------------------

    def _entry_or_none(self, name: str) -> ModelEntry | None:
        return self._entries.get(name)

    def _entry(self, name: str, *, create: bool = False) -> ModelEntry:
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                if not create and name not in self.store.names():
                    raise ModelNotFoundError(f"No model named {name!r}.")
                entry = self._entries[name] = ModelEntry(name)
            return entry

    def _store_versions(self, name: str) -> list[int]:
        return list(self.store.versions(name)) if name in self.store.names() else []

    def _refresh_defaults(self) -> None:
        """Recompute each model's default from the store (latest unless pinned). Caller holds _lock.

        A model whose archive became unreadable keeps its old default while it still serves.
        A new default (an upload, a rescan) takes over only once it serves: until its load
        finishes, requests that name no version keep going to the old one, never to a 503.
        ``_load_version`` calls this again after every load.
        """
        defaults = {name: self.store.default_version(name) for name in self.store.names()}
        for name, version in self._defaults.items():
            entry = self._entries.get(name)

            def serves(v: int | None) -> bool:
                return bool(entry and v in entry.slots and entry.slots[v].serving)

            if serves(version) and (name not in defaults or not serves(defaults[name])):
                defaults[name] = version
        self._defaults = defaults

    def _store_problem(self, path: Path | None) -> str | None:
        """The store's error for the archive at ``path``, if the last scan could not read it."""
        with self._lock:
            for problem in self.store.problems:
                if path is not None and Path(problem.path) == Path(path):
                    return problem.error
        return None

    def _coalesced_reload(self, name: str, force: bool) -> dict:
        """Run one reload of ``name``, or join the one already queued behind a running reload."""
        entry = self._entry(name)  # 404 for a name neither the store nor the registry knows
        with self._lock:
            pending, owner = entry.pending_reload, False
            if pending is None:
                pending = entry.pending_reload = Future()
                owner = True
        if owner:
            with entry.load_lock:
                with self._lock:
                    entry.pending_reload = None  # later callers queue a fresh reload
                try:
                    pending.set_result(self._reload_locked(entry, force))
                except BaseException as error:
                    pending.set_exception(error)
        return pending.result()

    def _reload_locked(self, entry: ModelEntry, force: bool) -> dict:
        """Reload what serves and load the (possibly new) default. Caller holds entry.load_lock."""
        name = entry.name
        with self._lock:
            in_store = set(self._store_versions(name))
            # the store's default, which may not serve yet (see _refresh_defaults)
            default = self.store.default_version(name) if in_store else self._defaults.get(name)
        first_error = None
        for version, slot in list(entry.slots.items()):
            if version in in_store or slot.serving is None:
                continue
            problem = self._store_problem(slot.path)
            if problem is not None:  # replaced by an unreadable archive: keep the old one serving
                slot.last_error = entry.last_error = f"v{version}: {problem}"
                first_error = first_error or ArchiveError(problem)
                continue
            serving, slot.serving = slot.serving, None  # archive deleted from disk
            slot.state = "unloaded"
            serving.close()
        wanted = {v for v, s in entry.slots.items() if s.serving is not None and v in in_store}
        if default is not None:
            wanted.add(default)
        for version in sorted(wanted):
            try:
                self._load_version(entry, version, force=force)
            except YyaiError as error:
                first_error = first_error or error
        if first_error is not None:
            raise first_error
        return self._model_status(name)

    def _load_version(self, entry: ModelEntry, version: int, *, force: bool) -> None:
        """Load one version off the serving path and swap it in. Caller holds entry.load_lock."""
        with self._lock:
            record = self.store.record(entry.name, version)
        slot = entry.slot(version)
        if slot.serving is not None and slot.sha256 == record.sha256 and not force:
            return
        was_serving = slot.serving is not None
        if not was_serving:
            slot.state = "loading"
        batch_size, delay_ms = self._batching_for(record.manifest)
        try:
            runtime = ArchiveRuntime.load(
                record.path,
                trusted=entry.name in self.trusted,
                warmup_sizes=warmup_batch_sizes(batch_size) if self.batching else [1],
                sha256=record.sha256,
            )
        except Exception as error:
            message = error.message if isinstance(error, YyaiError) else f"{type(error).__name__}: {error}"
            slot.last_error = entry.last_error = f"v{version}: {message}"
            if not was_serving:
                slot.state = "failed"
            log.error("Load of %s v%d failed: %s", entry.name, version, message)
            if isinstance(error, YyaiError):
                raise
            raise YyaiError(f"Loading {entry.name} v{version} failed: {message}") from error
        batcher = None
        if self.batching and batch_size > 1:
            batcher = DynamicBatcher(
                runtime,
                runtime.split,
                max_batch_size=batch_size,
                max_delay_ms=delay_ms,
                on_batch=slot.stats.record_batch,
                name=f"{entry.name}-v{version}",
            )
        old, slot.serving = slot.serving, Serving(runtime, batcher)  # the swap
        slot.state, slot.sha256, slot.path, slot.last_error = "ready", record.sha256, record.path, None
        slot.load_time_s, slot.warmup_time_s = runtime.load_time_s, runtime.warmup_time_s
        slot.loaded_at = time.time()
        entry.last_error = None
        with self._lock:
            self._refresh_defaults()  # a new default waiting for this load takes over now
        if old is not None:
            old.close()  # queued requests still run on it; in-flight ones hold their own reference
        log.info(
            "Loaded %s v%d in %.2fs (warm-up %.2fs)", entry.name, version, runtime.load_time_s, runtime.warmup_time_s
        )

    def _batching_for(self, manifest) -> tuple[int, float]:
        hints = manifest.batching or {}
        batch_size = self.max_batch_size or hints.get("max_batch_size", 32)
        delay_ms = self.max_delay_ms if self.max_delay_ms is not None else hints.get("max_delay_ms", 2.0)
        return int(batch_size), float(delay_ms)

    def _model_status(self, name: str) -> dict:
        with self._lock:
            store_versions = self._store_versions(name)
            entry = self._entries.get(name)
            if entry is None and not store_versions:
                raise ModelNotFoundError(f"No model named {name!r}.")
            default = self._defaults.get(name)
            pinned = self.store.pins().get(name) is not None
            records = {v: self.store.record(name, v) for v in store_versions}
        slots = dict(entry.slots) if entry is not None else {}
        versions = {}
        for version in sorted(set(store_versions) | set(slots)):
            slot = slots.get(version) or VersionSlot(version)
            record = records.get(version)
            manifest = record.manifest if record is not None else None
            versions[str(version)] = {
                "version": version,
                "state": slot.state if record is not None or slot.serving is not None else "removed",
                "in_store": record is not None,
                "load_time_s": _round(slot.load_time_s),
                "warmup_time_s": _round(slot.warmup_time_s),
                "loaded_at": slot.loaded_at,
                "last_error": slot.last_error,
                **slot.stats.snapshot(),
                "description": manifest.data.get("description", "") if manifest else "",
                "created": manifest.data.get("created") if manifest else None,
                "members": [m["name"] for m in manifest.members] if manifest else [],
            }
        return {
            "name": name,
            "default": default,
            "pinned": pinned,
            "last_error": entry.last_error if entry is not None else None,
            "versions": versions,
        }

    def _watch(self, interval: float) -> None:
        """Poll the store folder; when an archive appears, changes or goes, reload (unforced)."""
        last = _folder_signature(self.store.root)
        while not self._closed.wait(interval):
            current = _folder_signature(self.store.root)
            if current != last:
                last = current
                log.info("Store changed on disk; reloading")
                try:
                    self.reload(force=False)
                except Exception as error:  # the watcher must outlive any one bad archive
                    log.error("Reload after a store change failed: %s", error)


def _folder_signature(root: Path) -> frozenset:
    signature = set()
    for path in Path(root).glob("*.yyar"):
        try:
            stat = path.stat()
        except OSError:
            continue
        signature.add((path.name, stat.st_size, stat.st_mtime_ns))
    return frozenset(signature)


def _as_version(version: int | str) -> int:
    try:
        value = int(version)
    except (TypeError, ValueError):
        raise InvalidInputError(f"Version must be a positive integer, not {version!r}.") from None
    if value < 1 or str(version).strip().lstrip("+") not in (str(value),):
        raise InvalidInputError(f"Version must be a positive integer, not {version!r}.")
    return value


def _not_ready_message(name: str, version: int, slot: VersionSlot | None) -> str:
    if slot is None or slot.state == "available":
        return f"Model {name!r} version {version} is not loaded; load it first."
    if slot.state == "failed":
        return f"Model {name!r} version {version} failed to load: {slot.last_error}"
    return f"Model {name!r} version {version} is {slot.state}."


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
