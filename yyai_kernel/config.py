"""ServingConfig: the settings that shape serving, in one traitlets ``Configurable``.

In the manner of Voila's ``VoilaConfiguration``: one object holds the limits, the batching
defaults, the trusted model names and the public endpoints, and it is handed whole to the
registry, the data plane and every front end, instead of being copied field by field.
``yyai serve`` is itself a ServingConfig (the Voila app subclasses it), so these settings
come from the command line (``--max-body-bytes``), a config file
(``c.YyaiServer.max_body_bytes`` or ``c.ServingConfig.max_body_bytes``) or, in a notebook
or a Ray replica, from keyword arguments: ``ServingConfig(batching=False)``.

Every default limit lives here and nowhere else.
"""

from __future__ import annotations

import re
from typing import Any

from traitlets import Bool, Float, Integer, List, TraitError, Unicode, validate
from traitlets.config import Configurable

MiB = 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_BODY_BYTES = 64 * MiB
DEFAULT_MAX_ARCHIVE_BYTES = 512 * MiB
DEFAULT_MAX_IMAGES = 64
DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_EXPLAIN_IMAGES = 8
DEFAULT_MAX_CONCURRENT_EXPLAINS = 2
DEFAULT_MAX_BATCH_SIZE = 32
DEFAULT_MAX_DELAY_MS = 2.0
DEFAULT_WARM = 4
DEFAULT_COLD_START_TIMEOUT_S = 60.0

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """A size in bytes from ``512M``, ``1.5G``, ``2GiB``, ``800MB`` or ``1048576``.

    Units are binary, as Docker reads them (``M`` = ``MB`` = ``MiB`` = 1024²), so that a
    size means the same whatever the suffix. ValueError names the forms accepted.
    """
    match = _SIZE.match(str(text))
    if match is None:
        raise ValueError(f"{text!r} is not a size; write it as 512M, 1.5G or 2GiB (units are binary)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


class ServingConfig(Configurable):
    """Limits, batching, trust and exposure: what every layer that serves needs to know."""

    # --- batching ------------------------------------------------------------------------
    batching = Bool(True, config=True, help="Dynamic batching of concurrent requests.")
    max_batch_size = Integer(None, allow_none=True, config=True,
                             help="Override every archive's max_batch_size hint (default: the hint, else 32).")
    max_delay_ms = Float(None, allow_none=True, config=True,
                         help="Override every archive's max_delay_ms hint (default: the hint, else 2 ms).")

    # --- trust ------------------------------------------------------------------------------
    trusted = List(Unicode(), config=True,
                   help="Model names whose archives may run code when loaded (Keras Lambda layers).")

    # --- the store ---------------------------------------------------------------------------
    watch = Bool(False, config=True, help="Poll the store folder and reload what changed.")
    auto_promote = Bool(True, config=True, help=(
        "A new version of a model that is not pinned, labelled or under a traffic policy becomes its default "
        "at once (it follows the latest). Off: every new version is staged, serving by its number until it "
        "is promoted. An upload's own promote= wins either way."))
    watch_interval = Float(2.0, config=True, help="Seconds between two polls of the store folder.")

    # --- what stays loaded (registry/residency.py) -------------------------------------------
    memory_budget = Unicode("", config=True,
                            help="Most memory the loaded versions may take, measured at each load (512M, 2G; "
                            "units are binary). Past it, the least recently used version is unloaded; it "
                            "loads again on its next request. Empty: no budget.")
    max_loaded = Integer(None, allow_none=True, min=1, config=True,
                         help="Most versions loaded at once; past it, the least recently used is unloaded.")
    warm = Integer(DEFAULT_WARM, min=0, config=True,
                   help="Versions loaded before the server says ready: those that pins, labels and traffic "
                   "policies name first, then the defaults used most recently. The rest load in the "
                   "background or on their first request.")
    cold_start_timeout = Float(DEFAULT_COLD_START_TIMEOUT_S, config=True,
                               help="Seconds a request for a version that is not loaded waits for its load "
                               "before it is answered 503 with Retry-After.")

    @validate("memory_budget")
    def _check_budget(self, proposal: dict[str, Any]) -> str:
        value = str(proposal["value"]).strip()
        if value:
            try:
                parse_size(value)
            except ValueError as error:
                raise TraitError(f"--memory-budget: {error}") from None
        return value

    @property
    def memory_budget_bytes(self) -> int | None:
        """The budget in bytes, or None when there is none."""
        return parse_size(self.memory_budget) if self.memory_budget else None

    # --- limits ------------------------------------------------------------------------------
    max_body_bytes = Integer(DEFAULT_MAX_BODY_BYTES, config=True,
                             help="Largest request body (predictions, v2 infer), in bytes.")
    max_archive_bytes = Integer(DEFAULT_MAX_ARCHIVE_BYTES, config=True,
                                help="Largest archive upload (POST /models), in bytes.")
    max_image_pixels = Integer(DEFAULT_MAX_PIXELS, config=True, help="Largest image, in pixels (width x height).")
    max_images_per_request = Integer(DEFAULT_MAX_IMAGES, config=True,
                                     help="Most images in one multipart prediction request.")

    max_rows_per_request = Integer(DEFAULT_MAX_ROWS, min=1, config=True,
                                   help="Most rows (JSON records, CSV lines, tensors) in one prediction request.")

    max_explain_images = Integer(DEFAULT_MAX_EXPLAIN_IMAGES, min=1, config=True,
                                 help="Most images (or table rows) in one explained prediction (?explain=): each "
                                      "costs a gradient pass per member.")
    max_concurrent_explains = Integer(DEFAULT_MAX_CONCURRENT_EXPLAINS, min=1, config=True,
                                      help="Explained predictions running at once; more are refused with 429.")

    # --- rollouts -------------------------------------------------------------------------------
    shadow_max_pending = Integer(256, config=True,
                                 help="Most shadow runs queued or running; past it, new ones are dropped and counted.")
    shadow_disagreements = Integer(32, config=True,
                                   help="How many recent shadow disagreements each model keeps (a ring buffer).")

    # --- exposure ------------------------------------------------------------------------------
    public_health = Bool(False, config=True, help="Answer /v2/health/live and /ready without a token.")
    public_metrics = Bool(False, config=True, help="Answer /metrics without a token.")

    def is_trusted(self, name: str) -> bool:
        return name in self.trusted

    def batching_for(self, hints: dict[str, Any] | None) -> tuple[int, float]:
        """(max batch size, max delay in ms) for an archive: the override, its hint, or the default."""
        hints = hints or {}
        size = self.max_batch_size or hints.get("max_batch_size", DEFAULT_MAX_BATCH_SIZE)
        delay = self.max_delay_ms if self.max_delay_ms is not None else hints.get("max_delay_ms",
                                                                                 DEFAULT_MAX_DELAY_MS)
        return int(size), float(delay)


def serving_config(config: ServingConfig | None = None, **settings: Any) -> ServingConfig:
    """``config`` as given, or a new ServingConfig from keyword settings (not both)."""
    if config is not None:
        if settings:
            raise TypeError("pass either a ServingConfig or keyword settings, not both")
        return config
    return ServingConfig(**settings)
