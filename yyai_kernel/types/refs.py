"""Model references: the one rule for model names, version numbers and version labels.

Every front end refuses the same inputs with the same words, because each checks them here
(:func:`check_name`, :func:`parse_version`, :func:`check_label`, :func:`parse_version_ref`).
A request's reference is parsed once, at the edge, into a :class:`ModelRef`; the layers
below take it as it is and never check it again. Imports only numpy and the errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from yyai_kernel.errors import InvalidInputError

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
NAME_RE = re.compile(NAME_PATTERN)
MAX_VERSION_DIGITS = 9


# A label starts with a letter, so that it never reads as a version number: wherever a
# version is accepted (``/predictions/m/stable``, ``/v2/models/m/versions/stable/infer``,
# ``?version=stable``), a label is accepted in its place.
LABEL_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
LABEL_RE = re.compile(LABEL_PATTERN)


def check_name(name: object) -> str:
    """A model name, checked: 1-64 characters of a-z, 0-9, '_', '.', '-', and no '..'."""
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        raise InvalidInputError(
            f"{name!r} is not a model name: names are 1-64 characters of a-z, 0-9, '_', '.', '-'."
        )
    return name


def parse_version(version: Any) -> int | None:
    """A version from a URL, a body or a caller: None, or a positive integer.

    Accepts an int or a string of digits only ("2"); refuses booleans, signs, spaces,
    fractions and zero, so ``+1`` and `` 7 `` mean the same thing everywhere: nothing.
    """
    return None if version is None else require_version(version)


def require_version(version: Any) -> int:
    """A version that must be given: as :func:`parse_version`, and None is refused too."""
    whole = isinstance(version, (int, np.integer)) and not isinstance(version, bool)
    digits = isinstance(version, str) and version.isdigit() and version.isascii() and len(version) <= MAX_VERSION_DIGITS
    if not (whole or digits) or int(version) < 1:
        raise InvalidInputError(f"Version must be a positive integer, not {version!r}.")
    return int(version)


def check_label(label: object) -> str:
    """A version label, checked: 1-32 characters of a-z, 0-9, '_', '-', starting with a letter."""
    if not isinstance(label, str) or not LABEL_RE.match(label):
        raise InvalidInputError(
            f"{label!r} is not a version label: labels are 1-32 characters of a-z, 0-9, '_', '-', "
            "starting with a letter (such as 'stable' or 'canary')."
        )
    return label


@overload
def parse_version_ref(version: None) -> None: ...
@overload
def parse_version_ref(version: str | int) -> int | str: ...
@overload
def parse_version_ref(version: Any) -> int | str | None: ...


def parse_version_ref(version: Any) -> int | str | None:
    """What a request names in the version's place: None, a version number, or a label.

    Digits are a version (:func:`parse_version`); a string that starts with a letter is a
    label (:func:`check_label`); anything else is refused with both rules in the message.
    """
    if isinstance(version, str) and version[:1].isalpha():
        if LABEL_RE.match(version):
            return version
        raise InvalidInputError(
            f"Version must be a positive integer or a label (1-32 characters of a-z, 0-9, '_', '-', "
            f"starting with a letter), not {version!r}."
        )
    try:
        return parse_version(version)
    except InvalidInputError:
        raise InvalidInputError(
            f"Version must be a positive integer or a label (such as 'stable'), not {version!r}."
        ) from None



@dataclass(frozen=True, slots=True)
class ModelRef:
    """What a request names: a model, and a version number, a version label, or neither.

    Neither means the model's default version (for a prediction, its traffic policy may
    place it elsewhere). Build one with :meth:`parse`, which checks every part; the
    registry resolves it to one version (``registry.protocol.Target``).
    """

    name: str
    version: int | None = None
    label: str | None = None

    @classmethod
    def parse(cls, name: Any, version: Any = None) -> ModelRef:
        """A reference from a request's parts: a name, and a version, a label or None (400 on a bad one)."""
        name = check_name(name)
        named = parse_version_ref(version)
        return cls(name, label=named) if isinstance(named, str) else cls(name, named)

    @property
    def named(self) -> bool:
        """Whether the request named a version (or a label): then no traffic policy places it."""
        return self.version is not None or self.label is not None

    def __str__(self) -> str:
        named = self.version if self.version is not None else self.label
        return self.name if named is None else f"{self.name}:{named}"
