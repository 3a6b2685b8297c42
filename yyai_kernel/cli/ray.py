"""`yyai ray`: the store served by Ray Serve, the REST API of `yyai serve` on a Ray cluster.

Typer parses and refuses options (an unknown one exits 2 before Ray is imported); the
work is `yyai_kernel.cli.raylaunch.serve_on_ray`, which joins or starts Ray and runs the
application until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

from pathlib import Path

import typer

from yyai_kernel.cli import DEFAULT_STORE, SERVE, app, fail, usage_error
from yyai_kernel.errors import YyaiError


@app.command("ray", rich_help_panel=SERVE)
def ray_cmd(
    ctx: typer.Context,
    store: Path = typer.Option(Path(DEFAULT_STORE), "--store",
                               help="The store folder: the same path on every node of the cluster (env YYAI_STORE)."),
    replicas: int | None = typer.Option(None, "--replicas", min=1,
                                        help="A fixed number of model replicas (default: 1)."),
    autoscale: str | None = typer.Option(None, "--autoscale", metavar="MIN:MAX",
                                            help="Scale the model replicas with the load, between MIN and MAX."),
    host: str = typer.Option("127.0.0.1", "--host", help="Where Serve's HTTP proxy listens."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="The HTTP port."),
    token: str | None = typer.Option(None, "--token",
                                        help="The API token (default: $YYAI_TOKEN, else a random one, printed)."),
    no_token: bool = typer.Option(False, "--no-token", help="Serve without authentication."),
    trust: list[str] = typer.Option([], "--trust", help="A model whose archives may run Lambda code (repeatable)."),
    address: str | None = typer.Option(None, "--address",
                                          help="A Ray cluster to join (default: $RAY_ADDRESS, the one `ray start` "
                                               "began here, else a new local Ray on loopback)."),
    max_models: int | None = typer.Option(None, "--max-models", min=1, help="Archives kept loaded per replica (LRU)."),
) -> None:
    """Serve a store on Ray Serve: the REST API of yyai serve, models multiplexed over Ray replicas.

    Starts a local Ray if none runs. Example:

        yyai ray --store model_archives --replicas 2 --port 8000
    """
    from yyai_kernel.cli.raylaunch import RayOptions, parse_autoscale, serve_on_ray

    if replicas is not None and autoscale is not None:
        raise usage_error("--replicas and --autoscale exclude each other: give one.", ctx)
    if token is not None and no_token:
        raise usage_error("--token and --no-token exclude each other: give one.", ctx)
    try:
        bounds = parse_autoscale(autoscale) if autoscale is not None else None
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--autoscale") from None
    if not store.is_dir():
        fail(f"model store {store} is not a folder; create it or pass another --store")
    options = RayOptions(store, replicas, bounds, host, port, token, no_token, tuple(trust), address, max_models)
    try:
        serve_on_ray(options, echo=typer.echo)
    except YyaiError as exc:
        fail(exc)
