"""The `yyai` command: pack archives, inspect them, list a store, pin versions, predict and serve.

Why thin modules: every command only parses options and calls the library (`archive`,
`store`, the data plane or the HTTP client, `server.app`), so the CLI, the server and the
dashboard share one behaviour. Errors the library raises on purpose (`YyaiError`) print
as one readable line and exit 1, never as a traceback; a bad option exits 2. Keras is
imported only by commands that load models, so `yyai --help` and `yyai models` stay
fast, and those commands import TensorFlow through `quiet.quiet_tensorflow` so that its
C++ start-up log stays off the terminal unless `--verbose` (or `YYAI_LOG_LEVEL=debug`)
asks for it.

A library error's next steps (``YyaiError.hints``, such as loading a version) are worded
as ``yyai`` commands (`words.py`), never as the REST routes the server's own reply names.

One module per group of commands: `archive.py` (archive, inspect), `models.py` (models,
default), `manage.py` (upload, remove, load, unload, reload), `rollout.py` (label,
traffic), `predict.py` (predict), `evaluate.py` (evaluate), `serve.py` (serve), `ray.py`
(ray, whose work is `raylaunch.py`). Each registers on `app` here, in a help panel of
:data:`PANELS` (serve, look, change, measure); ``yyai --help`` lists the panels in that order.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer
from rich.console import Console
from typer.core import TyperGroup

from yyai_kernel.cli.words import CLI_WORDS
from yyai_kernel.errors import YyaiError

SERVE, LOOK, CHANGE, MEASURE = "Serve", "Look", "Change", "Measure"
PANELS = (SERVE, LOOK, CHANGE, MEASURE)  # the order of `yyai --help`; alphabetical within a panel


class _ByPanel(TyperGroup):
    """Lists commands panel by panel (typer shows the panels in the order their first command comes)."""

    def list_commands(self, ctx) -> list[str]:
        def rank(name: str) -> tuple[int, str]:
            panel = getattr(self.commands[name], "rich_help_panel", None)
            return (PANELS.index(panel) if panel in PANELS else len(PANELS), name)

        return sorted(super().list_commands(ctx), key=rank)


def _version(value: bool) -> None:
    if value:
        from yyai_kernel import __version__

        typer.echo(f"yyai {__version__}")
        raise typer.Exit()


app = typer.Typer(
    name="yyai",
    cls=_ByPanel,
    help="Serve Keras models from versioned .yyar archives: pack, upload, inspect, pin, predict, evaluate and serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False)
JUPYTER_KERNEL_ENV = "JPY_PARENT_PID"  # jupyter_client sets it in every kernel; a notebook's `!cmd` inherits it


def live_display() -> bool:
    """Whether a progress bar may redraw itself in place: stdout is a terminal of its own.

    Not in a pipe or a file, and not in a notebook's ``!yyai ...``: ipykernel runs that
    under a pseudo-terminal with ``FORCE_COLOR=1``, so rich takes it for a terminal, but the
    notebook keeps cursor-movement codes as text. Colours are fine there; redrawing is not.
    """
    return sys.stdout.isatty() and JUPYTER_KERNEL_ENV not in os.environ


DEFAULT_STORE = os.environ.get("YYAI_STORE", "model_archives")


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print yyai's version and exit.")) -> None:
    """Serve Keras models from versioned .yyar archives: pack, upload, inspect, pin, predict, evaluate and serve."""


def fail(problem: str | YyaiError) -> NoReturn:
    """Print one error line on stderr (a library error with its next steps as yyai commands); exit 1."""
    message = problem.say(CLI_WORDS) if isinstance(problem, YyaiError) else problem
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def usage_error(message: str, ctx: typer.Context) -> Exception:
    """Click's UsageError (exit status 2, printed in typer's error panel), whichever click typer uses.

    typer 0.12 uses the click package and newer typers a vendored copy; ``typer.BadParameter``
    derives from the right one in both, and only its "Invalid value" wording does not fit here.
    """
    usage = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
    return usage(message, ctx)


def main() -> None:  # pragma: no cover - the `yyai` console script and `python -m yyai_kernel.cli`
    """Run the CLI in a process of its own: Keras's unused extras stay out of it (``runtime/prime.py``)."""
    from yyai_kernel.runtime.prime import skip_serving_extras

    skip_serving_extras()
    app()


from yyai_kernel.cli import (  # noqa: E402,F401  (each registers its commands on app)
    archive,
    evaluate,
    manage,
    models,
    predict,
    ray,
    rollout,
    serve,
)
