"""The evaluation tests' reference: the demo sets' images scored with Keras run directly.

Shared by tests/test_evaluate.py (the library) and tests/test_evaluate_jobs.py (REST, the
CLI, the dashboard). The reference reads the images straight from the bundled zip
(zipfile + csv, not yyai's reader), preprocesses them with ``images.preprocess``, calls
each member model loaded with ``kerasload.load_member``, and scores with scikit-learn
(the oracle; yyai computes its scores with numpy).
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from yyai_kernel import archive
from yyai_kernel.archive import kerasload
from yyai_kernel.runtime import images

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "model_archives"
DIGITS_SET = "eval/digits-eval.zip"
COLOR_SET = "eval/colorfulness-eval.zip"
LABELS = [str(i) for i in range(10)]


def bundled_rows(archive_path: Path, arcname: str) -> tuple[list[tuple[str, str]], dict[str, bytes]]:
    """(file, label-or-target) rows and image bytes of a bundled set, read with zipfile and csv."""
    with zipfile.ZipFile(archive_path) as outer:
        inner = zipfile.ZipFile(io.BytesIO(outer.read(arcname)))
    rows = list(csv.reader(io.StringIO(inner.read("labels.csv").decode())))[1:]
    return [(f, v) for f, v in rows], {f: inner.read(f) for f, _ in rows}


def reference(archive_path: Path, files: list[str], data: dict[str, bytes]) -> dict[str, np.ndarray]:
    """Each member's output on `files` with the Keras model called directly, and their mean."""
    with archive.open_archive(archive_path) as opened:
        spec = opened.manifest.input
        x = np.stack([images.preprocess(data[f], spec) for f in files])
        outputs = {}
        for member in opened.manifest.members:
            model = kerasload.load_member(opened.member_path(member))
            outputs[member["name"]] = np.asarray(model(x, training=False))
    outputs["combined"] = np.mean([outputs[m["name"]] for m in opened.manifest.members], axis=0)
    return outputs


def digits_reference(store: Path) -> dict:
    """The bundled digits set (files, truth, bytes) and both versions' outputs on it."""
    rows, data = bundled_rows(store / "digits-2.yyar", DIGITS_SET)
    files = [f for f, _ in rows]
    truth = np.array([int(label) for _, label in rows])
    return {
        "files": files, "truth": truth, "data": data,
        1: reference(store / "digits-1.yyar", files, data),
        2: reference(store / "digits-2.yyar", files, data),
    }


def expected_disagreements(ref: dict, a: int = 1, b: int = 2) -> dict[str, tuple[str, str]]:
    """file -> (a's top-1, b's top-1) where the two versions' top-1 differ."""
    top_a = ref[a]["combined"].argmax(axis=1)
    top_b = ref[b]["combined"].argmax(axis=1)
    return {f: (str(x), str(y)) for f, x, y in zip(ref["files"], top_a, top_b) if x != y}


def check_classification(scores, truth: np.ndarray, probabilities: np.ndarray) -> None:
    """yyai's scores against scikit-learn's on the same outputs."""
    predicted = probabilities.argmax(axis=1)
    k = range(len(LABELS))
    assert scores.n == len(truth)
    assert scores.accuracy == pytest.approx(skm.accuracy_score(truth, predicted), abs=1e-12)
    assert np.array_equal(np.array(scores.confusion), skm.confusion_matrix(truth, predicted, labels=list(k)))
    for j, acc in enumerate(scores.top_k, start=1):
        assert acc == pytest.approx(skm.top_k_accuracy_score(truth, probabilities, k=j, labels=list(k)), abs=1e-12)
    assert len(scores.top_k) == 5
    p, r, f, s = skm.precision_recall_fscore_support(truth, predicted, labels=list(k), zero_division=0)
    assert [c.label for c in scores.per_class] == LABELS
    assert np.allclose([c.precision for c in scores.per_class], p)
    assert np.allclose([c.recall for c in scores.per_class], r)
    assert np.allclose([c.f1 for c in scores.per_class], f)
    assert [c.support for c in scores.per_class] == list(s)
    assert scores.macro_f1 == pytest.approx(skm.f1_score(truth, predicted, average="macro", zero_division=0))
