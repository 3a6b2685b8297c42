"""Creates each peer's venv under bench/.venvs/<peer> from PyPI, so `make bench` works on a fresh machine.

Runs in yyai's own venv (no third-party imports). Each venv gets the same TensorFlow and Keras
as yyai so that every server runs the same Keras model. A venv is (re)built only when its
requirement list changes: the list is stamped into the venv.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENVS = HERE.parent / ".venvs"

TF = ["tensorflow==2.21.0", "keras==3.15.1"]

#: pip requirements of each peer; every one serves the same .keras file.
REQUIREMENTS: dict[str, list[str]] = {
    "flask": TF + ["flask==3.1.3"],
    # pytriton 0.7.0 pins numpy<2; TF 2.21 accepts numpy 1.26.
    "pytriton": TF + ["nvidia-pytriton==0.7.0", "numpy<2"],
    # uvloop 0.23 breaks MLServer's worker mode ("There is no current event loop").
    "mlserver": TF + ["mlserver==1.7.1", "uvloop<0.22"],
    # TorchServe's Python worker imports torch: the CPU wheel.
    "torchserve": TF + ["torchserve==0.12.0", "torch-model-archiver==0.12.0", "torch==2.13.0", "pyyaml"],
    "ray": TF + ["ray[serve]==2.60.0"],
}


def base_python() -> str:
    """The interpreter that made yyai's venv (not the venv's own symlink)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def venv_python(peer: str) -> Path:
    return VENVS / peer / "bin" / "python"


def _stamp(peer: str) -> str:
    return hashlib.sha256("\n".join(REQUIREMENTS[peer]).encode()).hexdigest()[:16]


def is_ready(peer: str) -> bool:
    stamp = VENVS / peer / ".bench-stamp"
    return venv_python(peer).exists() and stamp.exists() and stamp.read_text().strip() == _stamp(peer)


def ensure(peer: str, *, log=print) -> Path:
    """Create or update the peer's venv; return its python. Installs run at nice 10."""
    if peer not in REQUIREMENTS:
        raise KeyError(peer)
    if is_ready(peer):
        return venv_python(peer)
    root = VENVS / peer
    if not venv_python(peer).exists():
        log(f"[setup] creating venv {root}")
        subprocess.run([base_python(), "-m", "venv", str(root)], check=True)
    log(f"[setup] installing {peer}: {' '.join(REQUIREMENTS[peer])} (takes minutes)")
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run(["nice", "-n", "10", str(venv_python(peer)), "-m", "pip", "install", "--quiet",
                    *REQUIREMENTS[peer]], check=True, env=env)
    (root / ".bench-stamp").write_text(_stamp(peer) + "\n")
    return venv_python(peer)


if __name__ == "__main__":
    for name in sys.argv[1:] or list(REQUIREMENTS):
        ensure(name)
        print(f"[setup] {name} ready")
