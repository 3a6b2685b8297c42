"""The Manage tab: reload, load, unload, promote, pin or unpin, delete, and install archives.

Every button is an :class:`Action`: its look, what it says while it runs, the one backend
call it makes and the message it ends with. :meth:`ManageTab.run` runs any of them the
same way (busy message, buttons disabled, a refresh, then the message), so an action is
one entry in this module, never a string looked up in parallel tables.

The "Follow the latest version" switch shows whether the model is pinned: ticking it
forgets the pin (``follow_latest``), unticking it pins the current default. Messages after
a reload, an install or a change of default say which version is the default and why
(``ModelStatus.default_reason``, ``InstallResult.message``). Deleting a version removes its
archive from the store, so it asks for a confirmation first.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import ipywidgets as W

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
from yyai_kernel.types import InstallResult, ModelRemoved, ModelStatus, ServerStatus

if TYPE_CHECKING:
    from yyai_kernel.dashboard.shell import Dashboard

KERAS_FILES = (".keras", ".h5", ".hdf5")  # a model a person may mistake for an archive
# names of temporary copies of an uploaded archive (the data plane's, and the server's spool files)
TEMP_UPLOAD_NAME = re.compile(r"\b(?:upload|upload-[A-Za-z0-9_]+)\.(?:yyar|part)\b")


@dataclass(frozen=True)
class Action:
    """One management action: a button, its busy line, its backend call and its final message."""

    key: str  # the button's CSS class is yyai-<key>-button
    label: str
    icon: str
    tooltip: str
    busy: str  # formatted with name and version
    call: Callable[[Any, str, int | None], Any]  # (backend, name, version) -> result
    done: Callable[[str, int | None, Any, float], str]  # (name, version, result, seconds) -> message
    needs_version: bool = True


RELOAD = Action(
    "reload", "Reload model", "refresh", "Re-read the store and reload this model", "Reloading {name}…",
    lambda backend, name, _v: backend.reload(name),
    lambda name, _v, status, took: f"Reloaded {name} in {took:.1f} s; {status.default_reason}.",
    needs_version=False)
LOAD = Action(
    "load", "Load version", "play-circle", "Load this version so that it can serve", "Loading {name} v{version}…",
    lambda backend, name, version: backend.load(name, version),
    lambda name, version, _s, took: f"Loaded {name} v{version} in {took:.1f} s.")
DEFAULT = Action(
    "default", "Make default", "star", "Serve this version when a request names no version (pinned)",
    "Making v{version} the default of {name}…",
    lambda backend, name, version: backend.set_default(name, version),
    lambda name, version, _s, _t: f"v{version} is now the default of {name} (pinned); "
                                  "tick \"Follow the latest version\" to undo the pin.")
UNLOAD = Action(
    "unload", "Unload version", "stop", "Stop serving this version; its archive stays in the store",
    "Unloading {name} v{version}…",
    lambda backend, name, version: backend.unload(name, version),
    lambda name, version, _s, _t: f"Unloaded {name} v{version}; its archive stays in the store.")
DELETE = Action(
    "delete", "Delete version…", "trash", "Unload this version and delete its archive from the store",
    "Deleting {name} v{version}…",
    lambda backend, name, version: backend.remove(name, version, purge=True),
    lambda name, version, result, _t: (
        f"Deleted {name} v{version}; {name} has no versions left." if isinstance(result, ModelRemoved)
        else f"Deleted {name} v{version} from the store; {result.default_reason}."))
PIN = Action(
    "pin", "Pin the default", "", "", "Pinning the default of {name}…",
    lambda backend, name, _v: backend.set_default(name, backend.status(name).default),  # the default it has now
    lambda name, _v, status, _t: f"{status.default_reason}; a new version of {name} will not take over.",
    needs_version=False)
FOLLOW = Action(
    "follow", "Follow the latest version", "", "", "Forgetting the pin of {name}…",
    lambda backend, name, _v: backend.follow_latest(name),
    lambda name, _v, status, _t: f"{name} follows its latest version again; {status.default_reason}.",
    needs_version=False)
DIRECT = (RELOAD, LOAD, DEFAULT, UNLOAD)  # a click runs these; DELETE asks first
BUTTONS = DIRECT + (DELETE,)


class ManageTab:
    """A model and one of its versions, the action buttons, and the archive installer."""

    key: ClassVar[str] = "manage"
    title: ClassVar[str] = "Manage"

    def __init__(self, shell: Dashboard):
        self.shell = shell
        self._pending_delete: tuple[str, int] | None = None  # what the confirmation would delete
        self._build()
        guard, message = shell.guard, self.manage_message
        self.manage_model.observe(guard(self._on_model, message), "value")
        self.manage_version.observe(guard(self._on_version, message), "value")
        self.follow_latest.observe(guard(lambda c: self.run(FOLLOW if c["new"] else PIN), message), "value")
        for action in DIRECT:
            self.buttons[action].on_click(guard(lambda _b, a=action: self.run(a), message, observer=False))
        self.delete_button.on_click(guard(lambda _b: self._ask_delete(), message, observer=False))
        self.confirm_button.on_click(guard(lambda _b: self._confirmed(), message, observer=False))
        self.cancel_button.on_click(guard(lambda _b: self._hide_confirmation(), message, observer=False))
        self.archive_upload.observe(guard(self._on_archive, self.archive_message), "value")

    def _build(self) -> None:
        self.manage_model = dropdown("Model", "yyai-manage-model")
        self.manage_version = dropdown("Version", "yyai-manage-version")
        self.follow_latest = with_classes(W.Checkbox(description=FOLLOW.label, indent=False,
                                                     tooltip="Unticked: the default stays pinned"),
                                          "yyai-follow-latest")
        self.default_reason = with_classes(W.HTML(), "yyai-default-reason")
        self.buttons = {a: with_classes(W.Button(description=a.label, icon=a.icon, tooltip=a.tooltip,
                                                 layout=W.Layout(width="170px")), f"yyai-{a.key}-button")
                        for a in BUTTONS}
        self.reload_button, self.load_button, self.default_button, self.unload_button, self.delete_button = (
            self.buttons[a] for a in BUTTONS)
        self.confirm_text = W.HTML()
        self.confirm_button = with_classes(W.Button(description="Delete", icon="trash", button_style="danger"),
                                           "yyai-confirm-delete")
        self.cancel_button = with_classes(W.Button(description="Cancel"), "yyai-cancel-delete")
        self.confirm_box = with_classes(W.VBox([self.confirm_text, W.HBox([self.confirm_button, self.cancel_button])],
                                               layout=W.Layout(display="none")), "yyai-confirm", "yyai-panel")
        self.manage_message = with_classes(W.HTML(), "yyai-manage-message")
        self.archive_upload = file_button("yyai-archive-upload", accept=".yyar", multiple=False, icon="plus",
                                          tooltip="Choose a .yyar model archive", layout=W.Layout(width="170px"))
        self.archive_progress = with_classes(W.IntProgress(value=0, min=0, max=3, layout=W.Layout(
            width="290px", visibility="hidden")), "yyai-archive-progress")
        self.archive_message = with_classes(W.HTML(), "yyai-archive-message")
        self.promote_toggle = with_classes(W.ToggleButtons(
            options=[("Server's rule", "auto"), ("Make it the default", "promote"), ("Stage it", "stage")],
            value="auto", tooltips=["A new version of a pinned, labelled or policy-routed model is staged; others "
                                    "follow the latest.", "The new version becomes the default (pinned).",
                                    "The new version serves by its number; the default stays."],
            style={"button_width": "auto"}), "yyai-promote-toggle")
        self.install_label = with_classes(W.Text(placeholder="label (optional)", layout=W.Layout(width="170px")),
                                          "yyai-install-label")
        self.widget = W.VBox([
            with_classes(W.VBox([
                W.HTML("<b>A model and one of its versions</b>"),
                self.manage_model, self.follow_latest, self.default_reason, self.manage_version,
                W.HBox([self.reload_button, self.load_button]),
                W.HBox([self.default_button, self.unload_button]),
                W.HBox([self.delete_button]), self.confirm_box,
                self.manage_message,
            ]), "yyai-panel"),
            with_classes(W.VBox([
                W.HTML("<b>Install an archive</b> <span class='yyai-subtle'>(verified, added to the store, "
                       "loaded; a new version of a pinned, labelled or policy-routed model is staged until "
                       "promoted)</span>"),
                W.HBox([self.promote_toggle, self.install_label]),
                W.HBox([self.archive_upload, self.archive_progress]),
                self.archive_message,
            ]), "yyai-panel"),
        ])

    # --- following the status -----------------------------------------------------------------

    def update(self, status: ServerStatus) -> None:
        self.shell.set_options(self.manage_model, model_options(status), preferred=self.shell.picked.name)
        self._sync_versions(status)

    def shown(self) -> None:
        if self.shell.picked.follow(self.manage_model):  # picked in another tab meanwhile
            self._on_model(None)

    def _model(self) -> ModelStatus | None:
        return self.shell.status.models.get(self.manage_model.value)

    def _sync_versions(self, status: ServerStatus, *, select: int | None = None) -> None:
        model = status.models.get(self.manage_model.value)
        self.shell.set_options(self.manage_version, version_options(model),
                               preferred=select or (model.default if model else None), select=select is not None)
        with self.shell.quiet():
            self.follow_latest.value = model is not None and not model.pinned
        self.default_reason.value = subtle_html(model.default_reason) if model else ""
        self._sync_buttons()

    def _sync_buttons(self) -> None:
        """"Make default" stands out only when the picked version is not the default already."""
        model, version = self._model(), self.manage_version.value
        is_default = model is not None and version is not None and model.default == version
        self.default_button.button_style = "" if is_default else "warning"
        pinned = is_default and model is not None and model.pinned
        self.default_button.disabled = pinned
        self.default_button.tooltip = ("This version is the default (pinned)" if pinned
                                       else DEFAULT.tooltip)

    def _on_model(self, change) -> None:
        self.shell.picked(self.manage_model.value)
        self._hide_confirmation()
        self._sync_versions(self.shell.status)

    def _on_version(self, change) -> None:
        self._hide_confirmation()
        self._sync_buttons()

    # --- actions ------------------------------------------------------------------------------

    def run(self, action: Action) -> str:
        """Run one action on the picked model (and version); returns the final message.

        Shows a busy message while it runs and the final message after. Errors propagate
        (the button's guard shows them).
        """
        name, version = self.manage_model.value, self.manage_version.value
        if not name:
            raise ValueError("Pick a model first.")
        if action.needs_version and not version:
            raise ValueError("Pick a version first.")
        self.manage_message.value = message_html("busy", action.busy.format(name=name, version=version))
        for button in self.buttons.values():
            button.disabled = True
        started = time.perf_counter()
        try:
            result = action.call(self.shell.backend, name, version)
        finally:
            for button in self.buttons.values():
                button.disabled = False
            self.shell.forget_descriptions()
            self.shell.refresh()
        done = action.done(name, version, result, time.perf_counter() - started)
        self.manage_message.value = message_html("ok", done)
        return done

    def _ask_delete(self) -> None:
        """The Delete button: ask for a confirmation, naming what would be deleted."""
        name, version = self.manage_model.value, self.manage_version.value
        if not name or not version:
            raise ValueError("Pick a model and a version first.")
        self._pending_delete = (name, version)
        self.confirm_text.value = message_html(
            "warn", f"Delete {name} v{version} from the store? Its archive file is removed from the "
                    "server's folder; this cannot be undone.")
        self.confirm_button.description = f"Delete v{version}"
        show(self.confirm_box, True)

    def _hide_confirmation(self) -> None:
        self._pending_delete = None
        show(self.confirm_box, False)

    def _confirmed(self) -> str:
        """The confirmation's Delete button: delete what the question named, if it is still picked."""
        asked, picked = self._pending_delete, (self.manage_model.value, self.manage_version.value)
        self._hide_confirmation()
        if asked != picked:
            raise ValueError("The picked version changed since you pressed Delete; press it again.")
        return self.run(DELETE)

    # --- installing ---------------------------------------------------------------------------

    def _on_archive(self, change) -> None:
        files = change["new"]
        if not files:
            return
        try:
            self.install_archive(files[0]["name"], bytes(files[0]["content"]))
        except Exception:  # noqa: BLE001 - install_archive already showed the message
            pass
        finally:
            with self.shell.quiet():
                self.archive_upload.value = ()  # so that the same file can be chosen again

    def install_archive(self, filename: str, data: bytes) -> InstallResult:
        """Install an uploaded archive, with progress and a final message; select what it installed.

        Any failure is shown in the page (red bar and message) and re-raised.
        """
        progress, message = self.archive_progress, self.archive_message
        progress.layout.visibility = "visible"
        progress.bar_style, progress.value = "info", 1
        message.value = message_html("busy", f"Received {filename} ({len(data) / 1024:,.0f} KiB); checking it…")
        try:
            if filename.lower().endswith(KERAS_FILES):
                raise ValueError(f"{filename} is a Keras model, not a .yyar archive: pack it first with "
                                 f"`yyai archive --model {filename} ...` (or pack_model in a notebook), then "
                                 "install the .yyar it writes.")
            if not filename.lower().endswith(".yyar"):
                raise ValueError(f"{filename} is not a .yyar archive; build one with `yyai archive`.")
            progress.value = 2
            message.value = message_html("busy", f"Verifying, storing and loading {filename}…")
            promote = {"auto": None, "promote": True, "stage": False}[self.promote_toggle.value]
            label = self.install_label.value.strip() or None
            result = self.shell.backend.add_archive(data, promote=promote, label=label)
        except Exception as error:
            progress.bar_style, progress.value = "danger", 3
            # the error names a temporary copy (the data plane's, or the server's spool file): name the upload
            text = TEMP_UPLOAD_NAME.sub(filename, error_text(error))
            message.value = message_html("error", f"{filename} was not installed: {text}")
            raise
        progress.bar_style, progress.value = "success", 3
        message.value = message_html("ok", f"{filename}: {result.message}.")
        self.shell.forget_descriptions()
        self.shell.refresh()
        self.shell.set_options(self.manage_model, model_options(self.shell.status), preferred=result.name,
                               select=True)
        self.shell.picked(result.name)
        self._sync_versions(self.shell.status, select=result.version)
        self.manage_message.value = ""  # it spoke of the model picked before
        return result
