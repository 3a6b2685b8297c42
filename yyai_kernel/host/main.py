"""The model host process: ``python -m yyai_kernel.host``, started by the supervisor of ``--workers N``.

In order, so that front ends can connect at once and TensorFlow loads while they start:

1. read its :class:`~yyai_kernel.host.spec.HostSpec`, scan the store (with a host per
   GPU, only the models this host owns: ``placement.py``), build the registry (no
   TensorFlow yet) and mark its warm set as loading;
2. listen on its socket: front ends connect, get every model's view and answer requests
   (a request for a model waits for its load, bounded, as a cold start);
3. import TensorFlow, set up the GPU it sees (memory growth or a fraction) before anything
   touches it, prime, and load the warm set; then tell the front ends it is ready, and the
   supervisor, and warm the other defaults in the background.

SIGTERM (or the supervisor going away) stops it: the listener closes, the registry persists
the recently used order and stops its batchers. The prediction counters go to
``PROMETHEUS_MULTIPROC_DIR`` (the supervisor's), which every front end's ``/metrics`` sums.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from multiprocessing.connection import Listener
from typing import TYPE_CHECKING

from yyai_kernel.config import ServingConfig
from yyai_kernel.host.placement import Placement
from yyai_kernel.host.service import HostService
from yyai_kernel.host.spec import HostSpec
from yyai_kernel.runtime.prime import skip_serving_extras

if TYPE_CHECKING:
    from yyai_kernel.registry.registry import Registry
    from yyai_kernel.server.workers.link import Link

log = logging.getLogger("yyai.host")


def run(spec: HostSpec) -> int:
    """Serve as the model host until SIGTERM; the exit status."""
    if spec.cuda_visible_devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = spec.cuda_visible_devices
    from yyai_kernel.api.metrics import ServerMetrics
    from yyai_kernel.registry.registry import Registry
    from yyai_kernel.server.workers.link import Link
    from yyai_kernel.store.store import ModelStore

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    config = ServingConfig(**spec.config)
    placement = Placement.of(spec.devices)
    owns = placement.owns(spec.index) if placement.hosts > 1 else None  # the models this host serves
    registry = Registry(ModelStore(spec.store, owns=owns), config=config, observer=ServerMetrics())
    service = HostService(registry, spec.front_ends, ack_timeout=spec.ack_timeout)
    warm = registry.warm_set()
    grouped: dict[str, list[int]] = {}
    for name, version in warm:
        grouped.setdefault(name, []).append(version)
    registry.mark_loading(grouped)
    registry.residency.gate.close()  # no load until TensorFlow has started (_start_models)
    if not spec.address.startswith("\0"):
        try:
            os.unlink(spec.address)  # the socket of a host that died before this one
        except FileNotFoundError:
            pass
    listener = Listener(spec.address, "AF_UNIX", authkey=spec.key)
    service.serve(listener)
    supervisor = Link(spec.fd, lambda message: {"ok": False, "error": "nothing to ask"}, name="host-supervisor",
                      on_close=stop.set)
    log.info("Model host %d listening%s; %d model(s) in %s", spec.index,
             f" (device {spec.cuda_visible_devices})" if owns is not None else "", len(registry.names()), spec.store)
    threading.Thread(target=_start_models, args=(spec, registry, service, supervisor, stop), name="yyai-start",
                     daemon=True).start()
    stop.wait()
    log.info("Model host %d stopping", spec.index)
    service.stop()
    try:
        listener.close()
    except OSError:
        pass
    registry.close()
    supervisor.close()
    return 0


def _start_models(spec: HostSpec, registry: Registry, service: HostService, supervisor: Link,
                  stop: threading.Event) -> None:
    from yyai_kernel.runtime.devices import DeviceSettings
    from yyai_kernel.runtime.prime import start_tensorflow
    from yyai_kernel.runtime.runtime import warmup_batch_sizes

    config = registry.config
    try:
        seconds = start_tensorflow(verbose=spec.verbose, devices=DeviceSettings(spec.gpu_memory_fraction),
                                   warmup_sizes=warmup_batch_sizes(config.batching_for(None)[0])
                                   if config.batching else [1])
        log.info("TensorFlow started in %.1fs", seconds)
        registry.residency.gate.open()
        errors = registry.warm_up()
    except Exception:  # logged; the host serves what it can (cold starts load the rest)
        log.exception("The model host's start-up load failed")
        registry.residency.gate.open()
        errors = {}
    for name, message in errors.items():
        log.error("Model %s did not load: %s", name, message)
    service.mark_ready()
    log.info("Model host %d ready (%d version(s) loaded)", spec.index, registry.residency_status().loaded)
    try:
        supervisor.call({"type": "ready"}, timeout=30)
    except Exception:  # noqa: BLE001 - the supervisor is gone: stop() follows from the link closing
        pass
    if not stop.is_set():
        registry.start_background()


def main() -> None:
    skip_serving_extras()  # before TensorFlow and Keras are imported
    spec = HostSpec.from_env()
    if spec is None:
        print("yyai_kernel.host is started by `yyai serve --workers N`, not by hand.", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout,
                        format=f"[YyaiServer host{spec.index or ''}] %(message)s")
    logging.getLogger("yyai").setLevel(logging.INFO)
    sys.exit(run(spec))


if __name__ == "__main__":
    main()
