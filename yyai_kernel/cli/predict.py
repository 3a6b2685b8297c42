"""`yyai predict`: send image files (or a table's CSV of rows, a tensor's .npy) to a model, on a
running server or in-process on a store."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from yyai_kernel.cli import DEFAULT_STORE, MEASURE, app, console, fail
from yyai_kernel.cli.target import SERVER_HELP, TOKEN_HELP, on_server
from yyai_kernel.config import DEFAULT_MAX_ROWS
from yyai_kernel.errors import YyaiError
from yyai_kernel.protocol.records import given_of_file
from yyai_kernel.quiet import VERBOSE_HELP, quiet_tensorflow
from yyai_kernel.types import Given, Records, parse_version_ref


@app.command("predict", rich_help_panel=MEASURE)
def predict_cmd(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="MODEL, MODEL:VERSION or MODEL:LABEL (default: the default version)."),
    images: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="Image files (PNG, JPEG, ...); for a "
                                        "model that takes no image, one .csv of rows, .json or .npy."),
    server: str | None = typer.Option(None, "--server", envvar="YYAI_URL", help=SERVER_HELP),
    token: str | None = typer.Option(None, "--token", envvar="YYAI_TOKEN", help=TOKEN_HELP),
    store: Path | None = typer.Option(None, "--store", help="Predict in this process over a store folder when no "
                                      "--server is given (default: YYAI_STORE or model_archives; loads TensorFlow)."),
    top: int = typer.Option(3, "--top", min=1, help="How many labels to show per image."),
    as_json: bool = typer.Option(False, "--json", help="Print the server's JSON reply instead of a table."),
    verbose: bool = typer.Option(False, "--verbose", help=VERBOSE_HELP),
) -> None:
    """Predict on image files (or one file of rows or numbers): each one's top labels (or regression values).

    The files are read here; images are preprocessed as the archive's manifest says, a CSV's rows
    or a .npy's numbers checked against its features or shape.

    Examples:

        yyai predict digits model_archives/samples/digit-3.png --server http://127.0.0.1:8866 --token T

        yyai predict digits:1 model_archives/samples/digit-*.png --store model_archives

        yyai predict digits:stable model_archives/samples/digit-3.png --store model_archives

        yyai predict wine model_archives/samples/wine-rows.csv --store model_archives
    """
    name, _, version_text = model.partition(":")
    try:
        version = parse_version_ref(version_text or None)
        server = server if on_server(ctx, server, store) else None
        given = _given(images)
        prediction = _predict(name, version, images, given, server, token, store, verbose)
    except YyaiError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(prediction.to_json(), indent=2))
        return
    rows = [f.name for f in images] if given is None else _row_names(images[0].name, given, len(prediction))
    table = Table("image" if given is None else "row", "answer", title=f"{prediction.name} v{prediction.version}")
    for i, row in enumerate(prediction.rows()):
        best = prediction.top_k(i, top)
        answer = ", ".join(f"{label} {p:.3f}" for label, p in best) if best else _values(row)
        table.add_row(rows[i], answer)
    console.print(table)


RECORD_SUFFIXES = (".csv", ".json", ".npy")


def _given(files: list[Path]) -> Given | None:
    """One .csv, .json or .npy file: a table's rows or a tensor's numbers, read here; None for images."""
    if len(files) != 1 or files[0].suffix.lower() not in RECORD_SUFFIXES:
        return None
    return given_of_file(files[0].name, files[0].read_bytes(), max_rows=DEFAULT_MAX_ROWS)


def _row_names(source: str, given: Given, count: int) -> list[str]:
    """How each answered row is named: "rows.csv line 2", "x.npy [3]", or the file's name for one row."""
    if isinstance(given, Records) and given.lines:
        return [f"{source} {given.where(i)}" for i in range(count)]
    return [source] if count == 1 else [f"{source} [{i}]" for i in range(count)]


def _predict(name, version, images: list[Path], given: Given | None, server, token, store, verbose):
    if server:
        from yyai_kernel.client import YyaiClient

        with YyaiClient(server, token) as client:
            if given is not None:
                return client.predict_inputs(name, given, version)
            return client.predict_image_files(name, images, version)
    quiet_tensorflow(verbose)
    from yyai_kernel.plane.local import LocalBackend
    from yyai_kernel.registry.registry import Registry
    from yyai_kernel.store.store import ModelStore

    backend = LocalBackend.over(Registry(ModelStore(store or Path(DEFAULT_STORE))))
    try:
        backend.load(name, version)
        if given is not None:
            return backend.predict_inputs(name, given, version)
        return backend.predict_images(name, [p.read_bytes() for p in images], version,
                                      filenames=[p.name for p in images])
    finally:
        backend.close()


def _values(row: dict) -> str:
    """A regression row (combined, else each member) in one line."""
    values = row["combined"] if row["combined"] is not None else next(iter(row["members"].values()))
    return ", ".join(f"{k} {v}" for k, v in values.items()) if isinstance(values, dict) else str(values)
