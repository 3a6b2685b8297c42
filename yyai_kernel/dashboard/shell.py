"""The dashboard's shell: the backend, the header, the status line, the tabs and the refresh thread.

:class:`Dashboard` holds what every tab shares and nothing a single tab owns:

* the backend (``yyai_kernel.plane.backend.Backend``: a LocalBackend in-process, or the HTTP
  ``YyaiClient`` when ``yyai serve`` shows the page) and the last ``ServerStatus``;
* a daemon thread that refreshes that status every ``refresh_interval`` seconds and hands
  it to every tab (``Tab.update``); it pauses itself when nobody uses the page;
* the model a person picked last in any tab's Model picker (``picked``, a :class:`PickedModel`),
  which every tab shows when it is opened, so that switching tabs keeps the model;
* the ``guard`` that turns an exception in a widget callback into a message on the page
  (otherwise it is invisible, or a traceback), and the ``quiet`` flag that keeps observers
  silent while code, not a person, changes widget values.

A tab is a class with ``key``, ``title``, ``widget``, ``update(status)`` and ``shown()``
(:class:`Tab`). :data:`TABS` lists them in order; adding a tab is writing such a class and
adding it there (or passing ``tabs=`` to :class:`Dashboard`). Each tab is reachable as
``dashboard.<key>`` (``dashboard.preview``, ``dashboard.models``, ``dashboard.manage``,
``dashboard.rollout``).

Tabs are built lazily: the first tab, and any tab class with ``lazy = False``, at once;
every other tab the first time it is shown (or read as ``dashboard.<key>``). A page visit
then sends the browser only the widgets of what it shows, which is most of the time it
takes to become interactive (each widget is a model the browser creates and renders).

Locking: :meth:`Dashboard.refresh` runs under one re-entrant lock, so the refresh thread
and a person's action never update the pickers at the same time; the quiet flag is per
thread, so the refresh thread's changes never silence a person's clicks.
"""

from __future__ import annotations

import contextlib
import functools
import html
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Protocol

import ipywidgets as W

from yyai_kernel.dashboard.evaluate import EvaluateTab
from yyai_kernel.dashboard.manage import ManageTab
from yyai_kernel.dashboard.models import ModelsTab
from yyai_kernel.dashboard.preview import PreviewTab
from yyai_kernel.dashboard.render import (
    CSS,
    close_tree,
    error_text,
    message_html,
    subtle_html,
    with_classes,
)
from yyai_kernel.dashboard.rollout import RolloutTab
from yyai_kernel.types import ServerStatus, VersionDescription, VersionState

log = logging.getLogger("yyai.dashboard")


class Tab(Protocol):
    """One tab of the dashboard, built as ``TabClass(dashboard)``."""

    key: ClassVar[str]  # the dashboard's attribute for it: dashboard.<key>
    title: ClassVar[str]
    widget: W.Widget

    def __init__(self, shell: Dashboard) -> None: ...

    def update(self, status: ServerStatus) -> None:
        """A new status arrived (any thread, under the dashboard's lock, observers quiet)."""

    def shown(self) -> None:
        """A person opened this tab."""

    # Optional: ``lazy: ClassVar[bool] = False`` builds the tab with the dashboard rather than when first shown.


TABS: tuple[type, ...] = (PreviewTab, ModelsTab, ManageTab, RolloutTab, EvaluateTab)


class ViewCount:
    """How many browser views show a widget, and a callback when that changes.

    ipywidgets has no public API for this. Its ``_view_count`` trait ("EXPERIMENTAL ...
    None: views are not tracked; set it to 0 to start tracking") is the only way a kernel
    learns that a page was closed, and this class is the one place yyai touches it.
    """

    def __init__(self, widget: W.Widget, on_change: Callable[[int, int], None]):
        self.widget = widget
        widget._view_count = 0  # start tracking
        widget.observe(lambda change: on_change(change["old"] or 0, change["new"] or 0), "_view_count")

    def __call__(self) -> int:
        return self.widget._view_count or 0


class PickedModel:
    """The model a person picked last in any tab's Model picker, which every tab shows when opened."""

    def __init__(self, quiet: Callable):
        self.name: str | None = None
        self._quiet = quiet

    def __call__(self, name: str | None) -> None:
        """A person picked ``name`` (a tab's observer calls this)."""
        if name:
            self.name = name

    def follow(self, dropdown: W.Dropdown) -> bool:
        """Show the picked model in ``dropdown``, quietly; True when its value changed."""
        if not self.name or dropdown.value == self.name or self.name not in [v for _, v in dropdown.options]:
            return False
        with self._quiet():
            dropdown.value = self.name
        return True


class Dashboard:
    """The yyai dashboard over a backend: a :class:`Registry`, a LocalBackend or a :class:`YyaiClient`.

    ``refresh_interval`` (seconds) starts a daemon thread that refreshes every tab; None
    starts none (call :meth:`refresh` yourself). The thread pauses itself after
    ``pause_after`` seconds without anyone using the page, so that an abandoned page stops
    talking to the server. (Served, a closed page's kernel is shut down by the server soon
    after its websocket closes: ``yyai_kernel.server.kernels``.) Display the object
    (or ``.widget``) in a notebook; :meth:`close` stops the thread and closes the widgets.
    ``wait_for_view`` (a preheated kernel, built before anyone visits) refreshes nothing
    until a browser shows the dashboard, then refreshes at once.
    """

    def __init__(self, backend, *, refresh_interval: float | None = 2.0, pause_after: float = 900.0,
                 location: str = "", tabs: tuple[type[Tab], ...] = TABS, wait_for_view: bool = False):
        self.backend = as_backend(backend)
        self.refresh_interval = refresh_interval
        self.pause_after = pause_after
        self.location = location
        self.status = ServerStatus({})  # the last status of every model
        self.picked = PickedModel(self.quiet)  # the model a person picked last, in any tab
        self._fetched = False  # self.status came from the backend (a tab built later gets it)
        self._descriptions: dict[tuple[str, int], VersionDescription] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._local = threading.local()  # ._local.quiet: this thread is changing values, not a person
        self._last_used = time.monotonic()
        self._views_seen = False  # a browser has shown the dashboard at least once
        self._wait_for_view = wait_for_view
        self._paused_idle = False  # the refresh paused itself (not the person's checkbox)
        self._closers: list[Callable[[], object]] = []  # run by close(): what for_models set up
        self._build(tabs)
        self.refresh()
        if refresh_interval:
            self.start()

    def _build(self, tabs: tuple[type[Tab], ...]) -> None:
        self.header = with_classes(W.HTML(), "yyai-header")
        self.status_line = with_classes(W.HTML(), "yyai-status")
        # the refresh controls belong to the shell (the thread reads them); the Models tab shows them
        self.auto_refresh = with_classes(W.Checkbox(value=True, description="Refresh by itself", indent=False),
                                         "yyai-auto-refresh")
        self.refresh_note = with_classes(W.HTML(), "yyai-refresh-note")
        self._tab_classes = tuple(tabs)
        self._built: dict[int, Tab] = {}
        self.tabs = with_classes(W.Tab(children=[W.Box() for _ in tabs], titles=[cls.title for cls in tabs]),
                                 "yyai-tabs")
        for index, cls in enumerate(self._tab_classes):
            if index == 0 or not getattr(cls, "lazy", True):
                self.tab(index)
        self.widget = with_classes(W.VBox([W.HTML(CSS), self.header, self.status_line, self.tabs]),
                                   "yyai-dashboard")
        self.views = ViewCount(self.widget, self._on_views)
        self.auto_refresh.observe(self.guard(lambda _: self.refresh(), self.status_line), "value")
        self.tabs.observe(self.guard(self._on_tab, self.status_line), "selected_index")

    # --- what the tabs share ----------------------------------------------------------------

    @contextlib.contextmanager
    def quiet(self):
        """While inside, this thread's widget changes are code, not a person: observers skip them."""
        before = getattr(self._local, "quiet", False)
        self._local.quiet = True
        try:
            yield
        finally:
            self._local.quiet = before

    def guard(self, fn: Callable, target: W.HTML, *, observer: bool = True) -> Callable:
        """Wrap a callback: a person sees an error message in ``target``, never a traceback.

        Observers (not button clicks) are skipped while code, not a person, changes values.
        """

        @functools.wraps(fn)
        def guarded(*args):
            if observer and getattr(self._local, "quiet", False):
                return None
            self._last_used = time.monotonic()
            try:
                return fn(*args)
            except Exception as error:  # every failure becomes a message
                log.info("dashboard action failed: %s", error, exc_info=True)
                target.value = message_html("error", error_text(error))
                return None

        return guarded

    def set_options(self, dropdown: W.Dropdown, options: list, preferred=None, *, select: bool = False) -> None:
        """Replace a dropdown's options quietly, keeping its value when it still exists.

        ``select`` picks ``preferred`` even when the current value still exists.
        """
        values = [value for _, value in options]
        if select and preferred in values:
            keep = preferred
        elif dropdown.value in values:
            keep = dropdown.value
        else:
            keep = preferred if preferred in values else (values[0] if values else None)
        if list(dropdown.options) == options and dropdown.value == keep:
            return
        with self.quiet():
            dropdown.options = options
            dropdown.value = keep

    def load_on_use(self, name: str, versions: list[int], say: Callable[[str], object]) -> list[int]:
        """Load the ``versions`` of ``name`` that were never loaded (in the store, not in memory), each
        announced through ``say`` first; returns them. A version an operator unloaded, or whose load
        failed, is left as it is: loading it again is a person's choice (Preview's and Manage's Load)."""
        model = self.backend.status(name)
        missing = [v for v in versions if v in model.versions and model.versions[v].state is VersionState.AVAILABLE]
        for version in missing:
            say(f"Loading {name} v{version} first: it was not loaded yet…")
            self.backend.load(name, version)
        if missing:
            self.refresh()  # every picker says "ready" now
        return missing

    def describe(self, name: str, version: int) -> VersionDescription:
        """What a version takes and gives (cached: an archive's manifest never changes)."""
        key = (name, int(version))
        if key not in self._descriptions:
            self._descriptions[key] = self.backend.describe(name, int(version))
        return self._descriptions[key]

    def forget_descriptions(self) -> None:
        """After an install or a reload: a version number may now name another archive."""
        self._descriptions.clear()

    def showing(self, tab: Tab) -> bool:
        """Whether ``tab`` is the selected tab."""
        return self._built.get(self.tabs.selected_index) is tab

    # --- the tabs, built when first needed -----------------------------------------------------

    @property
    def tab_list(self) -> list:
        """The tabs built so far, in their order."""
        return [self._built[i] for i in sorted(self._built)]

    def tab(self, index: int) -> Tab:
        """Tab ``index``, built on first use: its widget replaces the placeholder, and it gets the last status."""
        with self._lock:
            tab = self._built.get(index)
            if tab is None:
                tab = self._built[index] = self._tab_classes[index](self)
                setattr(self, tab.key, tab)
                children = list(self.tabs.children)
                placeholder, children[index] = children[index], tab.widget
                self.tabs.children = tuple(children)
                placeholder.close()
                if self._fetched:
                    with self.quiet():
                        tab.update(self.status)
            return tab

    def __getattr__(self, name: str):
        """``dashboard.<key>`` of a tab not built yet: builds it."""
        for index, cls in enumerate(self.__dict__.get("_tab_classes", ())):
            if cls.key == name:
                return self.tab(index)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # --- refreshing ---------------------------------------------------------------------------

    def refresh(self) -> None:
        """Fetch every model's status; update the header and every tab."""
        with self._lock:
            try:
                status = self.backend.status()
            except Exception as error:  # noqa: BLE001
                self.status_line.value = message_html(
                    "error", f"The server did not answer ({error_text(error)}); is yyai serve still running?")
                return
            self.status, self._fetched = status, True
            self._set(self.status_line, "")
            self._set(self.header, self._header_html())
            self._set(self.refresh_note, self._refresh_text())
            with self.quiet():
                for tab in self.tab_list:
                    tab.update(status)

    @staticmethod
    def _set(widget: W.HTML, value: str) -> None:
        if widget.value != value:
            widget.value = value

    def _header_html(self) -> str:
        models = len(self.status.models)
        ready = sum(len(m.loaded) for m in self.status.models.values())
        where = f" · {html.escape(self.location)}" if self.location else ""
        return (f"<h2>yyai · model dashboard</h2><span class='yyai-subtle'>{models} model"
                f"{'s' if models != 1 else ''}, {ready} version{'s' if ready != 1 else ''} serving{where}</span>")

    def _refresh_text(self) -> str:
        if self._paused_idle and not self.auto_refresh.value:
            return subtle_html(f"Paused refreshing after {self.pause_after / 60:g} minutes without use; "
                               "tick \"Refresh by itself\" to resume.")
        if self.refresh_interval and self.auto_refresh.value and not self._stop.is_set():
            return subtle_html(f"The table and the plot refresh every {self.refresh_interval:g} s.")
        return subtle_html("Refreshed when you press \"Refresh now\".")

    def _on_tab(self, change) -> None:
        if change["new"] is not None:
            self.tab(change["new"]).shown()

    # --- the refresh thread -------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def start(self) -> None:
        """Start the background refresh (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._refresh_loop, name="yyai-dashboard-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background refresh and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def close(self) -> None:
        """Stop refreshing, close every widget, then release what the dashboard owns (``on_close``)."""
        self.stop()
        close_tree(self.widget)
        closers, self._closers = self._closers, []
        for closer in closers:
            closer()

    def on_close(self, closer: Callable[[], object]) -> None:
        """Call ``closer`` when the dashboard closes (after its widgets)."""
        self._closers.append(closer)

    @classmethod
    def for_models(cls, versions, *, input: dict, labels=None, name: str = "model", **options) -> Dashboard:
        """The dashboard over Keras models in this notebook, with no server and no store of yours.

        ``versions`` maps a version (``"v1"``, ``"v2"``, or 1, 2) to a model, a list of
        models (an ensemble) or ``{member name: model}``. ``input``, ``labels`` (or
        ``regression=``) and the other keywords are :func:`yyai_kernel.pack_model`'s
        (``samples=[...]`` adds bundled samples), plus ``refresh_interval``. Every version is
        packed into a private temporary store and loaded in-process; closing the dashboard
        removes it. Example::

            Dashboard.for_models({"v1": m1, "v2": m2}, input={"scale": 1 / 255}, labels=list("0123456789"))
        """
        from yyai_kernel.dashboard.inmemory import for_models

        return for_models(versions, input=input, labels=labels, name=name, dashboard_class=cls, **options)

    def _on_views(self, old: int, new: int) -> None:
        """A browser showed (or closed) the dashboard: a new view counts as use."""
        if new <= old:
            return
        first, self._views_seen = not self._views_seen, True
        self._last_used = time.monotonic()
        if first and self._wait_for_view:  # built before the visit: what it shows may be stale
            self.refresh()
        elif self._paused_idle:  # e.g. a preheated kernel that waited for its visitor
            self._paused_idle = False
            with self.quiet():
                self.auto_refresh.value = True
            self.refresh()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh_interval):
            if not self.auto_refresh.value or (self._wait_for_view and not self._views_seen):
                continue
            if self._views_seen and not self.views():
                continue  # the page was closed: nobody to refresh for
            if time.monotonic() - self._last_used > self.pause_after:
                self._paused_idle = True
                with self.quiet():
                    self.auto_refresh.value = False
                self.refresh_note.value = self._refresh_text()
                continue
            try:
                self.refresh()  # shows its own error when the server does not answer
            except Exception as error:  # the loop outlives a failing tab
                log.info("refresh failed: %s", error, exc_info=True)
                self.status_line.value = message_html("error", f"Could not refresh: {error_text(error)}")


def as_backend(backend):
    """The backend contract (``yyai_kernel.plane.backend.Backend``) of what the caller handed in.

    A :class:`Registry` is wrapped in the data plane that serves it; anything else (a
    LocalBackend, a YyaiClient) is used as it is. The check never imports the registry:
    when nothing imported it, the backend cannot be one.
    """
    registry_module = sys.modules.get("yyai_kernel.registry.registry")
    if registry_module is not None and isinstance(backend, registry_module.Registry):
        from yyai_kernel.plane.local import LocalBackend

        return LocalBackend.over(backend)
    return backend


def dashboard_from_env(store: str | os.PathLike | None = None, **kwargs) -> Dashboard:
    """The dashboard for where it runs.

    Served by ``yyai serve`` (``YYAI_URL`` or Voila's ``VOILA_APP_PORT`` in the
    environment): over the HTTP client, with no TensorFlow in this kernel. Otherwise (a
    plain notebook): over an in-process Registry on ``store`` (default ``$YYAI_STORE`` or
    ``model_archives``), with every model's default version loaded.
    """
    if os.environ.get("YYAI_URL") or os.environ.get("VOILA_APP_PORT"):
        from yyai_kernel.client import YyaiClient

        url = os.environ.get("YYAI_URL")
        if not url:
            base = os.environ.get("VOILA_BASE_URL", "/")
            url = f"http://127.0.0.1:{os.environ['VOILA_APP_PORT']}{base}"
        client = YyaiClient(url=url, token=os.environ.get("YYAI_TOKEN"))
        kwargs.setdefault("wait_for_view", os.environ.get("VOILA_PREHEAT") == "True")  # built before the visit
        return Dashboard(client, location=f"served from {url.rstrip('/')}", **kwargs)

    from yyai_kernel.quiet import quiet_tensorflow
    from yyai_kernel.registry.registry import Registry
    from yyai_kernel.store.store import ModelStore

    quiet_tensorflow()  # keep TensorFlow's C++ start-up log out of the notebook (YYAI_LOG_LEVEL=debug shows it)
    root = Path(store or os.environ.get("YYAI_STORE") or "model_archives")
    registry = Registry(ModelStore(root))
    registry.load_all()
    return Dashboard(registry, location=f"in-process registry on {root}", **kwargs)
