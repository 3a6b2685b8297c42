"""The API token as REST clients send it, and the words of a refusal: one rule for every front end.

A client sends the token as ``Authorization: token T`` (or ``Bearer T``) or as ``?token=T``.
``yyai serve`` checks it through jupyter_server's identity provider (``server/auth.py``,
``server/base.py``); the Ray replicas check it here (``api/asgi.py``). Both compare in
constant time and refuse with the same 401 body, ``{"error": ...}``, and the same
``WWW-Authenticate`` header, so a client cannot tell the two servers apart by their refusals.

The two other checks of a request that comes before its body is read live here too, for the
same reason: the Host check against DNS rebinding (:func:`host_check`) and, with auth off,
the refusal of a browser's cross-origin write (:func:`same_origin_or_script`).

Pure functions; :func:`host_check` remembers its answers in a bounded memo. Imports only
the standard library.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Callable, Iterable

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


def same_origin_or_script(headers: Callable[[str], str | None]) -> bool:
    """With auth off: scripts (no browser headers) and same-origin browser requests pass.

    ``headers`` reads one request header by name (``request.headers.get``).
    """
    site = headers("Sec-Fetch-Site")
    if site in ("same-origin", "none"):
        return True
    origin = headers("Origin")
    if site is None and origin is None:
        return True  # not a browser
    if origin is None:
        return False
    return origin.split("://", 1)[-1].rstrip("/") == (headers("Host") or "")


def host_name(host: str) -> str:
    """The name part of a Host header: ``[::1]:8866`` -> ``::1``, ``Localhost:80`` -> ``localhost``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_check(names: Iterable[str] = ("localhost",)) -> Callable[[str], bool]:
    """The DNS-rebinding check: whether a Host header names this machine (a loopback address or
    one of ``names``), jupyter_server's ``check_host`` rule, with each answer remembered."""
    local = frozenset(names)
    seen: dict[str, bool] = {}

    def allowed(host: str) -> bool:
        answer = seen.get(host)
        if answer is None:
            name = host_name(host)
            try:
                answer = ipaddress.ip_address(name).is_loopback
            except ValueError:
                answer = name in local
            if len(seen) < 256:  # a bounded memo: clients choose the Host header
                seen[host] = answer
        return answer

    return allowed
