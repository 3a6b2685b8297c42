"""The `yyai` CLI: archive, inspect (good and bad archives), models, readable errors, and
TensorFlow's start-up log kept off the terminal (real subprocesses)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from yyai_kernel.archive import read_manifest
from yyai_kernel.cli import app
from yyai_kernel.quiet import TF_LOG_LINE

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("command", [[], ["archive"], ["inspect"], ["models"]])
def test_help_everywhere(command):
    result = run(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    if command:
        assert "Example" in result.output


def test_archive_then_inspect(models, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    sample = tmp_path / "0.png"
    sample.write_bytes(b"\x89PNG fake")
    out = tmp_path / "out"
    result = run("archive", "--name", "toy", "--version", 2, "--model", models.tiny_keras, "--model", models.tiny_h5,
                 "--input-shape", "8,8,1", "--scale", "1/255", "--labels-file", labels, "--sample", sample,
                 "--description", "from the cli", "--max-batch-size", 16, "--convert", "-o", out)
    assert result.exit_code == 0, result.output
    path = out / "toy-2.yyar"
    assert f"wrote {path}" in result.output
    m = read_manifest(path)
    assert m.output.to_json() == {"kind": "classification", "labels": ["a", "b", "c"]}
    assert m.input["scale"] == pytest.approx(1 / 255) and m.input["color"] == "grayscale"
    assert m.batching == {"max_batch_size": 16}
    assert [f["path"] for f in m.files] == ["labels.txt", "samples/0.png"]
    assert [x["path"] for x in m.members] == ["models/tiny.keras", "models/tiny_2.keras"]  # converted

    result = run("inspect", path)
    assert result.exit_code == 0, result.output
    assert "name: toy  version: 2" in result.output
    assert "member tiny_2: models/tiny_2.keras  keras  Keras 3.15.1, converted from models/tiny_2.h5" in result.output
    assert "239 params" in result.output and "verified: OK" in result.output

    result = run("inspect", "--json", path)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["manifest"]["name"] == "toy"
    assert [m["params"] for m in data["members"]] == [239, 239]

    result = run("archive", "--name", "toy", "--version", 2, "--model", models.tiny_keras, "--input-shape", "8,8,1",
                 "--labels", "a,b,c", "-o", out)
    assert result.exit_code == 1 and "already exists" in result.output


def test_archive_regression_and_force(models, tmp_path):
    args = ["archive", "--name", "reg", "--version", 1, "--model", models.tiny_keras, "--input-shape", "8,8,1",
            "--regression", "r,g,b", "--rounding", 2, "--combine", "each", "-o", tmp_path]
    assert run(*args).exit_code == 0
    result = run(*args, "--force")
    assert result.exit_code == 0, result.output
    m = read_manifest(tmp_path / "reg-1.yyar")
    assert m.output.to_json() == {"kind": "regression", "names": ["r", "g", "b"], "rounding": 2} and m.combine == "each"


def test_archive_errors_are_one_line(models, tmp_path):
    result = run("archive", "--name", "Bad Name", "--version", 1, "--model", models.tiny_keras,
                 "--input-shape", "8,8,1", "--labels", "a,b,c", "-o", tmp_path)
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: invalid manifest: name:")
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1

    result = run("archive", "--name", "lam", "--version", 1, "--model", models.lambda_keras,
                 "--input-shape", "8,8,1", "--labels", "a,b,c", "-o", tmp_path)
    assert result.exit_code == 1 and "pass --trust" in result.stderr and "Traceback" not in result.output
    result = run("archive", "--name", "lam", "--version", 1, "--model", models.lambda_keras,
                 "--input-shape", "8,8,1", "--labels", "a,b,c", "--trust", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    result = run("inspect", tmp_path / "lam-1.yyar")
    assert result.exit_code == 1 and "UnsafeModelError" in result.output
    assert run("inspect", "--trust", tmp_path / "lam-1.yyar").exit_code == 0


@pytest.mark.parametrize("extra, hint", [
    ([], "exactly one of"),
    (["--labels", "a", "--regression", "y"], "exactly one of"),
    (["--labels", "a", "--input-shape", "8,x"], "not a shape"),
    (["--labels", "a", "--scale", "one"], "fraction"),
])
def test_archive_usage_errors(models, tmp_path, extra, hint):
    args = ["archive", "--name", "u", "--version", 1, "--model", models.tiny_keras, "--input-shape", "8,8,1"]
    result = run(*args, *extra, "-o", tmp_path)
    assert result.exit_code == 2 and hint in result.output
    assert not list(tmp_path.glob("*.yyar"))


def test_inspect_bad_archive_exits_nonzero(packed, tmp_path, zips):
    bad = tmp_path / "bad.yyar"
    bad.write_bytes(packed.read_bytes()[:-40])
    result = run("inspect", bad)
    assert result.exit_code == 1
    assert "INVALID (NotAnArchiveError)" in result.output and "Traceback" not in result.output

    evil = zips.craft_archive(tmp_path / "evil.yyar", extra=[("../x", b"evil")])
    result = run("inspect", "--json", evil)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["type"] == "UnsafeMemberError"

    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(packed, folder)
    shutil.copy(bad, folder)
    result = run("inspect", "--no-load", "--json", folder)
    assert result.exit_code == 1
    assert [(r["path"].split("/")[-1], r["ok"]) for r in json.loads(result.stdout)] == [
        ("bad.yyar", False), ("toy-1.yyar", True)]


def test_models_lists_store(make_store):
    result = run("models", "--store", make_store)
    assert result.exit_code == 0, result.output
    assert "toy" in result.output and "1, 2" in result.output
    assert "problem (unreadable)" in result.output and "junk.yyar" in result.output
    result = run("models", "--store", make_store, "--json")
    data = json.loads(result.stdout)
    assert data["models"] == [{"name": "toy", "versions": [1, 2], "default": 2, "pinned": False, "labels": {},
                               "traffic": None}]
    assert [p["kind"] for p in data["problems"]] == ["unreadable"]


def test_models_missing_store(tmp_path):
    result = run("models", "--store", tmp_path / "nope")
    assert result.exit_code == 1 and result.stderr.startswith("error:") and "not a folder" in result.stderr


@pytest.fixture
def make_store(tmp_path, zips):
    root = tmp_path / "store"
    root.mkdir()
    for version in (1, 2):
        members = {"models/m.h5": b"w"}
        zips.craft_archive(root / f"toy-{version}.yyar", members=members,
                           manifest=zips.manifest_for(members, name="toy", version=version))
    (root / "junk.yyar").write_bytes(b"junk")
    return root


# --- preprocessing in `yyai archive` -------------------------------------------------------


def test_archive_prints_the_preprocessing_and_records_resize(models, tmp_path):
    result = run("archive", "--name", "pre", "--version", 1, "--model", models.tiny_keras, "--input-shape", "8,8,1",
                 "--scale", "1/255", "--offset", "-0.5", "--resize", "stretch", "--labels", "a,b,c", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    assert "input: shape [8, 8, 1] float32 grayscale, resize stretch, x = pixel / 255 - 0.5" in result.stdout
    assert "warning" not in result.output
    assert read_manifest(tmp_path / "pre-1.yyar").input["resize"] == "stretch"


def test_archive_warns_when_float_inputs_get_unscaled_pixels(models, tmp_path):
    result = run("archive", "--name", "raw", "--version", 1, "--model", models.tiny_keras, "--input-shape", "8,8,1",
                 "--labels", "a,b,c", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    assert "x = pixel\n" in result.stdout
    assert result.stderr.startswith("warning:")
    assert "pixels 0-255 reach the model unscaled; pass --scale 1/255" in result.stderr
    result = run("archive", "--name", "ints", "--version", 1, "--model", models.tiny_keras, "--input-shape", "8,8,1",
                 "--dtype", "uint8", "--labels", "a,b,c", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output  # uint8 models take pixels as they are


def test_archive_refuses_an_unknown_resize_mode(models, tmp_path):
    result = run("archive", "--name", "rs", "--version", 1, "--model", models.tiny_keras, "--input-shape", "8,8,1",
                 "--resize", "crop", "--labels", "a,b,c", "-o", tmp_path)
    assert result.exit_code == 1 and "input.resize" in result.stderr and "Traceback" not in result.output
    assert not list(tmp_path.glob("*.yyar"))


def test_archive_help_example_scales_like_the_bundled_digits():
    result = runner.invoke(app, ["archive", "--help"], env={"COLUMNS": "200"})
    assert "--scale 1/255" in result.output and "1/16" not in result.output
    assert "--resize" in result.output


def test_models_table_title_names_the_folder_once(make_store, monkeypatch):
    monkeypatch.chdir(make_store.parent)
    result = runner.invoke(app, ["models", "--store", "store"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "models in store" in result.output and "store store" not in result.output


# --- TensorFlow's C++ start-up log ---------------------------------------------------------

NOISE = ("oneDNN", "cuInit", "absl::InitializeLog")


def yyai_subprocess(*args, **env) -> subprocess.CompletedProcess:
    """``yyai ARGS`` in a fresh process (TensorFlow not imported yet), with no log settings inherited."""
    clean = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "YYAI_LOG_LEVEL")}
    return subprocess.run([sys.executable, "-m", "yyai_kernel.cli", *map(str, args)], capture_output=True,
                          text=True, env={**clean, **env}, timeout=600)


def tf_log_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if TF_LOG_LINE.match(line)]


def test_inspect_and_archive_keep_tensorflow_start_up_log_off_stderr(packed, models, tmp_path):
    inspected = yyai_subprocess("inspect", packed)
    assert inspected.returncode == 0, inspected.stderr
    assert "verified: OK" in inspected.stdout
    packed_again = yyai_subprocess("archive", "--name", "q", "--version", 1, "--model", models.tiny_keras,
                                   "--input-shape", "8,8,1", "--scale", "1/255", "--labels", "a,b,c", "-o", tmp_path)
    assert packed_again.returncode == 0, packed_again.stderr
    for result in (inspected, packed_again):
        assert not [line for line in result.stderr.splitlines() if any(word in line for word in NOISE)], result.stderr
        assert not tf_log_lines(result.stderr), result.stderr


def test_verbose_and_yyai_log_level_debug_bring_tensorflow_log_back(packed, models, tmp_path):
    verbose = yyai_subprocess("inspect", "--verbose", packed)
    assert verbose.returncode == 0, verbose.stderr
    debug = yyai_subprocess("archive", "--name", "d", "--version", 1, "--model", models.tiny_keras,
                            "--input-shape", "8,8,1", "--scale", "1/255", "--labels", "a,b,c", "-o", tmp_path,
                            YYAI_LOG_LEVEL="debug")
    assert debug.returncode == 0, debug.stderr
    for result in (verbose, debug):
        assert tf_log_lines(result.stderr), result.stderr  # TensorFlow's own lines, as it printed them


def test_the_notebook_path_keeps_tensorflow_start_up_log_out_of_cells():
    """``dashboard_from_env()`` in a plain notebook imports TensorFlow through the same filter."""
    code = ("from yyai_kernel.dashboard import dashboard_from_env\n"
            "board = dashboard_from_env('model_archives', refresh_interval=None)\n"
            "print('MODELS', [value for _, value in board.preview.model_select.options])\n"
            "board.close()\n")
    clean = {k: v for k, v in os.environ.items()
             if k not in ("TF_CPP_MIN_LOG_LEVEL", "YYAI_LOG_LEVEL", "YYAI_URL", "VOILA_APP_PORT")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean, timeout=600,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "MODELS ['colorfulness', 'digits', 'wine']" in out.stdout
    assert not [line for line in out.stderr.splitlines() if any(word in line for word in NOISE)], out.stderr
