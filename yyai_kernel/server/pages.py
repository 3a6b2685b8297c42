"""yyai's own pages around the dashboard: a login page for yyai users, and a page that works offline.

**Login.** Without a token, the dashboard's ``/`` redirects to ``/login``, where
jupyter_server's stock page tells the reader to run ``jupyter server list``. yyai's page
asks for what a yyai user has: the token that ``yyai serve`` printed. It plugs in through
jupyter_server's supported hook, the identity provider's ``login_handler_class``; the
handler keeps Voila's login handler (and with it jupyter_server's login logic: the
password form, the cookie, the checks on ``next``) and replaces only the template. The
page's form sends the token as ``?token=`` to the page the visitor asked for, which is
how ``yyai serve``'s printed URL signs in; a rejected token comes back here, and the page
says so.

**The page starts its kernel.** The preheated dashboard kernel waits until the models are
loaded (``kernels.py``); a visit before that should not: :class:`DashboardPage` is Voila's
page handler, which tells the kernel manager that a visitor waits before it renders.

**Offline.** Voila's ``lab`` template links Font Awesome from a CDN (cdn.jsdelivr.net),
although Voila's own bundle, ``voila-style.js`` (served from ``/voila/static/``), already
ships Font Awesome 5 with its v4 shims and font files. ``templates/index.html.j2`` extends
Voila's template and drops those links, so the page needs nothing past this server and
the browser logs no failed request. It goes in through Voila's ``template_paths`` trait,
ahead of Voila's own folders (``YyaiServer.setup_template_dirs``). The notebook package's JupyterLab extension
(``@jupyter-notebook/lab-extension``), installed by the ``jupyter`` metapackage, is built
for a newer JupyterLab than the one inside Voila and fails to load in the page, so it is
denied (``VoilaConfiguration.extension_denylist``; a config file can change that). So is
``jupyterlab_pygments``, which styles code cells: the page shows none, and every
extension is scripts the browser fetches and runs before the dashboard appears.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jinja2
from voila.tornado.handler import TornadoVoilaHandler
from voila.voila_identity_provider import VoilaLoginHandler

TEMPLATES = Path(__file__).resolve().parent / "templates"

# What yyai sets in VoilaConfiguration (the user's config file still wins).
VOILA_CONFIGURATION = {"extension_denylist": ["@jupyter-notebook/lab-extension", "jupyterlab_pygments"]}

_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)


def login_target(next_url: str, base_url: str) -> tuple[str, bool]:
    """Where the login form sends the token (a path on this server), and whether a token was refused.

    ``next`` is the page the visitor asked for; one that carries ``?token=`` came back
    here because that token was wrong. A ``next`` off this server is ignored.
    """
    parts = urlsplit(next_url)
    if parts.scheme or parts.netloc or not parts.path.startswith(base_url):
        return base_url, False
    return parts.path, "token" in parse_qs(parts.query)


class YyaiLoginHandler(VoilaLoginHandler):
    """Voila's login handler, rendering yyai's login page."""

    def get_template(self, name):
        return _ENV.get_template(name) if name == "login.html" else super().get_template(name)

    @property
    def template_namespace(self) -> dict:
        target, rejected = login_target(self.get_argument("next", default=self.base_url), self.base_url)
        return {**super().template_namespace, "target": target, "rejected": rejected}


class DashboardPage(TornadoVoilaHandler):
    """Voila's dashboard page, which starts the dashboard kernel at once when a visitor asks for it."""

    async def prepare(self):
        checked = super().prepare()  # jupyter_server's (the token or the login cookie)
        if inspect.isawaitable(checked):
            await checked
        visited = getattr(self.kernel_manager, "visited", None)
        if visited is not None and not self._finished:
            visited()


def with_dashboard_page(handlers: list) -> list:
    """Voila's handlers, its dashboard page handler replaced by :class:`DashboardPage`."""
    return [(h[0], DashboardPage, *h[2:]) if len(h) > 1 and h[1] is TornadoVoilaHandler else h for h in handlers]
