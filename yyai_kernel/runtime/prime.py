"""Prime TensorFlow and Keras once per process, before the first model loads.

The first archive a process loads pays for what TensorFlow and Keras set up lazily: the
saving and loading code, the first traced function, the kernels its first calls pick.
Measured on this project's machine (``bench/RESULTS.md``) that was about 40 MB and a second
of the first load, whichever archive came first, so the first version's measured cost
(``registry/memory.py``) would have been ten times its own. :func:`prime` pays it up front
with a tiny two-member archive built in a temporary folder and loaded the way every archive
is (:meth:`ArchiveRuntime.load`), then dropped.
"""

from __future__ import annotations

import logging
import tempfile
import time

log = logging.getLogger("yyai.runtime")


def prime(warmup_sizes: list[int]) -> float:
    """Load and drop a tiny archive, as every archive is loaded; the seconds it took."""
    import keras

    from yyai_kernel.archive.packmodel import pack_model
    from yyai_kernel.runtime.runtime import ArchiveRuntime

    started = time.perf_counter()
    conv = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                             keras.layers.Dense(2, activation="softmax")], name="conv")
    dense = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")], name="dense")
    with tempfile.TemporaryDirectory(prefix="yyai-prime-") as folder:
        path = pack_model([conv, dense], name="prime", version=1, input={"scale": 1 / 255}, labels=["a", "b"],
                          out=folder)
        ArchiveRuntime.load(path, warmup_sizes=warmup_sizes)
    seconds = time.perf_counter() - started
    log.debug("Primed TensorFlow and Keras in %.2fs", seconds)
    return seconds


def start_tensorflow(*, verbose: bool = False, devices=None, warmup_sizes: list[int] | None = None) -> float:
    """Import TensorFlow and Keras (without the C++ start-up log unless ``verbose``), set up the
    GPUs (``devices``: a :class:`~yyai_kernel.runtime.devices.DeviceSettings`) before anything
    touches them, prime (:func:`prime`), and move every object alive so far out of the garbage
    collector's reach (``gc.freeze``). The seconds it took.

    The imports leave millions of long-lived objects; a full collection that walks them
    all stalls every request in flight for about 200 ms (p99 at concurrency 32 went from
    about 230 ms to 30 ms). Models load after the freeze, so a runtime swapped out by a
    reload stays collectable.
    """
    import gc

    from yyai_kernel.quiet import quiet_tensorflow
    from yyai_kernel.runtime.devices import DeviceSettings, configure

    started = time.perf_counter()
    quiet_tensorflow(verbose)
    import keras  # noqa: F401
    import tensorflow  # noqa: F401

    configure(devices or DeviceSettings())
    prime(warmup_sizes or [1])
    gc.collect()
    gc.freeze()
    return time.perf_counter() - started
