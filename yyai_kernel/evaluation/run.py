"""Evaluate one or more versions of a served model on a labelled set of images or table rows.

What: `evaluate(backend, name, versions, dataset)` sends the set's images through
`backend.predict_images` (a table set's rows through `backend.predict_inputs`) in
batches, so it measures exactly what is deployed, and returns an `Evaluation` (see
results.py): scores per version and per ensemble member, the items where each pair of
versions disagrees (with the row's features, for a table set), and one row per item.

The backend is any `yyai_kernel.plane.backend.Backend`: the in-process `LocalBackend` or
the HTTP `YyaiClient`; only its `describe`, `predict_images` and `predict_inputs` are used.

A table set's kind (classification or regression) is the first evaluated version's output
kind (see `LabelledSet.as_kind`). An image set goes with an image model and a table set
with a model that takes records; anything else is refused before anything is sent.

Bad items never fail the run. A row whose label the model does not know is left out
before anything is sent; an image that cannot be read from the set is left out when its
batch is read; a batch that the backend refuses with an ImageError (a table row's batch:
an InvalidInputError, such as a category outside the vocabulary) is retried item by item,
so only the bad item is left out. Every such item is listed with its
reason in `bad_items`, and every version is scored on the same remaining items so
that the scores compare. Errors that are not about one item (the model is not
loaded, the server is down) propagate: the run cannot go on without them fixed.

No locking here: one run calls the backend from its own thread, one batch at a time,
and the backend does its own locking.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import cast

import numpy as np

from yyai_kernel.errors import ImageError, InvalidInputError
from yyai_kernel.evaluation.metrics import classification_scores, regression_scores
from yyai_kernel.evaluation.results import (
    Disagreement,
    Evaluation,
    ItemResult,
    VersionPair,
    VersionResult,
)
from yyai_kernel.evaluation.sets import (
    BadItem,
    Item,
    LabelledSet,
    UnreadableItem,
    open_set,
)
from yyai_kernel.types.specs import InputKind, OutputKind, OutputSpec

DEFAULT_BATCH_SIZE = 64
# Regression: two versions disagree on an item when their answers differ by more than this
# share of the set's target range, unless a tolerance is given.
DEFAULT_TOLERANCE_SHARE = 0.05

Progress = Callable[[int, int], object]


@dataclass
class _Version:
    """What one evaluated version answers with, and the rows collected from it so far."""

    version: int
    output: OutputSpec
    members: list[str]
    rows: dict[str, tuple[dict[str, np.ndarray], np.ndarray | None]] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return list(self.output.labels)


def evaluate(
    backend,
    name: str,
    versions: Iterable[int | str | None] | int | str | None,
    dataset: LabelledSet | str | Path,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
    tolerance: float | None = None,
) -> Evaluation:
    """Score each of `versions` (one or several; None: the default) of model `name` on `dataset`.

    `dataset` is a LabelledSet, or a folder, .zip or .csv on this machine (see evalsets).

    `progress(done, total)` is called after each batch with the number of set items
    handled so far. `tolerance` (regression only) is the difference above which two
    versions disagree on an item; by default 5% of the set's target range. Raises
    InvalidInputError when the set does not suit the model (kind, outputs) or no item
    can be scored, and whatever the backend raises for reasons other than one image.
    """
    if batch_size < 1:
        raise InvalidInputError("batch_size must be at least 1.")
    versions = _as_list(versions)
    if not isinstance(dataset, LabelledSet):
        dataset = open_set(dataset)
    targets = _describe_all(backend, name, versions, dataset)
    dataset = dataset.as_kind(targets[0].output.kind)
    bad = list(dataset.problems)
    items = _known_items(dataset.items, targets, bad)
    total, done = len(dataset.items), len(dataset.items) - len(items)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        if dataset.table:
            keys = [item.key for item in chunk]
            for target in targets:
                _predict_rows(backend, name, target, dataset, keys, bad)
                keys = [key for key in keys if key in target.rows]
            done += len(chunk)
            if progress is not None:
                progress(done, total)
            continue
        images = _read_batch(dataset, chunk, bad)
        for target in targets:
            _predict_batch(backend, name, target, images, bad)
            images = {key: data for key, data in images.items() if key in target.rows}
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    scored = [item for item in items if all(item.key in t.rows for t in targets)]
    if not scored:
        raise InvalidInputError(f"No item of {dataset.description} could be scored; see the reasons: "
                                + "; ".join(f"{b.key}: {b.reason}" for b in bad[:3]))
    return _result(name, dataset, targets, scored, bad, tolerance)


def resolve_versions(backend, name: str, versions, dataset: LabelledSet) -> list[int]:
    """The distinct versions that ``versions`` name (None: the default), each checked against the
    set (its kind, images or rows): what a job checks before it is accepted, so a bad request
    fails at once."""
    return [target.version for target in _describe_all(backend, name, _as_list(versions), dataset)]


def _as_list(versions) -> list:
    return [versions] if versions is None or isinstance(versions, (int, str)) else list(versions)


def _describe_all(backend, name: str, versions, dataset: LabelledSet) -> list[_Version]:
    """Each distinct version's output spec and members, checked against the set: its kind (a
    table set's: the first version's), and images for an image model, rows for the others."""
    targets: list[_Version] = []
    kind = dataset.kind
    for requested in versions:
        description = backend.describe(name, requested)
        version = description.version
        if any(t.version == version for t in targets):
            continue
        output = description.output
        kind = kind or output.kind
        images = description.input.kind is InputKind.IMAGE
        if images == dataset.table:
            takes = "images" if images else "records (a table, a tensor)"
            holds = "table rows (a CSV of features)" if dataset.table else "images"
            raise InvalidInputError(f"Model {name!r} v{version} takes {takes}, but the set holds {holds}.")
        if output.kind is not kind:
            raise InvalidInputError(
                f"Model {name!r} v{version} is a {output.kind.value} model but the set is labelled for {kind.value}."
            )
        if kind is OutputKind.REGRESSION and output.width != 1:
            raise InvalidInputError(
                f"Model {name!r} v{version} has {output.width} regression outputs; a set's "
                "target column scores a model with exactly one."
            )
        targets.append(_Version(version, output, list(description.members)))
    if not targets:
        raise InvalidInputError("Name at least one version to evaluate.")
    return targets


def _known_items(items: tuple[Item, ...], targets: list[_Version], bad: list[BadItem]) -> list[Item]:
    """The items whose label every version knows; the others go to `bad` with the reason."""
    if not targets[0].output.classification:
        return list(items)
    known = []
    for item in items:
        strangers = [t.version for t in targets if item.truth not in t.labels]
        if strangers:
            versions = ", ".join(f"v{v}" for v in strangers)
            bad.append(BadItem(item.key, f"unknown label {item.truth!r}: the model ({versions}) has no such label"))
        else:
            known.append(item)
    return known


def _read_batch(dataset: LabelledSet, chunk: list[Item], bad: list[BadItem]) -> dict[str, bytes]:
    """The chunk's image bytes by key; an unreadable file goes to `bad`."""
    images = {}
    for key, data in dataset.read_many([item.key for item in chunk]).items():
        if isinstance(data, UnreadableItem):
            bad.append(BadItem(key, f"unreadable: {data}"))
        else:
            images[key] = data
    return images


def _predict_batch(backend, name: str, target: _Version, images: dict[str, bytes], bad: list[BadItem]) -> None:
    """Predict a batch on one version; on an ImageError, retry its items one at a time."""
    if not images:
        return
    keys = list(images)
    try:
        _store_rows(target, keys, backend.predict_images(name, [images[k] for k in keys], target.version))
        return
    except ImageError as error:
        if len(keys) == 1:
            bad.append(BadItem(keys[0], f"not a usable image: {error.message}"))
            return
    for key in keys:
        try:
            _store_rows(target, [key], backend.predict_images(name, [images[key]], target.version))
        except ImageError as error:
            bad.append(BadItem(key, f"not a usable image: {error.message}"))


def _predict_rows(backend, name: str, target: _Version, dataset: LabelledSet, keys: list[str],
                  bad: list[BadItem]) -> None:
    """Predict a batch of table rows on one version; when it is refused (a bad value in some row),
    retry its rows one at a time, so that only the bad rows are left out."""
    if not keys:
        return
    try:
        _store_rows(target, keys, backend.predict_inputs(name, dataset.records_of(keys), target.version))
        return
    except InvalidInputError as error:
        if len(keys) == 1:
            bad.append(BadItem(keys[0], f"not a usable row: {error.message}"))
            return
    for key in keys:
        try:
            _store_rows(target, [key], backend.predict_inputs(name, dataset.records_of([key]), target.version))
        except InvalidInputError as error:
            bad.append(BadItem(key, f"not a usable row: {error.message}"))


def _store_rows(target: _Version, keys: list[str], prediction) -> None:
    for i, key in enumerate(keys):
        members = {m: np.asarray(out[i], dtype=np.float64) for m, out in prediction.members.items()}
        combined = None if prediction.combined is None else np.asarray(prediction.combined[i], dtype=np.float64)
        target.rows[key] = (members, combined)


# --- scoring --------------------------------------------------------------------------


def _primary(target: _Version) -> str:
    """Whose output stands for the version: the combined one, else (combine 'each') the first member."""
    first = next(iter(target.rows.values()))
    return "combined" if first[1] is not None else target.members[0]


def _outputs(target: _Version, keys: list[str], who: str) -> np.ndarray:
    """[n, K] outputs of `who` ("combined" or a member) on the items `keys`, in order."""
    if who == "combined":
        return np.stack([cast(np.ndarray, target.rows[k][1]) for k in keys])  # a version with a combined output
    return np.stack([target.rows[k][0][who] for k in keys])


def _result(name, dataset, targets, scored, bad, tolerance) -> Evaluation:
    keys = [item.key for item in scored]
    classify = dataset.kind is OutputKind.CLASSIFICATION
    if classify:
        tolerance = None
    elif tolerance is None:
        truths = np.array([item.truth for item in scored], dtype=np.float64)
        tolerance = float(truths.max() - truths.min()) * DEFAULT_TOLERANCE_SHARE
    results: list[VersionResult] = []
    answers: list[list[str] | list[float]] = []
    probabilities: list[list[float | None]] = []
    for target in targets:
        who = _primary(target)
        outputs = _outputs(target, keys, who)
        members = {m: _scores(scored, target, _outputs(target, keys, m)) for m in target.members}
        results.append(VersionResult(target.version, who, _scores(scored, target, outputs),
                                     members if len(target.members) > 1 else {}))
        if classify:
            answers.append([target.labels[j] for j in outputs.argmax(axis=1)])
            probabilities.append([float(p) for p in outputs.max(axis=1)])
        else:
            answers.append([float(v) for v in outputs[:, 0]])
            probabilities.append([None] * len(keys))
    rows = tuple(
        ItemResult(item.key, item.truth, tuple(a[i] for a in answers), tuple(p[i] for p in probabilities))
        for i, item in enumerate(scored)
    )
    pairs = tuple(_pair(targets, rows, i, j, tolerance, dataset.rows) for i, j in combinations(range(len(targets)), 2))
    return Evaluation(name, dataset.kind, dataset.description, tuple(results), pairs, rows, tuple(bad), tolerance)


def _scores(scored: list[Item], target: _Version, outputs: np.ndarray):
    if target.output.classification:
        truth = np.array([target.labels.index(cast(str, item.truth)) for item in scored])
        return classification_scores(truth, outputs, target.labels)
    return regression_scores(np.array([item.truth for item in scored]), outputs[:, 0])


def _pair(targets, rows: tuple[ItemResult, ...], i: int, j: int, tolerance: float | None,
          inputs: dict[str, dict[str, str]] | None) -> VersionPair:
    def differ(a, b) -> bool:
        return a != b if tolerance is None else abs(a - b) > tolerance

    found = tuple(
        Disagreement(row.key, row.truth, row.predicted[i], row.predicted[j],
                     None if inputs is None else inputs[row.key])
        for row in rows
        if differ(row.predicted[i], row.predicted[j])
    )
    return VersionPair(targets[i].version, targets[j].version, found)
