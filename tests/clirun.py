"""``yyai ARGS`` run in the test's own process (typer's CliRunner), answered as a CompletedProcess.

A fresh ``python -m yyai_kernel.cli`` costs 1.5 to 3 s of start-up on this machine (8 s when
the command imports TensorFlow); the same command in-process costs only what it does. The
tests that are about the process itself (the entry point, TensorFlow's start-up log, a
signal) keep a real subprocess; the rest call :func:`yyai`.

An exception that escapes a command is written to ``stderr`` as Python would print it, so
that a test asserting "no traceback" still fails when there is one.
"""

from __future__ import annotations

import contextlib
import subprocess
import traceback

from typer.testing import CliRunner

from yyai_kernel.cli import app

CLEARED = ("YYAI_URL", "YYAI_TOKEN", "YYAI_STORE")  # the caller's settings never leak into a test


def yyai(*args, check: bool = True, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    """Run ``yyai ARGS`` (``env`` on top of a cleared ``YYAI_*``; ``cwd`` the folder it runs in)."""
    environment: dict[str, str | None] = dict.fromkeys(CLEARED)
    environment.update({"COLUMNS": "200", **(env or {})})
    argv = [str(a) for a in args]
    with contextlib.chdir(cwd) if cwd else contextlib.nullcontext():
        result = CliRunner().invoke(app, argv, env=environment, prog_name="yyai")
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "Traceback (most recent call last):\n" + "".join(traceback.format_exception(result.exception))
    done = subprocess.CompletedProcess(["yyai", *argv], result.exit_code, result.stdout, stderr)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done
