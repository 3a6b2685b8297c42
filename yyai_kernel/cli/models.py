"""`yyai models` (list a store) and `yyai default` (pin a version, or follow the latest again)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from yyai_kernel.cli import DEFAULT_STORE, app, console, fail
from yyai_kernel.errors import YyaiError


@app.command("models")
def models_cmd(
    store: Path = typer.Option(Path(DEFAULT_STORE), "--store", help="The store folder (env YYAI_STORE)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the models a store holds: versions, default, pin, labels, traffic policy, and any problems.

    Example:

        yyai models --store model_archives
    """
    from yyai_kernel.store.store import ModelStore

    try:
        s = ModelStore(store)
    except YyaiError as exc:
        fail(exc.message)
    rows = [{"name": n, "versions": s.versions(n), "default": s.default_version(n), "pinned": n in s.pins(),
             "labels": s.labels(n), "traffic": s.traffic(n).to_json() if s.traffic(n) else None}
            for n in s.names()]
    problems = [{"path": str(p.path), "kind": p.kind, "error": p.error} for p in s.problems]
    if s.state_error:
        problems.append({"path": str(s.root), "kind": "state", "error": s.state_error})
    if as_json:
        typer.echo(json.dumps({"store": str(s.root), "models": rows, "problems": problems}, indent=2))
        return
    table = Table("name", "versions", "default", "pinned", "labels", "traffic", title=escape(f"models in {s.root}"))
    for row in rows:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(row["labels"].items()))
        traffic = ", ".join(f"{side} v{split['version']} {split['percent']:g}%" for side, split in
                            (row["traffic"] or {}).items() if side in ("canary", "shadow"))
        table.add_row(row["name"], ", ".join(map(str, row["versions"])), str(row["default"]),
                      "yes" if row["pinned"] else "no", escape(labels), traffic)
    console.print(table)
    if not rows:
        typer.echo("no models")
    for p in problems:
        typer.echo(f"problem ({p['kind']}): {p['path']}: {p['error']}")




SERVER_HELP = "A running yyai server's URL (env YYAI_URL); the change is live at once."
TOKEN_HELP = "The server's token (env YYAI_TOKEN)."


@app.command("default")
def default_cmd(
    name: str = typer.Argument(..., help="The model."),
    version: int = typer.Argument(None, min=1, help="The version to make the default (pinned)."),
    latest: bool = typer.Option(False, "--latest", help="Forget the pin: the latest version is the default again."),
    store: Path = typer.Option(None, "--store", help="The store folder (env YYAI_STORE) when no --server is given."),
    server: str = typer.Option(None, "--server", envvar="YYAI_URL", help=SERVER_HELP),
    token: str = typer.Option(None, "--token", envvar="YYAI_TOKEN", help=TOKEN_HELP),
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
    if server:
        _default_on_server(name, version, server, token)
    else:
        _default_on_store(name, version, store or Path(DEFAULT_STORE))


def _default_on_server(name: str, version: int | None, url: str, token: str | None) -> None:
    from yyai_kernel.client import YyaiClient

    try:
        with YyaiClient(url, token) as client:
            status = client.set_default(name, version) if version is not None else client.follow_latest(name)
    except YyaiError as exc:
        fail(exc.message)
    typer.echo(f"{name}: {status.default_reason}")


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
        fail(exc.message)
    pin = store.pins().get(name)
    typer.echo(f"{name}: {default_reason(name, store.default_version(name), pin, versions[-1])} "
               f"(written to {store.root}; a running server over it applies it at its next rescan)")
