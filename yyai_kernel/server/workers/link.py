"""Link: requests and replies, both ways, between the supervisor and one worker process.

Each worker is started with one end of a ``socketpair`` (inherited as a file descriptor;
no socket file, nothing on disk, nothing another user can connect to). Both ends wrap it
in a Link. Either side can :meth:`Link.call` the other with a JSON message and wait for
its reply; many calls may be in flight at once, matched by id. Incoming requests run on a
small thread pool, so a long one (a model load) never holds up the others, nor the replies.

Framing is ``multiprocessing.connection.Connection`` (length-prefixed messages); the
messages are JSON objects (orjson). A request is ``{"id": n, "type": ..., ...}``; its reply
is ``{"reply_to": n, ...}``. When the other process goes away (exit, ``kill -9``), every
pending call raises :class:`LinkClosed` and ``on_close`` runs once.

Locking: one lock around sends (a message goes out whole); the pending-call table is only
touched under ``_lock``.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection

import orjson

log = logging.getLogger("yyai.server")


class LinkClosed(ConnectionError):
    """The process at the other end of the link has gone away."""


class Link:
    """One end of a request/reply channel over a connected socket (see the module docstring)."""

    def __init__(self, sock: socket.socket | int, handle: Callable[[dict], dict], *, name: str,
                 on_close: Callable[[], None] | None = None, threads: int = 4):
        fd = sock if isinstance(sock, int) else sock.detach()
        self._conn = Connection(fd)
        self._handle = handle
        self._on_close = on_close
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._pending: dict[int, Future] = {}
        self._ids = itertools.count(1)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix=f"yyai-{name}")
        self.closed = threading.Event()
        self._reader = threading.Thread(target=self._read, name=f"yyai-{name}-reader", daemon=True)
        self._reader.start()

    def call(self, message: dict, timeout: float | None = None) -> dict:
        """Send a request and wait for its reply (TimeoutError, or LinkClosed when the other end goes)."""
        pending: Future = Future()
        with self._lock:
            if self.closed.is_set():
                raise LinkClosed("the other process has gone away")
            ident = next(self._ids)
            self._pending[ident] = pending
        try:
            self._send({"id": ident, **message})
            return pending.result(timeout)
        finally:
            with self._lock:
                self._pending.pop(ident, None)

    def close(self) -> None:
        """Close this end; the other end's calls then fail with LinkClosed."""
        try:
            self._conn.close()
        except OSError:
            pass
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _send(self, message: dict) -> None:
        data = orjson.dumps(message)
        try:
            with self._send_lock:
                self._conn.send_bytes(data)
        except (OSError, ValueError) as error:  # ValueError: this end was closed
            raise LinkClosed(f"the other process has gone away ({error})") from None

    def _read(self) -> None:
        while True:
            try:
                message = orjson.loads(self._conn.recv_bytes())
            except (EOFError, OSError, ValueError):
                break
            if "reply_to" in message:
                with self._lock:
                    pending = self._pending.get(message["reply_to"])
                if pending is not None and not pending.done():
                    pending.set_result(message)
            else:
                try:
                    self._pool.submit(self._serve, message)
                except RuntimeError:  # closing
                    break
        self._closed()

    def _serve(self, message: dict) -> None:
        try:
            reply = self._handle(message)
        except Exception as error:  # the caller gets the error; this process carries on
            log.exception("Handling %s from the other process failed", message.get("type"))
            reply = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        try:
            self._send({"reply_to": message["id"], **reply})
        except LinkClosed:
            pass

    def _closed(self) -> None:
        with self._lock:
            self.closed.set()
            pending, self._pending = list(self._pending.values()), {}
        for future in pending:
            if not future.done():
                future.set_exception(LinkClosed("the other process has gone away"))
        if self._on_close is not None:
            self._on_close()
