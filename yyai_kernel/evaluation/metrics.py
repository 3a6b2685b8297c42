"""Scores of an evaluation, computed with numpy: classification, regression, residual plot.

What: `classification_scores(truth, probabilities, labels)` gives accuracy, top-k accuracy,
per-class precision, recall, F1 and support, and the confusion matrix (rows are the true
class, columns the predicted one, both in the model's label order).
`regression_scores(truth, predicted)` gives MAE, RMSE and R². `residual_plot` draws
residuals against predictions as PNG bytes.

Why numpy and not scikit-learn: these few formulas do not justify a heavy runtime
dependency; scikit-learn is a test extra and serves as the oracle in the tests. The
conventions follow scikit-learn's so that the two agree: a precision or recall whose
denominator is zero is 0, macro F1 averages the classes that occur in the truth or the
predictions, and R² of a constant truth is 1 for a perfect fit, else 0.
The plot uses matplotlib's object API with the Agg canvas, never pyplot, whose global
figure state is not thread-safe.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

MAX_TOP_K = 5


@dataclass(frozen=True)
class ClassScore:
    """Precision, recall, F1 and support (true items) of one class."""

    label: str
    precision: float
    recall: float
    f1: float
    support: int

    def to_json(self) -> dict:
        return {"label": self.label, "precision": self.precision, "recall": self.recall, "f1": self.f1,
                "support": self.support}

    @classmethod
    def from_json(cls, body: dict) -> ClassScore:
        return cls(str(body["label"]), float(body["precision"]), float(body["recall"]), float(body["f1"]),
                   int(body["support"]))


@dataclass(frozen=True)
class ClassificationScores:
    """Scores of one output on a labelled set; `confusion[t][p]` counts true t predicted as p."""

    n: int
    accuracy: float
    top_k: tuple[float, ...]  # top_k[k - 1]: the truth is among the k most probable labels
    macro_f1: float
    labels: tuple[str, ...]
    per_class: tuple[ClassScore, ...]
    confusion: tuple[tuple[int, ...], ...]

    def to_json(self) -> dict:
        return {
            "n": self.n, "accuracy": self.accuracy,
            "top_k": {str(k): acc for k, acc in enumerate(self.top_k, start=1)},
            "macro_f1": self.macro_f1, "labels": list(self.labels),
            "per_class": [c.to_json() for c in self.per_class],
            "confusion": [list(row) for row in self.confusion],
        }

    @classmethod
    def from_json(cls, body: dict) -> ClassificationScores:
        return cls(
            n=int(body["n"]), accuracy=float(body["accuracy"]),
            top_k=tuple(float(body["top_k"][str(k)]) for k in range(1, len(body["top_k"]) + 1)),
            macro_f1=float(body["macro_f1"]), labels=tuple(str(label) for label in body["labels"]),
            per_class=tuple(ClassScore.from_json(c) for c in body["per_class"]),
            confusion=tuple(tuple(int(c) for c in row) for row in body["confusion"]),
        )


@dataclass(frozen=True)
class RegressionScores:
    """Mean absolute error, root mean squared error and R² of one output."""

    n: int
    mae: float
    rmse: float
    r2: float

    def to_json(self) -> dict:
        return {"n": self.n, "mae": self.mae, "rmse": self.rmse, "r2": self.r2}

    @classmethod
    def from_json(cls, body: dict) -> RegressionScores:
        return cls(int(body["n"]), float(body["mae"]), float(body["rmse"]), float(body["r2"]))


Scores = ClassificationScores | RegressionScores


def scores_from_json(body: dict) -> Scores:
    """The scores a ``to_json()`` wrote: classification ones carry an accuracy."""
    return ClassificationScores.from_json(body) if "accuracy" in body else RegressionScores.from_json(body)


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """[k, k] counts of (true class, predicted class) pairs, both as indices 0..k-1."""
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (truth, predicted), 1)
    return counts


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, with 0 where den is 0 (scikit-learn's zero_division=0)."""
    out = np.zeros(len(num), dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def top_k_accuracy(truth: np.ndarray, probabilities: np.ndarray, k: int) -> float:
    """Share of rows whose true class is among the k highest scores (ties: lower index first)."""
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return float((order == truth[:, None]).any(axis=1).mean())


def classification_scores(truth: np.ndarray, probabilities: np.ndarray, labels) -> ClassificationScores:
    """Scores of `probabilities` ([n, K]) against `truth` (n class indices into `labels`)."""
    truth = np.asarray(truth, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    k = len(labels)
    counts = confusion_matrix(truth, probabilities.argmax(axis=1), k)
    hits = np.diag(counts).astype(np.float64)
    precision = _ratio(hits, counts.sum(axis=0).astype(np.float64))
    recall = _ratio(hits, counts.sum(axis=1).astype(np.float64))
    f1 = _ratio(2 * precision * recall, precision + recall)
    support = counts.sum(axis=1)
    present = (support > 0) | (counts.sum(axis=0) > 0)  # macro F1 averages these, as scikit-learn does
    per_class = tuple(
        ClassScore(str(label), float(p), float(r), float(f), int(s))
        for label, p, r, f, s in zip(labels, precision, recall, f1, support)
    )
    return ClassificationScores(
        n=len(truth),
        accuracy=float(hits.sum() / max(len(truth), 1)),
        top_k=tuple(top_k_accuracy(truth, probabilities, j) for j in range(1, min(MAX_TOP_K, k) + 1)),
        macro_f1=float(f1[present].mean()) if present.any() else 0.0,
        labels=tuple(str(label) for label in labels),
        per_class=per_class,
        confusion=tuple(tuple(int(c) for c in row) for row in counts),
    )


def regression_scores(truth: np.ndarray, predicted: np.ndarray) -> RegressionScores:
    """MAE, RMSE and R² of `predicted` against `truth` (both length n)."""
    truth = np.asarray(truth, dtype=np.float64)
    error = np.asarray(predicted, dtype=np.float64) - truth
    ss_res = float((error**2).sum())
    ss_tot = float(((truth - truth.mean()) ** 2).sum())
    if ss_tot > 0:
        r2 = 1.0 - ss_res / ss_tot
    else:  # a constant truth: scikit-learn's force_finite convention
        r2 = 1.0 if ss_res == 0 else 0.0
    return RegressionScores(
        n=len(truth),
        mae=float(np.abs(error).mean()),
        rmse=float(np.sqrt((error**2).mean())),
        r2=float(r2),
    )


def residual_plot(truth: npt.ArrayLike, predictions: Mapping[str, npt.ArrayLike], *, title: str = "") -> bytes:
    """PNG bytes: residual (predicted - true) against predicted, one series per entry."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    truth = np.asarray(truth, dtype=np.float64)
    for name, predicted in predictions.items():
        predicted = np.asarray(predicted, dtype=np.float64)
        axes.scatter(predicted, predicted - truth, s=12, alpha=0.6, label=name)
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("residual (predicted - true)")
    if title:
        axes.set_title(title)
    if len(predictions) > 1:
        axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
