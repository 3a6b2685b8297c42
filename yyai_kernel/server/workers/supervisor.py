"""The supervisor of ``yyai serve --workers N``: N worker processes on one port, kept alive.

What: the process that ``yyai serve --workers N`` runs (N > 1) loads no model and serves
no request. It reserves the ports, starts N workers (each a full ``yyai serve`` process
with its own registry over the same store, started in parallel), restarts any that dies,
relays management calls between them, and on SIGTERM (or Ctrl-C) drains and stops them
all, removing its private temporary folder.

* **One port.** The supervisor binds the REST port (the dashboard's, and gRPC's) with
  ``SO_REUSEPORT`` and never listens on it: that reserves the port, even with ``--port 0``,
  while every worker binds the same port with ``SO_REUSEPORT`` and listens. The kernel
  spreads connections over the listening workers. A worker joins the port only once its
  models are loaded, so a restarting worker is never handed a request it would answer
  with "still loading"; the others keep serving meanwhile.
* **The dashboard** lives on worker 0, on its own port (``--dashboard-port``, default
  the REST port + 1): a page and its kernel's websocket are separate connections, and
  only the worker that started a kernel knows it. On the shared port the dashboard's
  routes redirect there. The dashboard kernel calls the shared REST port.
* **Management.** Each worker has a :class:`~yyai_kernel.server.workers.link.Link` to the
  supervisor over an inherited socketpair. The worker that receives a management call
  leads it (it writes the store once), then asks the supervisor to have every other
  worker follow it (``operations.follow``: re-read the store, or do the same runtime-only
  change) and returns only when every serving worker answered. The reply's
  ``WorkerReport`` names each worker that applied it, that is restarting, or that failed
  (the supervisor then restarts it, so that it reads the current store). A starting worker
  is handed the operation without waiting: it applies it after its load, and the
  supervisor lets it join the port only once it applied everything it was handed.
* **Crashes.** A dead worker (even ``kill -9``) is started again, after a back-off when it
  keeps dying young; its processes (dashboard kernels) are killed with it, so none is left
  orphaned. If a worker cannot start at all the first time, the supervisor stops the
  others and exits with that worker's status.
* **Metrics.** Workers write prometheus_client multiprocess files into a folder of the
  supervisor's temporary folder (``PROMETHEUS_MULTIPROC_DIR``); ``/metrics`` sums them.

Threads: the main thread watches the processes and the stop signal; each Link has a
reader and a small pool that serves the worker's requests (``follow``, ``gather``,
``ready``). ``_lock`` guards the worker table (slots are swapped on restart).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import psutil

from yyai_kernel.plane.operations import (
    Operation,
    Outcome,
    WorkerInfo,
    WorkerOutcome,
    WorkerReport,
)
from yyai_kernel.server.startup import TMP_PREFIX, announce_token
from yyai_kernel.server.workers.link import Link, LinkClosed

WORKER_ENV = "YYAI_WORKER"
STOP_TIMEOUT_S = 30.0  # SIGTERM to SIGKILL, per worker, on shut-down
INFO_TIMEOUT_S = 10.0
YOUNG_S = 10.0  # a worker that dies younger than this is restarted after a growing delay
MAX_BACKOFF_S = 30.0


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process is told about itself (as JSON in ``YYAI_WORKER``)."""

    index: int
    count: int
    fd: int
    port: int
    dashboard_port: int
    grpc_port: int | None
    token: str | None
    tmp_root: str
    sync_timeout: float

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> WorkerSpec | None:
        """This process's spec, taken out of the environment (so that kernels do not inherit it)."""
        raw = os.environ.pop(WORKER_ENV, None)
        return None if raw is None else cls(**json.loads(raw))


def worker_count(value: str) -> int:
    """``--workers``: a positive number, or ``auto`` for the CPUs this process may use."""
    if str(value).strip().lower() == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"--workers must be a positive number or 'auto', not {value!r}")
    return count


def reserve_port(host: str, port: int) -> tuple[list[socket.socket], int]:
    """Bind (never listen) ``SO_REUSEPORT`` sockets on every address of ``host``: the port
    stays ours while workers come and go, and no connection is ever queued on these."""
    sockets: list[socket.socket] = []
    for family, kind, proto, _, address in socket.getaddrinfo(host or None, port, socket.AF_UNSPEC,
                                                                socket.SOCK_STREAM, 0, socket.AI_PASSIVE):
        if any(s.family == family for s in sockets):
            continue
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if port == 0 and sockets:
            address = (address[0], sockets[0].getsockname()[1], *address[2:])
        sock.bind(address)
        sockets.append(sock)
    return sockets, sockets[0].getsockname()[1]


@dataclass
class Slot:
    """One worker position: the process now in it, its link and its history."""

    index: int
    proc: subprocess.Popen | None = None
    link: Link | None = None
    state: str = "starting"  # starting, serving, restarting
    restarts: int = 0
    started: float = 0.0
    backoff: float = 0.0
    next_start: float = 0.0
    outstanding: int = 0  # operations sent to it while it starts, not yet applied
    descendants: list = field(default_factory=list)  # psutil.Process of its children, for clean-up


class Supervisor:
    """Runs N workers for one ``YyaiServer`` configuration (see the module docstring)."""

    def __init__(self, app, argv: list[str], count: int):
        self.app, self.argv, self.count = app, list(argv), count
        self.log = app.log
        self.slots = [Slot(i) for i in range(count)]
        self._lock = threading.Lock()
        self._applied = threading.Condition(self._lock)  # a starting worker applied what it was sent
        self._stop = threading.Event()
        self._all_ready = threading.Event()
        self._fatal: int | None = None
        self._fanout = ThreadPoolExecutor(max(2, count), thread_name_prefix="yyai-fanout")
        self.tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-")
        self.metrics_dir = os.path.join(self.tmp, "metrics")
        os.mkdir(self.metrics_dir)
        self.token = app.token if app.token is not None else (secrets.token_hex(24) if app.auto_token else "")

    # --- the whole life ------------------------------------------------------------------------

    def run(self) -> int:
        """Start the workers, keep them alive until SIGTERM/SIGINT, stop them; the exit status."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        try:
            self._reserved, self.port = reserve_port(self.app.ip, self.app.port)
            dashboard = self.app.dashboard_port if self.app.dashboard_port is not None else (
                self.port + 1 if self.app.port else 0)
            self._reserved_dashboard, self.dashboard_port = reserve_port(self.app.ip, dashboard)
            self._reserved_grpc, self.grpc_port = ([], None) if self.app.grpc_port is None else reserve_port(
                self.app.ip, self.app.grpc_port)
        except OSError as error:
            self.log.critical("yyai: cannot listen on %s port %s: %s", self.app.ip, self.app.port, error)
            shutil.rmtree(self.tmp, ignore_errors=True)
            return 1
        self.log.info("Starting %d workers on port %d (dashboard on worker 0, port %d)", self.count, self.port,
                      self.dashboard_port)
        try:
            for slot in self.slots:
                self._spawn(slot)
            self._watch()
        finally:
            self._shutdown()
        return self._fatal or 0

    def _watch(self) -> None:
        """The main loop: notice deaths and restart, until stopped (or a first start fails)."""
        last_snapshot = 0.0
        while not self._stop.wait(0.2):
            now = time.monotonic()
            for slot in self.slots:
                if slot.proc is not None and slot.proc.poll() is not None:
                    self._died(slot)
                    if self._fatal is not None:
                        return
                if slot.proc is None and now >= slot.next_start:
                    self._spawn(slot)
            if now - last_snapshot > 2.0:  # who each worker started (dashboard kernels)
                last_snapshot = now
                for slot in self.slots:
                    slot.descendants = _children(slot.proc)

    # --- workers ------------------------------------------------------------------------------

    def _spawn(self, slot: Slot) -> None:
        ours, theirs = socket.socketpair()
        spec = WorkerSpec(slot.index, self.count, theirs.fileno(), self.port, self.dashboard_port, self.grpc_port,
                          self.token, self.tmp, float(self.app.worker_sync_timeout))
        env = {**os.environ, WORKER_ENV: spec.to_env(), "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir}
        cmd = [sys.executable, "-m", "yyai_kernel.server.app", *self.argv]
        with self._lock:
            slot.proc = subprocess.Popen(cmd, pass_fds=[theirs.fileno()], env=env)
            slot.link = Link(ours, lambda message, s=slot: self._handle(s, message), name=f"worker{slot.index}")
            slot.state = "restarting" if slot.restarts else "starting"
            slot.started = time.monotonic()
        theirs.close()
        self.log.info("Worker %d started (pid %d)", slot.index, slot.proc.pid)

    def _died(self, slot: Slot) -> None:
        code = slot.proc.returncode
        pid = slot.proc.pid
        _kill_all(slot.descendants)
        shutil.rmtree(os.path.join(self.tmp, f"worker-{slot.index}-{pid}"), ignore_errors=True)
        with self._lock:
            link, slot.link, slot.proc = slot.link, None, None
            slot.state = "restarting"
        if link is not None:
            link.close()
        if self._stop.is_set():
            return
        if not self._all_ready.is_set() and slot.restarts == 0:
            self.log.critical("Worker %d exited with status %s before it served; stopping.", slot.index, code)
            self._fatal = code if code else 1
            return
        young = time.monotonic() - slot.started < YOUNG_S
        slot.backoff = min(MAX_BACKOFF_S, max(1.0, slot.backoff * 2)) if young else 0.0
        slot.next_start = time.monotonic() + slot.backoff
        slot.restarts += 1
        self.log.warning("Worker %d (pid %d) exited with status %s; restarting it%s.", slot.index, pid, code,
                         f" in {slot.backoff:.0f} s" if slot.backoff else "")

    def _shutdown(self) -> None:
        """SIGTERM every worker (each drains and stops), SIGKILL what outlives the timeout, clean up."""
        self._stop.set()
        running = [s for s in self.slots if s.proc is not None and s.proc.poll() is None]
        for slot in running:
            slot.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for slot in running:
            try:
                slot.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log.warning("Worker %d did not stop in %.0f s; killing it.", slot.index, STOP_TIMEOUT_S)
                slot.proc.kill()
                slot.proc.wait()
        for slot in self.slots:
            _kill_all(slot.descendants)
            if slot.link is not None:
                slot.link.close()
        reserved = [getattr(self, name, []) for name in ("_reserved", "_reserved_dashboard", "_reserved_grpc")]
        for sock in [s for group in reserved for s in group]:
            sock.close()
        self._fanout.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.log.info("yyai stopped.")

    # --- requests from workers -------------------------------------------------------------------

    def _handle(self, slot: Slot, message: dict) -> dict:
        kind = message.get("type")
        if kind == "follow":
            return {"report": self._follow(slot.index, message["op"]).to_json()}
        if kind == "gather":
            return {"workers": [info.to_json() for info in self._gather()]}
        if kind == "ready":
            self._ready(slot, message)
            return {"ok": True}
        return {"ok": False, "error": f"unknown request {kind!r}"}

    def _ready(self, slot: Slot, message: dict) -> None:
        """A worker loaded its models: once it applied every operation sent meanwhile, it may join."""
        with self._lock:
            self._applied.wait_for(lambda: slot.outstanding == 0, timeout=float(self.app.worker_sync_timeout))
            slot.state = "serving"
            all_ready = all(s.state == "serving" for s in self.slots)
        self.log.info("Worker %d is serving", slot.index)
        if all_ready and not self._all_ready.is_set():
            self._all_ready.set()
            self._banner(message.get("models", []))

    def _follow(self, leader: int, op: dict) -> WorkerReport:
        """Have every worker but the leader apply ``op``; wait for all; the report."""
        Operation.from_json(op)  # refuse garbage before anyone applies it
        others = [s for s in self.slots if s.index != leader]
        outcomes = list(self._fanout.map(lambda s: self._apply(s, op), others))
        return WorkerReport(tuple(sorted([WorkerOutcome(leader, Outcome.APPLIED), *outcomes],
                                         key=lambda o: o.worker)))

    def _apply(self, slot: Slot, op: dict) -> WorkerOutcome:
        """One worker follows ``op``: a serving one now (the call waits), a starting one before it
        joins the port (the call does not wait: it is reported as restarting)."""
        with self._lock:
            link, proc, serving = slot.link, slot.proc, slot.state == "serving"
            if link is not None and not serving:
                slot.outstanding += 1
        if link is None:
            return WorkerOutcome(slot.index, Outcome.RESTARTING)
        if not serving:
            threading.Thread(target=self._deliver, args=(slot, link, proc, op), daemon=True).start()
            return WorkerOutcome(slot.index, Outcome.RESTARTING)
        try:
            error = self._call_apply(link, op)
        except LinkClosed:
            return WorkerOutcome(slot.index, Outcome.RESTARTING)
        except TimeoutError:
            return WorkerOutcome(slot.index, Outcome.FAILED, f"no answer within {self.app.worker_sync_timeout:.0f} s")
        if error is None:
            return WorkerOutcome(slot.index, Outcome.APPLIED)
        self._failed(slot, proc, op, error)
        return WorkerOutcome(slot.index, Outcome.FAILED,
                             f"{error}; it is being restarted and will read the current store state")

    def _deliver(self, slot: Slot, link: Link, proc, op: dict) -> None:
        """Hand ``op`` to a starting worker, which applies it after its load, before it serves."""
        try:
            error = self._call_apply(link, op)
            if error is not None:
                self._failed(slot, proc, op, error)
        except (LinkClosed, TimeoutError):
            pass  # it died (a new one reads the store) or never got ready (it is restarted)
        finally:
            with self._lock:
                slot.outstanding -= 1
                self._applied.notify_all()

    def _call_apply(self, link: Link, op: dict) -> str | None:
        reply = link.call({"type": "apply", "op": op}, timeout=float(self.app.worker_sync_timeout) + 5)
        return None if reply.get("ok") else str(reply.get("error"))

    def _failed(self, slot: Slot, proc, op: dict, error: str) -> None:
        """A worker could not apply an operation: restart it, so that it reads the current store."""
        self.log.error("Worker %d could not apply %s: %s; restarting it so that it reads the store.",
                       slot.index, op.get("kind"), error)
        if proc is not None and proc.poll() is None:
            proc.terminate()  # the main loop starts a new one

    def _gather(self) -> list[WorkerInfo]:
        return list(self._fanout.map(self._info, self.slots))

    def _info(self, slot: Slot) -> WorkerInfo:
        with self._lock:
            link, proc, state, restarts = slot.link, slot.proc, slot.state, slot.restarts
        info = None
        if link is not None:
            try:
                info = WorkerInfo.from_json(link.call({"type": "info"}, timeout=INFO_TIMEOUT_S)["info"])
            except (LinkClosed, TimeoutError, KeyError, TypeError):
                info = None
        if info is None:
            return WorkerInfo(slot.index, proc.pid if proc is not None else None, state, _rss(proc), restarts)
        return WorkerInfo(slot.index, info.pid, state, info.rss_bytes, restarts, info.models)

    # --- output -------------------------------------------------------------------------------

    def _banner(self, models: list[str]) -> None:
        app = self.app
        host = app.ip if app.ip not in ("", "0.0.0.0", "::", "localhost") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        url = f"http://{host}:{self.port}{app.base_url}"
        dashboard = f"http://{host}:{self.dashboard_port}{app.base_url}"
        self.log.info("yyai %s: %d workers serving %d model(s) from %s: %s", app.version, self.count, len(models),
                      os.path.abspath(app.store_dir), ", ".join(models) or "(none)")
        self.log.info("yyai is serving at %s", url)
        self.log.info("The dashboard (worker 0) is at %s", dashboard)
        if self.grpc_port is not None:
            self.log.info("yyai serves v2 gRPC at %s:%d", host, self.grpc_port)
        announce_token(self.log, dashboard, self.token, generated=app.token is None)


def _children(proc: subprocess.Popen | None) -> list:
    if proc is None:
        return []
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        return []


def _kill_all(processes: list) -> None:
    """Kill processes a worker started (its dashboard kernels) that outlived it."""
    for process in processes:
        try:
            if process.is_running():  # psutil checks the start time: never a recycled pid
                process.kill()
        except psutil.Error:
            pass


def _rss(proc: subprocess.Popen | None) -> int | None:
    try:
        return psutil.Process(proc.pid).memory_info().rss if proc is not None else None
    except psutil.Error:
        return None
