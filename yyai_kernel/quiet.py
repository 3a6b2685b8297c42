"""Keep TensorFlow's C++ start-up log off the terminal, unless asked for.

Importing TensorFlow 2.21 prints a screenful on stderr before any model runs: abseil's
"All log messages before absl::InitializeLog() is called are written to STDERR", oneDNN's
notice, "Could not find cuda drivers", the CPU feature guard and, on a machine with the
CUDA libraries but no usable GPU, ``failed call to cuInit ... (303)``. Those lines come
from abseil's logging inside ``libtensorflow_framework``, which ignores
``TF_CPP_MIN_LOG_LEVEL`` (tensorflow#100442) and has no switch Python can reach before
the library loads. So :func:`quiet_tensorflow` imports TensorFlow and lists the devices
(the step that calls ``cuInit``) with file descriptor 2 pointed at a temporary file, then
writes back every line that is not one of TensorFlow's info or warning lines or a known
harmless error. Real errors, and anything other threads wrote meanwhile, still reach
stderr, only later. GPUs stay visible: nothing here touches ``CUDA_VISIBLE_DEVICES``.

``verbose=True`` (the commands' ``--verbose``) or ``YYAI_LOG_LEVEL=debug`` leaves
TensorFlow's log as it is. Call it where TensorFlow is about to be imported; once
TensorFlow is in ``sys.modules`` it does nothing (what was printed is gone). This module
imports nothing heavy, so the CLI can import it at start-up.

Locking: ``_lock`` makes the first caller do the import while a second waits; file
descriptor 2 is process-wide, so two windows must never overlap.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading

LOG_LEVEL_ENV = "YYAI_LOG_LEVEL"
VERBOSE_HELP = f"Show TensorFlow's C++ start-up log (also: {LOG_LEVEL_ENV}=debug)."

# One line of TensorFlow's C++ log: abseil's "I0000 00:00:1796161371.308630 12284 port.cc:153] ..."
# (before InitializeLog() the seconds count from the epoch), or TSL's older
# "2025-09-17 14:44:05.157831: I external/.../cudart_stub.cc:32] ...".
TF_LOG_LINE = re.compile(
    r"^(?:(?P<absl>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ "
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: (?P<tsl>[IWEF]) )\S+:\d+\]"
)
# Lines that are not log lines themselves but belong to the start-up noise.
_NOISE = re.compile(
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|^To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags"
)
# Errors TensorFlow logs at start-up on machines without a usable GPU: not worth a word.
_HARMLESS_ERRORS = re.compile(r"failed call to cuInit|Unable to register cu(?:DNN|FFT|BLAS) factory")

_lock = threading.Lock()


def verbose_from_env() -> bool:
    """Whether ``YYAI_LOG_LEVEL`` asks for TensorFlow's log (``debug``)."""
    return os.environ.get(LOG_LEVEL_ENV, "").strip().lower() == "debug"


def is_start_up_noise(line: str) -> bool:
    """Whether one stderr line is TensorFlow start-up chatter that quiet mode drops."""
    if _NOISE.match(line):
        return True
    match = TF_LOG_LINE.match(line)
    if match is None:
        return False
    severity = match.group("absl") or match.group("tsl")
    return severity in "IW" or bool(_HARMLESS_ERRORS.search(line))


def quiet_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow without its C++ start-up log (unless ``verbose`` or ``YYAI_LOG_LEVEL=debug``)."""
    if "tensorflow" in sys.modules:
        return
    if verbose or verbose_from_env():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TSL's own log lines honour it
    with _lock:
        if "tensorflow" in sys.modules:
            return
        _import_with_filtered_stderr()


def _import_with_filtered_stderr() -> None:
    for stream in (sys.stdout, sys.stderr):
        _flush(stream)
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # cuInit happens here, inside the window
        finally:
            _flush(sys.stderr)
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            kept = "".join(line for line in text.splitlines(keepends=True) if not is_start_up_noise(line))
            if kept:
                os.write(2, kept.encode("utf-8"))


def _flush(stream) -> None:
    try:
        stream.flush()
    except (AttributeError, OSError, ValueError):  # a closed or replaced stream
        pass
