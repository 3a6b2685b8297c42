"""The .yyar format: a real round trip, manifest validation, and every refusal of safe reading."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import pytest
from conftest import INPUT_SPEC, OUTPUT_SPEC

from yyai_kernel import archive
from yyai_kernel.archive import (
    Limits,
    Manifest,
    copy_capped,
    open_archive,
    pack,
    read_manifest,
    verify,
)
from yyai_kernel.errors import (
    ArchiveLimitError,
    ChecksumError,
    FormatVersionError,
    ManifestError,
    MissingMemberError,
    ModelLoadError,
    NotAnArchiveError,
    UnexpectedMemberError,
    UnsafeMemberError,
    UnsafeModelError,
    ZipBombError,
)
from yyai_kernel.types import Combine


@pytest.fixture(autouse=True)
def private_tempdir(tmp_path_factory, monkeypatch):
    """Route tempfile into a folder of our own, so tests can see what extraction leaves."""
    tmp = tmp_path_factory.mktemp("tempdir")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


# --- round trip ----------------------------------------------------------------------


def test_round_trip_same_predictions(models, packed, private_tempdir):
    from yyai_kernel.archive.kerasload import load_member

    report = verify(packed)
    assert report.ok and report.manifest.name == "toy" and report.manifest.version == 1
    assert [(m["name"], m["path"], m["format"]) for m in report.members] == [
        ("tiny", "models/tiny.keras", "keras"), ("tiny_2", "models/tiny_2.h5", "h5")]
    assert all(m["params"] == 2 * 9 + 2 + 72 * 3 + 3 and m["keras_version"] for m in report.members)
    with open_archive(packed) as opened:
        root = opened.root
        assert opened.manifest.input["shape"] == [8, 8, 1]
        for member in opened.manifest.members:
            model = load_member(opened.member_path(member))
            np.testing.assert_allclose(model(models.x).numpy(), models.expected, rtol=1e-6, atol=1e-6)
    assert not root.exists()
    assert list(private_tempdir.iterdir()) == []


def test_manifest_written_by_pack(packed):
    m = read_manifest(packed)
    assert m.data["format"] == "yyar" and m.data["format_version"] == 1
    assert m.output.to_json() == OUTPUT_SPEC and m.combine is Combine.MEAN and m.description == "tiny test model"
    assert m.input.image.resize == "stretch" and m.input.name == "input"
    assert m.data["input"] == m.input.to_json()  # the defaults are written out
    with zipfile.ZipFile(packed) as zf:
        assert sorted(zf.namelist()) == ["MANIFEST.json", "models/tiny.keras", "models/tiny_2.h5"]
        for member in m.members:
            assert hashlib.sha256(zf.read(member.path)).hexdigest() == member.sha256


def test_pack_convert_records_source(models, tmp_path):
    path = pack(name="conv", version=3, models=[models.tiny_h5], input_spec=INPUT_SPEC, output_spec=OUTPUT_SPEC,
                out_dir=tmp_path, convert=True)
    assert path.name == "conv-3.yyar"
    member = read_manifest(path).members[0]
    assert member["path"] == "models/tiny.keras"
    assert member["source"]["sha256"] == archive.sha256_file(models.tiny_h5)
    assert member["source"]["size"] == models.tiny_h5.stat().st_size
    assert verify(path).members[0]["format"] == "keras"


def test_tf_keras_h5_loads_under_keras3(models, tmp_path):
    from yyai_kernel.archive.kerasload import load_member

    path = pack(name="tfk", version=1, models=[models.tfk_h5], input_spec=INPUT_SPEC, output_spec=OUTPUT_SPEC,
                out_dir=tmp_path)
    report = verify(path)
    assert report.members[0]["format"] == "h5" and report.members[0]["keras_version"].startswith("2.")
    with open_archive(path) as opened:
        model = load_member(opened.member_path(opened.manifest.members[0]))
        np.testing.assert_allclose(model(models.x).numpy(), models.tfk_expected, rtol=1e-5, atol=1e-5)


def test_pack_dedups_member_names(models, tmp_path):
    other = tmp_path / "copy"
    other.mkdir()
    twin = other / "tiny.keras"
    twin.write_bytes(models.tiny_keras.read_bytes())
    path = pack(name="dup", version=1, models=[models.tiny_keras, twin], input_spec=INPUT_SPEC,
                output_spec=OUTPUT_SPEC, out_dir=tmp_path)
    assert [(m["name"], m["path"]) for m in read_manifest(path).members] == [
        ("tiny", "models/tiny.keras"), ("tiny_2", "models/tiny_2.keras")]


def test_pack_refuses_model_that_does_not_fit_spec(models, tmp_path, private_tempdir):
    with pytest.raises(ManifestError) as err:
        pack(name="bad", version=1, models=[models.tiny_keras], input_spec=INPUT_SPEC,
             output_spec={"kind": "classification", "labels": ["a", "b"]}, out_dir=tmp_path)
    assert err.value.field == "output.labels"
    with pytest.raises(ManifestError) as err:
        pack(name="bad", version=1, models=[models.tiny_keras], output_spec=OUTPUT_SPEC, out_dir=tmp_path,
             input_spec={**INPUT_SPEC, "shape": [16, 16, 1]})
    assert err.value.field == "input.shape"
    assert list(tmp_path.iterdir()) == []
    assert list(private_tempdir.iterdir()) == []


def test_pack_refuses_bad_metadata_before_loading(models, tmp_path):
    with pytest.raises(ManifestError) as err:
        pack(name="Bad Name", version=1, models=[models.tiny_keras], input_spec=INPUT_SPEC,
             output_spec=OUTPUT_SPEC, out_dir=tmp_path)
    assert err.value.field == "name"
    assert list(tmp_path.iterdir()) == []


# --- models that must not load -------------------------------------------------------


@pytest.mark.parametrize("which", ["lambda_keras", "lambda_h5"])
def test_lambda_member_refused_unless_trusted(models, tmp_path, which):
    src = getattr(models, which)
    with pytest.raises(UnsafeModelError, match="trusted"):
        pack(name="lam", version=1, models=[src], input_spec=INPUT_SPEC, output_spec=OUTPUT_SPEC, out_dir=tmp_path)
    assert not (tmp_path / "lam-1.yyar").exists()
    path = pack(name="lam", version=1, models=[src], input_spec=INPUT_SPEC, output_spec=OUTPUT_SPEC,
                out_dir=tmp_path, trusted=True)
    with pytest.raises(UnsafeModelError):
        verify(path)
    assert verify(path, trusted=True).ok
    assert verify(path, load_models=False).ok  # checksums alone do not run the model's code


def test_member_that_is_not_a_model(models, tmp_path, zips):
    junk = models.junk_h5.read_bytes()
    path = zips.craft_archive(tmp_path / "junk.yyar", members={"models/junk.h5": junk})
    with pytest.raises(ModelLoadError, match=r"junk\.h5"):
        verify(path)
    with pytest.raises(ModelLoadError):
        pack(name="junk", version=1, models=[models.junk_h5], input_spec=INPUT_SPEC, output_spec=OUTPUT_SPEC,
             out_dir=tmp_path)


def test_pack_refuses_unknown_model_file_type(tmp_path):
    weird = tmp_path / "model.pb"
    weird.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match=r"\.h5 or \.keras"):
        pack(name="x", version=1, models=[weird], input_spec=INPUT_SPEC, output_spec=OUTPUT_SPEC, out_dir=tmp_path)


# --- manifest validation --------------------------------------------------------------


def _valid():
    from conftest import manifest_for

    return manifest_for({"models/m.h5": b"abc"})


@pytest.mark.parametrize("change, field", [
    (lambda d: d["input"].pop("shape"), "input.shape"),
    (lambda d: d["input"].update(shape=[]), "input.shape"),
    (lambda d: d["input"].update(shape=[8, "8", 1]), "input.shape[1]"),
    (lambda d: d["input"].update(color="cmyk"), "input.color"),
    (lambda d: d["input"].update(color="rgb"), "input.color"),  # rgb needs 3 channels
    (lambda d: d.update(name="Digits!"), "name"),
    (lambda d: d.update(name="a..b"), "name"),
    (lambda d: d.update(version=0), "version"),
    (lambda d: d.update(version="2"), "version"),
    (lambda d: d.update(combine="max"), "combine"),
    (lambda d: d.update(surprise=1), "surprise"),
    (lambda d: d.update(members=[]), "members"),
    (lambda d: d["members"][0].update(sha256="xyz"), "members[0].sha256"),
    (lambda d: d["members"][0].update(path="../m.h5"), "members[0].path"),
    (lambda d: d["members"][0].update(path="models/m.exe"), "members[0].path"),
    (lambda d: d.update(output={"kind": "classification"}), "output.labels"),
    (lambda d: d.update(output={"kind": "regression", "names": ["y"], "rounding": -1}), "output.rounding"),
    (lambda d: d.update(output={"kind": "ranking"}), "output.kind"),
    (lambda d: d["batching"].update(max_batch_size=0), "batching.max_batch_size"),
    (lambda d: d.update(files=[{"path": "/etc/passwd", "sha256": "0" * 64, "size": 1, "role": "other"}]),
     "files[0].path"),
    (lambda d: d.update(files=[{"path": "models/m.h5", "sha256": "0" * 64, "size": 1, "role": "other"}]),
     "files[0].path"),
])
def test_manifest_errors_name_the_field(change, field):
    d = _valid()
    change(d)
    with pytest.raises(ManifestError) as err:
        Manifest.from_dict(d)
    assert err.value.field == field
    assert f"{field}:" in str(err.value)


def test_valid_manifest_and_regression():
    d = _valid()
    d["output"] = {"kind": "regression", "names": ["colorfulness"], "rounding": 3}
    m = Manifest.from_dict(d)
    assert m.output.names == ("colorfulness",) and m.output.rounding == 3 and m.version == 1 and m.files == ()


@pytest.mark.parametrize("fmt, version", [("zip", 1), ("yyar", 2), ("yyar", "1"), (None, 1)])
def test_unknown_format_or_version(fmt, version, tmp_path, zips):
    d = _valid()
    d["format"], d["format_version"] = fmt, version
    path = zips.craft_archive(tmp_path / "a.yyar", members={"models/m.h5": b"abc"}, manifest=d)
    with pytest.raises(FormatVersionError):
        read_manifest(path)


def test_manifest_not_json(tmp_path, zips):
    path = zips.craft_archive(tmp_path / "a.yyar", manifest=b"{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(path)
    path = zips.craft_archive(tmp_path / "b.yyar", manifest=b"[1, 2]")
    with pytest.raises(ManifestError, match="JSON object"):
        read_manifest(path)


@pytest.mark.parametrize("text", [b"[" * 5000 + b"]" * 5000, b"[" * 5000, b'{"name": ' + b"[" * 65 + b"]" * 65 + b"}"])
def test_manifest_nested_too_deep_is_a_manifest_error(text, tmp_path, zips):
    path = zips.craft_archive(tmp_path / "a.yyar", manifest=text)
    with pytest.raises(ManifestError, match=r"^MANIFEST\.json nests deeper than 64 levels"):
        read_manifest(path)


def test_manifest_nested_64_deep_reaches_the_schema(tmp_path, zips):
    d = _valid()
    d["description"] = json.loads("[" * 63 + "]" * 63)  # 64 levels with the manifest object itself
    path = zips.craft_archive(tmp_path / "a.yyar", members={"models/m.h5": b"abc"}, manifest=d)
    with pytest.raises(ManifestError, match="description"):
        read_manifest(path)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_manifest_numbers_must_be_finite(token, tmp_path, zips):
    text = json.dumps(zips.manifest_for({"models/m.h5": b"not really a model"}))
    text = text.replace('"offset": 0.0', f'"offset": {token}')
    assert token in text
    path = zips.craft_archive(tmp_path / "a.yyar", manifest=text.encode())
    with pytest.raises(ManifestError, match=f"{token} is not a JSON number"):
        read_manifest(path)


def test_manifest_missing(tmp_path, zips):
    path = zips.write_zip(tmp_path / "a.yyar", [("models/m.h5", b"abc")])
    with pytest.raises(ManifestError, match=r"no MANIFEST\.json"):
        open_archive(path)


def test_manifest_too_big(tmp_path, zips):
    d = _valid()
    d["description"] = "x" * 5000
    path = zips.craft_archive(tmp_path / "a.yyar", members={"models/m.h5": b"abc"}, manifest=d)
    with pytest.raises(ArchiveLimitError, match=r"MANIFEST\.json"):
        read_manifest(path, Limits(max_manifest_bytes=1000))


# --- hostile zips ---------------------------------------------------------------------


def test_not_a_zip(tmp_path):
    path = tmp_path / "a.yyar"
    path.write_bytes(b"this is plain text, not a zip" * 10)
    with pytest.raises(NotAnArchiveError, match="not a zip"):
        read_manifest(path)
    empty = tmp_path / "empty.yyar"
    empty.write_bytes(b"")
    with pytest.raises(NotAnArchiveError):
        open_archive(empty)


def test_truncated_zip(packed, tmp_path, private_tempdir):
    data = packed.read_bytes()
    for cut in (len(data) // 2, len(data) - 10):
        path = tmp_path / f"cut{cut}.yyar"
        path.write_bytes(data[:cut])
        with pytest.raises(NotAnArchiveError):
            open_archive(path)
    assert list(private_tempdir.iterdir()) == []


def test_corrupt_member_data_crc(tmp_path, zips):
    payload = b"0123456789" * 100
    path = tmp_path / "a.yyar"
    d = zips.manifest_for({"models/m.h5": payload})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("MANIFEST.json", json.dumps(d))
        zf.writestr("models/m.h5", payload)
    data = bytearray(path.read_bytes())
    at = data.index(payload) + 500
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(NotAnArchiveError, match="corrupt"):
        open_archive(path)


@pytest.mark.parametrize("name", [
    "../x", "models/../../x", "/etc/x", "C:/x", "C:\\x", "..\\x", "models\\..\\..\\x", "./x", "a//b",
])
def test_unsafe_names_refused(name, tmp_path, zips, private_tempdir):
    path = zips.craft_archive(tmp_path / "a.yyar", extra=[(name, b"evil")])
    with pytest.raises(UnsafeMemberError, match="unsafe archive member"):
        open_archive(path)
    with pytest.raises(UnsafeMemberError):
        read_manifest(path)
    assert not (tmp_path / "x").exists() and not (private_tempdir.parent / "x").exists()
    assert list(private_tempdir.iterdir()) == []


def test_symlink_member_refused(tmp_path, zips):
    path = zips.craft_archive(tmp_path / "a.yyar", extra=[(zips.symlink_info("models/link.h5"), b"/etc/passwd")])
    with pytest.raises(UnsafeMemberError, match="symbolic link"):
        open_archive(path)


def test_symlink_even_when_listed(tmp_path, zips):
    target = b"/etc/passwd"
    members = {"models/m.h5": target}
    d = zips.manifest_for(members)
    path = zips.write_zip(tmp_path / "a.yyar", [("MANIFEST.json", json.dumps(d)),
                                               (zips.symlink_info("models/m.h5"), target)])
    with pytest.raises(UnsafeMemberError, match="symbolic link"):
        open_archive(path)


def test_duplicate_entry_names_refused(tmp_path, zips):
    with pytest.warns(UserWarning):
        path = zips.craft_archive(tmp_path / "a.yyar", extra=[("models/m.h5", b"second copy")])
    with pytest.raises(UnsafeMemberError, match="twice"):
        open_archive(path)


def test_too_many_members(tmp_path, zips):
    members = {f"models/m{i}.h5": b"x" for i in range(5)}
    path = zips.craft_archive(tmp_path / "a.yyar", members=members)
    with pytest.raises(ArchiveLimitError, match="entries"):
        open_archive(path, Limits(max_members=3))
    many = zips.craft_archive(tmp_path / "b.yyar", extra=[(f"junk/{i}", b"") for i in range(70)])
    with pytest.raises(ArchiveLimitError, match="the limit is 64"):
        read_manifest(many)


def test_member_bigger_than_declared(tmp_path, zips):
    d = zips.manifest_for({"models/m.h5": b"x" * 10})
    path = zips.craft_archive(tmp_path / "a.yyar", members={"models/m.h5": b"x" * 100}, manifest=d)
    with pytest.raises(ArchiveLimitError, match="declares 10"):
        open_archive(path)


def test_member_smaller_than_declared(tmp_path, zips):
    d = zips.manifest_for({"models/m.h5": b"x" * 100})
    path = zips.craft_archive(tmp_path / "a.yyar", members={"models/m.h5": b"x" * 10}, manifest=d)
    with pytest.raises(ChecksumError, match="10 bytes"):
        open_archive(path)


def test_member_over_the_size_limits(tmp_path, zips):
    path = zips.craft_archive(tmp_path / "a.yyar", members={"models/m.h5": bytes(range(256)) * 8})
    with pytest.raises(ArchiveLimitError, match="limit is 1000"):
        open_archive(path, Limits(max_member_bytes=1000))
    with pytest.raises(ArchiveLimitError, match="unpacks to"):
        open_archive(path, Limits(max_total_bytes=1000))
    assert open_archive(path).manifest.name == "toy"


def test_zip_bomb(tmp_path, zips):
    bomb = bytes(2 * 1024 * 1024)  # zeros deflate about 1000:1
    path = zips.craft_archive(tmp_path / "a.yyar", members={"models/m.h5": bomb})
    with pytest.raises(ZipBombError, match="zip bomb"):
        read_manifest(path)
    with pytest.raises(ZipBombError):
        open_archive(path)
    assert open_archive(path, Limits(max_ratio=10_000)).manifest.name == "toy"


def _patch_sizes(data: bytes, name: bytes, size: int) -> bytes:
    """Rewrite the uncompressed size of entry `name` in its local header and the central directory."""
    out = bytearray(data)
    local = out.find(b"PK\x03\x04")
    while local >= 0:
        name_len = struct.unpack_from("<H", out, local + 26)[0]
        if bytes(out[local + 30: local + 30 + name_len]) == name:
            struct.pack_into("<I", out, local + 22, size)
        local = out.find(b"PK\x03\x04", local + 4)
    central = out.find(b"PK\x01\x02")
    while central >= 0:
        name_len = struct.unpack_from("<H", out, central + 28)[0]
        if bytes(out[central + 46: central + 46 + name_len]) == name:
            struct.pack_into("<I", out, central + 24, size)
        central = out.find(b"PK\x01\x02", central + 4)
    return bytes(out)


def test_lying_header_size_is_not_trusted(tmp_path, zips, private_tempdir):
    """The headers and the manifest claim 10 bytes; the data inflates to 5000."""
    payload = b"y" * 5000
    d = zips.manifest_for({"models/m.h5": b"y" * 10})
    path = zips.craft_archive(tmp_path / "a.yyar", members={"models/m.h5": payload}, manifest=d)
    path.write_bytes(_patch_sizes(path.read_bytes(), b"models/m.h5", 10))
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("models/m.h5").file_size == 10
    with pytest.raises((NotAnArchiveError, ArchiveLimitError, ChecksumError)):
        open_archive(path)
    assert list(private_tempdir.iterdir()) == []


def test_copy_capped_stops_at_the_cap():
    src, dst = io.BytesIO(b"z" * 100_000), io.BytesIO()
    n, _ = copy_capped(src, dst, 10)
    assert n == 11 and len(dst.getvalue()) == 11
    src, dst = io.BytesIO(b"abc"), io.BytesIO()
    assert copy_capped(src, dst, 10) == (3, hashlib.sha256(b"abc").hexdigest())


def test_missing_file(tmp_path, zips):
    path = zips.craft_archive(tmp_path / "a.yyar", files={"samples/0.png": b"png"}, omit={"samples/0.png"})
    with pytest.raises(MissingMemberError, match=r"samples/0\.png"):
        open_archive(path)


def test_extra_file(tmp_path, zips):
    path = zips.craft_archive(tmp_path / "a.yyar", extra=[("samples/sneaky.py", b"print(1)")])
    with pytest.raises(UnexpectedMemberError, match=r"sneaky\.py"):
        open_archive(path)


def test_checksum_mismatch(tmp_path, zips):
    d = zips.manifest_for({"models/m.h5": b"good"})
    path = zips.craft_archive(tmp_path / "a.yyar", members={"models/m.h5": b"evil"}, manifest=d)
    with pytest.raises(ChecksumError, match="sha256"):
        open_archive(path)


def test_opened_archive_extracts_files_and_cleans_up(tmp_path, zips, private_tempdir):
    path = zips.craft_archive(tmp_path / "a.yyar", files={"samples/0.png": b"png", "labels.txt": b"a\nb\nc\n"})
    opened = open_archive(path)
    assert opened.root.parent == private_tempdir and opened.root.name.startswith("yyai-")
    assert opened.member_path(opened.manifest.files[1]).read_bytes() == b"a\nb\nc\n"
    assert opened.member_path(opened.manifest.members[0]).read_bytes() == b"not really a model"
    opened.close()
    opened.close()
    assert list(private_tempdir.iterdir()) == []


def test_reading_does_not_import_keras(packed, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / packed.name).write_bytes(packed.read_bytes())
    code = (
        "import sys; from yyai_kernel.archive import read_manifest; from yyai_kernel.store.store import ModelStore;"
        f"s = ModelStore({str(store)!r}); assert s.names() == ['toy'];"
        f"read_manifest({str(packed)!r});"
        "bad = [m for m in ('keras', 'tensorflow') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_read_listed_file(tmp_path, zips):
    from yyai_kernel.archive import read_listed_file

    path = zips.craft_archive(tmp_path / "a.yyar", files={"samples/0.png": b"png bytes"})
    assert read_listed_file(path, "samples/0.png") == b"png bytes"
    with pytest.raises(MissingMemberError, match="lists no file"):
        read_listed_file(path, "../etc/passwd")
    d = zips.manifest_for({"models/m.h5": b"not really a model"}, {"samples/0.png": b"png bytes"})
    bad = zips.craft_archive(tmp_path / "b.yyar", files={"samples/0.png": b"PNG BYTES"}, manifest=d)
    with pytest.raises(ChecksumError):
        read_listed_file(bad, "samples/0.png")
    big = zips.craft_archive(tmp_path / "c.yyar", files={"samples/0.png": b"x" * 100_000}, manifest=d)
    with pytest.raises(ChecksumError):
        read_listed_file(big, "samples/0.png")
