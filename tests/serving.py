"""Start and stop a real ``yyai serve`` process for server tests.

The server runs as ``python -m yyai_kernel.server.app`` on port 0 (the OS picks a free
port) and the helper reads the address it prints (and the gRPC address, with
``args=["--grpc-port", "0"]``). ``wait_ready`` polls
``/v2/health/ready``, so a test starts only after every default version loaded. Stopping
sends SIGTERM, as a process manager would, and returns the exit code.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

URL_LINE = re.compile(r"yyai is serving at (http://\S+?)/?\s*$", re.MULTILINE)
GRPC_LINE = re.compile(r"yyai serves v2 gRPC at (\S+)\s*$", re.MULTILINE)


@dataclass
class RunningServer:
    """A server subprocess: its URL, token, log file and process."""

    url: str
    token: str
    proc: subprocess.Popen
    log_path: Path
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def headers(self) -> dict:
        return {"Authorization": f"token {self.token}"} if self.token else {}

    def request(self, method: str, path: str, *, auth: bool = True, **kwargs) -> requests.Response:
        """An HTTP request to the server, with the token unless ``auth=False``.

        ``auth=False`` requests go without the session, so no login cookie from an
        earlier token-authenticated reply rides along.
        """
        headers = {**(self.headers if auth else {}), **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", 60)
        if not auth:
            return requests.request(method, self.url + path, headers=headers, **kwargs)  # noqa: S113 - set above
        return self.session.request(method, self.url + path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def session_to(self, worker: int | str, tries: int = 200) -> requests.Session:
        """A session whose kept-alive connection reached front end ``worker`` (``X-Yyai-Worker``; a
        server alone is worker 0): new connections until one did, as the kernel spreads connections."""
        for _ in range(tries):
            session = requests.Session()
            reply = session.get(self.url + "/v2/health/live", headers=self.headers, timeout=60)
            if reply.headers.get("X-Yyai-Worker") == str(worker):
                return session
            session.close()
        raise AssertionError(f"{tries} connections never reached front end {worker}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 60) -> str:
        """The log once it holds ``text``: a worker's lines reach the file after its reply does."""
        deadline = time.monotonic() + timeout
        while text not in (log := self.log()):
            assert time.monotonic() < deadline, f"{text!r} never reached the log:\n{log[-3000:]}"
            time.sleep(0.2)
        return log

    @property
    def grpc_address(self) -> str:
        """``host:port`` of the v2 gRPC server (started with ``--grpc-port``), from its log."""
        match = GRPC_LINE.search(self.log())
        assert match, f"the server serves no gRPC:\n{self.log()[-3000:]}"
        return match.group(1)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then wait; returns the exit code (kills it if it does not stop)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"server did not stop on SIGTERM:\n{self.log()[-3000:]}") from None
        self.session.close()
        return self.proc.returncode


def start_server(store: Path, work_dir: Path, *, token: str | None = "test-token", args=(),
                 wait_ready: bool = True, timeout: float = 180, env_extra: dict | None = None,
                 token_arg: bool = True, dashboard: bool = False) -> RunningServer:
    """Start ``yyai serve`` on a free loopback port over ``store``; wait until it is ready.

    ``env_extra`` adds environment variables; ``token_arg=False`` leaves ``--token`` off the
    command line (the server then finds the token elsewhere, such as ``YYAI_TOKEN`` in ``env_extra``).
    Without ``dashboard`` the server keeps no dashboard kernel waiting (``--pool_size 0``): a kernel
    costs a process start on the suite's two cores, and only the dashboard's tests open pages
    often enough to need one ready (a page still opens without it, after its kernel starts).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / f"server-{time.monotonic_ns()}.log"
    cmd = [sys.executable, "-m", "yyai_kernel.server.app", "--store", str(store), "--port", "0"]
    if token is None:
        cmd += ["--no-token"]
    elif token_arg:
        cmd += ["--token", token]
    cmd += list(args)
    if not dashboard:
        cmd += ["--pool_size", "0"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    env.pop("YYAI_URL", None)
    env.pop("YYAI_TOKEN", None)
    env.pop("JUPYTER_TOKEN", None)
    env.update(env_extra or {})
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=work_dir, env=env)
    deadline = time.monotonic() + timeout
    url = None
    while url is None:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"server did not start:\n{log_path.read_text()[-3000:]}")
        match = URL_LINE.search(log_path.read_text(errors="replace"))
        if match:
            url = match.group(1).rstrip("/")
        else:
            time.sleep(0.2)
    server = RunningServer(url=url, token=token or "", proc=proc, log_path=log_path)
    if wait_ready:
        try:
            wait_until_ready(server, deadline)
        except AssertionError:
            server.stop()
            raise
    return server


def wait_until_ready(server: RunningServer, deadline: float) -> None:
    """Poll ``/v2/health/ready`` until it answers 200, the process exits, or ``deadline`` (monotonic) passes."""
    while True:
        try:
            if server.get("/v2/health/ready", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        if server.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"server never became ready:\n{server.log()[-3000:]}")
        time.sleep(0.3)
