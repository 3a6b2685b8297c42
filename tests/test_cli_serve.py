"""`yyai serve` on the command line: unknown options are refused before anything starts,
`--help` lists every option with its default, and the token from `YYAI_TOKEN` and
`--public-health` work on a real server.

The refusal tests run the real command in a fresh process under a small spy that reports
every `socket.bind` and `listen` and, at exit, whether TensorFlow was imported (urllib3
binds ``("::1", 0)`` at import to probe for IPv6, so the test looks for the port it chose). The spy observes the real
process; it replaces nothing. A valid command line under the same spy shows that it sees the
server's bind.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from serving import start_server
from typer.testing import CliRunner

from yyai_kernel.cli import app
from yyai_kernel.server.app import YyaiServer
from yyai_kernel.server.cmdline import aliases_of

SPY = r"""
import atexit, runpy, socket, sys
_bind, _listen = socket.socket.bind, socket.socket.listen
def bind(self, address):
    print(f"SPY bind {address!r}", file=sys.stderr, flush=True)
    return _bind(self, address)
def listen(self, *args):
    print(f"SPY listen {self.getsockname()!r}", file=sys.stderr, flush=True)
    return _listen(self, *args)
socket.socket.bind, socket.socket.listen = bind, listen
atexit.register(lambda: print(f"SPY tensorflow imported: {'tensorflow' in sys.modules}", file=sys.stderr, flush=True))
module, sys.argv = sys.argv[1], ["yyai", *sys.argv[2:]]
runpy.run_module(module, run_name="__main__")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def spied(module: str, *args) -> list[str]:
    """The command line that runs ``python -m MODULE ARGS`` under the spy."""
    return [sys.executable, "-c", SPY, module, *map(str, args)]


SPY_ENV = {**{k: v for k, v in os.environ.items() if k != "YYAI_TOKEN"}, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def flat(text: str) -> str:
    """Rich's error panel wraps lines inside a box; the message as one line."""
    return " ".join(text.replace("│", " ").split())


@pytest.fixture
def empty_store(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    return store


BAD = [  # (arguments, what the message must name, the suggestion when there is one)
    (["--tokn", "x"], "--tokn", "did you mean --token?"),
    (["--wrkrs", "2"], "--wrkrs", None),
    (["--port8866"], "--port8866", "did you mean --port 8866?"),
    (["--YyaiServer.maxbody=1"], "--YyaiServer.maxbody", "did you mean --YyaiServer.max_body_bytes?"),
    (["stray"], "'stray'", "--notebook FILE"),
]


CLI = ("yyai_kernel.cli", "serve")
SERVER = ("yyai_kernel.server.app",)  # `python -m yyai_kernel.server.app`: the same check; two cases show it
CASES = [(CLI, *case) for case in BAD] + [(SERVER, *case) for case in BAD if case[0][0] in ("--tokn", "stray")]


@pytest.mark.parametrize("entry, args, named, suggestion", CASES,
                         ids=[f"{'serve' if e == CLI else 'server.app'} {' '.join(a)}" for e, a, _, _ in CASES])
def test_unknown_options_exit_2_before_anything_starts(entry, args, named, suggestion, empty_store, tmp_path):
    port = free_port()
    cmd = spied(*entry, "--store", empty_store, "--port", port, "--token", "t", *args)
    result = subprocess.run(cmd, capture_output=True, text=True, env=SPY_ENV, cwd=tmp_path, timeout=300)
    message = flat(result.stderr)
    assert result.returncode == 2, result.stderr
    assert named in message, message
    if suggestion:
        assert suggestion in message, message
    assert f", {port})" not in result.stderr and "SPY listen" not in result.stderr  # no port was bound
    assert "SPY tensorflow imported: False" in result.stderr
    assert "serving at" not in result.stderr + result.stdout
    assert port_is_free(port)


def test_the_spy_sees_a_real_server_bind(empty_store, tmp_path):
    port = free_port()
    cmd = spied(*CLI, "--store", empty_store, "--port", port, "--token", "t",
                "--YyaiServer.max_body_bytes=1000000", "--MappingKernelManager.cull_idle_timeout=30")
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=SPY_ENV, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 300  # a guard against a hang, not a measurement
        while "serving at" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert f"SPY bind ('127.0.0.1', {port})" in log.read_text(), log.read_text()
        assert f"SPY listen ('127.0.0.1', {port})" in log.read_text()
        assert not port_is_free(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0, log.read_text()[-3000:]


# --- --help --------------------------------------------------------------------------------


def own_options() -> list[str]:
    """yyai's own options, read from the app: aliases and flags that set YyaiServer traits."""
    names = [name for name, target in aliases_of(YyaiServer).items() if target.startswith("YyaiServer.")]
    names += [name for name, (config, _) in YyaiServer.flags.items() if set(config) == {"YyaiServer"}]
    return names


def test_serve_help_lists_every_yyai_option_with_its_default():
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "Usage: yyai serve [OPTIONS]" in result.output and "Example" in result.output
    ours, _, passed_through = result.output.partition("Dashboard settings (Voila's)")
    assert passed_through, result.output
    rows = [line for line in ours.splitlines() if line.startswith("│ --")]
    for name in own_options():
        row = next((r for r in rows if f"--{name}" in r.replace(",", " ").split()), None)
        assert row is not None, f"--{name} is not listed among yyai's options"
        assert "[default: " in row, row
    for name, default in [("--store", "model_archives"), ("--port", "8866"), ("--host", "127.0.0.1"),
                          ("--batching", "batching"), ("--watch", "off"), ("--public-health", "off"),
                          ("--max-body-bytes", str(64 * 1024 * 1024)), ("--token", "$YYAI_TOKEN, else a random one")]:
        row = next(r for r in rows if name in r.replace(",", " ").split())
        assert f"[default: {default}" in row, row
    for name in ("--base_url", "--theme", "--pool_size"):  # Voila's, under their own heading, in yyai's words
        row = flat(next(r for r in passed_through.splitlines() if name in r.split()))
        assert name not in ours and re.search(rf"{name} <\w+> [A-Z]", row), row  # described, not just a default
    for name in ("--debug", "--template", "--classic_tree", "--classic-tree", "--no-browser"):  # --help-all has them
        assert name not in result.output
    footer = flat(passed_through)
    assert "--Class.trait=value" in footer and "--config" in footer and "--help-all" in footer
    assert "YYAI_TOKEN" in footer and "YYAI_LOG_LEVEL=debug" in footer


# --- the token from the environment, and --public-health -------------------------------------


def test_token_from_yyai_token_and_public_health(empty_store, tmp_path):
    srv = start_server(empty_store, tmp_path / "env", token="env-token", token_arg=False, wait_ready=False,
                       env_extra={"YYAI_TOKEN": "env-token"}, args=["--public-health"])
    try:
        assert srv.get("/models").status_code == 200
        assert srv.get("/models", auth=False).status_code in (401, 403)
        assert srv.get("/models", auth=False, headers={"Authorization": "token wrong"}).status_code in (401, 403)
        assert srv.get("/v2/health/live", auth=False).status_code == 200  # only the probes are open
        assert srv.get("/v2", auth=False).status_code in (401, 403)
        assert "env-token" not in srv.log()  # a token the operator set is not printed
    finally:
        assert srv.stop() == 0


def test_token_on_the_command_line_wins_over_yyai_token(empty_store, tmp_path):
    srv = start_server(empty_store, tmp_path / "cli", token="cli-token", wait_ready=False,
                       env_extra={"YYAI_TOKEN": "env-token"})
    try:
        assert srv.get("/models").status_code == 200
        assert srv.get("/models", auth=False, headers={"Authorization": "token env-token"}).status_code in (401, 403)
        assert srv.get("/v2/health/live", auth=False).status_code in (401, 403)  # no --public-health
    finally:
        assert srv.stop() == 0
