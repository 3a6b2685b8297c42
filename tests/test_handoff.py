"""Gathered hand-offs (``runtime/handoff.py``): requests reach a batcher together, a batch's
answers wake the event loop once and cross a channel in one send; errors stay each request's own.

A real :class:`DynamicBatcher` with a real worker thread runs a plain NumPy function (it
doubles its input, and refuses a batch holding a negative number), so that what each caller
gets back can be checked row by row; counters on that function, on an event loop's
``call_soon_threadsafe`` and on a connection's sends and receives say how many times each
thread was woken. No timing is asserted: every wait is a bound against a hang.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from multiprocessing import Pipe

import numpy as np
import pytest

from yyai_kernel.host.channel import Channel
from yyai_kernel.runtime import handoff
from yyai_kernel.runtime.batching import BatcherClosed, DynamicBatcher

HANG_S = 60  # a bound against a hang, not a speed goal


class Doubler:
    """The model: ``2 * x``; a batch with a negative value fails as a whole. Counts its calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []  # rows per call

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append(len(batch))
        if (batch < 0).any():
            raise ValueError("negative input")
        return batch * 2


def batcher(model: Doubler, *, size: int = 64, delay_ms: float = 50.0) -> DynamicBatcher[np.ndarray]:
    return DynamicBatcher(model, lambda out, bounds: [out[a:b] for a, b in bounds], max_batch_size=size,
                          max_delay_ms=delay_ms, name="test")


def rows(i: int, n: int = 1) -> np.ndarray:
    return np.full((n, 2), float(i), np.float32)


def test_requests_gathered_on_a_thread_reach_the_batcher_in_one_hand_over():
    model = Doubler()
    queue = batcher(model, size=7)
    try:
        with handoff.gathered():
            futures = [queue.submit(rows(i, 1 + i % 2)) for i in range(5)]  # 7 rows: a full batch
            assert not any(f.done() for f in futures)  # held until the block ends
        for i, future in enumerate(futures):
            np.testing.assert_array_equal(future.result(HANG_S), rows(i, 1 + i % 2) * 2)
        assert model.calls == [7]
    finally:
        queue.close()


def test_a_failed_batch_is_retried_one_by_one_and_only_the_bad_request_fails():
    model = Doubler()
    queue = batcher(model, size=4)
    try:
        with handoff.gathered():
            futures = [queue.submit(rows(-1 if i == 2 else i)) for i in range(4)]
        for i, future in enumerate(futures):
            if i == 2:
                with pytest.raises(ValueError, match="negative"):
                    future.result(HANG_S)
            else:
                np.testing.assert_array_equal(future.result(HANG_S), rows(i) * 2)
        assert model.calls == [4, 1, 1, 1, 1]
    finally:
        queue.close()


def test_a_request_held_while_its_batcher_closes_still_runs_and_later_ones_are_told_to_look_again():
    model = Doubler()
    queue = batcher(model)
    with handoff.gathered():
        held = queue.submit(rows(7))
        queue.close(wait=False)  # a swap: requests already taken still run on it
        with pytest.raises(BatcherClosed):
            queue.submit(rows(8))
    np.testing.assert_array_equal(held.result(HANG_S), rows(7) * 2)
    queue.close()  # its worker stops once what it held ran


class CountingLoop:
    """An event loop on its own thread that gathers like a server's, counting the wake-ups
    other threads ask of it (``call_soon_threadsafe``)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.wakeups = 0
        real = self.loop.call_soon_threadsafe

        def counted(*args, **kwargs):
            if threading.current_thread() is not self.thread:
                self.wakeups += 1
            return real(*args, **kwargs)

        self.loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        handoff.gather_on_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            handoff.stop_gathering_here()

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(HANG_S)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(HANG_S)
        self.loop.close()


@pytest.fixture
def loop():
    counting = CountingLoop()
    yield counting
    counting.close()


def test_requests_of_one_loop_iteration_make_one_batch_whose_answers_wake_the_loop_once(loop):
    model = Doubler()
    queue = batcher(model, size=8)

    async def one(i: int) -> np.ndarray:
        return await handoff.awaitable(queue.submit(rows(i)))

    async def crowd() -> list[np.ndarray]:
        return await asyncio.gather(*(one(i) for i in range(8)))  # all submit in the same iteration

    try:
        loop.run(asyncio.sleep(0))
        before = loop.wakeups
        answers = loop.run(crowd())
        for i, answer in enumerate(answers):
            np.testing.assert_array_equal(answer, rows(i) * 2)
        assert model.calls == [8]
        # run_coroutine_threadsafe's own hand-over is one wake-up; the batch's 8 answers are one more
        assert loop.wakeups - before == 2
    finally:
        queue.close()


def test_a_lone_request_on_a_gathering_loop_does_not_wait_for_company(loop):
    model = Doubler()
    queue = batcher(model, delay_ms=600_000)  # were it to wait for company, it would hang here

    async def lone() -> np.ndarray:
        return await handoff.awaitable(queue.submit(rows(3)))

    try:
        np.testing.assert_array_equal(loop.run(lone()), rows(3) * 2)
        assert model.calls == [1]
    finally:
        queue.close()


def test_errors_reach_their_own_awaiting_request_on_the_loop(loop):
    model = Doubler()
    queue = batcher(model, size=3)

    async def one(i: int):
        try:
            return await handoff.awaitable(queue.submit(rows(i)))
        except ValueError as error:
            return error

    async def crowd():
        return await asyncio.gather(one(1), one(-1), one(2))

    try:
        first, bad, last = loop.run(crowd())
        assert isinstance(bad, ValueError)
        np.testing.assert_array_equal(first, rows(1) * 2)
        np.testing.assert_array_equal(last, rows(2) * 2)
    finally:
        queue.close()


class Counted:
    """A connection whose sends and receives are counted (each is one message on the socket)."""

    def __init__(self, conn) -> None:
        self.conn, self.sends, self.receives = conn, 0, 0

    def send_bytes(self, data: bytes) -> None:
        self.sends += 1
        self.conn.send_bytes(data)

    def recv_bytes(self) -> bytes:
        data = self.conn.recv_bytes()
        self.receives += 1
        return data

    def poll(self, timeout: float) -> bool:
        return self.conn.poll(timeout)

    def close(self) -> None:
        self.conn.close()


def test_gathered_requests_and_their_gathered_replies_cross_a_channel_in_one_message_each():
    model = Doubler()
    queue = batcher(model, size=6)
    asker_end, host_end = Pipe()
    asker_conn, host_conn = Counted(asker_end), Counted(host_end)
    gathering_seen: list[bool] = []

    def handle(channel: Channel, ident: int, kind: str, payload: object) -> None:
        gathering_seen.append(handoff.gathering())
        if kind == "bad":
            channel.reply(ident, error=ValueError("refused alone"), gather=True)
            return
        pending = queue.submit(payload)
        pending.add_done_callback(lambda done: channel.reply(ident, done.result(), gather=True))

    host = Channel(host_conn, name="test-host", handle=handle).start()  # type: ignore[arg-type]
    asker = Channel(asker_conn, name="test-asker").start()  # type: ignore[arg-type]
    try:
        with handoff.gathered():
            futures: list[Future] = [asker.request("submit", rows(i), gather=True) for i in range(6)]
            refused = asker.request("bad", None, gather=True)
        for i, future in enumerate(futures):
            np.testing.assert_array_equal(future.result(HANG_S), rows(i) * 2)
        with pytest.raises(ValueError, match="refused alone"):
            refused.result(HANG_S)
        assert gathering_seen == [True] * 7  # the host handled the bundle in one gathering
        assert model.calls == [6]  # ... so its six submits reached the batcher together
        assert asker_conn.sends == 1 and host_conn.receives == 1
        # the refusal went out when the bundle was handled, the batch's six answers in one more send
        assert host_conn.sends == 2 and asker_conn.receives == 2
    finally:
        asker.close()
        host.close()
        queue.close()
