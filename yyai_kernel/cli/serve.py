"""`yyai serve`: the options are the Voila app's own (``YyaiServer`` aliases and flags).

They are checked up front by `cmdline.check_argv` (an unknown option exits 2 before
anything starts) and listed by `cmdline.describe_options`, so no option is declared twice.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import typer
from rich.console import Console
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from yyai_kernel.archive import SUFFIX
from yyai_kernel.cli import SERVE, app, usage_error

SERVE_FOOTER = (
    "Any other setting of yyai, Voila or Jupyter: --Class.trait=value, e.g. --YyaiServer.max_images_per_request=16 or "
    "--MappingKernelManager.cull_idle_timeout=300, or the same in a config file given with --config "
    "(c.YyaiServer.max_body_bytes = 1_000_000); --help-all lists every one. An option yyai serve does "
    "not know is refused (exit status 2) before anything starts.\n"
    "Environment: YYAI_TOKEN (the token, when --token is not given), YYAI_LOG_LEVEL=debug (TensorFlow's log)."
)


@app.command(
    "serve",
    rich_help_panel=SERVE,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def serve_cmd(ctx: typer.Context) -> None:
    """Serve the dashboard and the REST API over a store (default: model_archives/).

    Example:

        yyai serve --store model_archives --port 8866
    """
    from yyai_kernel.server.app import HELP_HINT, POSITIONAL_HINT, YyaiServer
    from yyai_kernel.server.app import main as serve_main
    from yyai_kernel.server.cmdline import UnknownOptionError, check_argv

    args = list(ctx.args)
    if "--help" in args or "-h" in args:
        _print_serve_help(ctx, YyaiServer)
        return
    try:
        check_argv(YyaiServer, args, command="yyai serve", positional_hint=lambda word: _positional_hint(word,
                   POSITIONAL_HINT))
    except UnknownOptionError as error:
        raise usage_error(f"{error}\n{HELP_HINT}", ctx) from None
    serve_main(args)


def _positional_hint(word: str, otherwise: str) -> str:
    """What a stray word most likely meant: a store folder (``yyai serve model_archives``), a
    notebook, or an archive; else ``otherwise``."""
    path = Path(word)
    if path.suffix == ".ipynb":
        return f"to serve that notebook as the dashboard, give --notebook {word}"
    if path.suffix == SUFFIX:
        return f"a server serves a folder of {SUFFIX} archives: put it in one and give --store FOLDER"
    if path.is_dir():
        return f"to serve the archives in {word}, give --store {word}"
    return f"a store folder goes with --store FOLDER; {otherwise}"


def _print_serve_help(ctx: typer.Context, app_class) -> None:
    """``yyai serve --help`` in typer's style: yyai's options, then Voila's and Jupyter's."""
    from typer import rich_utils as style

    from yyai_kernel.server.cmdline import OptionDoc, describe_options
    from yyai_kernel.server.settings import PASSED_THROUGH

    out = Console(highlight=False)
    out.print(Padding(f"Usage: {ctx.command_path} [OPTIONS]", 1), style=style.STYLE_USAGE_COMMAND)
    out.print(Padding(inspect.getdoc(serve_cmd) or "", (0, 1, 1, 1)))
    rows = describe_options(app_class)
    help_row = OptionDoc(("--help", "-h"), "", "Show this message and exit.", "", own=True)
    listed = {f"--{name}" for name in PASSED_THROUGH}
    voila = [r for r in rows if not r.own and listed & set(r.names)]
    for title, panel_rows in (("Options", [r for r in rows if r.own] + [help_row]),
                              ("Dashboard settings (Voila's)", voila)):
        table = Table(highlight=False, show_header=False, expand=True, box=None, pad_edge=False,
                      padding=style.STYLE_OPTIONS_TABLE_PADDING)
        for row in panel_rows:
            text = Text(row.help)
            if row.default:
                text.append(f" [default: {row.default}]", style=style.STYLE_OPTION_DEFAULT)
            table.add_row(Text(", ".join(row.names), style=style.STYLE_OPTION),
                          Text(row.metavar, style=style.STYLE_TYPES), text)
        out.print(Panel(table, border_style=style.STYLE_OPTIONS_PANEL_BORDER, title=title,
                        title_align=style.ALIGN_OPTIONS_PANEL))
    out.print(Padding(SERVE_FOOTER, (0, 1)))
