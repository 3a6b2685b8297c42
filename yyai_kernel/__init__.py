"""yyai: preview and serve Keras models from versioned archives.

The package root re-exports the few entry points a notebook needs. They are imported on
first use (PEP 562), so `import yyai_kernel` stays cheap for the CLI and the server.
"""

try:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _version

    __version__ = _version("yyai")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"

_EXPORTS = {
    "evaluate": ("yyai_kernel.evaluation.run", "evaluate"),
    "pack_model": ("yyai_kernel.archive.packmodel", "pack_model"),
}

__all__ = sorted(_EXPORTS)  # noqa: PLE0605 - the lazy exports, named once (above)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'yyai_kernel' has no attribute {name!r}")
    from importlib import import_module

    module, attribute = _EXPORTS[name]
    value = getattr(import_module(module), attribute)
    globals()[name] = value
    return value
