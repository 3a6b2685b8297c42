"""Placement: which model host owns each model, when ``--devices`` gives one host per GPU.

Each model name is owned by exactly one host, chosen by rendezvous (highest random weight)
hashing of the name against each host's device id: every process (the supervisor, each
host, each front end) computes the same owner from the same ``--devices`` list, with
nothing to store or to agree on, and a store that grows or a device list that changes
moves only the models whose winner changed (about 1/N of them), never the others.

Why one owner and not a copy on every device (Triton's ``instance_group`` with ``gpus``,
TorchServe's workers spread round-robin over the GPUs, MLServer's pool, which loads every
model in every worker): the owner is the one writer of that model's state (its default,
labels, traffic policy, its archives), so there is one truth without a protocol between
hosts; each device's ``--memory-budget`` adds capacity instead of holding the same
models N times; and a host that dies takes down only the models it owns. What it gives
up: one hot model uses one GPU (README, "On a GPU").

Pure functions of the names: no lock, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    """The hosts, by index, and the device each one sees (``CUDA_VISIBLE_DEVICES`` ids)."""

    devices: tuple[str, ...]

    @classmethod
    def of(cls, devices: Sequence[str]) -> Placement:
        return cls(tuple(devices) or ("",))

    @property
    def hosts(self) -> int:
        return len(self.devices)

    def owner(self, name: str) -> int:
        """The index of the host that owns model ``name``."""
        if len(self.devices) == 1:
            return 0
        return max(range(len(self.devices)), key=lambda index: (_weight(self.devices[index], name), -index))

    def owns(self, index: int) -> Callable[[str], bool]:
        """Whether host ``index`` owns a model name (its store's filter)."""
        return lambda name: self.owner(name) == index

    def device(self, name: str) -> str | None:
        """The device id of the host that owns ``name`` (None with one host: it sees them all)."""
        return None if len(self.devices) == 1 else self.devices[self.owner(name)]


def _weight(device: str, name: str) -> int:
    digest = hashlib.blake2b(f"{device}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def device_list(value: str, environ_value: str | None) -> list[str]:
    """The GPUs ``--devices`` names, one host each: ``'0,1'``; ``'all'``: the ids
    ``CUDA_VISIBLE_DEVICES`` lists (``environ_value``), if any; empty: none named (one host
    that sees what ``CUDA_VISIBLE_DEVICES`` shows)."""
    value = value.strip()
    if value == "all":
        value = (environ_value or "").strip()
    ids = [part.strip() for part in value.split(",") if part.strip()]
    if len(set(ids)) != len(ids):
        raise ValueError(f"--devices names a device twice: {value!r}")
    return ids
