"""ModelStore: discovery by manifest, versions, persisted pins, duplicates, broken files, atomic writes."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil

import pytest

from yyai_kernel.errors import (
    ConflictError,
    ModelNotFoundError,
    StoreWriteError,
    UnsafeModelError,
    YyaiError,
)
from yyai_kernel.store import store as store_mod
from yyai_kernel.store.store import STATE_FILE, ModelStore


@pytest.fixture
def make(tmp_path, zips):
    """Write a manifest-valid archive of `name`/`version` into the store folder (no real model)."""
    root = tmp_path / "store"
    root.mkdir()

    def make(name, version, filename=None, payload=b"weights"):
        members = {"models/m.h5": payload}
        manifest = zips.manifest_for(members, name=name, version=version)
        return zips.craft_archive(root / (filename or f"{name}-{version}.yyar"), members=members, manifest=manifest)

    make.root = root
    return make


def test_discovery_several_versions_by_manifest(make):
    make("digits", 1)
    make("digits", 3, filename="newest.yyar")  # the file name says nothing; the manifest decides
    make("digits", 2, filename="zzz-1.yyar")
    make("colors", 1)
    (make.root / "notes.txt").write_text("ignored")
    make("hidden", 1, filename=".hidden.yyar")
    s = ModelStore(make.root)
    assert s.names() == ["colors", "digits"]
    assert s.versions("digits") == [1, 2, 3]
    assert s.default_version("digits") == 3
    rec = s.record("digits", 3)
    assert rec.path.name == "newest.yyar" and rec.manifest.version == 3
    assert rec.size == rec.path.stat().st_size and len(rec.sha256) == 64
    assert s.problems == []
    assert [(r.name, r.version) for r in s.records()] == [("colors", 1), ("digits", 1), ("digits", 2), ("digits", 3)]


def test_unknown_names_and_versions(make):
    make("digits", 1)
    s = ModelStore(make.root)
    with pytest.raises(ModelNotFoundError, match="no model named 'nope'"):
        s.versions("nope")
    with pytest.raises(ModelNotFoundError, match="no version 7"):
        s.record("digits", 7)
    with pytest.raises(ModelNotFoundError):
        s.pin("digits", 7)
    with pytest.raises(ModelNotFoundError):
        s.default_version("nope")


def test_pin_persists_across_instances(make):
    make("digits", 1)
    make("digits", 2)
    s = ModelStore(make.root)
    s.pin("digits", 1)
    assert s.default_version("digits") == 1
    assert json.loads((make.root / STATE_FILE).read_text()) == {"pins": {"digits": 1}}
    again = ModelStore(make.root)
    assert again.pins() == {"digits": 1} and again.default_version("digits") == 1
    make("digits", 3)
    again.scan()
    assert again.default_version("digits") == 1  # a pin holds even when a newer version arrives
    again.unpin("digits")
    assert ModelStore(make.root).default_version("digits") == 3
    assert [p.name for p in make.root.iterdir() if p.name.startswith(".tmp-")] == []


def test_stores_that_own_different_models_share_one_state_file_without_losing_a_change(make):
    """Two processes' stores over one folder (a model host per GPU): each indexes only the models
    it owns, and each state change re-reads the file under the folder's lock, so one store's
    older picture of the other's models is never written back over them."""
    for name in ("alpha", "beta"):
        make(name, 1)
        make(name, 2)
    first = ModelStore(make.root, owns=lambda name: name == "alpha")
    second = ModelStore(make.root, owns=lambda name: name == "beta")
    assert first.names() == ["alpha"] and second.names() == ["beta"]
    first.pin("alpha", 1)
    second.pin("beta", 1)  # second never read the file since alpha's pin
    second.set_label("beta", "stable", 2)
    first.unpin("alpha")
    first.set_recent([("alpha", 2)])
    state = json.loads((make.root / STATE_FILE).read_text())
    assert state["pins"] == {"beta": 1} and state["labels"] == {"beta": {"stable": 2}}
    assert state["recent"] == [["alpha", 2]]
    assert ModelStore(make.root).names() == ["alpha", "beta"]


def test_pin_to_missing_version_falls_back_to_latest(make):
    make("digits", 1)
    old = make("digits", 2)
    s = ModelStore(make.root)
    s.pin("digits", 2)
    old.unlink()
    s.scan()
    assert s.default_version("digits") == 1
    assert s.pins() == {"digits": 2}  # kept: it applies again if version 2 comes back


@pytest.mark.parametrize("content", [
    b"{not json", b'{"pins": {"digits": "two"}}', b"[]", b"\xff\xfe",
    b"[" * 5000 + b"]" * 5000, b'{"pins": {"digits": ' + b"[" * 70 + b"1" + b"]" * 70 + b"}}",  # too deep
    b'{"pins": {"digits": 1}}' + b" " * (1024 * 1024),  # valid, but over the 1 MiB cap for JSON
], ids=["not-json", "not-an-int", "not-an-object", "not-utf8", "nested-5000", "nested-71", "over-1-MiB"])
def test_corrupt_state_file_falls_back_to_latest(make, caplog, content):
    make("digits", 1)
    make("digits", 2)
    (make.root / STATE_FILE).write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="yyai.store"):
        s = ModelStore(make.root)
    assert s.state_error and STATE_FILE in s.state_error
    assert any("state file" in r.getMessage() for r in caplog.records)
    assert s.pins() == {} and s.default_version("digits") == 2
    s.pin("digits", 1)  # a new pin rewrites the file cleanly
    assert s.state_error is None
    assert ModelStore(make.root).default_version("digits") == 1


def test_duplicates_reported_and_both_excluded(make):
    make("digits", 1, filename="a.yyar")
    make("digits", 1, filename="b.yyar", payload=b"other weights")
    make("digits", 2)
    s = ModelStore(make.root)
    assert s.versions("digits") == [2]
    dups = sorted((p.path.name, p.kind) for p in s.problems)
    assert dups == [("a.yyar", "duplicate"), ("b.yyar", "duplicate")]
    assert "b.yyar" in next(p.error for p in s.problems if p.path.name == "a.yyar")
    with pytest.raises(ModelNotFoundError):
        s.record("digits", 1)


def test_unreadable_archives_skipped(make, packed):
    make("digits", 1)
    (make.root / "garbage.yyar").write_bytes(b"not a zip at all")
    (make.root / "cut.yyar").write_bytes(packed.read_bytes()[:300])
    s = ModelStore(make.root)
    assert s.names() == ["digits"]
    problems = {p.path.name: p for p in s.problems}
    assert set(problems) == {"garbage.yyar", "cut.yyar"}
    assert all(p.kind == "unreadable" for p in problems.values())
    assert "not a zip" in problems["garbage.yyar"].error


def test_add_real_archive_then_conflict(make, packed):
    s = ModelStore(make.root)
    rec = s.add(packed)
    assert (rec.name, rec.version) == ("toy", 1)
    assert rec.path == make.root / "toy-1.yyar"
    assert rec.path.read_bytes() == packed.read_bytes()
    assert ModelStore(make.root).versions("toy") == [1]
    with pytest.raises(ConflictError, match="already holds toy version 1"):
        s.add(packed)


def test_add_conflicts_with_a_file_under_another_name(make, packed):
    shutil.copy(packed, make.root / "renamed.yyar")
    s = ModelStore(make.root)
    with pytest.raises(ConflictError):
        s.add(packed, verify=False)
    assert not (make.root / "toy-1.yyar").exists()


def test_add_refuses_untrusted_lambda(make, models, tmp_path):
    from conftest import INPUT_SPEC, OUTPUT_SPEC

    from yyai_kernel.archive import pack

    lam = pack(name="lam", version=1, models=[models.lambda_keras], input_spec=INPUT_SPEC,
               output_spec=OUTPUT_SPEC, out_dir=tmp_path / "out", trusted=True)
    s = ModelStore(make.root)
    with pytest.raises(UnsafeModelError):
        s.add(lam)
    assert list(make.root.iterdir()) == []
    assert s.add(lam, trusted=True).name == "lam"


def test_add_disk_failure_leaves_nothing(make, packed, monkeypatch):
    s = ModelStore(make.root)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_mod.os, "replace", full)
    with pytest.raises(StoreWriteError, match="No space left"):
        s.add(packed, verify=False)
    assert list(make.root.iterdir()) == []
    with pytest.raises(ModelNotFoundError):
        s.versions("toy")


def test_pin_disk_failure_keeps_old_state(make, monkeypatch):
    make("digits", 1)
    make("digits", 2)
    s = ModelStore(make.root)
    s.pin("digits", 2)
    monkeypatch.setattr(store_mod.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(StoreWriteError):
        s.pin("digits", 1)
    monkeypatch.undo()
    assert s.pins() == {"digits": 2}
    assert ModelStore(make.root).pins() == {"digits": 2}
    assert [p.name for p in make.root.iterdir() if p.name.startswith(".tmp-")] == []


def test_remove_deletes_and_unpins(make):
    make("digits", 1)
    make("digits", 2)
    s = ModelStore(make.root)
    s.pin("digits", 2)
    s.remove("digits", 2)
    assert not (make.root / "digits-2.yyar").exists()
    assert s.versions("digits") == [1] and s.pins() == {}
    assert ModelStore(make.root).pins() == {}


def test_sweep_stale_temp_files(make):
    make("digits", 1)
    stale = make.root / ".tmp-abc123"
    fresh = make.root / ".tmp-def456.yyar"
    stale.write_bytes(b"half written")
    fresh.write_bytes(b"being written")
    os.utime(stale, (1_000_000_000, 1_000_000_000))
    s = ModelStore(make.root)
    assert not stale.exists() and fresh.exists()
    assert s.names() == ["digits"]


def test_missing_store_folder(tmp_path):
    with pytest.raises(YyaiError, match="not a folder"):
        ModelStore(tmp_path / "nope")
    assert ModelStore(tmp_path / "new", create=True).names() == []
