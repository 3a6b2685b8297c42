"""``yyai ray``: serve a store on Ray Serve from one command, starting a local Ray if none runs.

What: connect to the Ray cluster this machine belongs to (``--address``, ``$RAY_ADDRESS``, or
the one ``ray start`` recorded), or start a single-machine Ray on loopback; start Serve's
HTTP proxy on ``--host``/``--port``; run the yyai application (``ray_app.application``)
with ``--replicas N`` fixed model replicas or ``--autoscale MIN:MAX``; print the URL and,
when it was generated, the token; serve until Ctrl-C or SIGTERM, then delete the
application (and stop the Ray it started).

Why a module of ``cli`` and not of ``ray_app``: deciding whether to start Ray on loopback must
happen before ``ray`` is imported (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` is read at import),
and importing anything of the ``ray_app`` package imports Ray (its ``__init__`` is the
builder that Ray's own tools import). So this module imports Ray only inside
:func:`serve_on_ray`, and the command (``ray.py``) refuses bad options before that.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import signal
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

APP_NAME = "yyai"
TOKEN_ENV = "YYAI_TOKEN"
LOCAL_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
LOCAL_START_ATTEMPTS = 3
TARGET_ONGOING_REQUESTS = 16  # half a batch in flight per model replica (see deploy/ray/serve_config.yaml)


@dataclass(frozen=True)
class RayOptions:
    """What ``yyai ray`` was asked for."""

    store: Path
    replicas: int | None = None
    autoscale: tuple[int, int] | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    no_token: bool = False
    trusted: tuple[str, ...] = ()
    address: str | None = None
    max_models: int | None = None
    extra: dict = field(default_factory=dict)

    def model_options(self) -> dict:
        """Ray options of the model deployment: a fixed count, or an autoscaling range."""
        if self.autoscale is not None:
            low, high = self.autoscale
            return {"autoscaling_config": {"min_replicas": low, "max_replicas": high, "initial_replicas": low,
                                           "target_ongoing_requests": TARGET_ONGOING_REQUESTS}}
        return {"num_replicas": self.replicas or 1}


def parse_autoscale(text: str) -> tuple[int, int]:
    """``MIN:MAX`` with 0 <= MIN <= MAX and MAX >= 1; ValueError with a message otherwise."""
    low, sep, high = text.partition(":")
    try:
        bounds = (int(low), int(high)) if sep else None
    except ValueError:
        bounds = None
    if bounds is None or bounds[0] < 0 or bounds[1] < max(1, bounds[0]):
        raise ValueError(f"{text!r} is not a range like 1:4 (MIN:MAX, 0 <= MIN <= MAX, MAX >= 1)")
    return bounds


def existing_cluster(address: str | None) -> str | None:
    """The address to connect to: the one given, ``$RAY_ADDRESS``, or the cluster ``ray start``
    recorded on this machine; None when none runs (then a local Ray is started)."""
    if address:
        return address
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    recorded = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    return "auto" if recorded.is_file() else None


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_on_ray(options: RayOptions, echo=print) -> None:
    """Run the application until interrupted; see the module docstring."""
    address = existing_cluster(options.address)
    if address is None and _is_loopback(options.host):
        for key, value in LOCAL_RAY_ENV.items():  # before ray is imported: the node stays on 127.0.0.1
            os.environ.setdefault(key, value)
    import ray
    from ray import serve

    from yyai_kernel.ray_app import AppArgs, application

    args = AppArgs.model_validate({"store": str(options.store.resolve()), "trusted": list(options.trusted),
                                   **({"max_models": options.max_models} if options.max_models else {}),
                                   **options.extra})
    given = options.token or os.environ.get(TOKEN_ENV)
    token = None if options.no_token else (given or secrets.token_hex(24))
    started = address is None
    if started:
        _start_local_ray(ray)
    else:
        ray.init(address=address, log_to_driver=False)
    try:
        serve.start(http_options={"host": options.host, "port": options.port})
        serve.run(application(args, token=token, model_options=options.model_options()),
                  name=APP_NAME, route_prefix="/")
        echo(f"yyai on Ray Serve is serving at http://{options.host}:{options.port}/")
        if token and not given:
            echo(f"token: {token}  (send 'Authorization: token <token>'; set it with --token or YYAI_TOKEN)")
        _wait_for_signal()
    finally:
        try:
            serve.delete(APP_NAME)
        finally:
            if started:
                serve.shutdown()
                ray.shutdown()


def _start_local_ray(ray, attempts: int = LOCAL_START_ATTEMPTS) -> None:
    """A single-machine Ray, retried: on a busy small machine the raylet can give up waiting
    for its dashboard agent (a fixed 15 s, ray-project/ray#65983); a failed start leaves
    nothing running."""
    for attempt in range(1, attempts + 1):
        try:
            ray.init(include_dashboard=False, log_to_driver=False)
            return
        except Exception:  # Ray raises a bare Exception for a start-up timeout
            ray.shutdown()
            if attempt == attempts:
                raise


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
