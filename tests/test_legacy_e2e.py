"""Keras 2.0-2.2 era `.h5` fixtures, end to end: `yyai archive` (plain and --convert), `yyai
inspect`, and a running `yyai serve` whose v2 outputs must equal tf_keras's within 1e-5 (issue 8).

Every loadable fixture in tests/fixtures/legacy (written by scripts/make_legacy_fixtures.py)
is packed twice through the CLI, once as the `.h5` it is and once converted to `.keras`, into
one store; one server serves all of them for the whole module. tf_keras 2.21 is the
reference, run under XLA as in tests/test_legacy.py (it cannot run channels_first
convolutions on the CPU otherwise). The Lambda fixture and the Keras 1.x fixture are refused.
"""

from __future__ import annotations

import functools
import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from serving import start_server
from typer.testing import CliRunner

from yyai_kernel.archive import read_manifest
from yyai_kernel.cli import app
from yyai_kernel.runtime.images import encode_png, preprocess

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "legacy"
runner = CliRunner()

# fixture -> (Keras version it records, CLI input options, output width, tf_keras reference file)
LOADABLE = {
    "keras2.0_functional.h5": ("2.0.8", ["--input-shape", "8,8,1"], 6, None),
    "keras2.0_sequential_cnn.h5": ("2.0.8", ["--input-shape", "8,8,1"], 10, None),
    "keras2.1_bn_dropout.h5": ("2.1.6", ["--input-shape", "12"], 1, None),
    "keras2.1_channels_first_cnn.h5": ("2.1.2", ["--input-shape", "3,8,8", "--channels-first", "--color", "rgb"],
                                       5, None),
    # tf_keras cannot flip Theano kernels: the same model written under TensorFlow is its reference
    "keras2.1_channels_first_theano.h5": ("2.1.2", ["--input-shape", "3,8,8", "--channels-first", "--color", "rgb"],
                                          5, "keras2.1_channels_first_cnn.h5"),
    "keras2.2_functional_channels_first.h5": ("2.2.0", ["--input-shape", "3,8,8", "--channels-first",
                                                        "--color", "rgb"], 4, None),
    "keras2.2_sequential_dict.h5": ("2.2.4", ["--input-shape", "8,8,3", "--color", "rgb"], 3, None),
}
SHAPES = {"8,8,1": (8, 8, 1), "12": (12,), "3,8,8": (3, 8, 8), "8,8,3": (8, 8, 3)}


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def model_name(fixture: str, converted: bool) -> str:
    return fixture[: -len(".h5")].replace(".", "") + ("-conv" if converted else "-h5")


def pack_args(fixture: str, converted: bool, out: Path) -> list:
    _, options, width, _ = LOADABLE[fixture]
    args = ["archive", "--name", model_name(fixture, converted), "--version", 1, "--model", FIXTURES / fixture,
            *options, "--regression", ",".join(f"y{i}" for i in range(width)), "-o", out]
    return args + (["--convert"] if converted else [])


def input_for(fixture: str) -> np.ndarray:
    shape = SHAPES[LOADABLE[fixture][1][1]]
    return np.random.default_rng(1234).uniform(0, 1, (3, *shape)).astype("float32")


@functools.cache
def reference_model(fixture: str):
    """The fixture's reference, loaded by tf_keras (trusted and test-only: it runs Lambda code)."""
    import tensorflow as tf
    import tf_keras

    model = tf_keras.models.load_model(FIXTURES / (LOADABLE[fixture][3] or fixture), compile=False)
    return tf.function(model, jit_compile=True)


def reference(fixture: str, x: np.ndarray) -> np.ndarray:
    """tf_keras's output for the fixture on `x`."""
    return np.asarray(reference_model(fixture)(x))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """Every loadable fixture packed by `yyai archive`, without and with --convert, in one store."""
    root = tmp_path_factory.mktemp("legacy-store")
    for fixture in LOADABLE:
        for converted in (False, True):
            result = cli(*pack_args(fixture, converted, root))
            assert result.exit_code == 0, (fixture, converted, result.output)
    return root


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    running = start_server(store, tmp_path_factory.mktemp("legacy-server"))
    try:
        yield running
    finally:
        assert running.stop() == 0


@pytest.mark.parametrize("fixture", sorted(LOADABLE))
def test_archives_record_the_version_and_both_checksums(store, fixture):
    original = (FIXTURES / fixture).read_bytes()
    version = LOADABLE[fixture][0]
    member = Path(fixture).stem

    plain = store / f"{model_name(fixture, False)}-1.yyar"
    [entry] = read_manifest(plain).members
    assert entry["path"] == f"models/{member}.h5" and "source" not in entry
    assert entry["sha256"] == sha(original) and entry["keras_version"] == version

    converted = store / f"{model_name(fixture, True)}-1.yyar"
    [entry] = read_manifest(converted).members
    assert entry["path"] == f"models/{member}.keras"
    assert entry["source"]["path"] == f"models/{member}.h5"
    assert entry["source"]["sha256"] == sha(original) and entry["source"]["size"] == len(original)
    assert entry["source"]["keras_version"] == version
    with zipfile.ZipFile(converted) as zf:
        assert sorted(zf.namelist()) == ["MANIFEST.json", f"models/{member}.keras"]
        assert entry["sha256"] == sha(zf.read(entry["path"])) != sha(original)


@pytest.mark.parametrize("fixture", sorted(LOADABLE))
def test_inspect_shows_the_keras_version(store, fixture):
    version = LOADABLE[fixture][0]
    member = Path(fixture).stem

    result = cli("inspect", store / f"{model_name(fixture, False)}-1.yyar")
    assert result.exit_code == 0, result.output
    assert f"member {member}: models/{member}.h5  h5  Keras {version}  " in result.output
    assert "verified: OK" in result.output

    result = cli("inspect", "--json", store / f"{model_name(fixture, True)}-1.yyar")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)["members"]
    assert row["format"] == "keras" and row["keras_version"].startswith("3.")
    assert row["source"]["keras_version"] == version


@pytest.mark.parametrize("converted", [False, True], ids=["h5", "converted"])
@pytest.mark.parametrize("fixture", sorted(LOADABLE))
def test_served_outputs_equal_tf_keras(server, fixture, converted):
    name = model_name(fixture, converted)
    x = input_for(fixture)
    body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    reply = server.post(f"/v2/models/{name}/infer", json=body)
    assert reply.status_code == 200, reply.text
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    want = reference(fixture, x)
    assert set(outputs) == {"output", Path(fixture).stem}
    for out in outputs.values():
        assert out["shape"] == list(want.shape) and out["datatype"] == "FP32"
        got = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_channels_first_image_prediction(server, store):
    """An image reaches a channels_first model as CxHxW: /predictions equals tf_keras on that input."""
    fixture = "keras2.2_functional_channels_first.h5"
    pixels = np.random.default_rng(7).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    image = encode_png(pixels)
    spec = read_manifest(store / f"{model_name(fixture, True)}-1.yyar").input
    x = preprocess(image, spec)
    assert x.shape == (3, 8, 8)
    np.testing.assert_array_equal(x, pixels.transpose(2, 0, 1).astype("float32"))  # rgb, scale 1

    reply = server.post(f"/predictions/{model_name(fixture, True)}", data=image,
                        headers={"Content-Type": "image/png"}, params={"raw": "true"})
    assert reply.status_code == 200, reply.text
    [row] = reply.json()["predictions"]
    np.testing.assert_allclose(row["raw"]["combined"], reference(fixture, x[None])[0], atol=1e-5, rtol=0)


def test_lambda_fixture_is_refused(server, store, tmp_path):
    path = FIXTURES / "keras2.1_lambda.h5"
    args = ["archive", "--name", "lam", "--version", 1, "--model", path, "--input-shape", "4",
            "--regression", "y0,y1", "-o", tmp_path]
    for extra in ([], ["--convert"]):
        result = cli(*args, *extra)
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert "keras2.1_lambda.h5" in result.stderr and "Lambda" in result.stderr and "trust" in result.stderr
    assert not list(tmp_path.glob("*.yyar"))

    # packed by someone who trusts it, then uploaded to a server that does not: a 4xx JSON error
    result = cli(*args, "--trust")
    assert result.exit_code == 0, result.output
    reply = server.post("/models", data=(tmp_path / "lam-1.yyar").read_bytes(),
                        headers={"Content-Type": "application/octet-stream"})
    assert 400 <= reply.status_code < 500, reply.text
    assert reply.json()["type"] == "UnsafeModelError" and "Lambda" in reply.json()["error"]
    assert server.get("/v2/models/lam").status_code == 404
    assert not (store / "lam-1.yyar").exists()
    assert server.get("/v2/health/ready").status_code == 200  # and it keeps serving


def test_keras1_fixture_gets_the_clear_refusal(tmp_path):
    args = ["archive", "--name", "old", "--version", 1, "--model", FIXTURES / "keras1.2_cnn.h5",
            "--input-shape", "8,8,1", "--regression", "y", "-o", tmp_path]
    for extra in ([], ["--convert"], ["--trust"]):
        result = cli(*args, *extra)
        assert result.exit_code == 1 and "Traceback" not in result.output
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("error: keras1.2_cnn.h5: written by Keras 1.2.2; Keras 1.x files cannot be loaded")
    assert not list(tmp_path.glob("*.yyar"))


def test_channels_first_needs_the_flag(tmp_path):
    """Without --channels-first a CxHxW shape is refused with a hint, not packed wrongly."""
    result = cli("archive", "--name", "cf", "--version", 1, "--model", FIXTURES / "keras2.1_channels_first_cnn.h5",
                 "--input-shape", "3,8,8", "--color", "rgb", "--regression", "a,b,c,d,e", "-o", tmp_path)
    assert result.exit_code == 1 and "input.layout" in result.stderr
    assert not list(tmp_path.glob("*.yyar"))
