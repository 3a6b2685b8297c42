"""Check and describe the command line of a traitlets application (``yyai serve``, and the
long-running commands that follow it).

Why: traitlets treats any ``--word value`` as a setting it does not know and only logs a
warning, so ``yyai serve --tokn secret`` used to start with a random token. A long-running
command must refuse what it does not understand before it binds a port or imports
TensorFlow. :func:`check_argv` walks the argv against the application's own ``aliases``
and ``flags`` and the config traits of the ``Configurable`` classes, the same structures
traitlets parses with, so no option list is written twice. It raises
:class:`UnknownOptionError`, naming the option and the closest known one (difflib).
:func:`describe_options` turns the same structures into rows for ``--help``.

A ``--Class.trait`` setting may name any ``Configurable`` class imported by then (Voila,
jupyter_server and jupyter_client create many with the app as parent, and a config file may
set any of them), so importing the application's module first is the caller's job.
Nothing here imports anything heavier than traitlets; no state, no locking.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from traitlets import Bool, Float, Integer, List, TraitType, Unicode
from traitlets.config import Configurable

# Handled by traitlets' Application itself before it parses anything else.
BUILT_IN = ("-h", "--help", "--help-all", "--version", "-V")


class UnknownOptionError(ValueError):
    """A command-line word the application does not understand (exit status 2)."""

    def __init__(self, message: str, option: str, suggestion: str | None = None):
        super().__init__(message + (f"; did you mean {suggestion}?" if suggestion else ""))
        self.option = option
        self.suggestion = suggestion


@dataclass(frozen=True)
class OptionDoc:
    """One row of ``--help``: its names, the kind of value, the help line and the default."""

    names: tuple[str, ...]  # ("--host", "--ip"), or ("--batching", "--no-batching") for a pair
    metavar: str  # "<integer>", or "" for a flag
    help: str
    default: str
    own: bool  # the application's own option, not one it passes through to Voila or Jupyter


def _keys(key) -> tuple:
    return key if isinstance(key, tuple) else (key,)


def aliases_of(app_class) -> dict[str, str]:
    """``{"port": "YyaiServer.port", ...}``, tuple keys and ``(target, help)`` values unpacked."""
    out = {}
    for key, target in app_class.aliases.items():
        for name in _keys(key):
            out[name] = target[0] if isinstance(target, tuple) else target
    return out


def alias_help(app_class) -> dict[str, str]:
    """``{"port": help, ...}`` for the aliases declared as ``(target, help)``: the app's own
    words, which win over the trait's help (traitlets shows them in ``--help-all`` too)."""
    return {name: target[1] for key, target in app_class.aliases.items() if isinstance(target, tuple)
            for name in _keys(key)}


def flags_of(app_class) -> dict[str, tuple[dict, str]]:
    """``{"watch": ({"YyaiServer": {"watch": True}}, help), ...}`` with tuple keys unpacked."""
    return {name: value for key, value in app_class.flags.items() for name in _keys(key)}


def configurable_classes() -> dict[str, list[type]]:
    """Every ``Configurable`` subclass imported so far, by class name (a name may repeat)."""
    found: dict[str, list[type]] = {}
    stack = [Configurable]
    seen = set()
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        found.setdefault(cls.__name__, []).append(cls)
        stack.extend(cls.__subclasses__())
    return found


def _closest(word: str, candidates) -> str | None:
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return match[0] if match else None


def _check_setting(name: str, option: str, classes: dict[str, list[type]]) -> None:
    """``Class.trait``: the class exists and has that config trait."""
    class_name, _, trait = name.partition(".")
    if class_name not in classes:
        near = _closest(class_name, classes)
        raise UnknownOptionError(f"no such setting {option} (no configurable class {class_name})", option,
                                 f"--{near}.{trait}" if near else None)
    traits = {t for cls in classes[class_name] for t in cls.class_traits(config=True)}
    if trait not in traits:
        near = _closest(trait, traits)
        raise UnknownOptionError(f"no such setting {option} ({class_name} has no setting {trait})", option,
                                 f"--{class_name}.{near}" if near else None)


def _unknown(option: str, name: str, aliases: dict, flags: dict) -> UnknownOptionError:
    for alias in sorted(aliases, key=len, reverse=True):  # --port8866: a value glued to its option
        if name.startswith(alias) and len(name) > len(alias) and name[len(alias)] not in "-_":
            return UnknownOptionError(f"no such option {option}", option, f"--{alias} {name[len(alias):]}")
    near = _closest(name, [*aliases, *flags])
    return UnknownOptionError(f"no such option {option}", option, f"--{near}" if near else None)


def _positional(word: str, command: str, hint: str | Callable[[str], str]) -> UnknownOptionError:
    said = hint(word) if callable(hint) else hint
    return UnknownOptionError(f"unexpected argument {word!r}: {command} takes no positional arguments"
                              + (f" ({said})" if said else ""), word)


def check_argv(app_class, argv: list[str], *, command: str,
               positional_hint: str | Callable[[str], str] = "") -> None:
    """Refuse every word of ``argv`` that ``app_class`` would not use: raise :class:`UnknownOptionError`.

    Accepted: the application's aliases (``--port 8866``, ``--port=8866``), its flags
    (``--watch``), ``--Class.trait=value`` for a config trait of an imported Configurable
    class, and traitlets' own ``--help``/``--help-all``/``--version``. Refused: anything
    else, a flag given a value, an option missing its value, and positional words, with
    ``positional_hint`` (a text, or a function of the word) saying what to give instead.
    """
    aliases, flags = aliases_of(app_class), flags_of(app_class)
    classes = configurable_classes()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":  # traitlets passes whatever follows "--" on as positional words
            if i < len(argv):
                raise _positional(argv[i], command, positional_hint)
            continue
        if not arg.startswith("-") or arg == "-":
            raise _positional(arg, command, positional_hint)
        if arg in BUILT_IN:
            continue
        option, has_value, _ = arg.partition("=")
        name = option.lstrip("-")
        dashes = len(option) - len(name)
        if dashes > 2 or (dashes == 1 and len(name) > 1 and "." not in name):
            known = name in aliases or name in flags
            raise UnknownOptionError(f"no such option {option}", option, f"--{name}" if known else None)
        takes_value = name in aliases or "." in name
        if not takes_value:
            if name not in flags:
                raise _unknown(option, name, aliases, flags)
            if has_value:
                raise UnknownOptionError(f"{option} is a flag and takes no value", option)
            continue
        if "." in name and name not in aliases:
            _check_setting(name, option, classes)
        if has_value:
            continue
        follows = argv[i] if i < len(argv) else None
        if name in flags:  # an alias that is also a flag (--token): the value is optional
            if follows is not None and not follows.startswith("-"):
                i += 1
            continue
        if follows is None or (follows.startswith("--") and len(follows) > 2):
            raise UnknownOptionError(f"option {option} needs a value", option)
        i += 1


# --- --help ------------------------------------------------------------------------------

# the names typer gives the same kinds in every other yyai command's --help
_METAVARS = ((Bool, "<bool>"), (Integer, "<int>"), (Float, "<float>"), (Unicode, "<str>"), (List, "<list[str]>"))


def _metavar(trait: TraitType) -> str:
    return next((text for kind, text in _METAVARS if isinstance(trait, kind)), "<value>")


def _first_paragraph(text: str) -> str:
    return " ".join((text or "").strip().split("\n\n")[0].split())


def _show(value) -> str:
    if value is None or value in ("", []):
        return "not set"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return str(value)


def describe_options(app_class) -> list[OptionDoc]:
    """The rows of ``--help`` for ``app_class``: its own options first, then the pass-through ones.

    A row's help is the alias's own (a ``(target, help)`` alias), else the trait's. A row's
    default is the trait's default on a fresh instance (so ``@default`` methods count)
    unless the trait carries ``help_default`` metadata, which wins (for values that must
    not be printed, such as a token from the environment).
    """
    aliases, flags = aliases_of(app_class), flags_of(app_class)
    app = app_class()
    instances = {app_class.__name__: app}
    for cls in (*app_class.mro(), *app_class.classes):
        if isinstance(cls, type) and issubclass(cls, Configurable) and issubclass(app_class, cls):
            instances.setdefault(cls.__name__, app)

    def default_of(class_name: str, trait_name: str, trait: TraitType) -> str:
        if "help_default" in trait.metadata:
            return trait.metadata["help_default"]
        if class_name not in instances:
            cls = _class_named(app_class, class_name)
            instances[class_name] = cls(parent=app)
        return _show(instances[class_name].trait_defaults(trait_name))

    rows = []
    own_words = alias_help(app_class)
    by_target: dict[str, list[str]] = {}
    for name, target in aliases.items():
        by_target.setdefault(target, []).append(name)
    for target, names in by_target.items():
        class_name, trait_name = target.split(".", 1)
        trait = _trait(app_class, class_name, trait_name)
        help_text = next((own_words[n] for n in names if n in own_words), trait.help)
        rows.append(OptionDoc(tuple(f"--{n}" for n in names), _metavar(trait), _first_paragraph(help_text),
                              default_of(class_name, trait_name, trait), class_name == app_class.__name__))
    rows.extend(_flag_rows(app_class, flags, aliases, instances))
    return sorted(rows, key=lambda row: not row.own)  # stable: the app's own first, in declared order


def _class_named(app_class, class_name: str) -> type:
    """The configurable class an alias names: the app, one of its ``classes``, or any imported one."""
    candidates = (*app_class.mro(), *app_class.classes, *configurable_classes().get(class_name, []))
    return next(c for c in candidates if getattr(c, "__name__", None) == class_name)


def _trait(app_class, class_name: str, trait_name: str) -> TraitType:
    return _class_named(app_class, class_name).class_traits()[trait_name]


def _flag_rows(app_class, flags: dict, aliases: dict, instances: dict) -> list[OptionDoc]:
    """Flags as rows; two flags that set one trait to two values become one ``--x / --no-x`` row."""
    sets_one = {}  # flag -> (class, trait, value), for flags that set exactly one trait
    for name, (config, _help) in flags.items():
        settings = [(c, t, v) for c, traits in config.items() for t, v in traits.items()]
        if len(settings) == 1:
            sets_one[name] = settings[0]
    rows, done = [], set(aliases)  # an alias that is also a flag is shown as the alias
    for name, (config, help_text) in flags.items():
        if name in done:
            continue
        own = set(config) == {app_class.__name__}
        target = sets_one.get(name, (None, None, None))[:2]
        partner = next((other for other, setting in sets_one.items()
                        if other not in done and other != name and setting[:2] == target), None)
        if partner is None:
            rows.append(OptionDoc((f"--{name}",), "", _first_paragraph(help_text), "off", own))
            continue
        done.update((name, partner))
        class_name, trait_name = target
        current = instances[class_name].trait_defaults(trait_name) if class_name in instances else None
        pair = (name, partner) if sets_one[name][2] == current else (partner, name)  # the default first
        help_line = " / ".join(_first_paragraph(flags[n][1]) for n in pair)
        rows.append(OptionDoc(tuple(f"--{n}" for n in pair), "", help_line, pair[0], own))
    return rows
