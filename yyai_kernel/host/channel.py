"""Channel: requests, replies and pushes between a front end and the model host, over one socket.

The model host listens on a Unix socket in the supervisor's private temporary folder
(mode 0700) and accepts only clients that know the supervisor's random key
(``multiprocessing.connection``'s HMAC challenge, both ways). Framing is that module's
length-prefixed messages; each message is a tuple, pickled (protocol 5), because what
crosses is typed values (numpy arrays, ``Prediction``, statuses, typed errors), and both
ends are this same program started by the same supervisor.

Messages: ``(REQUEST, id, kind, payload)``; its ``(REPLY, id, ok, value)`` where ``value``
is the result or the exception raised; ``(PUSH, kind, payload)``, which needs no reply;
``(BUNDLE, [message, ...])``, several of those in one send. A thread that gathers
(``runtime/handoff.py``) sends the requests and replies it was asked to gather in one
bundle: a front end's loop iteration its submits, a host batcher a batch's answers. The
reader handles each message it reads (a bundle whole), with those already waiting behind
it, in one gathering, so a bundle of submits reaches each batcher in one hand-over, and a
bundle of answers wakes the event loop once.
Many requests may be in flight at once, matched by id; when the other end goes away
(exit, ``kill -9``) every pending request fails with :class:`ChannelClosed` and ``on_close``
runs once.

Large tensors travel in shared memory instead of the socket: an array of
:data:`SHARED_MEMORY_BYTES` or more is written to a segment under ``/dev/shm`` by the
sender, named in the message (:class:`SharedArray`), copied out by the receiver, and the
segment is removed by whichever side is first: the receiver once it copied it, the sender
once the reply came (or the channel closed); the supervisor removes what a front end that
died left (``sweep_shared``). Measured by ``bench/ipc_bench.py``: below about 2 MiB the
socket is faster, above it shared memory is, and by 18 MiB twice as fast.

Locking: one lock around sends (a message goes out whole); the pending table under ``_lock``.
"""

from __future__ import annotations

import itertools
import logging
import mmap
import os
import pickle
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from yyai_kernel.runtime import handoff

log = logging.getLogger("yyai.host")

REQUEST, REPLY, PUSH, BUNDLE = 0, 1, 2, 3
SHARED_MEMORY_BYTES = 2 * 1024 * 1024
DRAIN_MESSAGES = 64  # messages already waiting that one gathering of the reader takes with the first
SHM_DIR = "/dev/shm"


class ChannelClosed(ConnectionError):
    """The process at the other end of the channel has gone away."""


@dataclass(frozen=True)
class SharedArray:
    """An array left in a shared-memory segment by the sender; :meth:`take` copies it out."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def put(cls, array: np.ndarray) -> SharedArray:
        """Write ``array`` into a new segment only this user can open; the sender removes it later."""
        name = f"yyai-{os.getpid()}-{secrets.token_hex(8)}"
        fd = os.open(os.path.join(SHM_DIR, name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, array.nbytes)
            with mmap.mmap(fd, array.nbytes) as segment:
                np.ndarray(array.shape, array.dtype, buffer=segment)[...] = array
        finally:
            os.close(fd)
        return cls(name, tuple(array.shape), array.dtype.str)

    def take(self) -> np.ndarray:
        """A private copy of the array (the segment stays until :meth:`remove`, by either side)."""
        dtype = np.dtype(self.dtype)
        size = int(np.prod(self.shape)) * dtype.itemsize
        out = np.empty(self.shape, dtype)
        if size:
            fd = os.open(os.path.join(SHM_DIR, self.name), os.O_RDONLY)
            try:
                with mmap.mmap(fd, size, prot=mmap.PROT_READ) as segment:
                    out[...] = np.ndarray(self.shape, dtype, buffer=segment)
            finally:
                os.close(fd)
        return out

    def remove(self) -> None:
        try:
            os.unlink(os.path.join(SHM_DIR, self.name))
        except FileNotFoundError:
            pass


def sweep_shared(pid: int) -> None:
    """Remove the segments a process that died had sent and nobody removed."""
    prefix = f"yyai-{pid}-"
    try:
        names = [name for name in os.listdir(SHM_DIR) if name.startswith(prefix)]
    except OSError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(SHM_DIR, name))
        except OSError:
            pass


def shareable(value: object) -> bool:
    """Whether ``value`` is an array large enough to travel in shared memory (and a place for it exists)."""
    return isinstance(value, np.ndarray) and value.nbytes >= SHARED_MEMORY_BYTES and os.path.isdir(SHM_DIR)


class Channel:
    """One end of a front end's connection to the model host (see the module docstring).

    ``handle(channel, ident, kind, payload)`` is called on the reader thread for each request
    (it answers with :meth:`reply`, now or later, from any thread); ``on_push(channel, kind,
    payload)`` for each push. When the other end goes away, pending requests fail with ``lost()``.
    """

    def __init__(self, conn: Connection, *, name: str,
                 handle: Callable[[Channel, int, str, object], None] | None = None,
                 on_push: Callable[[Channel, str, object], None] | None = None,
                 on_close: Callable[[Channel], None] | None = None,
                 lost: Callable[[], BaseException] = lambda: ChannelClosed("the other process went away")):
        self._conn = conn
        self._lost = lost
        self._handle = handle
        self._on_push = on_push
        self._on_close = on_close
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._pending: dict[int, Future[Any]] = {}
        self._shared: dict[int, SharedArray] = {}
        self._ids = itertools.count(1)
        self.closed = threading.Event()
        self.peer: object = None  # what the other end said of itself (the host's hello)
        self._reader = threading.Thread(target=self._read, name=f"yyai-{name}", daemon=True)

    def start(self) -> Channel:
        self._reader.start()
        return self

    # --- asking -----------------------------------------------------------------------------

    def request(self, kind: str, payload: Any = None, *, share: np.ndarray | None = None,
                gather: bool = False) -> Future[Any]:
        """Send a request; a Future of its reply's value (or its exception, or ChannelClosed).

        ``share``: an array inside ``payload`` to send in shared memory when it is large
        (the payload then carries a :class:`SharedArray` in its place; see :func:`shareable`).
        ``gather``: a thread that gathers may hold it and send it with the others; never for a
        request this thread will wait for.
        """
        pending: Future[Any] = Future()
        with self._lock:
            if self.closed.is_set():
                raise ChannelClosed("the model host is not connected")
            ident = next(self._ids)
            self._pending[ident] = pending
        if share is not None and shareable(share):
            shared = SharedArray.put(share)
            payload = tuple(shared if item is share else item for item in payload)
            with self._lock:
                self._shared[ident] = shared
        message = (REQUEST, ident, kind, payload)
        if gather and handoff.hold(self, message):
            return pending  # a send that fails later: the reader sees the channel close and fails it
        try:
            self._send(message)
        except ChannelClosed:
            self._finish(ident)
            raise
        return pending

    def call(self, kind: str, payload: Any = None, timeout: float | None = None) -> Any:
        """:meth:`request`, waited for (TimeoutError, ChannelClosed or the reply's exception)."""
        return self.request(kind, payload).result(timeout)

    def push(self, kind: str, payload: object = None) -> None:
        self._send((PUSH, kind, payload))

    def reply(self, ident: int, value: object = None, error: BaseException | None = None, *,
              gather: bool = False) -> None:
        """Answer request ``ident``; a channel that closed meanwhile drops it. An error that is
        neither yyai's nor Python's own (TensorFlow's) crosses as a RuntimeError with its text,
        so that reading it never imports the library that raised it. ``gather``: a thread that
        gathers may hold it and send it with the others (never a reply whose order against
        pushes matters)."""
        if error is not None and type(error).__module__.split(".")[0] not in ("yyai_kernel", "builtins"):
            error = RuntimeError(f"{type(error).__name__}: {error}")
        message = (REPLY, ident, error is None, value if error is None else error)
        if gather and handoff.hold(self, message):
            return
        try:
            self._send(message)
        except ChannelClosed:
            pass

    def hand_over(self, messages: list[tuple[object, ...]]) -> None:
        """Send what a gathering held, in one message (one by one if the bundle cannot be pickled)."""
        try:
            if len(messages) == 1:
                self._send(messages[0])
                return
            try:
                data = pickle.dumps((BUNDLE, messages), protocol=5)
            except Exception:  # noqa: BLE001 - one unpicklable result: each alone, that one as its error
                for message in messages:
                    self._send(message)
                return
            self._send_bytes(data)
        except ChannelClosed:
            pass  # the reader sees the close and fails the requests still pending

    def close(self) -> None:
        try:
            self._conn.close()
        except OSError:
            pass

    # --- the wire ---------------------------------------------------------------------------

    def _send(self, message: tuple[object, ...]) -> None:
        try:
            data = pickle.dumps(message, protocol=5)
        except Exception as error:  # an unpicklable result must not kill the channel
            if message[0] != REPLY:
                raise
            data = pickle.dumps((REPLY, message[1], False, RuntimeError(f"{type(error).__name__}: {error}")), 5)
        self._send_bytes(data)

    def _send_bytes(self, data: bytes) -> None:
        try:
            with self._send_lock:
                self._conn.send_bytes(data)
        except (OSError, ValueError) as error:  # ValueError: this end was closed
            raise ChannelClosed(f"the other process has gone away ({error})") from None

    def _read(self) -> None:
        while True:
            try:
                with handoff.gathered():  # what one read brings is handed on together
                    self._dispatch(self._receive())
                    for _ in range(DRAIN_MESSAGES):  # and the messages already waiting behind it
                        if not self._conn.poll(0):
                            break
                        self._dispatch(self._receive())
            except (EOFError, OSError, ValueError, pickle.UnpicklingError):
                break
        self._closed()

    def _receive(self) -> tuple[Any, ...]:
        # S301: both ends are this program, and a peer is admitted only after the HMAC
        # challenge with the supervisor's random key (see the module docstring)
        message: tuple[Any, ...] = pickle.loads(self._conn.recv_bytes())  # noqa: S301
        return message

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        tag = message[0]
        if tag == BUNDLE:
            for each in message[1]:
                self._dispatch(each)
        elif tag == REPLY:
            _, ident, ok, value = message
            pending = self._finish(ident)
            if pending is not None and not pending.done():
                if ok:
                    pending.set_result(value)
                else:
                    pending.set_exception(value)
        elif tag == REQUEST and self._handle is not None:
            _, ident, kind, payload = message
            try:
                self._handle(self, ident, kind, payload)
            except Exception as error:  # the asker gets it; this end carries on
                log.exception("Handling %s failed", kind)
                self.reply(ident, error=error)
        elif tag == PUSH and self._on_push is not None:
            try:
                self._on_push(self, message[1], message[2])
            except Exception:
                log.exception("Handling the push %s failed", message[1])

    def _finish(self, ident: int) -> Future[Any] | None:
        with self._lock:
            pending = self._pending.pop(ident, None)
            shared = self._shared.pop(ident, None)
        if shared is not None:
            shared.remove()
        return pending

    def _closed(self) -> None:
        with self._lock:
            self.closed.set()
            pending, self._pending = list(self._pending.values()), {}
            shared, self._shared = list(self._shared.values()), {}
        for segment in shared:
            segment.remove()
        for future in pending:
            if not future.done():
                future.set_exception(self._lost())
        self.close()
        if self._on_close is not None:
            self._on_close(self)
