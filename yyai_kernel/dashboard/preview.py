"""The Preview tab: pick a model, a version and its inputs; see what the version predicts.

What a version takes decides the inputs on offer (its manifest's input kind):

* images: a bundled sample of the picked version, the person's own uploads (one or several
  files), or, for models with small grayscale inputs such as the digits, a drawing
  (``drawpad.py``; the "Draw" choice appears only for them);
* a table (or several inputs): a form with one field per feature, the right widget for
  numbers and categories, pre-filled from the first row of the version's bundled sample
  CSV (``records.py``); the bundled rows themselves; or a CSV of many rows the person
  uploads, whose results show as a table beside the inputs;
* a tensor: a bundled sample or an uploaded ``.npy``/``.json``, drawn as a line plot (1-D)
  or a heat map (2-D).

Only the picked source's control shows. "Compare with" runs a second version on the same
inputs, side by side. "Explain" asks the backend for each member's explanation (Grad-CAM
heat maps over an image, ``?explain=gradcam``; integrated gradients per feature of a table,
``?explain=integrated_gradients``) and the results show it; ticking it with results on
screen runs the prediction again, explained.

A picked version that was never loaded ("available": in the store, not in memory) is
loaded before it predicts, with a note that says so while it loads and in the final
message, so that "Compare v2 / v1" simply works. A version that an operator unloaded, or
whose load failed, is never loaded behind anyone's back: picking it shows a "Load" button
at once, and Predict gets the answer REST gives (503), with that button; loading is then
the person's choice, and the button loads the version and runs the prediction again.

Uploaded files are checked one by one before anything is sent, so that a file that is not
an image is named in the message; a failed prediction never leaves an older one on screen.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import ipywidgets as W

from yyai_kernel.dashboard.drawpad import DrawingPad, pad_fits
from yyai_kernel.dashboard.records import FORM, SAMPLE, UPLOAD, RowInputs
from yyai_kernel.dashboard.render import (
    dropdown,
    error_text,
    file_button,
    message_html,
    model_options,
    show,
    subtle_html,
    version_options,
    with_classes,
)
from yyai_kernel.dashboard.results import ResultsPanel
from yyai_kernel.errors import ImageError, ModelNotReadyError
from yyai_kernel.types import (
    ExplainMethod,
    Given,
    InputKind,
    InputSpec,
    Prediction,
    ServerStatus,
    VersionState,
    explain_method_for,
)

if TYPE_CHECKING:
    from yyai_kernel.dashboard.shell import Dashboard

# States a person can load from; a version that is loading only needs a moment. Predict loads an
# "available" one itself (Dashboard.load_on_use); the others wait for the Load button.
LOADABLE = (VersionState.AVAILABLE, VersionState.UNLOADED, VersionState.FAILED)
DRAW = "draw"
SOURCES = [("Bundled sample", SAMPLE), ("My images", UPLOAD)]
SAMPLE_SUFFIXES = {InputKind.TABLE: (".csv", ".json"), InputKind.SEVERAL: (".csv", ".json"),
                   InputKind.TENSOR: (".npy", ".json", ".csv")}  # the samples each kind reads (images: any)
EXPLAIN = ExplainMethod.GRADCAM
EXPLAIN_WORDS = {ExplainMethod.GRADCAM: "Grad-CAM", ExplainMethod.INTEGRATED_GRADIENTS: "integrated gradients"}


class PreviewTab:
    """Pickers, images and the Predict button on the left; the results on the right."""

    key: ClassVar[str] = "preview"
    title: ClassVar[str] = "Preview"

    def __init__(self, shell: Dashboard):
        self.shell = shell
        self._to_load: tuple[str, list[int]] | None = None  # what the Load button loads
        self._state_note = ""  # the note about the picked versions' states last shown
        self.pad: DrawingPad | None = None  # built the first time "Draw" is picked
        self.spec: InputSpec | None = None  # the picked version's input
        self.kind = InputKind.IMAGE  # what it takes (images until a version is picked)
        self._build()
        guard, message = shell.guard, self.predict_message
        self.model_select.observe(guard(self._on_model, message), "value")
        self.version_select.observe(guard(self._on_version, message), "value")
        self.compare_select.observe(guard(self._on_compare, message), "value")
        self.source_toggle.observe(guard(lambda _: self._show_source(), message, observer=False), "value")
        self.explain_toggle.observe(guard(self._on_explain, message), "value")
        self.image_upload.observe(guard(self._on_files, message), "value")
        self.rows_upload.observe(guard(self._on_files, message), "value")
        self.predict_button.on_click(guard(self.predict, message, observer=False))
        self.load_button.on_click(guard(self.load_and_predict, message, observer=False))

    def _build(self) -> None:
        self.model_select = dropdown("Model", "yyai-model-select")
        self.version_select = dropdown("Version", "yyai-version-select")
        self.compare_select = dropdown("Compare with", "yyai-compare-select", options=[("—", 0)], value=0)
        self.source_toggle = with_classes(W.ToggleButtons(options=SOURCES, value=SAMPLE,
                                                          style={"button_width": "auto"}), "yyai-source")
        self.pad_box = with_classes(W.VBox(layout=W.Layout(display="none")), "yyai-pad-box")
        self.explain_toggle = with_classes(W.Checkbox(value=False, description="Explain (Grad-CAM)", indent=False,
                                                      tooltip="Show where each convolutional member looked"),
                                           "yyai-explain-toggle")
        self.sample_select = dropdown("Sample", "yyai-sample-select")
        self.sample_source = with_classes(W.HTML(), "yyai-sample-source")  # where the samples come from
        self.image_upload = file_button("yyai-image-upload", accept="image/*", multiple=True,
                                        tooltip="Choose one or more image files (PNG, JPEG, ...)",
                                        layout=W.Layout(width="180px", display="none"))
        self.upload_info = with_classes(W.HTML(layout=W.Layout(display="none")), "yyai-upload-info")
        self.rows = RowInputs()  # a table's form and rows, a tensor's files
        self.form, self.rows_upload, self.inputs_heading = self.rows.form, self.rows.upload, W.HTML()
        self.predict_button = with_classes(W.Button(
            description="Predict", button_style="primary", icon="play",
            tooltip="Run the picked version (and the compared one) on the images",
            layout=W.Layout(width="180px")), "yyai-predict-button")
        self.load_button = with_classes(W.Button(description="Load", icon="play-circle", button_style="info",
                                                 tooltip="Load the version so that it serves, then predict",
                                                 layout=W.Layout(width="180px", display="none")),
                                        "yyai-preview-load-button")
        self.predict_message = with_classes(W.HTML(), "yyai-predict-message")
        self.results = ResultsPanel()
        controls = with_classes(W.VBox([
            W.HTML("<b>What to run</b>"),
            self.model_select, self.version_select, self.compare_select,
            self.inputs_heading,
            self.source_toggle, self.sample_select, self.sample_source, self.image_upload, self.rows_upload,
            self.upload_info, self.form.widget, self.pad_box,
            W.HTML("&nbsp;"), self.explain_toggle, self.predict_button, self.predict_message, self.load_button,
        ], layout=W.Layout(width="320px", min_width="320px")), "yyai-panel", "yyai-controls")
        self.widget = W.HBox([controls, self.results.widget])

    # --- following the status -----------------------------------------------------------------

    def update(self, status: ServerStatus) -> None:
        before = (self.model_select.value, self.version_select.value)
        self.shell.set_options(self.model_select, model_options(status), preferred=self.shell.picked.name)
        model = status.models.get(self.model_select.value)
        options = version_options(model)
        self.shell.set_options(self.version_select, options, preferred=model.default if model else None)
        self.shell.set_options(self.compare_select, [("—", 0)] + options, preferred=0)
        self._label_predict_button()
        if before != (self.model_select.value, self.version_select.value):
            self._fit_sources()

    def shown(self) -> None:
        if self.shell.picked.follow(self.model_select):  # picked in another tab meanwhile
            self._on_model({"new": self.model_select.value})

    def _on_model(self, change) -> None:
        self.shell.picked(change["new"])
        model = self.shell.status.models.get(change["new"])
        options = version_options(model)
        self.shell.set_options(self.version_select, options, preferred=model.default if model else None, select=True)
        self.shell.set_options(self.compare_select, [("—", 0)] + options, preferred=0, select=True)
        self._label_predict_button()
        self.results.clear()
        show(self.load_button, False)
        self._note_states()
        self._fit_sources()

    def _on_version(self, change) -> None:
        self._label_predict_button()
        show(self.load_button, False)
        self._note_states()
        self._fit_sources()

    def _on_compare(self, change) -> None:
        self._label_predict_button()
        self._note_states()

    def _show_source(self) -> None:
        """Only the picked source's control shows: the Sample dropdown, an Upload button, the form or the pad."""
        source, images = self.source_toggle.value, self.kind is InputKind.IMAGE
        for widget in (self.sample_select, self.sample_source):
            show(widget, source == SAMPLE)
        show(self.image_upload, source == UPLOAD and images)
        show(self.rows_upload, source == UPLOAD and not images)
        show(self.upload_info, source == UPLOAD)
        show(self.form.widget, source == FORM)
        if source == DRAW and self.pad is None:
            self.pad = DrawingPad()
            self.pad_box.children = (self.pad.widget,)
            self._fit_sources()
        show(self.pad_box, source == DRAW)

    def _fit_sources(self) -> None:
        """The sources (and bundled samples) the picked version's input takes: images, with "Draw" for small
        one-channel ones (the pen fitted); a form and rows for a table; files for a tensor. And its Explain."""
        name, version = self.model_select.value, self.version_select.value
        try:
            spec = self.shell.describe(name, version).input if name and version else None
        except Exception:  # noqa: BLE001 - a version gone meanwhile: no pad, and the next refresh says why
            spec = None
        self.spec, self.kind = spec, spec.kind if spec is not None else InputKind.IMAGE
        fit_explain(self.explain_toggle, spec)
        if spec is None or self.kind is InputKind.IMAGE:
            self.inputs_heading.value = "<b>On which images</b>"
            fits = spec is not None and pad_fits(spec)
            self.shell.set_options(self.source_toggle, SOURCES + ([("Draw", DRAW)] if fits else []),
                                   preferred=SAMPLE)
            if fits and spec is not None and self.pad is not None:
                self.pad.set_input(spec)
        else:
            self.inputs_heading.value, options, preferred = self.rows.sources(self.shell.backend, name, version, spec)
            self.shell.set_options(self.source_toggle, options, preferred=preferred, select=True)
            self._show_source()
        self._load_samples()

    def _on_explain(self, change) -> None:
        """Ticked (or unticked) with results on screen: run them again, so that what shows matches the box."""
        if self.results.rows.children:
            self.predict()

    def _on_files(self, change) -> None:
        files = change["new"]
        if files:
            self.source_toggle.value = UPLOAD  # files came in: they are what to run
            self.upload_info.value = subtle_html("Uploaded: " + ", ".join(f["name"] for f in files))
        else:
            self.upload_info.value = ""

    def _label_predict_button(self) -> None:
        version, other = self.version_select.value, self.compare_select.value
        compare = other and other != version
        self.predict_button.description = f"Compare v{version} / v{other}" if compare else "Predict"

    def _load_samples(self) -> None:
        """List the bundled samples of the picked version (none if it bundles none)."""
        name, version = self.model_select.value, self.version_select.value
        options: list = []
        where, suffixes = "", SAMPLE_SUFFIXES.get(self.kind)
        if name and version:
            try:
                found = self.shell.backend.bundled(name, version)
                options = [(Path(s).name, s) for s in found.files if not suffixes or s.lower().endswith(suffixes)]
                where = found.where()
            except Exception as error:  # noqa: BLE001 - samples are optional
                self.predict_message.value = message_html("warn", f"No bundled samples: {error}")
        self.sample_source.value = subtle_html(f"samples {where}") if where else ""
        self.shell.set_options(self.sample_select, options)
        self.sample_select.disabled = not options
        if not options and self.source_toggle.value == SAMPLE and (self.image_upload.value or self.rows_upload.value):
            self.source_toggle.value = UPLOAD

    # --- predicting -----------------------------------------------------------------------------

    def picked(self) -> tuple[str, list[int]]:
        """The picked model and its versions: the picked one, then the compared one."""
        name, version, other = self.model_select.value, self.version_select.value, self.compare_select.value
        if not name or not version:
            raise ValueError("Pick a model and a version first.")
        return name, [version] + ([other] if other and other != version else [])

    def current_images(self) -> list[tuple[str, bytes]]:
        """The images to run: (name, bytes) of the uploads, the drawing or the picked sample."""
        if self.source_toggle.value == DRAW and self.pad is not None:  # Draw is offered only with a pad
            return [("drawing.png", self.pad.png())]
        if self.source_toggle.value == UPLOAD:
            files = self.image_upload.value
            if not files:
                raise ValueError("Upload one or more images first (or pick a bundled sample).")
            return [(f["name"], _checked_image(f["name"], bytes(f["content"]))) for f in files]
        name, version, sample = self.model_select.value, self.version_select.value, self.sample_select.value
        if not sample:
            raise ValueError(f"{name} v{version} bundles no sample images: pick \"My images\" and upload your own.")
        return [(Path(sample).name, self.shell.backend.sample(name, sample, version))]

    def predict(self, _button=None, *, done: str = "") -> dict[int, Prediction]:
        """Run the picked version (and the compared one) on the picked inputs; show the results.

        Returns ``{version: Prediction}``. A version that was never loaded is loaded first
        (``Dashboard.load_on_use``); one that an operator unloaded raises the backend's
        ModelNotReadyError, and the Load button appears. ``done`` starts the final message.
        """
        name, versions = self.picked()
        self.results.clear()  # a failure below must not leave an older prediction on screen
        show(self.load_button, False)
        self.predict_button.disabled = True
        try:
            self._say("busy", "Reading the inputs…")
            rows = self.kind is not InputKind.IMAGE
            if rows:  # records or tensors: (how to name them, what to send)
                source, given = self.rows.given(self.source_toggle.value, self.shell.backend, name, versions[0],
                                                self.sample_select.value)
            else:
                images = self.current_images()
            done += self._load_on_use(name, versions)
            predictions, doing = {}, "Predicting and explaining" if self.explain_toggle.value else "Predicting"
            for version in versions:
                self._say("busy", f"{doing} with {name} v{version}…")
                predictions[version] = self._predict_one(name, version, versions,
                                                         given if rows else [data for _, data in images])
            described = {v: self.shell.describe(name, v) for v in versions}
            if rows:
                self.results.show_rows(name, source, given, predictions, described)
            else:
                self.results.show(name, images, predictions, described)
            count, took = len(predictions[versions[0]]), "compared" if len(versions) > 1 else "predicted"
            count_text = f"{count} {'row' if rows else 'image'}{'s' if count > 1 else ''}"
            self._say("ok", f"{done}{count_text} {took} at {time.strftime('%H:%M:%S')}.".strip())
            return predictions
        finally:
            self.predict_button.disabled = False

    def _predict_one(self, name: str, version: int, versions: list[int], inputs: list[bytes] | Given) -> Prediction:
        method = explain_method_for(self.spec) if self.spec is not None else EXPLAIN
        explain = method.value if method is not None and self.explain_toggle.value else None
        try:
            if isinstance(inputs, list):
                return self.shell.backend.predict_images(name, inputs, version, explain=explain)
            return self.shell.backend.predict_inputs(name, inputs, version, explain=explain)
        except ModelNotReadyError as error:
            if self._offer_load(name, versions):  # the next step, in this page's words
                raise ModelNotReadyError(f"{error_text(error)} Press \"{self.load_button.description}\" below "
                                         "to load it here.") from error
            raise

    def _load_on_use(self, name: str, versions: list[int]) -> str:
        """Load the picked versions that were never loaded, saying so; the start of the final message."""
        started = time.perf_counter()
        missing = self.shell.load_on_use(name, versions, lambda text: self._say("busy", text))
        return f"Loaded {name} {_versions_text(missing)} in {time.perf_counter() - started:.1f} s. " if missing else ""

    def _offer_load(self, name: str, versions: list[int], model=None) -> list[int]:
        """Show the Load button for the picked versions that a person can load; returns them."""
        model = model if model is not None else self.shell.backend.status(name)
        loadable = [v for v in versions if v in model.versions and model.versions[v].state in LOADABLE]
        if loadable:
            self._to_load = (name, loadable)
            self.load_button.description = f"Load {_versions_text(loadable)}"
        show(self.load_button, bool(loadable))
        return loadable

    def _note_states(self) -> None:
        """A picked version that an operator unloaded (or that failed) shows its Load button at once."""
        name = self.model_select.value
        model = self.shell.status.models.get(name)
        if model is None or not self.version_select.value:
            return
        _, versions = self.picked()
        waiting = [v for v in versions if v in model.versions and model.versions[v].state in LOADABLE
                   and model.versions[v].state is not VersionState.AVAILABLE]
        note = ""
        if waiting:
            self._offer_load(name, waiting, model)
            states = ", ".join(f"v{v} is {model.versions[v].state.value}" for v in waiting)
            note = message_html("warn", f"{states}: press {self.load_button.description} to serve it, then predict.")
        else:
            show(self.load_button, False)
        if note or self.predict_message.value == self._state_note:  # never wipe what a prediction said
            self.predict_message.value = note
        self._state_note = note

    def load_and_predict(self, _button=None) -> dict[int, Prediction]:
        """The Load button: load the versions that did not serve, then predict again."""
        if self._to_load is None:
            raise ValueError("Nothing to load.")
        (name, versions), self._to_load = self._to_load, None
        show(self.load_button, False)
        started = time.perf_counter()
        for version in versions:
            self._say("busy", f"Loading {name} v{version}…")
            self.shell.backend.load(name, version)
        self.shell.refresh()  # the pickers and the table show the new state
        return self.predict(done=f"Loaded {name} {_versions_text(versions)} in {time.perf_counter() - started:.1f} s. ")

    def _say(self, kind: str, text: str) -> None:
        self.predict_message.value = message_html(kind, text)


def fit_explain(toggle: W.Checkbox, spec: InputSpec | None) -> None:
    """The Explain box for a version's input: named after the method that explains it, hidden for none."""
    method = explain_method_for(spec) if spec is not None else EXPLAIN
    toggle.description = f"Explain ({EXPLAIN_WORDS[method]})" if method else "Explain"
    show(toggle, method is not None)


def _versions_text(versions: list[int]) -> str:
    return " and ".join(f"v{v}" for v in versions)


def _checked_image(name: str, data: bytes) -> bytes:
    """The bytes of an upload, refused with its file name when they are not an image yyai reads."""
    from yyai_kernel.runtime.images import decode_image

    try:
        decode_image(data)
    except ImageError as error:
        raise type(error)(f"{name}: {error.message}") from None
    return data
