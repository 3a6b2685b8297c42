"""`yyai evaluate`: score versions of a model on a labelled set; a gate for CI with --min-accuracy.

The set's images are sent through the model as it is served: in this process over a store
folder (`--store`, loads TensorFlow and the versions asked for), or through a running
server's prediction API (`--server`, batched requests; the versions must be loaded
there). Either way the library's `evaluate()` does the work, with a rich progress bar on a
terminal (none in a pipe or a notebook's `!yyai evaluate`, where redrawing leaves escape codes).

`--data` is a folder, a `.zip` or a `labels.csv` on this machine, or `bundled` (the first
labelled set the model's archive bundles, role `eval`), or `bundled:NAME` (that one, such
as `bundled:eval/digits-eval.zip`). A bundled set comes from the archive of the first
version named (default: the default version). For a table model the set is a CSV of its
features and a truth column (`--target NAME`; default `label`, else `target`); where two
versions disagree, the rows are printed.

Exit status: 0; 1 for an error (the set or the model cannot be used); 2 for a bad option;
3 when `--min-accuracy X` is given and any version scored below X.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from yyai_kernel.cli import DEFAULT_STORE, MEASURE, app, console, fail, live_display
from yyai_kernel.cli.target import SERVER_HELP, TOKEN_HELP, on_server
from yyai_kernel.errors import YyaiError
from yyai_kernel.quiet import VERBOSE_HELP, quiet_tensorflow
from yyai_kernel.types import FileRole, OutputKind, parse_version

BUNDLED = "bundled"
BELOW_THE_BAR = 3  # exit status when a version scores below --min-accuracy
SHOWN_BAD_ITEMS = 10
SHOWN_ROWS = 10  # disagreeing rows printed per pair of versions


@app.command("evaluate", rich_help_panel=MEASURE)
def evaluate_cmd(
    ctx: typer.Context,
    models: list[str] = typer.Argument(..., help="MODEL or MODEL:VERSION, one or more versions of one model."),
    data: str = typer.Option(..., "--data", help="A folder, .zip or labels.csv here; or 'bundled' / "
                             "'bundled:NAME' for a set the model's archive bundles."),
    server: str | None = typer.Option(None, "--server", envvar="YYAI_URL", help=SERVER_HELP),
    token: str | None = typer.Option(None, "--token", envvar="YYAI_TOKEN", help=TOKEN_HELP),
    store: Path | None = typer.Option(None, "--store", help="Evaluate in this process over a store folder when no "
                               "--server is given (default: YYAI_STORE or model_archives; loads TensorFlow)."),
    json_out: Path | None = typer.Option(None, "--json",
                                         help="Write the whole result (scores, pairs, items) as JSON here."),
    csv_out: Path | None = typer.Option(None, "--csv",
                                        help="Write one row per item (each version's answer) as CSV here."),
    min_accuracy: float | None = typer.Option(None, "--min-accuracy", min=0.0, max=1.0,
                                       help=f"Exit with status {BELOW_THE_BAR} when any version's accuracy is below."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images (or rows) per prediction request."),
    target: str | None = typer.Option(None, "--target", help="A table set's column that holds the truth "
                                      "(default: label, else target); its other columns are the features."),
    verbose: bool = typer.Option(False, "--verbose", help=VERBOSE_HELP),
) -> None:
    """Score versions of a model on a labelled set: a table of scores, and where versions disagree.

    Examples:

        yyai evaluate digits:1 digits:2 --data bundled --store model_archives --min-accuracy 0.95

        yyai evaluate digits --data my-digits.zip --server http://127.0.0.1:8866 --token T --csv out.csv

        yyai evaluate wine:1 wine:2 --data held-out.csv --target cultivar --store model_archives
    """
    name, versions = _parse_models(models)
    server = server if on_server(ctx, server, store) else None
    try:
        with _backend(name, versions, server, token, store, verbose) as backend:
            dataset = _dataset(backend, name, versions, data, target)
            result = _run(backend, name, versions, dataset, batch_size)
    except YyaiError as exc:
        fail(exc)
    if json_out:
        json_out.write_text(json.dumps(result.to_json(), indent=1))
    if csv_out:
        csv_out.write_text(result.to_csv())
    _print(result)
    if min_accuracy is not None:
        _gate(result, min_accuracy)


def _parse_models(models: list[str]) -> tuple[str, list[int | None]]:
    names, versions = set(), []
    for text in models:
        name, _, version = text.partition(":")
        names.add(name)
        try:
            versions.append(parse_version(version or None))
        except YyaiError as exc:
            fail(exc)
    if len(names) != 1:
        fail(f"give versions of one model (got {', '.join(sorted(names))}); evaluate the others in their own run")
    return names.pop(), versions


@contextlib.contextmanager
def _backend(name: str, versions: list[int | None], server, token, store, verbose):
    """The HTTP client of a running server, or the in-process backend over a store with the versions loaded."""
    if server:
        from yyai_kernel.client import YyaiClient

        with YyaiClient(server, token) as client:
            yield client
        return
    quiet_tensorflow(verbose)
    from yyai_kernel.plane.local import LocalBackend
    from yyai_kernel.registry.registry import Registry
    from yyai_kernel.store.store import ModelStore

    backend = LocalBackend.over(Registry(ModelStore(store or Path(DEFAULT_STORE))))
    try:
        for version in versions:
            backend.load(name, version)
        yield backend
    finally:
        backend.close()


def _dataset(backend, name: str, versions: list[int | None], data: str, target: str | None):
    """The labelled set: a path here, or a set the archive of the first version named bundles."""
    from yyai_kernel.evaluation.sets import open_set, set_from_bytes

    kind, _, set_name = data.partition(":")
    if kind != BUNDLED:
        return open_set(data, target=target)
    version = versions[0]
    found = backend.bundled(name, version, FileRole.EVAL)
    if not found.files:
        raise YyaiError(f"No version of {name} bundles a labelled set; pass --data PATH (a folder, zip or CSV).")
    set_name = set_name or found.files[0]
    where = f"{name} v{found.source}"
    if found.source != found.version:
        console.print(f"using the labelled set {set_name} bundled with {where} (v{found.version} bundles none)")
    return set_from_bytes(backend.eval_set(name, set_name, version), description=f"{where}: {set_name}",
                          target=target)


def _run(backend, name, versions, dataset, batch_size: int):
    from yyai_kernel.evaluation.run import evaluate

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not live_display()) as progress:
        task = progress.add_task(escape(f"{name} on {dataset.description}"), total=len(dataset.items))
        return evaluate(backend, name, versions, dataset, batch_size=batch_size,
                        progress=lambda done, total: progress.update(task, completed=done, total=total))


def _print(result) -> None:
    classify = result.kind is OutputKind.CLASSIFICATION
    headers = ("version", "output", "n", "accuracy", "top-3", "macro F1") if classify else (
        "version", "output", "n", "MAE", "RMSE", "R²")
    table = Table(*headers, title=escape(f"{result.model} on {result.dataset}"))
    for version in result.versions:
        table.add_row(f"v{version.version}", version.output, *_score_cells(version.scores, classify))
        for member, scores in version.members.items():
            table.add_row("", f"  member {member}", *_score_cells(scores, classify), style="dim")
    console.print(table)
    for pair in result.pairs:
        typer.echo(f"v{pair.a} and v{pair.b} disagree on {len(pair.disagreements)} of {len(result.items)} items")
        rows = [d for d in pair.disagreements if d.inputs is not None][:SHOWN_ROWS]
        if rows:
            features = list(rows[0].inputs or {})
            table = Table("row", "truth", f"v{pair.a}", f"v{pair.b}", *map(escape, features),
                          title=f"rows where v{pair.a} and v{pair.b} disagree")
            for d in rows:
                table.add_row(d.key, str(d.truth), str(d.a), str(d.b),
                              *(escape(str((d.inputs or {}).get(f, ""))) for f in features))
            console.print(table)
            if len(pair.disagreements) > len(rows):
                typer.echo(f"  ... and {len(pair.disagreements) - len(rows)} more (see --json)")
    if result.bad_items:
        typer.echo(f"{len(result.bad_items)} item(s) left out:")
        for bad in result.bad_items[:SHOWN_BAD_ITEMS]:
            typer.echo(f"  {bad.key}: {bad.reason}")
        if len(result.bad_items) > SHOWN_BAD_ITEMS:
            typer.echo(f"  ... and {len(result.bad_items) - SHOWN_BAD_ITEMS} more (see --csv or --json)")


def _score_cells(scores, classify: bool) -> list[str]:
    if classify:
        top3 = scores.top_k[min(3, len(scores.top_k)) - 1]
        return [str(scores.n), f"{scores.accuracy:.4f}", f"{top3:.4f}", f"{scores.macro_f1:.4f}"]
    return [str(scores.n), f"{scores.mae:.4f}", f"{scores.rmse:.4f}", f"{scores.r2:.4f}"]


def _gate(result, min_accuracy: float) -> None:
    if result.kind is not OutputKind.CLASSIFICATION:
        fail("--min-accuracy applies to classification sets; this one is a regression set")
    below = [v for v in result.versions if v.scores.accuracy < min_accuracy]
    for version in below:
        typer.echo(f"v{version.version}: accuracy {version.scores.accuracy:.4f} is below {min_accuracy}", err=True)
    if below:
        raise typer.Exit(BELOW_THE_BAR)
