"""`yyai predict`: send image files to a model, on a running server or in-process on a store."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from yyai_kernel.cli import DEFAULT_STORE, MEASURE, app, console, fail
from yyai_kernel.cli.target import SERVER_HELP, TOKEN_HELP, on_server
from yyai_kernel.errors import YyaiError
from yyai_kernel.quiet import VERBOSE_HELP, quiet_tensorflow
from yyai_kernel.types import parse_version_ref


@app.command("predict", rich_help_panel=MEASURE)
def predict_cmd(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="MODEL, MODEL:VERSION or MODEL:LABEL (default: the default version)."),
    images: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="Image files (PNG, JPEG, ...)."),
    server: str | None = typer.Option(None, "--server", envvar="YYAI_URL", help=SERVER_HELP),
    token: str | None = typer.Option(None, "--token", envvar="YYAI_TOKEN", help=TOKEN_HELP),
    store: Path | None = typer.Option(None, "--store", help="Predict in this process over a store folder when no "
                                      "--server is given (default: YYAI_STORE or model_archives; loads TensorFlow)."),
    top: int = typer.Option(3, "--top", min=1, help="How many labels to show per image."),
    as_json: bool = typer.Option(False, "--json", help="Print the server's JSON reply instead of a table."),
    verbose: bool = typer.Option(False, "--verbose", help=VERBOSE_HELP),
) -> None:
    """Predict on image files: each file's top labels (or regression values).

    The images are read here and preprocessed as the archive's manifest says.

    Examples:

        yyai predict digits model_archives/samples/digit-3.png --server http://127.0.0.1:8866 --token T

        yyai predict digits:1 model_archives/samples/digit-*.png --store model_archives

        yyai predict digits:stable model_archives/samples/digit-3.png --store model_archives
    """
    name, _, version_text = model.partition(":")
    try:
        version = parse_version_ref(version_text or None)
        server = server if on_server(ctx, server, store) else None
        prediction = _predict(name, version, images, server, token, store, verbose)
    except YyaiError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(prediction.to_json(), indent=2))
        return
    table = Table("image", "answer", title=f"{prediction.name} v{prediction.version}")
    for i, row in enumerate(prediction.rows()):
        best = prediction.top_k(i, top)
        answer = ", ".join(f"{label} {p:.3f}" for label, p in best) if best else _values(row)
        table.add_row(images[i].name, answer)
    console.print(table)


def _predict(name, version, images: list[Path], server, token, store, verbose):
    if server:
        from yyai_kernel.client import YyaiClient

        with YyaiClient(server, token) as client:
            return client.predict_image_files(name, images, version)
    quiet_tensorflow(verbose)
    from yyai_kernel.plane.local import LocalBackend
    from yyai_kernel.registry.registry import Registry
    from yyai_kernel.store.store import ModelStore

    backend = LocalBackend.over(Registry(ModelStore(store or Path(DEFAULT_STORE))))
    try:
        backend.load(name, version)
        return backend.predict_images(name, [p.read_bytes() for p in images], version,
                                      filenames=[p.name for p in images])
    finally:
        backend.close()


def _values(row: dict) -> str:
    """A regression row (combined, else each member) in one line."""
    values = row["combined"] if row["combined"] is not None else next(iter(row["members"].values()))
    return ", ".join(f"{k} {v}" for k, v in values.items()) if isinstance(values, dict) else str(values)
