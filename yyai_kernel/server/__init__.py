"""The one yyai server: a Voila app serving the dashboard, plus the REST API.

``app.py`` holds the Voila subclass and ``main()``; the REST handlers are grouped by API
(``v2.py`` with the pure ``v2codec.py``, ``predictions.py``, ``management.py``,
``samples_handlers.py``, ``metrics.py``, ``openapi.py``) on top of ``base.py``;
``kernels.py`` gives the dashboard kernels the server's URL and token; ``grpc_server.py``
serves v2 gRPC from the same process (``--grpc-port``). Importing this
package imports neither TensorFlow nor Voila.
"""

from __future__ import annotations

try:
    from importlib.metadata import PackageNotFoundError, version as _version

    __version__ = _version("yyai")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"
