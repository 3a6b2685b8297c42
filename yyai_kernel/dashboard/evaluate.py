"""The Evaluate tab: score versions on a labelled set, look at the mistakes, promote the best.

A person picks a model, a set (one the archive bundles, or a zip they upload; for a
model that takes no image, a CSV of rows and the name of its truth column) and the
versions, and presses Run (a picked version never loaded is loaded first, with a note; one
that an operator unloaded is named, with where to load it). The backend runs it as a job
(``start_evaluation``: over REST when ``yyai serve`` shows the page, in-process in a
notebook); a thread of this tab follows the job and moves the progress bar. Then: the
scores side by side, the confusion matrix of a version as a heat map (a click on a cell
shows that cell's images), the gallery of the images where two versions disagree, the
items left out and why, a CSV download, and a button that makes the best version the
default (it says "v2 is the default" instead when it already is). The upload's help
shows only while the upload is picked. For a table set the galleries are tables of the
rows (their features, the truth and each version's answer).

The images (or rows) in the galleries come from the set this tab holds: the upload, or
the bundled set fetched once (``eval_set``). An upload travels over the page's websocket,
whose limit the server raises to its body limit (64 MiB by default).

Locking: one job at a time per tab; ``_job`` is set by the Run button and cleared by the
follower thread, and the Run button is disabled in between.
"""

from __future__ import annotations

import html
import threading
import time
from typing import TYPE_CHECKING, ClassVar

import ipywidgets as W

from yyai_kernel.dashboard import evalview as view
from yyai_kernel.dashboard.render import (
    dropdown,
    error_text,
    file_button,
    message_html,
    model_options,
    show,
    subtle_html,
    with_classes,
)
from yyai_kernel.errors import ModelNotReadyError
from yyai_kernel.evaluation.results import Evaluation, ItemResult
from yyai_kernel.evaluation.sets import LabelledSet, set_from_bytes
from yyai_kernel.types import InputKind, OutputKind, ServerStatus, VersionState

if TYPE_CHECKING:
    from yyai_kernel.dashboard.shell import Dashboard

BUNDLED, UPLOAD = "bundled", "upload"
POLL_S = 0.5
GALLERY = 48  # images shown at most per gallery


class EvaluateTab:
    """Model, set and versions; Run with progress; scores, heat map, galleries, CSV, promote."""

    key: ClassVar[str] = "evaluate"
    title: ClassVar[str] = "Evaluate"

    def __init__(self, shell: Dashboard):
        self.shell = shell
        self.result: Evaluation | None = None
        self.dataset: LabelledSet | None = None  # where the galleries' images come from
        self._upload: tuple[str, bytes] | None = None
        self._job = None
        self._build()
        guard, message = shell.guard, self.message
        self.model.observe(guard(self._on_model, message), "value")
        self.source.observe(lambda _: self._show_source(), "value")
        self.upload.observe(guard(self._on_upload, message), "value")
        self.run_button.on_click(guard(lambda _b: self.run(), message, observer=False))
        self.promote_button.on_click(guard(lambda _b: self.promote(), message, observer=False))
        self.cm_version.observe(guard(lambda _c: self._show_confusion(), message), "value")

    def _build(self) -> None:
        self.model = dropdown("Model", "yyai-eval-model")
        self.source = with_classes(W.ToggleButtons(options=[("Bundled set", BUNDLED), ("Upload a zip", UPLOAD)],
                                                   value=BUNDLED, style={"button_width": "136px"}), "yyai-eval-source")
        self.bundled = dropdown("Set", "yyai-eval-set")
        self.upload = file_button("yyai-eval-upload", accept=".zip,.csv", multiple=False,
                                  tooltip="A zip with one folder per class, or labels.csv (file,label); for a "
                                  "table model, a CSV of its features and the truth",
                                  layout=W.Layout(width="180px", display="none"))
        self.target = with_classes(W.Text(description="Truth column", placeholder="label (or target)",
                                          style={"description_width": "100px"},
                                          layout=W.Layout(width="290px", display="none")), "yyai-eval-target")
        self.upload_info = with_classes(W.HTML(), "yyai-eval-upload-info")
        self.versions = with_classes(W.SelectMultiple(description="Versions", rows=4, layout=W.Layout(width="290px"),
                                                      style={"description_width": "100px"}), "yyai-eval-versions")
        self.run_button = with_classes(W.Button(description="Run", icon="play", button_style="primary",
                                                tooltip="Score the picked versions on the set",
                                                layout=W.Layout(width="180px")), "yyai-eval-run")
        self.progress = with_classes(W.IntProgress(value=0, min=0, max=1, layout=W.Layout(width="290px")),
                                     "yyai-eval-progress")
        self.message = with_classes(W.HTML(), "yyai-eval-message")
        self.scores = with_classes(W.HTML(), "yyai-eval-scores")
        self.promote_button = with_classes(W.Button(icon="star", layout=W.Layout(width="auto", display="none")),
                                           "yyai-eval-promote")
        self.download = with_classes(W.HTML(), "yyai-eval-download")
        self.cm_version = with_classes(W.ToggleButtons(options=[], style={"button_width": "60px"}),
                                       "yyai-eval-cm-version")
        self.cm_box = with_classes(W.VBox(), "yyai-eval-confusion")
        self.cell_box = with_classes(W.VBox(), "yyai-eval-cell")
        self.disagree_box = with_classes(W.VBox(), "yyai-eval-disagreements")
        self.bad = with_classes(W.HTML(), "yyai-eval-bad")
        self.upload_help = with_classes(W.HTML(subtle_html(
            "A zip with one folder per class, or a labels.csv with file,label (or file,target for regression); "
            "up to the server's body limit (64 MB by default) through this page, larger sets with yyai evaluate "
            "or REST."), layout=W.Layout(display="none")), "yyai-eval-upload-help")
        self.versions_hint = with_classes(W.HTML(subtle_html(
            "Ctrl-click (⌘-click on a Mac) picks several versions; Shift-click picks a range.")),
            "yyai-eval-versions-hint")
        controls = with_classes(W.VBox([
            W.HTML("<b>Which model and set</b>"), self.model, self.source, self.bundled,
            W.HBox([self.upload, self.upload_info]), self.upload_help, self.target,
            W.HTML("<b>Which versions</b>"), self.versions, self.versions_hint, self.run_button, self.progress,
            self.message,
        ], layout=W.Layout(width="330px", flex="0 0 auto")), "yyai-panel", "yyai-controls")
        self.results = with_classes(W.VBox([
            self.scores, W.HBox([self.promote_button, self.download]),
            W.HTML("<b>Confusion matrix</b> <span class='yyai-subtle'>(click a cell for its images)</span>"),
            self.cm_version, self.cm_box, self.cell_box, self.disagree_box, self.bad,
        ], layout=W.Layout(display="none", flex="1 1 auto")), "yyai-panel", "yyai-eval-results")
        self.widget = W.VBox([W.HTML(view.EVAL_CSS), W.HBox([controls, self.results])])

    # --- following the status -------------------------------------------------------------------

    def update(self, status: ServerStatus) -> None:
        self.shell.set_options(self.model, model_options(status), preferred=self.shell.picked.name)
        self._sync_versions(status)
        self._sync_promote()

    def shown(self) -> None:
        if self.shell.picked.follow(self.model):  # picked in another tab meanwhile
            self._sync_versions(self.shell.status)
        self._sync_sets()

    def _on_model(self, _change) -> None:
        self.shell.picked(self.model.value)
        self._sync_versions(self.shell.status)
        self._sync_sets()

    def _sync_versions(self, status: ServerStatus) -> None:
        model = status.models.get(self.model.value)
        options = [] if model is None else [
            (f"v{n} ({'default, ' if model.default == n else ''}{v.state.value})", n)
            for n, v in sorted(model.versions.items())]
        if [value for _, value in options] == [value for _, value in self.versions.options]:
            if list(self.versions.options) != options:
                with self.shell.quiet():
                    kept = self.versions.value
                    self.versions.options = options
                    self.versions.value = kept
            return
        ready = tuple(n for n, v in sorted(model.versions.items()) if v.state is VersionState.READY) if model else ()
        with self.shell.quiet():
            self.versions.options = options
            self.versions.value = ready or tuple(value for _, value in options[-1:])

    def _sync_sets(self) -> None:
        """The sets the model's default version bundles; none: offer the upload."""
        name = self.model.value
        sets = self.shell.backend.eval_sets(name) if name else []
        self.shell.set_options(self.bundled, [(s.rsplit("/", 1)[-1], s) for s in sets])
        if not sets and self.source.value == BUNDLED:
            self.source.value = UPLOAD
        self._show_source()

    def _show_source(self) -> None:
        bundled = self.source.value == BUNDLED
        table = self._takes_rows()
        show(self.bundled, bundled)
        show(self.upload, not bundled)
        show(self.upload_info, not bundled)
        show(self.upload_help, not bundled)  # the set's format matters only to an upload
        show(self.target, table and not bundled)
        upload = "Upload a CSV" if table else "Upload a zip"
        if self.source.options[1][0] != upload:
            with self.shell.quiet():
                value, self.source.options = self.source.value, [("Bundled set", BUNDLED), (upload, UPLOAD)]
                self.source.value = value
        (self.upload.add_class if table else self.upload.remove_class)("yyai-eval-upload-csv")
        self.upload_help.value = subtle_html(
            "A CSV with a header: the model's features, and the truth in the column named below (default label, "
            "else target); up to the server's body limit through this page." if table else
            "A zip with one folder per class, or a labels.csv with file,label (or file,target for regression); "
            "up to the server's body limit (64 MB by default) through this page, larger sets with yyai evaluate "
            "or REST.")

    def _takes_rows(self) -> bool:
        """Whether the picked model's default version takes records (a table set) rather than images."""
        name = self.model.value
        model = self.shell.status.models.get(name) if name else None
        if model is None or model.default is None:
            return False
        try:
            return self.shell.describe(name, model.default).input.kind is not InputKind.IMAGE
        except Exception:  # noqa: BLE001 - a version gone meanwhile: offer the zip, the next refresh says why
            return False

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        self._upload = (files[0]["name"], bytes(files[0]["content"]))
        self.upload_info.value = subtle_html(f"{self._upload[0]} ({len(self._upload[1]) / 1e6:,.1f} MB)")
        with self.shell.quiet():
            self.upload.value = ()  # so that the same file can be chosen again

    # --- running ----------------------------------------------------------------------------------

    def run(self) -> None:
        """Start the job and a thread that follows it (errors from the start show at once)."""
        name, versions = self.model.value, list(self.versions.value)
        if not name or not versions:
            raise ValueError("Pick a model and at least one version first.")
        self.shell.load_on_use(name, versions, lambda text: setattr(self.message, "value", message_html("busy", text)))
        try:
            job, dataset = self._start(name, versions)
        except ModelNotReadyError as error:  # unloaded by an operator, or failed: loading it is a choice
            raise ModelNotReadyError(f"{error_text(error)} Load it in the Manage tab (\"Load version\"), "
                                     "then press Run again.") from error
        self._job, self.dataset = job, dataset
        self.run_button.disabled = True
        self.progress.bar_style, self.progress.value, self.progress.max = "info", 0, max(job.total, 1)
        self.message.value = message_html("busy", f"Evaluating {name} {', '.join(f'v{v}' for v in job.versions)} "
                                                  f"on {job.total} items…")
        threading.Thread(target=self._follow, args=(job,), name="yyai-eval-follow", daemon=True).start()

    def _start(self, name: str, versions: list[int]):
        """The job on the picked set, and the set itself (the galleries' images)."""
        backend = self.shell.backend
        if self.source.value == UPLOAD:
            if self._upload is None:
                raise ValueError("Upload a set first, or pick a bundled one.")
            filename, data = self._upload
            target = self.target.value.strip() or None if self._takes_rows() else None
            dataset = set_from_bytes(data, description=filename, target=target)  # a bad set is named at once
            job = backend.start_evaluation(name, versions, data, target=target)
        else:
            if not self.bundled.value:
                raise ValueError(f"{name}'s archive bundles no labelled set: upload one.")
            job = backend.start_evaluation(name, versions, bundled=self.bundled.value)
            dataset = set_from_bytes(backend.eval_set(name, self.bundled.value), description=self.bundled.value)
        return job, dataset

    def _follow(self, job) -> None:
        try:
            while not job.state.finished:
                time.sleep(POLL_S)
                job = self.shell.backend.evaluation(job.id)
                self.progress.max, self.progress.value = max(job.total, 1), job.done
            if job.error is not None:
                raise job.error.exception()
            self.show_result(job.evaluation())
            self.progress.bar_style = "success"
        except Exception as error:  # noqa: BLE001 - a thread's failure must reach the page
            self.progress.bar_style = "danger"
            self.message.value = message_html("error", f"The evaluation failed: {error_text(error)}")
        finally:
            self._job = None
            self.run_button.disabled = False

    # --- the result ---------------------------------------------------------------------------------

    def show_result(self, result: Evaluation) -> None:
        self.result = result
        self.message.value = message_html("ok", view.summary_text(result))
        self.scores.value = view.scores_html(result)
        self.download.value = view.csv_link_html(result, f"{result.model}-evaluation.csv")
        self._sync_promote()
        with self.shell.quiet():
            self.cm_version.options = [(f"v{v.version}", v.version) for v in result.versions]
            self.cm_version.value = view.better(result).version
        self._show_confusion()
        self.cell_box.children = ()
        self.disagree_box.children = [self._gallery(
            f"v{pair.a} and v{pair.b} disagree on {len(pair.disagreements)} items",
            _items_among(result, pair.keys()), "yyai-eval-disagreement")
            for pair in result.pairs]
        self.bad.value = view.bad_items_html(result)
        show(self.results, True)

    def _show_confusion(self) -> None:
        result = self.result
        if result is None or self.cm_version.value is None:
            return
        if result.kind is not OutputKind.CLASSIFICATION:
            self.cm_box.children = [W.Image(value=result.residual_plot(), format="png")]
            show(self.cm_version, False)
            return
        show(self.cm_version, len(result.versions) > 1)
        self.cm_box.children = [view.confusion_grid(result, self.cm_version.value, self.show_cell)]

    def show_cell(self, truth: str, predicted: str) -> None:
        """The images of one cell of the shown version's confusion matrix."""
        version = self.cm_version.value
        if self.result is None:
            return
        items = self.result.cell(version, truth, predicted)
        self.cell_box.children = [self._gallery(
            f"v{version}: true {truth}, predicted {predicted} ({len(items)} image{'s' if len(items) != 1 else ''})",
            items, "yyai-eval-cell-item")]

    def _gallery(self, title: str, items: list[ItemResult], css_class: str) -> W.Widget:
        shown = items[:GALLERY]
        result = self.result
        if self.dataset is not None and self.dataset.rows is not None and result is not None:  # a table set: rows
            more = f" (the first {GALLERY})" if len(items) > GALLERY else ""
            return W.VBox([W.HTML(f"<b>{html.escape(title)}</b>{more}"),
                           with_classes(W.HTML(view.rows_html(result, shown, self.dataset.rows)), css_class,
                                        "yyai-eval-rows")])
        images = self.dataset.read_many([item.key for item in shown]) if self.dataset is not None else {}
        thumbs = [view.thumb(image, view.item_caption(result, item), css_class)
                  for item in shown if result is not None and isinstance(image := images.get(item.key), bytes)]
        more = f" (the first {GALLERY})" if len(items) > GALLERY else ""
        return W.VBox([W.HTML(f"<b>{html.escape(title)}</b>{more}"),
                       with_classes(W.HBox(thumbs), "yyai-eval-gallery")])

    # --- promoting ----------------------------------------------------------------------------------

    def _sync_promote(self) -> None:
        if self.result is None:
            return
        best = view.better(self.result).version
        model = self.shell.status.models.get(self.result.model)
        is_default = model is not None and model.default == best  # pinned or not: nothing to make
        self.promote_button.description = f"v{best} is the default" if is_default else f"Make v{best} the default"
        self.promote_button.disabled = is_default
        self.promote_button.button_style = "" if is_default else "warning"
        show(self.promote_button, len(self.result.versions) > 1 or not is_default)

    def promote(self) -> None:
        """Make the best-scoring version the default (pinned), as the Manage tab would."""
        result = self.result
        if result is None:
            return
        best = view.better(result).version
        status = self.shell.backend.set_default(result.model, best)
        self.shell.refresh()
        self._sync_promote()
        self.message.value = message_html("ok", f"Promoted v{best} of {result.model}: {status.default_reason}.")




def _items_among(result: Evaluation, keys: set[str]) -> list[ItemResult]:
    """The result's items whose key is in ``keys`` (one set per pair, not one per item)."""
    return [item for item in result.items if item.key in keys]
