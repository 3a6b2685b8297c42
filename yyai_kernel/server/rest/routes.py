"""The route table: each REST route declared once, with its handler and its OpenAPI operations.

A :class:`Route` names its path the way OpenAPI writes it (``/v2/models/{name}/infer``);
the Tornado pattern is derived from it, and ``/openapi.json`` is generated from the same
table (``openapi.build_spec``), so a route cannot exist undocumented or be documented
twice. Each handler module lists its routes in ``ROUTES``; :func:`all_routes` gathers
them in the order Tornado must try them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Path parameters and what they match. A sample name may hold '/', the others may not.
PARAMETERS = {"name": r"[^/]+", "version": r"[^/]+", "sample": r".+", "label": r"[^/]+", "set": r".+",
              "job": r"[^/]+"}


@dataclass(frozen=True)
class Route:
    """One path: its handler class and the OpenAPI operation of each method it serves.

    ``trailing_slash`` also accepts the path with a final '/' (``/v2/``, ``/models/``).
    """

    path: str
    handler: type
    operations: dict = field(default_factory=dict)
    trailing_slash: bool = False

    def pattern(self) -> str:
        """The Tornado URL pattern: each ``{param}`` becomes a named group."""
        escaped = re.escape(self.path).replace(r"\{", "{").replace(r"\}", "}")
        pattern = re.sub(r"{(\w+)}", lambda m: f"(?P<{m.group(1)}>{PARAMETERS[m.group(1)]})", escaped)
        return pattern + ("/?" if self.trailing_slash else "")


def all_routes() -> list[Route]:
    """Every REST route, in matching order (specific paths before ``{name}`` ones)."""
    from yyai_kernel.server.rest import (
        evaluations,
        management,
        metrics,
        openapi,
        predictions,
        v2,
    )
    from yyai_kernel.server.rest import (
        rollout as rollout_handlers,
    )
    from yyai_kernel.server.rest import (
        samples as samples_handlers,
    )

    routes: list[Route] = []
    for module in (v2, predictions, management, rollout_handlers, samples_handlers, evaluations, metrics, openapi):
        routes.extend(module.ROUTES)
    return routes
