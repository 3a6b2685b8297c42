"""Fuzz targets for the two readers of hostile bytes: the archive reader and the image decoder.

What: Hypothesis strategies that produce broken inputs close to valid ones, and target
functions that push one input through every public entry point. Archives start from a
valid crafted archive and get edits (odd entry names, links and special files, duplicated,
dropped or altered entries, other compressions, manifests that are mutated, random JSON,
not JSON or nested thousands deep) or raw byte damage (flips, truncation, splices). Images
start from valid files in every format Pillow and OpenCV share, then get byte damage; other
images have headers that declare huge dimensions, written with valid checksums so the
header parsers believe them.

Why: an archive comes from an upload and an image from any client, so whatever bytes
arrive, the library must answer with a result or one of the typed errors of
``yyai_kernel.errors`` (which the server maps to a 4xx); any other exception is a 500 on
the server. ``tests/test_fuzz.py`` states the properties; ``make fuzz`` runs them longer.
"""

from __future__ import annotations

import copy
import io
import json
import math
import shutil
import stat
import struct
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
from conftest import manifest_for, sha256
from hypothesis import strategies as st

from yyai_kernel.archive import Limits, read_listed_file, read_manifest, verify
from yyai_kernel.errors import ArchiveError, ImageError
from yyai_kernel.runtime.images import decode_image, preprocess
from yyai_kernel.types import InputSpec

# Small limits put the count, size, ratio and manifest-size refusals within reach of tiny inputs.
SMALL_LIMITS = Limits(max_members=6, max_member_bytes=4096, max_total_bytes=6000, max_ratio=8.0,
                      max_manifest_bytes=2048, ratio_min_bytes=512)
LIMITS = st.sampled_from([None, SMALL_LIMITS])

# --- byte mutation ----------------------------------------------------------------------------


# Zip header fields by signature: (offset, width) of versions, flags, method, sizes, name and
# extra lengths, attributes, offsets, entry counts. Set to edge values, they reach the parser.
ZIP_FIELDS = {
    b"PK\x03\x04": [(4, 2), (6, 2), (8, 2), (18, 4), (22, 4), (26, 2), (28, 2)],
    b"PK\x01\x02": [(4, 2), (6, 2), (8, 2), (10, 2), (20, 4), (24, 4), (28, 2), (30, 2), (32, 2), (38, 4),
                     (42, 4), (46, 1)],
    b"PK\x05\x06": [(8, 2), (10, 2), (12, 4), (16, 4), (20, 2)],
}
EDGE_VALUES = [0, 1, 0x7F, 0x80, 0xFF, 0x800, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]


def _zip_field_offsets(data: bytes) -> list[tuple[int, int]]:
    """(absolute offset, width) of every known field of every zip header in `data`."""
    found = []
    for signature, fields in ZIP_FIELDS.items():
        at = data.find(signature)
        while at != -1 and len(found) < 400:
            found += [(at + offset, width) for offset, width in fields if at + offset + width <= len(data)]
            at = data.find(signature, at + 1)
    return found


@st.composite
def mutated_bytes(draw, seeds: list[bytes], max_edits: int = 6) -> bytes:
    """One seed with 1..max_edits edits: flips, overwrites, inserts, deletes, truncation, splices,
    and, in zips, header fields set to edge or random values."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, max_edits))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "splice", "int", "zip"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        fields = _zip_field_offsets(bytes(data)) if op == "zip" else []
        if fields:
            at, width = draw(st.sampled_from(fields))
            value = draw(st.one_of(st.sampled_from(EDGE_VALUES), st.integers(0, (1 << (8 * width)) - 1),
                                   st.just(int.from_bytes(data[at:at + width], "little") ^ 0x800)))
            data[at:at + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
        elif op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at:at + len(chunk)] = chunk
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[at:]
        elif op == "splice":  # a range copied from elsewhere in the file (headers look like headers)
            src = draw(st.integers(0, max(len(data) - 1, 0)))
            data[at:at] = data[src:src + draw(st.integers(1, 64))]
        elif op == "int" and len(data) >= 4:  # a 16/32-bit field set to an edge value
            value, width = draw(st.sampled_from(EDGE_VALUES)), draw(st.sampled_from([2, 4]))
            at = min(at, len(data) - width)
            data[at:at + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
    return bytes(data)


# --- JSON values and manifests ----------------------------------------------------------------

ODD_STRINGS = ["", ".", "..", "../x", "/etc/passwd", "C:/x", "a\\b", "models/../m.h5", "models/m.h5",
               "MANIFEST.json", "x" * 300, "\x00", "\u202e", "é", "models/\u00e9.h5", "yyar", "1", "NaN"]
ODD_NUMBERS = [0, -1, 1, 2, 3, 1.0, 1.5, -0.0, 10**9, 10**9 + 1, 2**63, -(2**63), 1e308,
               math.inf, -math.inf, math.nan]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(ODD_STRINGS), st.sampled_from(ODD_NUMBERS),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.text(max_size=10), st.sampled_from(ODD_STRINGS)),
                                            inner, max_size=4)),
    max_leaves=12,
)


def _json_paths(value, prefix=()) -> list[tuple]:
    """Every path into a JSON value, the root included."""
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += _json_paths(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            paths += _json_paths(item, prefix + (i,))
    return paths


@st.composite
def mutated_json(draw, value, max_edits: int = 3):
    """`value` with 1..max_edits edits at random paths: replace, delete, add a key, duplicate."""
    value = copy.deepcopy(value)
    for _ in range(draw(st.integers(1, max_edits))):
        path = draw(st.sampled_from(_json_paths(value)))
        if not path:
            if draw(st.integers(0, 9)) == 0:
                value = draw(JSON_VALUES)
            continue
        *head, last = path
        parent = value
        for key in head:
            parent = parent[key]
        op = draw(st.sampled_from(["replace", "replace", "delete", "add", "dup"]))
        if op == "replace":
            parent[last] = draw(JSON_VALUES)
        elif op == "delete":
            del parent[last]
        elif op == "add" and isinstance(parent[last], dict):
            parent[last][draw(st.one_of(st.text(max_size=10), st.sampled_from(ODD_STRINGS)))] = draw(JSON_VALUES)
        elif op == "dup" and isinstance(parent[last], list) and parent[last]:
            parent[last].append(copy.deepcopy(parent[last][0]))
    return value


NAMES = st.from_regex(r"\A[a-z0-9][a-z0-9_.-]{0,10}\Z")


@st.composite
def input_specs(draw, any_rank: bool = True) -> dict:
    """An input spec a schema-valid manifest may hold (small dimensions), images or not."""
    rank = draw(st.sampled_from([2, 3, 3, 1, 4] if any_rank else [2, 3]))
    dims = draw(st.lists(st.integers(1, 12), min_size=rank, max_size=rank))
    color = draw(st.sampled_from(["grayscale", "rgb", "bgr"]))
    if rank == 2:
        color = "grayscale"
    layout = draw(st.sampled_from(["channels_last", "channels_first"]))
    if rank == 3:
        dims[0 if layout == "channels_first" else -1] = 1 if color == "grayscale" else 3
    spec = {"shape": dims, "dtype": draw(st.sampled_from(["float32", "float16", "float64", "uint8", "int32"])),
            "color": color, "layout": layout}
    if draw(st.booleans()):
        spec["scale"] = draw(st.sampled_from([1.0, 1 / 255, 1 / 127.5, -1.0, 0.0]))
        spec["offset"] = draw(st.sampled_from([0.0, -1.0, 0.5]))
    return spec


@st.composite
def valid_manifests(draw) -> dict:
    """A manifest that passes the schema and the extra rules (checksums describe no real file)."""
    n = draw(st.integers(1, 3))
    members = [{"name": f"m{i}", "path": f"models/m{i}.{draw(st.sampled_from(['h5', 'keras']))}",
                "sha256": "0" * 64, "size": draw(st.integers(0, 10**6))} for i in range(n)]
    kind = draw(st.sampled_from(["classification", "regression"]))
    labels = draw(st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=5, unique=True))
    output = {"kind": kind, "labels" if kind == "classification" else "names": labels}
    data = {"format": "yyar", "format_version": 1, "name": draw(NAMES), "version": draw(st.integers(1, 10**9)),
            "members": members, "input": draw(input_specs()), "output": output}
    if draw(st.booleans()):
        data["combine"] = draw(st.sampled_from(["mean", "each"]))
        data["batching"] = {"max_batch_size": draw(st.integers(1, 4096)),
                            "max_delay_ms": draw(st.floats(0, 10000))}
        data["files"] = [{"path": "samples/0.png", "sha256": "f" * 64, "size": 3, "role": "sample"}]
    return data


MANIFEST_INPUTS = st.one_of(valid_manifests(), valid_manifests().flatmap(mutated_json), JSON_VALUES)

# --- archives ---------------------------------------------------------------------------------

MEMBERS = {"models/a.h5": b"not really a model " * 4, "models/b.keras": b"\x89HDF\r\n\x1a\n" + bytes(range(40))}
FILES = {"samples/0.png": b"\x89PNG\r\n\x1a\n fake sample", "labels.txt": b"a\nb\nc\n"}
ODD_NAMES = ["../evil.h5", "models/../../evil", "/abs.h5", "C:/win.h5", "C:evil", "models\\win.h5",
             "models//m.h5", "./models/m.h5", "models/./m.h5", "models/", "models", "MANIFEST.json",
             "manifest.json", "MANIFEST.json/", "models/a.h5/", "models/a.H5", "models/\x01.h5",
             "models/\u00e9.h5", "models/\u202eevil.h5", "n" * 300, "models/" + "d/" * 40 + "m.h5",
             "models/a.h5 ", " models/a.h5", "samples/0.png", "labels.txt", "models/a.h5"]
ENTRY_NAMES = st.one_of(st.sampled_from(ODD_NAMES), st.text(min_size=1, max_size=30))
FILE_MODES = [stat.S_IFREG | 0o644, stat.S_IFLNK | 0o777, stat.S_IFDIR | 0o755, stat.S_IFIFO | 0o644,
              stat.S_IFCHR | 0o644, stat.S_IFBLK | 0o644, stat.S_IFSOCK | 0o644, 0]
COMPRESSIONS = [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]


def zip_info(name: str, *, compress_type=zipfile.ZIP_DEFLATED, mode=stat.S_IFREG | 0o644,
             create_system: int = 3, flag_bits: int = 0) -> zipfile.ZipInfo:
    """A ZipInfo with every field the reader looks at set explicitly."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = compress_type
    info.external_attr = mode << 16
    info.create_system = create_system
    info.flag_bits |= flag_bits
    return info


def zip_bytes(entries: list[tuple[zipfile.ZipInfo, bytes]]) -> bytes:
    """A zip holding the entries exactly as given (duplicates included)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names: they are the point
        with zipfile.ZipFile(buffer, "w") as zf:
            for info, data in entries:
                zf.writestr(info, data)
    return buffer.getvalue()


def valid_entries(members=None, files=None) -> list[tuple[zipfile.ZipInfo, bytes]]:
    """The entries of a valid crafted archive: MANIFEST.json, then members and files."""
    members = MEMBERS if members is None else members
    files = FILES if files is None else files
    manifest = json.dumps(manifest_for(members, files)).encode()
    return [(zip_info("MANIFEST.json"), manifest)] + [(zip_info(n), b) for n, b in {**members, **files}.items()]


@st.composite
def edited_archives(draw) -> bytes:
    """A valid crafted archive with 0..4 structural edits, as zip bytes."""
    entries = valid_entries()
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(entries) - 1)) if entries else 0
        op = draw(st.sampled_from(["add", "rename", "dup", "drop", "mode", "compress", "encrypt",
                                   "content", "manifest", "manifest-raw", "bomb", "many"]))
        if op == "add":
            entries.append((zip_info(draw(ENTRY_NAMES), mode=draw(st.sampled_from(FILE_MODES))),
                            draw(st.binary(max_size=64))))
        elif not entries:
            continue
        elif op == "rename":
            old, data = entries[i]
            entries[i] = (zip_info(draw(ENTRY_NAMES), compress_type=old.compress_type), data)
        elif op == "dup":
            entries.append(entries[i])
        elif op == "drop":
            del entries[i]
        elif op == "mode":
            old, data = entries[i]
            entries[i] = (zip_info(old.filename, mode=draw(st.sampled_from(FILE_MODES)),
                                   create_system=draw(st.sampled_from([0, 3, 11]))), data)
        elif op == "compress":
            old, data = entries[i]
            entries[i] = (zip_info(old.filename, compress_type=draw(st.sampled_from(COMPRESSIONS))), data)
        elif op == "encrypt":
            old, data = entries[i]
            entries[i] = (zip_info(old.filename, flag_bits=1), data)
        elif op == "content":
            old, data = entries[i]
            entries[i] = (old, draw(st.one_of(st.binary(max_size=64), mutated_bytes([data or b"x"]))))
        elif op == "manifest":
            manifest = draw(st.one_of(mutated_json(manifest_for(MEMBERS, FILES)), MANIFEST_INPUTS))
            entries = [e for e in entries if e[0].filename != "MANIFEST.json"]
            entries.insert(0, (zip_info("MANIFEST.json"), json.dumps(manifest).encode()))
        elif op == "manifest-raw":  # not JSON, not UTF-8, nested thousands deep, or large
            raw = draw(st.one_of(st.binary(max_size=64), st.integers(1, 20000).map(lambda n: b"[" * n + b"]" * n),
                                 st.integers(1, 20000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
                                 st.integers(0, 5000).map(lambda n: b" " * n + b"{}")))
            entries = [e for e in entries if e[0].filename != "MANIFEST.json"]
            entries.insert(0, (zip_info("MANIFEST.json"), raw))
        elif op == "bomb":  # highly compressible content, over the ratio threshold of SMALL_LIMITS
            old, _ = entries[i]
            entries[i] = (zip_info(old.filename), bytes(draw(st.integers(600, 8000))))
        elif op == "many":
            entries += [(zip_info(f"extra/{k}.bin"), b"x") for k in range(draw(st.integers(1, 70)))]
    return zip_bytes(entries)


SEED_ARCHIVES = [
    zip_bytes(valid_entries()),
    zip_bytes([(zip_info(i.filename, compress_type=zipfile.ZIP_STORED), b) for i, b in valid_entries()]),
]
ARCHIVE_BYTES = st.one_of(edited_archives(), mutated_bytes(SEED_ARCHIVES), edited_archives().flatmap(
    lambda data: mutated_bytes([data], max_edits=2)), st.binary(max_size=256))


def reseal(archive: bytes, mutate) -> bytes:
    """Re-write a valid archive with each listed file's bytes passed through `mutate`, and a
    manifest whose sizes and checksums describe the new bytes: damage the checks cannot see."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        manifest = json.loads(zf.read("MANIFEST.json"))
        contents = {e["path"]: mutate(zf.read(e["path"])) for e in manifest["members"] + manifest.get("files", [])}
    for entry in manifest["members"] + manifest.get("files", []):
        entry["size"], entry["sha256"] = len(contents[entry["path"]]), sha256(contents[entry["path"]])
    return zip_bytes([(zip_info("MANIFEST.json"), json.dumps(manifest).encode())]
                     + [(zip_info(path), data) for path, data in contents.items()])


# --- archive targets --------------------------------------------------------------------------


def archive_target(data: bytes, *, limits: Limits | None = None, load_models: bool = False) -> str:
    """Read `data` as an archive through every entry point; return "accepted" or the error name.

    Raises whatever the reader raises that is not an ArchiveError, and AssertionError when a
    reader leaves a temporary file behind or two entry points disagree.
    """
    work = Path(tempfile.mkdtemp(prefix="yyai-fuzz-"))
    saved = tempfile.tempdir
    tempfile.tempdir = str(work / "tmp")  # everything the reader extracts lands here, to be checked
    try:
        (work / "tmp").mkdir()
        path = work / "fuzzed.yyar"
        path.write_bytes(data)
        try:
            manifest = read_manifest(path, limits)
        except ArchiveError as exc:
            manifest, outcome = None, type(exc).__name__
        try:
            report = verify(path, load_models=load_models, limits=limits)
        except ArchiveError as exc:
            assert not list((work / "tmp").iterdir()), "a refused archive left files behind"
            if manifest is None:
                assert type(exc).__name__ == outcome, "read_manifest and verify refuse for different reasons"
            return type(exc).__name__
        assert manifest is not None, "verify accepted an archive that read_manifest refused"
        assert report.manifest.data == manifest.data
        for entry in manifest.files:
            assert len(read_listed_file(path, entry.path, limits)) == entry.size
        assert not list((work / "tmp").iterdir()), "an accepted archive left files behind"
        return "accepted"
    finally:
        tempfile.tempdir = saved
        shutil.rmtree(work, ignore_errors=True)


# --- images -----------------------------------------------------------------------------------


def _pil(image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def seed_images() -> list[bytes]:
    """Small valid images: PNG (8/16-bit, gray, RGBA, palette), JPEG, BMP, TIFF (float too), WebP, GIF, PPM."""
    import cv2
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (6, 7), dtype=np.uint8)
    images = [cv2.imencode(ext, arr)[1].tobytes() for ext, arr in [
        (".png", rgb), (".png", gray), (".png", (gray.astype(np.uint16) * 257)),
        (".png", np.dstack([rgb, gray[:, :5, None]])), (".jpg", rgb), (".jpg", gray), (".bmp", rgb),
        (".tiff", rgb), (".tiff", rng.random((4, 4)).astype(np.float32)), (".webp", rgb), (".ppm", rgb),
        (".pgm", gray.astype(np.uint16) * 200),
    ]]
    pil = Image.fromarray(rgb)
    images += [_pil(pil.convert("P"), "GIF"), _pil(pil.convert("LA"), "PNG"), _pil(pil.convert("CMYK"), "JPEG"),
               _pil(pil.convert("1"), "BMP"), _pil(pil.convert("CMYK"), "TIFF"), _pil(pil.convert("F"), "TIFF"),
               _pil(pil, "JPEG", progressive=True), _pil(pil.convert("I;16"), "PNG")]
    return images


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def huge_header(fmt: str, width: int, height: int) -> bytes:
    """A short file in `fmt` whose (valid) header declares width x height pixels."""
    if fmt == "png":
        ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
                + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))
    if fmt == "jpeg":
        sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height & 0xFFFF, width & 0xFFFF, 3)
        sof += b"".join(bytes([i, 0x11, 0]) for i in (1, 2, 3))
        scan = b"\xff\xda\x00\x0c\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00" + b"\x00" * 32
        return b"\xff\xd8" + sof + scan + b"\xff\xd9"
    if fmt == "bmp":
        info = struct.pack("<IiiHHIIiiII", 40, width & 0x7FFFFFFF, height & 0x7FFFFFFF, 1, 24, 0, 0, 2835, 2835, 0, 0)
        return b"BM" + struct.pack("<IHHI", 54 + 64, 0, 0, 54) + info + b"\x00" * 64
    if fmt == "gif":
        w, h = width & 0xFFFF, height & 0xFFFF
        return (b"GIF89a" + struct.pack("<HHBBB", w, h, 0, 0, 0) + b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0)
                + b"\x02\x02\x44\x01\x00\x3b")
    if fmt == "tiff":
        tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
                (273, 4, 8 + 2 + 12 * 8 + 4), (278, 4, height), (279, 4, 16)]
        ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", t, k, 1, v) for t, k, v in tags)
        return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 4 + b"\x00" * 16
    if fmt == "webp":
        w, h = (width - 1) & 0xFFFFFF, (height - 1) & 0xFFFFFF
        vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + w.to_bytes(3, "little") + h.to_bytes(3, "little")
        return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x
    raise ValueError(fmt)


HEADER_FORMATS = ["png", "jpeg", "bmp", "gif", "tiff", "webp"]
SEED_IMAGES = seed_images()
IMAGE_BYTES = st.one_of(
    mutated_bytes(SEED_IMAGES, max_edits=3),
    st.builds(huge_header, st.sampled_from(HEADER_FORMATS), st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1)),
    st.builds(huge_header, st.sampled_from(HEADER_FORMATS), st.integers(1, 4096), st.integers(1, 4096))
    .flatmap(lambda data: mutated_bytes([data], max_edits=2)),
    st.binary(max_size=128),
)


def image_target(data: bytes, spec: dict, *, max_pixels: int) -> str:
    """Decode and preprocess `data`; return "accepted" or the error name.

    Raises whatever the decoder raises that is not an ImageError, and AssertionError when a
    result breaks the contract (wrong shape or dtype, more pixels than the limit).
    """
    try:
        image = decode_image(data, max_pixels=max_pixels)
    except ImageError as exc:
        outcome = type(exc).__name__
    else:
        outcome = "accepted"
        assert image.dtype == np.uint8 and image.ndim in (2, 3)
        assert image.shape[0] * image.shape[1] <= max_pixels
        assert image.ndim == 2 or image.shape[2] == 3
    try:
        tensor = preprocess(data, InputSpec.from_json(spec), max_pixels=max_pixels)
    except ImageError as exc:
        assert outcome == "accepted" or type(exc).__name__ == outcome, "preprocess and decode_image disagree"
        return type(exc).__name__
    assert outcome == "accepted", "preprocess accepted what decode_image refused"
    assert list(tensor.shape) == list(spec["shape"]) and tensor.dtype == np.dtype(spec["dtype"])
    return "accepted"


__all__ = ["ARCHIVE_BYTES", "HEADER_FORMATS", "IMAGE_BYTES", "LIMITS", "MANIFEST_INPUTS", "SEED_ARCHIVES",
           "SEED_IMAGES", "archive_target", "huge_header", "image_target", "input_specs", "mutated_bytes", "reseal"]


# --- what the fuzzing found ---------------------------------------------------------------------


def _patched(data: bytes, signature: bytes, offset: int, value: bytes) -> bytes:
    """`data` with `value` written at `offset` into the first header that starts with `signature`."""
    at = data.index(signature) + offset
    return data[:at] + value + data[at + len(value):]


def _corrupt_after(data: bytes, magic: bytes, skip: int) -> bytes:
    """`data` with the byte `skip` bytes after `magic` inverted (damage inside a compressed stream)."""
    at = data.index(magic) + skip
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def found_archives() -> dict[str, tuple[bytes, str]]:
    """Archives that once made the reader raise an untyped error, with the refusal they now get."""
    valid = SEED_ARCHIVES[0]
    bz2_zip = zip_bytes([(zip_info(i.filename, compress_type=zipfile.ZIP_BZIP2), b) for i, b in valid_entries()])
    lzma_zip = zip_bytes([(zip_info(i.filename, compress_type=zipfile.ZIP_LZMA), b) for i, b in valid_entries()])
    return {
        # OSError (seek before the start of the file): entries' offsets point before byte 0
        "first byte cut": (valid[1:], "NotAnArchiveError"),
        # RecursionError from json.loads
        "manifest nested 5000 deep": (zip_bytes([(zip_info("MANIFEST.json"), b"[" * 5000 + b"]" * 5000)]),
                                      "ManifestError"),
        # NotImplementedError: "zip file version 6.4"
        "needs zip version 6.4": (_patched(valid, b"PK\x01\x02", 6, b"\x40\x00"), "NotAnArchiveError"),
        # UnicodeDecodeError: a name flagged UTF-8 that is not
        "name flagged utf-8, not utf-8": (
            _patched(_patched(valid, b"PK\x01\x02", 8, b"\x00\x08"), b"PK\x01\x02", 46, b"\xff"), "NotAnArchiveError"),
        # OSError "Invalid data stream" from bz2
        "corrupt bzip2 member": (_corrupt_after(bz2_zip, b"BZh", 4), "NotAnArchiveError"),
        # LZMAError "Corrupt input data" from lzma
        "corrupt lzma member": (_corrupt_after(lzma_zip, b"MANIFEST.json", 40), "NotAnArchiveError"),
    }


def found_images() -> dict[str, tuple[bytes, dict, str]]:
    """Images and input specs that once made preprocessing raise an untyped error, with the outcome now."""
    import cv2

    float_tiff = cv2.imencode(".tiff", np.linspace(-0.5, 1.5, 16, dtype=np.float32).reshape(4, 4))[1].tobytes()
    png = cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes()
    gray = {"shape": [4, 4], "dtype": "float32", "color": "grayscale"}
    return {
        # ValueError from np.iinfo(float32)
        "float32 TIFF": (float_tiff, gray, "accepted"),
        # IndexError: a model whose input is not an image
        "1-D input shape": (png, {"shape": [16], "dtype": "float32", "color": "grayscale"}, "ImageError"),
        # ValueError from reshape
        "4-D input shape": (png, {"shape": [1, 4, 4, 1], "dtype": "float32", "color": "grayscale"}, "ImageError"),
    }
