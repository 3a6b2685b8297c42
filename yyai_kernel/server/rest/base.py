"""The base of the REST handlers that derive from jupyter_server's ``APIHandler``.

Auth is jupyter_server's: the identity provider accepts the token as
``Authorization: token T`` (or ``Bearer T``) or ``?token=T``. A request without a valid
token gets 401 on every method (jupyter_server alone would redirect a GET and fail a POST
on its XSRF check with 403). A browser request that is cookie-authenticated still needs
the XSRF token for POST/PUT/DELETE (403 without it).

Error replies, body limits, metrics and off-loop work are shared with the lean inference
handlers (``lean.py``) through the mixins of ``common.py``.
"""

from __future__ import annotations

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import APIHandler
from tornado import web

from yyai_kernel.server.rest.common import (
    BodyReader,
    ErrorReplies,
    Metered,
    ServerState,
    log,
    same_origin_or_script,
    unauthorized,
)

__all__ = ["BodyHandler", "NotFoundHandler", "ServerState", "YyaiHandler", "log", "public_if"]


class YyaiHandler(ErrorReplies, Metered, APIHandler):
    """Base handler: JSON replies and errors, 401 without a token, pools, metric labels."""

    # --- auth ---------------------------------------------------------------------------

    def get_login_url(self) -> str:
        """API handlers never redirect to a login page: no valid token is a 401.

        The message tells a wrong token from a missing one: the fix differs.
        """
        raise unauthorized(self.request)

    def check_xsrf_cookie(self) -> None:
        """No token is a 401 before any XSRF question; token-authenticated requests pass.

        With auth disabled (``--no-token``), requests from non-browser clients pass, and
        browser requests must come from the server's own origin.
        """
        # jupyter_server has no public way to ask "has prepare() resolved the user yet?": its
        # own check_xsrf_cookie reads this private attribute for exactly that, and so do we.
        if not hasattr(self, "_jupyter_current_user"):
            return None  # called too early; prepare() calls it again once the user is known
        if self.current_user is None:
            self.get_login_url()
        if self.token_authenticated:
            return None
        if not self.identity_provider.auth_enabled:
            if same_origin_or_script(self.request):
                return None
            raise web.HTTPError(403, "Cross-origin request refused.")
        return super().check_xsrf_cookie()

    def require_auth(self) -> None:
        """Raise 401 unless the request is authenticated (for handlers that may be public)."""
        if not self.current_user:
            self.get_login_url()


@web.stream_request_body
class BodyHandler(BodyReader, YyaiHandler):
    """A handler that reads its request body itself, within a size limit (see ``BodyReader``)."""


class NotFoundHandler(YyaiHandler):
    """JSON 404 for any path under the REST prefixes that no route matches."""

    def _missing(self, *args, **kwargs):
        raise web.HTTPError(404, f"No such endpoint: {self.request.method} {self.request.path}. See /openapi.json.")

    @web.authenticated
    def get(self, *args, **kwargs):
        self._missing()

    post = put = delete = patch = head = get


def public_if(flag_name: str):
    """Mark a GET as reachable without a token when ``ServingConfig.<flag_name>`` is set."""

    def decorate(method):
        @allow_unauthenticated
        def wrapper(self, *args, **kwargs):
            if not getattr(self.config, flag_name):
                self.require_auth()
            return method(self, *args, **kwargs)

        wrapper.__name__ = method.__name__
        wrapper.__doc__ = method.__doc__
        return wrapper

    return decorate
