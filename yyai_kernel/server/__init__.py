"""The one yyai server: a Voila app serving the dashboard, plus the REST API.

``app.py`` holds the Voila subclass and ``main()``; the REST handlers are grouped by API
(``v2.py`` with the pure ``v2codec.py``, ``predictions.py``, ``management.py``,
``samples_handlers.py``, ``metrics.py``, ``openapi.py``) on top of ``base.py``;
``kernels.py`` gives the dashboard kernels the server's URL and token; ``grpc_server.py``
serves v2 gRPC from the same process (``--grpc-port``). Importing this package imports
neither TensorFlow nor Voila, and it keeps jupyter_events from building IRI grammars that
nothing here uses (below).
"""

from __future__ import annotations

import sys

# jupyter_server imports jupyter_events, which builds jsonschema's format checkers; with
# rfc3987_syntax installed (jsonschema[format-nongpl]), that import compiles lark grammars
# for the "iri" formats: about 3.5 s of CPU at every start, for formats that no schema
# the server uses names. A None entry makes the import fail, and jsonschema then skips
# those two checkers (it guards the import). Set before any server module imports
# jupyter_server; a process that imported rfc3987_syntax already keeps it.
sys.modules.setdefault("rfc3987_syntax", None)

try:
    from importlib.metadata import PackageNotFoundError, version as _version

    __version__ = _version("yyai")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"
