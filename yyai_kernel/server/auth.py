"""Token authentication for REST clients without the browser's cookie round trip.

jupyter_server's identity provider treats every token-authenticated request as a browser
session: it invents an anonymous user (a uuid and a random name) and signs a login cookie
for it, on every request that carries the token in its ``Authorization`` header. A script
or a v2 client sends the header each time and ignores cookies, so for them that work is
pure overhead (about a third of a millisecond a request). Here a request whose header
carries the right token is one fixed API user, compared in constant time, with no cookie.
Browsers (``?token=`` and the login cookie) go through Voila's provider unchanged.

:func:`token_matches` reads the token by ``tokenauth.py``'s rule (which the Ray replicas and
the gRPC interceptor share): the provider's header path and the token-only inference
handlers (``rest/handlers.py``'s ``TokenHandler``, which also take ``?token=``) both use it.
"""

from __future__ import annotations

from jupyter_server.auth.identity import PasswordIdentityProvider, User

from yyai_kernel.protocol import tokenauth

API_USER = User(username="yyai-api", name="REST client", display_name="REST client")


def token_matches(provider, request, *, query: bool = True) -> bool:
    """Whether the request carries the server's token (header, or ``?token=`` when ``query``)."""
    if not provider.token:
        return False
    values = request.query_arguments.get("token") if query else None
    sent = tokenauth.sent_token(request.headers.get("Authorization"),
                                values[-1].decode("utf-8", "replace") if values else None)
    return tokenauth.same_token(sent, provider.token)


class YyaiIdentityProvider(PasswordIdentityProvider):
    """Voila's token/password provider, with a cookie-free path for ``Authorization`` headers."""

    async def get_user(self, handler):
        if token_matches(self, handler.request, query=False):
            # No public setter exists: jupyter_server's own get_user marks token logins with this
            # private attribute, which its public is_token_authenticated() then reads.
            handler._token_authenticated = True
            return API_USER
        return await super().get_user(handler)
