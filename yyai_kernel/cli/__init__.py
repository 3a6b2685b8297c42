"""The `yyai` command: pack archives, inspect them, list a store, pin versions, predict and serve.

Why thin modules: every command only parses options and calls the library (`archive`,
`store`, the data plane or the HTTP client, `server.app`), so the CLI, the server and the
dashboard share one behaviour. Errors the library raises on purpose (`YyaiError`) print
as one readable line and exit 1, never as a traceback; a bad option exits 2. Keras is
imported only by commands that load models, so `yyai --help` and `yyai models` stay
fast, and those commands import TensorFlow through `quiet.quiet_tensorflow` so that its
C++ start-up log stays off the terminal unless `--verbose` (or `YYAI_LOG_LEVEL=debug`)
asks for it.

One module per group of commands: `archive.py` (archive, inspect), `models.py` (models,
default), `rollout.py` (label, traffic), `predict.py` (predict), `evaluate.py` (evaluate),
`serve.py` (serve), `ray.py` (ray). Each registers on `app` here.
"""

from __future__ import annotations

import os

import typer
from rich.console import Console

app = typer.Typer(
    name="yyai",
    help="Serve Keras models from versioned .yyar archives: pack, inspect, list, pin, predict and serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False)
DEFAULT_STORE = os.environ.get("YYAI_STORE", "model_archives")


def fail(message: str) -> None:
    """Print one error line on stderr and exit with status 1."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def usage_error(message: str, ctx: typer.Context) -> Exception:
    """Click's UsageError (exit status 2, printed in typer's error panel), whichever click typer uses.

    typer 0.12 uses the click package and newer typers a vendored copy; ``typer.BadParameter``
    derives from the right one in both, and only its "Invalid value" wording does not fit here.
    """
    usage = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
    return usage(message, ctx)


def main() -> None:  # pragma: no cover - `python -m yyai_kernel.cli`
    """Run the CLI."""
    app()


from yyai_kernel.cli import archive, evaluate, models, predict, ray, rollout, serve  # noqa: E402,F401  (each registers its commands on app)
