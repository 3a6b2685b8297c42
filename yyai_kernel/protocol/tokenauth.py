"""The API token as REST clients send it, and the words of a refusal: one rule for every front end.

A client sends the token as ``Authorization: token T`` (or ``Bearer T``) or as ``?token=T``.
``yyai serve`` checks it through jupyter_server's identity provider (``server/auth.py``,
``server/base.py``); the Ray replicas check it here (``api/asgi.py``). Both compare in
constant time and refuse with the same 401 body, ``{"error": ...}``, and the same
``WWW-Authenticate`` header, so a client cannot tell the two servers apart by their refusals.

Pure functions, no state. Imports only the standard library.
"""

from __future__ import annotations

import hmac
import re

# jupyter_server's own pattern (IdentityProvider.auth_header_pat), so both servers read one header alike
AUTH_HEADER = re.compile(r"(token|bearer)\s+(.+)", re.IGNORECASE)
WWW_AUTHENTICATE = 'Token realm="yyai"'
MISSING = "Authentication required: send 'Authorization: token <token>' or ?token=<token>."
INVALID = ("Invalid token: it is not the token this server printed at start "
           "(or set with --token / YYAI_TOKEN).")


def sent_token(authorization: str | None, query_token: str | None) -> str | None:
    """The token a request carries: from its Authorization header, else its ``token`` query argument."""
    match = AUTH_HEADER.match(authorization or "")
    if match:
        return match.group(2)
    return query_token


def same_token(sent: str | None, token: str) -> bool:
    """Whether ``sent`` is the server's token, compared in constant time."""
    return sent is not None and hmac.compare_digest(sent.encode(), token.encode())


def authorization_matches(authorization: str | None, token: str | None) -> bool:
    """Whether an authorization value, ``token T`` or ``Bearer T``, carries ``token`` (constant time)."""
    if not token:
        return False
    return same_token(sent_token(authorization, None) if authorization else None, token)


def refusal(authorization: str | None, query_token: str | None) -> str:
    """The 401 message: a wrong token and a missing one need different fixes."""
    return INVALID if (authorization or query_token) else MISSING
