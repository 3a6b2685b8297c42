"""Endpoint: one REST endpoint of yyai, declared once, with no web framework.

An :class:`Endpoint` is a path (written as OpenAPI writes it, ``/v2/models/{name}/infer``),
a method, the function that answers it (``async fn(api, call) -> Reply``), how its body is
read (:class:`Body`), who may call it, and its OpenAPI operation. Each API module lists its
endpoints in ``ENDPOINTS``; ``table.all_endpoints`` gathers them in the order a router must
try them (specific paths before ``{name}`` ones). The Tornado adapter (``server/rest/``)
and the ASGI adapter (``api/asgi.py``) serve this one table, and ``/openapi.json`` is
generated from it (``api/openapi.py``), so an endpoint cannot exist undocumented, be
documented twice, or behave differently on two servers.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from yyai_kernel.api.call import Call, Reply

if TYPE_CHECKING:
    from yyai_kernel.api.context import Api

# Path parameters and what they match. A sample or set name may hold '/', the others may not.
PARAMETERS = {"name": r"[^/]+", "version": r"[^/]+", "sample": r".+", "label": r"[^/]+", "set": r".+",
              "job": r"[^/]+"}


class Body(str, Enum):
    """How an endpoint's request body is read."""

    NONE = "none"  # none expected (whatever is sent is read within the request-body limit and ignored)
    MEMORY = "memory"  # into memory, within max_body_bytes
    SPOOL = "spool"  # to a temporary file, within max_archive_bytes (uploads)


class Auth(str, Enum):
    """Who may call an endpoint, and how the Tornado adapter checks it."""

    TOKEN = "token"  # the API token only (header or ?token=): the lean inference routes
    SESSION = "session"  # the token, or the dashboard's login cookie with an XSRF token (jupyter_server)


@dataclass(frozen=True)
class Endpoint:
    """One method of one path: its function, body, auth, metric label and OpenAPI operation.

    ``public`` names a ``ServingConfig`` flag that, when set, lets the endpoint answer
    without a token (health checks, metrics). ``metric`` labels the request metrics (None:
    not counted). ``trailing_slash`` also accepts the path with a final '/'. ``on_ray``
    False keeps the endpoint off Ray (``ray_app/http.py`` says why).
    """

    method: str
    path: str
    fn: Callable[..., Awaitable[Reply]]
    operation: dict[str, Any] = field(default_factory=dict)
    body: Body = Body.NONE
    auth: Auth = Auth.SESSION
    public: str | None = None
    metric: str | None = "management"
    trailing_slash: bool = False
    on_ray: bool = True

    def pattern(self) -> str:
        """The path as a regular expression: each ``{param}`` becomes a named group."""
        return path_pattern(self.path, self.trailing_slash)

    async def __call__(self, api: Api, call: Call) -> Reply:
        return await self.fn(api, call)


def path_pattern(path: str, trailing_slash: bool = False) -> str:
    escaped = re.escape(path).replace(r"\{", "{").replace(r"\}", "}")
    pattern = re.sub(r"{(\w+)}", lambda m: f"(?P<{m.group(1)}>{PARAMETERS[m.group(1)]})", escaped)
    return pattern + ("/?" if trailing_slash else "")
