"""The rules of an install that do not depend on where the runtimes live: one place for both registries and the CLI.

An upload goes through the same steps whether a :class:`~yyai_kernel.registry.registry.Registry`
(runtimes here), ``RayRegistry`` (runtimes on Ray replicas) or ``yyai upload --store`` (no
runtime) takes it: the same content again changes nothing; other content under a version
the store holds needs ``replace``, refused while a label or the policy names that version;
a new version is staged or follows the latest by :func:`~yyai_kernel.registry.defaults.stages`,
and a staged one pins the current default so that it stays; ``promote`` pins the new version
and ``label`` points a label at it. Loading and verifying stay the caller's.

Functions over a :class:`~yyai_kernel.store.store.ModelStore`; the caller holds whatever lock
serializes its model's changes. The store's own lock guards each write.
"""

from __future__ import annotations

from pathlib import Path

from yyai_kernel.archive import Manifest, sha256_file
from yyai_kernel.registry.defaults import stages
from yyai_kernel.store.store import ModelStore
from yyai_kernel.types import InstallOptions, ModelStatus


def already_there(store: ModelStore, path: str | Path, manifest: Manifest, options: InstallOptions) -> bool:
    """True when the store holds this name and version with the same content (nothing to do).
    Other content is checked for ``replace`` here (a ConflictError while a label or the policy
    names the version); without it the store's add refuses it, with the way out."""
    existing = store.find(manifest.name, manifest.version)
    if existing is None:
        return False
    if sha256_file(path) == existing.sha256:
        return True
    if options.replace:
        store.check_removable(manifest.name, manifest.version, "replaced")
    return False


def stage(store: ModelStore, manifest: Manifest, options: InstallOptions, auto_promote: bool,
          default: int | None = None) -> bool:
    """Whether the new version is staged; when it is, the current default (``default``, else
    the store's) is pinned first, so that it stays once the new version is the latest."""
    name, version = manifest.name, manifest.version
    if name not in store.names() or version in store.versions(name):
        return False
    pinned = name in store.pins()
    protected = bool(store.labels(name)) or store.traffic(name) is not None
    if not stages(options.promote, auto_promote, pinned, protected):
        return False
    if not pinned:
        store.pin(name, default if default is not None else store.default_version(name))
    return True


def after_add(store: ModelStore, name: str, version: int, options: InstallOptions) -> None:
    """Pin the new version (``promote``) and point ``label`` at it, once it serves."""
    if options.promote:
        store.pin(name, version)
    if options.label is not None:
        store.set_label(name, options.label, version)


def message(name: str, version: int, status: ModelStatus, staged: bool, options: InstallOptions,
            changed: bool = True) -> str:
    """What an install did, for people: installed (staged, or as the default), and the default's reason."""
    if not changed:
        return f"{name} v{version} is already installed with the same content; nothing changed. {status.default_reason}"
    label = f" (label {options.label!r})" if options.label else ""
    if staged:
        what = (f"Installed {name} v{version}{label}, staged: it serves as v{version} and v{status.default} "
                "stays the default until you promote it")
    elif options.promote:
        what = f"Installed {name} v{version}{label} as the default (pinned)"
    else:
        what = f"{'Replaced' if options.replace else 'Installed'} {name} v{version}{label}"
    return f"{what}. {status.default_reason}"
