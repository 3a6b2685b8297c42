"""``Dashboard.for_models``: the dashboard over Keras models held in a notebook, with no server.

Each version's models are packed with :func:`~yyai_kernel.archive.packmodel.pack_model` into a
private temporary folder, which a :class:`~yyai_kernel.registry.registry.Registry` serves through an
in-process :class:`~yyai_kernel.plane.local.LocalBackend`; every version is loaded, so that
"Compare with" works at once. The dashboard is then exactly the one ``yyai serve`` shows,
over the same data plane: the same checks (safe_mode load, input and output shapes), the
same preprocessing, the same explanations. Closing the dashboard (or dropping it) closes
the registry and removes the folder. Imported only when ``for_models`` is called, so the
served dashboard's kernel never imports it (it imports TensorFlow through the registry).
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Mapping
from pathlib import Path

from yyai_kernel.errors import InvalidInputError
from yyai_kernel.types import parse_version


def version_number(key) -> int:
    """A version from a ``for_models`` key: ``"v2"``, ``"2"`` or ``2``."""
    text = key[1:] if isinstance(key, str) and key[:1] in ("v", "V") else key
    try:
        version = parse_version(text)
    except InvalidInputError:
        version = None
    if version is None:
        raise InvalidInputError(f"{key!r} does not name a version; use keys such as \"v1\", \"v2\" (or 1, 2).")
    return version


def for_models(versions: Mapping, *, input: dict, dashboard_class, labels=None, name: str = "model",
               refresh_interval: float | None = 2.0, **options):
    """A dashboard over ``{"v1": model_or_models, "v2": ...}`` (see ``Dashboard.for_models``)."""
    from yyai_kernel.archive.packmodel import pack_model
    from yyai_kernel.plane.local import LocalBackend
    from yyai_kernel.quiet import quiet_tensorflow
    from yyai_kernel.registry.registry import Registry
    from yyai_kernel.store.store import ModelStore

    if not versions:
        raise InvalidInputError("Give at least one version: Dashboard.for_models({\"v1\": model}, ...).")
    numbers = {version_number(key): models for key, models in versions.items()}
    quiet_tensorflow()
    folder = Path(tempfile.mkdtemp(prefix="yyai-for-models-"))
    registry = None
    try:
        for version, models in numbers.items():
            pack_model(models, name=name, version=version, input=input, labels=labels, out=folder, **options)
        registry = Registry(ModelStore(folder))
        for version in sorted(numbers):
            registry.load(name, version)
        backend = LocalBackend.over(registry)
        board = dashboard_class(backend, refresh_interval=refresh_interval,
                                               location="models from this notebook (in-process, no server)")
    except BaseException:
        if registry is not None:
            registry.close()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    board.on_close(backend.close)
    board.on_close(weakref.finalize(board, shutil.rmtree, folder, True))  # also when the board is dropped
    return board
