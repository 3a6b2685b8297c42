"""Where a command acts: a running server (``--server``/``--token``, or ``YYAI_URL``/``YYAI_TOKEN``)
or a store folder (``--store``), and how its results read in the CLI's words.

Why one module: every command that reads or changes models takes the same options and
picks its target by the same rule, and says a model's status the same way. A server is
reached through :class:`~yyai_kernel.client.YyaiClient` only; a store through
:class:`~yyai_kernel.store.store.ModelStore`. An explicit ``--store`` wins over a server
URL that only came from ``YYAI_URL``; both on the command line is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

from yyai_kernel.cli import DEFAULT_STORE, fail
from yyai_kernel.cli.words import CLI_WORDS
from yyai_kernel.types import ModelStatus

if TYPE_CHECKING:
    from yyai_kernel.client import YyaiClient

SERVER_HELP = "A running yyai server's URL (env YYAI_URL)."
CHANGE_SERVER_HELP = "A running yyai server's URL (env YYAI_URL); the change is live at once."
TOKEN_HELP = "The server's token (env YYAI_TOKEN)."
STORE_HELP = "The store folder (env YYAI_STORE, else model_archives) when no --server is given."


def on_server(ctx: typer.Context, server: str | None, store: Path | None) -> bool:
    """Whether the command goes to the server: a URL given, and no --store that outranks it."""
    if not server:
        return False
    if store is None:
        return True
    source = ctx.get_parameter_source("server")
    if source is not None and source.name == "ENVIRONMENT":  # click's enum, or typer's vendored copy of it
        return False  # --store on the command line wins over YYAI_URL from the environment
    fail("give --server or --store, not both")


def store_path(store: Path | None) -> Path:
    return store or Path(DEFAULT_STORE)


def client(server: str | None, token: str | None) -> YyaiClient:
    """A client of ``server``, which :func:`on_server` found set."""
    from yyai_kernel.client import YyaiClient

    if not server:
        fail("give --server URL (or set YYAI_URL)")
    return YyaiClient(server, token)


def server_only(command: str, what: str, example: str) -> NoReturn:
    """Refuse a command that only a running server can carry out, saying how to reach one."""
    fail(f"{command} {what}; a store folder holds archives, not loaded models. Give the server: "
         f"--server URL --token T (or set YYAI_URL and YYAI_TOKEN), e.g. {example}")


def loaded(status: ModelStatus) -> str:
    versions = ", ".join(f"v{v}" for v in status.loaded)
    return f"loaded {versions}" if versions else "no version loaded"


def default_line(status: ModelStatus) -> str:
    """Which version is the default and why, with any next step as a yyai command."""
    return status.default_why.say(CLI_WORDS) if status.default_why is not None else "no default"


def status_line(status: ModelStatus) -> str:
    """One line for a model's status: what is loaded, which version is the default and why."""
    return f"{status.name}: {loaded(status)}; {default_line(status)}"
