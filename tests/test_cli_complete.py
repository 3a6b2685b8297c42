"""A complete CLI (issue #23), on store folders:
commands grouped by task, ``--version``, upload and remove on a store, load/unload/reload
refused there with the way to a server, suggestions as yyai commands, ``--help`` in yyai's
words, ``yyai archive`` with any rational scale and the input shape read from the model,
and errors that name the real problem. The command list and ``--version`` are read from
the real ``python -m yyai_kernel.cli``; the other commands run in-process (``clirun.py``).

The same commands on a running server are in ``test_cli_live.py``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import yyai

from yyai_kernel.archive import read_manifest
from yyai_kernel.cli.archive import _number, scaling_formula

ROOT = Path(__file__).resolve().parent.parent
ARCHIVES = ROOT / "model_archives"


def yyai_process(*args, check: bool = True, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    import os

    environment = {k: v for k, v in os.environ.items() if k not in ("YYAI_URL", "YYAI_TOKEN", "YYAI_STORE")}
    environment.update({"COLUMNS": "200", **(env or {})})
    result = subprocess.run([sys.executable, "-m", "yyai_kernel.cli", *map(str, args)], capture_output=True,
                            text=True, timeout=600, env=environment, cwd=cwd)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


@pytest.fixture
def store(tmp_path):
    folder = tmp_path / "store"
    folder.mkdir()
    shutil.copy(ARCHIVES / "digits-1.yyar", folder)
    return folder


# --- the command list --------------------------------------------------------------------------


def test_help_groups_the_commands_by_task_and_version_prints():
    out = yyai_process("--help").stdout
    panels = [(m.start(), m.group(1)) for m in re.finditer(r"╭─ (\w+) ─", out)]
    assert [name for _, name in panels] == ["Options", "Serve", "Look", "Change", "Measure"], out
    bounds = [start for start, _ in panels] + [len(out)]
    listed = {name: re.findall(r"^│ (\w+) ", out[bounds[i]:bounds[i + 1]], re.M) for i, (_, name) in enumerate(panels)}
    assert listed["Serve"] == ["ray", "serve"]
    assert listed["Look"] == ["inspect", "models"]
    assert listed["Change"] == ["archive", "default", "label", "load", "reload", "remove", "traffic", "unload",
                                "upload"]
    assert listed["Measure"] == ["evaluate", "predict"]
    assert re.fullmatch(r"yyai \d+\.\d+\.\d+\S*\n", yyai_process("--version").stdout)


def test_server_help_promises_a_live_change_only_where_there_is_one():
    for command in ("predict", "evaluate", "models"):
        text = flat(yyai(command, "--help").stdout)
        assert "--server" in text and "change is live" not in text, (command, text)
    for command in ("default", "label", "traffic", "upload", "remove", "load", "unload", "reload"):
        assert "the change is live at once" in flat(yyai(command, "--help").stdout), command


def test_serve_help_speaks_yyai_and_typer_words():
    text = yyai("serve", "--help").stdout
    for voila in ("Voilà", "Voila server", "notebook server", "Don't open the notebook", "<text>", "<integer>",
                  "--classic_tree", "--classic-tree"):
        assert voila not in text, voila
    rows = {row.split()[0]: row for row in map(flat, text.splitlines()) if row.startswith("--")}
    assert "127.0.0.1 (this machine only)" in rows["--host,"] and "<str>" in rows["--host,"]
    assert re.search(r"--port <int> The port to listen on", rows["--port"])
    assert re.search(r"--theme <str> The dashboard's colours: light or dark", rows["--theme"])


# --- upload, remove, load on a store folder ----------------------------------------------------


def test_upload_and_remove_on_a_store(store, tmp_path):
    added = yyai("upload", ARCHIVES / "digits-2.yyar", "--store", store).stdout
    assert f"added digits v2 to {store}" in added and "v2 is the default: the latest version" in added
    assert "yyai reload --server" in added
    assert (store / "digits-2.yyar").is_file()
    again = yyai("upload", ARCHIVES / "digits-2.yyar", "--store", store).stdout
    assert "already in" in again and "the same content: nothing changed" in again  # #23: a no-op, said

    pinned = yyai("default", "digits", "1", "--store", store).stdout
    assert "v1 is the default: pinned (v2 is newer); `yyai default digits --latest` follows the latest" in pinned
    assert "DELETE" not in pinned

    yyai("label", "digits", "stable", "1", "--store", store)
    refused = yyai("remove", "digits", "1", "--store", store, check=False)
    assert refused.returncode == 1 and "the label 'stable' point at it" in refused.stderr
    assert "`yyai label digits stable VERSION`" in refused.stderr and "/models" not in refused.stderr
    yyai("label", "digits", "stable", "--delete", "--store", store)
    removed = yyai("remove", "digits", "1", "--store", store).stdout
    assert f"removed digits v1 from {store}" in removed and "v2 is the default: the latest version" in removed
    assert not (store / "digits-1.yyar").exists()
    models = json.loads(yyai("models", "--store", store, "--json").stdout)
    assert [(m["name"], m["versions"]) for m in models["models"]] == [("digits", [2])]


def test_a_model_file_is_not_an_archive(store, tmp_path):
    model = tmp_path / "cnn.keras"
    model.write_bytes(b"PK")
    refused = yyai("upload", model, "--store", store, check=False)
    assert refused.returncode == 1
    assert "cnn.keras is a Keras model file, not a .yyar archive; pack the model into one with `yyai archive" \
        in refused.stderr


@pytest.mark.parametrize("command", [["load", "digits", "1"], ["unload", "digits"], ["reload"]])
def test_load_unload_reload_need_a_server(store, command):
    refused = yyai(*command, "--store", store, check=False)
    assert refused.returncode == 1
    assert "a store folder holds archives, not loaded models" in refused.stderr
    assert "--server URL --token T (or set YYAI_URL and YYAI_TOKEN)" in refused.stderr


def test_an_explicit_store_wins_over_yyai_url_but_not_over_server(store):
    via_env = yyai("models", "--store", store, "--json", env={"YYAI_URL": "http://127.0.0.1:9"})
    assert json.loads(via_env.stdout)["store"] == str(store)
    both = yyai("models", "--store", store, "--server", "http://127.0.0.1:9", check=False)
    assert both.returncode == 1 and "give --server or --store, not both" in both.stderr


# --- yyai archive ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text, value", [("1/127.5", 1 / 127.5), ("2/255", 2 / 255), ("0.0078125", 0.0078125),
                                         ("-1", -1.0), ("1/255", 1 / 255), (" 3 ", 3.0), ("1e-3", 0.001)])
def test_scales_are_any_rational_number(text, value):
    assert _number(text, "--scale") == pytest.approx(value, rel=1e-15)


@pytest.mark.parametrize("scale, offset, formula", [
    (1 / 127.5, -1.0, "x = pixel / 127.5 - 1"), (2 / 255, 0.0, "x = pixel / 127.5"), (1 / 255, 0.0, "x = pixel / 255"),
    (0.0078125, 0.5, "x = pixel / 128 + 0.5"), (1.0, 0.0, "x = pixel"), (0.3, -0.25, "x = pixel * 0.3 - 0.25"),
    (-1.0, 255.0, "x = -pixel + 255"),
])
def test_the_preprocessing_reads_as_a_person_writes_it(scale, offset, formula):
    assert scaling_formula(scale, offset) == formula


@pytest.fixture(scope="module")
def shaped_models(tmp_path_factory):
    """An RGB model that fixes its 8x8x3 input (.keras and .h5), and one that fixes no size."""
    import keras

    folder = tmp_path_factory.mktemp("shaped")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    rgb = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs)))
    rgb.save(folder / "rgb.keras")
    rgb.save(folder / "rgb.h5")
    inputs = keras.Input((None, None, 3))
    free = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(inputs)))
    free.save(folder / "free.keras")
    return folder


@pytest.mark.parametrize("member", ["rgb.keras", "rgb.h5"])
def test_archive_reads_the_input_shape_and_takes_mobilenet_scaling(shaped_models, tmp_path, member):
    out = yyai("archive", "--name", "flowers", "--version", 1, "--model", shaped_models / member, "--color", "rgb",
               "--scale", "1/127.5", "--offset", "-1", "--labels", "a,b,c", "-o", tmp_path).stdout
    assert f"input shape 8,8,3 read from {member}" in out
    assert "input: shape [8, 8, 3] float32 rgb, resize stretch, x = pixel / 127.5 - 1" in out
    spec = read_manifest(tmp_path / "flowers-1.yyar").input
    assert spec["shape"] == [8, 8, 3] and spec["scale"] == pytest.approx(1 / 127.5) and spec["offset"] == -1


def test_archive_input_shape_flag_covers_a_model_that_fixes_none(shaped_models, tmp_path):
    args = ["archive", "--name", "free", "--version", 1, "--model", shaped_models / "free.keras", "--color", "bgr",
            "--scale", "2/255", "--labels", "a,b,c", "-o", tmp_path]
    refused = yyai(*args, check=False)
    assert refused.returncode == 1
    assert "free.keras does not fix its input shape ((None, None, 3)); give it with --input-shape" in refused.stderr
    out = yyai(*args, "--input-shape", "16,16,3").stdout
    assert "read from" not in out and "shape [16, 16, 3] float32 bgr, resize stretch, x = pixel / 127.5" in out


def test_archive_says_what_is_wrong_with_a_model_file(models, tmp_path):
    fake = tmp_path / "fake.keras"
    fake.write_text("not a model\n")
    args = ["archive", "--name", "m", "--version", 1, "--input-shape", "8,8,1", "--labels", "a,b,c", "-o", tmp_path]
    text = yyai(*args, "--model", fake, check=False).stderr
    assert "fake.keras is not a Keras model: a .keras file is the zip archive that model.save('name.keras') " \
           "writes, and this file is not a zip archive" in text
    assert "not found" not in text.lower()
    lam = yyai(*args, "--name", "lam", "--model", models.lambda_keras, check=False)
    assert lam.returncode == 1
    assert "Lambda layer with Python code" in lam.stderr
    assert "if you trust its source, pass --trust (on a server: yyai serve --trust lam)" in lam.stderr


# --- yyai serve --------------------------------------------------------------------------------------


def test_serve_with_a_folder_suggests_store(tmp_path):
    (tmp_path / "model_archives").mkdir()
    refused = yyai("serve", "model_archives", check=False, cwd=tmp_path)
    assert refused.returncode == 2
    assert "to serve the archives in model_archives, give --store model_archives" in flat(refused.stderr)


def test_traffic_refusals_suggest_yyai_commands(store):
    shutil.copy(ARCHIVES / "digits-2.yyar", store)
    same = yyai("traffic", "digits", "--canary", "2:10", "--store", store, check=False)
    assert same.returncode == 1 and "already the default of 'digits'" in same.stderr
    assert "`yyai default digits VERSION`" in same.stderr and "PUT" not in same.stderr
    nothing = yyai("traffic", "digits", "--promote", "--store", store, check=False)
    assert nothing.returncode == 1 and "no canary or shadow to promote" in nothing.stderr
    assert "`yyai traffic digits --canary VERSION:PERCENT`" in nothing.stderr and "PUT" not in nothing.stderr
