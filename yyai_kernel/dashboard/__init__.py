"""The dashboard: ipywidgets for previewing predictions and swapping models.

One :class:`Dashboard` works over either backend with the same methods and result types
(``yyai_kernel.plane.backend.Backend``): an in-process data plane over a Registry (a plain
Jupyter notebook) or the HTTP :class:`~yyai_kernel.client.YyaiClient` (the page
``yyai serve`` shows through Voila). Served, the kernel behind a page visit imports no
TensorFlow and loads no model: it asks the one server over loopback, so a swap made here
is the swap REST clients see. Importing this package imports only ipywidgets; OpenCV
(for the image "as the model sees it") and matplotlib (Agg, no pyplot) come in on first use.

The package:

* ``shell.py``: :class:`Dashboard` (header, status line, tabs, the refresh thread, the
  backend) and :func:`dashboard_from_env`; ``TABS`` lists the tabs;
* ``preview.py`` (with ``results.py`` and ``records.py``): pick a model, a version and images
  (or a table's form and rows, a tensor); see every member's output, compare two versions
  side by side;
* ``models.py``: every version's state and traffic, and a live latency/throughput plot;
* ``manage.py``: reload, load, unload, make default, follow the latest, delete, install;
* ``rollout.py``: labels, the canary and shadow sliders, live agreement and latencies,
  recent disagreements as images, promote and roll back;
* ``evaluate.py`` (with ``evalview.py``): score versions on a labelled set (a job), the
  confusion heat map and its cells' images, disagreements, CSV, promote the best;
* ``render.py``: CSS, messages, tables, images and charts (pure functions).

A tab is a class with ``key``, ``title``, ``widget``, ``update(status)`` and ``shown()``;
add one by appending it to ``shell.TABS``. Widgets carry stable CSS classes (``yyai-*``)
so that tests and styling can find them.
"""

from __future__ import annotations

from yyai_kernel.dashboard.render import models_table_html, problems_html
from yyai_kernel.dashboard.shell import TABS, Dashboard, Tab, dashboard_from_env
from yyai_kernel.types import Prediction

__all__ = ["TABS", "Dashboard", "Tab", "dashboard_from_env", "models_table_html", "problems_html", "top_of"]


def top_of(prediction: Prediction, i: int = 0) -> tuple[str, float] | None:
    """The best (label, probability) of row ``i``: from the combined output, or the only member.

    Kept for scripts; it is :meth:`Prediction.top <yyai_kernel.types.Prediction.top>`.
    """
    return prediction.top(i)
