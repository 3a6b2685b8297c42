"""The lean base of the inference handlers: plain Tornado, a token check, nothing else per request.

``POST /v2/models/{m}[/versions/{v}]/infer`` and ``POST /predictions/{m}[/{v}]`` carry
nearly all of a server's traffic, from scripts and v2 clients that send a token in a
header. jupyter_server's ``APIHandler`` runs its identity provider, XSRF, origin and CSP
machinery on every request, which those clients never need, and which cost more than the
model call on small inputs (``bench/profiles/``). The handlers here derive from Tornado's
``RequestHandler`` and keep only what a token API needs, in this order, before any byte of
the body is read:

1. the Host check against DNS rebinding (``handlers.host_allowed``: loopback names only,
   unless remote access is allowed), 403 otherwise;
2. the token, compared in constant time, from ``Authorization: token T`` / ``Bearer T``
   or ``?token=T`` (never a cookie: these routes serve scripts, not pages), 401 otherwise;
   with auth off (``--no-token``), a browser's cross-origin POST is refused with 403;
3. the body limit (``handlers.BodyReader``).

Errors, replies and metrics are the mixins every REST handler shares (``common.py``), so
the JSON errors and status codes are those of every other route. Routes are still
declared in their modules' ``ROUTES`` (``routes.py``).
"""

from __future__ import annotations

from tornado import web

from yyai_kernel.server.auth import token_matches
from yyai_kernel.server.rest.common import (
    BodyReader,
    ErrorReplies,
    Metered,
    host_allowed,
    same_origin_or_script,
    unauthorized,
)


class LeanHandler(ErrorReplies, Metered, web.RequestHandler):
    """A plain Tornado handler behind the Host check and the token (see the module docstring)."""

    async def prepare(self) -> None:
        if not host_allowed(self.request, self.settings):
            raise web.HTTPError(403, "The Host header names no local address; remote access is off.")
        provider = self.settings["identity_provider"]
        if provider.auth_enabled:
            if not token_matches(provider, self.request):
                raise unauthorized(self.request)
        elif self.request.method not in ("GET", "HEAD") and not same_origin_or_script(self.request):
            raise web.HTTPError(403, "Cross-origin request refused.")


@web.stream_request_body
class LeanBodyHandler(BodyReader, LeanHandler):
    """A lean handler that reads its body itself, within the size limit."""
