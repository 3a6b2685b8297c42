"""`yyai models` (a store's or a server's models) and `yyai default` (pin a version, or follow the latest again)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from yyai_kernel.cli import CHANGE, LOOK, app, console, fail
from yyai_kernel.cli.target import (
    CHANGE_SERVER_HELP,
    SERVER_HELP,
    STORE_HELP,
    TOKEN_HELP,
    client,
    default_line,
    on_server,
    store_path,
)
from yyai_kernel.cli.words import CLI_WORDS
from yyai_kernel.errors import YyaiError


@app.command("models", rich_help_panel=LOOK)
def models_cmd(
    ctx: typer.Context,
    store: Path | None = typer.Option(None, "--store", help=STORE_HELP),
    server: str | None = typer.Option(None, "--server", envvar="YYAI_URL", help=SERVER_HELP),
    token: str | None = typer.Option(None, "--token", envvar="YYAI_TOKEN", help=TOKEN_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the models: versions, default, pin, labels, traffic policy, what a server has loaded, and any problems.

    Examples:

        yyai models --store model_archives

        yyai models --server http://127.0.0.1:8866 --token T
    """
    try:
        where, rows, problems = _on_server(server, token) if on_server(ctx, server, store) else _on_store(store)
    except YyaiError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps({where[0]: where[1], "models": rows, "problems": problems}, indent=2))
        return
    served = where[0] == "server"
    columns = ("name", "versions", "default", "pinned", "labels", "traffic") + (("loaded",) if served else ())
    table = Table(*columns, title=escape(f"models {'on' if served else 'in'} {where[1]}"))
    for row in rows:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(row["labels"].items()))
        traffic = ", ".join(f"{side} v{split['version']} {split['percent']:g}%" for side, split in
                            (row["traffic"] or {}).items() if side in ("canary", "shadow"))
        cells = [row["name"], ", ".join(map(str, row["versions"])), str(row["default"]),
                 "yes" if row["pinned"] else "no", escape(labels), traffic]
        if served:
            cells.append(", ".join(map(str, row["loaded"])) or "none")
        table.add_row(*cells)
    console.print(table)
    if not rows:
        typer.echo("no models")
    for p in problems:
        typer.echo(f"problem ({p['kind']}): {p['path']}: {p['error']}")


def _on_store(store: Path | None) -> tuple[tuple[str, str], list[dict], list[dict]]:
    from yyai_kernel.store.store import ModelStore

    s = ModelStore(store_path(store))
    rows = [{"name": n, "versions": s.versions(n), "default": s.default_version(n), "pinned": n in s.pins(),
             "labels": s.labels(n), "traffic": policy.to_json() if (policy := s.traffic(n)) else None}
            for n in s.names()]
    problems = [{"path": str(p.path), "kind": p.kind, "error": p.error} for p in s.problems]
    if s.state_error:
        problems.append({"path": str(s.root), "kind": "state", "error": s.state_error})
    return ("store", str(s.root)), rows, problems


def _on_server(server: str | None, token: str | None) -> tuple[tuple[str, str], list[dict], list[dict]]:
    with client(server, token) as remote:
        status = remote.status()
        url = remote.url
    rows = [{"name": m.name, "versions": sorted(v for v, s in m.versions.items() if s.in_store),
             "default": m.default, "pinned": m.pinned, "labels": dict(m.labels),
             "traffic": m.traffic.to_json() if m.traffic else None, "loaded": m.loaded}
            for m in status.models.values()]
    problems = [p.to_json() for p in status.problems]
    if status.state_error:
        problems.append({"path": "the store's state file", "kind": "state", "error": status.state_error})
    return ("server", url), rows, problems


@app.command("default", rich_help_panel=CHANGE)
def default_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The model."),
    version: int | None = typer.Argument(None, min=1, help="The version to make the default (pinned)."),
    latest: bool = typer.Option(False, "--latest", help="Forget the pin: the latest version is the default again."),
    store: Path | None = typer.Option(None, "--store", help=STORE_HELP),
    server: str | None = typer.Option(None, "--server", envvar="YYAI_URL", help=CHANGE_SERVER_HELP),
    token: str | None = typer.Option(None, "--token", envvar="YYAI_TOKEN", help=TOKEN_HELP),
) -> None:
    """Pin a version as a model's default, or with --latest follow the latest version again.

    On a running server (--server URL) the change is live when the command returns, and is
    persisted in the store. On a store folder the pin is written for the next start (a
    running server over that folder picks it up at its next rescan).

    Examples:

        yyai default digits 1 --server http://127.0.0.1:8866 --token T

        yyai default digits --latest --store model_archives
    """
    if latest == (version is not None):
        fail("give a VERSION to pin, or --latest to follow the latest version (not both)")
    if on_server(ctx, server, store):
        _default_on_server(name, version, server, token)
    else:
        _default_on_store(name, version, store_path(store))


def _default_on_server(name: str, version: int | None, url: str | None, token: str | None) -> None:
    try:
        with client(url, token) as remote:
            status = remote.set_default(name, version) if version is not None else remote.follow_latest(name)
    except YyaiError as exc:
        fail(exc)
    typer.echo(f"{name}: {default_line(status)}")


def _default_on_store(name: str, version: int | None, root: Path) -> None:
    from yyai_kernel.registry.defaults import default_reason
    from yyai_kernel.store.store import ModelStore

    try:
        store = ModelStore(root)
        if version is not None:
            store.pin(name, version)
        else:
            store.unpin(name)
        versions = store.versions(name)
    except YyaiError as exc:
        fail(exc)
    pin = store.pins().get(name)
    reason = default_reason(name, store.default_version(name), pin, versions[-1]).say(CLI_WORDS)
    typer.echo(f"{name}: {reason}. Written to {store.root}: a running server over it applies it at its next rescan.")
