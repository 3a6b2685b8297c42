"""What this process's memory is, and how to give freed memory back: the budget's measuring tape.

A version's cost is measured, never guessed from its file size: the registry samples the
process before and after each load (loads run one at a time, so the difference is that
load's) and keeps the larger of two differences:

* the resident set (``/proc/self/statm``): everything the load made the process touch;
* the bytes glibc's allocator has handed out (``mallinfo2``: ``uordblks + hblkhd``). TensorFlow
  and NumPy allocate tensors and weights through it. This figure does not shrink when a
  load reuses pages a version freed earlier, which the resident set does.

On an accelerator the cost would be the device's memory (``tf.config.experimental.get_memory_info``);
``runtime/devices.py`` says what is and is not done there.

TensorFlow gives a version's memory back to the allocator once its runtime is dropped
(``bench/host_bench.py --parts release`` measures it: loading and dropping versions
repeatedly leaves the allocator's figure where it was), but reference cycles in Keras models hold it until the
garbage collector runs, and glibc keeps freed pages mapped. :func:`release` runs both: a
collection, then ``malloc_trim(0)``, which returns the freed pages to the system.

Linux (glibc) only for the allocator's figure and the trim; elsewhere they are skipped and
the resident set alone is used.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
from dataclasses import dataclass


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):  # not glibc, or a glibc before 2.33
        return None


_LIBC = _libc()
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class MemorySample:
    """The process at one moment: its resident set and the bytes its allocator handed out (None: unknown)."""

    rss: int
    heap: int | None

    def cost_since(self, before: MemorySample) -> int:
        """What happened between ``before`` and this sample cost, in bytes (never below 0)."""
        grown = self.rss - before.rss
        if self.heap is not None and before.heap is not None:
            grown = max(grown, self.heap - before.heap)
        return max(0, grown)


def sample() -> MemorySample:
    """This process's memory now."""
    return MemorySample(resident_bytes(), _heap())


def resident_bytes() -> int:
    """This process's resident set, in bytes."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss


def _heap() -> int | None:
    if _LIBC is None:
        return None
    info = _LIBC.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def release() -> None:
    """Collect the garbage that dropped runtimes left in reference cycles, then hand freed pages back."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
