"""The one yyai server (``yyai serve``): a Voila app serving the dashboard, plus the REST API.

- ``app.py``: YyaiServer, the Voila subclass, and ``main()``; ``settings.py`` its own
  traits and options; ``startup.py`` the token banner and stale temp folders;
  ``shutdown.py`` the draining stop; ``cmdline.py`` the argv check and ``--help`` rows;
- ``rest/``: the REST handlers, thin Tornado adapters over the data plane;
- ``grpc_server.py``: v2 gRPC from the same process (``--grpc-port``);
- ``kernels.py``: dashboard kernels get the server's URL and token, one waits preheated;
  ``pages.py`` and ``templates/``: the login page and Voila's page without CDN links;
  ``auth.py``: the identity provider and the one constant-time token check;
- ``workers/``: ``--workers N``, a supervisor and N worker processes on one port. Importing this package imports
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

from yyai_kernel import __version__  # noqa: E402,F401  (the server reports the package's version)
