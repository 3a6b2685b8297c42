"""`yyai upload`, `remove`, `load`, `unload` and `reload`: manage a server's models, or a store folder.

``upload`` and ``remove`` change the archives, so they work on a running server (through
its REST API: the server verifies, stores and loads) or on a store folder (through
:class:`~yyai_kernel.store.store.ModelStore`, for the server's next start or rescan).
``load``, ``unload`` and ``reload`` act on loaded models, which only a running server
holds; given a store folder they say so and how to name the server.
"""

from __future__ import annotations

from pathlib import Path

import typer

from yyai_kernel.archive import SUFFIX
from yyai_kernel.cli import CHANGE, app, fail
from yyai_kernel.cli.target import (
    CHANGE_SERVER_HELP,
    STORE_HELP,
    TOKEN_HELP,
    client,
    default_line,
    on_server,
    server_only,
    status_line,
    store_path,
)
from yyai_kernel.cli.words import CLI_WORDS
from yyai_kernel.errors import YyaiError
from yyai_kernel.hints import Hint, Step, say
from yyai_kernel.quiet import VERBOSE_HELP, quiet_tensorflow
from yyai_kernel.types import ModelStatus, check_name

MODEL_FILES = (".keras", ".h5", ".hdf5")
RESCAN_NOTE = "a running server over that folder applies it at its next rescan (`yyai reload --server URL`)"


@app.command("upload", rich_help_panel=CHANGE)
def upload_cmd(
    ctx: typer.Context,
    archives: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help=f"{SUFFIX} archives to add."),
    server: str | None = typer.Option(None, "--server", envvar="YYAI_URL", help=CHANGE_SERVER_HELP),
    token: str | None = typer.Option(None, "--token", envvar="YYAI_TOKEN", help=TOKEN_HELP),
    store: Path | None = typer.Option(None, "--store", help=STORE_HELP),
    trust: bool = typer.Option(False, "--trust", help="On a store folder: allow Lambda layers with Python code "
                               "(runs that code to verify it). A server applies its own --trust."),
    promote: bool | None = typer.Option(None, "--promote/--stage", help="Make the new version the default "
                                           "(pinned), or stage it: it serves by its number while the default "
                                           "stays. Neither: staged when the model is pinned, labelled or under a "
                                           "traffic policy (a comparison is running), else it follows the latest."),
    label: str | None = typer.Option(None, "--label", help="Point this version label at the new version."),
    replace: bool = typer.Option(False, "--replace", help="Replace other content under the same name and version "
                                 "(refused while a label or traffic policy names it). The same content again is "
                                 "never an error."),
    verbose: bool = typer.Option(False, "--verbose", help=VERBOSE_HELP),
) -> None:
    """Add archives: upload them to a running server (verified, stored and loaded), or copy them into a store.

    Build an archive from a Keras model with `yyai archive` first. A new version of a model
    under comparison is staged until you promote it (`yyai default MODEL VERSION`).

    Examples:

        yyai upload digits-3.yyar --server http://127.0.0.1:8866 --token T

        yyai upload digits-3.yyar --stage --label candidate --store model_archives
    """
    for path in archives:
        if path.suffix.lower() in MODEL_FILES:
            fail(f"{path.name} is a Keras model file, not a {SUFFIX} archive; {say(CLI_WORDS, Hint(Step.PACK))}")
    if on_server(ctx, server, store):
        with client(server, token) as remote:
            for path in archives:
                try:
                    result = remote.add_archive(path, promote=promote, label=label, replace=replace)
                except YyaiError as exc:
                    fail(f"{path.name}: {exc.say(CLI_WORDS)}")
                typer.echo(f"{_what(result)} on {remote.url}; {default_line(result.model)}")
        return
    quiet_tensorflow(verbose)  # the store verifies each archive, which loads its models
    from yyai_kernel.store.store import ModelStore

    try:
        folder = ModelStore(store_path(store))
    except YyaiError as exc:
        fail(exc)
    for path in archives:
        try:
            record, staged = _add_to_store(folder, path, trust, promote, label, replace)
        except YyaiError as exc:
            fail(f"{path.name}: {exc.say(CLI_WORDS)}")
        if record is None:
            typer.echo(f"{path.name} is already in {folder.root} with the same content: nothing changed")
            continue
        typer.echo(f"added {record.name} v{record.version}{' (staged)' if staged else ''} to {folder.root}; "
                   f"{_store_default(folder, record.name)}; {RESCAN_NOTE}")


def _what(result) -> str:
    """What an upload did, in one clause."""
    if not result.changed:
        return f"{result.name} v{result.version} was already there with the same content: nothing changed"
    staged = f", staged (promote it with `yyai default {result.name} {result.version}`)" if result.staged else ""
    return f"installed {result.name} v{result.version}{staged}"


def _add_to_store(folder, path: Path, trust: bool, promote: bool | None, label: str | None, replace: bool):
    """Copy an archive into a store folder by the server's install rules (``registry/installs.py``):
    (record, staged), where record is None when the same content was there already."""
    from yyai_kernel.archive import read_manifest
    from yyai_kernel.registry import installs
    from yyai_kernel.types import InstallOptions

    options = InstallOptions.parse(promote, label, replace)
    manifest = read_manifest(path)
    if installs.already_there(folder, path, manifest, options):
        return None, False
    staged = installs.stage(folder, manifest, options, auto_promote=True)
    record = folder.add(path, trusted=trust, replace=replace)
    installs.after_add(folder, record.name, record.version, options)
    return record, staged


@app.command("remove", rich_help_panel=CHANGE)
def remove_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The model."),
    version: int = typer.Argument(..., min=1, help="The version whose archive to delete."),
    server: str | None = typer.Option(None, "--server", envvar="YYAI_URL", help=CHANGE_SERVER_HELP),
    token: str | None = typer.Option(None, "--token", envvar="YYAI_TOKEN", help=TOKEN_HELP),
    store: Path | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Delete a version: unload it and delete its archive (refused while a label or traffic policy names it).

    Examples:

        yyai remove digits 1 --server http://127.0.0.1:8866 --token T

        yyai remove digits 1 --store model_archives
    """
    try:
        check_name(name)
        if on_server(ctx, server, store):
            with client(server, token) as remote:
                result = remote.remove(name, version, purge=True)
            left = status_line(result) if isinstance(result, ModelStatus) else f"{name}: no version is left"
            typer.echo(f"removed {name} v{version} from the server's store; {left}")
            return
        from yyai_kernel.store.store import ModelStore

        folder = ModelStore(store_path(store))
        folder.remove(name, version)
        left = _store_default(folder, name) if name in folder.names() else "no version is left"
    except YyaiError as exc:
        fail(exc)
    typer.echo(f"removed {name} v{version} from {folder.root}; {name}: {left}; {RESCAN_NOTE}")


@app.command("load", rich_help_panel=CHANGE)
def load_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The model."),
    version: int | None = typer.Argument(None, min=1, help="The version (default: the default version)."),
    server: str | None = typer.Option(None, "--server", envvar="YYAI_URL", help=CHANGE_SERVER_HELP),
    token: str | None = typer.Option(None, "--token", envvar="YYAI_TOKEN", help=TOKEN_HELP),
    store: Path | None = typer.Option(None, "--store", help="Refused: a store folder holds no loaded models."),
) -> None:
    """Load a version on a running server, so that it serves (it stays loaded until unloaded or evicted).

    Example:

        yyai load digits 1 --server http://127.0.0.1:8866 --token T
    """
    if not on_server(ctx, server, store):
        server_only("yyai load", "loads a version into a running server", "yyai load digits 1 --server "
                    "http://127.0.0.1:8866 --token T")
    status = _on_server(server, token, lambda remote: remote.load(name, version))
    which = f"v{version}" if version is not None else f"v{status.default}"
    took = status.version(int(status.default if version is None else version))
    timing = f" in {took.load_time_s:.1f} s" if took is not None and took.load_time_s is not None else ""
    typer.echo(f"loaded {name} {which}{timing}; {status_line(status)}")


@app.command("unload", rich_help_panel=CHANGE)
def unload_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The model."),
    version: int | None = typer.Argument(None, min=1, help="The version (default: every version of the model)."),
    server: str | None = typer.Option(None, "--server", envvar="YYAI_URL", help=CHANGE_SERVER_HELP),
    token: str | None = typer.Option(None, "--token", envvar="YYAI_TOKEN", help=TOKEN_HELP),
    store: Path | None = typer.Option(None, "--store", help="Refused: a store folder holds no loaded models."),
) -> None:
    """Stop serving a version (or every version) on a running server; the archives stay in the store.

    Example:

        yyai unload digits 1 --server http://127.0.0.1:8866 --token T
    """
    if not on_server(ctx, server, store):
        server_only("yyai unload", "unloads versions from a running server", "yyai unload digits 1 --server "
                    "http://127.0.0.1:8866 --token T")
    status = _on_server(server, token, lambda remote: remote.unload(name, version))
    which = f"v{version}" if version is not None else "every version"
    again = f"yyai load {name}" + (f" {version}" if version is not None else "")
    typer.echo(f"unloaded {name} {which} (the archive stays; `{again}` serves it again); {status_line(status)}")


@app.command("reload", rich_help_panel=CHANGE)
def reload_cmd(
    ctx: typer.Context,
    name: str | None = typer.Argument(None, help="The model (default: re-read the whole store)."),
    server: str | None = typer.Option(None, "--server", envvar="YYAI_URL", help=CHANGE_SERVER_HELP),
    token: str | None = typer.Option(None, "--token", envvar="YYAI_TOKEN", help=TOKEN_HELP),
    store: Path | None = typer.Option(None, "--store", help="Refused: a store folder is read when a server starts."),
) -> None:
    """Make a running server re-read its store: one model (reloaded in place), or every model.

    Examples:

        yyai reload digits --server http://127.0.0.1:8866 --token T

        yyai reload --server http://127.0.0.1:8866 --token T
    """
    if not on_server(ctx, server, store):
        server_only("yyai reload", "makes a running server re-read its store (a server reads a store folder "
                    "when it starts)", "yyai reload --server http://127.0.0.1:8866 --token T")
    if name is not None:
        status = _on_server(server, token, lambda remote: remote.reload(name))
        typer.echo(f"reloaded {status_line(status)}")
        return
    reply = _on_server(server, token, lambda remote: remote.reload())
    for model, body in sorted(reply.items()):
        if "error" in body:
            typer.echo(f"{model}: error: {body['error']}")
        else:
            typer.echo(f"reloaded {status_line(ModelStatus.from_json(body))}")
    if not reply:
        typer.echo("the store holds no models")


def _on_server(server: str | None, token: str | None, call):
    try:
        with client(server, token) as remote:
            return call(remote)
    except YyaiError as exc:
        fail(exc)


def _store_default(folder, name: str) -> str:
    """The default of a model in a store folder and why, as the CLI says it."""
    from yyai_kernel.registry.defaults import default_reason

    versions = folder.versions(name)
    return default_reason(name, folder.default_version(name), folder.pins().get(name), versions[-1]).say(CLI_WORDS)
