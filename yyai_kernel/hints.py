"""Next steps: what a person can do about a refusal or a state, typed, and each interface's words for it.

Why: one fact ("v1 is pinned; v2 is newer") reaches people through three front ends, and
each has its own way to act on it: the CLI says ``yyai default digits --latest``, the REST
API ``DELETE /models/digits/default``, the dashboard a checkbox. A message that spells
one of them out is wrong in the other two. So a layer that knows the next step says it
as a :class:`Hint` (a :class:`Step` and the model, version or label it applies to), and
each front end renders it with its own :data:`Words`: ``cli/words.py`` for the CLI, the
dashboard its own, and here :data:`REST_WORDS` and :data:`PYTHON_WORDS`.

Why those two live here, at the bottom: a hint travels as JSON, and JSON is the REST API's
form (``YyaiError.to_dict``, ``ModelStatus.to_json``), made by the types themselves for
every HTTP front end (Tornado, Ray); and the Python API is every layer's own (``str()`` of
an error raised in a notebook). The JSON carries the hint as data too
(:meth:`Hint.to_json`), so a client renders it in its own words.

A rendering is a short imperative fragment with no leading capital and no final period
("load it with POST /models/digits/load"), so that the caller places it in its sentence.
This module imports nothing from yyai_kernel, so every layer may use it; no state.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Step(str, Enum):
    """A kind of next step."""

    LOAD = "load"  # load a version so that it serves
    FOLLOW_LATEST = "follow_latest"  # forget the pin: the latest version is the default again
    PIN = "pin"  # make a version the default (the version, when the hint names one)
    SET_TRAFFIC = "set_traffic"  # set a canary or shadow policy
    TRUST = "trust"  # let a model's archives run the Python code of Lambda layers
    PACK = "pack"  # pack a Keras model file into a .yyar archive
    MOVE_LABEL = "move_label"  # move or delete a label that points at a version
    CLEAR_TRAFFIC = "clear_traffic"  # clear a model's canary/shadow policy
    BUMP_VERSION = "bump_version"  # pack the archive again under a new version number
    REPLACE = "replace"  # upload again, replacing the content a version holds

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Hint:
    """A next step and what it applies to (the fields a step does not use stay empty)."""

    step: Step
    name: str = ""
    version: int | None = None
    label: str = ""

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"step": self.step.value}
        if self.name:
            body["name"] = self.name
        if self.version is not None:
            body["version"] = self.version
        if self.label:
            body["label"] = self.label
        return body

    @classmethod
    def from_json(cls, d: object) -> Hint | None:
        """The hint of a reply, or None when it has none or names a step this version does not know."""
        if not isinstance(d, dict):
            return None
        try:
            step = Step(d.get("step"))
        except ValueError:
            return None
        version = d.get("version")
        return cls(step, str(d.get("name") or ""), int(version) if version is not None else None,
                   str(d.get("label") or ""))


Words = Mapping[Step, Callable[[Hint], str]]
"""An interface's words: for each step, the fragment that tells a person how to take it."""


def say(words: Words, hint: Hint) -> str:
    """``hint`` in ``words``: a fragment such as "load it with POST /models/digits/load"."""
    return words[hint.step](hint)


def with_hints(message: str, hints: tuple[Hint, ...], words: Words) -> str:
    """``message``, then its hints in ``words`` after a semicolon and a final period;
    ``message`` as it is when there are none."""
    if not hints:
        return message
    steps = " and ".join(say(words, hint) for hint in hints)
    return f"{message.rstrip().rstrip('.')}; {steps}."


def _model(hint: Hint) -> str:
    return hint.name or "MODEL"


def _rest_load(hint: Hint) -> str:
    body = "" if hint.version is None else " " + json.dumps({"version": hint.version})
    return f"load it with POST /models/{_model(hint)}/load{body}"


def _version(hint: Hint) -> str:
    return "VERSION" if hint.version is None else str(hint.version)


def _python_load(hint: Hint) -> str:
    version = "" if hint.version is None else f", {hint.version}"
    return f"load it with .load({_model(hint)!r}{version})"


PYTHON_WORDS: Words = {
    Step.LOAD: _python_load,
    Step.FOLLOW_LATEST: lambda h: f".follow_latest({_model(h)!r}) follows the latest again",
    Step.PIN: lambda h: f"make a version the default with .set_default({_model(h)!r}, {_version(h)})",
    Step.SET_TRAFFIC: lambda h: f"set one with .set_traffic({_model(h)!r}, policy)",
    Step.TRUST: lambda h: (f"if you trust its source, pass trusted=True (a server: yyai serve --trust {_model(h)})"),
    Step.PACK: lambda h: "pack the model into one with pack_model(model, ...), or upload it with YyaiClient.upload",
    Step.MOVE_LABEL: lambda h: (f"move or delete the label first (.set_label({_model(h)!r}, "
                                f"{h.label or 'LABEL'!r}, VERSION) or .delete_label)"),
    Step.CLEAR_TRAFFIC: lambda h: f"clear the traffic policy first (.clear_traffic({_model(h)!r}))",
    Step.BUMP_VERSION: lambda h: "pack it again under a new version number (pack_model(..., version=N))",
    Step.REPLACE: lambda h: "or replace the content with .add_archive(archive, replace=True)",
}
"""The Python API's words (``DataPlane``, ``YyaiClient``, ``pack``): ``str()`` of an error."""


REST_WORDS: Words = {
    Step.LOAD: _rest_load,
    Step.FOLLOW_LATEST: lambda h: f"DELETE /models/{_model(h)}/default follows the latest again",
    Step.PIN: lambda h: f'make a version the default with PUT /models/{_model(h)}/default {{"version": {_version(h)}}}',
    Step.SET_TRAFFIC: lambda h: f"set one with PUT /models/{_model(h)}/traffic",
    Step.TRUST: lambda h: ("if you trust its source, the server's operator can allow it for this model "
                           f"(yyai serve --trust {_model(h)}, or c.YyaiServer.trusted)"),
    Step.PACK: lambda h: ("pack the model into one with `yyai archive` (or pack_model / YyaiClient.upload "
                          "in Python), then upload that"),
    Step.MOVE_LABEL: lambda h: f"move or delete the label first (PUT or DELETE /models/{_model(h)}/labels/"
                               f"{h.label or '<label>'})",
    Step.CLEAR_TRAFFIC: lambda h: f"clear the traffic policy first (DELETE /models/{_model(h)}/traffic)",
    Step.BUMP_VERSION: lambda h: "pack it again under a new version number",
    Step.REPLACE: lambda h: "or replace the content with POST /models?replace=true",
}
"""The REST API's words (see the module docstring for why they are here)."""
