"""Start TensorFlow once per process, and prime it before the first model loads.

The first archive a process loads pays for what TensorFlow and Keras set up lazily: the
loading code, the first traced function, the kernels its first calls pick. Measured on this
project's 2-core machine, that was about 40 MB and a second of the first
load, whichever archive came first, so the first version's measured cost
(``registry/memory.py``) would have been ten times its own. :func:`prime` pays it up front
by loading ``primer.yyar``, a 6 KB archive shipped with the package (made by
``scripts/make_primer_archive.py``), the way every archive is loaded
(:meth:`ArchiveRuntime.load`), and dropping it.

Keras also imports, whenever they are installed, libraries for integrations that a process
which only serves never uses (:data:`SERVING_SKIPS`): scikit-learn for its estimator
wrappers, pyplot for image galleries, pandas for DataFrame inputs. Measured on this
project's 2-core machine that was about 1.9 s of a start's CPU (sklearn 0.9 s, pyplot
0.5 s, pandas 0.5 s), and ``make serve`` installs scikit-learn with the test extras.
:func:`skip_serving_extras` makes those imports fail in yyai's own processes (the CLI, the
server, the model host, Ray replicas), and Keras goes on without them (it guards each with
``except ImportError``).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from yyai_kernel.runtime.devices import DeviceSettings

log = logging.getLogger("yyai.runtime")

PRIMER = Path(__file__).resolve().parent / "primer.yyar"
# What Keras imports when installed and a serving process never uses (see the module docstring).
# matplotlib itself stays: evaluation plots draw with its Figure and Agg canvas, not pyplot.
SERVING_SKIPS = ("sklearn", "matplotlib.pyplot", "pandas")


def skip_serving_extras() -> None:
    """Make :data:`SERVING_SKIPS` unimportable in this process, so that Keras skips them.

    For the entry points of yyai's own processes, which run no user code (the ``yyai`` command,
    ``yyai serve``, the model host, a Ray replica), before Keras is imported; never in a library
    call, since a notebook or a test process that imports yyai must keep pandas. A module
    imported already stays.
    """
    for name in SERVING_SKIPS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # None: "import fails", by design


def prime(warmup_sizes: list[int]) -> float:
    """Load and drop the primer archive, as every archive is loaded; the seconds it took."""
    from yyai_kernel.runtime.runtime import ArchiveRuntime

    started = time.perf_counter()
    ArchiveRuntime.load(PRIMER, warmup_sizes=warmup_sizes)
    seconds = time.perf_counter() - started
    log.debug("Primed TensorFlow and Keras in %.2fs", seconds)
    return seconds


def start_tensorflow(*, verbose: bool = False, devices: DeviceSettings | None = None,
                     warmup_sizes: list[int] | None = None) -> float:
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
