"""Token authentication for REST clients without the browser's cookie round trip.

jupyter_server's identity provider treats every token-authenticated request as a browser
session: it invents an anonymous user (a uuid and a random name) and signs a login cookie
for it, on every request that carries the token in its ``Authorization`` header. A script
or a v2 client sends the header each time and ignores cookies, so for them that work is
pure overhead (about a third of a millisecond a request). Here a request whose header
carries the right token is one fixed API user, compared in constant time, with no cookie.
Browsers (``?token=`` and the login cookie) go through Voila's provider unchanged.

:func:`token_matches` is the one token comparison: the provider's header path and the
lean inference handlers (``lean.py``, which also take ``?token=``) both use it.
"""

from __future__ import annotations

import hmac

from jupyter_server.auth.identity import PasswordIdentityProvider, User

API_USER = User(username="yyai-api", name="REST client", display_name="REST client")


def header_token(provider, request) -> str | None:
    """The token of an ``Authorization: token T`` (or ``Bearer T``) header, if there is one."""
    header = provider.auth_header_pat.match(request.headers.get("Authorization", ""))
    return header.group(2) if header else None


def token_matches(provider, request, *, query: bool = True) -> bool:
    """Whether the request carries the server's token (header, or ``?token=`` when ``query``)."""
    expected = provider.token
    if not expected:
        return False
    sent = header_token(provider, request)
    if sent is None and query:
        values = request.query_arguments.get("token")
        sent = values[-1].decode("utf-8", "replace") if values else None
    return sent is not None and hmac.compare_digest(sent.encode(), expected.encode())


class YyaiIdentityProvider(PasswordIdentityProvider):
    """Voila's token/password provider, with a cookie-free path for ``Authorization`` headers."""

    async def get_user(self, handler):
        if token_matches(self, handler.request, query=False):
            # No public setter exists: jupyter_server's own get_user marks token logins with this
            # private attribute, which its public is_token_authenticated() then reads.
            handler._token_authenticated = True
            return API_USER
        return await super().get_user(handler)


def authorization_matches(authorization: str | None, token: str | None) -> bool:
    """Whether an authorization value, ``token T`` or ``Bearer T``, carries ``token``
    (constant-time compare): gRPC metadata's ``authorization`` entry, which has no handler."""
    match = PasswordIdentityProvider.auth_header_pat.match(authorization or "")
    return bool(match and token and hmac.compare_digest(match.group(2).encode(), token.encode()))
