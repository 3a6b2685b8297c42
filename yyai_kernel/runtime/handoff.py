"""Hand-offs between threads, gathered: one wake-up per batch each way, not one per request.

Every request crosses threads twice: the event loop (or the model host's channel reader)
hands it to a version's batcher thread, and the batcher thread hands the answer back.
Each crossing made one at a time costs a wake-up of the other thread (a ``notify``, a
``call_soon_threadsafe``, a socket send) and a GIL hand-off, which for a small model cost
more than the model. So a thread *gathers* its hand-offs and makes them together:

* :func:`gathered` is a block: hand-offs made inside it on this thread are held and made
  at its end, one per receiver (a batcher's :meth:`hand_over` of every request it got,
  one wake-up of each event loop, one send per channel). The batcher thread runs each
  batch's answers in one; a channel reader runs each message it reads in one.
* :func:`gather_on_loop` makes an event loop's thread gather each loop iteration: the
  first hand-off of an iteration schedules (``loop.call_soon``) the flush that ends it, so
  requests that arrived in the same iteration reach their batcher together, and a lone
  request waits only for the rest of its iteration. Only a loop that never waits on a model
  call in its own thread may gather (a server's; never a notebook's), or that wait would
  hold the flush back.
* :func:`awaitable` is ``asyncio.wrap_future`` for the loop: a batch's answers wake the loop
  once, in one ``call_soon_threadsafe`` that completes them all.

A receiver is any object with ``hand_over(items: list) -> None``; items reach it in the
order they were held. Locking: none; what is held belongs to its thread (``threading.local``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

log = logging.getLogger("yyai.runtime")

T = TypeVar("T")


class Receiver(Protocol):
    def hand_over(self, items: list[Any]) -> None: ...


class _Local(threading.local):
    held: dict[Receiver, list[Any]] | None = None  # the open gathering: receiver -> its items
    schedule: Callable[[Callable[[], None]], object] | None = None  # an event loop's call_soon


_local = _Local()


def hold(receiver: Receiver, item: Any) -> bool:
    """Hold ``item`` for ``receiver`` if this thread is gathering; False when it is not (the
    caller hands it over now)."""
    held = _local.held
    if held is None:
        schedule = _local.schedule
        if schedule is None:
            return False
        held = _local.held = {}  # this loop iteration's gathering; its flush runs next
        schedule(_flush_here)
    items = held.get(receiver)
    if items is None:
        held[receiver] = [item]
    else:
        items.append(item)
    return True


def gathering() -> bool:
    """Whether hand-offs made on this thread now are held (a :func:`gathered` block, a loop iteration)."""
    return _local.held is not None or _local.schedule is not None


@contextmanager
def gathered() -> Iterator[None]:
    """Hold this thread's hand-offs until the block ends, then make them, one per receiver.
    Nested in another gathering (or in a gathering loop iteration), that one makes them."""
    if _local.held is not None or _local.schedule is not None:
        yield
        return
    _local.held = {}
    try:
        yield
    finally:
        _flush_here()


def gather_on_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Make this thread, the one that runs ``loop``, gather its hand-offs per loop iteration."""
    _local.schedule = loop.call_soon


def stop_gathering_here() -> None:
    """This thread gathers no more (its loop stopped); what it holds is handed over now."""
    _local.schedule = None
    _flush_here()


def _flush_here() -> None:
    held, _local.held = _local.held, None
    if not held:
        return
    for receiver, items in held.items():
        try:
            receiver.hand_over(items)
        except Exception:  # one receiver's failure must not keep the others' items back
            log.exception("Handing %d items over to %r failed", len(items), receiver)


# --- answers to an event loop ----------------------------------------------------------------


class _LoopReceiver:
    """Completes asyncio futures on their loop, a whole hand-over in one ``call_soon_threadsafe``."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop

    def hand_over(self, items: list[tuple[asyncio.Future[Any], Future[Any]]]) -> None:
        try:
            self._loop.call_soon_threadsafe(_settle_all, items)
        except RuntimeError:  # the loop closed: nobody awaits these any more
            pass


_receivers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopReceiver] = weakref.WeakKeyDictionary()


def awaitable(future: Future[T]) -> asyncio.Future[T]:
    """An asyncio future of ``future``'s outcome on the running loop (``asyncio.wrap_future``),
    completed by one wake-up of the loop per gathering of the thread that completes it.
    Cancelling it does not cancel ``future`` (a queued model call runs anyway)."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[T] = loop.create_future()
    if future.done():
        _settle(waiter, future)
        return waiter
    receiver = _receivers.get(loop)
    if receiver is None:
        receiver = _receivers[loop] = _LoopReceiver(loop)

    def done(source: Future[T]) -> None:
        if not hold(receiver, (waiter, source)):
            receiver.hand_over([(waiter, source)])

    future.add_done_callback(done)
    return waiter


def _settle_all(items: list[tuple[asyncio.Future[Any], Future[Any]]]) -> None:
    for waiter, source in items:
        _settle(waiter, source)


def _settle(waiter: asyncio.Future[Any], source: Future[Any]) -> None:
    if waiter.cancelled():
        return
    if source.cancelled():
        waiter.cancel()
        return
    error = source.exception()
    if error is not None:
        waiter.set_exception(error)
    else:
        waiter.set_result(source.result())
