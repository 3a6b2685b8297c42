"""The accelerator, set up once per process before any model loads: memory growth or a fixed share.

TensorFlow claims nearly all of a GPU's memory the first time it touches it, which is fine
for one process and fatal for several. yyai gives the accelerator to one process only (the
model host, ``host/``; front ends never import TensorFlow) and, before anything is placed
on it, either lets its memory grow as needed (the default) or caps it at a fraction of the
device's memory (``--gpu-memory-fraction``), so that the budget (``registry/residency.py``)
and other tenants of the card can plan. Which GPU a host sees is ``CUDA_VISIBLE_DEVICES``,
set by the supervisor from ``--devices`` (one host per GPU listed, each seeing its own).

Not tested here: this project's machines have no GPU with TensorFlow (README, "On a GPU").
With no GPU visible, :func:`configure` does nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("yyai.runtime")


@dataclass(frozen=True)
class DeviceSettings:
    """How the visible GPUs are set up: ``memory_fraction`` of each (None: grow as needed)."""

    memory_fraction: float | None = None


def configure(settings: DeviceSettings) -> list[str]:
    """Set up every visible GPU (call right after importing TensorFlow); the names of those set up."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            if settings.memory_fraction is None:
                tf.config.experimental.set_memory_growth(gpu, True)
            else:
                total_mb = _total_memory_mb(tf, gpu)
                limit = int(total_mb * settings.memory_fraction)
                tf.config.set_logical_device_configuration(gpu, [tf.config.LogicalDeviceConfiguration(
                    memory_limit=limit)])
        except RuntimeError as error:  # already initialised: too late to change, say so
            log.warning("Could not set up %s before TensorFlow initialised it: %s", gpu.name, error)
    if gpus:
        how = "memory growth" if settings.memory_fraction is None else f"{settings.memory_fraction:.0%} of memory"
        log.info("GPUs set up (%s): %s", how, ", ".join(g.name for g in gpus))
    return [g.name for g in gpus]


def _total_memory_mb(tf: Any, gpu: Any) -> float:
    """The device's memory in MiB, as its details report it (CUDA builds do)."""
    details = tf.config.experimental.get_device_details(gpu)
    total = details.get("device_memory_size") or details.get("memory_limit")
    if not total:
        raise RuntimeError("its total memory is not reported; use memory growth instead")
    return float(total) / 2**20
